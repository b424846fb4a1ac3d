"""PPO's network: the shared MLP actor-critic of the policy-gradient family (``classic_rl/policies.py``).

Discrete actions: Categorical over logits. Box actions: diagonal Gaussian with a state-independent log σ,
actions in [-1, 1] rescaled to the env's bounds by ``rl_utils.make_env(unit_actions=True)``. The actor and the
critic have separate trunks by default (``--shared-trunk`` joins them)."""

from __future__ import annotations

from classic_rl.policies import ActorCritic, greedy_policy, parse_hidden

__all__ = ["ActorCritic", "greedy_policy", "parse_hidden"]

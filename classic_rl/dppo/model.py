"""DPPO's network: PPO's MLP actor-critic (``classic_rl/policies.py``), one copy in the learner and one in every
worker; the learner's weights are broadcast to the workers before each rollout and each gradient step.

Discrete actions: Categorical over logits. Box actions: diagonal Gaussian with a state-independent log σ,
actions in [-1, 1] rescaled to the env's bounds by ``rl_utils.make_env(unit_actions=True)``."""

from __future__ import annotations

from classic_rl.policies import ActorCritic, greedy_policy, parse_hidden

__all__ = ["ActorCritic", "greedy_policy", "parse_hidden"]

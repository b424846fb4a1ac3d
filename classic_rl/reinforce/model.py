"""REINFORCE's network: the policy-gradient family's MLP policy (``classic_rl/policies.py``), with or without
a learned baseline.

* no baseline: ``ActorCritic(critic=False)``, a policy π(·|s) only (``value`` returns 0, so every formula that
  subtracts V(s) or bootstraps from it reduces to plain Monte-Carlo);
* ``--baseline``: a *separate* value MLP V(s) (same hidden sizes) regressed on the Monte-Carlo returns.

Discrete actions: Categorical over logits. Box actions: diagonal Gaussian with a state-independent log σ, actions
in [-1, 1] rescaled to the env's bounds by ``rl_utils.make_env(unit_actions=True)``."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym

from classic_rl.policies import ActorCritic, greedy_policy, parse_hidden

__all__ = ["ActorCritic", "greedy_policy", "make_policy", "parse_hidden"]


def make_policy(obs_dim: int, action_space: gym.Space, hidden: Sequence[int], activation: str = "tanh",
                baseline: bool = False, log_std_init: float = 0.0) -> ActorCritic:
    """π(·|s), plus V(s) on its own trunk when ``baseline``."""
    return ActorCritic(obs_dim, action_space, hidden, activation, shared=False, critic=baseline,
                       log_std_init=log_std_init)

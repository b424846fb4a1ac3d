"""TRPO's network: the MLP actor-critic of the policy-gradient family (``classic_rl/policies.py``), with its
parameters split in two groups, because TRPO updates them in two different ways:

* the policy's (actor trunk, actor head and, for Box actions, the state-independent log σ): one natural-gradient
  step per rollout inside the KL trust region;
* the value function's (critic trunk and head): ordinary Adam regression on the GAE returns.

Discrete actions: Categorical over logits; Box actions: diagonal Gaussian, actions in [-1, 1] rescaled to the
env's bounds by ``rl_utils.make_env(unit_actions=True)``. The trunks are always separate (``--shared-trunk`` is
refused: a shared trunk would let the value regression move the policy outside its trust region)."""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from classic_rl import policies
from classic_rl.policies import greedy_policy, parse_hidden

__all__ = ["ActorCritic", "greedy_policy", "parse_hidden"]


class ActorCritic(policies.ActorCritic):
    def actor_parameters(self) -> Iterator[nn.Parameter]:
        """θ of π: what the trust-region step moves (in a fixed order: the flat vectors of CG follow it)."""
        yield from self.actor_trunk.parameters()
        yield from self.actor_head.parameters()
        if not self.discrete:
            yield self.log_std

    def critic_parameters(self) -> Iterator[nn.Parameter]:
        """φ of V: fitted by regression."""
        yield from self.critic_trunk.parameters()
        yield from self.critic_head.parameters()

"""Actor-Critic networks: the policy-gradient family's MLP actor-critic (``classic_rl/policies.py``) for a V(s)
critic, and a small Q(s, a) critic for ``--critic q``.

* ``--critic v``: ``ActorCritic`` as is: π(·|s) and V(s), separate trunks by default (``--shared-trunk`` joins).
* ``--critic q``: :class:`QActorCritic`, the same policy (no value head) next to :class:`QCritic`. It exposes the
  interface the training loop uses for V (``act``, ``value``, ``evaluate_actions``, ``deterministic``), with Q in
  place of V: ``act`` returns Q(s, a) of the sampled action, ``value(s')`` returns Q(s', a') with a fresh
  a' ~ π(·|s') (the Sarsa target's next term), and :meth:`QActorCritic.baseline` gives the state-only baseline
  b(s) the actor's weight Q(s, a) − b(s) subtracts.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from classic_rl.policies import ActorCritic, greedy_policy, layer_init, mlp, parse_hidden

__all__ = ["ActorCritic", "QActorCritic", "QCritic", "greedy_policy", "parse_hidden"]


class QCritic(nn.Module):
    """Q(s, a), [B]. Discrete(n): an MLP from s to n values, the taken action's picked out (one forward pass
    scores every action). Box(d): an MLP on the concatenation [s, a] to one value."""

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: Sequence[int] = (64, 64),
                 activation: str = "tanh"):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        act_dim = 0 if self.discrete else int(np.prod(action_space.shape))
        self.trunk = mlp(obs_dim + act_dim, hidden, activation)
        width = hidden[-1] if hidden else obs_dim + act_dim
        self.head = layer_init(nn.Linear(width, int(action_space.n) if self.discrete else 1), gain=1.0)

    def all_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """Q(s, ·), [B, n] (Discrete only)."""
        return self.head(self.trunk(obs))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return self.all_actions(obs).gather(-1, actions.long().view(-1, 1)).squeeze(-1)
        return self.head(self.trunk(torch.cat([obs, actions], dim=-1))).squeeze(-1)


class QActorCritic(nn.Module):
    """π(·|s) (``ActorCritic`` without a value head) and a separate :class:`QCritic`."""

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: Sequence[int] = (64, 64),
                 activation: str = "tanh", log_std_init: float = 0.0):
        super().__init__()
        self.policy = ActorCritic(obs_dim, action_space, hidden, activation, critic=False, log_std_init=log_std_init)
        self.critic_q = QCritic(obs_dim, action_space, hidden, activation)
        self.discrete = self.policy.discrete

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """a ~ π(·|s); returns (a, log π(a|s), Q(s, a))."""
        action, logprob, _ = self.policy.act(obs)
        return action, logprob, self.critic_q(obs, action)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """Q(s, a') with a' ~ π(·|s): a one-sample estimate of V(s), what the Sarsa target bootstraps from."""
        action, _, _ = self.policy.act(obs)
        return self.critic_q(obs, action)

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log π(a|s), entropy of π(·|s), Q(s, a)), each [B]."""
        logprob, entropy, _ = self.policy.evaluate_actions(obs, actions)
        return logprob, entropy, self.critic_q(obs, actions)

    @torch.no_grad()
    def baseline(self, obs: torch.Tensor) -> torch.Tensor:
        """b(s), depending on s only (so subtracting it adds no bias): E_{a~π} Q(s, a) = Σ_a π(a|s) Q(s, a) for
        Discrete, Q(s, μ(s)) at the Gaussian's mean for Box."""
        if self.discrete:
            probs = self.policy.distribution(obs).probs  # [B, n]
            return (probs * self.critic_q.all_actions(obs)).sum(-1)
        return self.critic_q(obs, self.policy.deterministic(obs))

    @torch.no_grad()
    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy.deterministic(obs)

"""Discrete SAC's networks: a categorical actor and twin critics that output Q(s, ·) for every action, both critics
in one batched forward (``classic_rl.continuous.EnsembleMLP``, held equal to separate MLPs in its tests).

With a finite action set there is nothing to sample inside the losses: the critics give every Q(s, a) at once and
the policy every π(a|s), so expectations over actions are exact sums (Christodoulou 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from classic_rl.continuous import EnsembleMLP, mlp


class CategoricalActor(nn.Module):
    """π(·|s) = softmax(MLP(s)) over ``n_actions`` actions."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, n_actions)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(π(·|s), log π(·|s)), each [B, A]; log_softmax keeps log π finite where a probability underflows."""
        log_probs = F.log_softmax(self.net(obs), dim=-1)
        return log_probs.exp(), log_probs

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation action argmax_a π(a|s) [B] (the mode)."""
        return self.net(obs).argmax(dim=-1)

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """An action sampled from π(·|s) [B] (SAC explores with its own stochasticity)."""
        return torch.multinomial(self(obs)[0], 1).squeeze(-1)


class DiscreteQEnsemble(nn.Module):
    """``n`` critics Q_i(s, ·), one batched forward: obs [B, o] -> [n, B, A]."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int], n: int = 2):
        super().__init__()
        self.net = EnsembleMLP(n, obs_dim, hidden, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)  # [n, B, A]

"""D4PG's networks: DDPG's deterministic actor (``classic_rl/continuous.py``) and a categorical critic.

The critic outputs logits of the return distribution Z(s, a) over fixed atoms z_0 < ... < z_{N-1}: [B, N]. Its
mean Q(s, a) = Σ_j p_j z_j is what the actor climbs (the deterministic policy gradient through the mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from classic_rl.continuous import DeterministicActor, mlp
from distributional_rl.categorical import expected_value

__all__ = ["CategoricalCritic", "DeterministicActor"]


class CategoricalCritic(nn.Module):
    """MLP on [s, a] -> logits over ``support`` ([B, N]); :meth:`q` gives the mean."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], support: torch.Tensor):
        super().__init__()
        self.net = mlp(obs_dim + act_dim, hidden, len(support))
        self.register_buffer("support", support.clone())  # fixed atoms: saved with the weights, moved with them

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, actions], dim=-1))  # [B, N] logits

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return expected_value(torch.softmax(self(obs, actions), dim=-1), self.support)  # [B]

"""AWAC's networks: a Gaussian actor whose log-density the actor update weights, and twin critics (the family's
batched ``QEnsemble``), both reading observations through the dataset's fixed normalisation.

Actions live in [-1, 1]^d (the dataset's actions are mapped there once, ``OfflineDataset.unit_actions``; the envs
rescale back with ``rl_utils.make_env(unit_actions=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from classic_rl.continuous import QEnsemble, mlp

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class ObsNormalizer(nn.Module):
    """(s − mean) / std with the dataset's statistics as buffers: they are part of every ``state_dict``, so a
    checkpoint carries them and ``--eval-only`` or a rollout normalises exactly as training did."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std


class GaussianActor(nn.Module):
    """π(a|s) = N(μ(s), diag σ²) with μ(s) = tanh(MLP(s)) ∈ [-1, 1]^d and a state-independent log σ clamped to
    [−6, 0] (rlkit's and d3rlpy's AWAC).

    Unlike SAC's policy there is no tanh on the *sample*: AWAC's update evaluates log π at the dataset's actions,
    and a squashed density is infinite at the ±1 bounds that behaviour data often hit. Samples are clipped to
    [-1, 1] instead (CORL)."""

    LOG_STD_MIN, LOG_STD_MAX = -6.0, 0.0

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.normalizer = ObsNormalizer(obs_dim)
        self.net = mlp(obs_dim, hidden, act_dim)
        # σ = e⁻¹ ≈ 0.37 to start: inside the clamp range (at its bound 0 the clamp would pass no gradient)
        self.log_std = nn.Parameter(torch.full((act_dim,), -1.0))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tanh(self.net(self.normalizer(obs)))  # [B, d]
        return mean, self.log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX).expand_as(mean)

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log π(a|s) [B], summed over the d action dimensions."""
        mean, log_std = self(obs)
        z = (actions - mean) / log_std.exp()
        return (-0.5 * z.pow(2) - log_std - HALF_LOG_2PI).sum(-1)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """a ~ π(·|s), clipped to [-1, 1] [B, d] (no gradient is taken through it)."""
        mean, log_std = self(obs)
        return (mean + log_std.exp() * torch.randn_like(mean)).clamp(-1.0, 1.0)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation action μ(s)."""
        return self(obs)[0]

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """Online fine-tuning acts with the policy's own samples."""
        return self.sample(obs)


class Critics(nn.Module):
    """Twin Q_i(s, a) on normalised observations: obs [B, o], actions [B, d] -> [n, B]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], n: int = 2):
        super().__init__()
        self.normalizer = ObsNormalizer(obs_dim)
        self.q = QEnsemble(obs_dim, act_dim, hidden, n)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.q(self.normalizer(obs), actions)

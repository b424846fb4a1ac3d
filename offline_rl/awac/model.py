"""AWAC's networks: a Gaussian actor whose log-density the actor update weights, and twin critics
(``offline_rl.common.Critics``), both reading observations through the dataset's fixed normalisation.

Actions live in [-1, 1]^d (the dataset's actions are mapped there once, ``OfflineDataset.unit_actions``; the envs
rescale back with ``rl_utils.make_env(unit_actions=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from classic_rl.continuous import mlp
from offline_rl.common import Critics, ObsNormalizer  # noqa: F401  (Critics: AWAC's twin critics)

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


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

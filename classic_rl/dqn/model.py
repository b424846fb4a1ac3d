"""Q-networks for the DQN family.

Every network maps a batch of observations to one Q-value per action, ``Q(s, ·)``: shape ``[B, n_actions]``.
It is a *trunk* (features) followed by a *head*. With ``dueling=True`` the head splits into a state-value
stream ``V(s)`` and an advantage stream ``A(s, a)`` recombined as ``Q = V + A - mean_a A`` (Wang et al. 2016).
With ``n_atoms > 1`` the head gives ``n_atoms`` outputs per action, ``[B, n_actions * n_atoms]`` (C51's logits of
a return distribution per action: ``distributional_rl/c51/model.py``); dueling then combines per atom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def nature_cnn_trunk(in_channels: int) -> nn.Sequential:
    """The convolutional trunk of Mnih et al. 2015 ("Nature DQN") for 84x84 frames: 3136 features."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=8, stride=4),  # [B, 32, 20, 20]
        nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=4, stride=2),  # [B, 64, 9, 9]
        nn.ReLU(),
        nn.Conv2d(64, 64, kernel_size=3, stride=1),  # [B, 64, 7, 7]
        nn.ReLU(),
        nn.Flatten(),  # [B, 3136]
    )


class DuelingHead(nn.Module):
    """``Q(s,a) = V(s) + A(s,a) - mean_a' A(s,a')``. Subtracting the mean makes V and A identifiable (adding a
    constant to A and removing it from V would otherwise give the same Q) and keeps A's scale small."""

    def __init__(self, in_features: int, hidden: int, n_actions: int, n_atoms: int = 1):
        super().__init__()
        self.n_actions, self.n_atoms = n_actions, n_atoms
        self.value = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, n_atoms))
        self.advantage = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(),
                                       nn.Linear(hidden, n_actions * n_atoms))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        value = self.value(features).unsqueeze(1)  # [B, 1, N]
        advantage = self.advantage(features).view(-1, self.n_actions, self.n_atoms)  # [B, A, N]
        return (value + advantage - advantage.mean(dim=1, keepdim=True)).flatten(1)  # [B, A * N] (N = 1: [B, A])


class QNetwork(nn.Module):
    """Q-network: an MLP for vector observations, the Nature-CNN for image stacks ``[C, 84, 84]`` (uint8 frames
    are scaled to [0, 1] here, so the replay buffer can keep them as bytes)."""

    def __init__(
        self,
        obs_shape: Sequence[int],
        n_actions: int,
        hidden_sizes: Sequence[int] = (256, 256),
        dueling: bool = False,
        n_atoms: int = 1,
    ):
        super().__init__()
        self.is_image = len(obs_shape) == 3
        if self.is_image:
            self.trunk = nature_cnn_trunk(obs_shape[0])
            features, head_hidden = 3136, 512
        else:
            if len(hidden_sizes) < 1:
                raise ValueError("hidden_sizes needs at least one layer")
            layers: list[nn.Module] = []
            width = math.prod(obs_shape)
            for size in hidden_sizes[:-1]:
                layers += [nn.Linear(width, size), nn.ReLU()]
                width = size
            self.trunk = nn.Sequential(nn.Flatten(), *layers)
            features, head_hidden = width, hidden_sizes[-1]
        if dueling:
            self.head: nn.Module = DuelingHead(features, head_hidden, n_actions, n_atoms)
        else:
            self.head = nn.Sequential(nn.Linear(features, head_hidden), nn.ReLU(),
                                      nn.Linear(head_hidden, n_actions * n_atoms))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() / 255.0 if self.is_image else obs.float()
        return self.head(self.trunk(x))  # [B, n_actions * n_atoms]

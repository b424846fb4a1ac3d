"""ACER's network and its segment replay.

* :class:`ACERNet`: one MLP trunk with two heads, the policy's logits (π(·|s) = softmax) and Q(s, ·), one value per
  action; V(s) = Σ_a π(a|s) Q(s, a) is derived, not learned (Wang et al. 2017, §3: the critic is Q, and V follows
  from it). ``shared=False`` gives the Q head a trunk of its own.
* :class:`SegmentReplay`: a FIFO of whole trajectory segments of ``num_steps`` steps of one env each, with the
  behaviour policy's probabilities μ(·|s) of every step (what the importance weights need) and, per step,
  ``terminated`` / ``truncated`` as rl_utils' convention has them: a truncated step keeps the real final
  observation (its bootstrap state), a terminated one bootstraps from nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from classic_rl.policies import fast_forward, layer_init, mlp


class ACERNet(nn.Module):
    """π(·|s) logits and Q(s, ·) for a flat observation and ``n_actions`` discrete actions; ``obs`` [B, obs_dim]
    -> ``forward`` gives (logits [B, A], q [B, A])."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh",
                 shared: bool = True):
        super().__init__()
        self.trunk = mlp(obs_dim, hidden, activation)
        self.q_trunk = None if shared else mlp(obs_dim, hidden, activation)
        width = hidden[-1] if hidden else obs_dim
        self.policy_head = layer_init(nn.Linear(width, n_actions), gain=0.01)  # near-uniform initial policy
        self.q_head = layer_init(nn.Linear(width, n_actions), gain=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = fast_forward(self.trunk, obs)
        q_features = features if self.q_trunk is None else fast_forward(self.q_trunk, obs)
        return self.policy_head(features), self.q_head(q_features)

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return F.linear(fast_forward(self.trunk, obs), self.policy_head.weight, self.policy_head.bias)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s) = Σ_a π(a|s) Q(s, a), [B]."""
        logits, q = self(obs)
        return (logits.softmax(-1) * q).sum(-1)

    @torch.no_grad()
    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation action: argmax π."""
        return self.logits(obs).argmax(-1)


class SegmentReplay:
    """FIFO storage of ``capacity`` segments, each ``num_steps`` consecutive steps of one env.

    Per segment: ``obs`` [T + 1, ...] (the T observations acted in and the one after the last step, the
    bootstrap state), ``actions``, ``rewards``, ``terminated``, ``truncated`` [T], ``final_obs`` [T, ...] (the
    real last observation where ``truncated``, zeros elsewhere) and ``mu`` [T, A], the behaviour policy's
    probabilities. Storage is numpy (cheap writes); :meth:`sample` returns time-major ``[T, B, ...]`` tensors."""

    FIELDS = ("obs", "actions", "rewards", "terminated", "truncated", "final_obs", "mu")

    def __init__(self, capacity: int, num_steps: int, obs_shape: tuple[int, ...], n_actions: int):
        self.capacity, self.num_steps = capacity, num_steps
        lead, t = (capacity,), num_steps
        self.store: dict[str, np.ndarray] = {
            "obs": np.zeros((*lead, t + 1, *obs_shape), np.float32),
            "actions": np.zeros((*lead, t), np.int64),
            "rewards": np.zeros((*lead, t), np.float32),
            "terminated": np.zeros((*lead, t), bool),
            "truncated": np.zeros((*lead, t), bool),
            "final_obs": np.zeros((*lead, t, *obs_shape), np.float32),
            "mu": np.zeros((*lead, t, n_actions), np.float32),
        }
        self.pos = self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, segment: dict[str, np.ndarray]) -> None:
        """Store the segments of one rollout: every field time-major, ``[T (+1), N, ...]``: N segments."""
        n = segment["actions"].shape[1]
        idx = (self.pos + np.arange(n)) % self.capacity
        for name in self.FIELDS:
            self.store[name][idx] = np.swapaxes(segment[name], 0, 1)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """``batch_size`` stored segments, uniformly (numpy's global generator: checkpoints save it)."""
        idx = np.random.randint(0, self.size, size=batch_size)
        return as_tensors({name: np.swapaxes(self.store[name][idx], 0, 1) for name in self.FIELDS}, device)

    def state_dict(self) -> dict[str, Any]:
        return {"pos": self.pos, "size": self.size,
                **{name: self.store[name][:self.size].copy() for name in self.FIELDS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        size = int(state["size"])
        for name in self.FIELDS:
            if state[name].shape[1:] != self.store[name].shape[1:] or size > self.capacity:
                raise ValueError(f"saved replay field {name} has shape {state[name].shape}, this configuration "
                                 f"stores {self.store[name].shape}")
            self.store[name][:size] = state[name]
        self.pos, self.size = int(state["pos"]), size


def as_tensors(segment: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    return {name: torch.as_tensor(np.ascontiguousarray(value), device=device) for name, value in segment.items()}

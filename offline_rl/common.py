"""What the offline-RL learners (AWAC, BC, BCQ) share beyond ``classic_rl/off_policy.py``: their flags, the
observation normaliser with the dataset's fixed statistics, twin critics on normalised observations, the dataset
loaded into the replay buffer, and summary.json in offline terms (gradient steps, D4RL's normalised score).

The step counter of an offline run is the number of gradient steps; a script that fine-tunes online goes on
counting offline steps + env steps, so one curve shows the switch. Each ``train.py`` keeps its losses, its
update and its loop: the part its algorithm is about.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import rl_utils
from classic_rl import off_policy
from classic_rl.continuous import QEnsemble
from offline_rl import datasets

# ----------------------------------------------------------------------------------------------------------------
# Flags
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class OfflineArgs(off_policy.OffPolicyArgs):
    """Flags of every offline learner (the off-policy family's, with offline defaults)."""

    dataset: str = ""
    """a D4RL-layout .hdf5 file or a Minari dataset id (make them with offline_rl/make_datasets.py)"""
    env_id: str = ""
    """env to evaluate (and fine-tune) on (default: the env the dataset records)"""
    offline_steps: int = 100_000
    """gradient steps on the dataset alone (CORL: 1M; 100k is ~10-30 min on one CPU core)"""
    total_timesteps: int = 0
    """online fine-tuning env steps after the offline phase (0 = offline only)"""
    learning_starts: int = 0
    """online env steps before updates resume (the buffer already holds the dataset)"""
    buffer_size: int = 2_000_000
    """replay capacity: the dataset plus every online transition"""
    eval_every: int = 5_000
    """steps (offline: gradient steps; online: env steps) between deterministic evaluations (0 = only at the end)"""
    log_every: int = 1_000
    """steps between loss log rows"""

    LIMITS = {"offline_steps": (0, None), "total_timesteps": (0, None), "log_every": (1, None)}


class DatasetRunArgs(Protocol):
    """What the helpers below read of a script's flags (OfflineArgs, and the Decision Transformer's own Args)."""

    dataset: str
    env_id: str
    offline_steps: int


# ----------------------------------------------------------------------------------------------------------------
# Networks every offline learner reads observations through
# ----------------------------------------------------------------------------------------------------------------


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


class Critics(nn.Module):
    """Twin Q_i(s, a) on normalised observations (the family's batched ``QEnsemble``): obs [B, o],
    actions [B, d] -> [n, B]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], n: int = 2):
        super().__init__()
        self.normalizer = ObsNormalizer(obs_dim)
        self.q = QEnsemble(obs_dim, act_dim, hidden, n)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, members: int | None = None) -> torch.Tensor:
        """Q-values [n, B], or [members, B] of the first ``members`` critics only."""
        return self.q(self.normalizer(obs), actions, members)


def set_obs_stats(dataset: datasets.OfflineDataset, *nets: nn.Module) -> None:
    """Give every ``ObsNormalizer`` inside ``nets`` the dataset's observation mean and std (a fresh run only: a
    resumed one has them in its checkpoint)."""
    mean, std = dataset.obs_stats()
    for net in nets:
        for module in net.modules():
            if isinstance(module, ObsNormalizer):
                module.set(mean, std)


# ----------------------------------------------------------------------------------------------------------------
# The dataset, into the replay buffer
# ----------------------------------------------------------------------------------------------------------------


def load_dataset(args: DatasetRunArgs) -> datasets.OfflineDataset:
    """The dataset, checked against the env (``--env-id`` defaults to the one it records)."""
    if not args.dataset:
        raise rl_utils.UsageError("--dataset PATH_OR_MINARI_ID is required (make one with offline_rl/make_datasets.py)")
    dataset = datasets.load(args.dataset)
    if not args.env_id:
        args.env_id = dataset.metadata.get("env_id", "")
        if not args.env_id:
            raise rl_utils.UsageError("the dataset records no env: pass --env-id")
    dataset.check_env(args.env_id)
    return dataset


def preload(buffer: rl_utils.ReplayBuffer, dataset: datasets.OfflineDataset, env_id: str) -> None:
    """Put the dataset into the replay buffer in one copy: actions from the env's own bounds (the data's) onto
    [-1, 1], the space the policy and the training envs act in, ``terminated`` = terminals
    (masks), ``truncated`` = time-outs. Rows [T, num_envs]: with several envs a remainder of < num_envs
    transitions is left out (one-step targets do not care which column a transition sits in)."""
    k = buffer.num_envs
    n = len(dataset) // k * k
    raw = gym.make(env_id)
    actions = dataset.unit_actions(raw.action_space.low, raw.action_space.high)
    raw.close()
    fields = (dataset.observations, dataset.next_observations, actions, dataset.rewards, dataset.terminals,
              dataset.timeouts)
    buffer.extend(*(f[:n].reshape(n // k, k, *f.shape[1:]) for f in fields))


def prepare(session: off_policy.Session, ckpt: rl_utils.Checkpoint | None, args: OfflineArgs,
            dataset: datasets.OfflineDataset) -> None:
    """The data into the buffer (a fresh run, or a checkpoint saved without its replay) and, for a fresh run, the
    dataset's observation statistics into every network the session checkpoints."""
    if ckpt is None or ckpt["buffer"] is None:
        preload(session.buffer, dataset, args.env_id)
    if ckpt is None:
        set_obs_stats(dataset, session.actor, *(v for v in session.learner.values() if isinstance(v, nn.Module)))
        print(f"dataset {args.dataset}: {json.dumps(dataset.summary(), default=float)}")


# ----------------------------------------------------------------------------------------------------------------
# summary.json
# ----------------------------------------------------------------------------------------------------------------


def end(session: off_policy.Session, args: OfflineArgs, interrupted: bool) -> None:
    """The session's end (latest.pt; then the resume hint, or the final evaluation and summary.json), and the
    summary in offline terms."""
    session.end(interrupted)
    if not interrupted:
        extend_summary(session.run.run_dir / "summary.json", args, session.progress.global_step)


def extend_summary(path: Path, args: DatasetRunArgs, step: int) -> None:
    """summary.json's counters in offline terms (its ``env_steps`` is the step counter of both phases) and D4RL's
    normalised score of its returns (for envs with reference scores)."""
    summary = json.loads(path.read_text())
    summary.update(dataset=args.dataset, offline_steps=min(step, args.offline_steps),
                   online_env_steps=max(step - args.offline_steps, 0))
    if datasets.env_family(args.env_id) in datasets.REF_SCORES:
        for key in ("final_eval_return", "best_eval_return", "best_heldout_return"):
            summary[key.replace("return", "normalized_score")] = float(
                datasets.normalized_score(args.env_id, summary[key]))
        print(f"normalised score (D4RL's constants): final {summary['final_eval_normalized_score']:.1f}, "
              f"best.pt on held-out episodes {summary['best_heldout_normalized_score']:.1f}")
    rl_utils.write_text_atomic(path, json.dumps(summary, indent=2, default=float))

"""A small offline dataset made in seconds, for the offline-RL tests: Pendulum-v1 driven by a scripted
swing-up controller (energy pumping far from the top, a PD law near it) plus Gaussian action noise. The
controller scores about −140 per episode (a random policy: about −1,200; SAC after training: about −150), so
a learner that imitates the data should clearly beat random within a few thousand gradient steps."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from offline_rl import datasets


def swing_up(obs: np.ndarray) -> np.ndarray:
    """Torque [B, 1] in [−2, 2] for Pendulum observations [B, 3] = (cos θ, sin θ, θ̇)."""
    c, s, w = obs[:, 0], obs[:, 1], obs[:, 2]
    pd = -(10.0 * np.arctan2(s, c) + 2.0 * w)  # near the top: hold θ = 0
    energy = w**2 / 6.0 + 5.0 * (c - 1.0)  # < 0 below the upright energy: pump in the direction of motion
    pump = np.where(energy < 0, 2.0, -0.5) * np.sign(w + 1e-6)
    return np.clip(np.where(c > 0.85, pd, pump), -2.0, 2.0)[:, None].astype(np.float32)


def pendulum_dataset(path: Path, episodes: int = 20, noise: float = 0.5, seed: int = 0) -> datasets.OfflineDataset:
    """``episodes`` × 200 steps of the noisy controller, written to ``path`` (D4RL hdf5); returns the dataset."""
    env, rng = gym.make("Pendulum-v1"), np.random.default_rng(seed)
    rows: dict[str, list] = {name: [] for name in datasets.FIELDS}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + episode)
        done = False
        while not done:
            action = np.clip(swing_up(obs[None])[0] + noise * rng.standard_normal(1), -2.0, 2.0).astype(np.float32)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            for name, value in zip(datasets.FIELDS, (obs, action, reward, next_obs, terminated, truncated)):
                rows[name].append(value)
            obs, done = next_obs, terminated or truncated
    env.close()
    dataset = datasets.OfflineDataset(**{k: np.array(v) for k, v in rows.items()},
                                      metadata={"env_id": "Pendulum-v1", "kind": "scripted-noisy"})
    datasets.save_hdf5(dataset, path)
    return dataset

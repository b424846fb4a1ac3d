"""``CartPoleNoVelocity-v1``: CartPole-v1 with its two velocities hidden, the memory task of the Pong study.

CartPole-v1 observes (cart position x, cart velocity ẋ, pole angle θ, pole angular velocity θ̇); this env keeps
only (x, θ). The dynamics, reward (+1 per step), termination (|θ| > 12°, |x| > 2.4) and the 500-step limit are
CartPole-v1's. Balancing needs to know which way the pole is moving, and a single observation no longer says:
the same (x, θ) arrives with the pole falling left or right. A policy that reads only the current observation
(an MLP) cannot tell the two apart; one that sees the previous observations (the Transformer's window) can take
their difference, which is the velocity up to the 0.02 s time step.

    import gymnasium as gym, classic_rl.pong.envs  # noqa: registers the id
    env = gym.make("CartPoleNoVelocity-v1")
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

KEEP = [0, 2]  # x and θ of CartPole's (x, ẋ, θ, θ̇)


class CartPoleNoVelocityEnv(CartPoleEnv):
    """CartPole whose observation is (x, θ), Box (2,) float32: the same physics, the velocities left out."""

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        super().__init__(render_mode=render_mode, **kwargs)
        full = self.observation_space
        self.observation_space = gym.spaces.Box(full.low[KEEP], full.high[KEEP], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        obs, info = super().reset(seed=seed, options=options)
        return obs[KEEP], info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs[KEEP], reward, terminated, truncated, info


if "CartPoleNoVelocity-v1" not in gym.registry:
    gym.register("CartPoleNoVelocity-v1", entry_point=CartPoleNoVelocityEnv, max_episode_steps=500,
                 reward_threshold=475.0)

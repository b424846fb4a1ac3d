"""``Navigation2D-v0``: the 2-D point env DIAYN's skills are easiest to see in.

A point starts near the centre of the square [-1, 1]² and moves by ``max_step`` × the action (a ∈ [-1, 1]², the
step clipped at the walls); the observation is its position; an episode is truncated after 50 steps (never
terminated). In 50 steps of 0.1 the point can cross the square 2.5 times, so a skill can reach any wall or corner
and stay there: with K skills, a discriminator that reads the position alone is right most of the time only if
the K skills end up in K different regions.

The env's own reward, −‖position − goal‖ (goal (0.7, 0.7) by default), is *not* what DIAYN trains on: the script
only reports it per skill, as the paper does when it asks which learned skill happens to solve a task.

    import gymnasium as gym, classic_rl.diayn.envs  # noqa: registers the id
    env = gym.make("Navigation2D-v0")
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class Navigation2DEnv(gym.Env):
    """A point in [-1, 1]² (the observation), moved by an action in [-1, 1]² scaled to ``max_step``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, max_step: float = 0.1, start_noise: float = 0.05, goal: tuple[float, float] = (0.7, 0.7),
                 render_mode: str | None = None):
        self.max_step, self.start_noise = max_step, start_noise
        self.goal = np.asarray(goal, dtype=np.float32)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.pos = np.zeros(2, dtype=np.float32)
        self.path: list[np.ndarray] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-self.start_noise, self.start_noise, 2).astype(np.float32)
        self.path = [self.pos.copy()]
        return self.pos.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        move = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0) * self.max_step
        self.pos = np.clip(self.pos + move, -1.0, 1.0).astype(np.float32)
        self.path.append(self.pos.copy())
        reward = -float(np.linalg.norm(self.pos - self.goal))
        return self.pos.copy(), reward, False, False, {}

    def render(self) -> np.ndarray | None:
        """A 128×128 picture: the square, the goal (red), the path so far (grey) and the point (blue)."""
        if self.render_mode != "rgb_array":
            return None
        size = 128
        frame = np.full((size, size, 3), 255, dtype=np.uint8)
        to_px = lambda p: np.clip(((np.asarray(p) + 1.0) / 2.0 * (size - 1)).astype(int), 0, size - 1)  # noqa: E731
        for p in self.path:
            x, y = to_px(p)
            frame[size - 1 - y, x] = (150, 150, 150)
        for point, colour, r in ((self.goal, (220, 30, 30), 3), (self.pos, (30, 60, 220), 3)):
            x, y = to_px(point)
            frame[max(size - 1 - y - r, 0):size - y + r, max(x - r, 0):x + r + 1] = colour
        return frame


if "Navigation2D-v0" not in gym.registry:
    gym.register("Navigation2D-v0", entry_point=Navigation2DEnv, max_episode_steps=50)

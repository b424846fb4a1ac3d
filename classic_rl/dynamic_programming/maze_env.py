"""The notes' 4×4 maze as a small gymnasium env: ``gym.make("Maze4x4-v0")``.

    S . . .        S  start (row 0, col 0)
    . . H .        H  hell: reward −1, episode ends
    . H G .        G  paradise: reward +1, episode ends
    . . . .        every other move: reward 0; walking into a wall leaves the agent in place

Actions follow the original (Morvan's Tk maze): 0 up, 1 down, 2 right, 3 left. Like gymnasium's toy-text envs it
exposes the full transition table ``env.unwrapped.P[s][a] = [(prob, next_state, reward, terminated)]`` so dynamic
programming can solve it, and renders as text (``render_mode="ansi"``) or as an RGB image (``"rgb_array"``, drawn
with numpy alone, no pygame window).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

MAZE_ID = "Maze4x4-v0"
LAYOUT = ("SFFF", "FFHF", "FHGF", "FFFF")  # FrozenLake-style letters: S start, F free, H hell, G goal
ACTION_DELTAS = ((-1, 0), (1, 0), (0, 1), (0, -1))  # (d_row, d_col) of actions 0 up, 1 down, 2 right, 3 left
ACTION_NAMES = ("up", "down", "right", "left")
CELL = 40  # pixels per cell in rgb_array mode, as in the original Tk window


class Maze4x4Env(gym.Env):
    """Deterministic 4×4 grid with two hells (−1) and one paradise (+1); observations are ``row * 4 + col``."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    action_deltas = ACTION_DELTAS  # used by the DP/tabular plots to draw policy arrows

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.desc = np.asarray([list(row) for row in LAYOUT], dtype="c")  # [4, 4] bytes, like FrozenLake's desc
        self.nrow, self.ncol = self.desc.shape
        n_states = self.nrow * self.ncol
        self.observation_space = gym.spaces.Discrete(n_states)
        self.action_space = gym.spaces.Discrete(len(ACTION_DELTAS))
        self.initial_state_distrib = np.zeros(n_states)
        self.initial_state_distrib[0] = 1.0
        self.P = {s: {a: [self._transition(s, a)] for a in range(4)} for s in range(n_states)}
        self.s = 0
        self.lastaction: int | None = None

    def _transition(self, s: int, a: int) -> tuple[float, int, float, bool]:
        row, col = divmod(s, self.ncol)
        if self.desc[row, col] in b"HG":  # terminal cells: absorbing, no reward (never stepped from in practice)
            return (1.0, s, 0.0, True)
        d_row, d_col = ACTION_DELTAS[a]
        row = min(max(row + d_row, 0), self.nrow - 1)
        col = min(max(col + d_col, 0), self.ncol - 1)
        letter = self.desc[row, col]
        reward = {b"H": -1.0, b"G": 1.0}.get(bytes(letter), 0.0)
        return (1.0, row * self.ncol + col, reward, bool(letter in b"HG"))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self.s = int(self.np_random.choice(len(self.initial_state_distrib), p=self.initial_state_distrib))
        self.lastaction = None
        return self.s, {"prob": 1.0}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        prob, s, reward, terminated = self.P[self.s][int(action)][0]
        self.s, self.lastaction = s, int(action)
        return s, reward, terminated, False, {"prob": prob}

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return self._render_text()
        if self.render_mode == "rgb_array":
            return self._render_rgb()
        return None

    def _render_text(self) -> str:
        rows = []
        for r in range(self.nrow):
            cells = []
            for c in range(self.ncol):
                letter = self.desc[r, c].decode()
                cells.append(f"[{letter}]" if r * self.ncol + c == self.s else f" {letter} ")
            rows.append("".join(cells))
        moved = f"  ({ACTION_NAMES[self.lastaction]})\n" if self.lastaction is not None else "\n"
        return moved + "\n".join(rows) + "\n"

    def _render_rgb(self) -> np.ndarray:
        h, w = self.nrow * CELL, self.ncol * CELL
        img = np.full((h, w, 3), 255, dtype=np.uint8)  # [H, W, RGB]
        img[::CELL, :] = img[:, ::CELL] = 0  # grid lines
        img[-1, :] = img[:, -1] = 0
        yy, xx = np.mgrid[0:CELL, 0:CELL]
        disc = (yy - CELL / 2) ** 2 + (xx - CELL / 2) ** 2 <= (CELL / 2 - 5) ** 2  # [CELL, CELL] circle mask
        for r in range(self.nrow):
            for c in range(self.ncol):
                cell = img[r * CELL + 5:(r + 1) * CELL - 5, c * CELL + 5:(c + 1) * CELL - 5]
                if self.desc[r, c] == b"H":
                    cell[:] = (0, 0, 0)  # hells are black squares
                elif self.desc[r, c] == b"G":
                    block = img[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL]
                    block[disc] = (255, 215, 0)  # paradise is a yellow disc
        r, c = divmod(self.s, self.ncol)
        img[r * CELL + 10:(r + 1) * CELL - 10, c * CELL + 10:(c + 1) * CELL - 10] = (220, 30, 30)  # agent: red
        return img


def register() -> None:
    """Register ``Maze4x4-v0`` (idempotent). 100 steps per episode at most, so a bad policy cannot loop forever."""
    if MAZE_ID not in gym.registry:
        gym.register(id=MAZE_ID, entry_point=Maze4x4Env, max_episode_steps=100)


register()

"""Goal-conditioned envs for HER, with gymnasium-robotics' ``GoalEnv`` interface (so the same code runs on
FetchReach): a Dict observation ``{"observation", "achieved_goal", "desired_goal"}``, ``info["is_success"]``, and
a vectorised ``compute_reward(achieved_goal, desired_goal, info)`` that HER calls on relabelled goals.

* ``BitFlipping-v0`` (Andrychowicz et al. 2017, §3.1): n bits, action i flips bit i, reward −1 until the state
  equals the target, 0 then (and the episode terminates); the episode is truncated after n steps (the paper's
  horizon: any target is reachable in ≤ n flips), whatever n is, so the env itself keeps that limit. With a
  random target, the chance that exploration ever sees reward 0 falls as 2⁻ⁿ: plain DQN fails beyond ~13 bits
  (the paper), HER learns from every episode by pretending the reached state was the goal.
* ``PointReach-v0``: a point in the unit square moved by a bounded 2-D action; reward −1 until it is within
  ``distance_threshold`` of the target (then 0, terminated). A fast stand-in for FetchReach in tests.

    import gymnasium as gym, classic_rl.her.envs  # noqa: registers the ids
    env = gym.make("BitFlipping-v0", n_bits=15)
    env = gym.make("PointReach-v0")
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class BitFlippingEnv(gym.Env):
    """n bits as a float32 0/1 vector (an MLP reads it directly); ``Discrete(n)`` actions flip one bit; truncated
    after n steps."""

    metadata = {"render_modes": []}
    success_terminates = True  # reaching the goal ends the episode (HER recomputes `terminated` when relabelling)

    def __init__(self, n_bits: int = 15):
        if n_bits < 1:
            raise ValueError(f"n_bits must be >= 1, got {n_bits}")
        self.n_bits = n_bits
        bits = gym.spaces.Box(0.0, 1.0, (n_bits,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict({"observation": bits, "achieved_goal": bits, "desired_goal": bits})
        self.action_space = gym.spaces.Discrete(n_bits)
        self.state = np.zeros(n_bits, dtype=np.float32)
        self.goal = np.zeros(n_bits, dtype=np.float32)
        self.steps = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self.state.copy(), "achieved_goal": self.state.copy(), "desired_goal": self.goal.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.state = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        self.goal = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        while np.array_equal(self.state, self.goal):  # start off the goal: every episode has something to do
            self.goal = self.np_random.integers(0, 2, self.n_bits).astype(np.float32)
        self.steps = 0
        return self._obs(), {"is_success": 0.0}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        self.state[int(action)] = 1.0 - self.state[int(action)]
        self.steps += 1
        reward = float(self.compute_reward(self.state, self.goal, {}))
        success = reward == 0.0
        return self._obs(), reward, success, self.steps >= self.n_bits and not success, {"is_success": float(success)}

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """0 where every bit matches, −1 elsewhere; works on one goal ``[n]`` or a batch ``[B, n]``."""
        return -(np.abs(np.asarray(achieved_goal) - np.asarray(desired_goal)).sum(-1) > 0).astype(np.float32)


class PointReachEnv(gym.Env):
    """A point in [0, 1]² moved by an action in [−1, 1]² scaled to ``max_step``; the target is another point."""

    metadata = {"render_modes": []}
    success_terminates = True

    def __init__(self, distance_threshold: float = 0.05, max_step: float = 0.1):
        self.distance_threshold, self.max_step = distance_threshold, max_step
        square = gym.spaces.Box(0.0, 1.0, (2,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict({"observation": square, "achieved_goal": square,
                                                  "desired_goal": square})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.pos = np.zeros(2, dtype=np.float32)
        self.goal = np.zeros(2, dtype=np.float32)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self.pos.copy(), "achieved_goal": self.pos.copy(), "desired_goal": self.goal.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(0.0, 1.0, 2).astype(np.float32)
        self.goal = self.np_random.uniform(0.0, 1.0, 2).astype(np.float32)
        return self._obs(), {"is_success": float(self._reached(self.pos, self.goal))}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        move = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0) * self.max_step
        self.pos = np.clip(self.pos + move, 0.0, 1.0).astype(np.float32)
        success = bool(self._reached(self.pos, self.goal))
        return self._obs(), float(self.compute_reward(self.pos, self.goal, {})), success, False, \
            {"is_success": float(success)}

    def _reached(self, achieved: np.ndarray, desired: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(achieved) - np.asarray(desired), axis=-1) <= self.distance_threshold

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """0 within ``distance_threshold`` of the goal, −1 elsewhere; one goal ``[2]`` or a batch ``[B, 2]``."""
        return self._reached(achieved_goal, desired_goal).astype(np.float32) - 1.0


if "BitFlipping-v0" not in gym.registry:
    gym.register("BitFlipping-v0", entry_point=BitFlippingEnv)  # truncates itself after n_bits steps
if "PointReach-v0" not in gym.registry:
    gym.register("PointReach-v0", entry_point=PointReachEnv, max_episode_steps=50)


def bit_flipping_id(n_bits: int) -> str:
    """``BitFlipping{n}-v0``: ``BitFlipping-v0`` with ``n_bits`` fixed, registered on first use, so code that makes
    envs from an id alone (rl_utils.make_env, evaluation) builds the right one."""
    env_id = f"BitFlipping{n_bits}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=BitFlippingEnv, kwargs={"n_bits": n_bits})
    return env_id


def ensure_registered(env_id: str) -> None:
    """gymnasium-robotics' goal envs (``FetchReach-v4``, ...) register when it is imported: do that only for an
    id gymnasium does not know yet (the import costs ~1 s and prints a notice to stderr about Adroit envs we do
    not use; it is swallowed so a bad ``--env-id`` still gets exactly one ``error:`` line)."""
    if env_id in gym.registry:
        return
    try:
        import contextlib
        import io
        import warnings

        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            import gymnasium_robotics
    except ImportError:  # the id stays unknown: rl_utils.check_env_id then says so in one line
        return
    gym.register_envs(gymnasium_robotics)


def success_terminates(env: gym.Env) -> bool:
    """Does reaching the goal end an episode? Ours say so (``success_terminates = True``); gymnasium-robotics'
    Fetch envs run to their time limit whatever happens, so for them (and any env that does not say) False."""
    return bool(getattr(env, "success_terminates", False))

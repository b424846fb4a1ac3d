"""The episode loop shared by train.py and example_6_6.py, plus env creation and greedy evaluation."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

import rl_utils
from classic_rl.dynamic_programming import maze_env  # noqa: F401 - registers Maze4x4-v0
from classic_rl.dynamic_programming.dp import require_tabular
from classic_rl.tabular.agents import TDAgent


def make_tabular_env(env_id: str, is_slippery: str = "auto", max_episode_steps: int = 0) -> gym.Env:
    """``gym.make`` with the optional slipperiness override; a one-line UsageError for non-tabular envs."""
    rl_utils.check_env_id(env_id)
    kwargs: dict = {}
    if is_slippery != "auto":
        if is_slippery not in ("true", "false"):
            raise rl_utils.UsageError(f"--is-slippery must be auto, true or false, got {is_slippery!r}")
        kwargs["is_slippery"] = is_slippery == "true"
    if max_episode_steps > 0:
        kwargs["max_episode_steps"] = max_episode_steps
    try:
        env = gym.make(env_id, **kwargs)
    except TypeError as err:
        raise rl_utils.UsageError(f"{env_id} does not accept these options ({err})") from None
    require_tabular(env, env_id, "tabular TD control")
    return env


def run_episode(env: gym.Env, agent: TDAgent, seed: int | None = None, max_steps: int = 100_000) -> tuple[float, int]:
    """One learning episode; returns (undiscounted return, length).

    Sarsa-style agents pick a' before updating Q(s, a) (their target uses it, and it is the action taken next);
    the others update first and then pick the next action from the updated table, as in Sutton & Barto's boxes."""
    s, _ = env.reset(seed=seed)
    a = agent.act(s)
    total, steps = 0.0, 0
    while steps < max_steps:
        s2, r, terminated, truncated, _ = env.step(a)
        total += float(r)
        steps += 1
        if agent.needs_next_action:
            a2 = agent.act(s2)
            agent.update(s, a, float(r), s2, a2, terminated)
        else:
            agent.update(s, a, float(r), s2, None, terminated)
            a2 = agent.act(s2)
        if terminated or truncated:
            break
        s, a = s2, a2
    agent.end_episode()
    return total, steps


def train(env: gym.Env, agent: TDAgent, episodes: int, seed: int, epsilon: float, epsilon_decay: float = 1.0,
          epsilon_min: float = 0.0, on_episode: Callable[[int, float, int], None] | None = None) -> np.ndarray:
    """``episodes`` learning episodes; ε ← max(ε_min, ε · decay) after each. Returns the returns, shape [episodes].
    The env is seeded once, on the first reset, so the whole run is fixed by ``seed``."""
    returns = np.empty(episodes)
    agent.epsilon = epsilon
    for ep in range(episodes):
        ret, length = run_episode(env, agent, seed=seed if ep == 0 else None)
        returns[ep] = ret
        if on_episode is not None:
            on_episode(ep, ret, length)
        agent.epsilon = max(epsilon_min, agent.epsilon * epsilon_decay)
    return returns


def evaluate_greedy(env: gym.Env, Q: np.ndarray, episodes: int, seed: int, max_steps: int = 1000) -> np.ndarray:
    """Undiscounted returns of the greedy policy argmax_a Q(s, a) (lowest index among ties). Episodes are capped at
    ``max_steps`` because a greedy policy can walk in circles forever in an env without a time limit."""
    returns = np.empty(episodes)
    for i in range(episodes):
        s, _ = env.reset(seed=seed + i)
        total = 0.0
        for _ in range(max_steps):
            s, r, terminated, truncated, _ = env.step(int(Q[s].argmax()))
            total += float(r)
            if terminated or truncated:
                break
        returns[i] = total
    return returns


def greedy_path(env: gym.Env, Q: np.ndarray, seed: int = 0, max_steps: int = 200) -> tuple[list[int], float, bool]:
    """One greedy episode: (states visited, start included; undiscounted return; whether it terminated)."""
    s, _ = env.reset(seed=seed)
    path, total = [int(s)], 0.0
    for _ in range(max_steps):
        s, r, terminated, truncated, _ = env.step(int(Q[s].argmax()))
        path.append(int(s))
        total += float(r)
        if terminated or truncated:
            return path, total, bool(terminated)
    return path, total, False

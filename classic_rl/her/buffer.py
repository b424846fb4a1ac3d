"""Hindsight Experience Replay (Andrychowicz et al. 2017): a replay of whole goal-env episodes whose goals are
relabelled when sampled, one buffer for DQN+HER and DDPG+HER.

A transition of a goal env is (o_t, g, a_t, o_{t+1}) with achieved goals ag_{t+1} (of o_{t+1}); its reward is
r = compute_reward(ag_{t+1}, g). When g is far from anything exploration reaches, r is −1 everywhere and there is
nothing to learn. HER replays the same transition with other goals g′ that the episode *did* reach, taken from
its achieved goals: the agent learns how to reach those, and generalises towards g. With ``k`` relabelled goals
per real one, a sampled transition is relabelled with probability k / (k + 1):

* ``future``: g′ = ag_{t′+1} for a step t′ uniform in [t, T − 1] of the same episode (the paper's best);
* ``final``: g′ = ag_T, the episode's last achieved goal;
* ``episode``: g′ = ag_{t′+1} for t′ uniform over the whole episode.

The reward is recomputed with the env's own vectorised ``compute_reward``; where the env ends an episode on
success (bit flipping, point reach), ``terminated`` is recomputed too (reward 0 = the goal g′ was reached =
the episode would have ended there); where it does not (Fetch), only the time limit ends episodes and the stored
flags stay.

Episodes are written whole, when they end, into one ring of transitions: a transition's episode is then a
contiguous run, found from the per-slot ``episode start`` and ``episode length``; an episode partly overwritten
by newer ones is dropped whole (its future goals would be gone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

STRATEGIES = ("future", "final", "episode")


@dataclass
class HERBatch:
    """Sampled transitions, numpy, each ``[B, ...]``: ``desired_goal`` is the (possibly relabelled) goal the
    reward and ``terminated`` were computed for; ``relabelled`` marks the hindsight ones."""

    observation: np.ndarray
    desired_goal: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observation: np.ndarray
    terminated: np.ndarray
    relabelled: np.ndarray
    indices: np.ndarray


class HERBuffer:
    """Whole episodes of a goal env (Dict observation with ``observation``, ``achieved_goal``,
    ``desired_goal``), relabelled at sample time. ``compute_reward(achieved, desired, info)`` is the env's,
    vectorised over a batch; ``success_terminates``: the env ends an episode when the goal is reached."""

    def __init__(self, capacity: int, obs_dim: int, goal_dim: int, action_shape: tuple[int, ...], action_dtype,
                 compute_reward: Callable, strategy: str = "future", k: int = 4, success_terminates: bool = True,
                 seed: int = 0):
        if strategy not in STRATEGIES:
            raise ValueError(f"HER strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self.capacity, self.strategy, self.k = capacity, strategy, k
        self.compute_reward, self.success_terminates = compute_reward, success_terminates
        f32 = lambda *shape: np.zeros((capacity, *shape), dtype=np.float32)  # noqa: E731
        self.observation, self.next_observation = f32(obs_dim), f32(obs_dim)
        self.desired_goal, self.next_achieved = f32(goal_dim), f32(goal_dim)
        self.actions = np.zeros((capacity, *action_shape), dtype=action_dtype)
        self.rewards = f32()
        self.terminated = np.zeros(capacity, dtype=bool)
        self.episode_start = np.zeros(capacity, dtype=np.int64)  # slot of the episode's first transition
        self.episode_length = np.zeros(capacity, dtype=np.int64)
        self.episode_id = np.full(capacity, -1, dtype=np.int64)  # -1: empty or dropped
        self.pos, self.episodes = 0, 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int((self.episode_id >= 0).sum())

    def add_episode(self, observation: np.ndarray, achieved_goal: np.ndarray, desired_goal: np.ndarray,
                    actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray) -> None:
        """One finished episode of T steps: ``observation`` and ``achieved_goal`` have T + 1 rows (the last is
        the real final observation), the rest T rows."""
        length = len(actions)
        if length > self.capacity:
            raise ValueError(f"an episode of {length} steps does not fit a buffer of {self.capacity}")
        if self.pos + length > self.capacity:  # episodes stay contiguous: wrap to the start
            self._drop(np.arange(self.pos, self.capacity))
            self.pos = 0
        slots = np.arange(self.pos, self.pos + length)
        self._drop(slots)
        self.observation[slots], self.next_observation[slots] = observation[:-1], observation[1:]
        self.next_achieved[slots] = achieved_goal[1:]
        self.desired_goal[slots], self.actions[slots] = desired_goal, actions
        self.rewards[slots], self.terminated[slots] = rewards, terminated
        self.episode_start[slots], self.episode_length[slots] = self.pos, length
        self.episode_id[slots] = self.episodes
        self.episodes += 1
        self.pos += length

    def _drop(self, slots: np.ndarray) -> None:
        """Forget every episode that has a transition in ``slots`` (all of its transitions)."""
        hit = np.unique(self.episode_id[slots])
        hit = hit[hit >= 0]
        if len(hit):
            self.episode_id[np.isin(self.episode_id, hit)] = -1

    FIELDS = ("observation", "next_observation", "desired_goal", "next_achieved", "actions", "rewards", "terminated",
              "episode_start", "episode_length", "episode_id")

    def state_dict(self) -> dict:
        """Everything a resumed run needs to sample as this one would (``--save-buffer``)."""
        return {**{k: getattr(self, k) for k in self.FIELDS}, "pos": self.pos, "episodes": self.episodes,
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        for key in self.FIELDS:
            if getattr(self, key).shape != np.shape(state[key]):
                raise ValueError(f"HER buffer field {key}: saved {np.shape(state[key])}, this run "
                                 f"{getattr(self, key).shape} (another buffer size or env)")
            getattr(self, key)[...] = state[key]
        self.pos, self.episodes = int(state["pos"]), int(state["episodes"])
        self.rng.bit_generator.state = state["rng"]

    def sample(self, batch_size: int) -> HERBatch:
        valid = np.flatnonzero(self.episode_id >= 0)
        idx = valid[self.rng.integers(0, len(valid), batch_size)]
        goals = self.desired_goal[idx].copy()
        relabel = self.rng.random(batch_size) < self.k / (self.k + 1)
        start, length = self.episode_start[idx], self.episode_length[idx]
        t = idx - start
        if self.strategy == "future":  # t' uniform in [t, T-1]
            pick = t + (self.rng.random(batch_size) * (length - t)).astype(np.int64)
        elif self.strategy == "final":
            pick = length - 1
        else:  # episode
            pick = (self.rng.random(batch_size) * length).astype(np.int64)
        goals[relabel] = self.next_achieved[(start + pick)[relabel]]
        rewards = self.rewards[idx].copy()
        terminated = self.terminated[idx].copy()
        if relabel.any():
            new = np.asarray(self.compute_reward(self.next_achieved[idx[relabel]], goals[relabel], {}),
                             dtype=np.float32)
            rewards[relabel] = new
            if self.success_terminates:
                terminated[relabel] = new == 0
        return HERBatch(self.observation[idx], goals, self.actions[idx], rewards, self.next_observation[idx],
                        terminated, relabel, idx)

"""Shared machinery for every RL algorithm in the playground.

What lives here is what every algorithm needs and none of them is *about*: command-line flags from a
dataclass, seeding, the env factory (gymnasium 1.x vector envs, Atari preprocessing, videos), replay buffers
(uniform and prioritized, n-step), run folders with TensorBoard + metrics.csv + summary.json, evaluation,
checkpoints with exact resume, and learning-curve plots.

One autoreset convention everywhere: vector envs run in gymnasium's ``SAME_STEP`` mode. When a sub-env's
episode ends, ``step`` already returns the *reset* observation for it and puts the real last observation in
``infos["final_obs"]``. :func:`real_next_obs` swaps it back, so a transition is always
``(obs, action, reward, real_next_obs, terminated, truncated)``: bootstrap from ``real_next_obs`` unless
``terminated`` (a time-limit truncation is not the end of the MDP, so it *does* bootstrap).

Command line: ``python rl_utils.py plot runs/A runs/B --tag eval/return --out curves.png``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import difflib
import inspect
import json
import math
import os
import pickle
import random
import signal
import sys
import textwrap
import time
import typing
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import gymnasium as gym
import numpy as np
import torch

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------------------
# Errors the user can fix: one line, no traceback.
# ----------------------------------------------------------------------------------------------------------------
class UsageError(Exception):
    """A problem with the user's input (flag, env id, file). Printed as one line by :func:`run_main`."""


def run_main(main: Callable[[], Any]) -> None:
    """Call ``main()``; turn a :class:`UsageError` into ``error: <message>`` on stderr and exit code 2."""
    try:
        main()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


# ----------------------------------------------------------------------------------------------------------------
# Flags from a dataclass. Each field's docstring (the string literal under it, as in CleanRL) is its --help text.
# ----------------------------------------------------------------------------------------------------------------
def _field_docs(cls: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad flag gives one ``error:`` line (and a pointer to --help) instead of the usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser(cls: type, description: str | None = None) -> argparse.ArgumentParser:
    """An ``argparse`` parser with one ``--flag-name`` per dataclass field (bools also take ``--no-flag``)."""
    docs = _field_docs(cls)
    parser = OneLineErrorParser(
        description=description or (inspect.getdoc(cls) or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    hints = typing.get_type_hints(cls)  # resolves the string annotations of `from __future__ import annotations`
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
        help_text = docs.get(field.name, "")
        if kind is bool:
            parser.add_argument(flag, default=default, action=argparse.BooleanOptionalAction, help=help_text)
            continue
        origin = getattr(kind, "__args__", None)
        if origin and type(None) in origin:  # Optional[X] -> X
            kind = next(a for a in origin if a is not type(None))
        parser.add_argument(flag, type=kind, default=default, help=help_text, metavar=kind.__name__.upper())
    return parser


def explicit_flags(cls: type, argv: Sequence[str] | None = None) -> set[str]:
    """Names of the fields the user set on the command line (as opposed to left at their default)."""
    parser = build_parser(cls)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_known_args(argv)[0]))


def parse_args(
    cls: type[T],
    argv: Sequence[str] | None = None,
    presets: dict[str, dict[str, Any]] | None = None,
    preset_key: str = "env_id",
) -> T:
    """Parse the command line into an instance of the dataclass ``cls``; ``--help`` lists every field's doc.

    ``presets`` maps a value of ``preset_key`` (an env id) to tuned defaults, in the spirit of RL Zoo's
    hyperparameter files: they replace the dataclass defaults, never a flag the user typed."""
    namespace = vars(build_parser(cls).parse_args(argv))
    if presets and namespace.get(preset_key) in presets:
        given = explicit_flags(cls, argv)
        for key, value in presets[namespace[preset_key]].items():
            if key not in given:
                namespace[key] = value
    return cls(**namespace)


@dataclasses.dataclass
class CommonArgs:
    """Flags shared by every RL train.py."""

    env_id: str = "CartPole-v1"
    """gymnasium environment id"""
    seed: int = 1
    """seed of python, numpy, torch and the envs: same seed -> same run on CPU"""
    total_timesteps: int = 50_000
    """environment steps to train for (summed over all parallel envs)"""
    num_envs: int = 1
    """parallel environments in the SyncVectorEnv"""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda"""
    torch_threads: int = 1
    """torch CPU threads; 1 is fastest for small MLPs on a 2-core machine"""
    runs_dir: str = "runs"
    """folder that receives the run folder {env}__{algo}__{seed}__{time}"""
    run_name: str = ""
    """override the run folder name"""
    capture_video: bool = False
    """record videos of evaluation episodes into <run>/videos"""
    eval_every: int = 5_000
    """env steps between deterministic evaluations (0 = only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation"""
    checkpoint_every: int = 0
    """env steps between checkpoints kept as ckpt/step_N.pt (0 = only at the end and on Ctrl-C)"""
    save_buffer: bool = False
    """include the replay buffer in checkpoints (needed for an exact resume of off-policy runs)"""
    resume: str = ""
    """checkpoint to continue from; the run continues in that checkpoint's run folder"""
    eval_only: bool = False
    """only evaluate --checkpoint (add --capture-video to record it) and exit"""
    checkpoint: str = ""
    """checkpoint to evaluate with --eval-only"""
    target_return: float = math.nan
    """stop early once a deterministic evaluation reaches this mean return (nan = never)"""


# ----------------------------------------------------------------------------------------------------------------
# Seeding, device, threads
# ----------------------------------------------------------------------------------------------------------------
def set_seed(seed: int, torch_deterministic: bool = True) -> None:
    """Seed python, numpy and torch (envs and action spaces are seeded where they are made)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = torch_deterministic
    torch.backends.cudnn.benchmark = not torch_deterministic


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA device is available (use --device auto or cpu)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def setup(args: CommonArgs) -> torch.device:
    """Seed everything, set the torch thread count and choose the device."""
    set_seed(args.seed)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    return pick_device(args.device)


# ----------------------------------------------------------------------------------------------------------------
# Environments
# ----------------------------------------------------------------------------------------------------------------
def _register_atari() -> None:
    try:
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:  # pragma: no cover - ale-py is in requirements.txt
        pass


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/") or "NoFrameskip" in env_id


def check_env_id(env_id: str) -> None:
    """Raise a one-line :class:`UsageError` for an id gymnasium does not know, with close matches."""
    if is_atari(env_id):
        _register_atari()
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown env id {env_id!r}{hint}")


def make_env(
    env_id: str,
    idx: int = 0,
    *,
    capture_video: bool = False,
    video_dir: str | Path | None = None,
    discrete_actions: int = 0,
    training: bool = True,
    max_episode_steps: int | None = None,
    video_prefix: str = "rl-video",
) -> Callable[[], gym.Env]:
    """A thunk building one env: ``RecordEpisodeStatistics`` (raw returns), optional ``RecordVideo`` on env 0,
    ``DiscretizeAction`` when ``discrete_actions > 0``, and for Atari the standard DQN preprocessing
    (``AtariPreprocessing`` 84x84 grey, frame-skip 4, no-op starts, 4-frame stack; sign-clipped rewards only when
    ``training``). Seeding happens in ``envs.reset(seed=...)``."""

    def thunk() -> gym.Env:
        kwargs: dict[str, Any] = {}
        if capture_video and idx == 0:
            kwargs["render_mode"] = "rgb_array"
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen, no display needed
        if max_episode_steps:
            kwargs["max_episode_steps"] = max_episode_steps
        if is_atari(env_id):
            _register_atari()
            kwargs["frameskip"] = 1  # AtariPreprocessing does the frame skipping (max-pooling the last 2 frames)
        env = gym.make(env_id, **kwargs)
        if capture_video and idx == 0:
            # Only the first episode: a vector env resets a finished sub-env at once, so later ones are partial.
            env = gym.wrappers.RecordVideo(env, str(video_dir or "videos"), episode_trigger=lambda ep: ep == 0,
                                           name_prefix=video_prefix)
        env = gym.wrappers.RecordEpisodeStatistics(env)
        if is_atari(env_id):
            env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84)
            if training:
                env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(r)))
            env = gym.wrappers.FrameStackObservation(env, stack_size=4)
        if discrete_actions > 0:
            env = gym.wrappers.DiscretizeAction(env, bins=discrete_actions)
        return env

    return thunk


def make_vec_env(
    env_id: str,
    num_envs: int,
    seed: int,
    **env_kwargs: Any,
) -> gym.vector.SyncVectorEnv:
    """``num_envs`` copies of :func:`make_env` in a ``SyncVectorEnv`` (faster than Async on 2 cores) in
    ``SAME_STEP`` autoreset mode; reset with seeds ``seed, seed+1, ...`` and the action space seeded too."""
    check_env_id(env_id)
    envs = gym.vector.SyncVectorEnv(
        [make_env(env_id, i, **env_kwargs) for i in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    envs.action_space.seed(seed)
    return envs


def require_discrete(envs: gym.vector.VectorEnv, algo: str, hint: str = "") -> int:
    """Number of actions of a Discrete action space; a clear :class:`UsageError` otherwise."""
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Discrete):
        raise UsageError(f"{algo} needs a discrete action space, but the env has {space}{hint}")
    return int(space.n)


def real_next_obs(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """The true next observation of every sub-env: ``next_obs`` except where an episode just ended, where the
    vector env already reset and put the last observation in ``infos["final_obs"]``."""
    if "_final_obs" not in infos:
        return next_obs
    real = next_obs.copy()
    for i in np.flatnonzero(infos["_final_obs"]):
        real[i] = infos["final_obs"][i]
    return real


def finished_episodes(infos: dict) -> list[tuple[float, int]]:
    """``(return, length)`` of each episode that ended in this vector step (from RecordEpisodeStatistics)."""
    final = infos.get("final_info")
    if not final or "episode" not in final:
        return []
    ep, mask = final["episode"], final["_episode"]
    return [(float(ep["r"][i]), int(ep["l"][i])) for i in np.flatnonzero(mask)]


def evaluate(
    env_fn: Callable[[int], Callable[[], gym.Env]],
    act: Callable[[np.ndarray], np.ndarray],
    episodes: int,
    seed: int,
) -> np.ndarray:
    """Run ``episodes`` episodes in parallel (one per sub-env, each seeded ``seed + i``) with the policy ``act``
    (a batch of observations -> a batch of actions) and return their undiscounted returns."""
    envs = gym.vector.SyncVectorEnv(
        [env_fn(i) for i in range(episodes)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    obs, _ = envs.reset(seed=seed)
    returns = np.zeros(episodes)
    done = np.zeros(episodes, dtype=bool)
    while not done.all():
        obs, reward, terminated, truncated, _ = envs.step(act(obs))
        returns += np.where(done, 0.0, reward)
        done |= terminated | truncated
    envs.close()
    return returns


def get_env_state(envs: gym.vector.SyncVectorEnv) -> list[bytes] | None:
    """Pickled sub-envs (classic control, toy text, ...) so that a resume continues mid-episode exactly.
    ``None`` when an env cannot be pickled (MuJoCo, Box2D, ALE): the resume then starts fresh episodes."""
    try:
        return [pickle.dumps(env) for env in envs.envs]
    except Exception:  # noqa: BLE001 - any pickling failure just means "not restorable"
        return None


def set_env_state(envs: gym.vector.SyncVectorEnv, state: list[bytes] | None) -> bool:
    if state is None or len(state) != len(envs.envs):
        return False
    envs.envs = [pickle.loads(blob) for blob in state]
    return True


# ----------------------------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------------------------
def linear_schedule(start: float, end: float, duration: float, t: float) -> float:
    """``start`` at t=0, linearly to ``end`` at ``t=duration``, then ``end``."""
    if duration <= 0:
        return end
    return start + min(t / duration, 1.0) * (end - start)


# ----------------------------------------------------------------------------------------------------------------
# Replay buffers
# ----------------------------------------------------------------------------------------------------------------
class ReplayBatch(NamedTuple):
    """A sampled batch; the TD target is ``rewards + discounts * (1 - dones) * V(next_obs)``."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor  # n-step discounted reward sum
    next_obs: torch.Tensor  # observation to bootstrap from
    dones: torch.Tensor  # 1.0 where the window hit a *termination* (no bootstrap)
    discounts: torch.Tensor  # gamma ** (number of rewards summed)
    weights: torch.Tensor  # importance-sampling weights (ones for uniform replay)
    indices: np.ndarray  # flat buffer indices, for priority updates


class ReplayBuffer:
    """Preallocated circular buffer for ``num_envs`` parallel envs (layout ``[time, env]``).

    ``add`` takes one vector step. ``terminated`` and ``truncated`` are stored separately; ``next_obs`` must be
    the *real* next observation (see :func:`real_next_obs`). n-step returns are computed when sampling by walking
    forward along the same env's column: the sum stops at the first terminated step (no bootstrap) or truncated
    step (bootstrap from its real final observation), and at the newest written step (a shorter window is still
    a valid target, with its own ``gamma ** m``)."""

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: Any = np.float32,
        action_shape: tuple[int, ...] = (),
        action_dtype: Any = np.int64,
        *,
        gamma: float = 0.99,
        n_step: int = 1,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        if n_step < 1:
            raise UsageError(f"--n-step must be >= 1, got {n_step}")
        self.steps = max(capacity // num_envs, 1)  # rows per env column
        self.num_envs = num_envs
        self.gamma, self.n_step = gamma, n_step
        self.device = torch.device(device)
        self.obs = np.zeros((self.steps, num_envs, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros((self.steps, num_envs, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros((self.steps, num_envs), dtype=np.float32)
        self.terminated = np.zeros((self.steps, num_envs), dtype=bool)
        self.truncated = np.zeros((self.steps, num_envs), dtype=bool)
        self.pos, self.full = 0, False
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return (self.steps if self.full else self.pos) * self.num_envs

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> np.ndarray:
        """Store one transition per env; returns the flat indices written."""
        p = self.pos
        self.obs[p], self.next_obs[p], self.actions[p] = obs, next_obs, actions
        self.rewards[p], self.terminated[p], self.truncated[p] = rewards, terminated, truncated
        self.pos = (p + 1) % self.steps
        self.full = self.full or self.pos == 0
        return p * self.num_envs + np.arange(self.num_envs)

    def _to(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array, device=self.device)

    def n_step_targets(self, t: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(reward sums, discounts, dones, bootstrap rows) for start rows ``t`` of env columns ``e``."""
        batch = len(t)
        available = (self.pos - t - 1) % self.steps + 1 if self.full else self.pos - t  # rows t..newest
        ret = np.zeros(batch, dtype=np.float64)
        discount = np.ones(batch, dtype=np.float64)
        done = np.zeros(batch, dtype=bool)
        alive = np.ones(batch, dtype=bool)
        boot = t.copy()
        for k in range(self.n_step):
            row = (t + k) % self.steps
            active = alive & (k < available)
            ret += np.where(active, discount * self.rewards[row, e], 0.0)
            discount = np.where(active, discount * self.gamma, discount)
            boot = np.where(active, row, boot)
            term, trunc = self.terminated[row, e], self.truncated[row, e]
            done |= active & term
            alive = active & ~(term | trunc)
        return ret.astype(np.float32), discount.astype(np.float32), done, boot

    def _batch(self, flat: np.ndarray, weights: np.ndarray | None = None) -> ReplayBatch:
        t, e = flat // self.num_envs, flat % self.num_envs
        ret, discount, done, boot = self.n_step_targets(t, e)
        return ReplayBatch(
            obs=self._to(self.obs[t, e]),
            actions=self._to(self.actions[t, e]),
            rewards=self._to(ret),
            next_obs=self._to(self.next_obs[boot, e]),
            dones=self._to(done.astype(np.float32)),
            discounts=self._to(discount),
            weights=self._to(np.ones(len(flat), np.float32) if weights is None else weights.astype(np.float32)),
            indices=flat,
        )

    def sample(self, batch_size: int) -> ReplayBatch:
        return self._batch(self.rng.integers(0, len(self), size=batch_size))

    def state_dict(self) -> dict[str, Any]:
        names = ("obs", "next_obs", "actions", "rewards", "terminated", "truncated", "pos", "full")
        return {**{k: getattr(self, k) for k in names}, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if key == "rng":
                self.rng.bit_generator.state = value
            elif isinstance(getattr(self, key, None), np.ndarray):
                getattr(self, key)[...] = value
            elif key in ("pos", "full"):
                setattr(self, key, value)


class SumTree:
    """Binary tree whose every node holds the sum of its children: O(log n) update and prefix-sum search.
    Leaves are padded to a power of two so all of them sit at the same depth."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.leaf0 = 1 << max(capacity - 1, 1).bit_length()  # first leaf node; node 1 is the root
        self.tree = np.zeros(2 * self.leaf0, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        return self.tree[self.leaf0 + np.asarray(idx)]

    def update(self, idx: np.ndarray, values: np.ndarray) -> None:
        nodes = self.leaf0 + np.asarray(idx, dtype=np.int64)
        self.tree[nodes] = values  # with repeated indices the last value wins
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            if nodes[0] == 1:
                break
            nodes = np.unique(nodes // 2)

    def find(self, values: np.ndarray) -> np.ndarray:
        """Leaf index whose cumulative-sum interval contains each value in ``[0, total)``."""
        values = np.asarray(values, dtype=np.float64).copy()
        nodes = np.ones(len(values), dtype=np.int64)
        while nodes[0] < self.leaf0:  # all leaves are at the same depth
            left = 2 * nodes
            left_sum = self.tree[left]
            # Go left when the value falls in the left sum, or when rounding would send it into an empty right.
            go_left = (values < left_sum) | (self.tree[left + 1] <= 0.0)
            values = np.where(go_left, values, values - left_sum)
            nodes = np.where(go_left, left, left + 1)
        return nodes - self.leaf0


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016): P(i) = p_i^α / Σ p^α, new transitions get the max
    priority seen so far, importance weights w_i = (N P(i))^-β normalised by the batch maximum."""

    def __init__(self, *args: Any, alpha: float = 0.6, eps: float = 1e-6, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.alpha, self.eps, self.beta = alpha, eps, 0.4
        self.tree = SumTree(self.steps * self.num_envs)
        self.max_priority = 1.0

    def add(self, *args: Any, **kwargs: Any) -> np.ndarray:
        flat = super().add(*args, **kwargs)
        self.tree.update(flat, np.full(len(flat), self.max_priority**self.alpha))
        return flat

    def sample(self, batch_size: int) -> ReplayBatch:
        total = self.tree.total
        # Stratified: one uniform draw in each of batch_size equal slices of the total mass.
        bounds = np.linspace(0.0, total, batch_size + 1)
        values = self.rng.uniform(bounds[:-1], bounds[1:])
        flat = self.tree.find(np.minimum(values, np.nextafter(total, 0.0)))
        probs = self.tree[flat] / total
        weights = (len(self) * probs) ** (-self.beta)
        return self._batch(flat, weights / weights.max())

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        priorities = np.abs(np.asarray(td_errors, dtype=np.float64)) + self.eps
        self.tree.update(indices, priorities**self.alpha)
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "tree": self.tree.tree, "max_priority": self.max_priority}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.tree.tree[...] = state.pop("tree")
        self.max_priority = state.pop("max_priority")
        super().load_state_dict(state)


# ----------------------------------------------------------------------------------------------------------------
# Run folder: config.json, TensorBoard, metrics.csv, summary.json, progress bar
# ----------------------------------------------------------------------------------------------------------------
METRICS_FIELDS = ("step", "tag", "value", "wall_time")


class RunLogger:
    """Everything a run writes. ``log(tag, value, step)`` goes to TensorBoard and to ``metrics.csv`` (long format:
    step, tag, value, wall_time). ``wall_time`` counts seconds of training, carried across resumes."""

    def __init__(self, args: Any, algo: str, run_dir: str | Path | None = None, start_step: int = 0,
                 elapsed: float = 0.0, task: str = ""):
        from torch.utils.tensorboard import SummaryWriter

        if run_dir is None:  # a new run: <runs_dir>/<--run-name> or {task}__{algo}__{seed}__{time}, task = env id
            task = (task or getattr(args, "env_id", "env")).replace("/", "-")
            name = args.run_name or f"{task}__{algo}__{args.seed}__{int(time.time())}"
            run_dir = Path(args.runs_dir) / name
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = {**dataclasses.asdict(args), "algo": algo}
        (self.run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str))
        self.csv_path = self.run_dir / "metrics.csv"
        if not start_step:  # a fresh run reusing a folder (same --run-name) must not inherit the old curves
            for stale in [self.csv_path, *self.run_dir.glob("events.out.tfevents.*")]:
                stale.unlink(missing_ok=True)
        self._truncate_csv(start_step)
        new = not self.csv_path.exists()
        self._csv_file = open(self.csv_path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._csv_file)
        if new:
            self._csv.writerow(METRICS_FIELDS)
        self.writer = SummaryWriter(str(self.run_dir), purge_step=start_step if start_step else None)
        self.writer.add_text(
            "hyperparameters",
            "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in config.items()),
        )
        self._t0 = time.time() - elapsed
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.bar = None

    def _truncate_csv(self, step: int) -> None:
        """On resume, drop rows written after the checkpoint so the continued run does not duplicate them."""
        if not step or not self.csv_path.exists():
            return
        with open(self.csv_path, newline="") as f:
            rows = list(csv.reader(f))
        keep = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= step]
        with open(self.csv_path, "w", newline="") as f:
            csv.writer(f).writerows(keep)

    @property
    def elapsed(self) -> float:
        return time.time() - self._t0

    def log(self, tag: str, value: float, step: int) -> None:
        value = float(value)
        self.writer.add_scalar(tag, value, step)
        self._csv.writerow((step, tag, f"{value:.6g}", f"{self.elapsed:.3f}"))

    def log_dict(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.log(tag, value, step)

    def log_episodes(self, episodes: Iterable[tuple[float, int]], step: int) -> None:
        for ret, length in episodes:
            self.recent_returns.append(ret)
            self.log("charts/episodic_return", ret, step)
            self.log("charts/episodic_length", length, step)

    def progress(self, total: int, initial: int = 0) -> Any:
        from tqdm import tqdm

        # disable=None turns the bar off when stderr is not a terminal (CI logs, subprocess tests).
        self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=None)
        return self.bar

    def update_progress(self, n: int, step: int, sps: float) -> None:
        if self.bar is None:
            return
        recent = np.mean(self.recent_returns) if self.recent_returns else float("nan")
        self.bar.set_postfix(SPS=int(sps), ret=f"{recent:.1f}", refresh=False)
        self.bar.update(n)

    def write_summary(self, **summary: Any) -> Path:
        path = self.run_dir / "summary.json"
        path.write_text(json.dumps(summary, indent=2, default=float))
        return path

    def flush(self) -> None:
        self._csv_file.flush()
        self.writer.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self._csv_file.close()
        self.writer.close()


def read_metrics(run_dir: str | Path, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, values, wall_times) of one tag from a run's metrics.csv."""
    steps, values, walls = [], [], []
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["tag"] == tag:
                steps.append(int(row["step"]))
                values.append(float(row["value"]))
                walls.append(float(row["wall_time"]))
    return np.array(steps), np.array(values), np.array(walls)


def first_crossing(run_dir: str | Path, threshold: float, tag: str = "eval/return") -> tuple[int | None, float | None]:
    """(env steps, wall seconds) at the first ``tag`` value >= ``threshold``, or (None, None)."""
    steps, values, walls = read_metrics(run_dir, tag)
    hits = np.flatnonzero(values >= threshold)
    if len(hits) == 0:
        return None, None
    return int(steps[hits[0]]), float(walls[hits[0]])


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints and Ctrl-C
# ----------------------------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, **state: Any) -> Path:
    """Write ``state`` (modules and optimizers are saved by their ``state_dict``) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: (v.state_dict() if hasattr(v, "state_dict") and not isinstance(v, dict) else v)
               for k, v in state.items()}
    payload["rng"] = rng_state()
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; a missing or corrupt file is a UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001
        raise UsageError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from None


class GracefulInterrupt:
    """Turns Ctrl-C (SIGINT) and SIGTERM into a flag the training loop polls, so it can save and exit cleanly."""

    def __init__(self) -> None:
        self.requested = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: give up immediately
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupt received: saving a checkpoint and stopping (Ctrl-C again to abort)", file=sys.stderr)

    @contextmanager
    def installed(self):  # type: ignore[no-untyped-def]
        old = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


# ----------------------------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------------------------
def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` points (shorter at the start), same length as the input."""
    if window <= 1 or len(values) == 0:
        return np.asarray(values, dtype=float)
    csum = np.cumsum(np.insert(np.asarray(values, dtype=float), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def _run_label(run_dir: Path) -> str:
    try:
        cfg = json.loads((run_dir / "config.json").read_text())
        return f"{cfg.get('algo', '?')} {cfg.get('env_id', '')}".strip()
    except (OSError, json.JSONDecodeError):
        return run_dir.name


def plot_curves(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    tags: Sequence[str] = ("eval/return",),
    window: int = 1,
    title: str | None = None,
    labels: Sequence[str] | None = None,
) -> Path:
    """Learning curves: one line per (label, tag), seeds of the same label averaged with a ±1 std band.
    Runs are grouped by ``labels`` (one per run) or by their config's algo + env."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[Path]] = {}
    for i, run in enumerate(map(Path, run_dirs)):
        groups.setdefault(labels[i] if labels else _run_label(run), []).append(run)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, runs in groups.items():
        for tag in tags:
            curves = [read_metrics(r, tag)[:2] for r in runs]
            curves = [(x, moving_average(y, window)) for x, y in curves if len(x)]
            if not curves:
                continue
            name = label if len(tags) == 1 else f"{label} {tag}"
            if len(curves) == 1:
                ax.plot(*curves[0], label=name)
                continue
            grid = np.linspace(max(c[0][0] for c in curves), min(c[0][-1] for c in curves), 200)
            ys = np.stack([np.interp(grid, x, y) for x, y in curves])
            mean, std = ys.mean(0), ys.std(0)
            ax.plot(grid, mean, label=f"{name} ({len(curves)} seeds)")
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(title or ", ".join(tags))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _cli(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python rl_utils.py", description="Playground RL utilities.")
    sub = parser.add_subparsers(dest="command", required=True)
    plot = sub.add_parser("plot", help="plot learning curves of one or more run folders (band over seeds)")
    plot.add_argument("runs", nargs="+", help="run folders (each with metrics.csv)")
    plot.add_argument("--tag", action="append", help="metric tag(s) to plot (default eval/return)")
    plot.add_argument("--window", type=int, default=1, help="moving-average window in points")
    plot.add_argument("--out", default="curves.png", help="output PNG")
    plot.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    missing = [r for r in args.runs if not (Path(r) / "metrics.csv").is_file()]
    if missing:
        raise UsageError(f"no metrics.csv in: {', '.join(missing)}")
    out = plot_curves(args.runs, args.out, tags=args.tag or ["eval/return"], window=args.window, title=args.title)
    print(f"wrote {out}")


if __name__ == "__main__":
    run_main(_cli)

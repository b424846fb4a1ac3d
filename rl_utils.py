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
import errno
import importlib
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

import cloudpickle
import gymnasium as gym
import numpy as np
import torch

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------------------
# Errors the user can fix: one line, no traceback.
# ----------------------------------------------------------------------------------------------------------------
class UsageError(Exception):
    """A problem with the user's input (flag, env id, file). Printed as one line by :func:`run_main`."""


class WorkerError(Exception):
    """A worker process of a distributed run raised or died. Printed as one line by :func:`run_main`, exit 1."""


# A write that fails for one of these reasons is the machine's state, not a bug: one line, not a traceback.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


def run_main(main: Callable[[], Any]) -> None:
    """Call ``main()``; turn a :class:`UsageError` into ``error: <message>`` on stderr and exit code 2, and so a
    full disk or a read-only folder met while writing (checkpoints are written atomically, so the last one that
    was written stays whole)."""
    try:
        main()
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except WorkerError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        where = f": {err.filename}" if err.filename else ""
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        hint = "; free some space, then --resume from the last checkpoint (it was written whole)" if full else ""
        print(f"error: {os.strerror(err.errno)}{where}{hint}", file=sys.stderr)
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
        help_text = docs.get(field.name, "").replace("%", "%%")  # argparse %-formats help strings
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


def _limits(cls: type) -> dict[str, tuple[float | None, float | None]]:
    """``LIMITS`` class attributes merged along the MRO: field name -> (lowest, highest) allowed, None = open."""
    merged: dict[str, tuple[float | None, float | None]] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get("LIMITS", {}))
    return merged


def _choices(cls: type) -> dict[str, tuple[str, ...]]:
    """``CHOICES`` class attributes merged along the MRO: field name -> the values it may take."""
    merged: dict[str, tuple[str, ...]] = {}
    for klass in reversed(cls.__mro__):
        merged.update(vars(klass).get("CHOICES", {}))
    return merged


def check_limits(args: Any) -> None:
    """Validate every field with a declared range (``LIMITS``) or set of values (``CHOICES``) once, at the edge:
    one :class:`UsageError` naming the flag."""
    for name, allowed in _choices(type(args)).items():
        value = getattr(args, name)
        if value not in allowed:
            listed = ", ".join(allowed[:-1]) + f" or {allowed[-1]}" if len(allowed) > 1 else allowed[0]
            raise UsageError(f"--{name.replace('_', '-')} must be {listed}, got {value!r}")
    for name, (low, high) in _limits(type(args)).items():
        value = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(value, float) and math.isnan(value):
            raise UsageError(f"{flag} must be a number, got nan")
        if low is not None and value < low:
            raise UsageError(f"{flag} must be >= {low:g}, got {value:g}")
        if high is not None and value > high:
            raise UsageError(f"{flag} must be <= {high:g}, got {value:g}")


def parse_int_list(text: str, flag: str, low: int | None = None) -> list[int]:
    """``"64,64"`` -> [64, 64] for a comma-separated flag; a one-line :class:`UsageError` naming ``flag`` for
    anything else (not integers, empty, or a value below ``low``)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise UsageError(f"{flag} needs at least one value, got {text!r}")
    if low is not None and min(values) < low:
        raise UsageError(f"{flag} values must be >= {low}, got {text!r}")
    return values


def parse_args(
    cls: type[T],
    argv: Sequence[str] | None = None,
    presets: dict[str, dict[str, Any]] | None = None,
    preset_key: str | tuple[str, ...] = "env_id",
) -> T:
    """Parse the command line into an instance of the dataclass ``cls``; ``--help`` lists every field's doc.

    ``presets`` maps a value of ``preset_key`` (an env id) to tuned defaults, in the spirit of RL Zoo's
    hyperparameter files: they replace the dataclass defaults, never a flag the user typed. Several keys (e.g.
    ``("env_id", "recipe")``) apply their presets in that order, a later key's values winning. Fields named in
    a ``LIMITS`` class attribute are range-checked here, so every script gets the same one-line errors."""
    namespace = vars(build_parser(cls).parse_args(argv))
    given = explicit_flags(cls, argv) if presets else set()
    for field in (preset_key,) if isinstance(preset_key, str) else preset_key:
        for key, value in (presets or {}).get(namespace.get(field), {}).items():
            if key not in given:
                namespace[key] = value
    args = cls(**namespace)
    check_limits(args)
    return args


def parse_run_args(
    cls: type[T],
    argv: Sequence[str] | None = None,
    presets: dict[str, dict[str, Any]] | None = None,
    preset_key: str | tuple[str, ...] = "env_id",
) -> tuple[T, Checkpoint | None]:
    """:func:`parse_args`, then ``--resume``: load that checkpoint (a file, or a run folder meaning its
    ``ckpt/latest.pt``), check that this script wrote it, and continue with the saved arguments, overridden only
    by flags typed now. Returns ``(args, checkpoint or None)``."""
    args = parse_args(cls, argv, presets, preset_key)
    resume = getattr(args, "resume", "")
    if not resume:
        return args, None
    ckpt = open_checkpoint(resume, cls)
    given = explicit_flags(cls, argv) - {"resume"}
    args = cls(**{**ckpt.args, **{k: getattr(args, k) for k in given}, "resume": resume})
    check_limits(args)
    return args, ckpt


@dataclasses.dataclass
class RunArgs:
    """Flags every training script has, RL or DL: what the shared :func:`setup` and :class:`Run` read."""

    seed: int = 1
    """seed of python, numpy, torch and the envs / data order: same seed -> same run on CPU"""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda"""
    torch_threads: int = 1
    """torch CPU threads; 1 is fastest for small networks on a shared 2-core machine (2 ran 8-30x slower)"""
    runs_dir: str = "runs"
    """folder that receives the run folder {task}__{algo}__{seed}__{time}"""
    run_name: str = ""
    """override the run folder name"""
    resume: str = ""
    """checkpoint file, or run folder (its ckpt/latest.pt), to continue from exactly"""

    LIMITS: typing.ClassVar[dict[str, tuple[float | None, float | None]]] = {"torch_threads": (0, None)}


@dataclasses.dataclass
class CommonArgs(RunArgs):
    """Flags shared by every RL train.py."""

    env_id: str = "CartPole-v1"
    """gymnasium environment id"""
    total_timesteps: int = 50_000
    """environment steps to train for (summed over all parallel envs)"""
    num_envs: int = 1
    """parallel environments in the SyncVectorEnv"""
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
    eval_only: bool = False
    """only evaluate --checkpoint (add --capture-video to record it) and exit"""
    checkpoint: str = ""
    """checkpoint to evaluate with --eval-only"""
    target_return: float = math.inf
    """stop early once a deterministic evaluation reaches this mean return (inf = never)"""

    LIMITS: typing.ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "total_timesteps": (1, None), "num_envs": (1, None), "eval_every": (0, None), "eval_episodes": (1, None),
        "checkpoint_every": (0, None),
    }


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


def setup(args: RunArgs) -> torch.device:
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

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr: errors stay one line
        gym.register_envs(ale_py)
    except ImportError:  # pragma: no cover - ale-py is in requirements.txt
        pass


def quiet_legacy_gym() -> None:
    """Import OpenAI's unmaintained ``gym`` (if installed) once, with its stderr notice swallowed.

    d3rlpy 2.8 depends on it (so ``pip install -r requirements.txt`` brings it), and both d3rlpy and
    Stable-Baselines3 import it when present; its import prints a multi-line notice to stderr, which would
    bury a script's own lines (bad input must be one ``error:`` line). The baselines call this before importing
    those libraries; the playground itself never uses ``gym``."""
    if "gym" in sys.modules or importlib.util.find_spec("gym") is None:
        return
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):
        importlib.import_module("gym")


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/") or "NoFrameskip" in env_id


def check_env_id(env_id: str) -> None:
    """Raise a one-line :class:`UsageError` for an id gymnasium does not know, with close matches. Gymnasium's
    ``module:EnvId`` form (a user's own env, registered when its module is imported) imports the module first."""
    if ":" in env_id:
        module, _, env_id = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UsageError(f"cannot import {module!r}, the module of env id {module}:{env_id} ({err})") from None
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
    unit_actions: bool = False,
    training: bool = True,
    max_episode_steps: int | None = None,
    video_prefix: str = "rl-video",
) -> Callable[[], gym.Env]:
    """A thunk building one env: ``RecordEpisodeStatistics`` (raw returns), optional ``RecordVideo`` on env 0,
    ``DiscretizeAction`` when ``discrete_actions > 0``, and for Atari the standard DQN preprocessing
    (``AtariPreprocessing`` 84x84 grey, frame-skip 4, no-op starts, 4-frame stack; sign-clipped rewards only when
    ``training``). ``unit_actions`` gives a Box action space as [-1, 1]: the policy's actions are clipped to it
    and rescaled linearly to the env's own bounds (gymnasium's ``ClipAction`` over ``RescaleAction``), so one
    Gaussian or tanh policy fits every Box env. Seeding happens in ``envs.reset(seed=...)``."""

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
            if not isinstance(env.action_space, gym.spaces.Box):
                raise UsageError(f"--discrete-actions discretises Box actions, but {env_id} has {env.action_space}")
            env = gym.wrappers.DiscretizeAction(env, bins=discrete_actions)
        if unit_actions and isinstance(env.action_space, gym.spaces.Box):
            unit = np.ones(env.action_space.shape, dtype=np.float32)
            env = gym.wrappers.ClipAction(gym.wrappers.RescaleAction(env, -unit, unit))
        return env

    return thunk


def make_vec_env(
    env_id: str,
    num_envs: int,
    seed: int,
    *,
    norm_obs: bool = False,
    norm_reward: bool = False,
    gamma: float = 0.99,
    clip: float = 10.0,
    **env_kwargs: Any,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of :func:`make_env` in a ``SyncVectorEnv`` (faster than Async on 2 cores) in
    ``SAME_STEP`` autoreset mode; reset with seeds ``seed, seed+1, ...`` and the action space seeded too.

    ``norm_obs`` / ``norm_reward`` add running-statistics normalisation over all sub-envs together
    (:class:`NormalizeObservation`, :class:`NormalizeReward`), clipped to ``±clip``. Their statistics are part of
    the env state every checkpoint stores (:func:`get_env_state`) and are frozen in evaluation."""
    check_env_id(env_id)
    envs: gym.vector.VectorEnv = gym.vector.SyncVectorEnv(
        [make_env(env_id, i, **env_kwargs) for i in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    envs.action_space.seed(seed)
    if norm_obs:
        require_space(envs.single_observation_space, (gym.spaces.Box,), "--norm-obs", what="observation")
        envs = NormalizeObservation(envs, clip=clip)
    if norm_reward:
        envs = NormalizeReward(envs, gamma=gamma, clip=clip)
    return envs


class NormalizeObservation(gym.vector.VectorWrapper):
    """Observations standardised with running mean/variance shared by all sub-envs, then clipped to ``±clip``.

    gymnasium's own vector ``NormalizeObservation`` (and every ``VectorObservationWrapper``) refuses ``SAME_STEP``
    autoreset, and its single-env version keeps separate statistics in every sub-env. This one also normalises
    ``infos["final_obs"]`` (the real last observation a truncated episode bootstraps from) with the same
    statistics, and has a ``state_dict`` so they travel with every checkpoint. ``frozen`` stops the updates
    (evaluation, ``--eval-only``)."""

    def __init__(self, env: gym.vector.VectorEnv, clip: float = 10.0, epsilon: float = 1e-8):
        super().__init__(env)
        from gymnasium.wrappers.utils import RunningMeanStd

        shape = env.single_observation_space.shape
        bound = np.full(shape, clip, dtype=np.float32)
        self.single_observation_space = gym.spaces.Box(-bound, bound, dtype=np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.obs_rms = RunningMeanStd(shape=shape, dtype=np.float64)
        self.clip, self.epsilon, self.frozen = clip, epsilon, False

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        scaled = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if not self.frozen:
            self.obs_rms.update(obs)
        return self.normalize(obs)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, infos = self.env.reset(**kwargs)
        return self._observe(obs), infos

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        obs = self._observe(obs)
        if "_final_obs" in infos:  # same statistics as the step's own observations, no second update
            final = infos["final_obs"].copy()
            for i in np.flatnonzero(infos["_final_obs"]):
                final[i] = self.normalize(final[i])
            infos = {**infos, "final_obs": final}
        return obs, rewards, terminated, truncated, infos

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.obs_rms.mean.copy(), "var": self.obs_rms.var.copy(), "count": self.obs_rms.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if np.shape(state["mean"]) != self.obs_rms.mean.shape:
            raise UsageError(f"saved observation statistics have shape {np.shape(state['mean'])}, the env "
                             f"{self.obs_rms.mean.shape}")
        self.obs_rms.mean, self.obs_rms.var = state["mean"].copy(), state["var"].copy()
        self.obs_rms.count = state["count"]


class NormalizeReward(gym.wrappers.vector.NormalizeReward):
    """gymnasium's vector ``NormalizeReward`` (rewards scaled by the running std of the discounted return;
    it supports ``SAME_STEP``), clipped to ``±clip``, with a ``state_dict`` for checkpoints."""

    def __init__(self, env: gym.vector.VectorEnv, gamma: float = 0.99, clip: float = 10.0):
        super().__init__(env, gamma=gamma)
        self.clip = clip

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict]:
        obs, rewards, terminated, truncated, infos = super().step(actions)
        return obs, np.clip(rewards, -self.clip, self.clip), terminated, truncated, infos

    def state_dict(self) -> dict[str, Any]:
        rms = self.return_rms
        return {"mean": rms.mean, "var": rms.var, "count": rms.count,
                "accumulated_reward": self.accumulated_reward.copy(), "prev_dones": self._prev_dones.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.return_rms.mean, self.return_rms.var, self.return_rms.count = state["mean"], state["var"], \
            state["count"]
        if np.shape(state["accumulated_reward"]) == self.accumulated_reward.shape:  # same envs: same episodes
            self.accumulated_reward[...] = state["accumulated_reward"]
            self._prev_dones[...] = state["prev_dones"]


def find_wrapper(envs: gym.vector.VectorEnv, cls: type) -> Any:
    """The first vector wrapper of type ``cls`` around ``envs`` (None if there is none)."""
    while isinstance(envs, gym.vector.VectorWrapper):
        if isinstance(envs, cls):
            return envs
        envs = envs.env
    return None


# Which of the playground's algorithms fit which spaces: the hint of :func:`require_space`.
ALGORITHMS_FOR_SPACE: dict[str, str] = {
    "Discrete action": "DQN (classic_rl/dqn), C51 (distributional_rl/c51), discrete SAC (classic_rl/sac_discrete), "
                       "ACER (classic_rl/acer), REINFORCE, Actor-Critic, A2C, A3C, PPO, DPPO, TRPO",
    "Box action": "SAC, TD3, DDPG (classic_rl/{sac,td3,ddpg}), D4PG (distributional_rl/d4pg), REINFORCE, "
                  "Actor-Critic, A2C, A3C, PPO, DPPO, TRPO (classic_rl/...); DQN only with --discrete-actions N",
    "Box observation": "every MLP policy",
    "Dict observation": "goal-conditioned algorithms (flatten the Dict with gymnasium.wrappers.FlattenObservation "
                        "for an MLP)",
}


def require_space(space: gym.Space, kinds: tuple[type, ...], algo: str, what: str = "action",
                  hint: str = "") -> gym.Space:
    """``space`` itself when it is one of ``kinds``; otherwise a one-line :class:`UsageError` that names the
    algorithms of the playground that do fit it (``what`` is "action" or "observation")."""
    if isinstance(space, kinds):
        return space
    wanted = " or ".join(k.__name__ for k in kinds)
    fits = ALGORITHMS_FOR_SPACE.get(f"{type(space).__name__} {what}")
    fits = f"; for a {type(space).__name__} {what} space use {fits}" if fits else ""
    raise UsageError(f"{algo} needs a {wanted} {what} space, but the env has {space}{hint or fits}")


def require_vector_obs(space: gym.Space, algo: str) -> int:
    """The size of a flat Box observation (what an MLP takes); one-line :class:`UsageError` for Dict, image or
    other observations."""
    require_space(space, (gym.spaces.Box,), algo, what="observation")
    if len(space.shape) != 1:
        raise UsageError(f"{algo} needs flat vector observations, but the env gives shape {space.shape} (images "
                         f"need a CNN policy, e.g. classic_rl/dqn on ALE/Pong-v5)")
    return int(space.shape[0])


def require_discrete(envs: gym.vector.VectorEnv, algo: str, hint: str = "") -> int:
    """Number of actions of a Discrete action space; a clear :class:`UsageError` otherwise."""
    return int(require_space(envs.single_action_space, (gym.spaces.Discrete,), algo, hint=hint).n)


def real_next_obs(next_obs: Any, infos: dict) -> Any:
    """The true next observation of every sub-env: ``next_obs`` except where an episode just ended, where the
    vector env already reset and put the last observation in ``infos["final_obs"]``. Works for array
    observations and for Dict observations (a dict of arrays, with ``final_obs`` an array of per-env dicts)."""
    if "_final_obs" not in infos:
        return next_obs
    done = np.flatnonzero(infos["_final_obs"])
    if isinstance(next_obs, dict):
        real = {key: value.copy() for key, value in next_obs.items()}
        for i in done:
            for key in real:
                real[key][i] = infos["final_obs"][i][key]
        return real
    real = next_obs.copy()
    for i in done:
        real[i] = infos["final_obs"][i]
    return real


def finished_episodes(infos: dict) -> list[tuple[float, int]]:
    """``(return, length)`` of each episode that ended in this vector step (from RecordEpisodeStatistics)."""
    final = infos.get("final_info")
    if not final or "episode" not in final:
        return []
    ep, mask = final["episode"], final["_episode"]
    return [(float(ep["r"][i]), int(ep["l"][i])) for i in np.flatnonzero(mask)]


class EvalResult(NamedTuple):
    """What :func:`evaluate` measured, one entry per episode."""

    returns: np.ndarray
    lengths: np.ndarray
    successes: np.ndarray  # 1.0 / 0.0 from the env's final ``is_success`` info; nan when the env reports none

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if not np.isnan(self.successes).any() else math.nan

    def log_dict(self, prefix: str = "eval") -> dict[str, float]:
        out = {f"{prefix}/return": float(self.returns.mean()), f"{prefix}/return_std": float(self.returns.std()),
               f"{prefix}/length": float(self.lengths.mean())}
        if not math.isnan(self.success_rate):
            out[f"{prefix}/success_rate"] = self.success_rate
        return out


# Evaluation seeds. Training envs use seed, seed + 1, ... . Every periodic evaluation plays the same episodes
# (seed + EVAL_SEED_OFFSET + i), so the eval curve compares policies on equal terms. best.pt is *chosen* on those
# episodes, so its score there is optimistic (the best of many noisy draws); the held-out evaluation scores best.pt
# once, at the end, on episodes that no evaluation used (seed + HELDOUT_SEED_OFFSET + i). The final policy is not
# selected, so its score on the eval episodes (``final_eval_return``) is already unbiased.
EVAL_SEED_OFFSET = 100_000
HELDOUT_SEED_OFFSET = 200_000


def evaluate(
    env_fn: Callable[[int], Callable[[], gym.Env]],
    policy: Callable[[Any], np.ndarray],
    episodes: int,
    seed: int,
    obs_norm: NormalizeObservation | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes in parallel (one per sub-env, each seeded ``seed + i``) with ``policy`` (a batch
    of observations -> a batch of actions) and report returns, lengths and success.

    A policy that keeps state across steps (a recurrent net, a Transformer's context) exposes
    ``policy.reset(mask)``; it is called with all-True before the first step and with the mask of sub-envs whose
    episode just ended. A policy conditioned on the rewards it got (a Decision Transformer's return-to-go)
    exposes ``policy.observe(rewards)``, called after every step, before any ``reset``. ``obs_norm`` applies the
    training envs' observation statistics, frozen."""
    envs: gym.vector.VectorEnv = gym.vector.SyncVectorEnv(
        [env_fn(i) for i in range(episodes)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
    )
    if obs_norm is not None:
        frozen = NormalizeObservation(envs, clip=obs_norm.clip, epsilon=obs_norm.epsilon)
        frozen.load_state_dict(obs_norm.state_dict())
        frozen.frozen = True
        envs = frozen
    reset, observe = getattr(policy, "reset", None), getattr(policy, "observe", None)
    obs, _ = envs.reset(seed=seed)
    if reset is not None:
        reset(np.ones(episodes, dtype=bool))
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    successes = np.full(episodes, np.nan)
    done = np.zeros(episodes, dtype=bool)
    while not done.all():
        obs, reward, terminated, truncated, infos = envs.step(policy(obs))
        if observe is not None:
            observe(reward)
        returns += np.where(done, 0.0, reward)
        lengths += ~done
        ended = (terminated | truncated) & ~done
        final = infos.get("final_info", {})
        if "is_success" in final:
            for i in np.flatnonzero(ended & final["_is_success"]):
                successes[i] = float(final["is_success"][i])
        done |= ended
        if reset is not None and ended.any():
            reset(ended)
    envs.close()
    return EvalResult(returns, lengths, successes)


def get_env_state(envs: gym.vector.VectorEnv) -> dict[str, Any]:
    """What a checkpoint keeps of a vector env: the pickled sub-envs (classic control, toy text, ...) so that a
    resume continues mid-episode exactly (``None`` when one cannot be pickled: MuJoCo, Box2D, ALE, and the resume
    starts fresh episodes), and the state of every vector wrapper with a ``state_dict`` (normalisation
    statistics), which is always kept."""
    try:
        sub_envs = [cloudpickle.dumps(env) for env in envs.unwrapped.envs]  # cloudpickle: wrappers hold lambdas
    except Exception:  # noqa: BLE001 - any pickling failure just means "not restorable"
        sub_envs = None
    wrappers = {}
    while isinstance(envs, gym.vector.VectorWrapper):
        if hasattr(envs, "state_dict"):
            wrappers[type(envs).__name__] = envs.state_dict()
        envs = envs.env
    return {"sub_envs": sub_envs, "wrappers": wrappers}


def set_env_state(envs: gym.vector.VectorEnv, state: dict[str, Any] | None) -> bool:
    """Restore :func:`get_env_state`; True when the sub-envs themselves were restored (same episodes)."""
    if state is None:
        return False
    saved = dict(state.get("wrappers", {}))
    wrapper = envs
    while isinstance(wrapper, gym.vector.VectorWrapper):
        if hasattr(wrapper, "load_state_dict"):
            name = type(wrapper).__name__
            if name not in saved:
                raise UsageError(f"the checkpoint has no {name} statistics (was it trained without them?)")
            wrapper.load_state_dict(saved.pop(name))
        wrapper = wrapper.env
    if saved:
        raise UsageError(f"the checkpoint carries {', '.join(saved)} statistics this env does not use (pass the "
                         f"same normalisation flags)")
    blobs = state.get("sub_envs")
    base = envs.unwrapped
    if blobs is None or len(blobs) != len(base.envs):
        return False
    base.envs = [pickle.loads(blob) for blob in blobs]
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
def _as_space(space: gym.Space | tuple[int, ...]) -> gym.Space:
    """A shape tuple stands for a float32 Box of that shape (handy in tests)."""
    if isinstance(space, gym.Space):
        return space
    return gym.spaces.Box(-np.inf, np.inf, tuple(space), np.float32)


def alloc_for_space(space: gym.Space, lead: tuple[int, ...]) -> Any:
    """Zeros for ``lead + space.shape`` with the space's dtype, floats as float32; a dict of such arrays for a
    Dict space. MuJoCo envs observe float64: stored as such, a sampled batch would reach float32 networks as
    float64 (a dtype error) and a 1M-step buffer would take twice the memory."""
    if isinstance(space, gym.spaces.Dict):
        return {key: alloc_for_space(sub, lead) for key, sub in space.spaces.items()}
    if space.shape is None:
        raise UsageError(f"cannot store observations of space {space} (no fixed shape)")
    dtype = np.float32 if np.issubdtype(space.dtype, np.floating) else space.dtype
    return np.zeros((*lead, *space.shape), dtype=dtype)


def _write(store: Any, idx: Any, value: Any) -> None:
    if isinstance(store, dict):
        for key in store:
            _write(store[key], idx, value[key])
    else:
        store[idx] = value


def _read(store: Any, idx: Any) -> Any:
    return {k: _read(v, idx) for k, v in store.items()} if isinstance(store, dict) else store[idx]


def to_numpy(value: Any) -> Any:
    """A tensor (any device) as a numpy array; numpy arrays and dicts of either pass through (mapped)."""
    if isinstance(value, dict):
        return {k: to_numpy(v) for k, v in value.items()}
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value


def to_tensor(value: Any, device: torch.device | str = "cpu") -> Any:
    """``torch.as_tensor`` that also maps over a dict (Dict observations)."""
    if isinstance(value, dict):
        return {k: to_tensor(v, device) for k, v in value.items()}
    return torch.as_tensor(value, device=device)


class ReplayBatch(NamedTuple):
    """A sampled batch; the TD target is ``rewards + discounts * (1 - dones) * V(next_obs)``."""

    obs: Any  # [B, ...] tensor, or a dict of them for Dict observations
    actions: torch.Tensor
    rewards: torch.Tensor  # n-step discounted reward sum
    next_obs: Any  # observation to bootstrap from
    dones: torch.Tensor  # 1.0 where the window hit a *termination* (no bootstrap)
    discounts: torch.Tensor  # gamma ** (number of rewards summed)
    weights: torch.Tensor  # importance-sampling weights (ones for uniform replay)
    indices: np.ndarray  # flat buffer indices, for priority updates
    extras: dict[str, torch.Tensor] = {}  # the buffer's extra per-step fields (skills, behaviour probabilities...)


def n_step_returns(
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    t: np.ndarray,
    e: np.ndarray,
    n: int,
    gamma: float,
    available: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """n-step targets from ``[T, num_envs]`` arrays (a ring: rows wrap modulo T), for windows starting at rows
    ``t`` of env columns ``e``. ``available[i]`` = rows from ``t[i]`` up to the newest written one.

    R = Σ_{k<m} γ^k r_{t+k}, discount = γ^m, where the window of m ≤ n rewards stops after the first terminated
    step (done: no bootstrap), the first truncated step (bootstrap from that step's real final observation) or
    the newest row. Returns (R, γ^m, done, the row whose next_obs to bootstrap from). A pure function, so
    distributed actors can compute targets on their own trajectory chunks."""
    steps = len(rewards)
    ret = np.zeros(len(t), dtype=np.float64)
    discount = np.ones(len(t), dtype=np.float64)
    done = np.zeros(len(t), dtype=bool)
    alive = np.ones(len(t), dtype=bool)
    boot = t.copy()
    for k in range(n):
        row = (t + k) % steps
        active = alive & (k < available)
        ret += np.where(active, discount * rewards[row, e], 0.0)
        discount = np.where(active, discount * gamma, discount)
        boot = np.where(active, row, boot)
        term, trunc = terminated[row, e], truncated[row, e]
        done |= active & term
        alive = active & ~(term | trunc)
    return ret.astype(np.float32), discount.astype(np.float32), done, boot


class NStepTransitions(NamedTuple):
    """n-step transitions as numpy arrays, first axis = transition: what :class:`NStepAdder` emits."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray  # Σ_{k<m} γ^k r_{t+k}
    discounts: np.ndarray  # γ^m
    dones: np.ndarray  # the window ended in a termination (no bootstrap)
    next_obs: np.ndarray  # the real observation to bootstrap from

    def __len__(self) -> int:
        return len(self.rewards)


class NStepAdder:
    """n-step transitions emitted as soon as they are complete, for actors that push finished transitions to a
    replay elsewhere (D4PG's Ray actors: the learner's buffer then stores them with ``stored_discounts``).

    Per env it holds the last steps of the current episode: once ``n`` are held the window starting at the
    oldest is complete and emitted; when the episode ends, every held window is emitted, each cut there (a
    termination: no bootstrap; a truncation: bootstrap from the real final observation, so ``next_obs`` must be
    :func:`real_next_obs`). The window sums are :func:`n_step_returns`', the replay buffer's own (both tested
    against one brute-force loop). Observations are arrays (Box spaces)."""

    def __init__(self, num_envs: int, n: int, gamma: float):
        self.n, self.gamma = n, gamma
        self.held: list[list[tuple]] = [[] for _ in range(num_envs)]

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, next_obs: np.ndarray) -> NStepTransitions | None:
        """One vector step in; the transitions it completed out (None if none)."""
        out = []
        for i, held in enumerate(self.held):
            held.append((obs[i], actions[i], rewards[i], terminated[i], truncated[i], next_obs[i]))
            ended = bool(terminated[i] or truncated[i])
            if ended or len(held) == self.n:
                out.append(self._windows(held, np.arange(len(held) if ended else 1)))
                if ended:
                    held.clear()
                else:
                    held.pop(0)
        if not out:
            return None
        return NStepTransitions(*(np.concatenate(parts) for parts in zip(*out)))

    def _windows(self, held: list[tuple], starts: np.ndarray) -> NStepTransitions:
        column = lambda k: np.asarray([h[k] for h in held])[:, None]  # noqa: E731  [L, 1]
        ret, discount, done, boot = n_step_returns(column(2), column(3), column(4), starts, np.zeros_like(starts),
                                                   self.n, self.gamma, available=len(held) - starts)
        return NStepTransitions(np.stack([held[t][0] for t in starts]), np.stack([held[t][1] for t in starts]),
                                ret, discount, done, np.stack([held[b][5] for b in boot]))

    def state_dict(self) -> dict[str, Any]:
        return {"held": [list(h) for h in self.held]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.held = [list(h) for h in state["held"]]


class ReplayBuffer:
    """Preallocated circular buffer for ``num_envs`` parallel envs (layout ``[time, env]``), built from the
    gymnasium spaces (Box, Discrete, MultiBinary, Dict observations) plus optional extra named per-step fields
    (``extras={"skill": Discrete(10)}``, stored and returned in ``batch.extras``).

    ``add`` takes one vector step. ``terminated`` and ``truncated`` are stored separately; ``next_obs`` must be
    the *real* next observation (see :func:`real_next_obs`). n-step returns are computed when sampling
    (:func:`n_step_returns`), walking forward along the same env's column.

    ``stored_discounts=True`` holds transitions whose targets were computed elsewhere (n-step transitions from
    :class:`NStepAdder` in distributed actors): ``add(..., discounts=γ^m)`` stores each one's own discount and
    sampling returns it as is (with ``n_step=1``: the reward is already the m-step sum, ``terminated`` the
    window's termination, ``next_obs`` the observation to bootstrap from)."""

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_space: gym.Space | tuple[int, ...],
        action_space: gym.Space | None = None,
        *,
        extras: dict[str, gym.Space] | None = None,
        gamma: float = 0.99,
        n_step: int = 1,
        stored_discounts: bool = False,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        if n_step < 1:
            raise UsageError(f"--n-step must be >= 1, got {n_step}")
        if stored_discounts and n_step != 1:
            raise ValueError("stored discounts belong to transitions already summed: use n_step=1")
        if capacity < 1:
            raise UsageError(f"--buffer-size must be >= 1, got {capacity}")
        self.steps = max(capacity // num_envs, 1)  # rows per env column
        self.num_envs = num_envs
        self.gamma, self.n_step = gamma, n_step
        self.device = torch.device(device)
        lead = (self.steps, num_envs)
        obs_space = _as_space(obs_space)
        self.obs = alloc_for_space(obs_space, lead)
        self.next_obs = alloc_for_space(obs_space, lead)
        self.actions = alloc_for_space(action_space or gym.spaces.Discrete(2), lead)
        self.extras = {name: alloc_for_space(space, lead) for name, space in (extras or {}).items()}
        self.rewards = np.zeros(lead, dtype=np.float32)
        self.terminated = np.zeros(lead, dtype=bool)
        self.truncated = np.zeros(lead, dtype=bool)
        self.discounts = np.zeros(lead, dtype=np.float32) if stored_discounts else None
        self.pos, self.full = 0, False
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return (self.steps if self.full else self.pos) * self.num_envs

    def add(self, obs: Any, next_obs: Any, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, discounts: np.ndarray | None = None, **extras: Any) -> np.ndarray:
        """Store one transition per env (and each extra field by name); returns the flat indices written."""
        if set(extras) != set(self.extras):
            raise ValueError(f"extra fields {sorted(extras)} do not match the buffer's {sorted(self.extras)}")
        if (discounts is None) != (self.discounts is None):
            raise ValueError("discounts are given exactly when the buffer was made with stored_discounts=True")
        p = self.pos
        if discounts is not None:
            self.discounts[p] = discounts
        _write(self.obs, p, obs)
        _write(self.next_obs, p, next_obs)
        self.actions[p] = actions
        self.rewards[p], self.terminated[p], self.truncated[p] = rewards, terminated, truncated
        for name, value in extras.items():
            _write(self.extras[name], p, value)
        self.pos = (p + 1) % self.steps
        self.full = self.full or self.pos == 0
        return p * self.num_envs + np.arange(self.num_envs)

    def extend(self, obs: Any, next_obs: Any, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
               truncated: np.ndarray, **extras: Any) -> None:
        """Store ``T`` consecutive vector steps at once (every array ``[T, num_envs, ...]``), exactly as ``T`` calls
        of :meth:`add` would (wrapping around the ring): how an offline dataset preloads the buffer in one copy
        instead of a million Python calls."""
        n = len(rewards)
        if n > self.steps:
            raise UsageError(f"{n * self.num_envs} transitions do not fit a buffer of {self.steps * self.num_envs}: "
                             "raise --buffer-size")
        if self.discounts is not None:
            raise ValueError("a buffer of stored discounts takes them step by step (add)")
        if set(extras) != set(self.extras):
            raise ValueError(f"extra fields {sorted(extras)} do not match the buffer's {sorted(self.extras)}")
        rows = (self.pos + np.arange(n)) % self.steps
        _write(self.obs, rows, obs)
        _write(self.next_obs, rows, next_obs)
        self.actions[rows] = actions
        self.rewards[rows], self.terminated[rows], self.truncated[rows] = rewards, terminated, truncated
        for name, value in extras.items():
            _write(self.extras[name], rows, value)
        self.full = self.full or self.pos + n >= self.steps
        self.pos = (self.pos + n) % self.steps

    def n_step_targets(self, t: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(reward sums, discounts, dones, bootstrap rows) for start rows ``t`` of env columns ``e``."""
        if self.discounts is not None:  # transitions summed elsewhere: their own discount, no walking forward
            return self.rewards[t, e], self.discounts[t, e], self.terminated[t, e], t
        available = (self.pos - t - 1) % self.steps + 1 if self.full else self.pos - t  # rows t..newest
        return n_step_returns(self.rewards, self.terminated, self.truncated, t, e, self.n_step, self.gamma,
                              available)

    def _batch(self, flat: np.ndarray, weights: np.ndarray | None = None) -> ReplayBatch:
        t, e = flat // self.num_envs, flat % self.num_envs
        ret, discount, done, boot = self.n_step_targets(t, e)
        dev = self.device
        return ReplayBatch(
            obs=to_tensor(_read(self.obs, (t, e)), dev),
            actions=to_tensor(self.actions[t, e], dev),
            rewards=to_tensor(ret, dev),
            next_obs=to_tensor(_read(self.next_obs, (boot, e)), dev),
            dones=to_tensor(done.astype(np.float32), dev),
            discounts=to_tensor(discount, dev),
            weights=to_tensor(np.ones(len(flat), np.float32) if weights is None else weights.astype(np.float32),
                              dev),
            indices=flat,
            extras={name: to_tensor(_read(store, (t, e)), dev) for name, store in self.extras.items()},
        )

    def sample(self, batch_size: int) -> ReplayBatch:
        return self._batch(self.rng.integers(0, len(self), size=batch_size))

    def state_dict(self) -> dict[str, Any]:
        names = ("obs", "next_obs", "actions", "extras", "rewards", "terminated", "truncated", "pos", "full")
        if self.discounts is not None:
            names += ("discounts",)
        return {**{k: getattr(self, k) for k in names}, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if key == "rng":
                self.rng.bit_generator.state = value
            elif key in ("pos", "full"):
                setattr(self, key, value)
            else:
                _copy_into(getattr(self, key), value)


def _copy_into(store: Any, value: Any) -> None:
    if isinstance(store, dict):
        for key in store:
            _copy_into(store[key], value[key])
    else:
        store[...] = value


# ----------------------------------------------------------------------------------------------------------------
# On-policy rollouts: storage [num_steps, num_envs], returns and GAE that cut at episode ends
# ----------------------------------------------------------------------------------------------------------------
def discounted_returns(rewards: torch.Tensor, next_values: torch.Tensor, cuts: torch.Tensor,
                       gamma: float) -> torch.Tensor:
    """Reward-to-go over ``[T, N]`` arrays: G_t = r_t + γ · (next_values_t if the chain stops after t else
    G_{t+1}). The chain stops where ``cuts`` is True (the episode ended at t) and after the last row;
    ``next_values`` holds what to bootstrap from there: 0 for a termination, V(final obs) for a truncation, the
    critic's (or 0's) value of the next observation after the last row. Monte-Carlo REINFORCE collects whole
    episodes, so every chain ends in a cut."""
    out = torch.zeros_like(rewards)
    future = next_values[-1]
    for t in reversed(range(len(rewards))):
        future = rewards[t] + gamma * torch.where(cuts[t], next_values[t], future)
        out[t] = future
    return out


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor, cuts: torch.Tensor, gamma: float,
        lam: float) -> torch.Tensor:
    """Generalized Advantage Estimation (Schulman et al. 2016) over ``[T, N]`` arrays.

    δ_t = r_t + γ V(s'_t) − V(s_t), where V(s'_t) = ``next_values`` is the value of the *real* next state: the
    next row's value inside an episode, V(final obs) where a time limit truncated it, 0 where it terminated.
    A_t = δ_t + γλ (1 − cut_t) A_{t+1}: the sum never crosses an episode end (``cuts``), and stops after the last
    row. λ = 1 gives the Monte-Carlo advantage G_t − V(s_t); λ = 0 the one-step TD error."""
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    deltas = rewards + gamma * next_values - values
    keep = (~cuts).to(rewards.dtype) * (gamma * lam)
    for t in reversed(range(len(rewards))):
        running = deltas[t] + keep[t] * running
        adv[t] = running
    return adv


class RolloutBatch(NamedTuple):
    """A minibatch of rollout steps: flat ``[B, ...]`` from :meth:`RolloutBuffer.minibatches`, or ``[L, B, ...]``
    sequences from :meth:`RolloutBuffer.sequences` (then ``episode_starts`` marks where a new episode begins, so
    a recurrent or attention policy can reset its memory there)."""

    obs: Any
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    episode_starts: torch.Tensor
    extras: dict[str, torch.Tensor]


class RolloutBuffer:
    """On-policy storage, ``[num_steps, num_envs]``, kept on the host where the envs are; read as torch tensors
    on ``device``.

    Per step: ``obs`` (the observation the action was taken in), ``actions``, ``logprobs`` and ``values`` of the
    acting policy, ``rewards``, ``terminated``/``truncated``, and ``final_values`` = V(real final observation)
    where the step was truncated (what a time-limit end bootstraps from). ``episode_starts[t]`` is derived: True
    where ``obs[t]`` is the first observation of an episode (carried across rollouts). Extra per-step fields
    are declared by space: ``extras={"skill": Discrete(8)}``.

    Why numpy storage: the acting phase on a CPU is per-step overhead, and writing a row of a numpy array costs
    ~1 µs against ~5 µs for a torch tensor (``add`` takes numpy arrays or tensors alike). The tensors are built
    when read, once per rollout: views of the same memory on a CPU, one copy to a GPU.

    After :meth:`compute_advantages`, :meth:`minibatches` yields shuffled flat minibatches and :meth:`sequences`
    contiguous chunks of one env's steps."""

    def __init__(self, num_steps: int, num_envs: int, obs_space: gym.Space, action_space: gym.Space, *,
                 extras: dict[str, gym.Space] | None = None, device: torch.device | str = "cpu"):
        self.num_steps, self.num_envs, self.device = num_steps, num_envs, torch.device(device)
        lead = (num_steps, num_envs)
        f32 = lambda: np.zeros(lead, dtype=np.float32)  # noqa: E731
        self._store: dict[str, Any] = {
            "obs": alloc_for_space(obs_space, lead), "actions": alloc_for_space(action_space, lead),
            "logprobs": f32(), "values": f32(), "final_values": f32(), "rewards": f32(),
            **{name: np.zeros(lead, dtype=bool) for name in ("terminated", "truncated", "episode_starts")},
        }
        self._extras = {name: alloc_for_space(space, lead) for name, space in (extras or {}).items()}
        self._tensors: dict[str, Any] = {}  # read cache; cleared by every write
        self.advantages = torch.zeros(lead, dtype=torch.float32, device=self.device)
        self.returns = torch.zeros(lead, dtype=torch.float32, device=self.device)
        self.next_start = np.ones(num_envs, dtype=bool)  # the first rollout starts every episode
        self.pos = 0

    def add(self, obs: Any, actions: Any, logprobs: Any, values: Any, rewards: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray, final_values: Any = None, **extras: Any) -> None:
        """Store one vector step (numpy arrays or tensors). ``final_values`` (None = no truncation in this step)
        is V(real final obs)."""
        if self.pos >= self.num_steps:
            raise RuntimeError("rollout buffer full: call reset() after the update")
        t, store = self.pos, self._store
        _write(store["obs"], t, to_numpy(obs))
        store["actions"][t], store["logprobs"][t], store["values"][t] = (
            to_numpy(actions), to_numpy(logprobs), to_numpy(values))
        store["rewards"][t], store["terminated"][t], store["truncated"][t] = rewards, terminated, truncated
        if final_values is not None:
            store["final_values"][t] = to_numpy(final_values)
        for name, value in extras.items():
            _write(self._extras[name], t, to_numpy(value))
        store["episode_starts"][t] = self.next_start
        self.next_start = np.logical_or(terminated, truncated)
        self.pos += 1
        self._tensors.clear()

    def _tensor(self, name: str) -> Any:
        if name not in self._tensors:
            array = self._store[name] if name in self._store else self._extras[name]
            self._tensors[name] = to_tensor(array, self.device)  # a view on CPU, a copy on CUDA
        return self._tensors[name]

    obs = property(lambda self: self._tensor("obs"))
    actions = property(lambda self: self._tensor("actions"))
    logprobs = property(lambda self: self._tensor("logprobs"))
    values = property(lambda self: self._tensor("values"))
    final_values = property(lambda self: self._tensor("final_values"))
    rewards = property(lambda self: self._tensor("rewards"))
    terminated = property(lambda self: self._tensor("terminated"))
    truncated = property(lambda self: self._tensor("truncated"))
    episode_starts = property(lambda self: self._tensor("episode_starts"),
                              doc="True where ``obs[t]`` is the first observation of an episode.")

    @property
    def extras(self) -> dict[str, Any]:
        return {name: self._tensor(name) for name in self._extras}

    @property
    def cuts(self) -> torch.Tensor:
        """True where an episode ended at step t (terminated or truncated): returns and GAE stop there."""
        return self.terminated | self.truncated

    def next_values(self, last_values: torch.Tensor) -> torch.Tensor:
        """V of the real next state of every step: the next row's value, ``last_values`` after the last row,
        ``final_values`` where truncated, 0 where terminated."""
        nxt = torch.cat([self.values[1:], last_values.detach().view(1, -1)])
        nxt = torch.where(self.truncated, self.final_values, nxt)
        return torch.where(self.terminated, torch.zeros_like(nxt), nxt)

    def compute_advantages(self, last_values: torch.Tensor, gamma: float, lam: float) -> None:
        """Fill ``advantages`` (GAE(λ)) and ``returns`` (= advantages + values, the critic's target)."""
        self.advantages = gae(self.rewards, self.values, self.next_values(last_values), self.cuts, gamma, lam)
        self.returns = self.advantages + self.values

    def compute_returns(self, last_values: torch.Tensor, gamma: float) -> None:
        """Fill ``returns`` with the discounted reward-to-go and ``advantages`` with returns − values."""
        self.returns = discounted_returns(self.rewards, self.next_values(last_values), self.cuts, gamma)
        self.advantages = self.returns - self.values

    def _select(self, t: Any, e: Any) -> RolloutBatch:
        starts = self.episode_starts
        return RolloutBatch(
            obs=_read(self.obs, (t, e)), actions=self.actions[t, e], logprobs=self.logprobs[t, e],
            values=self.values[t, e], advantages=self.advantages[t, e], returns=self.returns[t, e],
            episode_starts=starts[t, e],
            extras={name: _read(store, (t, e)) for name, store in self.extras.items()},
        )

    def all(self) -> RolloutBatch:
        """Every step, flattened to ``[T * N, ...]`` (time-major)."""
        idx = torch.arange(self.num_steps * self.num_envs, device=self.device)
        return self._select(idx // self.num_envs, idx % self.num_envs)

    def minibatches(self, batch_size: int, generator: torch.Generator | None = None) -> Iterable[RolloutBatch]:
        """Flat minibatches over a fresh permutation of all T·N steps (the last one may be smaller)."""
        perm = torch.randperm(self.num_steps * self.num_envs, generator=generator).to(self.device)
        for start in range(0, len(perm), batch_size):
            idx = perm[start:start + batch_size]
            yield self._select(idx // self.num_envs, idx % self.num_envs)

    def sequences(self, seq_len: int, seqs_per_batch: int,
                  generator: torch.Generator | None = None) -> Iterable[RolloutBatch]:
        """Minibatches of ``seqs_per_batch`` contiguous chunks of ``seq_len`` steps of one env each, shaped
        ``[seq_len, B, ...]``, chunks shuffled. ``episode_starts`` shows where episodes begin inside a chunk."""
        if self.num_steps % seq_len:
            raise UsageError(f"the rollout length {self.num_steps} is not a multiple of the sequence length {seq_len}")
        chunks = self.num_steps // seq_len
        order = torch.randperm(chunks * self.num_envs, generator=generator).to(self.device)
        offsets = torch.arange(seq_len, device=self.device).view(-1, 1)  # [L, 1]
        for start in range(0, len(order), seqs_per_batch):
            ids = order[start:start + seqs_per_batch]
            t = (ids // self.num_envs) * seq_len + offsets  # [L, B]
            e = (ids % self.num_envs).expand_as(t)
            yield self._select(t, e)

    def reset(self) -> None:
        """Start a new rollout (call before each one): rows are overwritten, ``final_values`` zeroed because
        ``add`` writes it only on steps with a truncation."""
        self.pos = 0
        self._store["final_values"].fill(0.0)
        self._tensors.clear()

    def state_dict(self) -> dict[str, Any]:
        """Only what carries over between rollouts (a checkpoint is taken between updates)."""
        return {"next_start": self.next_start.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_start = np.asarray(state["next_start"], dtype=bool).copy()


def values_of_final_obs(value_fn: Callable[[Any], torch.Tensor], next_obs: Any, infos: dict,
                        terminated: np.ndarray, truncated: np.ndarray, device: torch.device) -> torch.Tensor | None:
    """V(real final observation) for the sub-envs a time limit truncated in this step, 0 elsewhere: what a
    truncated episode bootstraps from (terminated ones bootstrap from nothing). None when nothing was truncated
    (most steps: no tensor to build)."""
    cut = truncated & ~terminated
    if not cut.any():
        return None
    out = torch.zeros(len(terminated), device=device)
    final = real_next_obs(next_obs, infos)
    idx = np.flatnonzero(cut)
    with torch.no_grad():
        obs = to_tensor(_read(final, idx), device)
        if isinstance(obs, torch.Tensor):
            obs = obs.float()  # as the acting path feeds the policy (some envs return float64)
        out[torch.as_tensor(idx, device=device)] = value_fn(obs).view(-1)
    return out


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


# Seconds between plain progress lines when stderr is not a terminal (no tqdm bar); DLRL_PROGRESS_SECONDS overrides.
PLAIN_PROGRESS_SECONDS = float(os.environ.get("DLRL_PROGRESS_SECONDS", "30"))


class PlainProgress:
    """For a tqdm bar that shows nothing (``disable=None`` and stderr is not a terminal: a log file, CI, nohup):
    :meth:`due` is True once every ``PLAIN_PROGRESS_SECONDS``, when the caller prints a plain progress line, so
    long work is never silent. On a terminal the bar itself shows progress and :meth:`due` is always False."""

    def __init__(self, bar: Any):
        self.bar, self._next = bar, time.time() + PLAIN_PROGRESS_SECONDS

    def due(self) -> bool:
        if not self.bar.disable or time.time() < self._next:
            return False
        self._next = time.time() + PLAIN_PROGRESS_SECONDS
        return True


class Run:
    """A run folder and everything written into it: ``config.json``, TensorBoard events, ``metrics.csv`` (long
    format: step, tag, value, wall_time), ``summary.json``, a progress bar, and checkpoints in ``ckpt/``.

    ``log(tag, value, step)`` goes to TensorBoard and to the CSV; ``wall_time`` counts seconds of training,
    carried across resumes. ``save(name, step, **objects)`` writes ``ckpt/<name>.pt`` with the objects' states, the
    arguments, the step, the elapsed time and every RNG state; ``restore(ckpt, **objects)`` puts them back, so a
    script never repeats the resume block. Given a checkpoint (from :func:`parse_run_args`), the run continues in
    that checkpoint's folder and drops whatever was logged after the checkpoint's step."""

    def __init__(self, args: Any, algo: str, resume: Checkpoint | None = None, task: str = ""):
        from torch.utils.tensorboard import SummaryWriter

        self.args, self.algo = args, algo
        start_step, elapsed = (resume.step, resume.elapsed) if resume is not None else (0, 0.0)
        if resume is not None:
            run_dir = resume.run_dir
        else:  # a new run: <runs_dir>/<--run-name> or {task}__{algo}__{seed}__{time}, task = env id by default
            task = (task or getattr(args, "env_id", "env")).replace("/", "-")
            name = args.run_name or f"{task}__{algo}__{args.seed}__{int(time.time())}"
            run_dir = Path(args.runs_dir) / name
        self.run_dir = Path(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise UsageError(f"cannot write the run folder {self.run_dir}: {err.strerror or err}") from None
        config = {**dataclasses.asdict(args), "algo": algo}
        write_text_atomic(self.run_dir / "config.json", json.dumps(config, indent=2, default=str))
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
        # purge_step drops events logged *after* the checkpoint (TensorBoard purges steps >= purge_step).
        self.writer = SummaryWriter(str(self.run_dir), purge_step=start_step + 1 if start_step else None)
        self.writer.add_text(
            "hyperparameters",
            "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in config.items()),
        )
        self._t0 = time.time() - elapsed
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.bar = None

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "ckpt"

    def save(self, name: str, step: int, **objects: Any) -> Path:
        """Atomically write ``ckpt/<name>.pt``: each object's state (see :func:`state_of`), plus the script that
        wrote it, its arguments, ``step``, the elapsed training time and the RNG states."""
        reserved = set(objects) & {"script", "algo", "args", "step", "elapsed", "rng"}
        if reserved:
            raise ValueError(f"checkpoint keys {sorted(reserved)} are reserved; name these objects differently")
        return save_checkpoint(
            self.ckpt_dir / f"{name}.pt", script=script_id(type(self.args)), algo=self.algo,
            args=dataclasses.asdict(self.args), step=step, elapsed=self.elapsed,
            **{key: state_of(obj) for key, obj in objects.items()},
        )

    @staticmethod
    def restore(ckpt: Checkpoint, **objects: Any) -> bool:
        """Load each named object from ``ckpt`` (see :func:`load_state_into`), then the RNG states (last, so
        nothing done while restoring consumes random numbers). Returns False if a vector env among the objects
        could not be restored exactly (it then starts fresh episodes)."""
        exact = True
        for key, obj in objects.items():
            if key not in ckpt.state:
                raise UsageError(f"checkpoint {ckpt.path} has no {key!r}: it was written by another version")
            exact &= load_state_into(obj, ckpt.state[key]) is not False
        set_rng_state(ckpt.state["rng"])
        return exact

    def _truncate_csv(self, step: int) -> None:
        """On resume, drop rows written after the checkpoint so the continued run does not duplicate them."""
        if not step or not self.csv_path.exists():
            return
        with open(self.csv_path, newline="") as f:
            rows = list(csv.reader(f))
        # a row cut short (the disk filled up mid-write) is dropped with the rows after the checkpoint
        keep = [rows[0]] + [r for r in rows[1:] if len(r) == len(METRICS_FIELDS) and int(r[0]) <= step]
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

        # disable=None turns the bar off when stderr is not a terminal (a log file, CI, nohup): then
        # update_progress prints a plain line every PLAIN_PROGRESS_SECONDS instead, so long work is never silent.
        self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=None)
        self._progress_total, self._plain = total, PlainProgress(self.bar)
        return self.bar

    def update_progress(self, n: int, step: int, sps: float) -> None:
        """Advance the bar by ``n`` to ``step``; without a terminal, a plain progress line now and then."""
        if self.bar is None:
            return
        recent = np.mean(self.recent_returns) if self.recent_returns else float("nan")
        if self.bar.disable:
            if self._plain.due():
                total = self._progress_total
                print(f"progress: step {step:,}/{total:,} ({100 * step / max(total, 1):.0f}%) | {sps:,.0f} steps/s | "
                      f"recent return {recent:.1f} | {self.elapsed:.0f}s", flush=True)
            return
        self.bar.set_postfix(SPS=int(sps), ret=f"{recent:.1f}", refresh=False)
        self.bar.update(n)

    def write_summary(self, **summary: Any) -> Path:
        """``summary.json``: the run's headline numbers (every RL script writes at least ``final_eval_return``,
        ``env_steps`` and ``wall_time_s``, which ``benchmarks/run.py`` reads)."""
        return write_text_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2, default=float))

    def flush(self) -> None:
        self._csv_file.flush()
        self.writer.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self._csv_file.close()
        self.writer.close()


RunLogger = Run  # the older name, still used by the vision scripts


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
    try:
        with open(tmp, "wb") as f:  # a Python file object: a full disk raises OSError(ENOSPC), not a C++ enforce
            torch.save(payload, f)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write checkpoint {path}: {err.strerror or err} (the previous {path.name}, if any, "
                         "is kept whole)") from None
    os.replace(tmp, path)  # never leave a half-written checkpoint behind
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see the old file or the new one,
    never half of one (a full disk leaves the old file and no temporary behind)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
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


def script_id(cls: type) -> str:
    """The script an Args class belongs to, relative to the repo root (``classic_rl/ppo/train.py``): stored in
    every checkpoint so that another script's checkpoint is refused with one line instead of a KeyError."""
    path = Path(inspect.getfile(cls)).resolve()
    root = Path(__file__).resolve().parent
    return str(path.relative_to(root)) if path.is_relative_to(root) else path.name


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint: where it lives and what it holds (``state``, as written by :meth:`Run.save`)."""

    path: Path
    state: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return self.path.resolve().parent.parent  # <run>/ckpt/<name>.pt

    @property
    def args(self) -> dict[str, Any]:
        return self.state["args"]

    @property
    def step(self) -> int:
        return int(self.state.get("step", 0))

    @property
    def elapsed(self) -> float:
        return float(self.state.get("elapsed", 0.0))

    def __getitem__(self, key: str) -> Any:
        return self.state[key]


def open_checkpoint(path: str | Path, cls: type | None = None) -> Checkpoint:
    """Load a checkpoint for the script whose arguments are ``cls``. ``path`` may be a run folder (its
    ``ckpt/latest.pt`` is used). One-line :class:`UsageError` for a missing or corrupt file, a checkpoint another
    script wrote, or arguments this script does not have."""
    path = Path(path)
    if path.is_dir():
        latest = path / "ckpt" / "latest.pt"
        if not latest.is_file():
            raise UsageError(f"no checkpoint in run folder {path} (expected {latest})")
        path = latest
    state = load_checkpoint(path)
    if not isinstance(state, dict) or "args" not in state:
        raise UsageError(f"{path} is not a checkpoint written by this project's scripts")
    if cls is not None:
        mine, theirs = script_id(cls), state.get("script")
        if theirs is not None and theirs != mine:
            raise UsageError(f"{path} was written by {theirs}, not {mine}: give a checkpoint of this script")
        unknown = sorted(set(state["args"]) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UsageError(f"{path} has arguments this script does not know ({', '.join(unknown[:4])}): it was "
                             f"written by another script or version")
    return Checkpoint(path, state)


def state_of(obj: Any) -> Any:
    """What a checkpoint stores for ``obj``: ``state_dict()`` for modules, optimizers, buffers and anything else
    that has one; the fields of a dataclass; the bit-generator state of a numpy Generator; the sub-envs and
    normalisation statistics of a vector env (:func:`get_env_state`); other values as they are."""
    if isinstance(obj, gym.vector.VectorEnv):
        return get_env_state(obj)
    if hasattr(obj, "state_dict") and not isinstance(obj, dict):
        return obj.state_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.random.Generator):
        return obj.bit_generator.state
    return obj


def load_state_into(obj: Any, state: Any) -> bool | None:
    """The inverse of :func:`state_of`, in place. Returns :func:`set_env_state`'s answer for a vector env."""
    if isinstance(obj, gym.vector.VectorEnv):
        return set_env_state(obj, state)
    if hasattr(obj, "load_state_dict") and not isinstance(obj, dict):
        try:
            obj.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(f"checkpoint does not fit this configuration: {first}") from None
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for key, value in state.items():
            setattr(obj, key, value)
    elif isinstance(obj, np.random.Generator):
        obj.bit_generator.state = state
    else:
        raise TypeError(f"cannot restore an object of type {type(obj).__name__} in place")
    return None


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
# Ray: pools of worker processes on this machine by default, on a cluster with --ray-address (D4PG, DPPO)
# ----------------------------------------------------------------------------------------------------------------
@contextmanager
def ray_session(address: str = "", num_workers: int = 1):
    """Ray for the duration of the block: a fresh local instance (no dashboard, worker logs kept out of the
    terminal) or, with ``address`` (``HOST:PORT`` of a ``ray start --head``), that cluster. Shut down on the way
    out, whatever happened, so no Ray process outlives the run.

    Local Ray is given at least ``num_workers`` CPUs so that many one-CPU workers can start on a smaller machine
    (they share its cores). A cluster must have them: asking for more would wait forever, so it is an error."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-report prompt or network call
    if address:
        check_ray_address(address)
        # Recent Ray clusters require an auth token by default (`ray start --head` keeps it in ~/.ray/auth_token),
        # but a driver joining one only sends it in token mode, read when ray is imported: measured here (Ray
        # 2.60), without this the join fails after ~15 s of retries.
        token = os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").exists()
        if token and "RAY_AUTH_MODE" not in os.environ:
            os.environ["RAY_AUTH_MODE"] = "token"
    import ray

    try:
        ray.init(address=address or "local", num_cpus=None if address else max(os.cpu_count() or 1, num_workers),
                 include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise UsageError(f"--ray-address {address}: {str(err).strip().splitlines()[0]}") from None
    try:
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < num_workers:
            raise UsageError(f"the Ray cluster at {address} has {cpus:g} CPUs, fewer than the {num_workers} workers "
                             "asked for: lower the worker count or add nodes")
        yield ray
    finally:
        ray.shutdown()


def check_ray_address(address: str) -> None:
    """A quick TCP look at ``HOST:PORT`` (before anything is written): ``ray.init`` on an address where nothing
    listens retries for about a minute before it fails."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address must be HOST:PORT (the address `ray start --head` prints), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as err:
        raise UsageError(f"--ray-address {address}: no Ray head answers there ({err.strerror or err}); start one "
                         "with `ray start --head`, or leave the flag out to run on this machine") from None


class RayPool:
    """``n`` Ray actors of ``cls``, one process each, built with ``make_args(i)``: calls on one or all of them,
    weights put once in the object store for all, and every failure turned into one :class:`WorkerError` line
    naming the worker and the exception it raised (or that it died).

    Each actor is registered under a name unique to this run (``names[i]``): another pool's actors find it with
    ``ray.get_actor(name)``. Pass names, not handles, to actors that Ray may restart: a handle among the
    constructor arguments would live in the object store, and a restart could not rebuild it."""

    def __init__(self, cls: type, n: int, make_args: Callable[[int], tuple], name: str = "worker",
                 max_restarts: int = 0):
        import uuid

        import ray

        self.name = name
        run_id = uuid.uuid4().hex[:8]  # several runs may share one cluster
        self.names = [f"{name}-{i}-{run_id}" for i in range(n)]
        # a restarted actor also re-runs the call it died in (max_task_retries): else that call's error ends the run
        remote = ray.remote(num_cpus=1, max_restarts=max_restarts, max_task_retries=max_restarts)(cls)
        self.workers = [remote.options(name=self.names[i]).remote(*make_args(i)) for i in range(n)]
        self._owner: dict[Any, int] = {}  # pending call -> worker index, to name the worker in an error
        # Wait until every worker is built: a run then starts with all of them (under load a process can take
        # seconds to import torch), and an error in a constructor is reported before any training.
        self.get([self.call(i, "__ray_ready__") for i in range(n)])

    def __len__(self) -> int:
        return len(self.workers)

    @staticmethod
    def put(obj: Any) -> Any:
        """One copy in the object store (e.g. the weights), passed by reference to every worker's call."""
        import ray

        return ray.put(obj)

    def call(self, i: int, method: str, *args: Any) -> Any:
        ref = getattr(self.workers[i], method).remote(*args)
        self._owner[ref] = i
        return ref

    def call_all(self, method: str, *args: Any) -> list[Any]:
        return [self.call(i, method, *args) for i in range(len(self.workers))]

    def owner(self, ref: Any) -> int:
        return self._owner[ref]

    def get(self, refs: Any, timeout: float | None = None) -> Any:
        """``ray.get`` with failures as :class:`WorkerError`."""
        import ray

        try:
            out = ray.get(refs, timeout=timeout)
        except ray.exceptions.RayError as err:
            raise self._error(err, refs) from None
        for ref in refs if isinstance(refs, list) else [refs]:
            self._owner.pop(ref, None)
        return out

    def wait(self, refs: list[Any], timeout: float | None = None) -> list[Any]:
        """The calls among ``refs`` that have finished (at least one unless ``timeout`` passes first)."""
        import ray

        return ray.wait(refs, num_returns=1, timeout=timeout)[0]

    def _error(self, err: Exception, refs: Any) -> WorkerError:
        import ray

        failed = next((r for r in (refs if isinstance(refs, list) else [refs]) if self._failed(r)), None)
        who = f"{self.name} {self._owner[failed]}" if failed is not None else self.name
        if isinstance(err, ray.exceptions.RayTaskError):
            cause = err.cause if isinstance(err.cause, BaseException) else err
            text = str(cause).strip().splitlines()
            return WorkerError(f"{who} raised {type(cause).__name__}: {text[-1] if text else ''}")
        return WorkerError(f"{who} died ({type(err).__name__}); the run cannot go on without it")

    @staticmethod
    def _failed(ref: Any) -> bool:
        import ray

        try:
            ray.get(ref, timeout=0)
            return False
        except ray.exceptions.GetTimeoutError:
            return False
        except ray.exceptions.RayError:
            return True

    def close(self) -> None:
        import ray

        for worker in self.workers:
            ray.kill(worker)


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


def _run_seed(run_dir: Path) -> int | None:
    try:
        return json.loads((run_dir / "config.json").read_text()).get("seed")
    except (OSError, json.JSONDecodeError):
        return None


def _tags(run_dir: Path) -> set[str]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return {row["tag"] for row in csv.DictReader(f)}


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
    plotted = 0
    for label, runs in groups.items():
        for tag in tags:
            curves = [read_metrics(r, tag)[:2] for r in runs]
            curves = [(x, moving_average(y, window)) for x, y in curves if len(x)]
            if not curves:
                continue
            name = label if len(tags) == 1 else f"{label} {tag}"
            plotted += 1
            if len(curves) == 1:
                ax.plot(*curves[0], label=name)
                continue
            seeds = {_run_seed(r) for r in runs}
            unit = "seeds" if len(seeds) == len(runs) and None not in seeds else "runs"
            grid = np.linspace(max(c[0][0] for c in curves), min(c[0][-1] for c in curves), 200)
            ys = np.stack([np.interp(grid, x, y) for x, y in curves])
            mean, std = ys.mean(0), ys.std(0)
            ax.plot(grid, mean, label=f"{name} ({len(curves)} {unit}, band ±1 std up to the shortest)")
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
    if not plotted:
        plt.close(fig)
        known = sorted({row for r in map(Path, run_dirs) for row in _tags(r)})
        raise UsageError(f"no data for tag(s) {', '.join(tags)} in these runs; tags there: {', '.join(known)}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return" if all("return" in t for t in tags) else " / ".join(tags))  # e.g. eval/success_rate
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

"""Offline RL datasets without ``d4rl``: one in-memory format, read from D4RL hdf5 files or Minari datasets and
written back to both.

A dataset is a flat sequence of transitions (s_t, a_t, r_t, s_{t+1}) in the D4RL layout::

    observations [N, o]  actions [N, a]  rewards [N]  next_observations [N, o]  terminals [N]  timeouts [N]

Episodes are the runs between ``terminals | timeouts`` (a last run with neither is an unfinished episode).
The two flags mean different things and an offline learner must keep them apart (the trap every D4RL loader
meets): ``terminals`` is the MDP ending (Hopper fell): nothing follows, the target is r, and the bootstrap mask
``1 − terminals`` is 0; ``timeouts`` is the time limit cutting the episode (1000 steps): s_{t+1} still has a
value, the target is r + γ V(s_{t+1}), mask 1. So masks come from terminals only; the episode split from both.

* :func:`load_hdf5` / :func:`save_hdf5`: the files D4RL users have (``hopper-medium-v2.hdf5``) and the ones this
  project generates (``offline_rl/make_datasets.py``); ``next_observations`` is rebuilt from the next row when a
  file lacks it (D4RL's v0 files), which is exact inside an episode and marked unusable at its last step.
* :func:`load_minari` / :func:`save_minari`: Minari datasets (``minari.load_dataset``; local ones under
  ``MINARI_DATASETS_PATH``). Minari stores episodes with T + 1 observations and ``terminations`` /
  ``truncations``; they map onto ``terminals`` / ``timeouts``.
* :func:`load`: either, by the argument's form (a ``.hdf5`` path or a Minari id); checks the env matches.
* :func:`normalized_score`: D4RL's 100 · (R − R_random) / (R_expert − R_random) with its reference constants.

Every failure a user can cause (missing or corrupt file, a dataset of another env, wrong observation size) is a
:class:`rl_utils.UsageError`: one ``error:`` line, exit 2.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: python offline_rl/datasets.py --source ...
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rl_utils  # noqa: E402

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")

# D4RL's reference returns (d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE: a random policy and an expert SAC on the
# v2 envs). The gymnasium v5 envs differ slightly (mujoco versions, contact solver), so scores on v5 data are
# only approximately comparable with published D4RL tables.
REF_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
}


def env_family(env_id: str) -> str:
    """``Hopper-v5`` -> ``hopper`` (the key of :data:`REF_SCORES` and of D4RL dataset names)."""
    return env_id.split("/")[-1].split("-")[0].lower()


def normalized_score(env_id: str, returns: float | np.ndarray) -> float | np.ndarray:
    """D4RL's normalised score: 0 = a random policy, 100 = D4RL's expert. Unknown env -> UsageError."""
    family = env_family(env_id)
    if family not in REF_SCORES:
        raise rl_utils.UsageError(f"no D4RL reference scores for {env_id} (known: {', '.join(REF_SCORES)})")
    low, high = REF_SCORES[family]
    return 100.0 * (np.asarray(returns, dtype=np.float64) - low) / (high - low)


@dataclass
class OfflineDataset:
    """Transitions in the D4RL layout (module docstring) plus ``metadata`` (env id, behaviour policy, ...)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.rewards)
        for name in FIELDS:
            value = getattr(self, name)
            if len(value) != n:
                raise rl_utils.UsageError(f"dataset field {name} has {len(value)} rows, rewards has {n}")
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(n)
        self.terminals = np.asarray(self.terminals, dtype=bool).reshape(n)
        self.timeouts = np.asarray(self.timeouts, dtype=bool).reshape(n)

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def masks(self) -> np.ndarray:
        """Bootstrap masks 1 − terminals [N] (float32): a time-out still bootstraps."""
        return 1.0 - self.terminals.astype(np.float32)

    def episode_slices(self) -> list[slice]:
        """Each episode's rows: cut after every terminal or time-out; a trailing unfinished run is one more."""
        ends = np.flatnonzero(self.terminals | self.timeouts) + 1
        starts = np.concatenate([[0], ends])
        if len(ends) == 0 or ends[-1] != len(self):
            ends = np.concatenate([ends, [len(self)]])
        return [slice(int(s), int(e)) for s, e in zip(starts, ends, strict=False) if e > s]

    def episode_returns(self) -> np.ndarray:
        return np.array([self.rewards[s].sum() for s in self.episode_slices()], dtype=np.float64)

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    def obs_stats(self, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std + ``eps`` of the observations [o] each: the fixed normalisation an offline learner applies
        (and saves with its policy); ``eps`` keeps a constant feature finite (CORL's 1e-3)."""
        return self.observations.mean(0), self.observations.std(0) + eps

    def unit_actions(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """The actions mapped from the env's Box [low, high] onto [-1, 1] (the inverse of the linear map
        ``rl_utils.make_env(unit_actions=True)`` applies), clipped there: the space every policy here acts in."""
        return np.clip(2.0 * (self.actions - low) / (high - low) - 1.0, -1.0, 1.0).astype(np.float32)

    def check_env(self, env_id: str) -> None:
        """One-line errors for data of another env: the recorded env family, observation and action sizes."""
        import gymnasium as gym

        recorded = self.metadata.get("env_id")
        if recorded and env_family(recorded) != env_family(env_id):
            raise rl_utils.UsageError(f"the dataset was recorded on {recorded}, not {env_id}")
        rl_utils.check_env_id(env_id)
        env = gym.make(env_id)
        obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
        env.close()
        if (self.obs_dim,) != obs_shape:
            raise rl_utils.UsageError(f"dataset observations have {self.obs_dim} dims, {env_id} has {obs_shape}")
        if (self.act_dim,) != act_shape:
            raise rl_utils.UsageError(f"dataset actions have {self.act_dim} dims, {env_id} has {act_shape}")

    def summary(self) -> dict[str, Any]:
        """Sizes and episode returns, for a README table and the run's log."""
        returns = self.episode_returns()
        return {"transitions": len(self), "episodes": len(returns), "return_mean": float(returns.mean()),
                "return_std": float(returns.std()), "return_max": float(returns.max()),
                "terminals": int(self.terminals.sum()), "timeouts": int(self.timeouts.sum())}


def concatenate(parts: list[OfflineDataset], metadata: dict[str, Any]) -> OfflineDataset:
    """Datasets end to end (D4RL's medium-expert = medium + expert). Each part must end on an episode end, so no
    episode runs across the seam."""
    for part in parts:
        if len(part) and not (part.terminals[-1] or part.timeouts[-1]):
            raise ValueError("a part of a concatenation ends mid-episode")
    return OfflineDataset(*(np.concatenate([getattr(p, name) for p in parts]) for name in FIELDS), metadata=metadata)


# ------------------------------------------------------------------------------------------------ D4RL hdf5 files
def save_hdf5(dataset: OfflineDataset, path: str | Path) -> Path:
    """Write the D4RL layout atomically (a temporary file in the same folder, then ``os.replace``: an interrupted
    write leaves no half file). ``metadata`` goes into the file's attributes as JSON."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make a shared dataset private
    try:
        with h5py.File(tmp, "w") as f:
            for name in FIELDS:
                f.create_dataset(name, data=getattr(dataset, name), compression="gzip", compression_opts=4)
            f.attrs["metadata"] = json.dumps(dataset.metadata)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    return path


def load_hdf5(path: str | Path) -> OfflineDataset:
    """A D4RL-layout hdf5 file (D4RL's own downloads or ours). Missing or corrupt -> UsageError."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise rl_utils.UsageError(f"dataset file {path} not found")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise rl_utils.UsageError(f"{path} is not a readable hdf5 file ({err})") from None
    with f:
        missing = [k for k in ("observations", "actions", "rewards", "terminals") if k not in f]
        if missing:
            raise rl_utils.UsageError(f"{path} lacks the D4RL field(s) {', '.join(missing)}")
        data = {k: f[k][()] for k in FIELDS if k in f}
        metadata = json.loads(f.attrs["metadata"]) if "metadata" in f.attrs else {}
    n = len(data["rewards"])
    data.setdefault("timeouts", np.zeros(n, dtype=bool))
    if "next_observations" not in data:  # D4RL v0 files: the next row is s_{t+1} inside an episode
        nxt = np.concatenate([data["observations"][1:], data["observations"][-1:]])
        data["next_observations"] = nxt
        metadata.setdefault("notes", "next_observations rebuilt from the next row")
    metadata.setdefault("source", str(path))
    return OfflineDataset(**{k: data[k] for k in FIELDS}, metadata=metadata)


# ------------------------------------------------------------------------------------------------------ Minari
def minari_root() -> Path:
    """Where Minari keeps local datasets: ``MINARI_DATASETS_PATH`` or ``~/.minari/datasets``."""
    from minari.storage.datasets_root_dir import get_dataset_path

    return Path(get_dataset_path())


def save_minari(dataset: OfflineDataset, dataset_id: str, env_id: str) -> Path:
    """Write a Minari dataset (episodes of T + 1 observations) under :func:`minari_root`, atomically: it is built
    in a temporary root beside it and moved into place whole. ``metadata`` becomes its description (JSON)."""
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    root = minari_root()
    root.mkdir(parents=True, exist_ok=True)
    episodes = []
    for i, s in enumerate(dataset.episode_slices()):
        obs = np.concatenate([dataset.observations[s], dataset.next_observations[s][-1:]])  # T + 1 rows
        episodes.append(EpisodeBuffer(id=i, observations=obs, actions=dataset.actions[s],
                                      rewards=list(dataset.rewards[s]), terminations=list(dataset.terminals[s]),
                                      truncations=list(dataset.timeouts[s]), infos={}))
    family = env_family(env_id)
    low, high = REF_SCORES.get(family, (None, None))
    final = root / dataset_id
    with tempfile.TemporaryDirectory(dir=root, prefix=".building-") as scratch:
        old = os.environ.get("MINARI_DATASETS_PATH")
        os.environ["MINARI_DATASETS_PATH"] = scratch
        try:
            with _quiet():
                minari.create_dataset_from_buffers(
                    dataset_id, episodes, env=env_id, algorithm_name=str(dataset.metadata.get("policy", "unknown")),
                    author="DLRL Playground", author_email="none", code_permalink="offline_rl/make_datasets.py",
                    ref_min_score=low, ref_max_score=high, description=json.dumps(dataset.metadata))
        finally:
            if old is None:
                os.environ.pop("MINARI_DATASETS_PATH")
            else:
                os.environ["MINARI_DATASETS_PATH"] = old
        built = Path(scratch) / dataset_id
        final.parent.mkdir(parents=True, exist_ok=True)
        for meta in built.parent.glob("namespace_metadata.json"):  # the namespace's own file, once
            if not (final.parent / meta.name).exists():
                shutil.copy(meta, final.parent / meta.name)
        if final.exists():
            shutil.rmtree(final)
        os.replace(built, final)
    return final


def load_minari(dataset_id: str) -> OfflineDataset:
    """A Minari dataset by id (local: under ``MINARI_DATASETS_PATH``; remote ones need ``minari download`` and the
    network first). Episodes become D4RL rows: s_t = obs[t], s_{t+1} = obs[t + 1]."""
    import minari

    try:
        with _quiet():
            ds = minari.load_dataset(dataset_id)
    except Exception as err:  # minari raises FileNotFoundError / ValueError / its own errors by case
        raise rl_utils.UsageError(f"cannot load Minari dataset {dataset_id!r} from {minari_root()}: "
                                  f"{str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"
                                  ) from None
    parts: dict[str, list[np.ndarray]] = {k: [] for k in FIELDS}
    for ep in ds.iterate_episodes():
        obs = np.asarray(ep.observations)
        if obs.ndim != 2:
            raise rl_utils.UsageError(f"{dataset_id}: only flat Box observations are supported, got {obs.shape}")
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(np.asarray(ep.actions).reshape(len(ep.rewards), -1))
        parts["rewards"].append(np.asarray(ep.rewards))
        parts["terminals"].append(np.asarray(ep.terminations))
        parts["timeouts"].append(np.asarray(ep.truncations))
    if not parts["rewards"]:
        raise rl_utils.UsageError(f"Minari dataset {dataset_id!r} has no episodes")
    description = ds.storage.metadata.get("description") or ""
    try:
        metadata = json.loads(description)
    except json.JSONDecodeError:
        metadata = {"description": description}
    if ds.spec.env_spec is not None:
        metadata.setdefault("env_id", ds.spec.env_spec.id)
    metadata.setdefault("source", f"minari:{dataset_id}")
    return OfflineDataset(**{k: np.concatenate(v) for k, v in parts.items()}, metadata=metadata)


@contextlib.contextmanager
def _quiet():
    """Minari warns about optional metadata (author e-mail, eval env) on every create: not the user's concern."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def load(source: str, env_id: str | None = None) -> OfflineDataset:
    """A dataset from ``source``: a path ending in .hdf5 / .h5 (D4RL layout) or a Minari id such as
    ``dlrl/hopper-medium-v0``; with ``env_id``, checked against that env (one-line errors)."""
    if source.endswith((".hdf5", ".h5")) or Path(source).is_file():
        dataset = load_hdf5(source)
    else:
        dataset = load_minari(source)
    if env_id is not None:
        dataset.check_env(env_id)
    return dataset


@dataclass
class InfoArgs:
    """Print a dataset's size, episodes, returns and (for D4RL envs) normalised score."""

    source: str = ""
    """a D4RL-layout .hdf5 file or a Minari dataset id (local ones under MINARI_DATASETS_PATH)"""
    env_id: str = ""
    """check the dataset against this env (observation and action sizes, recorded env)"""


def main() -> None:
    args = rl_utils.parse_args(InfoArgs)
    if not args.source:
        raise rl_utils.UsageError("--source PATH_OR_MINARI_ID is required")
    dataset = load(args.source, args.env_id or None)
    info = dataset.summary()
    env_id = args.env_id or dataset.metadata.get("env_id", "")
    if env_id and env_family(env_id) in REF_SCORES:
        info["normalized_return_mean"] = float(normalized_score(env_id, info["return_mean"]))
    keep = ("env_id", "kind", "policy", "policy_eval_return", "actions", "seed", "gymnasium", "mujoco")
    info["metadata"] = {k: dataset.metadata[k] for k in keep if k in dataset.metadata}
    print(json.dumps(info, indent=2, default=float))


if __name__ == "__main__":
    rl_utils.run_main(main)

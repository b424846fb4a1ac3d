"""D4RL-style datasets from this project's own SAC/TD3 runs (no ``d4rl``): random, medium, medium-replay, expert
and medium-expert, each written as a D4RL-layout hdf5 file and as a local Minari dataset.

    python classic_rl/sac/train.py --env-id Hopper-v5 --total-timesteps 200000 --checkpoint-every 10000 \\
        --save-buffer --run-name hopper_sac_expert_s1               # the behaviour policies (~45 min on 2 cores)
    python offline_rl/make_datasets.py --source runs/hopper_sac_expert_s1
    python offline_rl/make_datasets.py --source runs/hopper_sac_expert_s1 --kinds medium,medium-replay

The recipe (Fu et al. 2020, §5): ``random`` rolls out a uniformly random policy; ``expert`` the trained policy
(``best.pt``); ``medium`` a snapshot of the same run whose evaluation return is closest to ``--medium-fraction``
(1/3) of the expert's; both with *sampled* actions by default (the behaviour policy's own noise gives the data its
spread; ``--deterministic`` rolls out the mean action, which scores higher). ``medium-replay`` is everything the
run's replay buffer held when the medium snapshot was taken (the learning data up to then: random warm-up, then ever
better policies), which is why the snapshots must be saved with ``--save-buffer``. ``medium-expert`` is medium
followed by expert. Rolled-out datasets have exactly ``--steps`` transitions; the last episode, cut there, ends with
a time-out (it bootstraps, as the time limit).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from offline_rl import datasets  # noqa: E402

KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")


@dataclass
class Args:
    """Make offline datasets from a SAC or TD3 run folder written with --checkpoint-every N --save-buffer."""

    source: str = ""
    """run folder of the behaviour policies: ckpt/best.pt (expert), ckpt/step_N.pt snapshots with their replay"""
    kinds: str = ",".join(KINDS)
    """comma-separated datasets to make, of: random, medium, medium-replay, expert, medium-expert"""
    steps: int = 200_000
    """transitions per rolled-out dataset (D4RL: 1M; 200k keeps each to a few minutes of CPU)"""
    medium_fraction: float = 1 / 3
    """medium = the snapshot whose eval return is closest to this fraction of the expert's (D4RL's 1/3)"""
    medium_checkpoint: str = ""
    """use this snapshot as the medium policy instead of choosing one by return"""
    expert_checkpoint: str = ""
    """use this checkpoint as the expert (default: the run's ckpt/best.pt)"""
    deterministic: bool = False
    """roll out mean actions instead of sampled ones (D4RL sampled)"""
    num_envs: int = 8
    """envs stepped side by side during roll-outs (one policy forward for all)"""
    out: str = "offline_rl/data"
    """folder for the hdf5 files: <out>/<env family>-<kind>.hdf5"""
    minari: bool = True
    """also write each as the Minari dataset dlrl/<family>-<kind>-v0 (under MINARI_DATASETS_PATH)"""
    seed: int = 0
    """seed of the roll-out envs and the random policy"""

    LIMITS = {"steps": (1, None), "medium_fraction": (0, 1), "num_envs": (1, None)}


def behaviour_classes(ckpt: rl_utils.Checkpoint) -> tuple[type, Any]:
    """The Args class and actor builder of the script that wrote ``ckpt`` (SAC, TD3 or DDPG)."""
    from classic_rl.ddpg import train as ddpg
    from classic_rl.sac import train as sac
    from classic_rl.td3 import train as td3

    for module, cls in ((sac, sac.Args), (td3, td3.Args), (ddpg, ddpg.Args)):
        if ckpt.state.get("script") == rl_utils.script_id(cls):
            return cls, module.build_actor
    raise rl_utils.UsageError(f"{ckpt.path} was written by {ckpt.state.get('script')}; behaviour policies come from "
                              f"classic_rl/sac, td3 or ddpg runs")


def eval_returns(run_dir: Path) -> dict[int, float]:
    """The run's evaluation returns by step (metrics.csv, tag eval/return)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise rl_utils.UsageError(f"{run_dir} has no metrics.csv: is it a run folder?")
    with open(path, newline="") as f:
        return {int(r["step"]): float(r["value"]) for r in csv.DictReader(f) if r["tag"] == "eval/return"}


def snapshots(run_dir: Path) -> dict[int, Path]:
    return {int(p.stem.split("_")[1]): p for p in (run_dir / "ckpt").glob("step_*.pt")}


def pick_medium(run_dir: Path, expert_return: float, fraction: float) -> tuple[Path, float]:
    """The snapshot whose evaluation return is closest to ``fraction`` of the expert's."""
    returns, snaps = eval_returns(run_dir), snapshots(run_dir)
    both = sorted(set(returns) & set(snaps))
    if not both:
        raise rl_utils.UsageError(f"{run_dir}/ckpt has no step_N.pt snapshot at an evaluated step: train with "
                                  f"--checkpoint-every (a multiple of --eval-every) --save-buffer")
    step = min(both, key=lambda s: abs(returns[s] - fraction * expert_return))
    return snaps[step], returns[step]


def rollout(env_id: str, policy, steps: int, num_envs: int, seed: int, metadata: dict) -> datasets.OfflineDataset:
    """``steps`` transitions of ``policy`` (a batch of observations -> env actions), whole episodes in order of
    completion; the last is cut to fit and marked as a time-out."""
    envs = rl_utils.make_vec_env(env_id, num_envs, seed)
    obs, _ = envs.reset(seed=seed)
    rows: dict[str, list] = {k: [] for k in datasets.FIELDS}
    current = [{k: [] for k in datasets.FIELDS} for _ in range(num_envs)]
    collected = 0
    bar = tqdm(total=steps, desc=f"{metadata['kind']} roll-out", unit="step", disable=None)
    plain, t0 = rl_utils.PlainProgress(bar), time.time()  # without a terminal: a line every 30 s instead
    while collected < steps:
        actions = policy(obs)
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        real = rl_utils.real_next_obs(next_obs, infos)
        for i, ep in enumerate(current):
            for key, value in zip(datasets.FIELDS, (obs[i], actions[i], rewards[i], real[i], terminated[i],
                                                    truncated[i]), strict=True):
                ep[key].append(value)
            if terminated[i] or truncated[i]:
                for key in datasets.FIELDS:
                    rows[key].extend(ep[key])
                collected += len(ep["rewards"])
                bar.update(len(ep["rewards"]))
                if plain.due():
                    print(f"progress: {metadata['kind']} {collected:,}/{steps:,} steps | "
                          f"{collected / (time.time() - t0):,.0f} steps/s", flush=True)
                current[i] = {k: [] for k in datasets.FIELDS}
        obs = next_obs
    bar.close()
    envs.close()
    data = {k: np.asarray(v[:steps]) for k, v in rows.items()}
    if not (data["terminals"][-1] or data["timeouts"][-1]):
        data["timeouts"][-1] = True  # the cut acts as a time limit: split here, still bootstrap
    return datasets.OfflineDataset(**data, metadata=metadata)


def replay_dataset(snapshot: Path, env_id: str, metadata: dict) -> datasets.OfflineDataset:
    """Everything the snapshot's replay buffer holds, env column by column (each a contiguous stream), actions
    mapped from the policy's [-1, 1] back to the env's bounds; the unfinished last episode ends with a time-out."""
    ckpt = rl_utils.open_checkpoint(snapshot)
    buf = ckpt.state.get("buffer")
    if buf is None:
        raise rl_utils.UsageError(f"{snapshot} has no replay buffer: the run needs --save-buffer for medium-replay")
    rows = buf["obs"].shape[0] if buf["full"] else buf["pos"]
    if buf["full"]:
        print(f"note: {snapshot.name}'s replay buffer is full: medium-replay holds only its last {rows} steps")
    order = np.r_[buf["pos"]:rows, 0:buf["pos"]] if buf["full"] else np.arange(rows)  # oldest first
    space = gym.make(env_id).action_space
    parts = []
    for e in range(buf["obs"].shape[1]):
        column = {name: buf[key][order, e] for name, key in (("observations", "obs"), ("actions", "actions"),
                                                           ("rewards", "rewards"), ("next_observations", "next_obs"),
                                                           ("terminals", "terminated"), ("timeouts", "truncated"))}
        column["actions"] = space.low + (np.clip(column["actions"], -1, 1) + 1) * 0.5 * (space.high - space.low)
        if not (column["terminals"][-1] or column["timeouts"][-1]):
            column["timeouts"] = column["timeouts"].copy()
            column["timeouts"][-1] = True
        parts.append(datasets.OfflineDataset(**column))
    return datasets.concatenate(parts, metadata)


def write(dataset: datasets.OfflineDataset, args: Args, env_id: str, kind: str) -> dict:
    family = datasets.env_family(env_id)
    dataset.metadata.update(dataset.summary())
    path = datasets.save_hdf5(dataset, Path(args.out) / f"{family}-{kind}.hdf5")
    where = [str(path)]
    if args.minari:
        minari_id = f"dlrl/{family}-{kind}-v0"
        datasets.save_minari(dataset, minari_id, env_id)
        where.append(f"minari {minari_id}")
    s = dataset.metadata
    print(f"{kind:>13}: {s['transitions']:,} transitions, {s['episodes']} episodes, return "
          f"{s['return_mean']:.1f} ± {s['return_std']:.1f} -> {', '.join(where)}", flush=True)
    return {"kind": kind, **{k: s[k] for k in ("transitions", "episodes", "return_mean", "return_std")},
            "policy_eval_return": s.get("policy_eval_return"), "files": where}


def main() -> None:
    args = rl_utils.parse_args(Args)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise rl_utils.UsageError(f"--kinds: unknown {', '.join(unknown) or '(none given)'}; choose from "
                                  f"{', '.join(KINDS)}")
    if not args.source:
        raise rl_utils.UsageError("--source RUN_FOLDER is required (a SAC/TD3 run with --checkpoint-every "
                                  "--save-buffer)")
    run_dir = Path(args.source)
    expert_path = Path(args.expert_checkpoint) if args.expert_checkpoint else run_dir / "ckpt" / "best.pt"
    expert_ckpt = rl_utils.open_checkpoint(expert_path)
    cls, make_actor = behaviour_classes(expert_ckpt)
    env_id = expert_ckpt.args["env_id"]
    returns = eval_returns(run_dir)
    expert_return = returns.get(expert_ckpt.step, max(returns.values(), default=float("nan")))
    need_medium = {"medium", "medium-replay", "medium-expert"} & set(kinds)
    if args.medium_checkpoint:
        medium_path = Path(args.medium_checkpoint)
        medium_return = returns.get(rl_utils.open_checkpoint(medium_path).step, float("nan"))
    elif need_medium:
        medium_path, medium_return = pick_medium(run_dir, expert_return, args.medium_fraction)
    rl_utils.set_seed(args.seed)
    common = dict(env_id=env_id, gymnasium=gym.__version__, mujoco=_mujoco_version(), seed=args.seed,
                  source_run=str(run_dir), behaviour_algo=cls.ALGO if hasattr(cls, "ALGO") else cls.__module__,
                  created=time.strftime("%Y-%m-%d %H:%M:%S"))

    def policy_meta(kind: str, path: Path, ret: float) -> dict:
        ck = rl_utils.open_checkpoint(path)
        return dict(common, kind=kind, policy=str(path), policy_step=ck.step, policy_eval_return=ret,
                    actions="mean" if args.deterministic else "sampled")

    def policy_data(kind: str, path: Path, ret: float) -> datasets.OfflineDataset:
        act = _load_act(path, cls, make_actor)
        return rollout(env_id, lambda o: act(o, args.deterministic), args.steps, args.num_envs, args.seed,
                       policy_meta(kind, path, ret))

    made, cache = [], {}
    for kind in kinds:
        t0 = time.time()
        if kind == "random":
            space = gym.make(env_id).action_space
            rng = np.random.default_rng(args.seed)
            uniform = lambda o: rng.uniform(space.low, space.high, (len(o), *space.shape)).astype(np.float32)  # noqa: E731
            data = rollout(env_id, uniform, args.steps, args.num_envs, args.seed,
                           dict(common, kind=kind, policy="uniform random"))
        elif kind == "medium-replay":
            data = replay_dataset(medium_path, env_id, policy_meta(kind, medium_path, medium_return))
        elif kind == "medium-expert":
            parts = [cache.get(k) or policy_data(k, p, r) for k, p, r in
                     (("medium", medium_path, medium_return), ("expert", expert_path, expert_return))]
            data = datasets.concatenate(parts, dict(common, kind=kind, policy=f"{medium_path} + {expert_path}",
                                                    policy_eval_return=[medium_return, expert_return]))
        else:
            path, ret = (medium_path, medium_return) if kind == "medium" else (expert_path, expert_return)
            data = cache[kind] = policy_data(kind, path, ret)
        data.metadata["generation_s"] = round(time.time() - t0, 1)
        made.append(write(data, args, env_id, kind))
    index = Path(args.out) / f"{datasets.env_family(env_id)}-datasets.json"
    index.write_text(json.dumps({"env_id": env_id, "source": str(run_dir), "datasets": made}, indent=2))
    print(f"datasets of {env_id} in {args.out} (index: {index})")


def _load_act(path: Path, cls: type, make_actor):
    from classic_rl import off_policy

    return off_policy.load_policy(path, cls, make_actor)


def _mujoco_version() -> str | None:
    try:
        import mujoco
    except ImportError:
        return None
    return mujoco.__version__


if __name__ == "__main__":
    rl_utils.run_main(main)

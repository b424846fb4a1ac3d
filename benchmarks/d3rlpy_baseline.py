"""d3rlpy (2.8.0) beside the playground's offline-RL scripts: the same dataset file, the same number of gradient
steps, evaluated and logged exactly like our runs (same evaluation function, seeds, run folder and summary.json,
with D4RL's normalised score), so the README tables put both side by side on the same machine:

    python benchmarks/d3rlpy_baseline.py --algo awac --dataset offline_rl/data/hopper-medium.hdf5 --seed 1
    python benchmarks/d3rlpy_baseline.py --algo bc --dataset offline_rl/data/hopper-medium-replay.hdf5

Each algorithm runs with d3rlpy's own defaults (its ``*Config()``), as the issue asks; ``--total-timesteps`` is
the number of gradient steps. d3rlpy 2.8.1 pins gymnasium 1.0 (it would downgrade ours), hence 2.8.0.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rl_utils  # noqa: E402
from offline_rl import datasets  # noqa: E402

ALGOS = ("awac", "bc", "bcq", "cql", "dt")


@dataclass
class Args(rl_utils.CommonArgs):
    """d3rlpy's offline algorithms with their defaults, evaluated and logged like the playground's scripts."""

    algo: str = "awac"
    """awac, bc, bcq, cql or dt (d3rlpy's continuous-action versions, default configs; dt = DecisionTransformer)"""
    dataset: str = ""
    """a D4RL-layout .hdf5 file or a Minari dataset id (offline_rl/make_datasets.py writes both)"""
    env_id: str = ""
    """env to evaluate on (default: the env the dataset records)"""
    total_timesteps: int = 50_000
    """gradient steps (the same budget as ours in the README tables)"""
    eval_every: int = 5_000
    """gradient steps between evaluations"""
    dt_target_return: float = 3600.0
    """dt only: the return the Decision Transformer is conditioned on (ours: the first --target-returns)"""

    CHOICES = {"algo": ALGOS}


def make_algo(name: str, device: str):
    import d3rlpy

    config = {"awac": d3rlpy.algos.AWACConfig, "bc": d3rlpy.algos.BCConfig, "bcq": d3rlpy.algos.BCQConfig,
              "cql": d3rlpy.algos.CQLConfig, "dt": d3rlpy.algos.DecisionTransformerConfig}[name]()
    return config.create(device=device)


class StatefulPolicy:
    """d3rlpy's Decision Transformer acts through one ``StatefulTransformerWrapper`` per episode (it keeps the
    history and R̂, updated by the last reward): this batches them for ``rl_utils.evaluate``'s parallel episodes
    (its ``observe`` / ``reset`` hooks)."""

    def __init__(self, algo, target: float, episodes: int):
        self.wrappers = [algo.as_stateful_wrapper(target_return=target) for _ in range(episodes)]
        self.last = np.zeros(episodes)

    def reset(self, mask: np.ndarray) -> None:
        for i in np.flatnonzero(mask):
            self.wrappers[i].reset()
            self.last[i] = 0.0

    def observe(self, rewards: np.ndarray) -> None:
        self.last = np.asarray(rewards, dtype=np.float64)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([w.predict(np.asarray(o, np.float32), float(r))
                         for w, o, r in zip(self.wrappers, obs, self.last, strict=True)])


def main() -> None:
    args = rl_utils.parse_args(Args)
    if not args.dataset:
        raise rl_utils.UsageError("--dataset PATH_OR_MINARI_ID is required")
    data = datasets.load(args.dataset)
    args.env_id = args.env_id or data.metadata.get("env_id", "")
    data.check_env(args.env_id)
    device = rl_utils.setup(args)
    rl_utils.quiet_legacy_gym()
    import d3rlpy

    d3rlpy.seed(args.seed)
    mdp = d3rlpy.dataset.MDPDataset(observations=data.observations, actions=data.actions,
                                    rewards=data.rewards, terminals=data.terminals.astype(np.float32),
                                    timeouts=data.timeouts.astype(np.float32))
    algo = make_algo(args.algo, "cuda:0" if device.type == "cuda" else "cpu:0")
    name = f"d3rlpy_{args.algo}"
    logger = rl_utils.Run(args, name)
    eval_envs = lambda i: rl_utils.make_env(args.env_id, i, training=False)  # noqa: E731  (the env's own bounds)
    scores = {"last": float("nan"), "best": -float("inf"), "best_step": -1}
    t0 = time.time()

    def evaluate(algo, epoch: int, step: int) -> None:  # d3rlpy's epoch_callback
        policy = (StatefulPolicy(algo, args.dt_target_return, args.eval_episodes) if args.algo == "dt"
                  else lambda obs: algo.predict(np.asarray(obs, np.float32)))
        result = rl_utils.evaluate(eval_envs, policy, args.eval_episodes, seed=args.seed + rl_utils.EVAL_SEED_OFFSET)
        scores["last"] = float(result.returns.mean())
        if scores["last"] > scores["best"]:
            scores["best"], scores["best_step"] = scores["last"], step
        logger.log_dict(result.log_dict(), step)
        logger.log("charts/SPS", step / (time.time() - t0), step)
        print(f"step {step:>8d} | eval return {scores['last']:8.1f} ± {result.returns.std():6.1f} | "
              f"{logger.elapsed:6.0f}s", flush=True)

    every = min(args.eval_every, args.total_timesteps)
    common = dict(n_steps=args.total_timesteps, n_steps_per_epoch=every, show_progress=False, save_interval=10**9,
                  experiment_name=name, with_timestamp=False,
                  logger_adapter=d3rlpy.logging.FileAdapterFactory(root_dir=str(logger.run_dir / "d3rlpy_logs")))
    if args.algo == "dt":  # d3rlpy's transformer fit has a per-step callback, no epoch callback
        algo.fit(mdp, callback=lambda a, epoch, step: step % every == 0 and evaluate(a, epoch, step), **common)
    else:
        algo.fit(mdp, epoch_callback=evaluate, **common)
    steps = args.total_timesteps
    summary = dict(final_eval_return=scores["last"], best_eval_return=scores["best"],
                   best_eval_step=scores["best_step"], env_steps=steps, offline_steps=steps,
                   wall_time_s=round(logger.elapsed, 1), sps=round(steps / max(time.time() - t0, 1e-9), 1),
                   algo=name, env_id=args.env_id, seed=args.seed, dataset=args.dataset)
    if datasets.env_family(args.env_id) in datasets.REF_SCORES:
        for key in ("final_eval_return", "best_eval_return"):
            summary[key.replace("return", "normalized_score")] = float(
                datasets.normalized_score(args.env_id, summary[key]))
    logger.write_summary(**summary)
    logger.close()
    print(json.dumps({k: summary[k] for k in summary if "normalized" in k or k in ("final_eval_return", "sps")}))
    print(f"final eval return {scores['last']:.1f} after {steps} gradient steps ({logger.elapsed:.0f}s) | "
          f"run folder: {logger.run_dir}")


if __name__ == "__main__":
    rl_utils.run_main(main)

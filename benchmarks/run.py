"""Benchmark harness: algorithm x env x seeds with a step budget and a threshold.

Each entry runs once per seed, one after another (so wall-clock numbers are comparable), as the subprocess a
user would type. From every run it reads summary.json and metrics.csv and records: final evaluation return,
env steps and wall-clock seconds to the first evaluation >= threshold, and SPS. It writes
``results.csv`` (one row per run), ``results.md`` (one row per entry) and ``curves.png`` into ``--out``.

    python benchmarks/run.py --suite dqn-cartpole --seeds 1 2 3
    python benchmarks/run.py --suite offpolicy-hopper --ray-address 10.0.0.1:6379   # the grid on a Ray cluster
    python benchmarks/run.py --list

With ``--ray-address`` every (entry, seed) run is a Ray task placed anywhere in the cluster (each node needs this
repo at the same path and its environment, as ``make setup`` makes); the task runs the same command there and
sends its run folder back, so the results files are the same as a local run's.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rl_utils  # noqa: E402

DQN = "classic_rl/dqn/train.py"
PPO = "classic_rl/ppo/train.py"
A2C = "classic_rl/a2c/train.py"
REINFORCE = "classic_rl/reinforce/train.py"
AC = "classic_rl/actor_critic/train.py"
SAC = "classic_rl/sac/train.py"
TD3 = "classic_rl/td3/train.py"
DDPG = "classic_rl/ddpg/train.py"
SAC_DISCRETE = "classic_rl/sac_discrete/train.py"
C51 = "distributional_rl/c51/train.py"
D4PG = "distributional_rl/d4pg/train.py"
TRPO = "classic_rl/trpo/train.py"
DPPO = "classic_rl/dppo/train.py"
A3C = "classic_rl/a3c/train.py"
ACER = "classic_rl/acer/train.py"
SB3 = "benchmarks/sb3_baseline.py"
HER = "classic_rl/her/train.py"
DIAYN = "classic_rl/diayn/train.py"
PONG = "classic_rl/pong/train.py"
# Side-by-side comparisons evaluate both sides at the same points (every 2,048 steps, 10 greedy episodes).
SAME_EVAL = ("--eval-every", "2048")


# Every RL train.py, with flags that make a run tiny (seconds): the contract test (tests/test_contract.py) runs
# each through run_entry below (on CartPole-v1, or CONTINUOUS_ENV for Box-only scripts), so every script keeps
# --help, summary.json and this harness working.
TINY = ("--eval-every", "0", "--eval-episodes", "2")
CONTINUOUS_ENV = "Pendulum-v1"
BOX_ONLY = {"sac", "td3", "ddpg", "d4pg", "diayn"}
ATARI_ONLY = {"pong"}  # 80x80 Pong frames: the contract runs these on ATARI_ENV
ATARI_ENV = "ALE/Pong-v5"
RL_SCRIPTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dqn": (DQN, ("--learning-starts", "100", "--train-frequency", "4", "--gradient-steps", "1", *TINY)),
    "ppo": (PPO, ("--num-envs", "2", "--num-steps", "64", "--num-minibatches", "2", "--update-epochs", "1", *TINY)),
    "a2c": (A2C, ("--num-envs", "2", *TINY)),
    "reinforce": (REINFORCE, ("--num-envs", "2", *TINY)),
    "actor_critic": (AC, ("--num-envs", "2", *TINY)),
    "sac": (SAC, ("--learning-starts", "256", "--batch-size", "32", "--hidden-sizes", "32,32", *TINY)),
    "td3": (TD3, ("--learning-starts", "256", "--batch-size", "32", "--hidden-sizes", "32,32", *TINY)),
    "ddpg": (DDPG, ("--learning-starts", "256", "--batch-size", "32", "--hidden-sizes", "32,32", *TINY)),
    "sac_discrete": (SAC_DISCRETE, ("--learning-starts", "256", "--batch-size", "32", "--hidden-sizes", "32,32",
                                    *TINY)),
    "d4pg": (D4PG, ("--learning-starts", "256", "--batch-size", "32", "--hidden-sizes", "32,32", "--actor-steps",
                    "32", *TINY)),
    "trpo": (TRPO, ("--num-envs", "2", "--num-steps", "128", "--critic-epochs", "1", *TINY)),
    "dppo": (DPPO, ("--num-envs", "2", "--num-steps", "64", "--num-minibatches", "1", "--update-epochs", "1", *TINY)),
    "a3c": (A3C, ("--num-workers", "2", *TINY)),
    "acer": (ACER, ("--num-envs", "2", "--num-steps", "16", "--replay-start", "4", "--buffer-segments", "64", *TINY)),
    "c51": (C51, ("--learning-starts", "100", "--train-frequency", "4", "--gradient-steps", "1", *TINY)),
    "diayn": (DIAYN, ("--learning-starts", "256", "--batch-size", "32", "--hidden-sizes", "32,32", "--num-skills",
                      "2", "--eval-every", "0", "--eval-episodes", "1")),
    "pong": (PONG, ("--num-envs", "2", "--max-episode-steps", "60", "--max-rollout-steps", "64",
                    "--episodes-per-update", "2", "--update-epochs", "1", "--num-minibatches", "2", *TINY)),
    "sb3_ppo": (SB3, ("--algo", "ppo", "--eval-every", "256", "--eval-episodes", "2")),
}


@dataclass
class Entry:
    label: str
    script: str
    env_id: str
    budget: int
    threshold: float
    flags: tuple[str, ...] = ()
    baseline: bool = False  # other entries on the same env report their time-to-threshold relative to this one
    metric: str = "return"  # what the threshold and the "final eval" column read: eval/<metric> (HER: success_rate)


# DQN's CartPole preset without its robustness settings: plain one-step DQN with a target copied every 10 steps
DQN_PLAIN = ("--n-step", "1", "--gamma", "0.99", "--tau", "1.0", "--target-network-frequency", "10")

SUITES: dict[str, list[Entry]] = {
    "dqn-cartpole": [
        Entry("dqn", DQN, "CartPole-v1", 50_000, 475),
        Entry("sb3_dqn (RL Zoo)", SB3, "CartPole-v1", 50_000, 475, ("--algo", "dqn"), baseline=True),
    ],
    "ppo-cartpole": [
        Entry("ppo", PPO, "CartPole-v1", 100_000, 475, SAME_EVAL),
        Entry("sb3_ppo (RL Zoo)", SB3, "CartPole-v1", 100_000, 475, ("--algo", "ppo", *SAME_EVAL), baseline=True),
    ],
    "a2c-cartpole": [
        # Both stop at the first evaluation >= 475 (SB3's A2C runs ~500 steps/s here: 500k steps would take 17 min).
        Entry("a2c", A2C, "CartPole-v1", 500_000, 475, ("--eval-every", "10000", "--target-return", "475")),
        Entry("sb3_a2c (RL Zoo)", SB3, "CartPole-v1", 500_000, 475,
              ("--algo", "a2c", "--eval-every", "10000", "--target-return", "475"), baseline=True),
    ],
    "pg-cartpole": [
        Entry("reinforce", REINFORCE, "CartPole-v1", 300_000, 475),
        Entry("actor_critic", AC, "CartPole-v1", 300_000, 475),
    ],
    "ppo-pendulum": [Entry("ppo", PPO, "Pendulum-v1", 200_000, -250)],
    "trpo-cartpole": [
        Entry("trpo", TRPO, "CartPole-v1", 100_000, 475, SAME_EVAL),
        Entry("sb3_trpo (RL Zoo)", SB3, "CartPole-v1", 100_000, 475, ("--algo", "trpo", *SAME_EVAL), baseline=True),
    ],
    "trpo-pendulum": [Entry("trpo", TRPO, "Pendulum-v1", 200_000, -250)],
    "trpo-lunarlander-continuous": [Entry("trpo", TRPO, "LunarLanderContinuous-v3", 200_000, 200)],
    "a3c-cartpole": [
        # 1 and 2 Hogwild workers, each stopping at its first evaluation >= 475: wall-clock to solve vs workers.
        Entry("a3c-1w (1 worker)", A3C, "CartPole-v1", 100_000, 475,
              ("--num-workers", "1", "--eval-every", "5000", "--target-return", "475")),
        Entry("a3c-2w (2 workers)", A3C, "CartPole-v1", 100_000, 475,
              ("--num-workers", "2", "--eval-every", "5000", "--target-return", "475")),
    ],
    # each with the trust region off too (a label of its own: run folders are named after the label's first word)
    "acer-cartpole": [
        Entry("acer", ACER, "CartPole-v1", 300_000, 475),
        Entry("acer_no_tr (--no-trust-region)", ACER, "CartPole-v1", 300_000, 475, ("--no-trust-region",)),
    ],
    "acer-lunarlander": [
        Entry("acer", ACER, "LunarLander-v3", 1_000_000, 200),
        Entry("acer_no_tr (--no-trust-region)", ACER, "LunarLander-v3", 1_000_000, 200, ("--no-trust-region",)),
    ],
    "dppo-cartpole": [Entry("dppo", DPPO, "CartPole-v1", 100_000, 475, SAME_EVAL)],  # 2 workers x 4 envs
    # env steps/s of the whole run (collection and the synchronous gradient rounds) with 1, 2 and 4 workers on
    # Hopper-v5 (PPO's MuJoCo preset per worker: 1 env x 2048 steps, 32 minibatches x 10 epochs per update)
    "dppo-workers": [Entry(f"{k}-workers", DPPO, "Hopper-v5", 16_384, 1000, ("--num-workers", str(k),
                                                                            "--eval-every", "0"))
                     for k in (1, 2, 4)],
    "ppo-lunarlander": [Entry("ppo", PPO, "LunarLander-v3", 1_000_000, 200)],
    "ppo-hopper": [Entry("ppo", PPO, "Hopper-v5", 1_000_000, 2000)],
    "dqn-variants": [
        # Each variant on plain one-step DQN (RL Zoo's CartPole settings, before the CartPole preset added 3-step
        # targets, γ 0.98 and a Polyak target), on RL Zoo's 256-256 network: Double and Dueling with lr 1e-3 solved
        # 3/3 seeds there, but 1/3 at DQN's 2.3e-3 and 0/1 (seed 1) on 128-128 with 1e-3.
        Entry("double (lr 1e-3)", DQN, "CartPole-v1", 50_000, 475,
              (*DQN_PLAIN, "--double", "--learning-rate", "1e-3", "--hidden-sizes", "256,256")),
        Entry("dueling (lr 1e-3)", DQN, "CartPole-v1", 50_000, 475,
              (*DQN_PLAIN, "--dueling", "--learning-rate", "1e-3", "--hidden-sizes", "256,256")),
        Entry("per", DQN, "CartPole-v1", 50_000, 475, (*DQN_PLAIN, "--per", "--hidden-sizes", "256,256")),
        Entry("3-step", DQN, "CartPole-v1", 50_000, 475,
              (*DQN_PLAIN, "--n-step", "3", "--hidden-sizes", "256,256")),
    ],
    "dqn-mountaincar": [
        Entry("dqn", DQN, "MountainCar-v0", 120_000, -110),
        Entry("dueling+per", DQN, "MountainCar-v0", 120_000, -110, ("--dueling", "--per")),
    ],
    "offpolicy-pendulum": [
        Entry("ddpg", DDPG, "Pendulum-v1", 20_000, -200),
        Entry("td3", TD3, "Pendulum-v1", 20_000, -200),
        Entry("sac", SAC, "Pendulum-v1", 20_000, -200),
        Entry("sb3_sac (RL Zoo)", SB3, "Pendulum-v1", 20_000, -200, ("--algo", "sac", "--eval-every", "2000"),
              baseline=True),
    ],
    "offpolicy-hopper": [
        # The MuJoCo presets (lr 3e-4, random steps first, an evaluation every 10k); ~30 min per run on one core
        Entry("td3", TD3, "Hopper-v5", 100_000, 1000),
        Entry("sac", SAC, "Hopper-v5", 100_000, 1000),
    ],
    "offpolicy-hopper-sb3": [
        # SB3 with RL Zoo's Hopper settings, the same budget and evaluation: context for the suite above
        Entry("sb3_td3 (RL Zoo)", SB3, "Hopper-v5", 100_000, 1000, ("--algo", "td3", "--eval-every", "10000"),
              baseline=True),
        Entry("sb3_sac (RL Zoo)", SB3, "Hopper-v5", 100_000, 1000, ("--algo", "sac", "--eval-every", "10000"),
              baseline=True),
    ],
    "sac-discrete-cartpole": [
        Entry("sac-discrete", SAC_DISCRETE, "CartPole-v1", 50_000, 475),
    ],
    "c51-cartpole": [
        # Both evaluated every 2,048 steps (C51 keeps step checkpoints for its README figure); QR-DQN (sb3-contrib)
        # with RL Zoo's qrdqn.yml and its 50k budget
        Entry("c51", C51, "CartPole-v1", 100_000, 475, (*SAME_EVAL, "--checkpoint-every", "10000")),
        Entry("sb3_qrdqn (RL Zoo)", SB3, "CartPole-v1", 50_000, 475, ("--algo", "qrdqn", *SAME_EVAL), baseline=True),
    ],
    "c51-lunarlander": [Entry("c51", C51, "LunarLander-v3", 300_000, 200)],
    "d4pg-pendulum": [Entry("d4pg", D4PG, "Pendulum-v1", 20_000, -200)],
    "d4pg-hopper": [Entry("d4pg", D4PG, "Hopper-v5", 100_000, 1000)],  # the MuJoCo preset; ~20 min on 2 cores
    # Env steps per second by explorer count: learning at DDPG's 1 update per env step (the learner sets the
    # pace), and collection alone (--updates-per-step 0: nothing trains, the explorers run flat out; 100k steps
    # so that Ray's start-up, inside the wall-clock, weighs little)
    "d4pg-actors": [Entry(f"{k}-actors", D4PG, "Pendulum-v1", 20_000, -200, ("--num-actors", str(k)))
                    for k in (1, 2, 4)],
    "d4pg-collect": [Entry(f"{k}-actors-collect-only", D4PG, "Pendulum-v1", 100_000, -2000,
                           ("--num-actors", str(k), "--updates-per-step", "0", "--eval-every", "0",
                            "--eval-episodes", "1")) for k in (1, 2, 4)],
    "dqn-lunarlander": [
        Entry("double+dueling", DQN, "LunarLander-v3", 300_000, 200, ("--double", "--dueling")),
    ],
    "dqn-pendulum": [
        Entry("dqn", DQN, "Pendulum-v1", 20_000, -250, ("--discrete-actions", "11")),
        Entry("double", DQN, "Pendulum-v1", 20_000, -250, ("--discrete-actions", "11", "--double")),
        Entry("dueling", DQN, "Pendulum-v1", 20_000, -250, ("--discrete-actions", "11", "--dueling")),
    ],
    # HER: success rate >= 0.9; with and without hindsight on the same budget (python classic_rl/her/train.py ...)
    "her-bitflip": [Entry("dqn_her", HER, "BitFlipping-v0", 60_000, 0.9, metric="success_rate"),
                    Entry("dqn", HER, "BitFlipping-v0", 60_000, 0.9, ("--no-her",), metric="success_rate")],
    "her-fetchreach": [Entry("ddpg_her", HER, "FetchReach-v4", 20_000, 0.9, ("--algo", "ddpg"),
                             metric="success_rate"),
                       Entry("ddpg", HER, "FetchReach-v4", 20_000, 0.9, ("--algo", "ddpg", "--no-her"),
                             metric="success_rate")],
    # DIAYN: no env reward; the metric is the discriminator accuracy of the final evaluation (8 skills: chance
    # 0.125), threshold 0.8 (python classic_rl/diayn/train.py ...; the env return is only reported)
    "diayn": [Entry("diayn", DIAYN, "Navigation2D-v0", 20_000, 0.8, metric="discriminator_accuracy")],
    "diayn-pendulum": [Entry("diayn", DIAYN, "Pendulum-v1", 20_000, 0.8, metric="discriminator_accuracy")],
    "diayn-halfcheetah": [Entry("diayn", DIAYN, "HalfCheetah-v5", 30_000, 0.8, metric="discriminator_accuracy")],
}


def run_entry(entry: Entry, seed: int, out: Path) -> dict:
    name = f"{entry.env_id.replace('/', '-')}__{entry.label.split()[0]}__{seed}"
    cmd = [sys.executable, entry.script, "--env-id", entry.env_id, "--seed", str(seed),
           "--total-timesteps", str(entry.budget), "--runs-dir", str(out / "runs"), "--run-name", name,
           *entry.flags]
    print("$", " ".join(cmd[1:]), flush=True)
    shutil.rmtree(out / "runs" / name, ignore_errors=True)  # a re-run must not read the previous run's files
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark run failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    run_dir = out / "runs" / name
    summary = json.loads((run_dir / "summary.json").read_text())
    steps, secs = rl_utils.first_crossing(run_dir, entry.threshold, tag=f"eval/{entry.metric}")
    row = {
        "label": entry.label, "env_id": entry.env_id, "seed": seed, "budget": entry.budget,
        "threshold": entry.threshold, "final_eval_return": summary[f"final_eval_{entry.metric}"],
        "best_eval_return": summary.get(f"best_eval_{entry.metric}", summary[f"final_eval_{entry.metric}"]),
        "steps_to_threshold": steps, "seconds_to_threshold": None if secs is None else round(secs, 1),
        "wall_time_s": summary["wall_time_s"], "process_s": round(time.time() - t0, 1),
        "sps": round(summary["env_steps"] / summary["wall_time_s"], 1), "run_dir": str(run_dir.relative_to(ROOT))
        if run_dir.is_relative_to(ROOT) else str(run_dir),
    }
    print(f"  final {row['final_eval_return']:.1f} | to threshold: {steps} steps, {secs} s", flush=True)
    return row


def run_entry_packed(entry: Entry, seed: int) -> tuple[dict, bytes]:
    """:func:`run_entry` into a scratch folder of the machine it runs on; returns its row and its run folder as a
    tar archive (what a Ray task sends back to the machine that writes the results)."""
    import io

    with tempfile.TemporaryDirectory() as scratch:
        try:
            row = run_entry(entry, seed, Path(scratch))
        except SystemExit as err:  # inside a Ray task SystemExit would end the worker, not report the failure
            raise RuntimeError(str(err)) from None
        packed = io.BytesIO()
        with tarfile.open(fileobj=packed, mode="w:gz") as tar:
            tar.add(Path(scratch) / row["run_dir"], arcname=Path(row["run_dir"]).name)
    return row, packed.getvalue()


def run_on_ray(work: list[tuple[Entry, int]], out: Path, address: str) -> list[dict]:
    """Every (entry, seed) as a one-CPU Ray task on the cluster at ``address``; each run folder is unpacked under
    ``out/runs`` and its row points there, as if it had run here. Rows come back in ``work``'s order."""
    import io

    with rl_utils.ray_session(address) as ray:
        task = ray.remote(num_cpus=1)(run_entry_packed)
        refs = [task.remote(entry, seed) for entry, seed in work]
        rows = []
        for ref in refs:
            try:
                row, packed = ray.get(ref)
            except ray.exceptions.RayError as err:
                raise rl_utils.WorkerError(f"a benchmark task failed: {str(err).strip().splitlines()[-1]}") from None
            (out / "runs").mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
                tar.extractall(out / "runs", filter="data")
            run_dir = out / "runs" / Path(row["run_dir"]).name
            row["run_dir"] = str(run_dir.relative_to(ROOT)) if run_dir.is_relative_to(ROOT) else str(run_dir)
            rows.append(row)
    return rows


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def summarise(rows: list[dict], entries: list[Entry]) -> str:
    lines = ["| algorithm | env | budget | threshold | reached (seeds) | final eval (return or success) | steps to "
             "threshold (median) | s to threshold (mean) | time vs baseline | wall s (mean) | SPS |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    secs_by_label: dict[tuple[str, str], float | None] = {}
    for entry in entries:
        hit = [r for r in rows if r["label"] == entry.label and r["env_id"] == entry.env_id
               and r["steps_to_threshold"] is not None]
        secs = [r["seconds_to_threshold"] for r in hit]
        secs_by_label[entry.label, entry.env_id] = statistics.mean(secs) if secs else None
    for entry in entries:
        mine = [r for r in rows if r["label"] == entry.label and r["env_id"] == entry.env_id]
        hit = [r for r in mine if r["steps_to_threshold"] is not None]
        steps = statistics.median([r["steps_to_threshold"] for r in hit]) if hit else None
        secs = secs_by_label[entry.label, entry.env_id]
        base = next((e for e in entries if e.baseline and e.env_id == entry.env_id and e is not entry), None)
        base_secs = secs_by_label.get((base.label, base.env_id)) if base else None
        ratio = f"{secs / base_secs:.2f}x" if secs and base_secs else "–"
        lines.append(
            f"| {entry.label} | {entry.env_id} | {entry.budget:,} | {entry.threshold:g} | {len(hit)}/{len(mine)} | "
            f"{_mean_std([r['final_eval_return'] for r in mine])} | {'–' if steps is None else f'{steps:,.0f}'} | "
            f"{'–' if secs is None else f'{secs:.0f}'} | {ratio} | "
            f"{statistics.mean([r['wall_time_s'] for r in mine]):.0f} | "
            f"{statistics.mean([r['sps'] for r in mine]):.0f} |"
        )
    return "\n".join(lines)


def earlier_rows(csv_path: Path, entries: list[Entry], exclude_seeds: set[int]) -> list[dict]:
    """Rows of an earlier results.csv for this suite's entries, minus the seeds about to be re-run, typed as
    run_entry returns them (csv gives strings; an empty cell is a threshold never reached)."""
    if not csv_path.exists():
        return []
    known = {(e.label, e.env_id) for e in entries}
    ints = ("seed", "budget", "steps_to_threshold")
    floats = ("threshold", "final_eval_return", "best_eval_return", "seconds_to_threshold", "wall_time_s",
              "process_s", "sps")
    rows = []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            for key in ints + floats:
                row[key] = None if row.get(key) in ("", None) else (int if key in ints else float)(row[key])
            if (row["label"], row["env_id"]) in known and row["seed"] not in exclude_seeds:
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", action="append", help="suite name(s); see --list")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds to run")
    parser.add_argument("--out", default="benchmarks/results", help="output folder (one subfolder per suite)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time; >1 shares the cores, so keep 1 when wall-clock is compared")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of results.csv whose seeds this call does not re-run (long suites "
                             "measured a seed at a time, e.g. Hopper: --seeds 2 3 --merge after --seeds 1)")
    parser.add_argument("--ray-address", default="",
                        help="HOST:PORT of a Ray cluster: run the grid there as Ray tasks (default: here)")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    args = parser.parse_args()
    if args.list or not args.suite:
        for name, entries in SUITES.items():
            print(f"{name}: " + ", ".join(f"{e.label} on {e.env_id}" for e in entries))
        return
    unknown = [s for s in args.suite if s not in SUITES]
    if unknown:
        raise rl_utils.UsageError(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    for suite in args.suite:
        out = Path(args.out) / suite
        out.mkdir(parents=True, exist_ok=True)
        # Seed-major order: with --jobs equal to the number of entries, the entries of one seed run side by side
        # under the same machine load, which keeps a wall-clock comparison fair on a busy machine.
        work = [(e, seed) for seed in args.seeds for e in SUITES[suite]]
        load_before, t_start = os.getloadavg()[1], time.time()  # wall-clock means little without the machine's load
        if args.ray_address:
            rows = run_on_ray(work, out, args.ray_address)
        else:
            with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
                rows = list(pool.map(lambda job: run_entry(job[0], job[1], out), work))
        if args.merge:
            rows = earlier_rows(out / "results.csv", SUITES[suite], exclude_seeds=set(args.seeds)) + rows
        seeds = sorted({int(r["seed"]) for r in rows})
        with open(out / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        machine = f"{rl_utils.os.cpu_count()} CPU cores, torch {rl_utils.torch.__version__}"
        table = summarise(rows, SUITES[suite])
        jobs = f" --jobs {args.jobs}" if args.jobs > 1 else ""
        header = (f"# Benchmark `{suite}`\n\nCommand: `python benchmarks/run.py --suite {suite} --seeds "
                  f"{' '.join(map(str, seeds))}{jobs}` on {machine}, {time.strftime('%Y-%m-%d')}; "
                  f"{(time.time() - t_start) / 60:.0f} min; 5-min load average {load_before:.1f} at the start, "
                  f"{os.getloadavg()[1]:.1f} at the end (the runs themselves add --jobs).\n\n")
        if args.merge:  # the time and load above are this call's, not the merged rows'
            header = header.replace("` on", f"` (seeds {' '.join(map(str, args.seeds))} in this call, merged with "
                                            "earlier rows) on", 1)
        (out / "results.md").write_text(header + table + "\n")
        plotted = [r for r in rows if (ROOT / r["run_dir"]).is_dir()]  # a merged row's run folder may be gone
        rl_utils.plot_curves([r["run_dir"] for r in plotted], out / "curves.png",
                             tags=(f"eval/{SUITES[suite][0].metric}",),  # a suite's entries share one metric
                             labels=[f"{r['label']} {r['env_id']}" for r in plotted], title=f"benchmark {suite}")
        print(header + table)


if __name__ == "__main__":
    rl_utils.run_main(main)

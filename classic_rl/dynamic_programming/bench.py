"""Regenerate the README's DP table and figures: every env/setting below, policy and value iteration on each.

    python classic_rl/dynamic_programming/bench.py --figures-dir classic_rl/dynamic_programming/figures

One run folder per setting (as train.py writes it) under --runs-dir, plus the notes' own hand-written
CliffWalking model solved with the notes' tie rule, to compare iteration counts with theirs.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl.dynamic_programming import dp  # noqa: E402
from classic_rl.dynamic_programming.plots import plot_value_policy  # noqa: E402
from classic_rl.dynamic_programming.train import Args as SolveArgs  # noqa: E402
from classic_rl.dynamic_programming.train import solve  # noqa: E402

# (env id, is_slippery, gamma, theta, README figure name or "")
SETTINGS = (
    ("CliffWalking-v1", "auto", 0.9, 1e-3, "cliffwalking.png"),
    ("CliffWalkingSlippery-v1", "auto", 0.9, 1e-3, ""),
    ("FrozenLake-v1", "false", 0.9, 1e-3, ""),
    ("FrozenLake-v1", "true", 0.99, 1e-8, "frozenlake4x4_slippery.png"),
    ("FrozenLake8x8-v1", "false", 0.99, 1e-8, ""),
    ("FrozenLake8x8-v1", "true", 0.99, 1e-8, "frozenlake8x8_slippery.png"),
    ("Maze4x4-v0", "auto", 0.9, 1e-3, "maze4x4.png"),
)


@dataclass
class Args:
    """Run policy and value iteration on every README setting and print the results table."""

    runs_dir: str = "runs"
    """folder that receives one run folder per setting"""
    figures_dir: str = ""
    """also copy the README figures here (classic_rl/dynamic_programming/figures)"""
    seed: int = 1
    """only used in run-folder names (DP is deterministic)"""


def notes_model_row() -> dict:
    model = dp.notes_cliff_walking_model()
    pi = dp.policy_iteration(model, 0.9, 1e-3, split_ties=True)
    vi = dp.value_iteration(model, 0.9, 1e-3)
    return {"V_start": float(model.start @ pi.V), "V_top_left": float(pi.V[0]), "eval_sweeps": pi.eval_sweeps,
            "vi_sweeps": vi.iterations, "max_abs_PI_VI": float(np.abs(pi.V - vi.V).max())}


def main() -> None:
    args = rl_utils.parse_args(Args)
    rows = []
    for env_id, slippery, gamma, theta, figure in SETTINGS:
        name = f"{env_id}{'' if slippery == 'auto' else '-slippery-' + slippery}__dp__{args.seed}"
        sargs = SolveArgs(env_id=env_id, is_slippery=slippery, gamma=gamma, theta=theta, seed=args.seed,
                          runs_dir=str(Path(args.runs_dir) / "dp_bench"), run_name=name)
        logger = rl_utils.Run(sargs, "dp")
        s = solve(sargs, logger)
        logger.close()
        rows.append((env_id, slippery, gamma, theta, s))
        if figure and args.figures_dir:
            Path(args.figures_dir).mkdir(parents=True, exist_ok=True)
            shutil.copy(logger.run_dir / "PI_values.png", Path(args.figures_dir) / figure)

    notes = notes_model_row()
    if args.figures_dir:
        model = dp.notes_cliff_walking_model()
        res = dp.policy_iteration(model, 0.9, 1e-3, split_ties=True)
        plot_value_policy(model, res.V, res.actions, "notes' CliffWalking (cliff ends the episode): PI, γ=0.9, θ=1e-3",
                          Path(args.figures_dir) / "notes_cliffwalking.png")

    print("| env | slippery | γ | θ | PI V(start) | VI V(start) | exact V(start) "
          "| PI iterations (total eval sweeps: per iteration) | VI sweeps | max abs(V_PI − V_VI) | greedy path |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for env_id, slippery, gamma, theta, s in rows:
        path = (f"{s['greedy_path_steps']} steps, return {s['greedy_path_return']:g}"
                if "greedy_path_steps" in s else "(stochastic)")
        print(f"| {env_id} | {slippery} | {gamma} | {theta:g} | {s['PI/V_start']:.4f} | {s['VI/V_start']:.4f} "
              f"| {s['PI/V_start_exact']:.4f} | {s['PI/iterations']} ({s['PI/total_sweeps']}: "
              f"{', '.join(map(str, s['PI/eval_sweeps']))}) | {s['VI/iterations']} "
              f"| {s['max_abs_V_PI_minus_VI']:.1e} | {path} |")
    print(f"| notes' CliffWalking model, notes' tie rule | no | 0.9 | 0.001 | {notes['V_start']:.4f} | "
          f"(top-left {notes['V_top_left']:.4f}) | | {len(notes['eval_sweeps'])} "
          f"({', '.join(map(str, notes['eval_sweeps']))}) | {notes['vi_sweeps']} | {notes['max_abs_PI_VI']:.1e} | |")
    cliff = rows[0][4]
    print(f"final: CliffWalking-v1 V(start) PI={cliff['PI/V_start']:.3f} VI={cliff['VI/V_start']:.3f} "
          f"iters PI={cliff['PI/iterations']} VI={cliff['VI/iterations']} | notes' model V(start)="
          f"{notes['V_start']:.3f} eval sweeps {notes['eval_sweeps']} | runs in {Path(args.runs_dir) / 'dp_bench'}")


if __name__ == "__main__":
    rl_utils.run_main(main)

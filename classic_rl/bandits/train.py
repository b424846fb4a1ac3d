"""Compare ε-greedy, decaying ε (1/t), UCB and Thompson sampling on K-armed Bernoulli and Gaussian bandits.

    python classic_rl/bandits/train.py                        # 10 arms, 5000 steps, 20 seeds, both bandits
    python classic_rl/bandits/train.py --bandits bernoulli --seeds 5 --steps 1000 --ucb-coef 0.5

Each seed draws a new bandit (its true means) and runs every solver on it with its own random stream. The run
folder gets the cumulative-regret figure (mean ± std over seeds), regrets.npz, metrics.csv, TensorBoard logs and
summary.json. Unless ``--no-notes-setting``, it also replays the notes' experiment draw for draw (the legacy
``np.random.seed(1)`` stream) to check that we reproduce their four regrets.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl.bandits.bandits import (  # noqa: E402
    SOLVERS,
    BernoulliBandit,
    GaussianBandit,
    make_solver,
    notes_setting_regrets,
)

# What the notes report for their setting (10 arms, seed 1, 5000 steps).
NOTES_REGRETS = {"eps-greedy": 25.5, "eps-decay": 10.1, "ucb": 70.5, "thompson": 57.2}
LABELS = {"eps-greedy": "ε-greedy", "eps-decay": "ε = 1/t", "ucb": "UCB", "thompson": "Thompson"}


@dataclass
class Args:
    """Multi-armed bandits: cumulative regret of ε-greedy, ε=1/t, UCB and Thompson sampling over many seeds."""

    # --arms >= 2: a bandit needs a choice
    LIMITS = {"arms": (2, None), "steps": (1, None), "seeds": (1, None), "epsilon": (0, 1), "ucb_coef": (0, None),
              "gaussian_sigma": (0, None), "log_every": (1, None)}

    bandits: str = "bernoulli,gaussian"
    """comma-separated bandit kinds: bernoulli (arm k pays 1 w.p. p_k ~ U[0,1)) and/or gaussian
    (rewards N(q_k, σ²), q_k ~ N(0,1))"""
    solvers: str = "eps-greedy,eps-decay,ucb,thompson"
    """comma-separated solvers from eps-greedy, eps-decay (ε = 1/t), ucb, thompson"""
    arms: int = 10
    """number of arms K"""
    steps: int = 5000
    """pulls per run (the horizon T)"""
    seeds: int = 20
    """number of seeds (bandits) to average over: seed, seed+1, ..."""
    seed: int = 1
    """first seed"""
    epsilon: float = 0.01
    """exploration probability of the constant ε-greedy solver"""
    ucb_coef: float = 1.0
    """UCB bonus coefficient c in Q̂ + c·sqrt(ln t / (2 (N+1)))"""
    init_estimate: float = 1.0
    """initial value estimate Q̂(a) of the ε-greedy and UCB solvers (1.0 = the notes' optimistic init_prob)"""
    gaussian_sigma: float = 1.0
    """reward noise σ of the Gaussian bandit"""
    notes_setting: bool = True
    """also replay the notes' exact experiment (legacy np.random.seed(1) stream, Bernoulli, 10 arms, 5000 steps)"""
    log_every: int = 50
    """steps between logged points of the mean regret curves (metrics.csv / TensorBoard)"""
    runs_dir: str = "runs"
    """folder that receives the run folder {bandits}__bandits__{seed}__{time}"""
    run_name: str = ""
    """override the run folder name"""
    figures_dir: str = ""
    """also copy the figure here (the README uses classic_rl/bandits/figures)"""


def check_args(args: Args) -> tuple[list[str], list[str]]:
    kinds = [b.strip() for b in args.bandits.split(",") if b.strip()]
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    bad_kinds = [k for k in kinds if k not in ("bernoulli", "gaussian")]
    if bad_kinds or not kinds:
        raise rl_utils.UsageError(f"--bandits must list bernoulli and/or gaussian, got {args.bandits!r}")
    bad = [s for s in solvers if s not in SOLVERS]
    if bad or not solvers:
        raise rl_utils.UsageError(f"--solvers must list some of {', '.join(SOLVERS)}, got {args.solvers!r}")
    return kinds, solvers


def run_experiment(kind: str, solvers: list[str], args: Args) -> dict[str, np.ndarray]:
    """Cumulative regret curves per solver, each of shape [seeds, steps]."""
    curves: dict[str, list[np.ndarray]] = {s: [] for s in solvers}
    for seed in range(args.seed, args.seed + args.seeds):
        bandit_rng = np.random.default_rng(seed)
        if kind == "bernoulli":
            bandit = BernoulliBandit.random(args.arms, bandit_rng)
        else:
            bandit = GaussianBandit.random(args.arms, bandit_rng, args.gaussian_sigma)
        for i, name in enumerate(SOLVERS):
            if name not in solvers:
                continue
            # One stream per (seed, solver), shared by the solver's choices and the bandit's rewards, so adding or
            # removing a solver never changes another solver's numbers.
            rng = np.random.default_rng([seed, i + 1])
            bandit.rng = rng
            solver = make_solver(name, bandit, rng, epsilon=args.epsilon, ucb_coef=args.ucb_coef,
                                 init_estimate=args.init_estimate)
            curves[name].append(solver.run(args.steps))
    return {name: np.stack(c) for name, c in curves.items()}


def plot(results: dict[str, dict[str, np.ndarray]], args: Args, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.8), squeeze=False)
    t = np.arange(1, args.steps + 1)
    for ax, (kind, curves) in zip(axes[0], results.items()):
        for name, c in curves.items():
            mean, std = c.mean(0), c.std(0)
            ax.plot(t, mean, label=f"{LABELS[name]}: {mean[-1]:.1f} ± {std[-1]:.1f}")
            ax.fill_between(t, np.maximum(mean - std, 0.0), mean + std, alpha=0.15)  # regret is never < 0
        ax.set_title(f"{kind} bandit, {args.arms} arms, {args.seeds} seeds (mean ± std)")
        ax.set_xlabel("step t")
        ax.set_ylabel("cumulative regret")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def main() -> None:
    args = rl_utils.parse_args(Args)
    kinds, solvers = check_args(args)
    logger = rl_utils.Run(args, "bandits", task=f"{'+'.join(kinds)}-{args.arms}arm")

    results = {kind: run_experiment(kind, solvers, args) for kind in kinds}
    summary: dict = {"arms": args.arms, "steps": args.steps, "seeds": args.seeds, "first_seed": args.seed}
    arrays = {}
    for kind, curves in results.items():
        for solver, c in curves.items():
            mean = c.mean(0)
            for step in range(args.log_every - 1, args.steps, max(args.log_every, 1)):
                logger.log(f"regret/{kind}/{solver}", mean[step], step + 1)
            arrays[f"{kind}/{solver}/mean"] = mean.astype(np.float32)
            arrays[f"{kind}/{solver}/std"] = c.std(0).astype(np.float32)
            arrays[f"{kind}/{solver}/final"] = c[:, -1]  # [seeds] final regret of each seed
            summary[f"{kind}/{solver}/final_regret_mean"] = round(float(c[:, -1].mean()), 2)
            summary[f"{kind}/{solver}/final_regret_std"] = round(float(c[:, -1].std()), 2)
            summary[f"{kind}/{solver}/final_regret_first_seed"] = round(float(c[0, -1]), 2)
    np.savez_compressed(logger.run_dir / "regrets.npz", **arrays)
    fig = plot(results, args, logger.run_dir / "regret.png")
    if args.figures_dir:
        Path(args.figures_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(fig, Path(args.figures_dir) / "regret.png")

    notes_line = ""
    if args.notes_setting:
        notes = notes_setting_regrets()
        summary["notes_setting_reproduced"] = {k: round(v, 2) for k, v in notes.items()}
        summary["notes_setting_reported"] = NOTES_REGRETS
        print("notes' setting (Bernoulli, 10 arms, np.random.seed(1), 5000 steps): ours vs reported")
        for k, v in notes.items():
            print(f"  {LABELS[k]:9s} {v:7.2f}  (notes: {NOTES_REGRETS[k]})")
        notes_line = " | notes' setting " + " ".join(f"{k}={v:.1f}" for k, v in notes.items())

    for kind, curves in results.items():
        print(f"{kind}: final regret after {args.steps} steps, mean ± std over {args.seeds} seeds "
              f"(seed {args.seed} alone)")
        for solver, c in curves.items():
            print(f"  {LABELS[solver]:9s} {c[:, -1].mean():8.2f} ± {c[:, -1].std():6.2f}   ({c[0, -1]:.2f})")
    summary["wall_time_s"] = round(logger.elapsed, 1)
    logger.write_summary(**summary)
    logger.close()
    first = kinds[0]
    headline = " ".join(f"{s}={results[first][s][:, -1].mean():.1f}" for s in solvers)
    print(f"final: {first} regret@{args.steps} ({args.seeds} seeds) {headline}{notes_line} "
          f"| run folder {logger.run_dir}")


if __name__ == "__main__":
    rl_utils.run_main(main)

"""Sutton & Barto Example 6.6 (Cliff Walking): Sarsa vs Q-learning (and Expected Sarsa) with ε = 0.1, α = 0.5.

    python classic_rl/tabular/example_6_6.py                       # 50 runs x 500 episodes, the README numbers
    python classic_rl/tabular/example_6_6.py --runs 2 --episodes 30  # a quick look

Every run starts from Q = 0 with its own seed. The figure is the book's: the sum of rewards per episode, averaged
over runs (and smoothed over 10 episodes), while learning with ε-greedy. Afterwards each run's *greedy* policy is
rolled out once: Q-learning's walks the cliff edge (−13), Sarsa's keeps a row or two away from it.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl.tabular.agents import ALGOS, make_agent  # noqa: E402
from classic_rl.tabular.training import greedy_path, make_tabular_env, train  # noqa: E402

LABELS = {"sarsa": "Sarsa", "q-learning": "Q-learning", "expected-sarsa": "Expected Sarsa",
          "sarsa-lambda": "Sarsa(λ)"}


@dataclass
class Args:
    """Reproduce Sutton & Barto's Example 6.6 on gymnasium's CliffWalking-v1."""

    LIMITS = {"runs": (1, None), "episodes": (1, None), "alpha": (0, 1), "epsilon": (0, 1), "gamma": (0, 1),
              "smooth": (1, None)}

    algos: str = "sarsa,q-learning,expected-sarsa"
    """comma-separated algorithms to compare"""
    runs: int = 50
    """independent runs per algorithm (seeds seed, seed+1, ...)"""
    episodes: int = 500
    """episodes per run"""
    alpha: float = 0.5
    """step size α"""
    epsilon: float = 0.1
    """constant exploration rate ε"""
    gamma: float = 1.0
    """discount factor (the book's task is undiscounted)"""
    smooth: int = 10
    """moving-average window (episodes) of the plotted curves"""
    seed: int = 1
    """first seed"""
    env_id: str = "CliffWalking-v1"
    """the env (kept as a flag for the run-folder name; the example is about CliffWalking)"""
    runs_dir: str = "runs"
    """folder that receives the run folder {env}__example-6.6__{seed}__{time}"""
    run_name: str = ""
    """override the run folder name"""
    figures_dir: str = ""
    """also copy the figures here (the README uses classic_rl/tabular/figures)"""


def plot_curves(returns: dict[str, np.ndarray], args: Args, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for algo, r in returns.items():  # r: [runs, episodes]
        ax.plot(np.arange(1, r.shape[1] + 1), rl_utils.moving_average(r.mean(0), args.smooth), label=LABELS[algo])
    ax.set_ylim(-100, 0)
    ax.set_xlabel("episode")
    ax.set_ylabel("sum of rewards during episode")
    ax.set_title(f"CliffWalking, ε={args.epsilon}, α={args.alpha}: mean of {args.runs} runs, "
                 f"{args.smooth}-episode moving average", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def plot_paths(paths: dict[str, list[int]], out: Path, shape: tuple[int, int] = (4, 12)) -> None:
    """The most common greedy path of each algorithm drawn on the grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = shape
    fig, ax = plt.subplots(figsize=(7, 2.8))
    grid = np.zeros(shape)
    grid[-1, 1:-1] = 1  # the cliff
    ax.imshow(grid, cmap="Greys", vmin=0, vmax=1.6)
    ax.text(0, rows - 1, "S", ha="center", va="center", fontweight="bold")
    ax.text(cols - 1, rows - 1, "G", ha="center", va="center", fontweight="bold")
    ax.text(cols / 2 - 0.5, rows - 1, "the cliff (−100)", ha="center", va="center", color="w")
    for i, (algo, path) in enumerate(paths.items()):
        rr, cc = np.divmod(np.asarray(path), cols)
        offset = (i - (len(paths) - 1) / 2) * 0.12  # keep overlapping paths visible
        ax.plot(cc + offset, rr + offset, "-o", ms=3, lw=2, label=f"{LABELS[algo]} ({len(path) - 1} steps)")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=len(paths))
    ax.set_title("most common greedy path after learning", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main() -> None:
    args = rl_utils.parse_args(Args)
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    bad = [a for a in algos if a not in ALGOS]
    if bad or not algos:
        raise rl_utils.UsageError(f"--algos must list some of {', '.join(ALGOS)}, got {args.algos!r}")
    env = make_tabular_env(args.env_id)
    n_s, n_a = int(env.observation_space.n), int(env.action_space.n)
    logger = rl_utils.Run(args, "example-6.6")  # runs/{env_id}__example-6.6__{seed}__{time} or --run-name

    returns: dict[str, np.ndarray] = {}
    q_tables: dict[str, np.ndarray] = {}
    greedy: dict[str, np.ndarray] = {}
    paths: dict[str, list[list[int]]] = {}
    for algo in algos:
        r_runs, q_runs, g_runs, p_runs = [], [], [], []
        for run in range(args.runs):
            seed = args.seed + run
            agent = make_agent(algo, n_s, n_a, alpha=args.alpha, gamma=args.gamma, rng=np.random.default_rng(seed))
            r_runs.append(train(env, agent, args.episodes, seed, args.epsilon))
            q_runs.append(agent.Q.copy())
            path, ret, reached = greedy_path(env, agent.Q, seed=seed)
            p_runs.append(path)
            # A greedy rollout that has not reached the goal after 200 steps is stuck in a loop: "failed".
            g_runs.append(ret if reached else np.nan)
        returns[algo], q_tables[algo], greedy[algo], paths[algo] = (
            np.stack(r_runs), np.stack(q_runs), np.array(g_runs, dtype=float), p_runs)
        mean_curve = returns[algo].mean(0)
        for ep in range(args.episodes):
            logger.log(f"return/{algo}", mean_curve[ep], ep + 1)

    np.savez_compressed(logger.run_dir / "returns.npz", **returns)
    np.savez_compressed(logger.run_dir / "q_tables.npz", **q_tables)
    common = {a: list(Counter(tuple(p) for p in paths[a]).most_common(1)[0][0]) for a in algos}
    plot_curves(returns, args, logger.run_dir / "example_6_6.png")
    plot_paths(common, logger.run_dir / "greedy_paths.png")
    if args.figures_dir:
        Path(args.figures_dir).mkdir(parents=True, exist_ok=True)
        for f in ("example_6_6.png", "greedy_paths.png"):
            shutil.copy(logger.run_dir / f, Path(args.figures_dir) / f)

    window = slice(min(100, args.episodes - 1), None)  # episodes 101..500: after the initial learning phase
    summary: dict = {"runs": args.runs, "episodes": args.episodes, "alpha": args.alpha, "epsilon": args.epsilon}
    print(f"{'algo':15s} {'online return (ep ' + str(window.start + 1) + '+)':>24s}   greedy-policy returns over runs")
    for algo in algos:
        online = returns[algo][:, window].mean()
        g = greedy[algo]
        counts = Counter("failed" if np.isnan(x) else str(int(x)) for x in g)
        summary[f"{algo}/online_return_mean"] = round(float(online), 2)
        summary[f"{algo}/online_return_last100_mean"] = round(float(returns[algo][:, -100:].mean()), 2)
        summary[f"{algo}/greedy_return_counts"] = dict(counts)
        summary[f"{algo}/greedy_return_median"] = float(np.nanmedian(g)) if np.isfinite(g).any() else None
        print(f"{LABELS[algo]:15s} {online:24.2f}   {dict(sorted(counts.items()))}")
    summary["wall_time_s"] = round(logger.elapsed, 1)
    logger.write_summary(**summary)
    logger.close()
    head = " ".join(f"{a}: online={summary[f'{a}/online_return_mean']:.1f} greedy="
                    f"{summary[f'{a}/greedy_return_median']}" for a in algos)
    print(f"final: Example 6.6 ({args.runs} runs x {args.episodes} episodes) {head} | run folder {logger.run_dir}")


if __name__ == "__main__":
    rl_utils.run_main(main)

"""How often does each method's *greedy* policy reach the goal? Many seeds, on the maze and deterministic FrozenLake.

    python classic_rl/tabular/success_rates.py               # 20 seeds, the README table (about 1 minute)

For each (env, budget) setting every method learns from Q = 0 with seeds seed..seed+N−1, then its greedy policy
(argmax, lowest index among ties) is rolled out once. The table printed is the fraction of seeds that reach the
goal; summary.json in the run folder has the same numbers.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl.tabular.agents import make_agent  # noqa: E402
from classic_rl.tabular.training import evaluate_greedy, make_tabular_env, train  # noqa: E402

METHODS = (("q-learning", "accumulating"), ("sarsa", "accumulating"), ("expected-sarsa", "accumulating"),
           ("sarsa-lambda", "accumulating"), ("sarsa-lambda", "replacing"))
# (label, env id, is_slippery, γ, α, ε, ε decay per episode, ε floor, episodes)
SETTINGS = (
    ("maze, notes' settings (ε .1, 100 ep)", "Maze4x4-v0", "auto", 0.9, 0.1, 0.1, 1.0, 0.0, 100),
    ("maze, ε .1, 500 ep", "Maze4x4-v0", "auto", 0.9, 0.1, 0.1, 1.0, 0.0, 500),
    ("maze, ε .5→.01 (×.99/ep), 300 ep", "Maze4x4-v0", "auto", 0.9, 0.1, 0.5, 0.99, 0.01, 300),
    ("FrozenLake 4x4 det., ε 1→.05 (×.995/ep), 1500 ep", "FrozenLake-v1", "false", 0.99, 0.1, 1.0, 0.995, 0.05, 1500),
)


@dataclass
class Args:
    """Greedy-policy success rate of every TD control method over many seeds."""

    LIMITS = {"seeds": (1, None), "lam": (0, 1)}

    seeds: int = 20
    """seeds per (setting, method)"""
    seed: int = 1
    """first seed"""
    lam: float = 0.9
    """λ of Sarsa(λ) (the notes' 0.9)"""
    episodes_scale: float = 1.0
    """multiply every setting's episode budget (for a quick look, e.g. 0.1)"""
    runs_dir: str = "runs"
    """folder that receives the run folder"""
    run_name: str = ""
    """override the run folder name"""


def label(algo: str, trace: str) -> str:
    return f"sarsa-λ {trace[:3]}" if algo == "sarsa-lambda" else algo


def main() -> None:
    args = rl_utils.parse_args(Args)
    if args.episodes_scale <= 0:
        raise rl_utils.UsageError(f"--episodes-scale must be > 0, got {args.episodes_scale:g}")
    logger = rl_utils.Run(args, "success-rates", task="maze+frozenlake")
    summary: dict = {"seeds": args.seeds}
    print("| setting | " + " | ".join(label(*m) for m in METHODS) + " |")
    print("|---" * (len(METHODS) + 1) + "|")
    for i, (text, env_id, slippery, gamma, alpha, eps, decay, eps_min, episodes) in enumerate(SETTINGS):
        env = make_tabular_env(env_id, slippery)
        episodes = max(1, round(episodes * args.episodes_scale))
        cells = []
        for algo, trace in METHODS:
            reached = 0
            for seed in range(args.seed, args.seed + args.seeds):
                agent = make_agent(algo, env.observation_space.n, env.action_space.n, alpha=alpha, gamma=gamma,
                                   rng=np.random.default_rng(seed), lam=args.lam, trace=trace)
                train(env, agent, episodes, seed, eps, decay, eps_min)
                reached += int(evaluate_greedy(env, agent.Q, 1, seed=seed)[0] > 0)
            rate = reached / args.seeds
            summary[f"{text}/{label(algo, trace)}"] = rate
            logger.log(f"success/{env_id}/{label(algo, trace).replace(' ', '_')}", rate, i)
            cells.append(f"{reached}/{args.seeds}")
        print(f"| {text} | " + " | ".join(cells) + " |")
    summary["wall_time_s"] = round(logger.elapsed, 1)
    logger.write_summary(**summary)
    logger.close()
    print(f"final: greedy success rates over {args.seeds} seeds written to {logger.run_dir / 'summary.json'} "
          f"| run folder {logger.run_dir}")


if __name__ == "__main__":
    rl_utils.run_main(main)

"""Policy iteration and value iteration on a toy-text env with a known model ``env.unwrapped.P``.

    python classic_rl/dynamic_programming/train.py                                  # CliffWalking-v1, γ .9, θ 1e-3
    python classic_rl/dynamic_programming/train.py --env-id FrozenLake-v1 --is-slippery false
    python classic_rl/dynamic_programming/train.py --env-id FrozenLake8x8-v1 --gamma 0.99 --theta 1e-8

Both algorithms run on the same model; the run folder gets values.npz (V and greedy actions of each), a heat map
of V with policy arrows per algorithm, summary.json (V(start), iteration counts, how far each V is from the exact
solve of its policy's Bellman equation), metrics.csv and TensorBoard logs.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl.dynamic_programming import dp, maze_env  # noqa: E402, F401 - maze_env registers Maze4x4-v0
from classic_rl.dynamic_programming.plots import plot_value_policy  # noqa: E402


@dataclass
class Args:
    """Solve a known finite MDP (a gymnasium toy-text env) with policy iteration and value iteration."""

    LIMITS = {"gamma": (0, 1)}

    env_id: str = "CliffWalking-v1"
    """gymnasium env with discrete spaces and env.unwrapped.P: CliffWalking-v1, FrozenLake-v1, FrozenLake8x8-v1,
    Maze4x4-v0, Taxi-v4"""
    is_slippery: str = "auto"
    """true/false to override the env's slipperiness (FrozenLake, CliffWalking), auto = the registered default"""
    algo: str = "both"
    """policy-iteration, value-iteration or both"""
    gamma: float = 0.9
    """discount factor γ (< 1, or = 1 only if every policy ends episodes)"""
    theta: float = 1e-3
    """stop a sweep loop once the largest change of V is below θ"""
    seed: int = 1
    """unused by DP (it is deterministic); kept for the run-folder name and the shared conventions"""
    runs_dir: str = "runs"
    """folder that receives the run folder {env}__{algo}__{seed}__{time}"""
    run_name: str = ""
    """override the run folder name"""


ALGOS = {"policy-iteration": "PI", "value-iteration": "VI"}


def make_model(args: Args) -> dp.TabularModel:
    rl_utils.check_env_id(args.env_id)
    kwargs = {}
    if args.is_slippery != "auto":
        if args.is_slippery not in ("true", "false"):
            raise rl_utils.UsageError(f"--is-slippery must be auto, true or false, got {args.is_slippery!r}")
        kwargs["is_slippery"] = args.is_slippery == "true"
    try:
        env = gym.make(args.env_id, **kwargs)
    except TypeError as err:
        raise rl_utils.UsageError(f"{args.env_id} does not accept --is-slippery ({err})") from None
    dp.require_tabular(env, args.env_id, "dynamic programming")
    return dp.model_from_env(env, args.env_id)


def check_args(args: Args) -> None:
    """What LIMITS cannot say (a strict bound, a choice), checked before anything is written."""
    rl_utils.check_limits(args)
    if args.theta <= 0:
        raise rl_utils.UsageError(f"--theta must be > 0, got {args.theta}")
    if args.algo not in (*ALGOS, "both"):
        raise rl_utils.UsageError(f"--algo must be policy-iteration, value-iteration or both, got {args.algo!r}")


def solve(args: Args, logger: rl_utils.Run | None = None) -> dict:
    """Run the requested algorithms; return the summary dict (also written to the run folder if ``logger``)."""
    check_args(args)
    model = make_model(args)
    algos = list(ALGOS) if args.algo == "both" else [args.algo]
    summary: dict = {"env_id": args.env_id, "gamma": args.gamma, "theta": args.theta,
                     "n_states": model.n_states, "n_actions": model.n_actions}
    results: dict[str, dp.DPResult] = {}
    for algo in algos:
        t0 = time.perf_counter()
        res = dp.policy_iteration(model, args.gamma, args.theta) if algo == "policy-iteration" \
            else dp.value_iteration(model, args.gamma, args.theta)
        seconds = time.perf_counter() - t0
        results[algo] = res
        exact = dp.exact_policy_value(model, res.actions, args.gamma)  # V of the greedy policy, solved exactly
        tag = ALGOS[algo]
        summary[f"{tag}/V_start"] = float(model.start @ res.V)
        summary[f"{tag}/V_start_exact"] = float(model.start @ exact)
        summary[f"{tag}/iterations"] = res.iterations
        if res.eval_sweeps:
            summary[f"{tag}/eval_sweeps"] = res.eval_sweeps
            summary[f"{tag}/total_sweeps"] = int(sum(res.eval_sweeps))
        summary[f"{tag}/max_abs_V_minus_exact"] = float(np.abs(res.V - exact).max())
        summary[f"{tag}/seconds"] = round(seconds, 4)
        if logger is not None:
            for i, n in enumerate(res.eval_sweeps or [res.iterations]):
                logger.log(f"{tag}/sweeps", n, i + 1)
            logger.log(f"{tag}/V_start", summary[f"{tag}/V_start"], res.iterations)
    if len(results) == 2:
        pi, vi = results["policy-iteration"], results["value-iteration"]
        summary["max_abs_V_PI_minus_VI"] = float(np.abs(pi.V - vi.V).max())
        summary["greedy_actions_agree_fraction"] = float((pi.actions == vi.actions).mean())
    first = results[algos[0]]
    states, ret = dp.rollout_greedy(model, first.actions)
    deterministic = bool(np.isin(model.T, (0.0, 1.0)).all())
    if deterministic:  # a greedy rollout only means something when the env is deterministic
        summary["greedy_path_steps"] = len(states)  # one action taken in each visited state
        summary["greedy_path_return"] = float(ret)

    if logger is not None:
        np.savez(logger.run_dir / "values.npz", **{f"{ALGOS[a]}_V": r.V for a, r in results.items()},
                 **{f"{ALGOS[a]}_actions": r.actions for a, r in results.items()})
        for algo, res in results.items():
            title = (f"{args.env_id}{'' if args.is_slippery == 'auto' else ' slippery=' + args.is_slippery}: "
                     f"{algo}, γ={args.gamma}, θ={args.theta:g}")
            plot_value_policy(model, res.V, res.actions, title, logger.run_dir / f"{ALGOS[algo]}_values.png",
                              annotate=model.n_states <= 64)
        summary["wall_time_s"] = round(logger.elapsed, 2)
        logger.write_summary(**summary)
    return summary


def main() -> None:
    args = rl_utils.parse_args(Args)
    check_args(args)
    make_model(args)  # validate the flags and the env before creating a run folder
    algo = "dp" if args.algo == "both" else args.algo
    logger = rl_utils.Run(args, algo)
    s = solve(args, logger)
    logger.close()
    for tag in ("PI", "VI"):
        if f"{tag}/V_start" in s:
            extra = f", evaluation sweeps {s[f'{tag}/eval_sweeps']}" if f"{tag}/eval_sweeps" in s else ""
            print(f"{tag}: V(start) {s[f'{tag}/V_start']:.4f} (exact solve of its greedy policy "
                  f"{s[f'{tag}/V_start_exact']:.4f}), {s[f'{tag}/iterations']} iterations{extra}")
    if "max_abs_V_PI_minus_VI" in s:
        print(f"max |V_PI - V_VI| = {s['max_abs_V_PI_minus_VI']:.2e}; greedy actions agree in "
              f"{100 * s['greedy_actions_agree_fraction']:.0f}% of states (the rest are ties)")
    if "greedy_path_steps" in s:
        print(f"greedy policy from the start: {s['greedy_path_steps']} steps, return {s['greedy_path_return']:g}")
    head = " ".join(f"{t} V(start)={s[f'{t}/V_start']:.3f} iters={s[f'{t}/iterations']}"
                    for t in ("PI", "VI") if f"{t}/V_start" in s)
    print(f"final: {args.env_id} {head} | run folder {logger.run_dir}")


if __name__ == "__main__":
    rl_utils.run_main(main)

"""The README figure: C51's predicted return distributions Z(s, a) for a few states, early and late in training.

    python distributional_rl/c51/train.py --checkpoint-every 10000 --run-name c51_demo
    python distributional_rl/c51/plot_distributions.py --run runs/c51_demo   # -> <run>/distributions.png

The states come from one episode (``--states-from random``: uniform random actions, so its last states are about
to fail; ``greedy``: the last checkpoint's policy), its first step and evenly spaced steps up to its last
(``--num-states``), so every checkpoint is shown the same states. Columns are checkpoints (``--steps``, default
the earliest and the latest ``ckpt/step_N.pt``), rows are states, one line per action; the dashed verticals are
the means, the Q-values the greedy policy compares.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl.dqn import train as dqn  # noqa: E402
from distributional_rl.c51.train import C51, Args  # noqa: E402


@dataclass
class PlotArgs:
    """Plot C51's return distributions for a few states at two or more checkpoints of one run."""

    run: str = ""
    """run folder of distributional_rl/c51/train.py (trained with --checkpoint-every so it has ckpt/step_N.pt)"""
    steps: str = ""
    """comma-separated checkpoint steps to show (default: the earliest and the latest step_N.pt)"""
    num_states: int = 4
    """states to show, taken evenly along one episode"""
    states_from: str = "random"
    """the episode's actions: random (uniform; ends in a failure on CartPole) or greedy (the last checkpoint's)"""
    out: str = ""
    """output image (default: <run>/distributions.png)"""
    seed: int = 1
    """seed of the episode the states come from"""

    LIMITS = {"num_states": (1, 12)}
    CHOICES = {"states_from": ("random", "greedy")}


def step_checkpoints(run: Path) -> dict[int, Path]:
    found = {int(m.group(1)): p for p in (run / "ckpt").glob("step_*.pt")
             if (m := re.fullmatch(r"step_(\d+)\.pt", p.name))}
    if not found:
        raise rl_utils.UsageError(f"no ckpt/step_N.pt in {run}: train with --checkpoint-every N to keep them")
    return found


def load_network(path: Path) -> tuple[torch.nn.Module, Args]:
    ckpt = rl_utils.open_checkpoint(path, Args)
    saved = Args(**ckpt.args)
    envs = rl_utils.make_vec_env(saved.env_id, 1, saved.seed, discrete_actions=saved.discrete_actions)
    net, _ = C51.build(saved, envs, torch.device("cpu"))
    envs.close()
    rl_utils.load_state_into(net, ckpt["q_net"])
    return net.eval(), saved


def episode_states(net: torch.nn.Module, saved: Args, seed: int, count: int,
                   greedy: bool) -> tuple[np.ndarray, np.ndarray]:
    """``count`` observations along one episode (greedy or uniformly random actions) and the step of each."""
    env = dqn.eval_env_fn(saved, Path("."))(0)()  # make_env gives a thunk, as gymnasium vector envs take
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    act = dqn.greedy_policy(net, torch.device("cpu"))
    seen = [obs]
    done = False
    while not done:
        action = int(act(obs[None])[0]) if greedy else env.action_space.sample()
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        seen.append(obs)
    env.close()
    at = np.linspace(0, len(seen) - 2, count).round().astype(int)  # the last one is the end, not a state to act in
    return np.stack([seen[i] for i in at]), at


def main() -> None:
    args = rl_utils.parse_args(PlotArgs)
    if not args.run:
        raise rl_utils.UsageError("--run RUN_FOLDER is required")
    run = Path(args.run)
    if not run.is_dir():
        raise rl_utils.UsageError(f"run folder {run} not found")
    found = step_checkpoints(run)
    steps = (rl_utils.parse_int_list(args.steps, "--steps", low=0) if args.steps
             else sorted({min(found), max(found)}))
    missing = [s for s in steps if s not in found]
    if missing:
        raise rl_utils.UsageError(f"no ckpt/step_{missing[0]}.pt in {run}; it has steps {sorted(found)}")
    out = Path(args.out) if args.out else run / "distributions.png"

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last, saved = load_network(found[max(steps)])
    states, at = episode_states(last, saved, args.seed, args.num_states, args.states_from == "greedy")
    fig, axes = plt.subplots(len(states), len(steps), figsize=(4.2 * len(steps), 2.4 * len(states)),
                             squeeze=False, sharex=True)
    for col, step in enumerate(steps):
        net, _ = load_network(found[step])
        with torch.no_grad():
            probs = net.probs(torch.as_tensor(states, dtype=torch.float32)).numpy()  # [S, A, N]
        z = net.support.numpy()
        for row in range(len(states)):
            ax = axes[row, col]
            for a in range(probs.shape[1]):
                line, = ax.plot(z, probs[row, a], label=f"action {a}")
                ax.axvline(float(probs[row, a] @ z), color=line.get_color(), linestyle="--", linewidth=0.8)
            ax.set_title(f"step {step:,}: {args.states_from} episode, t={at[row]} of {at[-1] + 1}", fontsize=9)
            if col == 0:
                ax.set_ylabel("probability")
    for ax in axes[-1]:
        ax.set_xlabel("return z")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"C51 on {saved.env_id}: predicted return distributions (dashed: means)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    rl_utils.run_main(main)

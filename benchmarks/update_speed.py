"""Gradient updates per second of our SAC and TD3 against Stable-Baselines3's, side by side in one process.

Both sides get the same settings: 256-256 actor and critics, batch 256, Adam, one torch thread (``--threads``),
the same env, a replay buffer filled with the same number of uniformly random steps. What is timed is the
update loop alone, each side's own: for us ``update(args, actor, learner, buffer.sample(256), ...)`` (the
call train.py makes), for SB3 ``model.train(gradient_steps=K, batch_size=256)`` (the call its ``learn`` makes).
Both include sampling the minibatch, the critic, actor and temperature steps and the Polyak update; TD3 on both
sides updates the actor and targets every second step. Repeats are interleaved (ours, SB3, ours, ...) so a
change in machine load hits both; the median of the repeats is reported with its range.

    python benchmarks/update_speed.py                                     # SAC and TD3 on Pendulum-v1 and Hopper-v5
    python benchmarks/update_speed.py --algos sac --envs Pendulum-v1 --updates 200 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rl_utils  # noqa: E402
from classic_rl import on_policy  # noqa: E402
from classic_rl.sac import train as sac  # noqa: E402
from classic_rl.td3 import train as td3  # noqa: E402

NET = [256, 256]
BATCH = 256


def ours(algo: str, env_id: str, fill: int, compile_update: bool) -> Callable[[int], None]:
    """A function doing ``k`` of our updates, after ``fill`` random steps into the replay buffer."""
    module = sac if algo == "sac" else td3
    args = module.Args(env_id=env_id, hidden_sizes=",".join(map(str, NET)), batch_size=BATCH, device="cpu",
                       learning_starts=fill)
    envs = on_policy.make_envs(args)
    device = torch.device("cpu")
    actor = module.build_actor(args, envs, device)
    learner = module.build_learner(args, envs, device, actor)
    buffer = rl_utils.ReplayBuffer(fill, 1, envs.single_observation_space, envs.single_action_space,
                                   gamma=args.gamma, seed=0)
    obs, _ = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(fill):
        actions = rng.uniform(-1, 1, size=(1, *envs.single_action_space.shape)).astype(np.float32)
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        buffer.add(obs, rl_utils.real_next_obs(next_obs, infos), actions, rewards, terminated, truncated)
        obs = next_obs
    step = torch.compile(module.update) if compile_update else module.update
    target_entropy = -float(np.prod(envs.single_action_space.shape))
    count = [0]

    def run(k: int) -> None:
        for _ in range(k):
            extra = target_entropy if algo == "sac" else count[0] % args.policy_delay == 0
            stats = step(args, actor, learner, buffer.sample(BATCH), extra)
            count[0] += 1
        float(stats["qf_loss"])  # the losses are lazy on a GPU; one sync at the end, as train.py's logging

    return run


def sb3(algo: str, env_id: str, fill: int) -> Callable[[int], None]:
    """A function doing ``k`` of SB3's updates (``model.train``), after ``fill`` random steps."""
    rl_utils.quiet_legacy_gym()
    from stable_baselines3 import SAC, TD3

    cls = SAC if algo == "sac" else TD3
    model = cls("MlpPolicy", gym.make(env_id), batch_size=BATCH, learning_starts=fill, device="cpu", seed=0,
                policy_kwargs=dict(net_arch=NET))
    model.learn(total_timesteps=fill)  # random actions only (learning_starts = fill): fills the buffer, sets up

    def run(k: int) -> None:
        model.train(gradient_steps=k, batch_size=BATCH)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=["sac", "td3"], choices=["sac", "td3"])
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "Hopper-v5"])
    parser.add_argument("--updates", type=int, default=500, help="gradient updates per measurement")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved measurements per side")
    parser.add_argument("--fill", type=int, default=5000, help="random env steps in the buffer before timing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both sides)")
    parser.add_argument("--compile", action="store_true", help="also time our update under torch.compile")
    cli = parser.parse_args()
    if min(cli.updates, cli.repeats, cli.fill, cli.threads) < 1:
        parser.error("--updates, --repeats, --fill and --threads must be >= 1")
    if cli.fill < BATCH:
        parser.error(f"--fill must be >= the batch size {BATCH}")
    torch.set_num_threads(cli.threads)
    print(f"torch {torch.__version__}, {cli.threads} thread(s), nets {NET}, batch {BATCH}, "
          f"{cli.repeats} interleaved repeats of {cli.updates} updates")
    print("| algo | env | ours (updates/s) | SB3 (updates/s) | ours / SB3 |")
    print("|---|---|---:|---:|---:|")
    for algo in cli.algos:
        for env_id in cli.envs:
            sides = {"ours": ours(algo, env_id, cli.fill, False), "sb3": sb3(algo, env_id, cli.fill)}
            if cli.compile:
                sides["ours+compile"] = ours(algo, env_id, cli.fill, True)
            for run in sides.values():
                run(min(50, cli.updates))  # warm-up: allocator, Adam state, compilation
            rates: dict[str, list[float]] = {name: [] for name in sides}
            for _ in range(cli.repeats):
                for name, run in sides.items():
                    t0 = time.perf_counter()
                    run(cli.updates)
                    rates[name].append(cli.updates / (time.perf_counter() - t0))
            med = {name: statistics.median(r) for name, r in rates.items()}
            ratios = sorted(a / b for a, b in zip(rates["ours"], rates["sb3"]))
            row = (f"| {algo} | {env_id} | {med['ours']:,.0f} ({min(rates['ours']):,.0f}-{max(rates['ours']):,.0f})"
                   f" | {med['sb3']:,.0f} ({min(rates['sb3']):,.0f}-{max(rates['sb3']):,.0f})"
                   f" | {statistics.median(ratios):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) |")
            if cli.compile:
                row += f" compiled: {med['ours+compile']:,.0f}/s"
            print(row, flush=True)


if __name__ == "__main__":
    main()

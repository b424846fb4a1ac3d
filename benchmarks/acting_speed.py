"""How fast PPO's acting phase is against the raw vector env: the same SyncVectorEnv stepped with pre-sampled
random actions vs ``classic_rl/on_policy.collect_rollout`` (policy forward, sampling, GAE bookkeeping, rollout
storage, episode logging). Interleaved repeats; prints the median and the spread of the ratio.

    python benchmarks/acting_speed.py --env-id CartPole-v1 --num-envs 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rl_utils  # noqa: E402
from classic_rl import on_policy  # noqa: E402


class _NoLog:
    def log_episodes(self, *_: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="CartPole-v1")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2048, help="vector steps per measurement")
    parser.add_argument("--repeats", type=int, default=7)
    cli = parser.parse_args()
    torch.set_num_threads(1)
    args = on_policy.PolicyArgs(env_id=cli.env_id, num_envs=cli.num_envs, num_steps=cli.steps)
    envs = on_policy.make_envs(args)
    device = torch.device("cpu")
    agent = on_policy.build_agent(args, envs, device, "PPO")
    buffer = rl_utils.RolloutBuffer(cli.steps, cli.num_envs, envs.single_observation_space,
                                    envs.single_action_space)
    actions = [envs.action_space.sample() for _ in range(cli.steps)]
    obs, _ = envs.reset(seed=1)
    raw, acting = [], []
    for _ in range(cli.repeats):
        t0 = time.perf_counter()
        for a in actions:
            envs.step(a)
        raw.append(cli.steps * cli.num_envs / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        obs, _ = on_policy.collect_rollout(agent, envs, buffer, obs, on_policy.Progress(), _NoLog(), device)
        acting.append(cli.steps * cli.num_envs / (time.perf_counter() - t0))
    ratios = sorted(a / r for a, r in zip(acting, raw))
    print(f"{cli.env_id} x {cli.num_envs} envs, {cli.repeats} interleaved repeats of {cli.steps} vector steps, "
          f"torch {torch.__version__}, 1 thread")
    print(f"raw SyncVectorEnv: median {statistics.median(raw):,.0f} env steps/s "
          f"(range {min(raw):,.0f}-{max(raw):,.0f})")
    print(f"PPO acting phase:  median {statistics.median(acting):,.0f} env steps/s "
          f"(range {min(acting):,.0f}-{max(acting):,.0f})")
    print(f"acting / raw: median {statistics.median(ratios):.2f} (range {ratios[0]:.2f}-{ratios[-1]:.2f})")


if __name__ == "__main__":
    main()

"""Stable-Baselines3 DQN with RL Zoo hyperparameters, logged exactly like our runs (same evaluation, same files).

It exists so `make bench` can put SB3 beside our DQN on the same env, seeds and machine:

    python benchmarks/sb3_dqn.py --env-id CartPole-v1 --seed 1 --total-timesteps 50000
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rl_utils  # noqa: E402

# rl-baselines3-zoo hyperparams/dqn.yml (v2-era; LunarLander-v2 values used for v3).
ZOO = {
    "CartPole-v1": dict(
        learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
        target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
        exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256]),
    ),
    "LunarLander-v3": dict(
        learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0, gamma=0.99,
        target_update_interval=250, train_freq=4, gradient_steps=-1, exploration_fraction=0.12,
        exploration_final_eps=0.1, policy_kwargs=dict(net_arch=[256, 256]),
    ),
}


@dataclass
class Args(rl_utils.CommonArgs):
    """SB3 DQN (RL Zoo hyperparameters) evaluated and logged like the playground's DQN."""


def main() -> None:
    args = rl_utils.parse_args(Args)
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    if args.env_id not in ZOO:
        raise rl_utils.UsageError(f"no RL Zoo hyperparameters here for {args.env_id}; known: {', '.join(ZOO)}")
    rl_utils.setup(args)
    logger = rl_utils.RunLogger(args, "sb3_dqn")
    env = make_vec_env(args.env_id, n_envs=args.num_envs, seed=args.seed)
    model = DQN("MlpPolicy", env, seed=args.seed, device="cpu", verbose=0, **ZOO[args.env_id])
    eval_envs = lambda i: rl_utils.make_env(args.env_id, i, training=False)  # noqa: E731

    def act(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    class Log(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.last = float("nan")
            self.t0 = time.time()

        def _on_step(self) -> bool:
            step = self.num_timesteps
            for info in self.locals["infos"]:
                if "episode" in info:
                    logger.log_episodes([(info["episode"]["r"], info["episode"]["l"])], step)
            if step % args.eval_every < args.num_envs:
                returns = rl_utils.evaluate(eval_envs, act, args.eval_episodes, seed=args.seed + 100_000)
                self.last = float(returns.mean())
                logger.log_dict({"eval/return": self.last, "eval/return_std": float(returns.std())}, step)
                logger.log("charts/SPS", step / (time.time() - self.t0), step)
                print(f"step {step:>8d} | eval return {self.last:8.1f} ± {returns.std():6.1f} | {logger.elapsed:6.0f}s")
            return True

    callback = Log()
    torch.set_num_threads(max(args.torch_threads, 1))
    model.learn(total_timesteps=args.total_timesteps, callback=callback)
    logger.write_summary(final_eval_return=callback.last, env_steps=args.total_timesteps,
                         wall_time_s=round(logger.elapsed, 1), algo="sb3_dqn", env_id=args.env_id, seed=args.seed)
    logger.close()
    print(f"final eval return {callback.last:.1f} after {args.total_timesteps} env steps ({logger.elapsed:.0f}s) | "
          f"run folder: {logger.run_dir}")


if __name__ == "__main__":
    rl_utils.run_main(main)

"""Stable-Baselines3 (DQN, PPO, A2C, SAC, TD3) and sb3-contrib (QR-DQN, TRPO) with RL Zoo hyperparameters, evaluated
and logged exactly like our runs (same evaluation function, seeds and files), so `make bench` can put SB3 beside
ours on the same machine:

    python benchmarks/sb3_baseline.py --algo dqn --env-id CartPole-v1 --seed 1 --total-timesteps 50000
    python benchmarks/sb3_baseline.py --algo ppo --env-id CartPole-v1 --eval-every 2048
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

# rl-baselines3-zoo hyperparams/{dqn,ppo,a2c}.yml (LunarLander-v2 values used for v3). "lin_X" schedules are
# linear from X to 0, as the Zoo's; n_envs is applied by the script.
ZOO: dict[str, dict[str, dict]] = {
    "dqn": {
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
    },
    # qrdqn.yml: DQN's CartPole settings with 10 quantiles (the C51 comparison of distributional_rl/c51)
    "qrdqn": {
        "CartPole-v1": dict(
            learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
            target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
            exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256], n_quantiles=10),
        ),
    },
    "ppo": {
        "CartPole-v1": dict(n_envs=8, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                            ent_coef=0.0, learning_rate="lin_1e-3", clip_range="lin_0.2"),
        "LunarLander-v3": dict(n_envs=16, n_steps=1024, batch_size=64, gae_lambda=0.98, gamma=0.999, n_epochs=4,
                               ent_coef=0.01),
    },
    # sac.yml / td3.yml for Pendulum-v1: TD3 collects a whole episode, then does as many gradient steps
    # sac.yml / td3.yml for Hopper-v3 (used for v5): SB3's defaults (lr 3e-4, batch 256, 1M buffer) after 10k
    # random steps; TD3 with the Zoo's 400-300 nets
    "sac": {"Pendulum-v1": dict(learning_rate=1e-3), "Hopper-v5": dict(learning_starts=10_000)},
    "td3": {
        "Pendulum-v1": dict(gamma=0.98, buffer_size=200_000, learning_starts=10_000, noise_std=0.1,
                            gradient_steps=-1, train_freq=(1, "episode"), learning_rate=1e-3,
                            policy_kwargs=dict(net_arch=[400, 300])),
        "Hopper-v5": dict(learning_starts=10_000, noise_std=0.1, learning_rate=3e-4, batch_size=256,
                          policy_kwargs=dict(net_arch=[400, 300])),
    },
    # trpo.yml (sb3-contrib's TRPO): the settings classic_rl/trpo's CartPole preset copies
    "trpo": {
        "CartPole-v1": dict(n_envs=2, n_steps=512, batch_size=512, cg_damping=1e-3, gae_lambda=0.98, gamma=0.99,
                            learning_rate=1e-3, n_critic_updates=20),
    },
    "a2c": {
        "CartPole-v1": dict(n_envs=8, ent_coef=0.0),
        "LunarLander-v3": dict(n_envs=8, gamma=0.995, n_steps=5, learning_rate="lin_0.00083", ent_coef=1e-5),
    },
}


@dataclass
class Args(rl_utils.CommonArgs):
    """SB3 with RL Zoo hyperparameters, evaluated and logged like the playground's scripts."""

    algo: str = "dqn"
    """dqn, qrdqn or trpo (sb3-contrib), ppo, a2c, sac or td3"""


def zoo_kwargs(algo: str, env_id: str) -> tuple[int, dict]:
    """(n_envs, SB3 constructor kwargs) with the Zoo's "lin_X" strings turned into linear schedules."""
    if algo not in ZOO:
        raise rl_utils.UsageError(f"--algo must be one of {', '.join(ZOO)}, got {algo!r}")
    if env_id not in ZOO[algo]:
        raise rl_utils.UsageError(f"no RL Zoo hyperparameters here for {algo} on {env_id}; known: "
                                  f"{', '.join(ZOO[algo])}")
    kwargs = dict(ZOO[algo][env_id])
    n_envs = kwargs.pop("n_envs", 1)
    for key, value in kwargs.items():
        if isinstance(value, str) and value.startswith("lin_"):
            start = float(value[4:])
            kwargs[key] = lambda progress_remaining, start=start: progress_remaining * start
    return n_envs, kwargs


def main() -> None:
    args = rl_utils.parse_args(Args)
    rl_utils.quiet_legacy_gym()
    import stable_baselines3 as sb3
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    n_envs, kwargs = zoo_kwargs(args.algo, args.env_id)
    rl_utils.setup(args)
    algo = f"sb3_{args.algo}"
    logger = rl_utils.Run(args, algo)
    env = make_vec_env(args.env_id, n_envs=n_envs, seed=args.seed)
    if args.algo == "qrdqn":
        from sb3_contrib import QRDQN as model_cls
    elif args.algo == "trpo":
        from sb3_contrib import TRPO as model_cls
    else:
        model_cls = {"dqn": sb3.DQN, "ppo": sb3.PPO, "a2c": sb3.A2C, "sac": sb3.SAC, "td3": sb3.TD3}[args.algo]
    if "noise_std" in kwargs:  # the Zoo's noise_type: normal
        from stable_baselines3.common.noise import NormalActionNoise

        dim = env.action_space.shape[-1]
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), kwargs.pop("noise_std") * np.ones(dim))
    model = model_cls("MlpPolicy", env, seed=args.seed, device="cpu", verbose=0, **kwargs)
    eval_envs = lambda i: rl_utils.make_env(args.env_id, i, training=False)  # noqa: E731

    def act(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    class Log(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.last = float("nan")
            self.best = -float("inf")
            self.t0 = time.time()

        def _on_step(self) -> bool:
            step = self.num_timesteps
            for info in self.locals["infos"]:
                if "episode" in info:
                    logger.log_episodes([(info["episode"]["r"], info["episode"]["l"])], step)
            if step % args.eval_every < n_envs:
                result = rl_utils.evaluate(eval_envs, act, args.eval_episodes,
                                           seed=args.seed + rl_utils.EVAL_SEED_OFFSET)
                self.last = float(result.returns.mean())
                self.best = max(self.best, self.last)
                logger.log_dict(result.log_dict(), step)
                logger.log("charts/SPS", step / (time.time() - self.t0), step)
                print(f"step {step:>8d} | eval return {self.last:8.1f} ± {result.returns.std():6.1f} | "
                      f"{logger.elapsed:6.0f}s", flush=True)
                if self.last >= args.target_return:
                    return False
            return True

    callback = Log()
    torch.set_num_threads(max(args.torch_threads, 1))
    model.learn(total_timesteps=args.total_timesteps, callback=callback)
    steps = model.num_timesteps
    logger.write_summary(final_eval_return=callback.last, best_eval_return=callback.best, env_steps=steps,
                         wall_time_s=round(logger.elapsed, 1), sps=round(steps / max(logger.elapsed, 1e-9), 1),
                         algo=algo, env_id=args.env_id, seed=args.seed)
    logger.close()
    print(f"final eval return {callback.last:.1f} after {steps} env steps ({logger.elapsed:.0f}s) | "
          f"run folder: {logger.run_dir}")


if __name__ == "__main__":
    rl_utils.run_main(main)

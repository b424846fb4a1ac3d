"""Proximal Policy Optimization (Schulman et al. 2017), clipped surrogate + GAE, Discrete and Box actions.

    python classic_rl/ppo/train.py                                   # CartPole-v1 (RL Zoo settings), ~15k steps
    python classic_rl/ppo/train.py --env-id Pendulum-v1
    python classic_rl/ppo/train.py --env-id LunarLander-v3
    python classic_rl/ppo/train.py --env-id Hopper-v5                # MuJoCo: obs/reward normalisation on
    python classic_rl/ppo/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt --capture-video

Read top to bottom: arguments and per-env presets, the loss (what PPO is about), then the loop: collect
``num_steps`` x ``num_envs`` steps, compute GAE advantages, run ``update_epochs`` passes of minibatch updates.
Everything generic (envs, rollout storage, GAE, normalisation, logging, checkpoints) comes from rl_utils.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import on_policy  # noqa: E402


@dataclass
class Args(on_policy.PolicyArgs):
    """Train PPO (clipped surrogate, GAE) on a gymnasium env with Discrete or Box actions."""

    learning_rate: float = 3e-4
    """Adam learning rate"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over the run"""
    gae_lambda: float = 0.95
    """GAE λ: 0 = one-step TD advantage (low variance, biased), 1 = Monte-Carlo (unbiased, high variance)"""
    num_minibatches: int = 4
    """minibatches per epoch (minibatch size = num_steps * num_envs / num_minibatches)"""
    update_epochs: int = 4
    """passes over each rollout"""
    norm_adv: bool = True
    """standardise advantages per minibatch (scale-free step size across envs and over training)"""
    clip_coef: float = 0.2
    """ε of the clipped surrogate: the ratio π/π_old is kept in [1-ε, 1+ε] where that helps the objective"""
    anneal_clip: bool = False
    """decay ε linearly to 0 over the run (RL Zoo does this for CartPole)"""
    clip_vloss: bool = True
    """clip the value update around the old value, as the PPO reference code does (hurts when returns are large
    and unnormalised: the value can move only ±ε per update)"""
    ent_coef: float = 0.0
    """entropy bonus coefficient (exploration)"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping"""
    target_kl: float = 0.0
    """stop the epochs of an update early once the approximate KL(π_old || π) exceeds this (0 = off)"""

    LIMITS = {"learning_rate": (0, None), "gae_lambda": (0, 1), "num_minibatches": (1, None),
              "update_epochs": (1, None), "clip_coef": (0, None), "ent_coef": (0, None), "vf_coef": (0, None),
              "max_grad_norm": (0, None), "target_kl": (0, None)}


# Tuned defaults per env (RL Zoo's ppo.yml where it has them), applied unless the flag is typed.
PRESETS: dict[str, dict[str, object]] = {
    # RL Zoo's ppo.yml, in SB3's loss convention: no value clipping (SB3's clip_range_vf is None; ours also annealed
    # the value clip to 0 with ε, which froze the critic late in the run: seeds 1-10 first reached 475 at 21.5k steps
    # on average with it, 15.4k without, SB3 14.1k) and the value loss weighted as SB3's (its MSE has no ½).
    "CartPole-v1": dict(
        total_timesteps=100_000, num_envs=8, num_steps=32, num_minibatches=1, update_epochs=20, gamma=0.98,
        gae_lambda=0.8, ent_coef=0.0, learning_rate=1e-3, anneal_clip=True, clip_vloss=False, vf_coef=1.0,
        eval_every=2_048,
    ),
    # Pendulum: tuned here (RL Zoo's uses gSDE). Returns of ~-1000 per episode: reward scaling and no value
    # clipping let the critic keep up; γ 0.95 and a 128-128 ReLU net at lr 3e-4 were the stable choice among
    # 9 variants tried (classic_rl/ppo/README.md).
    "Pendulum-v1": dict(
        total_timesteps=200_000, num_envs=4, num_steps=512, num_minibatches=32, update_epochs=10, gamma=0.95,
        gae_lambda=0.95, learning_rate=3e-4, hidden_sizes="128,128", activation="relu", norm_obs=True,
        norm_reward=True, clip_vloss=False, log_std_init=-0.5, eval_every=10_000,
    ),
    # LunarLander: RL Zoo's settings, in SB3's loss convention: no value clipping (returns in the hundreds: a
    # ±0.2 clip stalls the critic; with it seeds were at 146 and 170 after 700k steps) and the value loss
    # weighted as SB3's (its MSE has no ½: vf_coef 1.0 here = its 0.5).
    "LunarLander-v3": dict(
        total_timesteps=1_000_000, num_envs=16, num_steps=1024, num_minibatches=256, update_epochs=4,
        gamma=0.999, gae_lambda=0.98, ent_coef=0.01, clip_vloss=False, vf_coef=1.0, eval_every=50_000,
    ),
    "Hopper-v5": dict(
        total_timesteps=1_000_000, num_envs=1, num_steps=2048, num_minibatches=32, update_epochs=10,
        norm_obs=True, norm_reward=True, eval_every=50_000,
    ),
}
for _mujoco in ("HalfCheetah-v5", "Walker2d-v5", "Ant-v5"):  # CleanRL's MuJoCo settings are shared
    PRESETS[_mujoco] = PRESETS["Hopper-v5"]


def ppo_loss(
    new_logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    clip_coef: float,
    clip_vloss: bool,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The PPO objective on a minibatch (all inputs [B]); returns (loss to minimise, diagnostics).

    ratio r = π(a|s) / π_old(a|s) = exp(log π − log π_old)
    L_clip = E[ min(r A, clip(r, 1−ε, 1+ε) A) ]: where moving r further would improve the objective beyond the
    clip (r > 1+ε with A > 0, r < 1−ε with A < 0), the min picks the clipped, constant term, so that sample
    gives no gradient: the new policy cannot profit from straying far from the one that collected the data.
    L_V = ½ E[(V − R)²], or with value clipping ½ E[max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²)].
    loss = −L_clip + c_V L_V − c_H H[π]."""
    log_ratio = new_logprob - old_logprob
    ratio = log_ratio.exp()
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)
    policy_loss = -surrogate.mean()
    if clip_vloss:
        clipped = old_values + (new_values - old_values).clamp(-clip_coef, clip_coef)
        value_loss = 0.5 * torch.max((new_values - returns) ** 2, (clipped - returns) ** 2).mean()
    else:
        value_loss = 0.5 * ((new_values - returns) ** 2).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy_mean
    with torch.no_grad():  # http://joschu.net/blog/kl-approx.html: k3 = (r − 1) − log r, unbiased and ≥ 0
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clipfrac = ((ratio - 1).abs() > clip_coef).float().mean()
    stats = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
             "entropy": entropy_mean.detach(), "approx_kl": approx_kl, "clipfrac": clipfrac}
    return loss, stats


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS)
    if args.eval_only:
        return on_policy.eval_only(Args, args, "PPO")
    batch_size = args.num_steps * args.num_envs
    if batch_size % args.num_minibatches:
        raise rl_utils.UsageError(f"--num-minibatches {args.num_minibatches} must divide num_steps x num_envs "
                                  f"= {batch_size}")
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = -(-args.total_timesteps // batch_size)  # ceil: at least total_timesteps steps
    s = on_policy.Session(args, ckpt, "PPO", lambda agent: torch.optim.Adam(
        # fused: one kernel for all parameters, ~25% faster updates of a small MLP on CPU (measured)
        agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True))
    agent, optimizer, buffer, progress, run = s.agent, s.optimizer, s.buffer, s.progress, s.run
    run.progress(num_iterations * batch_size, progress.global_step)
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.iteration < num_iterations and not interrupt.requested:
            frac = 1.0 - progress.iteration / num_iterations  # 1 -> 0 over the run
            optimizer.param_groups[0]["lr"] = args.learning_rate * (frac if args.anneal_lr else 1.0)
            clip_coef = args.clip_coef * (frac if args.anneal_clip else 1.0)

            # ---- collect a rollout with the current policy, then GAE advantages
            t_collect = time.perf_counter()
            last_values = s.collect()
            buffer.compute_advantages(last_values, args.gamma, args.gae_lambda)
            collect_s = time.perf_counter() - t_collect

            # ---- optimise the clipped surrogate for a few epochs of minibatches
            t_update = time.perf_counter()
            for _epoch in range(args.update_epochs):
                for mb in buffer.minibatches(minibatch_size):
                    logprob, entropy, value = agent.evaluate_actions(mb.obs, mb.actions)
                    adv = mb.advantages
                    if args.norm_adv and len(adv) > 1:
                        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                    loss, stats = ppo_loss(logprob, mb.logprobs, adv, value, mb.values, mb.returns, entropy,
                                           clip_coef, args.clip_vloss, args.vf_coef, args.ent_coef)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)
                    optimizer.step()
                if args.target_kl and stats["approx_kl"] > args.target_kl:
                    break
            update_s = time.perf_counter() - t_update
            progress.iteration += 1

            step = progress.global_step
            returns, values = buffer.returns.flatten(), buffer.values.flatten()
            explained_var = 1 - torch.var(returns - values) / torch.var(returns).clamp_min(1e-8)
            run.log_dict({f"losses/{k}": float(v) for k, v in stats.items()}, step)
            run.log_dict({"losses/explained_variance": float(explained_var),
                          "charts/learning_rate": optimizer.param_groups[0]["lr"],
                          "charts/SPS": step / max(run.elapsed, 1e-9),
                          "charts/collect_SPS": batch_size / max(collect_s, 1e-9),
                          "charts/update_seconds": update_s}, step)
            run.update_progress(batch_size, step, step / max(run.elapsed, 1e-9))
            if s.after_update(batch_size):
                break
    s.end(interrupt.requested)


if __name__ == "__main__":
    rl_utils.run_main(main)

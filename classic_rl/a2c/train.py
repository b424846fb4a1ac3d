"""Advantage Actor-Critic, synchronous (A2C): N envs step together, n-step returns, one update per rollout.

    python classic_rl/a2c/train.py                                   # CartPole-v1 (RL Zoo settings)
    python classic_rl/a2c/train.py --env-id LunarLander-v3
    python classic_rl/a2c/train.py --optimizer adam --learning-rate 1e-3
    python classic_rl/a2c/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt

A2C is the synchronous version of A3C (Mnih et al. 2016): instead of asynchronous workers, ``num_envs`` copies
of the env run in lock-step, each contributes ``num_steps`` steps, and one gradient step uses all of them.
Read top to bottom: arguments, the loss, the loop. Collection, returns and evaluation come from rl_utils and
classic_rl/on_policy.py.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import on_policy  # noqa: E402


@dataclass
class Args(on_policy.RMSpropArgs):
    """Train A2C (synchronous advantage actor-critic) on a gymnasium env with Discrete or Box actions."""

    num_steps: int = 5
    """steps per env per update: the n of the n-step return"""
    anneal_lr: bool = False
    """decay the learning rate linearly to 0 over the run"""
    gae_lambda: float = 1.0
    """GAE λ; 1.0 = plain n-step returns, as in the paper"""
    norm_adv: bool = False
    """standardise advantages per update"""
    ent_coef: float = 0.0
    """entropy bonus coefficient (exploration)"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping"""
    log_every: int = 1_000
    """env steps between loss/SPS log rows (an update happens every num_steps x num_envs steps)"""

    LIMITS = {"gae_lambda": (0, 1), "ent_coef": (0, None), "vf_coef": (0, None),
              "max_grad_norm": (0, None), "log_every": (1, None)}


# Tuned defaults per env (RL Zoo's a2c.yml), applied unless the flag is typed.
PRESETS: dict[str, dict[str, object]] = {
    "CartPole-v1": dict(total_timesteps=500_000, num_envs=8, ent_coef=0.0, eval_every=10_000),
    "LunarLander-v3": dict(total_timesteps=200_000, num_envs=8, gamma=0.995, num_steps=5, learning_rate=8.3e-4,
                           anneal_lr=True, ent_coef=1e-5, eval_every=10_000),
    "Pendulum-v1": dict(total_timesteps=1_000_000, num_envs=8, num_steps=8, gamma=0.9, gae_lambda=0.9,
                        learning_rate=7e-4, anneal_lr=True, norm_obs=True, norm_reward=True, eval_every=50_000),
}


def a2c_loss(
    logprob: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The A2C objective on one rollout (all inputs [B]); returns (loss to minimise, diagnostics).

    Policy gradient with a baseline: ∇J = E[∇log π(a|s) Â], Â = R^(n) − V(s), R^(n) = Σ_{k<n} γ^k r_{t+k} +
    γ^n V(s_{t+n}) (the sum stops at an episode's end). Â is a constant for the actor (detached), the critic
    regresses V(s) on R^(n) (mean squared error, as SB3, whose RL Zoo coefficients we use), and an entropy bonus
    keeps the policy from collapsing early: loss = −E[log π Â] + c_V E[(R − V)²] − c_H H[π]."""
    policy_loss = -(logprob * advantages.detach()).mean()
    value_loss = (returns.detach() - values).pow(2).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy_mean
    return loss, {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
                  "entropy": entropy_mean.detach()}


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS)
    if args.eval_only:
        return on_policy.eval_only(Args, args, "A2C")
    batch_size = args.num_steps * args.num_envs
    num_iterations = -(-args.total_timesteps // batch_size)  # ceil: at least total_timesteps steps
    s = on_policy.Session(args, ckpt, "A2C", lambda agent: on_policy.make_optimizer(args, agent.parameters()))
    agent, optimizer, buffer, progress, run = s.agent, s.optimizer, s.buffer, s.progress, s.run
    run.progress(num_iterations * batch_size, progress.global_step)
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.iteration < num_iterations and not interrupt.requested:
            if args.anneal_lr:
                optimizer.param_groups[0]["lr"] = args.learning_rate * (1.0 - progress.iteration / num_iterations)
            # ---- n steps in every env, then n-step returns (GAE with λ = 1) and one gradient step
            last_values = s.collect()
            buffer.compute_advantages(last_values, args.gamma, args.gae_lambda)
            batch = buffer.all()
            logprob, entropy, value = agent.evaluate_actions(batch.obs, batch.actions)
            adv = batch.advantages
            if args.norm_adv:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            loss, stats = a2c_loss(logprob, adv, value, batch.returns, entropy, args.vf_coef, args.ent_coef)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)
            optimizer.step()
            progress.iteration += 1

            step = progress.global_step
            if step % args.log_every < batch_size:
                sps = step / max(run.elapsed, 1e-9)
                run.log_dict({f"losses/{k}": float(v) for k, v in stats.items()}, step)
                run.log_dict({"charts/learning_rate": optimizer.param_groups[0]["lr"], "charts/SPS": sps}, step)
                run.update_progress(step - run.bar.n, step, sps)
            if s.after_update(batch_size):
                break
    s.end(interrupt.requested)


if __name__ == "__main__":
    rl_utils.run_main(main)

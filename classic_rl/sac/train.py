"""Soft Actor-Critic (Haarnoja et al. 2018), with automatic entropy tuning, for Box actions.

    python classic_rl/sac/train.py                                   # Pendulum-v1, 20k steps
    python classic_rl/sac/train.py --env-id Hopper-v5 --total-timesteps 100000
    python classic_rl/sac/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt --capture-video

Read top to bottom: arguments and presets, the three losses (critic, actor, temperature: what SAC is about),
the update, then the loop. Envs, the replay buffer, evaluation and checkpoints come from rl_utils and
classic_rl/off_policy.py; the networks from classic_rl/continuous.py.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import off_policy, on_policy  # noqa: E402
from classic_rl.policies import parse_hidden  # noqa: E402
from classic_rl.sac.model import QEnsemble, SquashedGaussianActor  # noqa: E402


@dataclass
class Args(off_policy.OffPolicyArgs):
    """Train SAC (maximum-entropy actor-critic, twin critics, automatic temperature) on a Box-action env."""

    learning_rate: float = 1e-3
    """Adam learning rate of the actor, the critics and the temperature (RL Zoo's Pendulum setting)"""
    alpha: float = 0.2
    """initial temperature α (the weight of the entropy bonus)"""
    autotune: bool = True
    """learn α so that the policy's entropy tracks the target entropy"""
    target_entropy_scale: float = 1.0
    """target entropy = −scale × |A| (the SAC paper's heuristic: −1 nat per action dimension)"""
    log_every: int = 100
    """env steps between loss log rows"""

    LIMITS = {"learning_rate": (0, None), "alpha": (0, None), "target_entropy_scale": (0, None),
              "log_every": (1, None)}


# Tuned defaults per env, applied unless the flag is typed.
PRESETS: dict[str, dict[str, object]] = {
    # CleanRL's / the paper's MuJoCo settings: lr 3e-4, 5k random steps first
    "Hopper-v5": dict(total_timesteps=100_000, learning_rate=3e-4, learning_starts=5_000, eval_every=10_000),
}
for _mujoco in ("HalfCheetah-v5", "Walker2d-v5", "Ant-v5"):
    PRESETS[_mujoco] = PRESETS["Hopper-v5"]


def critic_loss(q: QEnsemble, q_target: QEnsemble, actor: SquashedGaussianActor, alpha: torch.Tensor,
                batch: rl_utils.ReplayBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft Bellman regression of both critics; returns (loss, Q(s,a) [2, B] detached).

    y = r + γ (1 − terminated) [min_i Q'_i(s', a') − α log π(a'|s')],  a' ~ π(·|s')   (fresh sample, no gradient)
    L = Σ_i ½ E[(Q_i(s, a) − y)²]. The min over the two target critics counters the overestimation a max-based
    target feeds back (clipped double Q, as TD3); the −α log π term is the entropy the policy will still collect."""
    with torch.no_grad():
        next_actions, next_logp = actor.sample(batch.next_obs)  # [B, d], [B]
        next_q = q_target(batch.next_obs, next_actions).min(dim=0).values - alpha * next_logp  # [B]
        target = batch.rewards + batch.discounts * (1.0 - batch.dones) * next_q  # [B]
    q_values = q(batch.obs, batch.actions)  # [2, B]
    loss = 0.5 * (q_values - target).pow(2).mean(dim=1).sum()
    return loss, q_values.detach()


def actor_loss(q: QEnsemble, actor: SquashedGaussianActor, alpha: torch.Tensor, obs: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """L_π = E_s E_{a~π}[α log π(a|s) − min_i Q_i(s, a)] with a reparameterised (a = tanh(μ + σ ε)), so the
    gradient flows through the critics into μ and σ. Returns (loss, log π(a|s) [B] detached)."""
    actions, logp = actor.sample(obs)  # [B, d], [B]
    q_pi = q(obs, actions).min(dim=0).values  # [B]
    return (alpha * logp - q_pi).mean(), logp.detach()


def alpha_loss(log_alpha: torch.Tensor, logp: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """L_α = −E[log α (log π(a|s) + H̄)]: its gradient −E[log π + H̄] = H(π) − H̄ (entropy estimate minus target)
    raises α when the policy's entropy is below the target and lowers it when above. Optimised in log α, which
    keeps α > 0."""
    return -(log_alpha * (logp + target_entropy)).mean()


def build_actor(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> SquashedGaussianActor:
    obs_dim, act_dim = off_policy.continuous_spaces(envs, "SAC", args.env_id)
    return SquashedGaussianActor(obs_dim, act_dim, parse_hidden(args.hidden_sizes)).to(device)


def build_learner(args: Args, envs: gym.vector.VectorEnv, device: torch.device,
                  actor: SquashedGaussianActor) -> dict[str, object]:
    """The critics, their target copy, α and the three optimizers: what a checkpoint keeps beside the actor."""
    obs_dim, act_dim = off_policy.continuous_spaces(envs, "SAC", args.env_id)
    q = QEnsemble(obs_dim, act_dim, parse_hidden(args.hidden_sizes), n=2).to(device)
    return learner_around(args, q, actor, device)


def learner_around(args: Args, q: nn.Module, actor: nn.Module, device: torch.device) -> dict[str, object]:
    """SAC's learner state around critics ``q`` (continuous or discrete): a target copy, α and three optimizers."""
    if args.alpha <= 0:  # α is kept as log α (so that it stays positive while learned): 0 has none
        raise rl_utils.UsageError(f"--alpha must be > 0 (a tiny α such as 1e-4 is almost no entropy bonus), "
                                  f"got {args.alpha:g}")
    q_target = copy.deepcopy(q).requires_grad_(False)  # moved only by soft updates, never by gradients
    log_alpha = nn.Parameter(torch.tensor(math.log(args.alpha), device=device), requires_grad=args.autotune)
    temperature = nn.ParameterDict({"log_alpha": log_alpha})  # a module, so the checkpoint helper saves it
    adam = dict(lr=args.learning_rate, fused=device.type in ("cpu", "cuda"))  # fused: one kernel per step
    return dict(q=q, q_target=q_target, temperature=temperature,
                actor_optimizer=torch.optim.Adam(actor.parameters(), **adam),
                q_optimizer=torch.optim.Adam(q.parameters(), **adam),
                alpha_optimizer=torch.optim.Adam([log_alpha], **adam))


def update(args: Args, actor: SquashedGaussianActor, learner: dict, batch: rl_utils.ReplayBatch,
           target_entropy: float) -> dict[str, torch.Tensor]:
    """One SAC gradient step: critics, then the actor, then α, then the targets' Polyak step."""
    q, q_target, log_alpha = learner["q"], learner["q_target"], learner["temperature"]["log_alpha"]
    alpha = log_alpha.detach().exp()
    loss_q, q_values = critic_loss(q, q_target, actor, alpha, batch)
    learner["q_optimizer"].zero_grad(set_to_none=True)
    loss_q.backward()
    learner["q_optimizer"].step()

    loss_pi, logp = actor_loss(q, actor, alpha, batch.obs)
    learner["actor_optimizer"].zero_grad(set_to_none=True)
    loss_pi.backward(inputs=list(actor.parameters()))  # the critics' weights get no gradient from the actor
    learner["actor_optimizer"].step()

    stats = {"qf_loss": loss_q.detach(), "actor_loss": loss_pi.detach(), "qf_values": q_values.mean(),
             "entropy": -logp.mean(), "alpha": alpha}
    if args.autotune:
        loss_alpha = alpha_loss(log_alpha, logp, target_entropy)
        learner["alpha_optimizer"].zero_grad(set_to_none=True)
        loss_alpha.backward()
        learner["alpha_optimizer"].step()
        stats["alpha_loss"] = loss_alpha.detach()
    off_policy.soft_update(q, q_target, args.tau)
    return stats


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS)
    if args.eval_only:
        return on_policy.eval_only(Args, args, "SAC", make_agent=build_actor)
    s = off_policy.Session(args, ckpt, "SAC", build_actor, build_learner)
    actor, progress = s.actor, s.progress
    target_entropy = -args.target_entropy_scale * float(np.prod(s.envs.single_action_space.shape))  # −|A|
    s.start_progress()
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.global_step < args.total_timesteps and not interrupt.requested:
            if progress.global_step < args.learning_starts:
                actions = s.random_actions()
            else:
                with torch.no_grad():
                    obs = torch.as_tensor(s.obs, dtype=torch.float32, device=s.device)
                    actions = actor.explore(obs).cpu().numpy()
            s.step_envs(actions)
            step = progress.global_step
            stats = {}
            if step > args.learning_starts:
                for _ in range(args.num_envs):  # one gradient step per env step (update-to-data ratio 1)
                    stats = update(args, actor, s.learner, s.buffer.sample(args.batch_size), target_entropy)
            s.log_update(stats, args.log_every)
            if s.after_step():
                break
    s.end(interrupt.requested)


if __name__ == "__main__":
    rl_utils.run_main(main)

"""BCQ: Batch-Constrained deep Q-learning (Fujimoto, Meger, Precup 2019), continuous actions, learned from an
offline dataset alone.

    python offline_rl/make_datasets.py --source <SAC Hopper run>          # offline_rl/data/hopper-*.hdf5
    python offline_rl/bcq/train.py --dataset offline_rl/data/hopper-medium-replay.hdf5
    python offline_rl/bcq/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt

Read top to bottom: arguments, the three losses (what BCQ is about: the behaviour VAE, the soft clipped double-Q
target over generated actions, the perturbation actor), the update, then the loop of ``--offline-steps``
gradient steps. Envs, evaluation, ``best.pt`` and checkpoints come from classic_rl/off_policy.py (the Session of
DDPG/TD3/SAC), the dataset and the flags shared with AWAC from offline_rl/common.py.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import off_policy, on_policy  # noqa: E402
from classic_rl.policies import parse_hidden  # noqa: E402
from offline_rl import common  # noqa: E402
from offline_rl.bcq.model import BCQPolicy, Perturbation  # noqa: E402


@dataclass
class Args(common.OfflineArgs):
    """Train BCQ on an offline dataset (defaults: the authors' code and d3rlpy's BCQConfig)."""

    phi: float = 0.05
    """Φ: the largest perturbation of a generated action, in units of the action half-range (the paper's MuJoCo
    value; 0 = Q-filtered behaviour cloning, 1 = unconstrained)"""
    lam: float = 0.75
    """λ of the soft clipped double-Q target λ min(Q1, Q2) + (1 − λ) max(Q1, Q2) (the paper's)"""
    n_target: int = 10
    """generated actions per next state in the critic target (the paper's)"""
    n_act: int = 100
    """generated actions per state when acting (evaluation)"""
    kl_weight: float = 0.5
    """weight of the VAE's KL term (the authors' code)"""
    learning_rate: float = 1e-3
    """Adam learning rate of the VAE, the perturbation network and the critics (the authors' code, d3rlpy)"""
    batch_size: int = 100
    """minibatch size (the authors' code, d3rlpy)"""
    hidden_sizes: str = "400,300"
    """hidden layers of the perturbation network and of each critic (the authors' code)"""
    vae_hidden_sizes: str = "750,750"
    """hidden layers of the VAE's encoder and decoder (the authors' code)"""
    latent_dim: int = 0
    """size of the VAE's latent z (0 = twice the action size, the authors' choice)"""

    LIMITS = {"phi": (0, 1), "lam": (0, 1), "n_target": (1, None), "n_act": (1, None), "kl_weight": (0, None),
              "learning_rate": (0, None), "latent_dim": (0, None)}


def vae_loss(policy: BCQPolicy, batch: rl_utils.ReplayBatch, kl_weight: float) -> torch.Tensor:
    """L_ω = E[‖D(s, z) − a‖²] + β_KL · KL(N(μ, σ²) ‖ N(0, I)), z ~ q(z|s, a): a conditional VAE of the data's
    actions, the generative model of the behaviour policy (mean over batch and dimensions, as the authors' code)."""
    recon, mean, std = policy.vae(batch.obs, batch.actions)
    kl = -0.5 * (1 + 2 * std.log() - mean.pow(2) - std.pow(2)).mean()
    return (recon - batch.actions).pow(2).mean() + kl_weight * kl


def critic_target(policy: BCQPolicy, q_target: common.Critics, perturb_target: Perturbation,
                  batch: rl_utils.ReplayBatch, n: int, lam: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) max_{i ≤ n} [λ min_j Q'_j(s', a_i) + (1 − λ) max_j Q'_j(s', a_i)],
    a_i = ξ'(s', G(s')) [B] (no gradient).

    The max runs over *generated* next actions only (never over the whole action space: that max is where
    Q-learning on fixed data overestimates). The λ-mix of the twin critics' min and max (the paper's "soft
    clipped double Q") penalises actions the critics disagree on, i.e. unfamiliar ones, more than plain max and
    less than TD3's min. ``terminated`` comes from the dataset's terminals only: a time-out still bootstraps."""
    with torch.no_grad():
        candidates = policy.candidates(batch.next_obs, n, perturb_target)  # [B, n, d]
        b, _, d = candidates.shape
        q = q_target(batch.next_obs.repeat_interleave(n, 0), candidates.reshape(b * n, d))  # [2, B n]
        soft = lam * q.min(0).values + (1 - lam) * q.max(0).values  # [B n]
        next_v = soft.view(b, n).max(1).values  # [B]
        return batch.rewards + batch.discounts * (1.0 - batch.dones) * next_v


def actor_loss(policy: BCQPolicy, batch: rl_utils.ReplayBatch) -> torch.Tensor:
    """L_φ = −E_s[Q_1(s, ξ_φ(s, G(s)))]: move each generated action (within ±Φ) toward higher Q. The generated
    action is a constant here: only the perturbation network learns from this loss."""
    with torch.no_grad():
        generated = policy.vae.decode(batch.obs)  # [B, d]
    return -policy.q(batch.obs, policy.perturb(batch.obs, generated), members=1).mean()


def build_policy(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> BCQPolicy:
    obs_dim, act_dim = off_policy.continuous_spaces(envs, "BCQ", args.env_id)
    return BCQPolicy(obs_dim, act_dim, parse_hidden(args.vae_hidden_sizes), parse_hidden(args.hidden_sizes),
                     args.latent_dim or 2 * act_dim, args.phi, args.n_act).to(device)


def build_learner(args: Args, envs: gym.vector.VectorEnv, device: torch.device,
                  policy: BCQPolicy) -> dict[str, object]:
    """Target copies of the critics and of the perturbation network (the authors' code keeps both) and the three
    optimizers: what a checkpoint keeps beside the policy."""
    adam = dict(lr=args.learning_rate, fused=device.type in ("cpu", "cuda"))  # fused: one kernel per step
    return dict(q_target=copy.deepcopy(policy.q).requires_grad_(False),  # moved only by soft updates
                perturb_target=copy.deepcopy(policy.perturb).requires_grad_(False),
                vae_optimizer=torch.optim.Adam(policy.vae.parameters(), **adam),
                actor_optimizer=torch.optim.Adam(policy.perturb.parameters(), **adam),
                q_optimizer=torch.optim.Adam(policy.q.parameters(), **adam))


def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def update(args: Args, policy: BCQPolicy, learner: dict, batch: rl_utils.ReplayBatch) -> dict[str, torch.Tensor]:
    """One gradient step, in the authors' order: the VAE, the critics, the perturbation network, then both
    targets' Polyak step."""
    loss_vae = vae_loss(policy, batch, args.kl_weight)
    step(learner["vae_optimizer"], loss_vae)
    target = critic_target(policy, learner["q_target"], learner["perturb_target"], batch, args.n_target, args.lam)
    q_values = policy.q(batch.obs, batch.actions)  # [2, B]
    loss_q = 0.5 * (q_values - target).pow(2).mean(dim=1).sum()
    step(learner["q_optimizer"], loss_q)
    loss_pi = actor_loss(policy, batch)
    step(learner["actor_optimizer"], loss_pi)
    off_policy.soft_update(policy.q, learner["q_target"], args.tau)
    off_policy.soft_update(policy.perturb, learner["perturb_target"], args.tau)
    return {"vae_loss": loss_vae.detach(), "qf_loss": loss_q.detach(), "qf_values": q_values.detach().mean(),
            "actor_loss": loss_pi.detach()}


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args)
    if args.eval_only:
        return on_policy.eval_only(Args, args, "BCQ", make_agent=build_policy)
    if args.total_timesteps:
        raise rl_utils.UsageError("BCQ learns offline only: --total-timesteps must be 0 (fine-tune with "
                                  "offline_rl/awac/train.py)")
    dataset = common.load_dataset(args)
    s = off_policy.Session(args, ckpt, "BCQ", build_policy, build_learner)
    policy, learner, progress = s.actor, s.learner, s.progress
    common.prepare(s, ckpt, args, dataset)
    s.start_progress(args.offline_steps)
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.global_step < args.offline_steps and not interrupt.requested:
            progress.global_step += 1  # one gradient step is one step of the counter
            stats = update(args, policy, learner, s.buffer.sample(args.batch_size))
            s.log_update(stats, args.log_every)
            if s.after_step():
                break
    common.end(s, args, interrupt.requested)


if __name__ == "__main__":
    rl_utils.run_main(main)

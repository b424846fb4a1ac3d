"""Discrete SAC (Christodoulou 2019): soft actor-critic for a finite action set, with exact expectations.

    python classic_rl/sac_discrete/train.py                          # CartPole-v1
    python classic_rl/sac_discrete/train.py --env-id LunarLander-v3 --total-timesteps 200000
    python classic_rl/sac_discrete/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt --capture-video

SAC (``classic_rl/sac/train.py``) samples actions to estimate its expectations and reparameterises the sample so
the actor gets a gradient through the critic. With |A| actions both are unnecessary: the critics output Q(s, a)
for every a, the actor π(a|s) for every a, and every E_{a~π}[·] is a sum Σ_a π(a|s)[·]. Read top to bottom:
arguments, the three losses, the update, the loop. Envs, the replay buffer, evaluation and checkpoints come from
rl_utils and classic_rl/off_policy.py, the temperature loss from SAC itself.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import off_policy, on_policy  # noqa: E402
from classic_rl.policies import parse_hidden  # noqa: E402
from classic_rl.sac.train import alpha_loss, learner_around  # noqa: E402
from classic_rl.sac_discrete.model import CategoricalActor, DiscreteQEnsemble  # noqa: E402


@dataclass
class Args(off_policy.OffPolicyArgs):
    """Train discrete SAC (categorical policy, twin critics over all actions, automatic temperature)."""

    env_id: str = "CartPole-v1"
    """gymnasium environment id (Discrete actions)"""
    total_timesteps: int = 50_000
    """environment steps to train for"""
    learning_rate: float = 3e-4
    """Adam learning rate of the actor, the critics and the temperature"""
    alpha: float = 0.2
    """initial temperature α (the weight of the entropy bonus)"""
    autotune: bool = True
    """learn α so that the policy's entropy tracks the target entropy"""
    target_entropy_scale: float = 0.3
    """target entropy = scale × log|A|, a fraction of the uniform policy's entropy (log|A| would keep it uniform;
    on CartPole 0.5 left seed 3 on a ~200 plateau until 34k steps and short of 475 at 50k, 0.3 solved it)"""
    log_every: int = 100
    """env steps between loss log rows"""

    LIMITS = {"learning_rate": (0, None), "alpha": (0, None), "target_entropy_scale": (0, 1), "log_every": (1, None)}


def discrete_spaces(envs: gym.vector.VectorEnv, env_id: str) -> tuple[int, int]:
    """(observation size, number of actions); a one-line error pointing to the Box-action methods otherwise."""
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        raise rl_utils.UsageError(
            f"discrete SAC needs Discrete actions, but {env_id} has {envs.single_action_space}: for continuous "
            "actions use classic_rl/sac/train.py (or td3, ddpg)")
    obs_dim = rl_utils.require_vector_obs(envs.single_observation_space, "discrete SAC (MLP)")
    return obs_dim, int(envs.single_action_space.n)


def critic_loss(q: DiscreteQEnsemble, q_target: DiscreteQEnsemble, actor: CategoricalActor, alpha: torch.Tensor,
                batch: rl_utils.ReplayBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft Bellman regression of both critics at the taken actions; returns (loss, Q(s,a) [2, B] detached).

    V'(s') = Σ_a' π(a'|s') [min_i Q'_i(s', a') − α log π(a'|s')]   (the soft value, an exact sum: no sample)
    y = r + γ (1 − terminated) V'(s'),   L = Σ_i ½ E[(Q_i(s, a) − y)²]."""
    with torch.no_grad():
        next_probs, next_logp = actor(batch.next_obs)  # [B, A] each
        next_q = q_target(batch.next_obs).min(dim=0).values  # [B, A]
        next_v = (next_probs * (next_q - alpha * next_logp)).sum(-1)  # [B]
        target = batch.rewards + batch.discounts * (1.0 - batch.dones) * next_v  # [B]
    q_all = q(batch.obs)  # [2, B, A]
    index = batch.actions.long().view(1, -1, 1).expand(q_all.shape[0], -1, 1)  # [2, B, 1]
    q_values = q_all.gather(2, index).squeeze(-1)  # [2, B]
    loss = 0.5 * (q_values - target).pow(2).mean(dim=1).sum()
    return loss, q_values.detach()


def actor_loss(q: DiscreteQEnsemble, actor: CategoricalActor, alpha: torch.Tensor, obs: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """L_π = E_s Σ_a π(a|s) [α log π(a|s) − min_i Q_i(s, a)]: the same objective as SAC's, summed exactly over the
    actions, so the gradient reaches π through the probabilities and the critics are constants (no
    reparameterisation). Returns (loss, the policy's entropy H(π(·|s)) [B] detached)."""
    probs, logp = actor(obs)  # [B, A] each
    with torch.no_grad():
        q_min = q(obs).min(dim=0).values  # [B, A]
    loss = (probs * (alpha * logp - q_min)).sum(-1).mean()
    entropy = -(probs * logp).sum(-1).detach()  # [B]
    return loss, entropy


def build_actor(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> CategoricalActor:
    obs_dim, n_actions = discrete_spaces(envs, args.env_id)
    return CategoricalActor(obs_dim, n_actions, parse_hidden(args.hidden_sizes)).to(device)


def build_learner(args: Args, envs: gym.vector.VectorEnv, device: torch.device,
                  actor: CategoricalActor) -> dict[str, object]:
    """The critics, their target copy, α and the three optimizers (SAC's, around critics over all actions)."""
    obs_dim, n_actions = discrete_spaces(envs, args.env_id)
    q = DiscreteQEnsemble(obs_dim, n_actions, parse_hidden(args.hidden_sizes), n=2).to(device)
    return learner_around(args, q, actor, device)


def target_entropy(args: Args, n_actions: int) -> float:
    """H̄ = scale × log|A| nats (log|A| is the entropy of the uniform policy, the most there is)."""
    return args.target_entropy_scale * math.log(n_actions)


def update(args: Args, actor: CategoricalActor, learner: dict, batch: rl_utils.ReplayBatch,
           entropy_target: float) -> dict[str, torch.Tensor]:
    """One discrete-SAC gradient step: critics, then the actor, then α, then the targets' Polyak step."""
    q, q_target, log_alpha = learner["q"], learner["q_target"], learner["temperature"]["log_alpha"]
    alpha = log_alpha.detach().exp()
    loss_q, q_values = critic_loss(q, q_target, actor, alpha, batch)
    learner["q_optimizer"].zero_grad(set_to_none=True)
    loss_q.backward()
    learner["q_optimizer"].step()

    loss_pi, entropy = actor_loss(q, actor, alpha, batch.obs)
    learner["actor_optimizer"].zero_grad(set_to_none=True)
    loss_pi.backward()
    learner["actor_optimizer"].step()

    stats = {"qf_loss": loss_q.detach(), "actor_loss": loss_pi.detach(), "qf_values": q_values.mean(),
             "entropy": entropy.mean(), "alpha": alpha}
    if args.autotune:
        # SAC's temperature loss with the exact entropy in place of the sampled −log π(a|s)
        loss_alpha = alpha_loss(log_alpha, -entropy, entropy_target)
        learner["alpha_optimizer"].zero_grad(set_to_none=True)
        loss_alpha.backward()
        learner["alpha_optimizer"].step()
        stats["alpha_loss"] = loss_alpha.detach()
    off_policy.soft_update(q, q_target, args.tau)
    return stats


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args)
    if args.eval_only:
        return on_policy.eval_only(Args, args, "SAC-discrete", make_agent=build_actor)
    s = off_policy.Session(args, ckpt, "SAC-discrete", build_actor, build_learner)
    actor, progress = s.actor, s.progress
    entropy_target = target_entropy(args, int(s.envs.single_action_space.n))
    s.start_progress()
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.global_step < args.total_timesteps and not interrupt.requested:
            if progress.global_step < args.learning_starts:
                actions = s.random_actions()
            else:
                with torch.no_grad():
                    actions = actor.explore(torch.as_tensor(s.obs, dtype=torch.float32, device=s.device)).cpu().numpy()
            s.step_envs(actions)
            stats = {}
            if progress.global_step > args.learning_starts:
                for _ in range(args.num_envs):  # one gradient step per env step (update-to-data ratio 1)
                    stats = update(args, actor, s.learner, s.buffer.sample(args.batch_size), entropy_target)
            s.log_update(stats, args.log_every)
            if s.after_step():
                break
    s.end(interrupt.requested)


if __name__ == "__main__":
    rl_utils.run_main(main)

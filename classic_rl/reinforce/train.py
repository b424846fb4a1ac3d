"""REINFORCE (Williams 1992): Monte-Carlo policy gradient over whole episodes, Discrete and Box actions.

    python classic_rl/reinforce/train.py                              # CartPole-v1
    python classic_rl/reinforce/train.py --baseline                   # learned value baseline, A = G - V(s)
    python classic_rl/reinforce/train.py --env-id Pendulum-v1 --baseline --norm-obs   # Gaussian policy (untuned)
    python classic_rl/reinforce/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt --capture-video

Read top to bottom: arguments, the loss (what REINFORCE is about), then the loop. One update = every env plays
from a fresh reset until each has finished at least one episode; the steps of the episodes that ended are used
(reward-to-go G_t from ``RolloutBuffer.compute_returns``), those of episodes still running are dropped, and one
gradient step is taken. Everything generic (envs, rollout storage, returns, logging) is rl_utils; set-up,
resume, evaluation, checkpoints and the end of a run come from classic_rl/on_policy.py.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import on_policy  # noqa: E402
from classic_rl.reinforce.model import ActorCritic, make_policy, parse_hidden  # noqa: E402


@dataclass
class Args(on_policy.PolicyArgs):
    """Train REINFORCE (Monte-Carlo policy gradient, optional learned baseline) on a Discrete or Box env."""

    total_timesteps: int = 300_000
    """environment steps to train for (summed over all parallel envs, including dropped unfinished episodes)"""
    max_rollout_steps: int = 0
    """steps per env per update at most (0 = the env's time limit, or 1000 without one); an episode still
    running when this is reached is dropped from the update (REINFORCE's rollout length: --num-steps is unused)"""
    learning_rate: float = 3e-3
    """Adam learning rate"""
    anneal_lr: bool = False
    """decay the learning rate linearly to 0 over the run"""
    baseline: bool = False
    """learn a value baseline V(s) (separate MLP) and weight log π by G - V(s) instead of G"""
    normalize_returns: bool = True
    """standardise the weights (G, or G - V) over each update's batch: a scale-free step size"""
    ent_coef: float = 0.0
    """entropy bonus coefficient (exploration)"""
    max_grad_norm: float = 0.5
    """gradient-norm clipping, applied to the policy's and the baseline's parameters separately (0 = off)"""

    LIMITS = {"max_rollout_steps": (0, None), "learning_rate": (0, None), "ent_coef": (0, None),
              "max_grad_norm": (0, None)}


# Tuned defaults per env, applied unless the flag is typed. Empty for now: the defaults are tuned for CartPole-v1;
# Box envs (Pendulum-v1) run end to end (tested) but no setting for them has been measured to learn yet.
PRESETS: dict[str, dict[str, object]] = {}


def reinforce_loss(
    logprob: torch.Tensor,
    entropy: torch.Tensor,
    returns: torch.Tensor,
    values: torch.Tensor,
    normalize: bool,
    ent_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The REINFORCE objective on the steps of whole episodes (all inputs [B]); returns (loss, diagnostics).

    ∇J(θ) = E[ Σ_t ∇log π(a_t|s_t) (G_t − b(s_t)) ],  G_t = Σ_{k≥t} γ^{k−t} r_k (reward-to-go).
    weights w_t = G_t − V(s_t) with a baseline (V detached: the baseline must not be pushed by the policy loss),
    G_t without (``values`` all 0); with ``normalize`` they are standardised over the batch.
    policy_loss = −mean_t(w_t log π(a_t|s_t))   (its gradient is the estimate above, averaged over steps)
    value_loss  = ½ mean_t((V(s_t) − G_t)²)     (0 without a baseline)
    loss = policy_loss + value_loss − c_H mean_t H[π(·|s_t)]."""
    weights = returns - values.detach()
    if normalize and len(weights) > 1:
        weights = (weights - weights.mean()) / (weights.std() + 1e-8)
    policy_loss = -(weights * logprob).mean()
    value_loss = 0.5 * (values - returns).pow(2).mean() if values.requires_grad else torch.zeros(())
    entropy_mean = entropy.mean()
    loss = policy_loss + value_loss - ent_coef * entropy_mean
    stats = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(), "entropy": entropy_mean.detach()}
    return loss, stats


def finished_mask(cuts: torch.Tensor) -> torch.Tensor:
    """[T, N] True for the steps of episodes that ended inside the rollout: every step at or before each env's
    last episode end. The steps after it belong to an episode that was still running, whose return is unknown."""
    return cuts.flip(0).cumsum(0).flip(0) > 0


def rollout_cap(args: Args) -> int:
    if args.max_rollout_steps:
        return args.max_rollout_steps
    rl_utils.check_env_id(args.env_id)  # the envs are made after this: a one-line error for an unknown id
    return gym.spec(args.env_id).max_episode_steps or 1000


def build(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> ActorCritic:
    """π(·|s), plus V(s) on its own trunk with ``--baseline`` (model.py)."""
    obs_dim, space = on_policy.policy_spaces(args, envs, "REINFORCE")
    if args.shared_trunk:
        raise rl_utils.UsageError("--shared-trunk is not available in REINFORCE (the baseline has its own MLP)")
    return make_policy(obs_dim, space, parse_hidden(args.hidden_sizes), args.activation, args.baseline,
                       args.log_std_init).to(device)


def clip_grads(agent: ActorCritic, max_norm: float) -> None:
    """Clip the policy's and the baseline's gradients separately: the value loss is in units of return², so a
    joint norm would let it shrink the policy's step."""
    if not max_norm:
        return
    critic = [p for n, p in agent.named_parameters() if n.startswith("critic_")]
    actor = [p for n, p in agent.named_parameters() if not n.startswith("critic_")]
    for group in (actor, critic):
        if group:
            torch.nn.utils.clip_grad_norm_(group, max_norm)


def algo_name(args: Args) -> str:
    return "reinforce_baseline" if args.baseline else "reinforce"


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS)
    if args.eval_only:
        return on_policy.eval_only(Args, args, algo_name(args), make_agent=build)
    cap = rollout_cap(args)
    # Checkpoints are taken between updates and every update starts with a reset, so restoring the sub-envs'
    # random streams is all an exact resume needs (the saved observation is not used).
    s = on_policy.Session(args, ckpt, algo_name(args), lambda agent: torch.optim.Adam(agent.parameters(),
                          lr=args.learning_rate), make_agent=build, num_steps=cap)
    agent, optimizer, buffer, progress, run, envs, device = (s.agent, s.optimizer, s.buffer, s.progress, s.run,
                                                             s.envs, s.device)
    run.progress(args.total_timesteps, progress.global_step)
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.global_step < args.total_timesteps and not interrupt.requested:
            frac = 1.0 - progress.global_step / args.total_timesteps
            optimizer.param_groups[0]["lr"] = args.learning_rate * (frac if args.anneal_lr else 1.0)

            # ---- play until every env has finished at least one episode (fresh episodes for every update)
            step0 = progress.global_step
            buffer.reset()
            obs, _ = envs.reset()
            ended = np.zeros(args.num_envs, dtype=bool)
            with torch.no_grad():
                while buffer.pos < cap and not ended.all():
                    obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
                    action, logprob, value = agent.act(obs_t)
                    next_obs, reward, terminated, truncated, infos = envs.step(action.cpu().numpy())
                    # A time limit is not an end of the task: with a baseline, G bootstraps from V(final obs).
                    final_values = (rl_utils.values_of_final_obs(agent.value, next_obs, infos, terminated, truncated,
                                                                 device) if args.baseline else None)
                    buffer.add(obs_t, action, logprob, value, reward, terminated, truncated, final_values)
                    ended |= terminated | truncated
                    obs = next_obs
                    progress.global_step += args.num_envs
                    run.log_episodes(rl_utils.finished_episodes(infos), progress.global_step)
            T = buffer.pos
            # Every chain that is used ends in a cut, so the bootstrap after the last row never reaches them.
            buffer.compute_returns(torch.zeros(args.num_envs, device=device), args.gamma)
            used = finished_mask(buffer.cuts[:T])  # [T, N]

            # ---- one gradient step on the used steps
            obs_b, actions_b = buffer.obs[:T][used], buffer.actions[:T][used]
            logprob, entropy, values = agent.evaluate_actions(obs_b, actions_b)
            if not args.baseline:
                values = torch.zeros_like(logprob)
            loss, stats = reinforce_loss(logprob, entropy, buffer.returns[:T][used], values, args.normalize_returns,
                                         args.ent_coef)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_grads(agent, args.max_grad_norm)
            optimizer.step()
            progress.iteration += 1

            step = progress.global_step
            run.log_dict({f"losses/{k}": float(v) for k, v in stats.items()}, step)
            run.log_dict({"charts/learning_rate": optimizer.param_groups[0]["lr"],
                          "charts/SPS": step / max(run.elapsed, 1e-9),
                          "charts/used_fraction": float(used.float().mean())}, step)
            run.update_progress(step - step0, step, step / max(run.elapsed, 1e-9))
            if s.after_update(step - step0):  # this update's steps: a checkpoint when a multiple was passed
                break
    s.end(interrupt.requested)


if __name__ == "__main__":
    rl_utils.run_main(main)

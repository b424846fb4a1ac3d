"""Trust Region Policy Optimization (Schulman et al. 2015): a natural-gradient policy step inside a KL trust region.

    python classic_rl/trpo/train.py                                  # CartPole-v1 (RL Zoo settings), 100k steps
    python classic_rl/trpo/train.py --env-id Pendulum-v1
    python classic_rl/trpo/train.py --env-id LunarLanderContinuous-v3   # the notes' env
    python classic_rl/trpo/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt

Read top to bottom: arguments and presets, then the pieces TRPO is about, each a pure function tested alone
(``conjugate_gradient``, ``fisher_vector_product``, ``trpo_step``), then the loop: collect a rollout, GAE
advantages, one trust-region step of the policy, a few epochs of regression for the value function.
Collection, GAE, normalisation, evaluation and checkpoints come from rl_utils and classic_rl/on_policy.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.distributions import Categorical, Distribution, Normal, kl_divergence

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import on_policy  # noqa: E402
from classic_rl.trpo.model import ActorCritic, parse_hidden  # noqa: E402


@dataclass
class Args(on_policy.PolicyArgs):
    """Train TRPO (natural gradient, KL trust region, line search; GAE) on an env with Discrete or Box actions."""

    num_envs: int = 2
    """parallel environments (SyncVectorEnv)"""
    num_steps: int = 1024
    """steps per env per rollout: one policy step per num_steps x num_envs transitions"""
    max_kl: float = 0.01
    """δ: the trust region, mean KL(π_old || π_new) over the rollout's states that a step may not exceed"""
    cg_iters: int = 15
    """conjugate-gradient iterations to solve F x = g (F: the Fisher matrix, never built)"""
    cg_damping: float = 0.1
    """added to F's diagonal (F + λI): keeps CG stable where the sampled Fisher is near singular"""
    line_search_steps: int = 10
    """backtracking tries: the full step, then shrunk by --line-search-shrink each time"""
    line_search_shrink: float = 0.8
    """factor by which each backtracking try shrinks the step"""
    gae_lambda: float = 0.95
    """GAE λ: 0 = one-step TD advantage (low variance, biased), 1 = Monte-Carlo (unbiased, high variance)"""
    norm_adv: bool = True
    """standardise the advantages of each rollout"""
    learning_rate: float = 1e-3
    """Adam learning rate of the value function (the policy has no learning rate: the trust region sets its step)"""
    critic_epochs: int = 10
    """passes of value regression over each rollout"""
    critic_batch_size: int = 128
    """minibatch size of the value regression"""

    LIMITS = {"max_kl": (0, None), "cg_iters": (1, None), "cg_damping": (0, None), "line_search_steps": (1, None),
              "line_search_shrink": (0, 1), "gae_lambda": (0, 1), "learning_rate": (0, None),
              "critic_epochs": (1, None), "critic_batch_size": (1, None)}


# Tuned defaults per env (RL Zoo's trpo.yml; sb3-contrib's defaults under it), applied unless the flag is typed.
PRESETS: dict[str, dict[str, object]] = {
    "CartPole-v1": dict(total_timesteps=100_000, num_envs=2, num_steps=512, critic_batch_size=512, cg_damping=1e-3,
                        gae_lambda=0.98, gamma=0.99, learning_rate=1e-3, critic_epochs=20, eval_every=2_048),
    # RL Zoo's Pendulum settings use gSDE (state-dependent exploration), which we do not implement: see README.
    "Pendulum-v1": dict(total_timesteps=200_000, num_envs=2, num_steps=1024, gamma=0.9, critic_epochs=15,
                        eval_every=10_240),
    "LunarLanderContinuous-v3": dict(total_timesteps=200_000, num_envs=2, num_steps=1024, critic_epochs=20,
                                     norm_obs=True, norm_reward=True, eval_every=10_240),
    "LunarLander-v3": dict(total_timesteps=200_000, num_envs=2, num_steps=512, cg_damping=0.01, gae_lambda=0.98,
                           critic_epochs=15, eval_every=10_240),
}


# ---------------------------------------------------------------- the natural gradient, piece by piece
def flat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def conjugate_gradient(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int,
                       residual_tol: float = 1e-10) -> torch.Tensor:
    """x ≈ A⁻¹ b for a symmetric positive-definite A known only through ``matvec(v) = A v``.

    CG minimises ½ xᵀAx − bᵀx along A-conjugate directions: after k steps x is optimal in the Krylov space
    span{b, Ab, …, A^{k−1}b}, exact after n steps, and close after ~10 when A's spectrum is clustered (as a damped
    Fisher matrix's is). Each step costs one product A v: for TRPO that is one Fisher-vector product, so the
    (n_params × n_params) Fisher matrix is never formed."""
    x = torch.zeros_like(b)
    r = b.clone()  # residual b − A x
    p = b.clone()  # search direction
    rr = r @ r
    for _ in range(iters):
        if rr < residual_tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product(kl: torch.Tensor, params: Sequence[torch.Tensor], v: torch.Tensor,
                          damping: float) -> torch.Tensor:
    """(F + λI) v, with F the Hessian of the mean KL(π_old || π_θ) at θ = θ_old, by double backprop.

    At θ = θ_old the KL's gradient is 0 and its Hessian equals the Fisher information E[∇log π ∇log πᵀ], so
    F v = ∇_θ ( (∇_θ KL) · v ): one backward pass builds ∇KL with its graph, a second differentiates its dot
    product with the constant v. ``kl`` must be computed with π_old detached and the graph kept."""
    grads = torch.autograd.grad(kl, params, create_graph=True)
    grad_v = flat(grads) @ v
    hvp = torch.autograd.grad(grad_v, params, retain_graph=True)
    return flat(hvp) + damping * v


def detached(dist: Distribution) -> Distribution:
    """π_old: the same distribution with its parameters cut from the graph."""
    if isinstance(dist, Categorical):
        return Categorical(logits=dist.logits.detach())
    return Normal(dist.loc.detach(), dist.scale.detach())


def mean_kl(old: Distribution, new: Distribution) -> torch.Tensor:
    """Mean over states of KL(π_old(·|s) || π_new(·|s)); a Gaussian's KL summed over its independent dims."""
    kl = kl_divergence(old, new)
    return (kl if kl.dim() == 1 else kl.sum(-1)).mean()


@dataclass
class StepResult:
    accepted: bool
    step_fraction: float  # of the full natural-gradient step (0 when rejected)
    kl: float  # KL of the accepted policy (0 when rejected)
    improvement: float  # surrogate(new) − surrogate(old)
    expected_improvement: float  # gᵀ step: what the linear model predicted for the full step


def trpo_step(params: Sequence[torch.Tensor], surrogate: Callable[[], torch.Tensor],
              kl_to_old: Callable[[], torch.Tensor], max_kl: float, cg_iters: int, damping: float,
              line_search_steps: int, shrink: float) -> StepResult:
    """One TRPO policy update, in place on ``params``:

    maximise L(θ) = E[π_θ(a|s)/π_old(a|s) Â]  subject to  E_s[KL(π_old || π_θ)] ≤ δ.

    Linearising L (gradient g) and taking the KL's second-order model ½ sᵀFs gives the step s = β F⁻¹g with
    β = √(2δ / (xᵀFx)), x = F⁻¹g found by conjugate gradient. The quadratic model is only a model, so a
    backtracking line search tries β x, shrink·β x, …, and accepts the first step whose *exact* KL is ≤ δ and
    whose surrogate improved; if none does, θ stays θ_old (the step is rejected, not forced).

    ``surrogate()`` and ``kl_to_old()`` evaluate L and the mean KL at the current ``params`` (with grad)."""
    loss = surrogate()
    g = flat(torch.autograd.grad(loss, params))
    kl = kl_to_old()  # 0 here, but its graph carries the Hessian
    x = conjugate_gradient(lambda v: fisher_vector_product(kl, params, v, damping), g, cg_iters)
    shs = 0.5 * x @ fisher_vector_product(kl, params, x, damping)
    if not torch.isfinite(shs) or shs <= 0:  # a zero gradient (all advantages 0) or a broken product
        return StepResult(False, 0.0, 0.0, 0.0, 0.0)
    full_step = x * torch.sqrt(max_kl / shs)  # ½ sᵀFs = δ
    expected = float(g @ full_step)
    old = flat([p.detach() for p in params]).clone()
    old_value = float(loss.detach())
    with torch.no_grad():
        fraction = 1.0
        for _ in range(line_search_steps):
            set_flat(params, old + fraction * full_step)
            new_kl, new_value = float(kl_to_old()), float(surrogate())
            if new_kl <= max_kl and new_value > old_value:
                return StepResult(True, fraction, new_kl, new_value - old_value, expected)
            fraction *= shrink
        set_flat(params, old)
    return StepResult(False, 0.0, 0.0, 0.0, expected)


def set_flat(params: Sequence[torch.Tensor], vector: torch.Tensor) -> None:
    offset = 0
    for p in params:
        p.data.copy_(vector[offset:offset + p.numel()].view_as(p))
        offset += p.numel()


# ---------------------------------------------------------------- the loop
def make_agent(args: Args, envs, device: torch.device) -> ActorCritic:
    if args.shared_trunk:
        raise rl_utils.UsageError("--shared-trunk does not fit TRPO: its policy step and its value regression "
                                  "update separate parameters (the trust region is on the policy's alone)")
    obs_dim, space = on_policy.policy_spaces(args, envs, "TRPO")
    return ActorCritic(obs_dim, space, parse_hidden(args.hidden_sizes), args.activation,
                       log_std_init=args.log_std_init).to(device)


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS)
    if args.eval_only:
        return on_policy.eval_only(Args, args, "TRPO", make_agent)
    batch_size = args.num_steps * args.num_envs
    num_iterations = -(-args.total_timesteps // batch_size)  # ceil: at least total_timesteps steps
    s = on_policy.Session(args, ckpt, "TRPO", lambda agent: torch.optim.Adam(
        agent.critic_parameters(), lr=args.learning_rate), make_agent=make_agent)
    agent, optimizer, buffer, progress, run = s.agent, s.optimizer, s.buffer, s.progress, s.run
    actor_params = list(agent.actor_parameters())
    run.progress(num_iterations * batch_size, progress.global_step)
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.iteration < num_iterations and not interrupt.requested:
            # ---- collect a rollout with the current policy, then GAE advantages
            t_collect = time.perf_counter()
            last_values = s.collect()
            buffer.compute_advantages(last_values, args.gamma, args.gae_lambda)
            collect_s = time.perf_counter() - t_collect
            batch = buffer.all()
            adv = batch.advantages
            if args.norm_adv and len(adv) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)

            # ---- one trust-region step of the policy on the whole rollout
            t_update = time.perf_counter()
            old_dist = detached(agent.distribution(batch.obs))

            def surrogate() -> torch.Tensor:  # E[π/π_old Â]; the ratio is 1 at θ_old, its gradient the PG's
                logprob, _, _ = agent.evaluate_actions(batch.obs, batch.actions)
                return (torch.exp(logprob - batch.logprobs) * adv).mean()

            def kl_to_old() -> torch.Tensor:
                return mean_kl(old_dist, agent.distribution(batch.obs))

            step = trpo_step(actor_params, surrogate, kl_to_old, args.max_kl, args.cg_iters, args.cg_damping,
                             args.line_search_steps, args.line_search_shrink)

            # ---- fit V to the GAE returns (a separate regression: the trust region does not touch it)
            for _epoch in range(args.critic_epochs):
                for mb in buffer.minibatches(args.critic_batch_size):
                    value_loss = 0.5 * (agent.value(mb.obs) - mb.returns).pow(2).mean()
                    optimizer.zero_grad(set_to_none=True)
                    value_loss.backward()
                    optimizer.step()
            update_s = time.perf_counter() - t_update
            progress.iteration += 1

            gstep = progress.global_step
            with torch.no_grad():
                _, entropy, _ = agent.evaluate_actions(batch.obs, batch.actions)
            returns, values = buffer.returns.flatten(), buffer.values.flatten()
            explained_var = 1 - torch.var(returns - values) / torch.var(returns).clamp_min(1e-8)
            run.log_dict({"losses/value_loss": float(value_loss), "losses/kl": step.kl,
                          "losses/improvement": step.improvement,
                          "losses/expected_improvement": step.expected_improvement,
                          "losses/step_fraction": step.step_fraction, "losses/step_accepted": float(step.accepted),
                          "losses/entropy": float(entropy.mean()), "losses/explained_variance": float(explained_var),
                          "charts/SPS": gstep / max(run.elapsed, 1e-9),
                          "charts/collect_SPS": batch_size / max(collect_s, 1e-9),
                          "charts/update_seconds": update_s}, gstep)
            run.update_progress(batch_size, gstep, gstep / max(run.elapsed, 1e-9))
            if s.after_update(batch_size):
                break
    s.end(interrupt.requested)


if __name__ == "__main__":
    rl_utils.run_main(main)

"""TRPO: conjugate gradient, the Fisher-vector product against the explicit Fisher matrix, the trust region holds,
smoke runs (Discrete and Box), exact resume, bad input, and one learning test."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from classic_rl.trpo.model import ActorCritic
from classic_rl.trpo.train import conjugate_gradient, detached, fisher_vector_product, flat, mean_kl, trpo_step
from tests.conftest import only_run_dir, resume_matches_straight_run, run_script

TRAIN = "classic_rl/trpo/train.py"
TINY = ("--total-timesteps", "512", "--num-envs", "2", "--num-steps", "128", "--critic-epochs", "2",
        "--eval-every", "256", "--eval-episodes", "2")


def tiny_policy(space: gym.Space, seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    agent = ActorCritic(3, space, hidden=(5,), log_std_init=-0.3)
    with torch.no_grad():  # a policy far from uniform, so the Fisher matrix is not nearly zero
        agent.actor_head.weight.mul_(100)
    return agent


def test_conjugate_gradient_solves_a_random_spd_system():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(20, 20, generator=gen, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(20, dtype=torch.float64)
    b = torch.randn(20, generator=gen, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=60)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))
    # few iterations: not exact, but already a descent on ½xᵀAx − bᵀx (what TRPO relies on with 10-15 steps)
    x3 = conjugate_gradient(lambda v: a @ v, b, iters=3)
    assert 0.5 * x3 @ a @ x3 - b @ x3 < 0


def test_fisher_vector_product_equals_the_explicit_fisher_discrete():
    """F = E_s Σ_a π(a|s) ∇log π(a|s) ∇log π(a|s)ᵀ, built in full; the double-backprop product must equal F x."""
    agent = tiny_policy(gym.spaces.Discrete(3))
    params = list(agent.actor_parameters())
    obs = torch.randn(7, 3, generator=torch.Generator().manual_seed(1))
    dist = agent.distribution(obs)
    n = sum(p.numel() for p in params)
    fisher = torch.zeros(n, n)
    for i in range(len(obs)):
        for a in range(3):
            g = flat(torch.autograd.grad(dist.log_prob(torch.tensor(a))[i], params, retain_graph=True))
            fisher += dist.probs[i, a].detach() * torch.outer(g, g) / len(obs)
    x = torch.randn(n, generator=torch.Generator().manual_seed(2))
    kl = mean_kl(detached(dist), agent.distribution(obs))
    torch.testing.assert_close(fisher_vector_product(kl, params, x, damping=0.0), fisher @ x, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fisher_vector_product(kl, params, x, damping=0.1), fisher @ x + 0.1 * x,
                               rtol=1e-4, atol=1e-5)
    assert (fisher @ x).abs().max() > 1e-2  # the check has teeth


def test_fisher_vector_product_equals_the_kl_hessian_gaussian():
    """Box actions (log σ among the parameters): the product equals the KL's Hessian at θ_old, built in full."""
    agent = tiny_policy(gym.spaces.Box(-1, 1, (2,)))
    params = list(agent.actor_parameters())
    name_of = {id(p): name for name, p in agent.named_parameters()}
    names = [name_of[id(p)] for p in params]  # in the order of the flat vector
    obs = torch.randn(6, 3, generator=torch.Generator().manual_seed(3))
    old = detached(agent.distribution(obs))
    theta0 = flat([p.detach() for p in params])

    def kl_at(theta: torch.Tensor) -> torch.Tensor:  # the mean KL as a function of the flat policy vector
        chunks = dict(zip(names, torch.split(theta, [p.numel() for p in params])))
        chunks = {name: chunk.view_as(p) for (name, chunk), p in zip(chunks.items(), params)}
        chunks = {f"agent.{name}": chunk for name, chunk in chunks.items()}
        loc, scale = torch.func.functional_call(Distribution(agent), chunks, (obs,), strict=False)
        return mean_kl(old, torch.distributions.Normal(loc, scale))

    hessian = torch.autograd.functional.hessian(kl_at, theta0)
    x = torch.randn(len(theta0), generator=torch.Generator().manual_seed(4))
    kl = mean_kl(old, agent.distribution(obs))
    torch.testing.assert_close(fisher_vector_product(kl, params, x, damping=0.0), hessian @ x, rtol=1e-4, atol=1e-5)
    assert (hessian @ x).abs().max() > 1e-2


class Distribution(torch.nn.Module):
    """agent.distribution as a module call (loc, scale), so torch.func can swap the parameters in."""

    def __init__(self, agent: ActorCritic):
        super().__init__()
        self.agent = agent

    def forward(self, obs):
        dist = self.agent.distribution(obs)
        return dist.loc, dist.scale


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))], ids=["discrete", "box"])
@pytest.mark.parametrize("max_kl", [0.01, 1e-4])
def test_accepted_step_stays_in_the_trust_region_and_improves(space, max_kl):
    agent = tiny_policy(space, seed=5)
    params = list(agent.actor_parameters())
    gen = torch.Generator().manual_seed(6)
    obs = torch.randn(64, 3, generator=gen)
    with torch.no_grad():
        actions, old_logprob, _ = agent.act(obs)
    adv = torch.randn(64, generator=gen)
    old = detached(agent.distribution(obs))

    def surrogate():
        logprob, _, _ = agent.evaluate_actions(obs, actions)
        return (torch.exp(logprob - old_logprob) * adv).mean()

    with torch.no_grad():
        before = float(surrogate())
    result = trpo_step(params, surrogate, lambda: mean_kl(old, agent.distribution(obs)), max_kl, cg_iters=10,
                       damping=0.1, line_search_steps=10, shrink=0.8)
    assert result.accepted
    with torch.no_grad():
        after_kl, after = float(mean_kl(old, agent.distribution(obs))), float(surrogate())
    assert 0 < after_kl <= max_kl and after_kl == pytest.approx(result.kl)
    assert after > before and result.improvement > 0


def test_line_search_shrinks_a_step_whose_exact_kl_is_too_large():
    """Where the quadratic model underestimates the KL (here: the measured KL is scaled up 1000x after the model
    was built), the full step must be refused and only a shrunk one that truly keeps KL <= delta accepted."""
    agent = tiny_policy(gym.spaces.Discrete(3), seed=9)
    params = list(agent.actor_parameters())
    gen = torch.Generator().manual_seed(10)
    obs = torch.randn(64, 3, generator=gen)
    with torch.no_grad():
        actions, old_logprob, _ = agent.act(obs)
    adv = torch.randn(64, generator=gen)
    old = detached(agent.distribution(obs))
    calls = {"n": 0}

    def surrogate():
        logprob, _, _ = agent.evaluate_actions(obs, actions)
        return (torch.exp(logprob - old_logprob) * adv).mean()

    def kl_to_old():
        calls["n"] += 1
        kl = mean_kl(old, agent.distribution(obs))
        return kl if calls["n"] == 1 else 1000 * kl  # the first call builds the Fisher products

    result = trpo_step(params, surrogate, kl_to_old, 0.01, 10, 0.1, line_search_steps=40, shrink=0.8)
    assert result.accepted and result.step_fraction < 0.1 and result.kl <= 0.01


def test_rejected_step_leaves_the_policy_unchanged():
    """A surrogate that only gets worse along the proposed step: the line search gives up, θ stays θ_old."""
    agent = tiny_policy(gym.spaces.Discrete(3), seed=7)
    params = list(agent.actor_parameters())
    obs = torch.randn(16, 3, generator=torch.Generator().manual_seed(8))
    old = detached(agent.distribution(obs))
    theta = flat([p.detach() for p in params]).clone()
    calls = {"n": 0}

    def surrogate():  # the first call (the gradient) says "up"; every later evaluation reports a loss
        calls["n"] += 1
        value = agent.distribution(obs).logits[:, 0].mean()
        return value if calls["n"] == 1 else value - 1.0

    result = trpo_step(params, surrogate, lambda: mean_kl(old, agent.distribution(obs)), 0.01, 10, 0.1, 5, 0.5)
    assert not result.accepted and calls["n"] == 6
    assert torch.equal(flat([p.detach() for p in params]), theta)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_smoke_run_writes_the_run_folder(tmp_path, env_id):
    run_script(TRAIN, "--env-id", env_id, "--runs-dir", tmp_path, *TINY)
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 512 and np.isfinite(summary["final_eval_return"])
    assert (run / "learning_curve.png").exists() and (run / "ckpt" / "best.pt").exists()
    tags = (run / "metrics.csv").read_text()
    for tag in ("losses/kl", "losses/step_accepted", "losses/value_loss", "charts/SPS", "eval/return"):
        assert tag in tags, tag
    out = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt" / "latest.pt", "--eval-episodes", "2")
    assert f"eval return {summary['final_eval_return']:.1f}" in out.stdout


def test_resume_continues_exactly(tmp_path):
    straight, resumed = resume_matches_straight_run(TRAIN, tmp_path, TINY, at=256)
    assert straight["step"] == resumed["step"] == 512
    for key in straight["agent"]:
        assert torch.equal(straight["agent"][key], resumed["agent"][key]), key
    assert torch.equal(straight["optimizer"]["state"][0]["exp_avg"], resumed["optimizer"]["state"][0]["exp_avg"])


def test_bad_input_is_one_error_line(tmp_path):
    proc = run_script(TRAIN, "--shared-trunk", "--runs-dir", tmp_path, *TINY, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and "shared" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = run_script(TRAIN, "--max-kl", "-1", "--runs-dir", tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "max" in proc.stderr


def test_trpo_solves_cartpole(tmp_path):
    """The issue's learning test: the RL Zoo preset reaches a greedy 475 on CartPole-v1 (~10 s here)."""
    out = run_script(TRAIN, "--runs-dir", tmp_path, "--seed", "1", "--target-return", "475", timeout=120).stdout
    assert "target return 475" in out, out[-2000:]

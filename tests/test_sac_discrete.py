"""Discrete SAC: the exact-expectation losses against brute-force loops over actions, α toward the target
entropy, targets moved only by Polyak steps, every entry point as a user runs it, the loadable policy equal to the
run's own evaluation, and exact resume."""

from __future__ import annotations

import copy
import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import rl_utils
from classic_rl import off_policy
from classic_rl.sac_discrete.train import (
    Args,
    actor_loss,
    build_actor,
    build_learner,
    critic_loss,
    target_entropy,
    update,
)
from tests.conftest import only_run_dir, resume_matches_straight_run, run_script

TRAIN = "classic_rl/sac_discrete/train.py"
TINY = ("--total-timesteps", "600", "--learning-starts", "300", "--batch-size", "32", "--hidden-sizes", "32,32",
        "--eval-every", "300", "--eval-episodes", "2")


def _learner(seed: int = 0):
    torch.manual_seed(seed)
    args = Args(hidden_sizes="16,16", batch_size=8)
    envs = rl_utils.make_vec_env("CartPole-v1", 1, 0)
    actor = build_actor(args, envs, torch.device("cpu"))
    return args, actor, build_learner(args, envs, torch.device("cpu"), actor)


def _batch(n: int = 8, done_every: int = 3) -> rl_utils.ReplayBatch:
    g = torch.Generator().manual_seed(3)
    dones = (torch.arange(n) % done_every == 0).float()
    return rl_utils.ReplayBatch(obs=torch.randn(n, 4, generator=g), actions=torch.randint(0, 2, (n,), generator=g),
                                rewards=torch.randn(n, generator=g), next_obs=torch.randn(n, 4, generator=g),
                                dones=dones, discounts=torch.full((n,), 0.99), weights=torch.ones(n),
                                indices=np.arange(n), extras={})


def test_critic_target_is_the_exact_soft_value_row_by_row():
    args, actor, learner = _learner()
    batch, alpha = _batch(), 0.3
    loss, q_values = critic_loss(learner["q"], learner["q_target"], actor, torch.tensor(alpha), batch)
    q1, q2 = (learner["q"].net.member(i) for i in range(2))
    t1, t2 = (learner["q_target"].net.member(i) for i in range(2))
    expected = 0.0
    with torch.no_grad():
        for j in range(len(batch.rewards)):  # one transition at a time, one action at a time
            s, s2, a = batch.obs[j:j + 1], batch.next_obs[j:j + 1], int(batch.actions[j])
            probs, logp = actor(s2)
            v = sum(probs[0, b] * (min(t1(s2)[0, b], t2(s2)[0, b]) - alpha * logp[0, b]) for b in range(2))
            y = batch.rewards[j] + (0.0 if batch.dones[j] else 0.99 * v)
            expected += 0.5 * ((q1(s)[0, a] - y) ** 2 + (q2(s)[0, a] - y) ** 2) / len(batch.rewards)
            torch.testing.assert_close(q_values[:, j], torch.stack([q1(s)[0, a], q2(s)[0, a]]))
    torch.testing.assert_close(loss, torch.as_tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-6)


def test_actor_loss_is_the_exact_expectation_and_reaches_only_the_actor():
    args, actor, learner = _learner()
    obs, alpha = torch.randn(8, 4), 0.5
    loss, entropy = actor_loss(learner["q"], actor, torch.tensor(alpha), obs)
    probs, logp = actor(obs)
    q_min = torch.minimum(*learner["q"](obs))  # [B, A]
    expected = sum(probs[:, b] * (alpha * logp[:, b] - q_min[:, b]) for b in range(2)).mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(entropy, -(probs * probs.log()).sum(-1).detach())
    assert torch.allclose(probs.sum(-1), torch.ones(8)) and (entropy <= math.log(2) + 1e-6).all()
    loss.backward()
    assert all(p.grad is None for p in learner["q"].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.parameters())


def test_target_entropy_is_a_fraction_of_log_actions():
    assert target_entropy(Args(target_entropy_scale=0.5), 4) == pytest.approx(0.5 * math.log(4))


def test_update_moves_alpha_toward_the_target_entropy_and_targets_only_by_polyak():
    """A uniform policy (entropy log 2 ≈ 0.69) above a target of 0.1 lowers α; below a target of 1 raises it."""
    for target, direction in ((0.1, -1), (1.0, +1)):
        args, actor, learner = _learner()
        q_target_before = copy.deepcopy(learner["q_target"])
        log_alpha = learner["temperature"]["log_alpha"]
        before = log_alpha.item()
        with torch.no_grad():  # a uniform policy: zero the logits' last layer
            actor.net[-1].weight.zero_()
            actor.net[-1].bias.zero_()
        update(args, actor, learner, _batch(), entropy_target=target)
        assert np.sign(log_alpha.item() - before) == direction
        for p in learner["q_target"].parameters():
            assert not p.requires_grad and p.grad is None
        for b, online, after in zip(q_target_before.parameters(), learner["q"].parameters(),
                                    learner["q_target"].parameters()):
            torch.testing.assert_close(after, b + args.tau * (online - b))


def test_smoke_run_eval_only_and_the_loadable_policy(tmp_path):
    proc = run_script(TRAIN, "--runs-dir", tmp_path, "--norm-obs", *TINY)
    run = only_run_dir(tmp_path)
    assert run.name.startswith("CartPole-v1__sac-discrete__1__")
    for name in ("config.json", "metrics.csv", "learning_curve.png", "summary.json", "ckpt/latest.pt", "ckpt/best.pt"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 600 and np.isfinite(summary["best_heldout_return"])
    tags = {line.split(",")[1] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert {"eval/return", "charts/SPS", "losses/qf_loss", "losses/actor_loss", "losses/alpha", "losses/entropy",
            "charts/episodic_return"} <= tags and "final eval return" in proc.stdout
    out = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt/latest.pt", "--eval-episodes", "2")
    assert f"eval return {summary['final_eval_return']:.1f}" in out.stdout
    act = off_policy.load_policy(run / "ckpt/latest.pt", Args, build_actor)  # action indices for a Discrete env
    returns = []
    for i in range(2):
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=1 + rl_utils.EVAL_SEED_OFFSET + i)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(act(obs[None])[0]))
            total, done = total + reward, terminated or truncated
        returns.append(total)
    assert np.mean(returns) == pytest.approx(summary["final_eval_return"], abs=1e-6)


def test_resume_continues_exactly(tmp_path):
    a, b = resume_matches_straight_run(TRAIN, tmp_path, (*TINY, "--save-buffer"), at=450)
    for key in ("agent", "q", "q_target", "temperature"):
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], rtol=0, atol=0)

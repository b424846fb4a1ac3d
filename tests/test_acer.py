"""ACER: Retrace targets by hand (a termination and a truncation inside the segment), the truncated importance
weights and the bias correction against their formulas (and their sum against the exact on-policy gradient),
the trust-region projection, the actor's gradient (the notes' bug), smoke run, --eval-only, exact resume, a
Box env refused. (Learning: `make bench-acer`.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from classic_rl.acer.model import ACERNet, SegmentReplay
from classic_rl.acer.train import acer_loss, retrace_targets, trust_region_projection
from tests.conftest import only_run_dir, resume_matches_straight_run, run_script

TRAIN = "classic_rl/acer/train.py"
TINY = ("--total-timesteps", "400", "--num-envs", "2", "--num-steps", "10", "--eval-every", "200",
        "--eval-episodes", "2", "--replay-start", "4", "--buffer-segments", "30", "--log-every", "100")


def test_retrace_targets_by_hand_with_a_termination_and_a_truncation():
    # Two segments of 4 steps, γ = 0.9; column 0 terminates at t = 1, column 1 is truncated at t = 2 (V of the
    # real final observation = 5). Bootstrap V(s_4) = 10 for both.
    col = lambda *x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    rewards = torch.stack([col(1, 2, 3, 4)] * 2, 1)
    q_taken = torch.stack([col(0.5, 1.0, 1.5, 2.0)] * 2, 1)
    values = torch.stack([col(0.4, 0.8, 1.2, 1.6)] * 2, 1)
    rho_bar = torch.stack([col(1.0, 0.5, 0.25, 1.0)] * 2, 1)
    terminated = torch.zeros(4, 2, dtype=torch.bool)
    truncated = torch.zeros(4, 2, dtype=torch.bool)
    terminated[1, 0] = truncated[2, 1] = True
    final_values = torch.zeros(4, 2)
    final_values[2, 1] = 5.0
    q_ret = retrace_targets(rewards, q_taken, values, rho_bar, col(10, 10), final_values, terminated, truncated, 0.9)
    # column 0: Q3 = 4 + .9·10 = 13; Q2 = 3 + .9(1·(13 − 2) + 1.6) = 14.34; Q1 = 2 (terminated);
    #           Q0 = 1 + .9(.5(2 − 1) + .8) = 2.17
    # column 1: Q3 = 13; Q2 = 3 + .9·5 = 7.5 (truncated: V(final obs), no correction from the next episode);
    #           Q1 = 2 + .9(.25(7.5 − 1.5) + 1.2) = 4.43; Q0 = 1 + .9(.5(4.43 − 1) + .8) = 3.2635
    expected = torch.tensor([[2.17, 3.2635], [2.0, 4.43], [14.34, 7.5], [13.0, 13.0]])
    torch.testing.assert_close(q_ret, expected)
    # terminated and truncated in the same step: the termination wins (nothing to bootstrap from)
    truncated[1, 0] = True
    final_values[1, 0] = 100.0
    torch.testing.assert_close(retrace_targets(rewards, q_taken, values, rho_bar, col(10, 10), final_values,
                                               terminated, truncated, 0.9)[1, 0], torch.tensor(2.0))


def _case(seed=0, n=5, actions=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, actions, generator=g, requires_grad=True)
    q = torch.randn(n, actions, generator=g)
    mu = torch.softmax(3 * torch.randn(n, actions, generator=g), -1)  # far from π: some ρ > c
    act = torch.randint(0, actions, (n,), generator=g)
    q_ret = torch.randn(n, generator=g)
    return logits, q, mu, act, q_ret


def test_truncated_weights_and_bias_correction_against_their_formulas():
    logits, q, mu, act, q_ret = _case()
    c, ent = 2.0, 0.1
    loss, _ = acer_loss(logits, q, None, act, mu, q_ret, c=c, delta=1.0, ent_coef=ent, q_coef=0.0)
    loss.backward()
    n, actions = logits.shape
    expected = torch.zeros(n, actions)
    for i in range(n):  # brute force, one sample at a time: ∇_logits log π(b) = e_b − π
        pi = torch.softmax(logits[i].detach(), -1)
        v = float((pi * q[i]).sum())
        rho = pi / mu[i]
        assert (rho > c).any() or i > 0  # the case exercises the truncation
        grad_log = torch.eye(actions) - pi  # row b: ∇ log π(b)
        a = int(act[i])
        expected[i] += min(c, float(rho[a])) * (float(q_ret[i]) - v) * grad_log[a]
        for b in range(actions):
            expected[i] += max(0.0, 1 - c / float(rho[b])) * float(pi[b]) * (float(q[i, b]) - v) * grad_log[b]
        entropy = -(pi * pi.log()).sum()
        expected[i] += ent * -(pi * (pi.log() + entropy))  # ∇_logits H
    torch.testing.assert_close(logits.grad, -expected / n)  # the loss is −mean(g · logits)
    # --no-trust-region with the average network given (its KL is only logged): the same gradient
    grad = logits.grad.clone()
    logits.grad = None
    acer_loss(logits, q, torch.randn(n, actions), act, mu, q_ret, c, 1.0, ent, 0.0, trust_region=False)[0].backward()
    torch.testing.assert_close(logits.grad, grad)


def test_truncation_plus_correction_is_the_unbiased_on_policy_gradient():
    # Averaged over a ~ μ with Q^ret = Q(a), min(c, ρ) ∇log π(a)(Q(a) − V) + Σ_b [1 − c/ρ(b)]_+ π(b) ∇log π(b)(Q(b) − V)
    # is exactly Σ_a π(a) ∇log π(a) (Q(a) − V): truncation lowers the variance, the correction removes the bias.
    logits, q, mu, _, _ = _case(seed=1, n=1, actions=4)
    total = torch.zeros(1, 4)
    for a in range(4):
        lg = logits.detach().clone().requires_grad_(True)
        loss, _ = acer_loss(lg, q, None, torch.tensor([a]), mu, q[:, a], c=1.5, delta=1.0, ent_coef=0.0, q_coef=0.0)
        loss.backward()
        total += mu[0, a] * -lg.grad
    pi = torch.softmax(logits.detach(), -1)[0]
    v = (pi * q[0]).sum()
    exact = sum(pi[a] * (q[0, a] - v) * (torch.eye(4)[a] - pi) for a in range(4))
    torch.testing.assert_close(total[0], exact)


def test_trust_region_projection():
    g = torch.Generator().manual_seed(0)
    grad, k = torch.randn(1000, 4, generator=g) * 3, torch.randn(1000, 4, generator=g)
    delta = 1.0
    z = trust_region_projection(grad, k, delta)
    kz, kg = (k * z).sum(-1), (k * grad).sum(-1)
    assert (kz <= delta + 1e-4).all()
    inactive = kg <= delta
    assert inactive.any() and (~inactive).any()
    assert torch.equal(z[inactive], grad[inactive])  # unchanged when the constraint does not bind
    torch.testing.assert_close(kz[~inactive], torch.full_like(kz[~inactive], delta))  # on the boundary otherwise
    # the smallest change: z − g is along k
    diff = z - grad
    torch.testing.assert_close(diff[~inactive], -((kg[~inactive] - delta) / (k[~inactive] ** 2).sum(-1)
                                                   ).unsqueeze(-1) * k[~inactive])
    same = trust_region_projection(grad[:3], torch.zeros(3, 4), delta)  # π = π_avg (the start): k = 0, no NaN
    assert torch.equal(same, grad[:3])


@pytest.mark.parametrize("trust_region", [False, True])
def test_the_actor_receives_gradient(trust_region):
    # The notes' ACER: its actor received no gradient. Here one loss backward reaches the policy head and trunk.
    torch.manual_seed(0)
    net, avg = ACERNet(4, 2), ACERNet(4, 2)
    obs = torch.randn(16, 4)
    logits, q = net(obs)
    mu = torch.full((16, 2), 0.5)
    act = torch.randint(0, 2, (16,))
    q_ret = torch.randn(16)
    loss, _ = acer_loss(logits, q, avg.logits(obs).detach() if trust_region else None, act, mu, q_ret, c=10.0,
                        delta=1.0, ent_coef=0.0, q_coef=0.5)
    loss.backward()
    assert net.policy_head.weight.grad.abs().sum() > 0 and net.policy_head.bias.grad.abs().sum() > 0
    assert net.q_head.weight.grad.abs().sum() > 0 and net.trunk[0].weight.grad.abs().sum() > 0
    # the policy part alone (q_coef 0) reaches the policy head, and nothing of it leaks into the Q head
    net.zero_grad()
    logits, q = net(obs)
    acer_loss(logits, q, None, act, mu, q_ret, 10.0, 1.0, 0.0, 0.0)[0].backward()
    assert net.policy_head.weight.grad.abs().sum() > 0 and not net.q_head.weight.grad.any()


def test_segment_replay_is_fifo_and_round_trips():
    replay = SegmentReplay(capacity=3, num_steps=2, obs_shape=(1,), n_actions=2)
    for k in range(2):  # two rollouts of 2 envs: 4 segments into 3 slots, the oldest is dropped
        seg = {"obs": np.full((3, 2, 1), k, np.float32) + np.arange(2).reshape(1, 2, 1) * 0.5,
               "final_obs": np.zeros((2, 2, 1), np.float32), "mu": np.full((2, 2, 2), 0.5, np.float32),
               "actions": np.zeros((2, 2), np.int64), "rewards": np.zeros((2, 2), np.float32),
               "terminated": np.zeros((2, 2), bool), "truncated": np.zeros((2, 2), bool)}
        replay.add(seg)
    assert len(replay) == 3 and sorted(replay.store["obs"][:, 0, 0]) == [0.5, 1.0, 1.5]
    other = SegmentReplay(capacity=3, num_steps=2, obs_shape=(1,), n_actions=2)
    other.load_state_dict(replay.state_dict())
    assert other.pos == replay.pos and np.array_equal(other.store["obs"], replay.store["obs"])
    batch = replay.sample(5)
    assert batch["obs"].shape == (3, 5, 1) and batch["mu"].shape == (2, 5, 2)


def test_smoke_run_writes_the_run_folder_and_eval_only(tmp_path):
    proc = run_script(TRAIN, "--runs-dir", tmp_path, *TINY)
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    for key in ("final_eval_return", "best_eval_return", "best_eval_step", "best_heldout_return", "env_steps",
                "wall_time_s", "sps", "algo", "env_id", "seed"):
        assert key in summary, key
    assert summary["env_steps"] == 400 and summary["algo"] == "acer" and np.isfinite(summary["final_eval_return"])
    for name in ("metrics.csv", "config.json", "learning_curve.png", "ckpt/best.pt", "ckpt/latest.pt"):
        assert (run / name).exists(), name
    tags = {line.split(",")[1] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert {"eval/return", "losses/q_loss", "losses/kl_to_average", "charts/SPS"} <= tags
    assert "final eval return" in proc.stdout
    out = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt" / "latest.pt", "--eval-episodes", "2")
    assert f"eval return {summary['final_eval_return']:.1f}" in out.stdout


def test_resume_matches_a_straight_run(tmp_path):
    straight, resumed = resume_matches_straight_run(TRAIN, tmp_path, TINY, at=200)
    assert straight["step"] == resumed["step"] == 400
    for part in ("agent", "average"):
        for key in straight[part]:
            assert torch.equal(straight[part][key], resumed[part][key]), (part, key)
    for key in SegmentReplay.FIELDS:
        assert np.array_equal(straight["replay"][key], resumed["replay"][key]), key
    assert straight["optimizer"]["state"][0]["square_avg"].equal(resumed["optimizer"]["state"][0]["square_avg"])


def test_a_box_env_is_one_error_line(tmp_path):
    proc = run_script(TRAIN, "--env-id", "Pendulum-v1", "--runs-dir", tmp_path, *TINY, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ACER needs a Discrete"), proc.stderr
    assert "PPO" in lines[0] and "SAC" in lines[0]
    assert not list(tmp_path.iterdir())  # refused before a run folder is made

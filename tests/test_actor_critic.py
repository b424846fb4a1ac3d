"""One-step Actor-Critic: TD targets by hand (0 at a termination, V(final obs) at a truncation), the actor loss
never reaching a separate critic, the critic's target held fixed, the Q critic (shapes, baseline, Sarsa
target), every entry point as a user runs it (Discrete and Box, V and Q, shared trunk), bad input, determinism,
exact resume (the family's learning test is PPO's)."""

from __future__ import annotations

import csv
import json
import shutil

import gymnasium as gym
import pytest
import torch

import rl_utils
from classic_rl.actor_critic.model import ActorCritic, QActorCritic, QCritic
from classic_rl.actor_critic.train import actor_critic_loss, one_step_targets
from tests.conftest import only_run_dir, run_script

TRAIN = "classic_rl/actor_critic/train.py"
TINY = ("--total-timesteps", "640", "--num-envs", "4", "--num-steps", "4", "--eval-every", "320",
        "--eval-episodes", "2")


def test_one_step_targets_by_hand():
    """3 envs x 2 steps, γ = 0.5, V(s_t) stored per step. Env 0 runs on, env 1 terminates at t = 0, env 2 is
    truncated at t = 0 with V(final obs) = 10: y_0 = r + γ·(V(s_1), 0, 10), y_1 = r + γ·last_values."""
    buf = rl_utils.RolloutBuffer(2, 3, gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2))
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    buf.add(torch.zeros(3, 1), torch.zeros(3), torch.zeros(3), values[0], [1.0, 1.0, 1.0], [False, True, False],
            [False, False, True], final_values=torch.tensor([0.0, 0.0, 10.0]))
    buf.add(torch.zeros(3, 1), torch.zeros(3), torch.zeros(3), values[1], [2.0, 2.0, 2.0], [False] * 3, [False] * 3,
            final_values=torch.zeros(3))
    one_step_targets(buf, torch.tensor([7.0, 8.0, 9.0]), gamma=0.5)
    expected = torch.tensor([[1 + 0.5 * 4, 1.0, 1 + 0.5 * 10], [2 + 0.5 * 7, 2 + 0.5 * 8, 2 + 0.5 * 9]])
    torch.testing.assert_close(buf.returns, expected)
    torch.testing.assert_close(buf.advantages, expected - values)  # δ = y − V(s): one step, nothing summed


def _loss_on(agent, obs, actions, targets, advantages, vf_coef=0.5):
    logprob, entropy, values = agent.evaluate_actions(obs, actions)
    return actor_critic_loss(logprob, entropy, advantages, values, targets, vf_coef, ent_coef=0.0)


def test_actor_loss_does_not_reach_a_separate_critic():
    torch.manual_seed(0)
    agent = ActorCritic(3, gym.spaces.Discrete(2), (8, 8))
    obs, actions = torch.randn(6, 3), torch.randint(0, 2, (6,))
    loss, _ = _loss_on(agent, obs, actions, torch.randn(6), torch.randn(6), vf_coef=0.0)
    loss.backward()
    for name, p in agent.named_parameters():
        if name.startswith("critic_"):
            assert p.grad is None or not p.grad.any(), name
        else:
            assert p.grad is not None and p.grad.any(), name
    shared = ActorCritic(3, gym.spaces.Discrete(2), (8, 8), shared=True)
    loss, _ = _loss_on(shared, obs, actions, torch.randn(6), torch.randn(6), vf_coef=0.0)
    loss.backward()
    assert not shared.critic_head.weight.grad.any() and shared.actor_trunk[0].weight.grad.any()  # trunk: both


def test_critic_target_and_advantage_are_constants():
    """Semi-gradient TD: the loss moves V(s) towards y, never y towards V(s); the advantage is a fixed weight."""
    values = torch.tensor([1.0, 2.0], requires_grad=True)
    targets = torch.tensor([3.0, 0.0], requires_grad=True)  # as if computed with gradients on
    advantages = torch.tensor([0.5, -1.0], requires_grad=True)
    logprob = torch.tensor([-0.3, -0.9], requires_grad=True)
    loss, stats = actor_critic_loss(logprob, torch.zeros(2), advantages, values, targets, vf_coef=1.0, ent_coef=0.0)
    loss.backward()
    assert targets.grad is None and advantages.grad is None
    torch.testing.assert_close(values.grad, (values.detach() - targets.detach()) / 2)
    torch.testing.assert_close(logprob.grad, -advantages.detach() / 2)
    torch.testing.assert_close(stats["value_loss"], torch.tensor(0.5 * (4 + 4) / 2))


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))])
def test_q_critic_shapes_baseline_and_sarsa_value(space):
    torch.manual_seed(0)
    agent = QActorCritic(4, space, (16, 16))
    obs = torch.randn(5, 4)
    action, logprob, q = agent.act(obs)
    assert q.shape == (5,) and logprob.shape == (5,)
    torch.testing.assert_close(agent.evaluate_actions(obs, action)[2], q)
    baseline = agent.baseline(obs)
    if agent.discrete:  # E_{a~π} Q(s, a)
        probs = agent.policy.distribution(obs).probs
        manual = sum(probs[:, a] * agent.critic_q(obs, torch.full((5,), a)) for a in range(3))
        torch.testing.assert_close(baseline, manual)
    else:  # Q at the Gaussian's mean
        torch.testing.assert_close(baseline, agent.critic_q(obs, agent.policy.deterministic(obs)))
    torch.manual_seed(1)
    v = agent.value(obs)  # Q(s', a') with a' ~ π drawn now
    torch.manual_seed(1)
    a_next, _, _ = agent.policy.act(obs)
    torch.testing.assert_close(v, agent.critic_q(obs, a_next))
    assert QCritic(4, space)(obs, action).shape == (5,)


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [(r["step"], r["tag"], r["value"]) for r in csv.DictReader(f) if r["tag"] != "charts/SPS"]


def test_help_lists_the_flags():
    text = run_script(TRAIN, "--help").stdout
    for flag in ("--critic", "--shared-trunk", "--num-steps", "--norm-adv", "--resume", "--eval-only"):
        assert flag in text


def test_smoke_cartpole_writes_the_run_folder_and_evaluates(tmp_path):
    proc = run_script(TRAIN, "--runs-dir", tmp_path, *TINY)
    run = only_run_dir(tmp_path)
    assert run.name.startswith("CartPole-v1__actor_critic__1__")
    for name in ("config.json", "metrics.csv", "learning_curve.png", "summary.json", "ckpt/latest.pt", "ckpt/best.pt"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert {"final_eval_return", "env_steps", "wall_time_s"} <= set(summary) and summary["env_steps"] == 640
    tags = {tag for _, tag, _ in _rows(run)}
    assert {"charts/episodic_return", "losses/policy_loss", "losses/value_loss", "losses/entropy",
            "eval/return"} <= tags
    assert "final eval return" in proc.stdout.strip().splitlines()[-1]
    evaluated = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt/best.pt", "--eval-episodes", "2")
    assert "eval return" in evaluated.stdout


@pytest.mark.parametrize("flags", [("--critic", "q"), ("--shared-trunk",)])
def test_smoke_box_actions(tmp_path, flags):
    run_script(TRAIN, "--env-id", "Pendulum-v1", "--runs-dir", tmp_path, *TINY, "--eval-every", "0",
               "--eval-episodes", "1", *flags)
    run = only_run_dir(tmp_path)
    assert json.loads((run / "summary.json").read_text())["final_eval_return"] < 0
    evaluated = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt/latest.pt", "--eval-episodes", "1")
    assert "eval return" in evaluated.stdout


def test_q_critic_on_discrete_actions_runs(tmp_path):
    run_script(TRAIN, "--runs-dir", tmp_path, *TINY, "--critic", "q")
    assert only_run_dir(tmp_path).name.startswith("CartPole-v1__actor_critic_q__")


def test_same_seed_same_run(tmp_path):
    for name in ("a", "b"):
        run_script(TRAIN, "--runs-dir", tmp_path / name, *TINY)
    rows_a, rows_b = (_rows(only_run_dir(tmp_path / n)) for n in ("a", "b"))
    assert rows_a == rows_b and any(tag == "losses/value_loss" for _, tag, _ in rows_a)


def test_resume_continues_exactly(tmp_path):
    """640 steps straight (checkpoint at 320, mid-episode) == 320 steps, then --resume to 640."""
    run_script(TRAIN, "--runs-dir", tmp_path / "straight", *TINY, "--checkpoint-every", "320")
    straight = only_run_dir(tmp_path / "straight")
    copy = tmp_path / "resumed" / straight.name
    shutil.copytree(straight, copy)
    (copy / "ckpt" / "latest.pt").unlink()
    run_script(TRAIN, "--resume", copy / "ckpt" / "step_320.pt")
    assert _rows(straight) == _rows(copy)
    a = torch.load(straight / "ckpt/latest.pt", weights_only=False)["agent"]
    b = torch.load(copy / "ckpt/latest.pt", weights_only=False)["agent"]
    assert all(torch.equal(a[k], b[k]) for k in a)


"""REINFORCE: the loss's gradient by hand (with and without a baseline, normalised), reward-to-go over whole
episodes, which steps an update uses, every entry point as a user runs it (Discrete and Box), bad input,
determinism and exact resume (the family's learning test is PPO's)."""

from __future__ import annotations

import csv
import json
import shutil

import gymnasium as gym
import torch

import rl_utils
from classic_rl.reinforce.train import finished_mask, reinforce_loss
from tests.conftest import only_run_dir, run_script

TRAIN = "classic_rl/reinforce/train.py"
TINY = ("--total-timesteps", "2000", "--num-envs", "4", "--eval-every", "1000", "--eval-episodes", "2")


def _softmax_logprobs(theta: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return theta.log_softmax(-1).expand(len(actions), -1).gather(-1, actions.view(-1, 1)).squeeze(-1)


def test_loss_gradient_is_minus_sum_of_return_times_grad_log_pi():
    """One state, two actions, θ = logits = (0, 0): π = (½, ½), ∇_θ log π(a) = onehot(a) − π.
    Episode a = (0, 1, 0), r = (1, 1, 1), γ = 1: G = (3, 2, 1), and −mean_t G_t ∇log π(a_t) = (−1/3, 1/3)."""
    buf = rl_utils.RolloutBuffer(3, 1, gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2))
    for t in range(3):
        buf.add(torch.zeros(1, 1), torch.tensor([0]), torch.zeros(1), torch.zeros(1), [1.0], [t == 2], [False])
    buf.compute_returns(torch.zeros(1), gamma=1.0)
    returns = buf.returns[:, 0]
    torch.testing.assert_close(returns, torch.tensor([3.0, 2.0, 1.0]))
    theta = torch.zeros(2, requires_grad=True)
    logprob = _softmax_logprobs(theta, torch.tensor([0, 1, 0]))
    loss, stats = reinforce_loss(logprob, torch.zeros(3), returns, torch.zeros(3), normalize=False, ent_coef=0.0)
    loss.backward()
    torch.testing.assert_close(theta.grad, torch.tensor([-1 / 3, 1 / 3]))
    assert stats["value_loss"] == 0


def test_reward_to_go_discounts_and_stops_at_episode_ends():
    """γ = 0.9, rewards 1: an episode of 3 steps gives G = (2.71, 1.9, 1); the next episode's rewards never leak
    back; a time-limit truncation bootstraps from V(final obs)."""
    buf = rl_utils.RolloutBuffer(5, 2, gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2))
    term = [[False, False], [False, False], [True, False], [False, True], [False, False]]
    trunc = [[False, False], [False, True], [False, False], [False, False], [False, False]]
    for t in range(5):
        buf.add(torch.zeros(2, 1), torch.zeros(2), torch.zeros(2), torch.zeros(2), [1.0, 1.0], term[t], trunc[t],
                final_values=torch.tensor([0.0, 10.0 if trunc[t][1] else 0.0]))
    buf.compute_returns(torch.zeros(2), gamma=0.9)
    torch.testing.assert_close(buf.returns[:3, 0], torch.tensor([2.71, 1.9, 1.0]))
    torch.testing.assert_close(buf.returns[:2, 1], torch.tensor([1 + 0.9 * (1 + 0.9 * 10), 1 + 0.9 * 10]))
    torch.testing.assert_close(buf.returns[2:4, 1], torch.tensor([1.9, 1.0]))


def test_baseline_is_subtracted_and_only_trained_by_the_value_loss():
    """With a baseline the policy gradient weights are G − V (V detached) and V's gradient is (V − G) / B."""
    theta = torch.zeros(2, requires_grad=True)
    actions = torch.tensor([0, 1, 0])
    returns = torch.tensor([3.0, 2.0, 1.0])
    values = torch.tensor([1.0, 4.0, 0.5], requires_grad=True)
    loss, stats = reinforce_loss(_softmax_logprobs(theta, actions), torch.zeros(3), returns, values,
                                 normalize=False, ent_coef=0.0)
    loss.backward()
    weights = returns - values.detach()  # (2, −2, 0.5)
    grad_log_pi = torch.tensor([[0.5, -0.5], [-0.5, 0.5], [0.5, -0.5]])
    torch.testing.assert_close(theta.grad, -(weights.view(-1, 1) * grad_log_pi).mean(0))
    torch.testing.assert_close(values.grad, (values.detach() - returns) / 3)
    torch.testing.assert_close(stats["value_loss"], 0.5 * (values.detach() - returns).pow(2).mean())


def test_normalised_weights_are_standardised():
    theta = torch.zeros(2, requires_grad=True)
    actions = torch.tensor([0, 1, 0, 1])
    returns = torch.tensor([10.0, 20.0, 30.0, 40.0])
    loss, _ = reinforce_loss(_softmax_logprobs(theta, actions), torch.zeros(4), returns, torch.zeros(4),
                             normalize=True, ent_coef=0.0)
    loss.backward()
    w = (returns - returns.mean()) / returns.std()
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0])  # ∇_θ0 log π(a) = ±½
    torch.testing.assert_close(theta.grad[0], -(w * 0.5 * sign).mean())


def test_only_steps_of_finished_episodes_are_used():
    cuts = torch.tensor([[False, False, False], [True, False, False], [False, False, True], [False, True, False],
                         [False, False, False]])
    expected = torch.tensor([[True, True, True], [True, True, True], [False, True, True], [False, True, False],
                             [False, False, False]])
    assert torch.equal(finished_mask(cuts), expected)


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [(r["step"], r["tag"], r["value"]) for r in csv.DictReader(f) if r["tag"] != "charts/SPS"]


def test_help_lists_the_flags():
    text = run_script(TRAIN, "--help").stdout
    for flag in ("--baseline", "--normalize-returns", "--ent-coef", "--max-rollout-steps", "--resume", "--eval-only"):
        assert flag in text


def test_smoke_cartpole_writes_the_run_folder_and_evaluates(tmp_path):
    proc = run_script(TRAIN, "--runs-dir", tmp_path, *TINY)
    run = only_run_dir(tmp_path)
    assert run.name.startswith("CartPole-v1__reinforce__1__")
    for name in ("config.json", "metrics.csv", "learning_curve.png", "summary.json", "ckpt/latest.pt", "ckpt/best.pt"):
        assert (run / name).exists(), name
    assert list(run.glob("events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert {"final_eval_return", "env_steps", "wall_time_s"} <= set(summary) and summary["env_steps"] >= 2000
    tags = {tag for _, tag, _ in _rows(run)}
    assert {"charts/episodic_return", "losses/policy_loss", "losses/value_loss", "losses/entropy",
            "eval/return"} <= tags
    assert "final eval return" in proc.stdout.strip().splitlines()[-1]
    evaluated = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt/best.pt", "--eval-episodes", "2")
    assert "eval return" in evaluated.stdout


def test_smoke_box_actions_with_baseline(tmp_path):
    run_script(TRAIN, "--env-id", "Pendulum-v1", "--baseline", "--norm-obs", "--runs-dir", tmp_path,
               "--total-timesteps", "800", "--num-envs", "2", "--eval-every", "0", "--eval-episodes", "1")
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["algo"] == "reinforce_baseline" and summary["final_eval_return"] < 0
    evaluated = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt/latest.pt", "--eval-episodes", "1")
    assert "eval return" in evaluated.stdout


def test_same_seed_same_run(tmp_path):
    for name in ("a", "b"):
        run_script(TRAIN, "--runs-dir", tmp_path / name, *TINY, "--baseline")
    rows_a, rows_b = (_rows(only_run_dir(tmp_path / n)) for n in ("a", "b"))
    assert rows_a == rows_b and any(tag == "losses/value_loss" for _, tag, _ in rows_a)


def test_resume_continues_exactly(tmp_path):
    """A straight run (checkpoint after the update that passes 1000 steps) == stop there, then --resume."""
    run_script(TRAIN, "--runs-dir", tmp_path / "straight", *TINY, "--baseline", "--checkpoint-every", "1000")
    straight = only_run_dir(tmp_path / "straight")
    first = min(straight.glob("ckpt/step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    copy = tmp_path / "resumed" / straight.name
    shutil.copytree(straight, copy)
    (copy / "ckpt" / "latest.pt").unlink()
    run_script(TRAIN, "--resume", copy / "ckpt" / first.name)
    assert _rows(straight) == _rows(copy)
    a = torch.load(straight / "ckpt/latest.pt", weights_only=False)["agent"]
    b = torch.load(copy / "ckpt/latest.pt", weights_only=False)["agent"]
    assert all(torch.equal(a[k], b[k]) for k in a)


"""PPO: the clipped surrogate's gradient by hand, every entry point as a user runs it, observation statistics
through save -> --eval-only / --resume, exact resume, determinism, bad input, and one learning test."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import rl_utils
from classic_rl.on_policy import evaluate_agent, make_envs, restore_for_eval
from classic_rl.ppo.train import Args, ppo_loss
from tests.conftest import only_run_dir, run_script

TRAIN = "classic_rl/ppo/train.py"
TINY = ("--total-timesteps", "512", "--num-envs", "2", "--num-steps", "64", "--num-minibatches", "2",
        "--update-epochs", "2", "--eval-every", "256", "--eval-episodes", "2")


def _loss(new_logprob, old_logprob, adv, clip=0.2, **kw):
    n = len(adv)
    values = torch.zeros(n, requires_grad=True)
    return ppo_loss(new_logprob, old_logprob, adv, values, torch.zeros(n), torch.zeros(n), torch.zeros(n), clip,
                    kw.get("clip_vloss", False), 0.5, 0.0)


def test_clipped_surrogate_has_zero_gradient_where_the_ratio_is_clipped_in_the_advantage_direction():
    # ratios 1.5 (A>0: clipped), 1.5 (A<0: not clipped, pessimistic), 0.5 (A<0: clipped), 0.5 (A>0: not), 1.1 (in)
    ratios = torch.tensor([1.5, 1.5, 0.5, 0.5, 1.1])
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0, 2.0])
    new_logprob = ratios.log().clone().requires_grad_(True)
    loss, stats = _loss(new_logprob, torch.zeros(5), adv)
    loss.backward()
    # d(-mean(r A))/d log π = -r A / n where the unclipped term is active, 0 where the clipped one is
    expected = -(ratios * adv) / 5 * torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(new_logprob.grad, expected)
    assert stats["clipfrac"].item() == pytest.approx(4 / 5)
    # The objective's value: min(rA, clip(r)A), averaged and negated.
    surrogate = torch.tensor([1.2 * 1.0, 1.5 * -1.0, 0.8 * -1.0, 0.5 * 1.0, 1.1 * 2.0])
    assert stats["policy_loss"].item() == pytest.approx(-surrogate.mean().item(), rel=1e-6)


def test_value_clipping_and_kl_estimate():
    n = 3
    new_values = torch.tensor([1.0, 0.5, -1.0], requires_grad=True)
    old_values, returns = torch.zeros(n), torch.tensor([2.0, 0.0, 0.0])
    loss, stats = ppo_loss(torch.zeros(n), torch.zeros(n), torch.zeros(n), new_values, old_values, returns,
                           torch.zeros(n), 0.2, True, 1.0, 0.0)
    loss.backward()
    # max((V-R)^2, (clip(V)-R)^2)/2: sample 0: max(1, 3.24) -> clipped term, no gradient to V; 1: max(.25,.04)
    # -> unclipped; 2: max(1, 0.04) -> unclipped.
    torch.testing.assert_close(new_values.grad, torch.tensor([0.0, 0.5, -1.0]) / n)
    assert stats["approx_kl"].item() == pytest.approx(0.0)
    _, stats = ppo_loss(torch.log(torch.tensor([2.0])), torch.zeros(1), torch.ones(1), torch.zeros(1),
                        torch.zeros(1), torch.zeros(1), torch.zeros(1), 0.2, False, 0.5, 0.0)
    assert stats["approx_kl"].item() == pytest.approx(1.0 - np.log(2.0))  # (r - 1) - log r


def test_smoke_discrete_and_box_write_the_run_folder(tmp_path):
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        runs = tmp_path / env_id
        proc = run_script(TRAIN, "--env-id", env_id, "--runs-dir", runs, *TINY)
        run = only_run_dir(runs)
        summary = json.loads((run / "summary.json").read_text())
        assert summary["env_steps"] == 512 and np.isfinite(summary["final_eval_return"])
        assert summary["wall_time_s"] > 0 and "final eval return" in proc.stdout
        for name in ("metrics.csv", "config.json", "learning_curve.png", "ckpt/best.pt", "ckpt/latest.pt"):
            assert (run / name).exists(), name
        tags = {line.split(",")[1] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
        assert {"eval/return", "charts/SPS", "losses/policy_loss", "losses/value_loss", "losses/approx_kl",
                "charts/episodic_return"} <= tags
    assert "--clip-coef" in run_script(TRAIN, "--help").stdout


def test_observation_statistics_survive_eval_only_and_resume(tmp_path):
    proc = run_script(TRAIN, "--env-id", "Pendulum-v1", "--norm-obs", "--norm-reward", "--runs-dir", tmp_path,
                      *TINY)
    run = only_run_dir(tmp_path)
    ckpt = rl_utils.open_checkpoint(run / "ckpt" / "latest.pt", Args)
    saved = ckpt["envs"]["wrappers"]["NormalizeObservation"]
    assert saved["count"] > 512  # updated on every training observation
    # --eval-only rebuilds the env from the checkpoint with exactly these statistics...
    envs = make_envs(Args(**{**ckpt.args, "num_envs": 1}))
    rl_utils.set_env_state(envs, {"sub_envs": None, "wrappers": ckpt["envs"]["wrappers"]})
    norm = rl_utils.find_wrapper(envs, rl_utils.NormalizeObservation)
    np.testing.assert_array_equal(norm.obs_rms.mean, saved["mean"])
    np.testing.assert_array_equal(norm.obs_rms.var, saved["var"])
    # ...and reproduces the final evaluation of the training run (same statistics, same seeds, same policy).
    out = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt" / "latest.pt", "--eval-episodes", "2")
    final = json.loads((run / "summary.json").read_text())["final_eval_return"]
    assert f"eval return {final:.1f}" in out.stdout, (out.stdout, final, proc.stdout[-300:])
    # best.pt carries its own statistics: restored with them it scores best_eval_return on the eval episodes,
    # and the held-out score in summary.json comes from the held-out episodes
    summary = json.loads((run / "summary.json").read_text())
    best = rl_utils.open_checkpoint(run / "ckpt" / "best.pt", Args)
    saved, agent, envs, device = restore_for_eval(Args, best, "PPO")
    scores = [evaluate_agent(saved, agent, envs, device, tmp_path, seed_offset=offset).returns.mean()
              for offset in (rl_utils.EVAL_SEED_OFFSET, rl_utils.HELDOUT_SEED_OFFSET)]
    assert scores == pytest.approx([summary["best_eval_return"], summary["best_heldout_return"]])
    assert best.step == summary["best_eval_step"]


def test_resume_continues_exactly(tmp_path):
    """Resuming from the step-256 checkpoint of a 512-step run ends with the same weights and evaluations
    (CartPole envs are restored mid-episode; counters, optimizer, RNGs and the schedule position too)."""
    run_script(TRAIN, "--runs-dir", tmp_path, "--run-name", "x", "--checkpoint-every", "256", *TINY)
    ckpt = tmp_path / "x" / "ckpt"
    first = torch.load(ckpt / "latest.pt", weights_only=False)
    evals = lambda: [r.split(",")[:3] for r in (tmp_path / "x" / "metrics.csv").read_text().splitlines()  # noqa: E731
                     if "eval/return," in r]
    before = evals()
    run_script(TRAIN, "--resume", ckpt / "step_256.pt")
    second = torch.load(ckpt / "latest.pt", weights_only=False)
    for key in first["agent"]:
        torch.testing.assert_close(first["agent"][key], second["agent"][key], rtol=0, atol=0)
    assert evals() == before and len(before) >= 2


def test_same_seed_same_run(tmp_path):
    for name in ("a", "b"):
        run_script(TRAIN, "--runs-dir", tmp_path / name, "--run-name", "x", "--seed", "3", *TINY)
    a = torch.load(tmp_path / "a" / "x" / "ckpt" / "latest.pt", weights_only=False)["agent"]
    b = torch.load(tmp_path / "b" / "x" / "ckpt" / "latest.pt", weights_only=False)["agent"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_dqn_checkpoint_is_refused(tmp_path):
    run_script("classic_rl/dqn/train.py", "--runs-dir", tmp_path, "--run-name", "d", "--total-timesteps", "200",
               "--learning-starts", "100", "--eval-episodes", "1")
    proc = run_script(TRAIN, "--resume", tmp_path / "d", check=False)
    assert proc.returncode == 2 and "written by classic_rl/dqn/train.py" in proc.stderr
    proc = run_script(TRAIN, "--eval-only", "--checkpoint", tmp_path / "d" / "ckpt" / "latest.pt", check=False)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1


def test_gym_box_space_reaches_the_gaussian_head():
    envs = make_envs(Args(env_id="Pendulum-v1", num_envs=1))
    assert isinstance(envs.single_action_space, gym.spaces.Box) and envs.single_action_space.shape == (1,)


@pytest.mark.slow
def test_ppo_solves_cartpole(tmp_path):
    """The README's default: RL Zoo's CartPole settings reach a greedy 500 well within 100k steps."""
    run_script(TRAIN, "--runs-dir", tmp_path, "--target-return", "475", "--total-timesteps", "60000",
               timeout=240)
    steps, _ = rl_utils.first_crossing(only_run_dir(tmp_path), 475)
    assert steps is not None and steps <= 60_000

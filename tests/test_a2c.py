"""A2C: the loss's gradients by hand, smoke runs (Discrete and Box, RMSprop and Adam), exact resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from classic_rl.a2c.train import a2c_loss
from tests.conftest import only_run_dir, run_script

TRAIN = "classic_rl/a2c/train.py"
TINY = ("--total-timesteps", "400", "--num-envs", "2", "--eval-every", "200", "--eval-episodes", "2")


def test_a2c_loss_gradients_by_hand():
    logprob = torch.tensor([-0.5, -1.0], requires_grad=True)
    values = torch.tensor([1.0, 2.0], requires_grad=True)
    adv = torch.tensor([2.0, -1.0], requires_grad=True)  # must be treated as a constant
    returns = torch.tensor([3.0, 1.0])
    entropy = torch.tensor([0.5, 0.7], requires_grad=True)
    loss, stats = a2c_loss(logprob, adv, values, returns, entropy, vf_coef=0.5, ent_coef=0.1)
    loss.backward()
    torch.testing.assert_close(logprob.grad, -adv.detach() / 2)  # ∂/∂log π of −mean(log π Â)
    torch.testing.assert_close(values.grad, 0.5 * 2 * (values.detach() - returns) / 2)  # c_V ∂ mean (R−V)²
    torch.testing.assert_close(entropy.grad, torch.full((2,), -0.1 / 2))
    assert adv.grad is None  # the advantage is detached: no gradient reaches the critic through the actor term
    assert stats["value_loss"].item() == pytest.approx(((2.0**2) + (1.0**2)) / 2)


@pytest.mark.parametrize("env_id, extra", [("CartPole-v1", ()), ("Pendulum-v1", ("--optimizer", "adam"))])
def test_smoke_run_writes_the_run_folder(tmp_path, env_id, extra):
    run_script(TRAIN, "--env-id", env_id, "--runs-dir", tmp_path, *TINY, *extra)
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 400 and np.isfinite(summary["final_eval_return"])
    assert (run / "learning_curve.png").exists() and (run / "ckpt" / "best.pt").exists()
    out = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt" / "latest.pt", "--eval-episodes", "2")
    assert f"eval return {summary['final_eval_return']:.1f}" in out.stdout


def test_resume_continues_exactly(tmp_path):
    run_script(TRAIN, "--runs-dir", tmp_path, "--run-name", "x", "--checkpoint-every", "200", *TINY)
    ckpt = tmp_path / "x" / "ckpt"
    first = torch.load(ckpt / "latest.pt", weights_only=False)
    run_script(TRAIN, "--resume", ckpt / "step_200.pt")
    second = torch.load(ckpt / "latest.pt", weights_only=False)
    for key in first["agent"]:
        assert torch.equal(first["agent"][key], second["agent"][key]), key
    assert first["optimizer"]["state"][0]["square_avg"].equal(second["optimizer"]["state"][0]["square_avg"])

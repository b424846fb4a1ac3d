"""DPPO: the workers' averaged gradient equals the gradient of the pooled batch, the pooled statistics (advantages,
observations) equal those of the union; and as a user runs it on Ray: 2 workers learn a little and leave no Ray
process, the same seed and worker count give the same run, resume continues exactly, a worker that raises ends
the run at once with one line, Ctrl-C saves, and --ray-address joins a separately started head."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.wrappers.utils import RunningMeanStd

from classic_rl.dppo.train import Args, Worker, average_gradients, get_flat, obs_moments_since, pooled_moments
from classic_rl.ppo.train import ppo_loss
from tests.conftest import ROOT, assert_ctrl_c_saves_and_stops_ray, only_run_dir, ray_env, ray_processes, run_script

TRAIN = "classic_rl/dppo/train.py"
TINY = ("--total-timesteps", "512", "--num-envs", "2", "--num-steps", "64", "--num-minibatches", "2",
        "--update-epochs", "2", "--eval-every", "256", "--eval-episodes", "2")


def _run(tmp_path: Path, ray_tmp: str, *flags: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TRAIN, "--runs-dir", str(tmp_path), *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=ray_env(ray_tmp))


def test_pooled_moments_and_weighted_average():
    gen = np.random.default_rng(0)
    shards = [gen.normal(size=n) for n in (5, 9)]
    mean, std = pooled_moments([(s.sum(), (s ** 2).sum(), len(s)) for s in shards])
    union = np.concatenate(shards)
    assert mean == pytest.approx(union.mean()) and std == pytest.approx(union.std(ddof=1))
    grads = [np.array([1.0, 2.0]), np.array([4.0, 8.0])]
    np.testing.assert_allclose(average_gradients(grads, [1, 3]), [3.25, 6.5])  # (1·g₀ + 3·g₁) / 4


def test_observation_moments_since_a_snapshot_merge_to_the_union():
    gen = np.random.default_rng(1)
    first, second = gen.normal(2.0, 3.0, size=(40, 3)), gen.normal(-1.0, 0.5, size=(25, 3))
    rms = RunningMeanStd(shape=(3,), dtype=np.float64)
    rms.update(first)
    before = {"mean": rms.mean.copy(), "var": rms.var.copy(), "count": rms.count}
    rms.update(second)
    mean, var, count = obs_moments_since(before, {"mean": rms.mean, "var": rms.var, "count": rms.count})
    np.testing.assert_allclose(mean, second.mean(0), rtol=1e-6)
    np.testing.assert_allclose(var, second.var(0), rtol=1e-6)
    assert count == pytest.approx(25, abs=1e-6)


def test_averaged_gradient_equals_the_gradient_of_the_pooled_batch():
    """Two workers (built in-process: no Ray needed for the math) collect, compute PPO gradients on their shards;
    their average equals the gradient of PPO's loss on the union with one network."""
    args = Args(num_envs=2, num_steps=16, num_minibatches=1, hidden_sizes="8", seed=3)
    workers = [Worker(dataclasses.asdict(args), i) for i in range(2)]
    weights = get_flat(workers[0].agent)
    outs = [w.collect(weights, None) for w in workers]
    adv_mean, adv_std = pooled_moments([o["adv"] for o in outs])
    grads = [w.gradient(weights, True, adv_mean, adv_std, 0.2) for w in workers]
    averaged = average_gradients([g for g, _, _ in grads], [n for _, n, _ in grads])

    agent = workers[0].agent  # holds `weights`; the pooled batch of both rollouts, one loss
    batches = [w.buffer.all() for w in workers]
    cat = lambda name: torch.cat([getattr(b, name) for b in batches])  # noqa: E731
    logprob, entropy, value = agent.evaluate_actions(cat("obs"), cat("actions"))
    adv = cat("advantages")
    assert adv.mean().item() == pytest.approx(adv_mean, abs=1e-5) and adv.std().item() == pytest.approx(adv_std)
    loss, _ = ppo_loss(logprob, cat("logprobs"), (adv - adv_mean) / (adv_std + 1e-8), value, cat("values"),
                       cat("returns"), entropy, 0.2, args.clip_vloss, args.vf_coef, args.ent_coef)
    pooled = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(agent.parameters()))]).numpy()
    np.testing.assert_allclose(averaged, pooled, rtol=1e-4, atol=1e-6)
    assert np.abs(pooled).max() > 1e-3
    # and the workers' shards differ (distinct env seeds and random streams), so the average is not trivial
    assert not np.allclose(grads[0][0], grads[1][0])


def test_two_workers_learn_a_little_and_leave_no_ray_process(tmp_path, ray_tmp):
    # the CartPole preset's batch and epochs, written out because TINY overrides them (with 10 epochs and SB3's
    # value loss the policy first collapsed to one action and had not recovered by 4096 steps)
    proc = _run(tmp_path, ray_tmp, *TINY, "--total-timesteps", "4096", "--num-envs", "4", "--num-steps", "32",
                "--num-minibatches", "1", "--update-epochs", "20", "--seed", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 4096
    assert summary["best_eval_return"] > 100  # random play scores ~20 on CartPole: it learned something
    for name in ("config.json", "metrics.csv", "learning_curve.png", "ckpt/best.pt", "ckpt/latest.pt"):
        assert (run / name).exists(), name
    tags = {line.split(",")[1] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert {"losses/policy_loss", "losses/approx_kl", "charts/SPS", "charts/episodic_return"} <= tags
    assert "Traceback" not in proc.stderr and "core_worker" not in proc.stderr
    time.sleep(1)
    assert ray_processes(ray_tmp) == []
    evaluated = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt/best.pt", "--eval-episodes", "2")
    assert "eval return" in evaluated.stdout  # --eval-only needs no Ray


def test_same_seed_same_run_and_resume_continues_exactly(tmp_path, ray_tmp):
    """Two runs with one seed and worker count end with equal weights; a third resumed from a mid-run checkpoint
    (Box actions and observation normalisation: the merged statistics travel too) ends equal as well."""
    flags = (*TINY, "--env-id", "Pendulum-v1", "--norm-obs", "--checkpoint-every", "256")
    for name in ("a", "b"):
        proc = _run(tmp_path, ray_tmp, *flags, "--run-name", name)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (torch.load(tmp_path / n / "ckpt" / "latest.pt", weights_only=False) for n in ("a", "b"))
    for key in a["agent"]:
        assert torch.equal(a["agent"][key], b["agent"][key]), key
    proc = subprocess.run([sys.executable, TRAIN, "--resume", str(tmp_path / "b" / "ckpt" / "step_256.pt")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=ray_env(ray_tmp))
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = torch.load(tmp_path / "b" / "ckpt" / "latest.pt", weights_only=False)
    assert resumed["step"] == a["step"] == 512
    for key in a["agent"]:
        assert torch.equal(a["agent"][key], resumed["agent"][key]), key
    stats = a["envs"]["wrappers"]["NormalizeObservation"], resumed["envs"]["wrappers"]["NormalizeObservation"]
    np.testing.assert_array_equal(stats[0]["mean"], stats[1]["mean"])
    assert stats[0]["count"] == stats[1]["count"] > 512  # every worker's observations reached the learner


def test_a_worker_that_raises_ends_the_run_with_one_line(tmp_path, ray_tmp):
    start = time.time()
    proc = _run(tmp_path, ray_tmp, "--env-id", "tests.fault_envs:FailingPendulum-v0", *TINY, "--total-timesteps",
                "100000", "--eval-every", "0")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert lines[-1].startswith("error: worker ") and "RuntimeError: planted failure" in lines[-1], lines[-3:]
    assert "Traceback" not in proc.stderr
    assert time.time() - start < 120
    time.sleep(1)
    assert ray_processes(ray_tmp) == []


def test_ctrl_c_saves_a_checkpoint_and_stops_every_worker(tmp_path, ray_tmp):
    assert_ctrl_c_saves_and_stops_ray([TRAIN, *TINY, "--total-timesteps", "10000000", "--eval-every", "0"],
                                      tmp_path, ray_tmp)


def test_bad_input_is_one_error_line(tmp_path, ray_tmp):
    proc = _run(tmp_path, ray_tmp, *TINY, "--num-minibatches", "3")
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "--num-minibatches" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = _run(tmp_path, ray_tmp, *TINY, "--ray-address", "127.0.0.1:1")  # nothing listens there
    assert proc.returncode == 2 and proc.stderr.startswith("error: --ray-address")


def test_joins_a_separately_started_ray_head(tmp_path, ray_tmp):
    port = 6000 + (os.getpid() + 1500) % 3000  # away from Ray's default 6379 and from D4PG's test's port
    ray = str(Path(sys.executable).parent / "ray")
    env = ray_env(ray_tmp)
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
                    f"--temp-dir={ray_tmp}"], check=True, capture_output=True, timeout=120, env=env)
    try:
        proc = subprocess.run([sys.executable, TRAIN, "--runs-dir", str(tmp_path), *TINY,
                               "--ray-address", f"127.0.0.1:{port}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads((only_run_dir(tmp_path) / "summary.json").read_text())["env_steps"] == 512
        assert ray_processes(ray_tmp), "the cluster is the user's: the run must leave it running"
    finally:
        subprocess.run(["pkill", "-f", ray_tmp], check=False)

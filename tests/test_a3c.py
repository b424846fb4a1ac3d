"""A3C: the shared optimizers against torch's (in one process and across two), one update against its formula on a
hand-made rollout, a 2-worker run end to end with no process left behind, a worker that raises, Ctrl-C and
--resume, --eval-only, bad input."""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import rl_utils
from classic_rl.a2c.train import a2c_loss
from classic_rl.a3c.train import Args, SharedAdam, SharedRMSprop, update, worker_seed
from classic_rl.policies import ActorCritic
from tests.conftest import ROOT, only_run_dir

TRAIN = "classic_rl/a3c/train.py"
TINY = ("--num-workers", "2", "--total-timesteps", "2000", "--eval-every", "1000", "--eval-episodes", "2")
TAG = "DLRL_A3C_TEST"  # every process a test run starts inherits this variable: how leftovers are found
pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds leftovers through /proc")


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))


def _grads(net: torch.nn.Module, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=gen) for p in net.parameters()]


def _step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, grads: list[torch.Tensor]) -> None:
    for p, g in zip(net.parameters(), grads):
        p.grad = g.clone()
    optimizer.step()


@pytest.mark.parametrize("shared_cls, torch_cls, kwargs", [
    (SharedAdam, torch.optim.Adam, dict(lr=1e-2, eps=1e-5)),
    (SharedRMSprop, torch.optim.RMSprop, dict(lr=1e-2, alpha=0.99, eps=1e-5)),
])
def test_shared_optimizer_is_torchs_math_on_shared_statistics(shared_cls, torch_cls, kwargs):
    ours, theirs = _net(), _net()
    opt, ref = shared_cls(ours.parameters(), **kwargs), torch_cls(theirs.parameters(), **kwargs)
    states = opt.statistics()
    assert all(t.is_shared() for s in states for t in s.values())  # created up front, in shared memory
    for seed in range(3):
        _step(ours, opt, _grads(ours, seed))
        _step(theirs, ref, _grads(theirs, seed))
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for p, q, state in zip(ours.parameters(), theirs.parameters(), states):
        assert opt.state[p] is state  # stepped in place: still the shared tensors
        for key, value in ref.state[q].items():
            torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    # a checkpoint round trip keeps the statistics shared (load_state_dict builds new tensors)
    opt.load_state_dict(opt.state_dict())
    assert all(t.is_shared() for s in opt.statistics() for t in s.values())


def _child_step(net: torch.nn.Module, statistics: list, seed: int) -> None:
    """In a spawned process: a fresh SharedAdam over the shared net adopts the shared statistics and steps once."""
    opt = SharedAdam(net.parameters(), lr=1e-2, eps=1e-5)
    opt.adopt(statistics)
    _step(net, opt, _grads(net, seed))


def test_two_processes_step_the_same_parameters_and_statistics():
    """Two worker processes, one after the other, each step the shared model once: the result is torch's Adam
    taking both steps in one process (the step count and the moments are shared, not per-worker)."""
    shared, reference = _net(), _net()
    shared.share_memory()
    opt = SharedAdam(shared.parameters(), lr=1e-2, eps=1e-5)
    ctx = mp.get_context("spawn")
    for seed in (1, 2):
        proc = ctx.Process(target=_child_step, args=(shared, opt.statistics(), seed))
        proc.start()
        proc.join(60)
        assert proc.exitcode == 0
    ref = torch.optim.Adam(reference.parameters(), lr=1e-2, eps=1e-5)
    for seed in (1, 2):
        _step(reference, ref, _grads(reference, seed))
    for a, b in zip(shared.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)
    first = next(iter(shared.parameters()))
    assert opt.state[first]["step"].item() == 2  # the main process sees the children's steps


def test_an_update_uses_every_transition_of_the_rollout():
    """The notes' A3C cleared its buffer every step (one transition per update). Here one update's gradient is
    A2C's loss over all n x N transitions, with n-step returns computed by brute force: cut at the termination,
    bootstrapped from V(final obs) at the truncation and from V(next obs) after the last step."""
    torch.manual_seed(0)
    obs_space, act_space = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2)
    n, num_envs, gamma = 5, 2, 0.9
    local, shared = ActorCritic(3, act_space), ActorCritic(3, act_space)
    args = Args(num_steps=n, num_envs=num_envs, gamma=gamma, ent_coef=0.01, max_grad_norm=1e9)
    buffer = rl_utils.RolloutBuffer(n, num_envs, obs_space, act_space)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, num_envs, 3)).astype(np.float32)
    actions = rng.integers(0, 2, (n, num_envs))
    rewards = rng.normal(size=(n, num_envs)).astype(np.float32)
    terminated = np.zeros((n, num_envs), bool)
    truncated = np.zeros((n, num_envs), bool)
    terminated[1, 0], truncated[3, 1] = True, True
    final_value = 0.7  # V(real final obs) at the truncation
    with torch.no_grad():
        values = local.value(torch.as_tensor(obs)).numpy()
    for t in range(n):
        final = torch.tensor([0.0, final_value]) if truncated[t].any() else None
        buffer.add(obs[t], actions[t], np.zeros(num_envs), values[t], rewards[t], terminated[t], truncated[t], final)
    last_values = torch.tensor([0.3, -0.2])
    returns = np.zeros((n, num_envs), np.float32)
    for e in range(num_envs):  # brute force, one env at a time
        for t in range(n):
            g, discount = 0.0, 1.0
            for k in range(t, n):
                g += discount * rewards[k, e]
                discount *= gamma
                if terminated[k, e]:
                    break
                if truncated[k, e]:
                    g += discount * final_value
                    break
                if k == n - 1:
                    g += discount * last_values[e].item()
            returns[t, e] = g
    local_params, shared_params = list(local.parameters()), list(shared.parameters())
    optimizer = SharedRMSprop(shared.parameters(), lr=0.0)
    update(args, local, local_params, shared_params, optimizer, buffer, last_values)
    flat = lambda x: torch.as_tensor(x).reshape(n * num_envs, *x.shape[2:])  # noqa: E731 - time-major, as all()
    logprob, entropy, value = local.evaluate_actions(flat(obs), flat(actions))
    loss, _ = a2c_loss(logprob, flat(returns) - flat(values), value, flat(returns), entropy, 0.5, 0.01)
    expected = torch.autograd.grad(loss, local_params)
    for got, want in zip(shared_params, expected):
        torch.testing.assert_close(got.grad, want)  # the shared parameters received the local gradient


def test_worker_seeds_are_distinct_and_follow_the_seed():
    assert [worker_seed(1, r, 1) for r in range(3)] == [1, 2, 3]
    seeds = {worker_seed(1, r, 4) + i for r in range(3) for i in range(4)}  # every env of every worker
    assert len(seeds) == 12 and max(seeds) < rl_utils.EVAL_SEED_OFFSET


def _leftovers(tag: str) -> list[int]:
    """Processes still alive that inherited ``TAG=tag`` (the script, its workers, multiprocessing's helpers)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f"{TAG}={tag}".encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _no_leftovers(tag: str) -> None:
    deadline = time.time() + 5
    while _leftovers(tag) and time.time() < deadline:
        time.sleep(0.2)
    assert _leftovers(tag) == []


def _run(*args: str, tag: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, TRAIN, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, TAG: tag, **env})



def test_two_workers_run_end_to_end_and_leave_no_process(tmp_path):
    tag = uuid.uuid4().hex
    proc = _run("--runs-dir", tmp_path, *TINY, tag=tag)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    for key in ("final_eval_return", "best_eval_return", "best_eval_step", "best_heldout_return", "env_steps",
                "wall_time_s", "sps", "algo", "env_id", "seed"):
        assert key in summary, key
    assert summary["algo"] == "a3c" and summary["env_steps"] >= 2000 and 0 < summary["final_eval_return"] <= 500
    for name in ("config.json", "metrics.csv", "learning_curve.png", "ckpt/best.pt", "ckpt/latest.pt"):
        assert (run / name).exists(), name
    tags = {line.split(",")[1] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert {"charts/episodic_return", "losses/policy_loss", "losses/value_loss", "eval/return"} <= tags, tags
    assert "Traceback" not in proc.stderr
    _no_leftovers(tag)
    evaluated = _run("--eval-only", "--checkpoint", run / "ckpt" / "latest.pt", "--eval-episodes", "2", tag=tag)
    assert f"eval return {summary['final_eval_return']:.1f}" in evaluated.stdout, evaluated.stdout + evaluated.stderr


def test_two_workers_learn_a_little(tmp_path):
    """CartPole-v1 from ~9 (untrained greedy policy) to well above it within 15k steps (seconds)."""
    tag = uuid.uuid4().hex
    proc = _run("--runs-dir", tmp_path, "--num-workers", "2", "--total-timesteps", "15000", "--eval-every",
                "5000", tag=tag)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["best_eval_return"] >= 50, summary
    _no_leftovers(tag)


def test_a_worker_that_raises_ends_the_run_with_one_line(tmp_path):
    """With spawned workers (the other runs here fork): each re-imports the env's module, and its failure still
    reaches the main process, which stops the other worker and exits."""
    tag = uuid.uuid4().hex
    start = time.time()
    proc = _run("--env-id", "tests.fault_envs:FailingPendulum-v0", "--runs-dir", tmp_path, "--num-workers", "2",
                "--total-timesteps", "1000000", "--eval-every", "0", "--start-method", "spawn", tag=tag)
    assert time.time() - start < 60
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: worker "), lines
    assert ": RuntimeError: planted failure after 300 steps" in lines[0], lines
    assert "Traceback" not in proc.stderr
    rank = lines[0].split()[2].rstrip(":")
    assert (only_run_dir(tmp_path) / f"worker{rank}_traceback.txt").read_text().startswith("Traceback")
    _no_leftovers(tag)


def test_a_worker_that_dies_without_a_word_ends_the_run_with_one_line(tmp_path):
    """``os._exit`` in a worker (as a segfault or the OOM killer would): no report, the exit code says it."""
    tag = uuid.uuid4().hex
    proc = _run("--env-id", "tests.fault_envs:DyingPendulum-v0", "--runs-dir", tmp_path, "--num-workers", "2",
                "--total-timesteps", "1000000", "--eval-every", "0", tag=tag, DLRL_DIE_ONCE=str(tmp_path / "died"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("error: worker ") and lines[0].endswith(" died (exit code 1)"), lines
    _no_leftovers(tag)


def test_ctrl_c_saves_latest_stops_every_worker_and_resumes(tmp_path):
    tag = uuid.uuid4().hex
    proc = subprocess.Popen([sys.executable, TRAIN, "--runs-dir", str(tmp_path), "--num-workers", "2",
                             "--total-timesteps", "10000000", "--eval-every", "0", "--eval-episodes", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, TAG: tag, "DLRL_PROGRESS_SECONDS": "0"})
    deadline, line = time.time() + 50, ""
    while not (line.startswith("progress: step") and "recent return" in line and "nan" not in line) \
            and time.time() < deadline:
        line = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    assert "interrupted at step" in out and "--resume" in out
    _no_leftovers(tag)
    latest = only_run_dir(tmp_path) / "ckpt" / "latest.pt"
    saved = torch.load(latest, weights_only=False)
    stopped_at = saved["progress"]["global_step"]
    assert stopped_at > 0 and saved["optimizer"]["state"][0]["step"].item() > 0  # statistics are saved
    resumed = _run("--resume", latest, "--total-timesteps", str(stopped_at + 1000), tag=tag)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "workers start fresh episodes" in resumed.stdout  # the resume is not exact, and says so
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert stopped_at + 1000 <= summary["env_steps"] < stopped_at + 1100
    _no_leftovers(tag)


@pytest.mark.parametrize("argv, message", [
    (["--num-workers", "0"], "--num-workers must be >= 1"),
    (["--optimizer", "sgd"], "--optimizer must be rmsprop or adam"),
    (["--num-steps", "0"], "--num-steps must be >= 1"),
    (["--norm-obs"], "does not normalise"),
    (["--env-id", "ALE/Pong-v5"], "flat vector observations"),
    (["--env-id", "CartPol-v1"], "did you mean CartPole-v1"),
    (["--eval-only"], "--eval-only needs --checkpoint"),
])
def test_bad_input_is_exit_2_and_one_error_line(argv, message, tmp_path, monkeypatch, capsys):
    """In this process (as tests/test_bad_input.py does): nothing is spawned before the input is checked."""
    monkeypatch.setattr(sys, "argv", [TRAIN, "--runs-dir", str(tmp_path), "--total-timesteps", "64", *argv])
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / TRAIN), run_name="__main__")
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # no run folder was made

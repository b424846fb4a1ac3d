"""D4PG: the critic's target is the C51 projection of the shifted support under the target networks (against a
brute-force loop), the actor climbs the critic's mean without touching the critic, targets move only by Polyak
steps; and as a user runs it on Ray: a run with 2 explorers that exits cleanly and leaves no Ray process behind,
an explorer that raises ends the run with its error on one line, --eval-only, and joining a separately started
`ray start --head` with --ray-address."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import rl_utils
from classic_rl.continuous import DeterministicActor
from distributional_rl.categorical import make_support
from distributional_rl.d4pg.model import CategoricalCritic
from distributional_rl.d4pg.train import Args, actor_loss, critic_loss, explorer_seeds, update
from tests.conftest import ROOT, assert_ctrl_c_saves_and_stops_ray, only_run_dir, ray_env, ray_processes, run_script
from tests.test_distributional import brute_force_projection

TRAIN = "distributional_rl/d4pg/train.py"
TINY = ("--total-timesteps", "600", "--learning-starts", "200", "--eval-every", "0", "--eval-episodes", "2",
        "--batch-size", "16", "--hidden-sizes", "16,16", "--actor-steps", "20", "--log-every", "100")


def _nets(seed=0, obs_dim=3, act_dim=2):
    torch.manual_seed(seed)
    support = make_support(-10.0, 10.0, 11)
    critic = CategoricalCritic(obs_dim, act_dim, (8,), support)
    actor = DeterministicActor(obs_dim, act_dim, (8,))
    return critic, copy.deepcopy(critic), actor, copy.deepcopy(actor), support


def _batch(n=6, obs_dim=3, act_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return rl_utils.ReplayBatch(torch.randn(n, obs_dim, generator=g), torch.rand(n, act_dim, generator=g) * 2 - 1,
                                torch.randn(n, generator=g) * 4, torch.randn(n, obs_dim, generator=g),
                                (torch.rand(n, generator=g) < 0.3).float(), 0.99 ** torch.randint(1, 6, (n,)).float(),
                                torch.ones(n), np.arange(n))


def test_critic_target_is_the_projection_of_the_shifted_support():
    """m = Φ(R + γ^m (1 − done) z | p_target(s', μ'(s'))), one sample at a time with the brute-force projection."""
    critic, critic_target, _, actor_target, support = _nets()
    with torch.no_grad():
        for p in critic_target.parameters():
            p.add_(0.3)  # target ≠ online, so using the wrong one would show
    batch = _batch()
    _, ce, _ = critic_loss(critic, critic_target, actor_target, batch)
    for i in range(len(batch.rewards)):
        with torch.no_grad():
            next_a = actor_target(batch.next_obs[i:i + 1])
            p_next = torch.softmax(critic_target(batch.next_obs[i:i + 1], next_a), -1)
            m = brute_force_projection(p_next, batch.rewards[i:i + 1], batch.discounts[i:i + 1],
                                       batch.dones[i:i + 1], support)[0]
            log_p = torch.log_softmax(critic(batch.obs[i:i + 1], batch.actions[i:i + 1])[0].double(), -1)
        torch.testing.assert_close(ce[i].double(), -(m * log_p).sum(), atol=1e-5, rtol=0)


def test_actor_loss_is_minus_the_critics_mean_and_update_moves_targets_by_polyak_only():
    critic, critic_target, actor, actor_target, support = _nets()
    batch = _batch()
    with torch.no_grad():
        probs = torch.softmax(critic(batch.obs, actor(batch.obs)), -1)
    torch.testing.assert_close(actor_loss(critic, actor, batch.obs), -(probs * support).sum(-1).mean())
    args = Args(tau=0.1)
    learner = dict(critic=critic, critic_target=critic_target.requires_grad_(False),
                   actor_target=actor_target.requires_grad_(False),
                   actor_optimizer=torch.optim.Adam(actor.parameters(), lr=1e-2),
                   critic_optimizer=torch.optim.Adam(critic.parameters(), lr=1e-2))
    before = {k: copy.deepcopy(learner[k].state_dict()) for k in ("critic_target", "actor_target")}
    critic_before = copy.deepcopy(critic.state_dict())
    update(args, actor, learner, batch)
    for name, online in (("critic_target", critic), ("actor_target", actor)):
        for k, v in learner[name].state_dict().items():
            if k == "support":
                continue
            # θ' ← θ' + τ (θ_new − θ'): the target only follows the freshly updated online weights
            torch.testing.assert_close(v, before[name][k] + 0.1 * (online.state_dict()[k] - before[name][k]))
        assert all(p.grad is None for p in learner[name].parameters())
    # the critic moved by its own step only, and the actor's loss left no gradient in it: redo the critic step
    # alone from the same start and compare weights and gradients
    replay = copy.deepcopy(critic)
    replay.load_state_dict(critic_before)
    opt = torch.optim.Adam(replay.parameters(), lr=1e-2)
    loss, _, _ = critic_loss(replay, _frozen(before["critic_target"], replay), _frozen_actor(before["actor_target"]),
                             batch)
    loss.backward()
    opt.step()
    for k, v in replay.state_dict().items():
        torch.testing.assert_close(v, critic.state_dict()[k])
    for mine, alone in zip(critic.parameters(), replay.parameters()):  # the actor's backward added nothing
        torch.testing.assert_close(mine.grad, alone.grad)


def _frozen(state, like):
    net = copy.deepcopy(like)
    net.load_state_dict(state)
    return net.requires_grad_(False)


def _frozen_actor(state):
    net = DeterministicActor(3, 2, (8,))
    net.load_state_dict(state)
    return net.requires_grad_(False)


def test_explorer_seeds_are_distinct_and_reproducible():
    assert explorer_seeds(1, 4) == explorer_seeds(1, 4) and len(set(explorer_seeds(1, 4))) == 4
    assert explorer_seeds(1, 4) != explorer_seeds(2, 4)


def test_bad_bounds_and_normalisation_are_one_line():
    with pytest.raises(rl_utils.UsageError, match="--v-min must be < --v-max"):
        Args(v_min=1.0, v_max=0.0)
    with pytest.raises(rl_utils.UsageError, match="normalise"):
        Args(norm_obs=True)


def test_two_explorers_run_end_to_end_and_leave_no_ray_process(tmp_path, ray_tmp):
    proc = subprocess.run([sys.executable, TRAIN, "--runs-dir", str(tmp_path), *TINY, "--num-actors", "2", "--per",
                           "--exploiter", "--total-timesteps", "800"],  # each explorer ends >= 1 episode of 200
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=ray_env(ray_tmp))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] >= 600 and -2000 < summary["final_eval_return"] <= 0
    for name in ("config.json", "metrics.csv", "learning_curve.png", "ckpt/best.pt", "ckpt/latest.pt"):
        assert (run / name).exists(), name
    tags = {line.split(",")[1] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    wanted = {"losses/qf_loss", "charts/exploiter_return", "charts/episodic_return"}
    assert wanted <= tags, (wanted - tags, proc.stdout[-2000:])
    assert "Traceback" not in proc.stderr and "core_worker" not in proc.stderr  # Ray's own logs stay out
    time.sleep(1)
    assert ray_processes(ray_tmp) == []
    evaluated = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt/best.pt", "--eval-episodes", "2")
    assert "eval return" in evaluated.stdout  # --eval-only needs no Ray


def test_an_explorer_that_raises_ends_the_run_with_one_line(tmp_path, ray_tmp):
    start = time.time()
    proc = subprocess.run([sys.executable, TRAIN, "--env-id", "tests.fault_envs:FailingPendulum-v0", "--runs-dir",
                           str(tmp_path), *TINY, "--total-timesteps", "5000", "--num-actors", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=ray_env(ray_tmp))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert lines[-1].startswith("error: explorer 0 raised RuntimeError: planted failure"), lines[-3:]
    assert "Traceback" not in proc.stderr
    assert time.time() - start < 120
    time.sleep(1)
    assert ray_processes(ray_tmp) == []


def test_an_explorer_that_dies_is_restarted_and_the_run_goes_on(tmp_path, ray_tmp):
    """Its process exits abruptly once (os._exit): Ray restarts it, the call it died in is run again, the run ends
    normally; with no restarts allowed the same death ends the run with one line."""
    marker = tmp_path / "died"
    env = {**ray_env(ray_tmp), "DLRL_DIE_ONCE": str(marker)}
    flags = ("--env-id", "tests.fault_envs:DyingPendulum-v0", *TINY, "--num-actors", "1")
    proc = subprocess.run([sys.executable, TRAIN, "--runs-dir", str(tmp_path / "a"), *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((only_run_dir(tmp_path / "a") / "summary.json").read_text())
    assert marker.exists() and summary["env_steps"] >= 600
    marker.unlink()
    proc = subprocess.run([sys.executable, TRAIN, "--runs-dir", str(tmp_path / "b"), *flags, "--actor-restarts", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: explorer 0 died")
    time.sleep(1)
    assert ray_processes(ray_tmp) == []


def test_ctrl_c_saves_the_learner_and_stops_every_actor(tmp_path, ray_tmp):
    assert_ctrl_c_saves_and_stops_ray([TRAIN, *TINY, "--total-timesteps", "10000000", "--num-actors", "1"],
                                      tmp_path, ray_tmp)


def test_joins_a_separately_started_ray_head(tmp_path, ray_tmp):
    port = 6000 + os.getpid() % 3000  # away from Ray's default 6379, distinct per test worker
    ray = str(Path(sys.executable).parent / "ray")
    env = ray_env(ray_tmp)
    subprocess.run([ray, "start", "--head", f"--port={port}", "--num-cpus=3", "--include-dashboard=false",
                    f"--temp-dir={ray_tmp}"], check=True, capture_output=True, timeout=120, env=env)
    try:
        proc = subprocess.run([sys.executable, TRAIN, "--runs-dir", str(tmp_path), *TINY, "--num-actors", "2",
                               "--ray-address", f"127.0.0.1:{port}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads((only_run_dir(tmp_path) / "summary.json").read_text())["env_steps"] >= 600
        assert ray_processes(ray_tmp), "the cluster is the user's: the run must leave it running"
        # the benchmark harness's grid as Ray tasks on the same cluster: the run folder comes back here
        code = ("import sys; from pathlib import Path; from benchmarks.run import Entry, RL_SCRIPTS, run_on_ray; "
                "script, tiny = RL_SCRIPTS['dqn']; "
                "rows = run_on_ray([(Entry('dqn', script, 'CartPole-v1', 512, 475, tiny), 2)], Path(sys.argv[1]), "
                "sys.argv[2]); print(rows[0]['run_dir'])")
        proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "bench"), f"127.0.0.1:{port}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        run_dir = Path(proc.stdout.strip().splitlines()[-1])
        assert run_dir.parent == tmp_path / "bench" / "runs" and (run_dir / "summary.json").exists()
    finally:
        subprocess.run(["pkill", "-f", ray_tmp], check=False)

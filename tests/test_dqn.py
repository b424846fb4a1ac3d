"""DQN family: the math (targets, dueling, target network), every entry point as a user runs it, bad input,
determinism, exact resume, Ctrl-C, and one learning test."""

from __future__ import annotations

import csv
import json
import shutil
import time

import numpy as np
import pytest
import torch

import rl_utils
from classic_rl.dqn.model import QNetwork
from classic_rl.dqn.train import Args, build, dqn_loss, evaluate_checkpoint, update_target
from tests.conftest import interrupt_when, only_run_dir, run_script

TRAIN = "classic_rl/dqn/train.py"
TINY = ("--total-timesteps", "600", "--learning-starts", "200", "--train-frequency", "4", "--gradient-steps", "1",
        "--eval-every", "300", "--eval-episodes", "2", "--batch-size", "16")


def _batch(obs, actions, rewards, next_obs, dones, discounts):
    n = len(actions)
    return rl_utils.ReplayBatch(obs, actions, rewards, next_obs, dones, discounts, torch.ones(n), np.arange(n))


class _Fixed(torch.nn.Module):
    """A 'network' returning a fixed Q table per observation id, to check targets by hand."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(torch.tensor(table, dtype=torch.float32))

    def forward(self, obs):
        return self.table[obs.long().view(-1)]


def test_dqn_and_double_dqn_targets_by_hand():
    online = _Fixed([[0.0, 0.0], [5.0, 1.0]])  # online prefers action 0 in state 1
    target = _Fixed([[0.0, 0.0], [2.0, 3.0]])  # target's max is action 1
    batch = _batch(torch.tensor([0.0, 0.0]), torch.tensor([0, 1]), torch.tensor([1.0, 1.0]),
                   torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([0.9, 0.9]))
    _, td, q = dqn_loss(online, target, batch, double=False, loss="mse")
    torch.testing.assert_close(td + q, torch.tensor([1 + 0.9 * 3.0, 1.0]))  # max_a' Q_target; done -> no bootstrap
    _, td, q = dqn_loss(online, target, batch, double=True, loss="mse")
    torch.testing.assert_close(td + q, torch.tensor([1 + 0.9 * 2.0, 1.0]))  # Q_target(s', argmax Q_online)


def test_dueling_aggregation_and_shapes():
    net = QNetwork((4,), 3, (32, 32), dueling=True)
    obs = torch.randn(5, 4)
    q = net(obs)
    value = net.head.value(net.trunk(obs))
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), value)  # mean_a Q = V because mean A is removed
    assert QNetwork((4, 84, 84), 6)(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape == (2, 6)


def test_no_gradient_flows_into_the_target_network():
    # the networks the script itself builds (a test-made copy would hide a target net left trainable)
    envs = rl_utils.make_vec_env("CartPole-v1", 1, 0)
    net, target = build(Args(hidden_sizes="16,16"), envs, torch.device("cpu"))
    assert not any(p.requires_grad for p in target.parameters())
    before = [p.clone() for p in target.parameters()]
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    batch = _batch(torch.randn(8, 4), torch.randint(0, 2, (8,)), torch.randn(8), torch.randn(8, 4),
                   torch.zeros(8), torch.full((8,), 0.99))
    for double in (False, True):
        loss, _, _ = dqn_loss(net, target, batch, double=double)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in target.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))
    update_target(net, target, tau=0.5)
    for t, b, o in zip(target.parameters(), before, net.parameters()):
        torch.testing.assert_close(t, 0.5 * b + 0.5 * o)


def test_polyak_update_moves_the_target_by_tau():
    """τ = 0.1, where τ and 1 − τ differ (at τ = 0.5 an inverted update would pass)."""
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in target.parameters()]
    update_target(online, target, tau=0.1)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)


def test_importance_weights_scale_each_sample_in_the_loss():
    """PER's weights enter the loss per sample: weight 0 removes a sample, weight w scales its term by w."""
    online, target = _Fixed([[1.0, 0.0], [0.0, 0.0]]), _Fixed([[0.0, 0.0], [0.0, 0.0]])
    batch = rl_utils.ReplayBatch(torch.tensor([0.0, 0.0]), torch.tensor([0, 1]), torch.tensor([3.0, 0.5]),
                                 torch.tensor([1.0, 1.0]), torch.ones(2), torch.ones(2), torch.tensor([0.0, 1.0]),
                                 np.arange(2))
    loss, td, _ = dqn_loss(online, target, batch, double=False, loss="mse")
    torch.testing.assert_close(td, torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(loss, torch.tensor(0.5 ** 2 / 2))  # only the second sample, mean over 2


def test_per_priorities_are_raised_to_alpha():
    """After update_priorities(|δ|), sampling probability ∝ (|δ| + ε)^α and the IS weights are (N P)^-β / max."""
    buf = rl_utils.PrioritizedReplayBuffer(2, 1, (1,), alpha=0.5, seed=0)
    for i in range(2):
        buf.add(np.full((1, 1), i), np.zeros((1, 1)), np.zeros(1), np.zeros(1), np.zeros(1, bool), np.zeros(1, bool))
    buf.update_priorities(np.array([0, 1]), np.array([1.0, 9.0]))  # priorities^0.5 = 1 : 3 -> P = 0.25 : 0.75
    buf.beta = 1.0
    counts, weights = np.zeros(2), {}
    for _ in range(400):
        batch = buf.sample(8)
        for i, w in zip(batch.indices, batch.weights.tolist()):
            counts[i] += 1
            weights[int(i)] = w
    np.testing.assert_allclose(counts / counts.sum(), [0.25, 0.75], atol=0.03)
    np.testing.assert_allclose([weights[0], weights[1]], [1.0, 1 / 3], rtol=1e-4)  # ∝ 1 / P, max 1


def test_time_limit_truncations_are_stored_as_truncated_not_terminated(tmp_path):
    """MountainCar never terminates under a random policy: every episode ends by its 200-step limit. The stored
    transitions must say truncated (bootstrap) with the real final observation, never terminated."""
    run_script(TRAIN, "--env-id", "MountainCar-v0", "--total-timesteps", "450", "--learning-starts", "1000",
               "--eval-every", "0", "--eval-episodes", "1", "--save-buffer", "--buffer-size", "1000",
               "--runs-dir", tmp_path)
    ckpt = rl_utils.open_checkpoint(only_run_dir(tmp_path), Args)
    envs = rl_utils.make_vec_env("MountainCar-v0", 1, 0)
    buffer = rl_utils.ReplayBuffer(1000, 1, envs.single_observation_space, envs.single_action_space)
    rl_utils.load_state_into(buffer, ckpt["buffer"])
    assert not buffer.terminated[:450].any()
    assert np.flatnonzero(buffer.truncated[:450, 0]).tolist() == [199, 399]
    # the real final observation, not the next episode's first: it continues the trajectory (x moves < 0.1 a step)
    np.testing.assert_allclose(buffer.next_obs[199, 0], buffer.obs[199, 0], atol=0.1)
    assert np.abs(buffer.next_obs[199, 0] - buffer.obs[200, 0]).max() > 0  # and a reset followed


def test_per_beta_is_annealed_to_one(tmp_path):
    run_script(TRAIN, "--runs-dir", tmp_path, *TINY, "--per", "--per-beta0", "0.4")
    with open(only_run_dir(tmp_path) / "metrics.csv") as f:
        betas = [float(r["value"]) for r in csv.DictReader(f) if r["tag"] == "charts/per_beta"]
    # learning starts at step 200 of 600: β = 0.4 + 0.6 * 200/600 there, rising linearly to 1 at the end
    assert betas[0] == pytest.approx(0.6, abs=0.01) and betas[-1] > 0.99 and betas == sorted(betas)


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [(r["step"], r["tag"], r["value"]) for r in csv.DictReader(f) if r["tag"] != "charts/SPS"]


def test_smoke_run_writes_the_run_folder(tmp_path):
    proc = run_script(TRAIN, "--runs-dir", tmp_path, *TINY)
    run = only_run_dir(tmp_path)
    assert run.name.startswith("CartPole-v1__dqn_3step__1__")  # the CartPole preset: 3-step targets
    for name in ("config.json", "metrics.csv", "learning_curve.png", "summary.json", "ckpt/latest.pt", "ckpt/best.pt"):
        assert (run / name).exists(), name
    assert list(run.glob("events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert {"final_eval_return", "env_steps", "wall_time_s"} <= set(summary) and summary["env_steps"] == 600
    assert "final eval return" in proc.stdout.strip().splitlines()[-1]
    # best.pt is the network that scored best_eval_return on the eval episodes; its held-out score comes from
    # other episodes (a selected checkpoint must be scored on data that did not select it)
    on_eval, best = evaluate_checkpoint(run / "ckpt/best.pt")
    heldout, _ = evaluate_checkpoint(run / "ckpt/best.pt", seed_offset=rl_utils.HELDOUT_SEED_OFFSET)
    assert on_eval.returns.mean() == pytest.approx(summary["best_eval_return"])
    assert best.step == summary["best_eval_step"]
    assert heldout.returns.mean() == pytest.approx(summary["best_heldout_return"])
    evaluated = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt/best.pt", "--eval-episodes", "2",
                           "--capture-video")
    assert "eval return" in evaluated.stdout
    assert list((run / "videos").glob("*.mp4"))  # RecordVideo of the evaluated agent


@pytest.mark.parametrize(("flags", "algo"), [
    (("--double", "--dueling"), "dqn_double_dueling_3step"),  # on top of CartPole's preset (3-step targets)
    (("--per", "--n-step", "1"), "dqn_per"),
    (("--num-envs", "3", "--tau", "0.05", "--target-network-frequency", "1"), "dqn_3step")])
def test_variants_run(tmp_path, flags, algo):
    run_script(TRAIN, "--runs-dir", tmp_path, *TINY, *flags)
    run = only_run_dir(tmp_path)
    assert run.name.split("__")[1] == algo  # the flags reached the algorithm
    config = json.loads((run / "config.json").read_text())
    typed = dict(zip(flags[::2], flags[1::2])) if "--num-envs" in flags else {}
    assert all(str(config[k[2:].replace("-", "_")]) == v for k, v in typed.items())
    tags = {r[1] for r in _rows(run)}
    assert ("charts/per_beta" in tags) == ("--per" in flags)


def test_pendulum_with_discrete_actions_and_help():
    help_text = run_script(TRAIN, "--help").stdout
    for flag in ("--double", "--dueling", "--per", "--n-step", "--discrete-actions", "--resume", "--eval-only"):
        assert flag in help_text


def test_pendulum_discretised_smoke(tmp_path):
    run_script(TRAIN, "--env-id", "Pendulum-v1", "--discrete-actions", "5", "--runs-dir", tmp_path, *TINY)


def test_atari_pong_runs_end_to_end(tmp_path):
    run_script(TRAIN, "--env-id", "ALE/Pong-v5", "--runs-dir", tmp_path, "--total-timesteps", "96",
               "--learning-starts", "64", "--buffer-size", "500", "--train-frequency", "4", "--gradient-steps", "1",
               "--batch-size", "8", "--eval-every", "0", "--eval-episodes", "1", "--target-return", "-100")
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 96 and float(summary["final_eval_return"]).is_integer()  # a whole game's score
    # the Nature CNN on the standard preprocessing: 4 stacked 84x84 grey frames, 6 actions
    state = rl_utils.open_checkpoint(run, Args)["q_net"]
    convs = [v.shape for v in state.values() if v.ndim == 4]
    assert convs[0] == (32, 4, 8, 8) and [v.shape for v in state.values() if v.ndim == 2][-1][0] == 6


def test_same_seed_same_run(tmp_path):
    for name in ("a", "b"):
        run_script(TRAIN, "--runs-dir", tmp_path / name, *TINY, "--per", "--n-step", "2")
    rows_a, rows_b = (_rows(only_run_dir(tmp_path / n)) for n in ("a", "b"))
    assert rows_a == rows_b and any(tag == "losses/td_loss" for _, tag, _ in rows_a)


def test_resume_continues_exactly(tmp_path):
    """2N steps straight (checkpoint at N) == N steps, then --resume from that checkpoint to 2N."""
    run_script(TRAIN, "--runs-dir", tmp_path / "straight", *TINY, "--checkpoint-every", "300", "--save-buffer")
    straight = only_run_dir(tmp_path / "straight")
    copy = tmp_path / "resumed" / straight.name
    shutil.copytree(straight, copy)
    (copy / "ckpt" / "latest.pt").unlink()
    run_script(TRAIN, "--resume", copy / "ckpt" / "step_300.pt")
    assert _rows(straight) == _rows(copy)
    a = torch.load(straight / "ckpt/latest.pt", weights_only=False)["q_net"]
    b = torch.load(copy / "ckpt/latest.pt", weights_only=False)["q_net"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_saves_a_checkpoint(tmp_path):
    code, out, err = interrupt_when([TRAIN, "--runs-dir", tmp_path, "--total-timesteps", "10000000", "--eval-every",
                                     "500", "--eval-episodes", "1", "--learning-starts", "200", "--train-frequency",
                                     "4", "--gradient-steps", "1"], "eval return")
    assert code == 0, err
    assert "interrupted at step" in out and "--resume" in out
    assert (only_run_dir(tmp_path) / "ckpt" / "latest.pt").exists()


@pytest.mark.slow
def test_dqn_solves_cartpole(tmp_path):
    """The headline: default DQN reaches a 10-episode greedy mean >= 475 on CartPole-v1 within 50k steps."""
    start = time.time()
    run_script(TRAIN, "--runs-dir", tmp_path, "--seed", "1", "--target-return", "475", timeout=400)
    steps, _ = rl_utils.first_crossing(only_run_dir(tmp_path), 475)
    assert steps is not None and steps <= 50_000
    assert time.time() - start < 300

"""Dynamic programming: PI and VI agree, match an exact linear solve, reproduce the notes, and the scripts run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classic_rl.dynamic_programming import dp, maze_env  # noqa: F401 - maze_env registers Maze4x4-v0

REPO_ROOT = Path(__file__).resolve().parents[1]
ENVS = [
    ("CliffWalking-v1", {}),
    ("FrozenLake-v1", {"is_slippery": False}),
    ("FrozenLake-v1", {"is_slippery": True}),
    ("FrozenLake8x8-v1", {"is_slippery": True}),
    ("Maze4x4-v0", {}),
]


def model(env_id: str, kwargs: dict) -> dp.TabularModel:
    return dp.model_from_env(gym.make(env_id, **kwargs))


def unique_greedy(Q: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """States whose best action beats the second best by more than tol."""
    top2 = np.sort(Q, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0] > tol


@pytest.mark.parametrize("env_id,kwargs", ENVS)
def test_policy_and_value_iteration_agree(env_id, kwargs):
    gamma, theta = 0.95, 1e-6
    m = model(env_id, kwargs)
    pi, vi = dp.policy_iteration(m, gamma, theta), dp.value_iteration(m, gamma, theta)
    # Each stops once a sweep changes V by < θ, which leaves it within γθ/(1−γ) of its fixed point.
    np.testing.assert_allclose(pi.V, vi.V, atol=2 * gamma * theta / (1 - gamma))
    exact = dp.exact_policy_value(m, pi.actions, gamma)
    unique = unique_greedy(dp.q_values(m, exact, gamma)) & ~m.terminal & ~m.unreachable
    assert unique.any()
    np.testing.assert_array_equal(pi.actions[unique], vi.actions[unique])


@pytest.mark.parametrize("env_id,kwargs", ENVS)
def test_final_policy_value_equals_exact_linear_solve(env_id, kwargs):
    gamma = 0.9
    m = model(env_id, kwargs)
    res = dp.policy_iteration(m, gamma, theta=1e-10)
    idx = np.arange(m.n_states)
    # The Bellman expectation equation of the final policy, solved directly: (I − γ T_π) V = R_π.
    exact = np.linalg.solve(np.eye(m.n_states) - gamma * m.T[idx, res.actions], m.R[idx, res.actions])
    np.testing.assert_allclose(res.V, exact, atol=1e-8)
    # ... and it is optimal: the Bellman optimality residual is zero.
    np.testing.assert_allclose(dp.q_values(m, exact, gamma).max(1), exact, atol=1e-8)


def test_cliffwalking_greedy_policy_is_the_13_step_edge_path():
    m = model("CliffWalking-v1", {})
    res = dp.value_iteration(m, 0.9, 1e-3)
    states, ret = dp.rollout_greedy(m, res.actions)
    assert states == [36, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35]  # up, 11 x right, then down to the goal
    assert ret == -13
    assert res.V[36] == pytest.approx(-(1 - 0.9**13) / (1 - 0.9), abs=1e-9)  # −7.458
    assert res.V[47] == 0.0  # the goal is terminal: gymnasium's moves out of it are never used


def test_notes_cliffwalking_model_reproduces_their_counts():
    m = dp.notes_cliff_walking_model()
    res = dp.policy_iteration(m, 0.9, 1e-3, split_ties=True)
    assert res.eval_sweeps == [60, 72, 44, 12, 1]
    assert m.start @ res.V == pytest.approx(-7.4581, abs=1e-4)
    assert res.V[0] == pytest.approx(-7.7123, abs=1e-4)  # the notes' "-7.71" is the top-left corner


def test_done_transitions_do_not_bootstrap():
    # A single state whose only action ends the episode with reward 1: V = 1 for any γ (the notes dropped (1-done)
    # and would get 1 / (1 − γ) from a self-loop).
    m = dp.model_from_P({0: {0: [(1.0, 0, 1.0, True)]}}, 1, 1, np.array([1.0]))
    assert dp.value_iteration(m, 0.9, 1e-9).V[0] == pytest.approx(1.0)
    assert dp.exact_policy_value(m, np.array([0]), 0.9)[0] == pytest.approx(1.0)


@st.composite
def random_mdp(draw):
    n_s, n_a = draw(st.integers(2, 6)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    P = {}
    for s in range(n_s):
        P[s] = {}
        for a in range(n_a):
            probs = rng.dirichlet(np.ones(n_s))
            P[s][a] = [(float(p), s2, float(rng.normal()), bool(rng.random() < 0.2)) for s2, p in enumerate(probs)]
    return dp.model_from_P(P, n_s, n_a, np.eye(n_s)[0])


@settings(max_examples=30, deadline=None)
@given(m=random_mdp(), gamma=st.floats(0.5, 0.95))
def test_random_mdps_pi_vi_and_exact_solve_agree(m, gamma):
    theta = 1e-9
    pi, vi = dp.policy_iteration(m, gamma, theta), dp.value_iteration(m, gamma, theta)
    bound = 2 * gamma * theta / (1 - gamma)
    np.testing.assert_allclose(pi.V, vi.V, atol=bound)
    np.testing.assert_allclose(dp.exact_policy_value(m, pi.actions, gamma), pi.V, atol=bound)


def run_script(args, tmp_path, timeout=120):
    return subprocess.run([sys.executable, *args, "--runs-dir", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_train_script_smoke(tmp_path):
    proc = run_script(["classic_rl/dynamic_programming/train.py", "--env-id", "FrozenLake-v1", "--is-slippery",
                       "false"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("final: FrozenLake-v1")
    (run_dir,) = list(tmp_path.iterdir())
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "metrics.csv", "summary.json", "values.npz", "PI_values.png", "VI_values.png"} <= names
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["PI/V_start"] == pytest.approx(0.9**5)  # 6 steps to the goal, reward 1 on the last
    assert summary["greedy_path_steps"] == 6
    values = np.load(run_dir / "values.npz")
    np.testing.assert_allclose(values["PI_V"], values["VI_V"], atol=1e-2)


def test_bench_script_smoke(tmp_path):
    proc = run_script(["classic_rl/dynamic_programming/bench.py", "--figures-dir", str(tmp_path / "fig")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "60, 72, 44, 12, 1" in out and out.strip().splitlines()[-1].startswith("final: CliffWalking-v1")
    assert (tmp_path / "fig" / "cliffwalking.png").is_file()
    assert len(list((tmp_path / "dp_bench").iterdir())) >= 5


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_non_discrete_env_is_one_clear_error(tmp_path, env_id):
    proc = run_script(["classic_rl/dynamic_programming/train.py", "--env-id", env_id], tmp_path, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dynamic programming needs a discrete observation space")
    assert env_id in lines[0] and "env.unwrapped.P" in lines[0]

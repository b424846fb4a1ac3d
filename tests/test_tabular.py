"""Tabular TD control: greedy policies reach the goal, Sarsa(0) == Sarsa, determinism, the maze env, scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

from classic_rl.dynamic_programming.maze_env import Maze4x4Env
from classic_rl.tabular.agents import ExpectedSarsa, QLearning, Sarsa, SarsaLambda, make_agent
from classic_rl.tabular.training import evaluate_greedy, make_tabular_env, train

REPO_ROOT = Path(__file__).resolve().parents[1]
METHODS = [("q-learning", "accumulating"), ("sarsa", "accumulating"), ("expected-sarsa", "accumulating"),
           ("sarsa-lambda", "accumulating"), ("sarsa-lambda", "replacing")]


def learn(env_id, algo, trace, seed=0, **kw):
    env = make_tabular_env(env_id, kw.pop("is_slippery", "auto"))
    agent = make_agent(algo, env.observation_space.n, env.action_space.n, alpha=kw["alpha"], gamma=kw["gamma"],
                       rng=np.random.default_rng(seed), lam=0.9, trace=trace)
    train(env, agent, kw["episodes"], seed, kw["epsilon"], kw.get("decay", 1.0), kw.get("eps_min", 0.0))
    return env, agent


@pytest.mark.parametrize("algo,trace", METHODS)
def test_greedy_policy_reaches_the_goal_on_the_maze(algo, trace):
    # The notes' settings: α .1, γ .9, ε .1 (λ .9), here 300 episodes instead of 100 so every method has converged.
    env, agent = learn("Maze4x4-v0", algo, trace, alpha=0.1, gamma=0.9, epsilon=0.1, episodes=300)
    assert evaluate_greedy(env, agent.Q, 1, seed=0)[0] == 1.0


@pytest.mark.parametrize("algo,trace", METHODS)
def test_greedy_policy_reaches_the_goal_on_deterministic_frozenlake(algo, trace):
    env, agent = learn("FrozenLake-v1", algo, trace, is_slippery="false", alpha=0.1, gamma=0.99, epsilon=1.0,
                       decay=0.995, eps_min=0.05, episodes=1500)
    assert evaluate_greedy(env, agent.Q, 1, seed=0)[0] == 1.0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), gamma=st.floats(0.5, 1.0), alpha=st.floats(0.01, 1.0))
def test_sarsa_lambda_zero_equals_sarsa_on_a_fixed_trajectory(seed, gamma, alpha):
    rng = np.random.default_rng(seed)
    n_s, n_a, T = 6, 3, 60
    # A fixed trajectory of (s, a, r, s', a', terminated), with episode ends sprinkled in.
    s = rng.integers(n_s, size=T + 1)
    a = rng.integers(n_a, size=T + 1)
    r = rng.normal(size=T)
    done = rng.random(T) < 0.1
    sarsa = Sarsa(n_s, n_a, alpha, gamma, np.random.default_rng(0))
    lam0 = {tr: SarsaLambda(n_s, n_a, alpha, gamma, np.random.default_rng(0), lam=0.0, trace=tr)
            for tr in ("accumulating", "replacing")}
    for t in range(T):
        for agent in (sarsa, *lam0.values()):
            agent.update(int(s[t]), int(a[t]), float(r[t]), int(s[t + 1]), int(a[t + 1]), bool(done[t]))
            if done[t]:
                agent.end_episode()
    for agent in lam0.values():
        np.testing.assert_array_equal(agent.Q, sarsa.Q)


def test_traces_accumulate_or_replace():
    for trace, expected in (("accumulating", 2.0), ("replacing", 1.0)):
        agent = SarsaLambda(2, 2, 0.5, 1.0, np.random.default_rng(0), lam=1.0, trace=trace)
        agent.update(0, 1, 0.0, 0, 1, False)
        agent.update(0, 1, 0.0, 0, 1, False)
        assert agent.E[0, 1] == expected


def test_targets_terminal_and_expected_sarsa():
    rng = np.random.default_rng(0)
    q, e = QLearning(2, 2, 1.0, 0.9, rng), ExpectedSarsa(2, 2, 1.0, 0.9, rng)
    for agent in (q, e):
        agent.Q[1] = [1.0, 3.0]
    assert q.target(0.5, 1, None, terminated=True) == 0.5  # no bootstrap after termination
    assert q.target(0.5, 1, None, terminated=False) == pytest.approx(0.5 + 0.9 * 3.0)
    e.epsilon = 0.2  # π(·|1) = [0.1, 0.9]
    assert e.target(0.0, 1, None, terminated=False) == pytest.approx(0.9 * (0.1 * 1.0 + 0.9 * 3.0))
    e.epsilon = 0.0  # greedy: Expected Sarsa's target is Q-learning's
    assert e.target(0.5, 1, None, False) == q.target(0.5, 1, None, False)


@pytest.mark.parametrize("algo", ["q-learning", "sarsa-lambda"])
def test_fixed_seed_gives_identical_q_tables(algo):
    _, a1 = learn("CliffWalking-v1", algo, "accumulating", seed=5, alpha=0.5, gamma=1.0, epsilon=0.1, episodes=30)
    _, a2 = learn("CliffWalking-v1", algo, "accumulating", seed=5, alpha=0.5, gamma=1.0, epsilon=0.1, episodes=30)
    _, a3 = learn("CliffWalking-v1", algo, "accumulating", seed=6, alpha=0.5, gamma=1.0, epsilon=0.1, episodes=30)
    np.testing.assert_array_equal(a1.Q, a2.Q)
    assert not np.array_equal(a1.Q, a3.Q)


def test_maze_env_matches_the_notes_and_renders():
    check_env(Maze4x4Env(), skip_render_check=True)
    env = gym.make("Maze4x4-v0", render_mode="ansi")
    s, _ = env.reset(seed=0)
    assert s == 0
    assert env.step(1)[:3] == (4, 0.0, False)  # down
    assert env.step(2)[:3] == (5, 0.0, False)  # right
    assert env.step(2)[:3] == (6, -1.0, True)  # right again: hell at (1, 2)
    text = env.render()
    assert "[H]" in text and text.count("\n") >= 4
    u = env.unwrapped
    assert u.P[14][0] == [(1.0, 10, 1.0, True)]  # up from (3, 2): paradise at (2, 2)
    assert u.P[8][2] == [(1.0, 9, -1.0, True)]  # right from (2, 0): hell at (2, 1)
    assert u.P[13][1] == [(1.0, 13, 0.0, False)]  # down at the bottom wall: stay in place
    assert u.P[0][3] == [(1.0, 0, 0.0, False)]  # left at the left wall
    assert u.P[10][0] == [(1.0, 10, 0.0, True)]  # terminal cells are absorbing
    rgb = gym.make("Maze4x4-v0", render_mode="rgb_array")
    rgb.reset(seed=0)
    img = rgb.render()
    assert img.shape == (160, 160, 3) and img.dtype == np.uint8


def run_script(args, tmp_path, timeout=120):
    return subprocess.run([sys.executable, *args, "--runs-dir", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_train_script_smoke(tmp_path):
    proc = run_script(["classic_rl/tabular/train.py", "--env-id", "Maze4x4-v0", "--algo", "sarsa-lambda", "--trace",
                       "replacing", "--episodes", "200", "--eval-episodes", "3"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("final: sarsa-lambda-replacing on Maze4x4-v0") and "run folder" in last
    (run_dir,) = list(tmp_path.iterdir())
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "metrics.csv", "summary.json", "q_table.npy", "learning_curve.png", "q_values.png"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["alpha"] == 0.1 and config["gamma"] == 0.9  # the maze preset
    assert np.load(run_dir / "q_table.npy").shape == (16, 4)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["episodes"] == 200 and 0.0 <= summary["greedy_success_rate"] <= 1.0


def test_readme_example_reaches_the_goal(tmp_path):
    """The README's command, as typed (default seed and preset), ends with a greedy policy that reaches the goal."""
    proc = run_script(["classic_rl/tabular/train.py", "--algo", "sarsa", "--env-id", "Maze4x4-v0"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = list(tmp_path.iterdir())
    assert json.loads((run_dir / "summary.json").read_text())["greedy_success_rate"] == 1.0


def test_example_6_6_smoke(tmp_path):
    proc = run_script(["classic_rl/tabular/example_6_6.py", "--runs", "2", "--episodes", "40", "--figures-dir",
                       str(tmp_path / "fig")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("final: Example 6.6 (2 runs x 40 episodes)")
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name != "fig"]
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "metrics.csv", "summary.json", "returns.npz", "q_tables.npz", "example_6_6.png",
            "greedy_paths.png"} <= names
    returns = np.load(run_dir / "returns.npz")
    assert returns["sarsa"].shape == (2, 40)
    assert (tmp_path / "fig" / "example_6_6.png").is_file()


@pytest.mark.parametrize("script", ["classic_rl/tabular/train.py", "classic_rl/tabular/example_6_6.py"])
def test_non_discrete_env_is_one_clear_error(tmp_path, script):
    proc = run_script([script, "--env-id", "Pendulum-v1"], tmp_path, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: tabular TD control needs a discrete observation space")
    assert "Pendulum-v1" in lines[0]


def test_success_rates_smoke(tmp_path):
    proc = run_script(["classic_rl/tabular/success_rates.py", "--seeds", "1", "--episodes-scale", "0.05"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("final: greedy success rates over 1 seeds")
    assert sum(line.startswith("| maze") or line.startswith("| FrozenLake") for line in lines) == 4
    (run_dir,) = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seeds"] == 1 and all(0 <= v <= 1 for k, v in summary.items() if "/" in k)

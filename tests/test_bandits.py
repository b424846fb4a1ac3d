"""Bandits: the regret bookkeeping, the notes' exact numbers, solver behaviour, and the script as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from classic_rl.bandits.bandits import (
    SOLVERS,
    BernoulliBandit,
    GaussianBandit,
    make_solver,
    notes_setting_regrets,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20))
def test_best_arm_is_argmax_of_true_probs(probs):
    bandit = BernoulliBandit(np.array(probs), np.random.default_rng(0))
    assert bandit.best_idx == int(np.argmax(probs))
    assert bandit.best_mean == max(probs)


def test_notes_setting_reproduced_draw_for_draw():
    # The notes report 25.5, 10.1, 70.5, 57.2 for (ε=0.01, ε=1/t, UCB c=1, Thompson) on their seed-1 bandit.
    got = notes_setting_regrets()
    assert got["eps-greedy"] == pytest.approx(25.5266, abs=1e-3)
    assert got["eps-decay"] == pytest.approx(10.1143, abs=1e-3)
    assert got["ucb"] == pytest.approx(70.4528, abs=1e-3)
    assert got["thompson"] == pytest.approx(57.1916, abs=1e-3)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["bernoulli", "gaussian"]), name=st.sampled_from(SOLVERS))
def test_regret_is_nonnegative_nondecreasing_and_bounded(seed, kind, name):
    rng = np.random.default_rng(seed)
    bandit = BernoulliBandit.random(5, rng) if kind == "bernoulli" else GaussianBandit.random(5, rng)
    regret = make_solver(name, bandit, rng).run(200)
    steps = np.diff(np.concatenate([[0.0], regret]))
    gaps = bandit.best_mean - bandit.means
    assert (steps >= -1e-12).all()
    # every per-step regret is the gap of some arm, so the total is at most T * max gap
    assert all(np.isclose(gaps, s).any() for s in steps)
    assert regret[-1] <= 200 * gaps.max() + 1e-9


@pytest.mark.parametrize("name", SOLVERS)
def test_every_solver_mostly_pulls_the_best_arm_on_an_easy_bandit(name):
    rng = np.random.default_rng(3)
    bandit = BernoulliBandit(np.array([0.2, 0.8, 0.5]), rng)
    solver = make_solver(name, bandit, rng)
    solver.run(2000)
    assert solver.counts.argmax() == 1
    assert solver.counts[1] / 2000 > 0.85


def test_thompson_posterior_counts_successes_and_failures():
    rng = np.random.default_rng(0)
    bandit = BernoulliBandit(np.array([0.3, 0.6]), rng)
    solver = make_solver("thompson", bandit, rng)
    solver.run(500)
    # Beta(1 + successes, 1 + failures): α + β − 2 = pulls per arm
    np.testing.assert_allclose(solver.a + solver.b - 2, solver.counts)


def test_same_seed_same_curve():
    def run():
        rng = np.random.default_rng(7)
        return make_solver("ucb", BernoulliBandit.random(10, rng), rng).run(300)

    np.testing.assert_array_equal(run(), run())


def test_script_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, "classic_rl/bandits/train.py", "--runs-dir", str(tmp_path), "--seeds", "2", "--steps", "300",
         "--log-every", "100"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("final:") and "run folder" in last
    (run_dir,) = list(tmp_path.iterdir())
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "metrics.csv", "summary.json", "regret.png", "regrets.npz"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["notes_setting_reproduced"]["eps-decay"] == pytest.approx(10.11, abs=0.01)
    assert "gaussian/thompson/final_regret_mean" in summary

"""The contract every RL train.py keeps (registry: benchmarks/run.py RL_SCRIPTS): --help lists its flags, a tiny
run writes summary.json with the keys the harness reads, and benchmarks/run.py can drive it."""

from __future__ import annotations

import json

import pytest

from benchmarks.run import ATARI_ENV, ATARI_ONLY, BOX_ONLY, CONTINUOUS_ENV, RL_SCRIPTS, Entry, run_entry
from tests.conftest import run_script


@pytest.mark.parametrize("name", sorted(RL_SCRIPTS))
def test_script_keeps_the_contract(name, tmp_path):
    script, tiny = RL_SCRIPTS[name]
    help_text = run_script(script, "--help").stdout
    for flag in ("--env-id", "--seed", "--total-timesteps", "--runs-dir", "--resume", "--device"):
        assert flag in help_text, (script, flag)
    env_id = CONTINUOUS_ENV if name in BOX_ONLY else ATARI_ENV if name in ATARI_ONLY else "CartPole-v1"
    row = run_entry(Entry(name, script, env_id, 512, 475, tiny), seed=2, out=tmp_path)
    summary = json.loads((tmp_path / "runs" / f"{env_id.replace('/', '-')}__{name}__2" / "summary.json").read_text())
    ours = () if name.startswith("sb3_") else ("best_heldout_return", "best_eval_step")  # SB3 keeps no best.pt
    for key in ("final_eval_return", "env_steps", "wall_time_s", *ours):
        assert key in summary, (script, key)
    low, high = (-2000, 0) if name in BOX_ONLY else (0, 500)  # Pendulum: about -16 per step at worst, 200 steps
    if name in ATARI_ONLY:  # Pong: -21 (every point lost) to 21
        low, high = -22, 21
    assert low < summary["final_eval_return"] <= high and summary["env_steps"] >= 512
    assert row["final_eval_return"] == summary["final_eval_return"] and row["sps"] > 0


@pytest.mark.parametrize("name", ["dqn", "ppo"])
def test_runs_report_progress_without_a_terminal(name, tmp_path, monkeypatch):
    """Under nohup, CI or a pipe there is no tqdm bar: plain progress lines keep a long run from looking hung."""
    script, tiny = RL_SCRIPTS[name]
    monkeypatch.setenv("DLRL_PROGRESS_SECONDS", "0")  # a line at every update (default: every 30 s)
    out = run_script(script, *tiny, "--total-timesteps", "2048", "--runs-dir", tmp_path).stdout
    lines = [line for line in out.splitlines() if line.startswith("progress: step ")]
    assert len(lines) >= 2 and "/2,048 (" in lines[-1] and "steps/s" in lines[-1], out[-1000:]

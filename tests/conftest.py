"""Shared test helpers: run a script as a user would, from the repo root, with the same interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, script, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def only_run_dir(runs_dir: Path) -> Path:
    dirs = [d for d in Path(runs_dir).iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.fixture
def script_runner():
    return run_script


def resume_matches_straight_run(script: str, tmp_path: Path, flags: tuple, at: int) -> tuple[dict, dict]:
    """Run ``script`` straight with ``--checkpoint-every at``; copy its folder, delete the copy's latest.pt and
    ``--resume`` the copy from ``step_<at>.pt``. Returns both final checkpoints (straight, resumed) to compare."""
    import shutil

    import torch

    run_script(script, "--runs-dir", tmp_path / "straight", "--run-name", "x", *flags, "--checkpoint-every", at)
    straight, resumed = tmp_path / "straight" / "x", tmp_path / "resumed" / "x"
    resumed.parent.mkdir()
    shutil.copytree(straight, resumed)
    (resumed / "ckpt" / "latest.pt").unlink()
    run_script(script, "--resume", resumed / "ckpt" / f"step_{at}.pt")
    return tuple(torch.load(d / "ckpt" / "latest.pt", weights_only=False) for d in (straight, resumed))

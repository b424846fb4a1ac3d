"""Shared test helpers: run a script as a user would, from the repo root, with the same interpreter."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
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


@pytest.fixture
def ray_tmp():
    """A short Ray temp dir of this test's own (unix socket paths are limited to ~107 bytes): every Ray process
    started under it has it on its command line, so leftovers can be found without touching other tests' Rays."""
    path = tempfile.mkdtemp(prefix="r", dir="/tmp")
    yield path
    subprocess.run(["pkill", "-9", "-f", path], check=False)
    shutil.rmtree(path, ignore_errors=True)


def ray_processes(path: str) -> list[str]:
    """Processes still running under ``path`` (a :func:`ray_tmp`): none after a run ended cleanly."""
    out = subprocess.run(["pgrep", "-af", path], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def ray_env(ray_tmp: str) -> dict:
    """The environment of a subprocess whose Ray lives under ``ray_tmp``."""
    return {**os.environ, "RAY_TMPDIR": ray_tmp}


def interrupt_when(argv: list[str], marker: str, env: dict | None = None, wait: float = 180
                   ) -> tuple[int, str, str]:
    """Run ``python *argv`` as a user would, press Ctrl-C (SIGINT) once a stdout line contains ``marker``, and
    return (exit code, stdout, stderr). A run that should save and exit cleanly on Ctrl-C ends with code 0."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, *map(str, argv)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + wait
    line = ""
    while marker not in line and time.time() < deadline:
        line = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def assert_ctrl_c_saves_and_stops_ray(argv: list, runs_dir: Path, ray_tmp: str) -> None:
    """A Ray run interrupted once its progress shows: exit 0, the resume hint, ``ckpt/latest.pt``, no Ray process
    left under ``ray_tmp``."""
    import time

    code, out, err = interrupt_when([*argv, "--runs-dir", runs_dir], "progress: step",
                                    env={**ray_env(ray_tmp), "DLRL_PROGRESS_SECONDS": "0"})
    assert code == 0, err[-3000:]
    assert "interrupted at step" in out and "--resume" in out
    assert (only_run_dir(runs_dir) / "ckpt" / "latest.pt").exists()
    time.sleep(1)
    assert ray_processes(ray_tmp) == []

"""Exact resume of the deep-learning scripts (issue 18): stopping a run inside an epoch (``--stop-after N`` takes the
same path as Ctrl-C: save ckpt/latest.pt between two optimiser steps) and resuming it gives, bit for bit on CPU,
the run that was never stopped: same final weights, same logged metrics."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

import dl_utils
import rl_utils
from d2l_notes import train as d2l_train
from swin_transformer import train as swin_train
from transformer_basic import train as transformer_train
from vit import train as vit_train

NOT_EXACT = {"charts/images_per_s", "charts/tokens_per_s"}  # wall-clock rates differ from run to run


def _main(monkeypatch, module, *argv) -> None:
    monkeypatch.setattr(sys, "argv", [module.__file__, *map(str, argv)])
    module.main()


def _metrics(run_dir: Path) -> list[tuple[str, str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [(r["step"], r["tag"], r["value"]) for r in csv.DictReader(f) if r["tag"] not in NOT_EXACT]


def _assert_same_run(full: Path, resumed: Path) -> None:
    a = rl_utils.load_checkpoint(full / "ckpt" / "latest.pt")
    b = rl_utils.load_checkpoint(resumed / "ckpt" / "latest.pt")
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["progress"]["step"] == b["progress"]["step"]
    assert _metrics(full) == _metrics(resumed)


def _check_resume(monkeypatch, tmp_path, module, args, stop_after) -> tuple[Path, Path]:
    _main(monkeypatch, module, *args, "--runs-dir", tmp_path, "--run-name", "full")
    _main(monkeypatch, module, *args, "--runs-dir", tmp_path, "--run-name", "part", "--stop-after", stop_after)
    part = tmp_path / "part"
    stopped = rl_utils.load_checkpoint(part / "ckpt" / "latest.pt")
    assert stopped["progress"]["step"] == stop_after
    _main(monkeypatch, module, "--resume", part)  # a run folder: its ckpt/latest.pt
    _assert_same_run(tmp_path / "full", part)
    return tmp_path / "full", part


@pytest.mark.parametrize("stop_after", [4, 6])  # inside epoch 1; exactly at the end of epoch 1
def test_d2l_stop_inside_an_epoch_then_resume_is_exact(monkeypatch, tmp_path, stop_after):
    args = ("--model", "lenet_bn", "--train-subset", 192, "--test-subset", 64, "--batch-size", 32, "--epochs", 2)
    _check_resume(monkeypatch, tmp_path, d2l_train, args, stop_after)


def test_vit_with_augmentation_and_drop_path_resume_is_exact(monkeypatch, tmp_path):
    args = ("--dataset", "digits", "--train-subset", 128, "--test-subset", 64, "--batch-size", 32, "--epochs", 2,
            "--drop-path", 0.1, "--warmup-epochs", 1)
    full, part = _check_resume(monkeypatch, tmp_path, vit_train, args, stop_after=3)
    best = rl_utils.load_checkpoint(part / "ckpt" / "best.pt")
    assert "vit_config" in best and best["classes"] == [str(i) for i in range(10)]


def test_swin_resume_is_exact(monkeypatch, tmp_path):
    args = ("--dataset", "digits", "--config", "micro", "--train-subset", 96, "--test-subset", 64, "--batch-size",
            32, "--epochs", 2, "--warmup-epochs", 1)
    _check_resume(monkeypatch, tmp_path, swin_train, args, stop_after=4)


def test_transformer_resume_is_exact(monkeypatch, tmp_path):
    args = ("--task", "copy", "--n-train", 512, "--n-valid", 32, "--n-test", 32, "--batch-size", 32, "--max-steps",
            24, "--eval-every", 8, "--eval-examples", 16, "--time-budget", 0, "--cooldown-steps", 0, "--d-model", 32,
            "--d-ff", 64, "--n-heads", 2, "--n-enc-layers", 1, "--n-dec-layers", 1, "--dropout", 0.1, "--warmup", 10)
    _check_resume(monkeypatch, tmp_path, transformer_train, args, stop_after=19)  # 16 batches per pass


def test_image_loader_state_resumes_the_batch_sequence():
    x = torch.randint(0, 255, (50, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(50)

    def loader():
        return dl_utils.ImageLoader(x, y, 8, shuffle=True, seed=3, augment=dl_utils.Augment(degrees=10, seed=1),
                                    max_batches=5)

    full, first = loader(), loader()
    ref = [b for _ in range(3) for b in full]  # three epochs of five batches
    assert len(ref) == 15 and full.state_dict()["epoch"] == 3 and full.state_dict()["position"] == 0
    it = iter(first)
    taken = [next(it) for _ in range(2)]
    state = first.state_dict()
    assert state["epoch"] == 0 and state["position"] == 2
    second = loader()
    second.load_state_dict(state)
    rest = [b for b in second] + [b for _ in range(2) for b in second]
    for (xa, ya), (xb, yb) in zip(ref, taken + rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_resume_refuses_another_scripts_checkpoint(monkeypatch, tmp_path):
    _main(monkeypatch, d2l_train, "--model", "lenet_modern", "--train-subset", 32, "--test-subset", 32, "--epochs",
          1, "--runs-dir", tmp_path, "--run-name", "d2l")
    with pytest.raises(rl_utils.UsageError, match="was written by d2l_notes/train.py"):
        _main(monkeypatch, vit_train, "--resume", tmp_path / "d2l")

"""Figures for the README: the SW-MSA mask of every window, the relative-position index, and the learned
relative-position bias of every head (the original repo's "Test01/Test02" scripts, done properly).

    python swin_transformer/visualize.py                                   # mask + index figures; bias of an
                                                                           # untrained model
    python swin_transformer/visualize.py --checkpoint runs/X/ckpt/best.pt  # bias learned by a trained model, and
                                                                           # the run's learning curve + confusion
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from swin_transformer.model import (  # noqa: E402
    SwinTransformer,
    config_from_dict,
    get_config,
    relative_position_index,
    shift_attention_mask,
    shift_region_labels,
)


@dataclass
class Args:
    """Draw the shifted-window mask, the relative-position index and the learned relative-position bias."""

    LIMITS = {"size": (1, None), "window": (1, None), "shift": (1, None), "index_window": (1, None)}

    size: int = 8
    """side of the feature map for the mask figure (8 = stage 0 of the mnist config)"""
    window: int = 4
    """window size M for the mask figure"""
    shift: int = 2
    """shift for the mask figure (the model uses M // 2)"""
    index_window: int = 3
    """window size of the annotated relative-position-index figure (small, so the numbers are readable)"""
    checkpoint: str = ""
    """one of our run checkpoints (ckpt/best.pt) whose learned bias tables to draw; empty = an untrained model"""
    out_dir: str = ""
    """where the PNGs go; empty = runs/<run>/figures for --checkpoint, else runs/swin_visualize (the README's
    figures in swin_transformer/figures are refreshed by `make bench-swin` only)"""


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_shift_mask(size: int, window: int, shift: int, out: Path) -> Path:
    """Left: the rolled map's 9 regions with the window grid. Right: the [N, N] mask of each window."""
    plt = _plt()
    if size % window or not 0 < shift < window:
        raise rl_utils.UsageError(f"need size % window == 0 and 0 < shift < window, got {size}, {window}, {shift}")
    labels = shift_region_labels(size, size, window, shift).numpy()  # [H, W]
    mask = shift_attention_mask(size, size, window, shift)  # [nW, N, N]
    per_side = size // window
    fig = plt.figure(figsize=(3.6 + 2.4 * per_side, 2.4 * per_side + 0.6))
    grid = fig.add_gridspec(per_side, per_side + 2, width_ratios=[1.5, 0.1] + [1] * per_side)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(labels, cmap="tab10", vmin=0, vmax=9)
    for i in range(size):
        for j in range(size):
            ax.text(j, i, str(labels[i, j]), ha="center", va="center", fontsize=5 if size > 10 else 7)
    for k in range(1, per_side):
        ax.axhline(k * window - 0.5, color="black", lw=2)
        ax.axvline(k * window - 0.5, color="black", lw=2)
    ax.set_title(f"rolled {size}x{size} map by -{shift}: regions\n(black lines: {window}x{window} windows)",
                 fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    for w in range(per_side * per_side):
        a = fig.add_subplot(grid[w // per_side, 2 + w % per_side])
        a.imshow(mask[w].numpy() == 0, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        blocked = int((mask[w] != 0).sum())
        a.set_title(f"window {w} (row {w // per_side}, col {w % per_side})\n{blocked} of {window ** 4} pairs "
                    f"masked", fontsize=7)
        a.set_xticks([])
        a.set_yticks([])
        if w % per_side == 0:
            a.set_ylabel("query token", fontsize=7)
        if w // per_side == per_side - 1:
            a.set_xlabel("key token (white: may attend)", fontsize=7)
    fig.suptitle("SW-MSA attention mask: tokens attend only within their region (0 = allowed, -100 = blocked)",
                 fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_relative_index(window: int, out: Path) -> Path:
    """The [N, N] relative-position index of a small window, annotated; equal offsets share an index."""
    plt = _plt()
    index = relative_position_index(window).numpy()
    n = window * window
    fig, ax = plt.subplots(figsize=(1.2 + 0.42 * n, 1.0 + 0.42 * n))
    ax.imshow(index, cmap="viridis")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(index[i, j]), ha="center", va="center", fontsize=7, color="white")
    ticks = [f"({i // window},{i % window})" for i in range(n)]
    ax.set_xticks(range(n), ticks, rotation=90, fontsize=7)
    ax.set_yticks(range(n), ticks, fontsize=7)
    ax.set_xlabel("key (row, col)")
    ax.set_ylabel("query (row, col)")
    ax.set_title(f"relative_position_index, M={window}: (dr+M-1)(2M-1) + (dc+M-1)\n"
                 f"{(2 * window - 1) ** 2} table rows shared by {n * n} pairs", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_bias_tables(model: SwinTransformer, out: Path, title: str) -> Path:
    """One row per block with a window > 1, one panel per head: table[:, h] as the (2M-1) x (2M-1) grid of
    offsets (dr, dc); the centre is offset (0, 0), i.e. a token attending to itself."""
    plt = _plt()
    rows = []
    for s, stage in enumerate(model.layers):
        for b, block in enumerate(stage.blocks):
            if block.window > 1:
                rows.append((f"stage {s} block {b} ({'SW' if block.shift else 'W'}-MSA, M={block.window})",
                             block.attn.relative_position_bias_table.detach().cpu(), block.window))
    heads = max(t.shape[1] for _, t, _ in rows)
    fig, axes = plt.subplots(len(rows), heads, figsize=(1.3 * heads + 0.6, 1.35 * len(rows) + 0.6), squeeze=False)
    for r, (name, table, window) in enumerate(rows):
        side = 2 * window - 1
        for h in range(heads):
            ax = axes[r][h]
            ax.set_xticks([])
            ax.set_yticks([])
            if h >= table.shape[1]:
                ax.axis("off")
                continue
            grid = table[:, h].view(side, side).numpy()
            lim = float(np.abs(grid).max()) or 1.0
            ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(f"h{h} ±{lim:.2f}", fontsize=6)
            if h == 0:
                ax.set_ylabel(name.replace(" (", "\n("), fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    args = rl_utils.parse_args(Args)
    out_dir = Path(args.out_dir) if args.out_dir else (
        Path(args.checkpoint).resolve().parent.parent / "figures" if args.checkpoint else Path("runs/swin_visualize"))
    ckpt = rl_utils.load_checkpoint(args.checkpoint) if args.checkpoint else None  # a bad path fails before any
    if ckpt is not None and "swin_config" not in ckpt:                              # figure is written
        raise rl_utils.UsageError(f"{args.checkpoint} is not a swin_transformer/train.py checkpoint")
    if args.size % args.window or not args.shift < args.window:
        raise rl_utils.UsageError(f"need --size divisible by --window and --shift < --window, got {args.size}, "
                                  f"{args.window}, {args.shift}")
    paths = [plot_shift_mask(args.size, args.window, args.shift, out_dir / "shift_mask.png"),
             plot_relative_index(args.index_window, out_dir / "relative_position_index.png")]
    if ckpt is not None:
        model = SwinTransformer(config_from_dict(ckpt["swin_config"]))
        model.load_state_dict(ckpt["model"])
        run_dir = Path(args.checkpoint).resolve().parent.parent
        title = (f"learned relative position bias per head (red +, blue -; centre = offset 0), {run_dir.name}, "
                 f"test acc {ckpt.get('metric', float('nan')):.4f}")
        dataset = ckpt.get("args", {}).get("dataset", "run")
        for name in ("learning_curve.png", "confusion_matrix.png"):  # the run's own plots, for the README
            if (run_dir / name).is_file():
                out_dir.mkdir(parents=True, exist_ok=True)
                paths.append(Path(shutil.copyfile(run_dir / name, out_dir / f"{dataset}_{name}")))
    else:
        torch.manual_seed(0)
        model = SwinTransformer(get_config("mnist"))
        title = "relative position bias of an UNTRAINED model (trunc-normal .02); pass --checkpoint for a trained one"
    paths.append(plot_bias_tables(model, out_dir / "relative_position_bias.png", title))
    print("figures: " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    rl_utils.run_main(main)

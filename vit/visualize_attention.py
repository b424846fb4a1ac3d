"""Where does the class token look? Attention maps and attention rollout (Abnar & Zuidema 2020) of a ViT.

For every block the written-out attention path returns ``softmax(q k^T / sqrt(d))`` per head; the class token's
row, reshaped to the patch grid, is that block's attention map. Rollout follows the attention through the
residual stream: ``A_l <- (I + mean_heads(A_l)) / 2`` renormalised, multiplied over all blocks, class-token row.

    # a model trained by vit/train.py, on test digits of its dataset
    python vit/visualize_attention.py --model runs/<run>/ckpt/best.pt --image mnist5k  # -> beside the run
    # a pretrained ImageNet ViT on a real photo (needs internet once, or a local save_pretrained directory)
    python vit/visualize_attention.py --model google/vit-base-patch16-224 --image chelsea
    # offline, mechanics only: an untrained ViT-Ti/16 (its maps mean nothing, the figure says so)
    python vit/visualize_attention.py --random-init vit_tiny_patch16_224 --image chelsea
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import dl_utils  # noqa: E402
import rl_utils  # noqa: E402
from vit.classify import load_image  # noqa: E402
from vit.model import CONFIGS, VisionTransformer, attention_rollout, get_config, pooled_attention  # noqa: E402


@dataclass
class Args:
    """Plot per-block class-token attention and attention rollout of a ViT for a photo or test images."""

    model: str = ""
    """our checkpoint (ckpt/best.pt), a timm state_dict file, a Hugging Face dir or id, or a timm vit_* name"""
    random_init: str = ""
    """instead of --model: an untrained named config (shows the mechanics only)"""
    image: str = "chelsea"
    """a photo (file, or astronaut/chelsea/coffee/rocket/china/flower) or a dataset name (mnist5k, digits, ...) for
    a grid of its test images"""
    num_images: int = 8
    """test images to show when --image is a dataset"""
    head_fusion: str = "mean"
    """how rollout merges the heads of a block: mean or max"""
    out: str = ""
    """output png; empty = beside the run for one of our checkpoints (runs/<run>/attention_rollout.png), else
    runs/vit_attention/attention_rollout.png (the README figures are refreshed by `make bench-vit` only)"""
    seed: int = 0
    """seed of --random-init weights"""
    torch_threads: int = 1
    """torch CPU threads"""


def photo_tensor(image, size: int, channels: int, mean, std) -> torch.Tensor:
    """Centre-crop to a square, resize to ``size``, scale to [0, 1], normalise: [1, C, size, size]."""
    w, h = image.size
    s = min(w, h)
    image = image.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((size, size))
    x = torch.from_numpy(np.array(image.convert("L" if channels == 1 else "RGB"))).float().div(255.0)
    x = x.view(size, size, -1).permute(2, 0, 1)[None]  # [1, C, H, W]
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


def default_out(model: str) -> Path:
    """Where a figure goes without --out: never into the repository's tracked figures."""
    source = Path(model) if model else None
    if source is not None and source.is_file() and source.parent.name == "ckpt":  # runs/<run>/ckpt/best.pt
        return source.parent.parent / "attention_rollout.png"
    return Path("runs") / "vit_attention" / "attention_rollout.png"


def to_grid(values: torch.Tensor, grid: int, size: int) -> np.ndarray:
    """[N] patch scores -> [size, size] map (bilinear upsampling of the grid x grid picture)."""
    g = values.view(1, 1, grid, grid)
    return F.interpolate(g, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def main() -> None:
    args = rl_utils.parse_args(Args)
    dl_utils.check_choice("head fusion", args.head_fusion, ["mean", "max"])
    torch.set_num_threads(max(1, args.torch_threads))
    if bool(args.model) == bool(args.random_init):
        raise rl_utils.UsageError("give exactly one of --model and --random-init")
    if args.random_init:
        dl_utils.check_choice("model config", args.random_init, list(CONFIGS))
        torch.manual_seed(args.seed)
        cfg = get_config(args.random_init)
        model, mean, std = VisionTransformer(cfg).eval(), [0.5] * cfg.in_chans, [0.5] * cfg.in_chans
        classes, label = [str(i) for i in range(cfg.num_classes)], f"{args.random_init} (UNTRAINED: mechanics only)"
    else:
        from vit import pretrained as hub

        pre = hub.load(args.model)
        source = Path(args.model)
        label = source.parent.parent.name if source.parent.name == "ckpt" else source.name  # runs/<run>/ckpt/x.pt
        model, mean, std, classes = pre.model, pre.mean, pre.std, pre.classes
    cfg = model.cfg
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if args.image in dl_utils.ALL_DATASETS:  # a grid of test images of a dataset
        data = dl_utils.load_dataset(args.image).subset(0, args.num_images)
        x = dl_utils.to_float(data.test_x, cfg.image_size if cfg.image_size != data.image_shape[1] else 0, mean,
                              std)
        shown = dl_utils.to_float(data.test_x, cfg.image_size)  # [n, C, H, W] in [0, 1] for display
        titles = [f"true {data.classes[int(t)]}" for t in data.test_y]
    else:
        image, source = load_image(args.image)
        x = photo_tensor(image, cfg.image_size, cfg.in_chans, mean, std)
        shown = photo_tensor(image, cfg.image_size, cfg.in_chans, [0.0] * cfg.in_chans, [1.0] * cfg.in_chans)
        titles = [source]
    maps = model.attention_maps(x)  # depth x [n, heads, T, T]
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    # The classifier reads the class token ("token" pooling) or the mean of the patch tokens ("avg").
    query = "mean" if cfg.global_pool == "avg" else "cls"
    who = "mean-patch" if query == "mean" else "CLS"
    roll = attention_rollout(maps, args.head_fusion, num_prefix_tokens=model.num_prefix_tokens, query=query)
    grid, size, p = cfg.grid_size, cfg.image_size, model.num_prefix_tokens
    n = len(x)
    cols = min(cfg.depth, 6)
    if n == 1:  # one photo: image, rollout overlay, and the class token's attention in each block
        rows = 1 + (cfg.depth + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 2.1 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        img = shown[0].permute(1, 2, 0).squeeze(-1).numpy()
        axes[0, 0].imshow(img, cmap="gray" if cfg.in_chans == 1 else None)
        axes[0, 0].set_title(f"input {size}px", fontsize=8)
        axes[0, 1].imshow(img, cmap="gray" if cfg.in_chans == 1 else None)
        axes[0, 1].imshow(to_grid(roll[0], grid, size), cmap="jet", alpha=0.5)
        axes[0, 1].set_title("attention rollout", fontsize=8)
        axes[0, 2].imshow(to_grid(roll[0], grid, size), cmap="viridis")
        axes[0, 2].set_title(f"rollout ({grid}x{grid} patches)", fontsize=8)
        if classes and len(classes) > int(pred[0]):
            axes[0, 3 if cols > 3 else 2].set_title(f"pred: {classes[int(pred[0])][:24]}", fontsize=8)
        for layer, attn in enumerate(maps):
            ax = axes[1 + layer // cols, layer % cols]
            ax.imshow(pooled_attention(attn, p, query)[0].view(grid, grid).numpy(), cmap="viridis")
            ax.set_title(f"block {layer + 1}: {who} attention", fontsize=7)
    else:  # a dataset: each test image, its rollout, the last block's CLS attention
        fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.2), squeeze=False)
        for i in range(n):
            img = shown[i].permute(1, 2, 0).squeeze(-1).numpy()
            axes[0, i].imshow(img, cmap="gray" if cfg.in_chans == 1 else None)
            axes[0, i].set_title(f"{titles[i]}\npred {classes[int(pred[i])]}", fontsize=7)
            axes[1, i].imshow(img, cmap="gray" if cfg.in_chans == 1 else None)
            axes[1, i].imshow(to_grid(roll[i], grid, size), cmap="jet", alpha=0.5)
            axes[2, i].imshow(pooled_attention(maps[-1], p, query)[i].view(grid, grid).numpy(), cmap="viridis")
            for r in range(3):
                axes[r, i].axis("off")
        axes[1, 0].set_title("rollout", fontsize=7, loc="left")
        axes[2, 0].set_title(f"last block {who} attn", fontsize=7, loc="left")
    fig.suptitle(f"{label}: {cfg.depth} blocks, {cfg.num_heads} heads, patch {cfg.patch_size}, rollout of the "
                 f"{who} query", fontsize=9)
    fig.tight_layout()
    out = Path(args.out) if args.out else default_out(args.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    peak = int(roll[0].argmax())
    print(f"attention rollout of {n} image(s) -> {out} (first image: rollout peaks at patch row {peak // grid}, "
          f"column {peak % grid} of {grid}x{grid}; predicted {classes[int(pred[0])] if classes else int(pred[0])})")


if __name__ == "__main__":
    rl_utils.run_main(main)

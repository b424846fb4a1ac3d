"""Fine-tune a pretrained ViT on a new classification task, the recipe of the paper's section 4 / appendix B.1.3
and google-research/vision_transformer: a new zero-initialised head, the position embedding resized to the new
resolution, SGD with momentum 0.9, no weight decay, linear warm-up + cosine decay per step, gradient-norm
clipping at 1, a budget in optimiser steps.

    # The official GPU recipe (not measured here): ViT-B/16 pre-trained on ImageNet-21k -> CIFAR-10 at 384 px,
    # batch 512, lr 0.03, 500 warm-up, 10,000 steps; the vision_transformer README reports 99.0% test accuracy.
    python vit/finetune.py --pretrained google/vit-base-patch16-224-in21k --dataset cifar10 --data-dir ~/data \\
        --image-size 384 --batch-size 512 --lr 0.03 --warmup-steps 500 --steps 10000

    # Offline CPU demonstration (the README's measured numbers): pre-train on MNIST-5000, save it in Hugging Face
    # format, fine-tune on scikit-learn's 8x8 digits upsampled to 28 px.
    python vit/train.py --save-hf --run-name pretrain_mnist5k
    python vit/finetune.py --pretrained runs/pretrain_mnist5k/hf_model --dataset digits

``--pretrained`` takes a Hugging Face id, a local save_pretrained directory, a timm name (``vit_base_patch16_224``
with its pretrained tag) or a local file (our ckpt/best.pt, or a timm-named state_dict). The run folder is
``runs/{dataset}__finetune_{name}__{seed}__{time}`` with the same contents as vit/train.py's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import dl_utils  # noqa: E402
import rl_utils  # noqa: E402
from vit import pretrained as hub  # noqa: E402
from vit.train import train  # noqa: E402


@dataclass
class Args(dl_utils.ImageArgs):
    """Fine-tune a pretrained ViT (new head, resized position embedding, SGD + momentum, warm-up + cosine,
    gradient clipping)."""

    pretrained: str = ""
    """Hugging Face id or local save_pretrained dir, timm vit_* name, or a local checkpoint / timm state_dict file"""
    dataset: str = "digits"
    """mnist5k, digits, mnist, fashion-mnist, cifar10, imagefolder"""
    data_dir: str = ""
    """folder for mnist/fashion-mnist (idx files), cifar10 (cifar-10-batches-py) or imagefolder (required)"""
    image_size: int = 0
    """fine-tuning resolution; the position embedding is resized to it (0 = the pretrained model's)"""
    num_heads: int = 0
    """heads of a timm state_dict file (not stored in the weights; 0 = the paper config of that width)"""
    steps: int = 300
    """optimiser steps (official recipe: 10,000)"""
    batch_size: int = 64
    """minibatch size (official recipe: 512)"""
    lr: float = 0.01
    """peak SGD learning rate (official recipe: 0.03 at batch 512)"""
    momentum: float = 0.9
    """SGD momentum"""
    weight_decay: float = 0.0
    """weight decay (the official recipe uses none)"""
    warmup_steps: int = 30
    """linear warm-up steps (official recipe: 500)"""
    min_lr_ratio: float = 0.0
    """final learning rate as a fraction of --lr"""
    grad_clip: float = 1.0
    """clip the global gradient norm to this (official recipe: 1)"""
    label_smoothing: float = 0.0
    """label smoothing (the official recipe uses none)"""
    freeze_backbone: bool = False
    """train only the new head (a linear probe)"""
    drop_path: float = 0.0
    """stochastic depth during fine-tuning"""
    degrees: float = 0.0
    """augmentation: random rotation in +-degrees"""
    translate: float = 0.0
    """augmentation: random translation, fraction of the image side"""
    scale_min: float = 1.0
    """augmentation: smallest random zoom"""
    scale_max: float = 1.0
    """augmentation: largest random zoom"""
    shift: int = 0
    """augmentation: RandomCrop-style shift with zero padding (CIFAR: 4)"""
    flip: float = 0.0
    """augmentation: horizontal flip probability (natural images: 0.5)"""
    augment: bool = True
    """use the augmentation above"""
    normalize: bool = True
    """normalise inputs with the pretrained model's mean/std (as it was trained)"""
    amp: bool = True
    """mixed precision on CUDA; no effect on CPU"""

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "steps": (1, None), "batch_size": (1, None), "lr": (0, None), "momentum": (0, 1), "weight_decay": (0, None),
        "warmup_steps": (0, None), "min_lr_ratio": (0, 1), "label_smoothing": (0, 1), "grad_clip": (0, None),
        "drop_path": (0, 1), "flip": (0, 1), "shift": (0, None), "image_size": (0, None)}


def adapt_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey images for an RGB model: repeat the channel (uint8 [N, 1, H, W] -> [N, 3, H, W])."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    raise rl_utils.UsageError(f"the data has {x.shape[1]} channels but the model expects {channels}")


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args)
    if not args.pretrained:
        raise rl_utils.UsageError("--pretrained is required (a Hugging Face id or dir, a timm name or a file)")
    dl_utils.check_choice("dataset", args.dataset, list(dl_utils.ALL_DATASETS))
    device = rl_utils.setup(args)
    data = dl_utils.load_dataset(args.dataset, args.data_dir).subset(args.train_subset, args.test_subset)

    pre = hub.load(args.pretrained, args.num_heads)
    model = pre.model
    pretrained_size = model.cfg.image_size
    size = args.image_size or pretrained_size
    if size % model.cfg.patch_size:
        raise rl_utils.UsageError(f"--image-size {size} is not a multiple of the patch size {model.cfg.patch_size}")
    model.resize_pos_embed(size)  # paper 3.2: 2-D interpolation of the learned position embedding
    model.reset_head(data.num_classes)  # zero-initialised, new classes
    for block in model.blocks:  # stochastic depth for fine-tuning (0 = off, the official recipe)
        block.drop_path1.p = block.drop_path2.p = args.drop_path
    if args.freeze_backbone:
        for name, p in model.named_parameters():
            p.requires_grad = name.startswith("head.")
    model.to(device)
    data.train_x = adapt_channels(data.train_x, model.cfg.in_chans)
    data.test_x = adapt_channels(data.test_x, model.cfg.in_chans)
    # train() normalises with the training set's statistics; a pretrained model wants its own.
    norm = (pre.mean[:model.cfg.in_chans], pre.std[:model.cfg.in_chans]) if args.normalize else None
    optimizer = dl_utils.make_optimizer(model, "sgd", lr=args.lr, weight_decay=args.weight_decay,
                                        momentum=args.momentum)
    source = Path(args.pretrained.rstrip("/"))
    if source.parent.name == "ckpt":  # runs/<run>/ckpt/best.pt -> the run's name
        source = source.parent.parent
    name = "finetune_" + source.name.replace("/", "-")
    extra = dict(pretrained=args.pretrained, pretrained_format=pre.source, pretrained_image_size=pretrained_size,
                 warmup_steps=args.warmup_steps, freeze_backbone=args.freeze_backbone)
    summary = train(args, model, data, optimizer, device, name, ckpt,
                    total_steps=args.steps, extra_summary=extra, norm=norm)
    if summary:
        print(f"test acc {summary['test_acc']:.4f} (best {summary['best_test_acc']:.4f}; fine-tuned "
              f"{args.pretrained} on {args.dataset} at {size}px, {summary['steps']} steps, "
              f"{summary['wall_time_s']:.0f}s) | run folder: {summary['run_dir']}")


if __name__ == "__main__":
    rl_utils.run_main(main)

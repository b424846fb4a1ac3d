"""The classic CNNs of d2l chapters 6-7 (zh.d2l.ai / d2l.ai), written as the book builds them, plus a registry.

- LeNet: LeCun et al., "Gradient-based learning applied to document recognition", 1998.
- AlexNet: Krizhevsky, Sutskever, Hinton, "ImageNet classification with deep CNNs", NeurIPS 2012.
- VGG: Simonyan, Zisserman, "Very deep convolutional networks for large-scale image recognition", ICLR 2015.
- NiN: Lin, Chen, Yan, "Network in network", ICLR 2014.
- GoogLeNet: Szegedy et al., "Going deeper with convolutions", CVPR 2015.
- BatchNorm: Ioffe, Szegedy, "Batch normalization", ICML 2015 (our from-scratch layer is in basics.py).
- ResNet: He et al., "Deep residual learning for image recognition", CVPR 2016.
- DenseNet: Huang et al., "Densely connected convolutional networks", CVPR 2017.

Every model is an ``nn.Sequential`` of blocks so that d2l's shape walk (``for layer in net: X = layer(X)``) works,
and its first fully connected layer is ``nn.LazyLinear`` (as in d2l-en v1) so that any ``--resize`` works:
call :func:`build` (which materialises the lazy layer with one dummy image and applies d2l's Xavier init).

``width`` multiplies every channel count and hidden size (d2l's VGG "ratio 4" is width 0.25 on the convs); at
width 1 each net is exactly the book's. Small widths and inputs are what let the big nets train on a 2-core CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from d2l_notes.basics import BatchNorm


def _scale(width: float) -> Callable[[int], int]:
    return lambda c: max(1, int(round(c * width)))


# ----------------------------------------------------------------------------------------------------------------
# LeNet (d2l 6.6) and LeNet with batch norm (d2l 8.5)
# ----------------------------------------------------------------------------------------------------------------
def lenet(width: float = 1.0, num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """LeNet-5 as in d2l: conv5(pad 2) -> sigmoid -> avgpool2 -> conv5 -> sigmoid -> avgpool2 -> 120 -> 84 -> 10."""
    c = _scale(width)
    return nn.Sequential(
        nn.Conv2d(in_channels, c(6), kernel_size=5, padding=2), nn.Sigmoid(),  # [B, 6, 28, 28]
        nn.AvgPool2d(kernel_size=2, stride=2),  # [B, 6, 14, 14]
        nn.Conv2d(c(6), c(16), kernel_size=5), nn.Sigmoid(),  # [B, 16, 10, 10]
        nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),  # [B, 400]
        nn.LazyLinear(c(120)), nn.Sigmoid(),
        nn.Linear(c(120), c(84)), nn.Sigmoid(),
        nn.Linear(c(84), num_classes),
    )


def lenet_modern(width: float = 1.0, num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """d2l 6.6 exercise: the same LeNet with ReLU and max-pooling, which trains far faster than sigmoid + avg."""
    c = _scale(width)
    return nn.Sequential(
        nn.Conv2d(in_channels, c(6), kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=2, stride=2),
        nn.Conv2d(c(6), c(16), kernel_size=5), nn.ReLU(),
        nn.MaxPool2d(kernel_size=2, stride=2), nn.Flatten(),
        nn.LazyLinear(c(120)), nn.ReLU(),
        nn.Linear(c(120), c(84)), nn.ReLU(),
        nn.Linear(c(84), num_classes),
    )


def _lenet_bn(bn2d: Callable[[int], nn.Module], bn1d: Callable[[int], nn.Module], width: float, num_classes: int,
              in_channels: int) -> nn.Sequential:
    # d2l 8.5: BN after each conv / linear and *before* the sigmoid. No padding here, so 28 -> 24 -> 12 -> 8 -> 4.
    c = _scale(width)
    return nn.Sequential(
        nn.Conv2d(in_channels, c(6), kernel_size=5), bn2d(c(6)), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(c(6), c(16), kernel_size=5), bn2d(c(16)), nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2), nn.Flatten(),
        nn.LazyLinear(c(120)), bn1d(c(120)), nn.Sigmoid(),
        nn.Linear(c(120), c(84)), bn1d(c(84)), nn.Sigmoid(),
        nn.Linear(c(84), num_classes),
    )


def lenet_bn(width: float = 1.0, num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """LeNet with our from-scratch :class:`d2l_notes.basics.BatchNorm`."""
    return _lenet_bn(lambda n: BatchNorm(n, num_dims=4), lambda n: BatchNorm(n, num_dims=2), width, num_classes,
                     in_channels)


def lenet_bn_torch(width: float = 1.0, num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """The concise version: the same net with ``nn.BatchNorm2d`` / ``nn.BatchNorm1d``."""
    return _lenet_bn(nn.BatchNorm2d, nn.BatchNorm1d, width, num_classes, in_channels)


# ----------------------------------------------------------------------------------------------------------------
# AlexNet (d2l 7.1)
# ----------------------------------------------------------------------------------------------------------------
def alexnet(width: float = 1.0, num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """AlexNet for 1-channel 224×224 input (d2l): 5 convs, 3 max-pools, two 4096 dropout layers."""
    c = _scale(width)
    return nn.Sequential(
        # A big 11x11 window with stride 4 shrinks the image fast: [B, 96, 54, 54] at 224.
        nn.Conv2d(in_channels, c(96), kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),  # [B, 96, 26, 26]
        nn.Conv2d(c(96), c(256), kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),  # [B, 256, 12, 12]
        nn.Conv2d(c(256), c(384), kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(c(384), c(384), kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(c(384), c(256), kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2), nn.Flatten(),  # [B, 6400] at 224
        nn.LazyLinear(c(4096)), nn.ReLU(), nn.Dropout(p=0.5),  # dropout instead of weight decay alone
        nn.Linear(c(4096), c(4096)), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(c(4096), num_classes),
    )


# ----------------------------------------------------------------------------------------------------------------
# VGG (d2l 7.2)
# ----------------------------------------------------------------------------------------------------------------
VGG11_ARCH = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))  # (convs per block, channels)


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    """``num_convs`` 3×3 same-padding convs + ReLU, then a 2×2 max-pool that halves height and width."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def vgg11(width: float = 1.0, num_classes: int = 10, in_channels: int = 1,
          conv_arch: tuple[tuple[int, int], ...] = VGG11_ARCH) -> nn.Sequential:
    """VGG-11: five VGG blocks (8 convs) + three FC layers = 11 weight layers. d2l trains ``ratio=4``
    (conv channels ÷ 4); here ``width`` scales convs *and* the 4096-wide FC layers."""
    c = _scale(width)
    blocks: list[nn.Module] = []
    for num_convs, out_channels in conv_arch:
        blocks.append(vgg_block(num_convs, in_channels, c(out_channels)))
        in_channels = c(out_channels)
    return nn.Sequential(
        *blocks, nn.Flatten(),  # [B, 512 * 7 * 7] at 224
        nn.LazyLinear(c(4096)), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(c(4096), c(4096)), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(c(4096), num_classes),
    )


# ----------------------------------------------------------------------------------------------------------------
# NiN (d2l 7.3)
# ----------------------------------------------------------------------------------------------------------------
def nin_block(in_channels: int, out_channels: int, kernel_size: int, strides: int, padding: int) -> nn.Sequential:
    """A conv followed by two 1×1 convs: an MLP applied at every pixel, channels as features."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
    )


def nin(width: float = 1.0, num_classes: int = 10, in_channels: int = 1, final_relu: bool = True) -> nn.Sequential:
    """NiN: no FC layers at all; the last block outputs one channel per class, then global average pooling.

    ``final_relu=False`` drops the ReLU after the last 1×1 conv (the class scores). With it (d2l's version) a class
    whose channel is negative for every image outputs 0 everywhere, gets no gradient and is never predicted again;
    on MNIST-5000 at width 0.25 three classes died that way and accuracy stalled at ~0.67; at width 0.5 (the CPU
    recipe) none died and it reached 0.969 (see the README)."""
    c = _scale(width)
    last = nin_block(c(384), num_classes, kernel_size=3, strides=1, padding=1)  # [B, classes, h, w]
    if not final_relu:
        last = last[:-1]
    return nn.Sequential(
        nin_block(in_channels, c(96), kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(c(96), c(256), kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(c(256), c(384), kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        last,
        nn.AdaptiveAvgPool2d((1, 1)),  # [B, classes, 1, 1]
        nn.Flatten(),  # [B, classes]
    )


# ----------------------------------------------------------------------------------------------------------------
# GoogLeNet (d2l 7.4)
# ----------------------------------------------------------------------------------------------------------------
class Inception(nn.Module):
    """Four parallel paths (1×1; 1×1→3×3; 1×1→5×5; 3×3 max-pool→1×1) concatenated on channels. The 1×1 convs
    in front of the big kernels cut the channels, which keeps the block cheap."""

    def __init__(self, in_channels: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int):
        super().__init__()
        self.p1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        self.p2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
        self.p2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.p3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
        self.p3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p1 = F.relu(self.p1_1(x))
        p2 = F.relu(self.p2_2(F.relu(self.p2_1(x))))
        p3 = F.relu(self.p3_2(F.relu(self.p3_1(x))))
        p4 = F.relu(self.p4_2(self.p4_1(x)))
        return torch.cat((p1, p2, p3, p4), dim=1)  # [B, c1 + c2[1] + c3[1] + c4, H, W]


def googlenet(width: float = 1.0, num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """GoogLeNet: a stem, 9 Inception blocks in three stages separated by stride-2 max-pools, global avg pool."""
    c = _scale(width)

    def inc(cin: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int) -> Inception:
        return Inception(cin, c(c1), (c(c2[0]), c(c2[1])), (c(c3[0]), c(c3[1])), c(c4))

    b1 = nn.Sequential(nn.Conv2d(in_channels, c(64), kernel_size=7, stride=2, padding=3), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(nn.Conv2d(c(64), c(64), kernel_size=1), nn.ReLU(),
                       nn.Conv2d(c(64), c(192), kernel_size=3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    i3a = inc(c(192), 64, (96, 128), (16, 32), 32)
    i3b = inc(i3a.out_channels, 128, (128, 192), (32, 96), 64)
    b3 = nn.Sequential(i3a, i3b, nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    i4 = [inc(i3b.out_channels, 192, (96, 208), (16, 48), 64)]
    for spec in ((160, (112, 224), (24, 64), 64), (128, (128, 256), (24, 64), 64), (112, (144, 288), (32, 64), 64),
                 (256, (160, 320), (32, 128), 128)):
        i4.append(inc(i4[-1].out_channels, *spec))
    b4 = nn.Sequential(*i4, nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    i5a = inc(i4[-1].out_channels, 256, (160, 320), (32, 128), 128)
    i5b = inc(i5a.out_channels, 384, (192, 384), (48, 128), 128)
    b5 = nn.Sequential(i5a, i5b, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())  # [B, 1024]
    return nn.Sequential(b1, b2, b3, b4, b5, nn.Linear(i5b.out_channels, num_classes))


# ----------------------------------------------------------------------------------------------------------------
# ResNet-18 (d2l 8.6)
# ----------------------------------------------------------------------------------------------------------------
class Residual(nn.Module):
    """conv3-BN-ReLU-conv3-BN, plus the input (through a 1×1 conv when the shape changes), then ReLU.
    If the block's best move is the identity, it only has to drive the convs to zero: nested function classes."""

    def __init__(self, input_channels: int, num_channels: int, use_1x1conv: bool = False, strides: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv else None
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))  # [B, C', H/s, W/s]
        y = self.bn2(self.conv2(y))
        if self.conv3 is not None:
            x = self.conv3(x)  # match channels and resolution of y
        return F.relu(y + x)


def resnet_block(input_channels: int, num_channels: int, num_residuals: int, first_block: bool = False) -> list:
    blk: list[nn.Module] = []
    for i in range(num_residuals):
        if i == 0 and not first_block:  # halve resolution, change channels
            blk.append(Residual(input_channels, num_channels, use_1x1conv=True, strides=2))
        else:
            blk.append(Residual(num_channels, num_channels))
    return blk


def resnet18(width: float = 1.0, num_classes: int = 10, in_channels: int = 1) -> nn.Sequential:
    """ResNet-18: stem (conv7/2, BN, ReLU, maxpool3/2) + 4 stages of 2 residual blocks + global avg pool + FC."""
    c = _scale(width)
    b1 = nn.Sequential(nn.Conv2d(in_channels, c(64), kernel_size=7, stride=2, padding=3), nn.BatchNorm2d(c(64)),
                       nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(*resnet_block(c(64), c(64), 2, first_block=True))
    b3 = nn.Sequential(*resnet_block(c(64), c(128), 2))
    b4 = nn.Sequential(*resnet_block(c(128), c(256), 2))
    b5 = nn.Sequential(*resnet_block(c(256), c(512), 2))
    return nn.Sequential(b1, b2, b3, b4, b5, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                         nn.Linear(c(512), num_classes))


# ----------------------------------------------------------------------------------------------------------------
# DenseNet (d2l 8.7)
# ----------------------------------------------------------------------------------------------------------------
def conv_block(input_channels: int, num_channels: int) -> nn.Sequential:
    """DenseNet's BN-ReLU-conv3 ("pre-activation") unit."""
    return nn.Sequential(nn.BatchNorm2d(input_channels), nn.ReLU(),
                         nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1))


class DenseBlock(nn.Module):
    """Each conv block sees the concatenation of the input and all earlier outputs: channels grow by
    ``num_channels`` (the growth rate) per conv block, where ResNet would *add* instead of concatenate."""

    def __init__(self, num_convs: int, input_channels: int, num_channels: int):
        super().__init__()
        self.net = nn.Sequential(*[conv_block(num_channels * i + input_channels, num_channels)
                                   for i in range(num_convs)])
        self.out_channels = input_channels + num_convs * num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.net:
            x = torch.cat((x, blk(x)), dim=1)  # [B, C + growth, H, W]
        return x


def transition_block(input_channels: int, num_channels: int) -> nn.Sequential:
    """1×1 conv to cut the channels that dense blocks pile up, and avg-pool to halve the resolution."""
    return nn.Sequential(nn.BatchNorm2d(input_channels), nn.ReLU(),
                         nn.Conv2d(input_channels, num_channels, kernel_size=1), nn.AvgPool2d(kernel_size=2, stride=2))


def densenet(width: float = 1.0, num_classes: int = 10, in_channels: int = 1, growth_rate: int = 32,
             arch: tuple[int, ...] = (4, 4, 4, 4)) -> nn.Sequential:
    """DenseNet as in d2l: ResNet's stem, 4 dense blocks of 4 convs (growth 32) with halving transitions."""
    c = _scale(width)
    num_channels, growth = c(64), c(growth_rate)
    blks: list[nn.Module] = [nn.Conv2d(in_channels, num_channels, kernel_size=7, stride=2, padding=3),
                             nn.BatchNorm2d(num_channels), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
    stem = nn.Sequential(*blks)
    layers: list[nn.Module] = [stem]
    for i, num_convs in enumerate(arch):
        block = DenseBlock(num_convs, num_channels, growth)
        layers.append(block)
        num_channels = block.out_channels
        if i != len(arch) - 1:
            layers.append(transition_block(num_channels, num_channels // 2))
            num_channels //= 2
    return nn.Sequential(*layers, nn.BatchNorm2d(num_channels), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)),
                         nn.Flatten(), nn.Linear(num_channels, num_classes))


# ----------------------------------------------------------------------------------------------------------------
# Registry: the book's recipe (Fashion-MNIST, GPU) and the CPU recipe that the README table measures
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    builder: Callable[..., nn.Sequential]
    title: str
    d2l: dict = field(default_factory=dict)  # d2l-zh hyperparameters: lr, epochs, batch_size, resize
    cpu: dict = field(default_factory=dict)  # what the bench runs on MNIST-5000 (a few CPU minutes each)
    sizes: tuple[int, ...] = (28,)  # input sizes the shape tests check (d2l's size first)


MODELS: dict[str, ModelSpec] = {
    "lenet": ModelSpec(lenet, "LeNet (sigmoid, avg-pool)",
                       dict(lr=0.9, epochs=10, batch_size=256, resize=28),
                       dict(lr=0.9, epochs=100, batch_size=256, resize=28, width=1.0, normalize=True), (28, 32)),
    "lenet_modern": ModelSpec(lenet_modern, "LeNet (ReLU, max-pool)",
                              dict(lr=0.1, epochs=10, batch_size=256, resize=28),
                              dict(lr=0.1, epochs=15, batch_size=64, resize=28, width=1.0), (28, 32)),
    "alexnet": ModelSpec(alexnet, "AlexNet",
                         dict(lr=0.01, epochs=10, batch_size=128, resize=224),
                         dict(lr=0.01, epochs=20, batch_size=32, resize=96, width=0.25, normalize=True), (224, 96, 67)),
    "vgg11": ModelSpec(vgg11, "VGG-11",
                       dict(lr=0.05, epochs=10, batch_size=128, resize=224, width=0.25),
                       dict(lr=0.05, epochs=15, batch_size=32, resize=32, width=0.125, normalize=True), (224, 32)),
    "nin": ModelSpec(nin, "NiN",
                     dict(lr=0.1, epochs=10, batch_size=128, resize=224),
                     dict(lr=0.05, epochs=30, batch_size=32, resize=67, width=0.5, normalize=True), (224, 96, 67)),
    "nin_linear": ModelSpec(partial(nin, final_relu=False), "NiN without ReLU on the class scores",
                            dict(lr=0.1, epochs=10, batch_size=128, resize=224),
                            dict(lr=0.05, epochs=25, batch_size=32, resize=67, width=0.25, normalize=True), (224, 67)),
    "googlenet": ModelSpec(googlenet, "GoogLeNet",
                           dict(lr=0.1, epochs=10, batch_size=128, resize=96),
                           dict(lr=0.1, epochs=15, batch_size=32, resize=32, width=0.25, normalize=True), (96, 64, 32)),
    "lenet_bn": ModelSpec(lenet_bn, "LeNet + our BatchNorm",
                          dict(lr=1.0, epochs=10, batch_size=256, resize=28),
                          dict(lr=1.0, epochs=40, batch_size=256, resize=28, width=1.0), (28, 32)),
    "lenet_bn_torch": ModelSpec(lenet_bn_torch, "LeNet + nn.BatchNorm",
                                dict(lr=1.0, epochs=10, batch_size=256, resize=28),
                                dict(lr=1.0, epochs=40, batch_size=256, resize=28, width=1.0), (28, 32)),
    "resnet18": ModelSpec(resnet18, "ResNet-18",
                          dict(lr=0.05, epochs=10, batch_size=256, resize=96),
                          dict(lr=0.05, epochs=10, batch_size=64, resize=32, width=0.25), (224, 96, 32)),
    "densenet": ModelSpec(densenet, "DenseNet",
                          dict(lr=0.1, epochs=10, batch_size=256, resize=96),
                          dict(lr=0.1, epochs=10, batch_size=64, resize=32, width=0.25), (96, 32)),
}


def build(name: str, input_shape: tuple[int, int, int] = (1, 28, 28), width: float = 1.0, num_classes: int = 10,
          init: str = "xavier") -> nn.Sequential:
    """Make a registered model for ``input_shape`` = (C, H, W): lazy layers materialised, d2l's Xavier init."""
    from dl_utils import check_choice, init_xavier, materialize

    check_choice("model", name, list(MODELS))
    check_choice("init", init, ["xavier", "default"])
    model = MODELS[name].builder(width=width, num_classes=num_classes, in_channels=input_shape[0])
    try:
        materialize(model, input_shape)
    except RuntimeError as err:  # e.g. a pooling window larger than what is left of a too-small image
        from rl_utils import UsageError

        raise UsageError(f"{name} cannot take {input_shape[1]}x{input_shape[2]} input (too small for its "
                         f"pooling/stride layers; use a larger --resize): {str(err).splitlines()[0]}") from None
    if init == "xavier":
        model.apply(init_xavier)
    return model

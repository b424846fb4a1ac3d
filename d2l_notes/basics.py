"""Deep-learning basics from d2l chapters 5-6 (zh.d2l.ai "深度学习计算", "卷积神经网络") and 8.5 (batch norm),
fixed so every snippet runs, and checked against PyTorch in tests/test_d2l_basics.py.

Read top to bottom: blocks and parameters, then convolution from scratch, then batch normalisation.
``python d2l_notes/basics.py`` runs a short tour that prints what the book prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere


# ================================================================================================================
# 1. Blocks
# ================================================================================================================
class MLP(nn.Module):
    """A custom block: 20 -> 256 (ReLU) -> 10. Only ``__init__`` (the layers) and ``forward`` are needed;
    backward comes from autograd, parameters are found because they are attributes that are Modules."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(20, 256)  # the notes wrote ``self.hiddenn`` and then used ``self.hidden``
        self.out = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(x)))  # [B, 10]


class MySequential(nn.Module):
    """A hand-made ``nn.Sequential``: modules are stored in ``_modules`` (an ordered dict) so that
    ``parameters()``, ``to()``, ``state_dict()`` find them, and run in insertion order."""

    def __init__(self, *args: nn.Module):
        super().__init__()
        for idx, module in enumerate(args):
            self._modules[str(idx)] = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self._modules.values():
            x = block(x)
        return x


class FixedHiddenMLP(nn.Module):
    """f(x, w) = c · wᵀx with a constant c: a weight that is never trained, a reused layer, and Python control
    flow inside ``forward`` (which is why blocks are code, not just layer lists)."""

    def __init__(self):
        super().__init__()
        # Constant random weights: a buffer (saved in state_dict, moved by .to(), but not a parameter).
        # The notes wrote ``torch.rand(..., required_grad=False)`` (a typo that raises) on a plain attribute.
        self.register_buffer("rand_weight", torch.rand((20, 20)))
        self.linear = nn.Linear(20, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        x = F.relu(x @ self.rand_weight + 1)
        x = self.linear(x)  # the same layer twice: its parameters are shared
        while x.abs().sum() > 1:  # control flow: halve until the L1 norm is at most 1
            x = x / 2
        return x.sum()


# ================================================================================================================
# 2. Parameters: access, initialisation, lazy layers, tying
# ================================================================================================================
def make_net() -> nn.Sequential:
    """The chapter's running example: 4 -> 8 (ReLU) -> 1."""
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def named_shapes(net: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """``net.named_parameters()`` as (name, shape): names are the module path, e.g. ``2.weight``."""
    return [(name, tuple(p.shape)) for name, p in net.named_parameters()]


def init_normal(m: nn.Module) -> None:
    """N(0, 0.01²) weights, zero biases (the notes wrote ``nn.init_zeros_``)."""
    if type(m) is nn.Linear:
        nn.init.normal_(m.weight, mean=0, std=0.01)
        nn.init.zeros_(m.bias)


def init_constant(m: nn.Module, value: float = 42.0) -> None:
    """Every weight = ``value`` (d2l's ``init_42``): a bad idea, all hidden units then stay identical."""
    if type(m) is nn.Linear:
        nn.init.constant_(m.weight, value)
        nn.init.zeros_(m.bias)


def init_xavier(m: nn.Module) -> None:
    """U(-a, a) with a = sqrt(6 / (fan_in + fan_out)): keeps activation and gradient variance ~ constant."""
    if type(m) in (nn.Linear, nn.Conv2d):
        nn.init.xavier_uniform_(m.weight)


def my_init(m: nn.Module) -> None:
    """The custom distribution w ~ U(5, 10) w.p. 1/4, U(-10, -5) w.p. 1/4, 0 w.p. 1/2: draw U(-10, 10) and zero
    what falls inside (-5, 5)."""
    if type(m) is nn.Linear:
        with torch.no_grad():
            nn.init.uniform_(m.weight, -10, 10)
            m.weight *= m.weight.abs() >= 5


def lazy_net() -> nn.Sequential:
    """Deferred initialisation: ``LazyLinear`` learns its input size at the first forward pass."""
    return nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))


def tied_net() -> tuple[nn.Sequential, nn.Linear]:
    """Parameter tying: the same ``shared`` layer object appears twice, so both places use (and update) one weight;
    its gradient is the *sum* of the gradients from both uses."""
    shared = nn.Linear(8, 8)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), shared, nn.ReLU(), shared, nn.ReLU(), nn.Linear(8, 1))
    return net, shared


# ================================================================================================================
# 3. Custom layers
# ================================================================================================================
class CenteredLayer(nn.Module):
    """A layer without parameters: subtract the mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean()


class MyLinear(nn.Module):
    """A layer with parameters: ReLU(x W + b). The notes used ``self.weight.data`` in ``forward``, which
    detaches it from autograd so the layer could never learn; use the Parameter itself."""

    def __init__(self, in_units: int, units: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_units, units))
        self.bias = nn.Parameter(torch.randn(units))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x @ self.weight + self.bias)  # [B, units]


# ================================================================================================================
# 4. Save and load
# ================================================================================================================
def save_params(net: nn.Module, path: str | Path) -> Path:
    """Save only the parameters (``state_dict``): the architecture lives in code, not in the file."""
    torch.save(net.state_dict(), path)
    return Path(path)


def load_params(net: nn.Module, path: str | Path) -> nn.Module:
    """Load parameters into a freshly built net of the same class; ``eval()`` for inference."""
    net.load_state_dict(torch.load(path, weights_only=True))
    return net.eval()


# ================================================================================================================
# 5. Convolution from scratch
# ================================================================================================================
def corr2d(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """2-D cross-correlation (what deep learning calls convolution): ``[H, W] ⋆ [h, w] -> [H-h+1, W-w+1]``."""
    h, w = k.shape
    y = torch.zeros((x.shape[0] - h + 1, x.shape[1] - w + 1), dtype=x.dtype)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] = (x[i:i + h, j:j + w] * k).sum()
    return y


class Conv2D(nn.Module):
    """A learnable conv layer built on :func:`corr2d` (one channel, no batch): y = x ⋆ K + b."""

    def __init__(self, kernel_size: tuple[int, int], bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(kernel_size))
        self.bias = nn.Parameter(torch.zeros(1)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = corr2d(x, self.weight)
        return y if self.bias is None else y + self.bias


def edge_image() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """d2l's 6×8 image, white (1) with four black (0) middle columns; K = [1, -1] finds the vertical edges:
    Y = X ⋆ K is 1 at white→black, -1 at black→white, 0 elsewhere."""
    x = torch.ones((6, 8))
    x[:, 2:6] = 0
    k = torch.tensor([[1.0, -1.0]])  # the notes wrote ``tirch.tensor``
    return x, k, corr2d(x, k)


def learn_edge_kernel(steps: int = 20, lr: float = 3e-2, seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """Learn K from (X, Y = X ⋆ [1, -1]) by gradient descent on the squared error with our :class:`Conv2D`.
    Returns the learned 1×2 kernel and the loss per step (d2l prints it every 2 steps).

    No bias, as in d2l: with a bias the (always-1) bias input and the mostly-1 pixels are strongly correlated, the
    summed loss gets a curvature of a few hundred and lr 3e-2 diverges."""
    torch.manual_seed(seed)
    x, _, y = edge_image()
    conv = Conv2D((1, 2), bias=False)
    losses = []
    for _ in range(steps):
        loss = ((conv(x) - y) ** 2).sum()
        conv.zero_grad()
        loss.backward()
        with torch.no_grad():  # plain SGD by hand
            for p in conv.parameters():
                p -= lr * p.grad
        losses.append(loss.item())
    return conv.weight.detach(), losses


def conv_output_size(n: int, k: int, p: int = 0, s: int = 1) -> int:
    """Output length of a conv/pool along one axis: ⌊(n − k + 2p + s) / s⌋ for ``p`` rows of padding on *each*
    side (d2l writes p_h for the total, so its formula reads ⌊(n_h − k_h + p_h + s_h)/s_h⌋)."""
    return (n - k + 2 * p + s) // s


def comp_conv2d(conv2d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a Conv2d to one 2-D image: add (batch, channel) axes of size 1, then strip them."""
    y = conv2d(x.reshape((1, 1) + tuple(x.shape)))
    return y.reshape(y.shape[2:])


def corr2d_multi_in(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``[c_i, H, W] ⋆ [c_i, h, w] -> [H', W']``: correlate each channel with its kernel slice, sum over channels."""
    return sum(corr2d(xc, kc) for xc, kc in zip(x, k))


def corr2d_multi_in_out(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``[c_i, H, W] ⋆ [c_o, c_i, h, w] -> [c_o, H', W']``: one multi-input correlation per output channel."""
    return torch.stack([corr2d_multi_in(x, ko) for ko in k], 0)


def corr2d_multi_in_out_1x1(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution is a fully connected layer applied at every pixel: ``[c_o, c_i] @ [c_i, H·W]``."""
    c_i, h, w = x.shape
    c_o = k.shape[0]
    y = k.reshape(c_o, c_i) @ x.reshape(c_i, h * w)  # [c_o, H*W]
    return y.reshape(c_o, h, w)  # the notes wrote ``reutrn``


def pool2d(x: torch.Tensor, pool_size: tuple[int, int], mode: str = "max", stride: int | None = None,
           padding: int = 0) -> torch.Tensor:
    """Max or average pooling of a 2-D map from scratch. No parameters: a fixed max/mean over each window.
    Defaults follow d2l (stride 1, no padding); padding uses -inf for max (never wins) and 0 for avg (counted
    in the mean, as ``F.avg_pool2d``'s default ``count_include_pad=True``)."""
    if mode not in ("max", "avg"):
        raise ValueError(f"mode must be 'max' or 'avg', got {mode!r}")
    p_h, p_w = pool_size
    s = stride or 1
    if padding:
        x = F.pad(x, (padding,) * 4, value=float("-inf") if mode == "max" else 0.0)
    y = torch.zeros(((x.shape[0] - p_h) // s + 1, (x.shape[1] - p_w) // s + 1), dtype=x.dtype)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            window = x[i * s:i * s + p_h, j * s:j * s + p_w]
            y[i, j] = window.max() if mode == "max" else window.mean()
    return y


# ================================================================================================================
# 6. Batch normalisation from scratch (Ioffe & Szegedy 2015; d2l 8.5)
# ================================================================================================================
def batch_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, moving_mean: torch.Tensor,
               moving_var: torch.Tensor, eps: float, momentum: float, training: bool,
               unbiased_moving_var: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BN(x) = γ ⊙ (x − μ_B) / sqrt(σ²_B + ε) + β, statistics per feature (2-D input) or per channel (4-D).

    Training: μ_B, σ²_B come from the minibatch (biased variance, as in the paper) and the moving averages are
    updated as ``m ← momentum · m + (1 − momentum) · batch_stat``. Inference: the moving averages replace the
    batch statistics, so a prediction does not depend on the other examples in the batch.

    Deviations from the notes, both to match ``nn.BatchNorm``: the mode comes from ``training`` (the notes used
    ``torch.is_grad_enabled()``, so evaluating without ``no_grad`` silently used batch statistics), and the moving
    variance is updated with the *unbiased* batch variance (× n/(n−1)) unless ``unbiased_moving_var=False``."""
    if not training:
        x_hat = (x - moving_mean) / torch.sqrt(moving_var + eps)
        return gamma * x_hat + beta, moving_mean, moving_var
    assert x.dim() in (2, 4), "fully connected [B, D] or convolutional [B, C, H, W] input"
    dims = (0,) if x.dim() == 2 else (0, 2, 3)  # every axis except the feature/channel axis
    mean = x.mean(dim=dims, keepdim=True)  # [1, D] or [1, C, 1, 1]
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    x_hat = (x - mean) / torch.sqrt(var + eps)
    with torch.no_grad():  # the moving averages are statistics, not part of the graph
        n = x.numel() // x.shape[1]
        var_for_avg = var * n / max(n - 1, 1) if unbiased_moving_var else var
        moving_mean = momentum * moving_mean + (1.0 - momentum) * mean
        moving_var = momentum * moving_var + (1.0 - momentum) * var_for_avg
    return gamma * x_hat + beta, moving_mean, moving_var


class BatchNorm(nn.Module):
    """The BatchNorm layer: learnable scale γ and shift β, plus moving mean/variance kept as *buffers* (so they
    follow ``.to(device)`` and are saved in ``state_dict``, which the notes' plain attributes were not).
    ``momentum=0.9`` in d2l's convention equals ``nn.BatchNorm``'s ``momentum=0.1``."""

    def __init__(self, num_features: int, num_dims: int, eps: float = 1e-5, momentum: float = 0.9,
                 unbiased_moving_var: bool = True):
        super().__init__()
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.gamma = nn.Parameter(torch.ones(shape))
        self.beta = nn.Parameter(torch.zeros(shape))
        self.register_buffer("moving_mean", torch.zeros(shape))
        self.register_buffer("moving_var", torch.ones(shape))
        self.eps, self.momentum, self.unbiased_moving_var = eps, momentum, unbiased_moving_var

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, mean, var = batch_norm(x, self.gamma, self.beta, self.moving_mean, self.moving_var, self.eps,
                                  self.momentum, self.training, self.unbiased_moving_var)
        if self.training:
            self.moving_mean.copy_(mean)
            self.moving_var.copy_(var)
        return y


# ================================================================================================================
# A short tour: what the book prints
# ================================================================================================================
def tour() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 20)
    print("MLP:", tuple(MLP()(x).shape), "| MySequential:", tuple(MySequential(nn.Linear(20, 256), nn.ReLU(),
                                                                                nn.Linear(256, 10))(x).shape),
          "| FixedHiddenMLP:", round(FixedHiddenMLP()(x).item(), 4))
    net = make_net()
    print("named parameters:", named_shapes(net))
    net.apply(init_normal)
    print("normal init, first row of net[0].weight:", net[0].weight.data[0])
    lazy = lazy_net()
    print("lazy weight before forward:", type(lazy[0].weight).__name__, end=" -> ")
    lazy(torch.rand(2, 20))
    print(tuple(lazy[0].weight.shape))
    tnet, shared = tied_net()
    print("tied:", tnet[2].weight is tnet[4].weight)
    xx, k, y = edge_image()
    print("edges X ⋆ [1, -1]:\n", y)
    kernel, losses = learn_edge_kernel(steps=10)
    print(f"learned kernel after 10 steps: {kernel.tolist()} (loss {losses[0]:.2f} -> {losses[-1]:.4f})")
    print("conv 8x8, k3 p1:", tuple(comp_conv2d(nn.Conv2d(1, 1, 3, padding=1), torch.rand(8, 8)).shape),
          "| k3 p1 s2:", tuple(comp_conv2d(nn.Conv2d(1, 1, 3, padding=1, stride=2), torch.rand(8, 8)).shape),
          "| rule:", conv_output_size(8, 3, 1, 2))
    x3 = torch.arange(9.0).reshape(3, 3)
    print("max pool 2x2:", pool2d(x3, (2, 2)).tolist(), "| avg:", pool2d(x3, (2, 2), "avg").tolist())


if __name__ == "__main__":
    tour()

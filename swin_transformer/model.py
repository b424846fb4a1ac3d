"""Swin Transformer from scratch: windows, shifted windows, relative position bias, patch merging.

Liu, Lin, Cao, Hu, Wei, Zhang, Lin, Guo, "Swin Transformer: Hierarchical Vision Transformer using Shifted
Windows", ICCV 2021 (arXiv:2103.14030). Written in the spirit of nanoGPT / timm: one file, a config dataclass,
a shape comment on every tensor operation. Layout and parameter names follow the official code
(microsoft/Swin-Transformer ``models/swin_transformer.py``): patch merging sits at the *end* of stages 0..S-2,
so official checkpoints load as they are; :func:`timm_to_ours` maps timm 1.x checkpoints, which put it at the
*start* of stages 1..S-1 (tested: identical logits).

The five ideas, each a small function or module below:

1. **Patch embedding** (:class:`PatchEmbed`): a ``p x p`` stride-``p`` convolution turns the image into an
   ``H/p x W/p`` grid of C-dim tokens, followed by LayerNorm. No absolute position embedding.
2. **Window attention** (:func:`window_partition`, :class:`WindowAttention`): self-attention only inside
   non-overlapping ``M x M`` windows, so the cost is linear in the number of tokens (``2 M^2 hw C`` for the
   attention matrix instead of ViT's ``2 (hw)^2 C``).
3. **Relative position bias** (:func:`relative_position_index`): each head learns a ``(2M-1)^2`` table, one
   scalar per 2-D offset between two tokens of a window, added to ``q k^T / sqrt(d)`` before the softmax.
4. **Shifted windows** (:func:`shift_region_labels`, :func:`shift_attention_mask`): every second block rolls the
   map by ``M/2`` so the new windows straddle the old borders (information flows between windows). The roll
   wraps the bottom/right strips around, so one window then holds tokens that are not neighbours; the mask
   (-100 before the softmax) stops those regions from attending to each other.
5. **Patch merging** (:class:`PatchMerging`): concatenate each 2x2 neighbourhood (4C), LayerNorm, Linear 4C->2C:
   half the resolution, twice the channels, a CNN-like hierarchy (strides 4, 8, 16, 32 for Swin-T).

Sizes that do not divide are padded (bottom/right) and cropped back; when a stage's feature map is no larger
than the window, the window shrinks to the map and the shift is switched off (the official rule).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

MASK_VALUE = -100.0  # the official value: exp(-100) ~ 4e-44, i.e. 0 after the softmax, and finite (no NaN rows)


# ----------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SwinConfig:
    img_size: int = 224  # square input side; fixes each stage's resolution, hence the window/shift rule
    patch_size: int = 4  # 4x4 patches -> a 56x56 grid at 224 (stride 4, like a ResNet stem)
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 96  # C of stage 0; stage i has C * 2^i channels
    depths: tuple[int, ...] = (2, 2, 6, 2)  # blocks per stage; even, so W-MSA and SW-MSA alternate in pairs
    num_heads: tuple[int, ...] = (3, 6, 12, 24)  # head dim 32 in every stage (C * 2^i / heads_i)
    window_size: int = 7  # M: 7x7 = 49 tokens per window; 56, 28, 14, 7 are all multiples of 7 at 224
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0  # dropout after attention proj / MLP and before the head (0 in the paper)
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.2  # stochastic depth, rising linearly from 0 to this over all blocks (Swin-T: 0.2)
    fused_attn: bool = True  # F.scaled_dot_product_attention (bias + mask as attn_mask) vs the written-out path
    pad_before_shift: bool = True  # official/detection order (pad, then roll); False = timm's (roll, then pad)

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (self.num_stages - 1)

    def stage_resolutions(self) -> list[int]:
        """Feature-map side per stage: ceil(img / patch), then halved (ceil) by each patch merging."""
        res = [math.ceil(self.img_size / self.patch_size)]
        for _ in range(self.num_stages - 1):
            res.append(math.ceil(res[-1] / 2))
        return res

    def stage_windows(self) -> list[tuple[int, int]]:
        """(window, shift) per stage: the window shrinks to the map and the shift turns off when map <= window."""
        out = []
        for r in self.stage_resolutions():
            out.append((r, 0) if r <= self.window_size else (self.window_size, self.window_size // 2))
        return out


CONFIGS: dict[str, SwinConfig] = {
    # The paper's ImageNet models (Table 1): Swin-T/S/B/L at 224, window 7. drop_path as in the official configs.
    "tiny": SwinConfig(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2),
    "small": SwinConfig(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3),
    "base": SwinConfig(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5),
    "large": SwinConfig(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), drop_path_rate=0.2),
    # MNIST, resized 28 -> 32: patch 4 -> 8x8 tokens, window 4 -> 2x2 windows + shift 2 in stage 0; 4x4 in stage 1
    # (one window: shift off); 2x2 in stage 2 (window shrinks to 2). Head dim 16. Patch 2 (16x16 tokens) learned
    # ~3x slower per step and ran ~2x slower per image on 4000 digits (README), so 4 it is.
    "mnist": SwinConfig(img_size=32, patch_size=4, in_chans=1, num_classes=10, embed_dim=48, depths=(2, 2, 2),
                        num_heads=(3, 6, 12), window_size=4, drop_path_rate=0.1),
    # 32x32 (CIFAR-10): patch 2 -> 16x16, window 4 -> 4x4 windows + shift 2; 8x8 (2x2 windows); 4x4 (one window).
    "cifar": SwinConfig(img_size=32, patch_size=2, in_chans=3, num_classes=10, embed_dim=64, depths=(2, 2, 2),
                        num_heads=(2, 4, 8), window_size=4, drop_path_rate=0.1),
    # A toy for tests and smoke runs: 16 px (sklearn's 8x8 digits upscaled), patch 4 -> 4x4 tokens, window 2 ->
    # 2x2 windows + shift 1, then 2x2 (one window). ~98% on digits in 12 epochs / 15 s.
    "micro": SwinConfig(img_size=16, patch_size=4, in_chans=1, num_classes=10, embed_dim=32, depths=(2, 2),
                        num_heads=(2, 4), window_size=2, drop_path_rate=0.0),
}


def get_config(name: str, **overrides) -> SwinConfig:
    """A named config with fields replaced (e.g. ``num_classes`` from the dataset)."""
    if name not in CONFIGS:
        raise KeyError(f"unknown config {name!r}; choose one of: {', '.join(CONFIGS)}")
    return replace(CONFIGS[name], **overrides)


# ----------------------------------------------------------------------------------------------------------------
# Windows
# ----------------------------------------------------------------------------------------------------------------
def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * nW, window, window, C], nW = (H / window) * (W / window); windows are batch-major
    (all windows of image 0 first, row by row), which the mask broadcasting relies on."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)  # [B, H/M, M, W/M, M, C]
    x = x.permute(0, 1, 3, 2, 4, 5)  # [B, H/M, W/M, M, M, C]: window row, window col, then inside the window
    return x.reshape(-1, window, window, C)  # [B*nW, M, M, C]


def window_reverse(windows: torch.Tensor, window: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: [B * nW, window, window, C] -> [B, H, W, C]."""
    C = windows.shape[-1]
    x = windows.view(-1, H // window, W // window, window, window, C)  # [B, H/M, W/M, M, M, C]
    x = x.permute(0, 1, 3, 2, 4, 5)  # [B, H/M, M, W/M, M, C]
    return x.reshape(-1, H, W, C)  # [B, H, W, C]


def relative_position_index(window: int) -> torch.Tensor:
    """[N, N] (N = window^2) index into the ``(2M-1)^2`` bias table for every (query i, key j) pair of a window.

    Token i sits at (r_i, c_i). The offset (r_i - r_j, c_i - c_j) lies in [-(M-1), M-1]^2; shift both by M-1 to
    [0, 2M-2] and read it as a two-digit number in base 2M-1: index = (dr + M-1) * (2M-1) + (dc + M-1).
    """
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))  # [2, M, M]
    coords = coords.flatten(1)  # [2, N]: (row, col) of each token in raster order
    rel = coords[:, :, None] - coords[:, None, :]  # [2, N, N]: offset from key j to query i
    rel = rel.permute(1, 2, 0) + (window - 1)  # [N, N, 2], each component in [0, 2M-2]
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]  # [N, N]


def shift_region_labels(H: int, W: int, window: int, shift: int) -> torch.Tensor:
    """[H, W] region id 0..8 of every position of the *rolled* map (H, W multiples of ``window``).

    Rolling by ``-shift`` moves the first ``shift`` rows/cols to the bottom/right. Along each axis the rolled map
    has three strips: [0, H-M) (whole windows of untouched content), [H-M, H-shift) (the last window's part that
    was already there) and [H-shift, H) (the part that wrapped around from the top). 3 x 3 strips = 9 regions;
    tokens may only attend within their own region.
    """
    labels = torch.zeros(H, W, dtype=torch.long)  # [H, W]
    region = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            labels[rows, cols] = region
            region += 1
    return labels


def shift_attention_mask(H: int, W: int, window: int, shift: int) -> torch.Tensor:
    """[nW, N, N] additive mask for SW-MSA: 0 where query and key are in the same region, -100 elsewhere.
    All zeros when ``shift`` is 0 (plain W-MSA needs no mask; the model then passes None)."""
    if shift == 0:
        return torch.zeros((H // window) * (W // window), window * window, window * window)
    labels = shift_region_labels(H, W, window, shift)  # [H, W]
    win = window_partition(labels.view(1, H, W, 1), window).reshape(-1, window * window)  # [nW, N]
    differ = win[:, None, :] != win[:, :, None]  # [nW, N, N]: query i (dim 1) and key j (dim 2) in other regions
    return torch.zeros(differ.shape).masked_fill(differ, MASK_VALUE)  # [nW, N, N]


# ----------------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------------
def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): drop the whole residual branch of a sample with probability p and
    scale the survivors by 1/(1-p), so the expectation is unchanged. Identity at eval time."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)  # [B, 1, ...]: one coin per sample
    return x * keep / (1 - p)


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"


class PatchEmbed(nn.Module):
    """Image [B, C_in, H, W] -> tokens [B, H/p, W/p, C] (NHWC): conv k=s=p, then LayerNorm. Pads to a multiple of
    p (bottom/right) when the size does not divide."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        H, W = x.shape[-2:]
        if H % p or W % p:
            x = F.pad(x, (0, (p - W % p) % p, 0, (p - H % p) % p))  # [B, C_in, ceil(H/p)*p, ceil(W/p)*p]
        x = self.proj(x)  # [B, C, H/p, W/p]
        return self.norm(x.permute(0, 2, 3, 1))  # [B, H/p, W/p, C]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias (W-MSA / SW-MSA)."""

    def __init__(self, dim: int, num_heads: int, window: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, fused: bool = True):
        super().__init__()
        self.num_heads, self.window, self.fused = num_heads, window, fused
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        # One learned scalar per head for each of the (2M-1)^2 possible 2-D offsets (trunc-normal, std .02).
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # A buffer, but not persistent: it is a function of the window size, so checkpoints need not carry it.
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def relative_position_bias(self) -> torch.Tensor:
        """[nH, N, N]: bias[h, i, j] = table[index[i, j], h]."""
        N = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]  # [N*N, nH]
        return bias.view(N, N, self.num_heads).permute(2, 0, 1)  # [nH, N, N]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B*nW, N, C] (windows batch-major), mask [nW, N, N] or None -> [B*nW, N, C]."""
        Bw, N, C = x.shape
        qkv = self.qkv(x).view(Bw, N, 3, self.num_heads, self.head_dim)  # [B*nW, N, 3, nH, d]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B*nW, nH, N, d]
        bias = self.relative_position_bias()  # [nH, N, N]
        drop = self.attn_drop if self.training else 0.0
        if mask is not None:
            nW = mask.shape[0]
            bias = bias.unsqueeze(0) + mask.unsqueeze(1)  # [nW, nH, N, N]: one additive term per window
            q, k, v = (t.view(Bw // nW, nW, self.num_heads, N, self.head_dim) for t in (q, k, v))  # [B, nW, nH, N, d]
        if self.fused:
            # attn_mask is *added* to q k^T * scale inside SDPA: exactly the bias (+ mask) of the paper.
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=drop)  # [.., N, d]
        else:
            out = attention_written_out(q, k, v, bias, self.scale, drop, self.training)  # [..., N, d]
        out = out.reshape(Bw, self.num_heads, N, self.head_dim).transpose(1, 2).reshape(Bw, N, C)  # [B*nW, N, C]
        return self.proj_drop(self.proj(out))  # [B*nW, N, C]


def attention_written_out(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float,
                          dropout_p: float = 0.0, training: bool = False) -> torch.Tensor:
    """softmax(q k^T * scale + bias) v, step by step (Eq. 4 of the paper). q, k, v [..., N, d]; bias broadcasts
    to [..., N, N]."""
    attn = (q * scale) @ k.transpose(-2, -1)  # [..., N, N]: similarity of query i and key j
    attn = attn + bias  # [..., N, N]: + relative position bias (+ -100 where regions differ)
    attn = attn.softmax(dim=-1)  # [..., N, N]: each row sums to 1
    if dropout_p > 0 and training:
        attn = F.dropout(attn, dropout_p)
    return attn @ v  # [..., N, d]


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))  # [..., dim] -> [..., hidden] -> [..., dim]


class SwinBlock(nn.Module):
    """Pre-norm block: x + DropPath((S)W-MSA(LN(x))), then x + DropPath(MLP(LN(x))). Works on [B, H, W, C]."""

    def __init__(self, dim: int, num_heads: int, resolution: int, window: int, shift: int, cfg: SwinConfig,
                 drop_path: float = 0.0):
        super().__init__()
        if resolution <= window:  # the official rule: one window covers the map, nothing to shift
            window, shift = resolution, 0
        self.window, self.shift, self.resolution = window, shift, resolution
        self.pad_before_shift = cfg.pad_before_shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window, cfg.qkv_bias, cfg.attn_drop_rate, cfg.drop_rate,
                                    cfg.fused_attn)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), cfg.drop_rate)
        # The mask for the map size this block was built for, computed once; other sizes compute theirs on the fly.
        padded = math.ceil(resolution / window) * window
        self.register_buffer("attn_mask", shift_attention_mask(padded, padded, window, shift) if shift else None,
                             persistent=False)

    def mask_for(self, Hp: int, Wp: int, device: torch.device) -> torch.Tensor | None:
        if not self.shift:
            return None
        built = math.ceil(self.resolution / self.window) * self.window
        if Hp == Wp == built and self.attn_mask is not None:
            return self.attn_mask  # [nW, N, N]
        return shift_attention_mask(Hp, Wp, self.window, self.shift).to(device)  # [nW, N, N]

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        M, s = self.window, self.shift
        pad_h, pad_w = (M - H % M) % M, (M - W % M) % M
        if self.pad_before_shift and (pad_h or pad_w):
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # [B, Hp, Wp, C]: zeros at the bottom/right
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))  # [B, Hp, Wp, C]: cyclic shift up-left by M/2
        if not self.pad_before_shift and (pad_h or pad_w):
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # timm's order: pad after the roll
        Hp, Wp = x.shape[1:3]
        windows = window_partition(x, M).view(-1, M * M, C)  # [B*nW, N, C]
        windows = self.attn(windows, self.mask_for(Hp, Wp, x.device))  # [B*nW, N, C]
        x = window_reverse(windows.view(-1, M, M, C), M, Hp, Wp)  # [B, Hp, Wp, C]
        if not self.pad_before_shift:
            x = x[:, :H, :W]  # [B, H, W, C]
        if s:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))  # undo the shift
        return x[:, :H, :W]  # [B, H, W, C] (drops the padding in the official order; no-op otherwise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self._window_attention(self.norm1(x)))  # [B, H, W, C]
        return x + self.drop_path(self.mlp(self.norm2(x)))  # [B, H, W, C]


class PatchMerging(nn.Module):
    """[B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 2C]: concatenate each 2x2 neighbourhood in the official order
    (x0 = top-left, x1 = bottom-left, x2 = top-right, x3 = bottom-right), LayerNorm(4C), Linear 4C -> 2C (no bias).
    The order matters only for loading pretrained weights: the Linear's input columns follow it."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[1:3]
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))  # [B, H+H%2, W+W%2, C]
        x0 = x[:, 0::2, 0::2]  # [B, H/2, W/2, C] rows 0,2,..  cols 0,2,..
        x1 = x[:, 1::2, 0::2]  # [B, H/2, W/2, C] rows 1,3,..  cols 0,2,..
        x2 = x[:, 0::2, 1::2]  # [B, H/2, W/2, C] rows 0,2,..  cols 1,3,..
        x3 = x[:, 1::2, 1::2]  # [B, H/2, W/2, C] rows 1,3,..  cols 1,3,..
        x = torch.cat([x0, x1, x2, x3], dim=-1)  # [B, H/2, W/2, 4C]
        return self.reduction(self.norm(x))  # [B, H/2, W/2, 2C]


class SwinStage(nn.Module):
    """``depth`` blocks at one resolution (even blocks W-MSA, odd blocks SW-MSA), then PatchMerging unless last."""

    def __init__(self, dim: int, depth: int, num_heads: int, resolution: int, cfg: SwinConfig,
                 drop_paths: list[float], downsample: bool):
        super().__init__()
        window, shift = cfg.window_size, cfg.window_size // 2
        self.blocks = nn.ModuleList([
            SwinBlock(dim, num_heads, resolution, window, 0 if i % 2 == 0 else shift, cfg, drop_paths[i])
            for i in range(depth)])
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (output before merging [B, H, W, C], output after merging [B, H/2, W/2, 2C])."""
        for block in self.blocks:
            x = block(x)  # [B, H, W, C]
        return x, (self.downsample(x) if self.downsample is not None else x)


class SwinTransformer(nn.Module):
    def __init__(self, cfg: SwinConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        rates = torch.linspace(0, cfg.drop_path_rate, sum(cfg.depths)).tolist()  # stochastic depth per block
        self.layers = nn.ModuleList()
        for i, (depth, res) in enumerate(zip(cfg.depths, cfg.stage_resolutions())):
            start = sum(cfg.depths[:i])
            self.layers.append(SwinStage(cfg.embed_dim * 2 ** i, depth, cfg.num_heads[i], res, cfg,
                                         rates[start:start + depth], downsample=i < cfg.num_stages - 1))
        self.norm = nn.LayerNorm(cfg.num_features)
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(cfg.num_features, cfg.num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # The official init: trunc-normal(.02) Linear weights, zero biases, LayerNorm 1/0, conv left at default.
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters kept out of weight decay besides biases and norms: the relative-position tables
        (official ``no_weight_decay_keywords``; read by ``dl_utils.param_groups_weight_decay``)."""
        return {n for n, _ in self.named_parameters() if "relative_position_bias_table" in n}

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-stage feature maps [B, H_i, W_i, C_i] (before each merging), for detection-style use and tests."""
        x = self.patch_embed(x)  # [B, H/p, W/p, C]
        outs = []
        for stage in self.layers:
            feat, x = stage(x)
            outs.append(feat)
        return outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # [B, H/p, W/p, C]
        for stage in self.layers:
            x = stage(x)[1]  # [B, H_i, W_i, C_i] -> merged for the next stage
        return self.norm(x)  # [B, H_last, W_last, C_last]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(dim=(1, 2))  # [B, C_last]: global average pool
        return self.head(self.head_drop(x))  # [B, classes]

    def reset_head(self, num_classes: int) -> None:
        """A fresh classifier for fine-tuning on a dataset with another number of classes."""
        self.head = nn.Linear(self.cfg.num_features, num_classes).to(self.norm.weight.device)
        self._init_weights(self.head)
        self.cfg = replace(self.cfg, num_classes=num_classes)


# ----------------------------------------------------------------------------------------------------------------
# Weight interop: timm 1.x and the official checkpoints
# ----------------------------------------------------------------------------------------------------------------
BUFFER_KEYS = ("relative_position_index", "attn_mask")  # derived from the sizes; recomputed, never loaded


def timm_to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm 1.x ``SwinTransformer`` state_dict -> ours. timm runs PatchMerging at the *start* of stage i+1
    (``layers.{i+1}.downsample``); the paper, the official code and we run it at the *end* of stage i
    (``layers.{i}.downsample``). The classifier is ``head.fc`` in timm, ``head`` here. Everything else (NHWC
    LayerNorms, qkv as one Linear, the bias table's (2M-1)^2 x heads layout, the 2x2 merge order) is the same."""
    out = {}
    for key, value in state_dict.items():
        if any(b in key for b in BUFFER_KEYS):
            continue
        key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", key)
        out[key.replace("head.fc.", "head.")] = value
    return out


def ours_to_timm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`timm_to_ours` (to hand a model trained here to timm)."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", key)
        out[re.sub(r"^head\.", "head.fc.", key)] = value
    return out


def official_to_ours(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """microsoft/Swin-Transformer checkpoint (``{'model': state_dict}``) -> ours: same names, buffers dropped."""
    state_dict = state_dict.get("model", state_dict)
    return {k: v for k, v in state_dict.items() if not any(b in k for b in BUFFER_KEYS)}


def is_timm_state_dict(state_dict: dict[str, torch.Tensor]) -> bool:
    """timm 1.x has ``head.fc`` and no ``layers.0.downsample``; official/ours have ``head`` and one at stage 0."""
    has_stage0_merge = any(k.startswith("layers.0.downsample") for k in state_dict)
    return "head.fc.weight" in state_dict or (not has_stage0_merge and any(".downsample." in k for k in state_dict))


def config_from_state_dict(state_dict: dict[str, torch.Tensor], img_size: int, **overrides) -> SwinConfig:
    """Read the architecture off a state_dict in our/official layout (run :func:`timm_to_ours` first for timm's).
    The window is stage 0's (its table has (2M-1)^2 rows); the image size is not stored in weights, so pass it."""
    proj = state_dict["patch_embed.proj.weight"]  # [C, in_chans, p, p]
    depths, heads = [], []
    while f"layers.{len(depths)}.blocks.0.norm1.weight" in state_dict:
        i = len(depths)
        depths.append(len({k.split(".")[3] for k in state_dict if k.startswith(f"layers.{i}.blocks.")}))
        heads.append(state_dict[f"layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1])
    table = state_dict["layers.0.blocks.0.attn.relative_position_bias_table"]  # [(2M-1)^2, nH]
    fc1 = state_dict["layers.0.blocks.0.mlp.fc1.weight"]  # [ratio*C, C]
    cfg = SwinConfig(img_size=img_size, patch_size=proj.shape[-1], in_chans=proj.shape[1],
                     num_classes=state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0,
                     embed_dim=proj.shape[0], depths=tuple(depths), num_heads=tuple(heads),
                     window_size=(math.isqrt(table.shape[0]) + 1) // 2, mlp_ratio=fc1.shape[0] / fc1.shape[1],
                     qkv_bias="layers.0.blocks.0.attn.qkv.bias" in state_dict, drop_path_rate=0.0)
    return replace(cfg, **overrides)


def config_from_timm(model: nn.Module, **overrides) -> SwinConfig:
    """Our config for a timm ``SwinTransformer`` instance (square windows and images only)."""
    block = model.layers[0].blocks[0]
    window = max(max(b.window_size) for stage in model.layers for b in stage.blocks)
    cfg = SwinConfig(img_size=model.patch_embed.img_size[0], patch_size=model.patch_embed.patch_size[0],
                     in_chans=model.patch_embed.proj.in_channels, num_classes=model.num_classes,
                     embed_dim=model.embed_dim, depths=tuple(len(s.blocks) for s in model.layers),
                     num_heads=tuple(s.blocks[0].attn.num_heads for s in model.layers), window_size=window,
                     mlp_ratio=block.mlp_ratio, qkv_bias=block.attn.qkv.bias is not None, drop_path_rate=0.0)
    return replace(cfg, **overrides)


def from_timm(model: nn.Module, **overrides) -> SwinTransformer:
    """Build ours from a timm ``SwinTransformer`` and copy its weights (strict: every tensor must find its place)."""
    ours = SwinTransformer(config_from_timm(model, **overrides))
    ours.load_state_dict(timm_to_ours(model.state_dict()))
    return ours


def config_dict(cfg: SwinConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def config_from_dict(d: dict) -> SwinConfig:
    known = {f for f in SwinConfig.__dataclass_fields__}
    return SwinConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


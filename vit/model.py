"""Vision Transformer (ViT), written out step by step.

Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale" (ICLR),
https://arxiv.org/abs/2010.11929; official code https://github.com/google-research/vision_transformer.
The module layout and parameter names follow timm's ``VisionTransformer`` (Ross Wightman, which in turn credits
lucidrains/vit-pytorch and minGPT), so a timm ``vit_*`` state_dict loads into :class:`VisionTransformer` as is;
Hugging Face ``ViTForImageClassification`` checkpoints are renamed (and their separate q/k/v fused) by
:func:`hf_to_timm_state_dict`.

The model in four lines (paper eq. 1-4):

    z0 = [x_cls; x_p^1 E; ...; x_p^N E] + E_pos          patches -> tokens, class token, position embedding
    z'_l = MSA(LN(z_{l-1})) + z_{l-1}                     pre-norm attention block with residual
    z_l = MLP(LN(z'_l)) + z'_l                            pre-norm MLP block with residual
    y = head(LN(z_L^0))                                   classify from the class token

Attention runs either through ``F.scaled_dot_product_attention`` (fast, default) or the written-out
``softmax(q k^T / sqrt(d)) v`` path, which also returns the attention maps (for attention rollout); the two are
tested equal.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ViTConfig:
    image_size: int = 224  # square input side; the position embedding has (image_size / patch_size)^2 + 1 rows
    patch_size: int = 16  # 16x16 "words": 224 px -> a 14x14 grid = 196 tokens (+1 class token)
    in_chans: int = 3
    num_classes: int = 1000  # 0 = no head (features only)
    embed_dim: int = 768  # D, the width of every token
    depth: int = 12  # number of encoder blocks
    num_heads: int = 12  # head dim = D / heads = 64 in every paper config
    mlp_ratio: float = 4.0  # MLP hidden = 4 D (paper Table 1: 3072 for ViT-B)
    qkv_bias: bool = True  # the paper and both checkpoint formats have biases on q, k, v
    drop_rate: float = 0.0  # dropout after the position embedding, in the MLP and after projections
    attn_drop_rate: float = 0.0  # dropout on the attention probabilities
    drop_path_rate: float = 0.0  # stochastic depth: max drop probability, linearly increasing with depth (DeiT)
    layer_norm_eps: float = 1e-6  # timm/JAX use 1e-6; Hugging Face ViT uses 1e-12 (matters when porting weights)
    global_pool: str = "token"  # "token": classify the class token (paper); "avg": mean of the patch tokens
    class_token: bool = True

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)


# Named configs. Paper Table 1 (Ti/S come from DeiT): (embed_dim, depth, heads), MLP 4 D, named as in timm.
_SIZES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16)}
CONFIGS: dict[str, ViTConfig] = {
    f"vit_{size}_patch{p}_224": ViTConfig(image_size=224, patch_size=p, embed_dim=d, depth=n, num_heads=h)
    for size, (d, n, h) in _SIZES.items() for p in (16, 32)
}
CONFIGS.update({
    # Small ones for 28x28 digits on a CPU. Patch 4 gives a 7x7 grid = 49 tokens; patch 7 a 4x4 grid = 16 tokens
    # (4x fewer tokens, ~3x faster, a little less accurate); width 64-128 and depth 4-6 train in minutes.
    "vit_micro_patch4_28": ViTConfig(image_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=64,
                                     depth=6, num_heads=4, mlp_ratio=2.0),
    "vit_micro_patch7_28": ViTConfig(image_size=28, patch_size=7, in_chans=1, num_classes=10, embed_dim=128,
                                     depth=6, num_heads=4, mlp_ratio=2.0),
    # For scikit-learn's 8x8 digits: patch 2 -> 16 tokens.
    "vit_nano_patch2_8": ViTConfig(image_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=64, depth=4,
                                   num_heads=4, mlp_ratio=2.0),
})


def get_config(name: str, **overrides: Any) -> ViTConfig:
    """A named config (``vit_base_patch16_224``, ``vit_micro_patch4_28``, ...) with fields replaced."""
    if name not in CONFIGS:
        raise KeyError(f"unknown ViT config {name!r}; choose one of: {', '.join(CONFIGS)}")
    return replace(CONFIGS[name], **overrides)


# ----------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    """Cut the image into non-overlapping P x P patches and project each linearly to D: one Conv2d with
    kernel = stride = P is exactly "flatten every patch and multiply by E" (paper eq. 1)."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape  # [B, C, H, W]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {self.patch_size}")
        x = self.proj(x)  # [B, D, H/P, W/P]
        return x.flatten(2).transpose(1, 2)  # [B, N, D], patches in row-major order


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` Linear (timm's layout; HF's separate q/k/v are
    concatenated when loading)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        assert dim % num_heads == 0, "embed_dim must be divisible by num_heads"
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused = True  # F.scaled_dot_product_attention; False = the written-out path below
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, return_attn: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, d = x.shape  # [B, N, D]
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim)  # [B, N, 3, H, hd]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, N, hd]
        attn = None
        if self.fused and not return_attn:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:  # written out: softmax(q k^T / sqrt(hd)) v
            scores = (q * self.scale) @ k.transpose(-2, -1)  # [B, H, N, N]
            attn = scores.softmax(dim=-1)  # each query's weights over the N keys sum to 1
            out = self.attn_drop(attn) @ v  # [B, H, N, hd]
        out = out.transpose(1, 2).reshape(b, n, d)  # [B, N, H*hd]: concatenate the heads
        return self.proj_drop(self.proj(out)), attn


class Mlp(nn.Module):
    """Two Linear layers with GELU (the exact erf form, as in the paper's JAX code, timm and HF)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))  # [B, N, D] -> [B, N, 4D] -> [B, N, D]


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): in training, zero a residual branch for a whole sample with
    probability ``p`` and scale the survivors by 1/(1-p) so the expectation is unchanged."""
    if p == 0.0 or not training:
        return x
    keep = torch.rand(x.shape[0], *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype) >= p  # [B, 1, 1]
    return x * keep / (1.0 - p)


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """Pre-norm encoder block: x + MSA(LN(x)), then x + MLP(LN(x)) (paper eq. 2-3). Unlike the original
    post-norm Transformer, the residual stream is never normalised, which lets deep stacks train without warm-up
    tricks."""

    def __init__(self, cfg: ViTConfig, drop_path_p: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg.embed_dim, cfg.num_heads, cfg.qkv_bias, cfg.attn_drop_rate, cfg.drop_rate)
        self.drop_path1 = DropPath(drop_path_p)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg.embed_dim, cfg.mlp_hidden, cfg.drop_rate)
        self.drop_path2 = DropPath(drop_path_p)

    def forward(self, x: torch.Tensor, return_attn: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, attn = self.attn(self.norm1(x), return_attn)  # [B, N, D]
        x = x + self.drop_path1(a)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x, attn


def resample_pos_embed(pos_embed: torch.Tensor, new_grid: tuple[int, int], num_prefix_tokens: int = 1,
                       old_grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize a learned position embedding ``[1, prefix + h*w, D]`` to a new patch grid (paper section 3.2:
    "2D interpolation of the pre-trained position embeddings"): the class-token row is kept, the h x w grid is
    resized bicubically with anti-aliasing, as timm's ``resample_abs_pos_embed`` does."""
    n_grid = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(n_grid)
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]  # [1, P, D], [1, h*w, D]
    dim, dtype = grid.shape[-1], grid.dtype
    grid = grid.float().reshape(1, *old_grid, dim).permute(0, 3, 1, 2)  # [1, D, h, w]
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(dtype)  # [1, h'*w', D]
    return torch.cat([prefix, grid], dim=1)


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------
class VisionTransformer(nn.Module):
    """ViT with timm's parameter names: ``patch_embed.proj``, ``cls_token``, ``pos_embed``,
    ``blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``, ``fc_norm``, ``head``."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        if cfg.global_pool not in ("token", "avg"):
            raise ValueError(f"global_pool must be 'token' or 'avg', got {cfg.global_pool!r}")
        if cfg.global_pool == "token" and not cfg.class_token:
            raise ValueError("global_pool='token' needs class_token=True")
        self.cfg = cfg
        d = cfg.embed_dim
        self.num_prefix_tokens = 1 if cfg.class_token else 0
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.class_token else None  # [1, 1, D]
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches + self.num_prefix_tokens, d))  # [1, N+1, D]
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        rates = [cfg.drop_path_rate * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]  # deeper: dropped more
        self.blocks = nn.Sequential(*[Block(cfg, p) for p in rates])
        # timm: with average pooling the final LayerNorm moves after the pooling ("fc_norm").
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps) if cfg.global_pool == "token" else nn.Identity()
        self.fc_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps) if cfg.global_pool == "avg" else nn.Identity()
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(d, cfg.num_classes) if cfg.num_classes else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        """timm's default ViT init: truncated normal (std .02) for Linear weights and the position embedding,
        a near-zero class token, zero biases, LayerNorm (1, 0), PyTorch's default for the patch conv."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameters excluded from weight decay (read by ``dl_utils.param_groups_weight_decay``)."""
        return {"pos_embed", "cls_token"}

    def set_fused_attn(self, fused: bool) -> VisionTransformer:
        for block in self.blocks:
            block.attn.fused = fused
        return self

    def _pos_embed(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        pos = self.pos_embed
        if grid != (self.cfg.grid_size, self.cfg.grid_size):  # other input size: interpolate on the fly
            pos = resample_pos_embed(pos, grid, self.num_prefix_tokens)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # [B, 1+N, D]
        return self.pos_drop(x + pos)  # [B, 1+N, D]

    def forward_features(self, x: torch.Tensor, return_attn: bool = False
                         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Images ``[B, C, H, W]`` -> normalised tokens ``[B, 1+N, D]`` (+ per-block attention ``[B, H, T, T]``
        when ``return_attn``, computed by the written-out path)."""
        grid = (x.shape[-2] // self.cfg.patch_size, x.shape[-1] // self.cfg.patch_size)
        x = self._pos_embed(self.patch_embed(x), grid)  # [B, 1+N, D]
        maps = []
        for block in self.blocks:
            x, attn = block(x, return_attn)
            if attn is not None:
                maps.append(attn)
        return self.norm(x), maps

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.global_pool == "avg":
            x = x[:, self.num_prefix_tokens:].mean(dim=1)  # [B, D] mean over the patch tokens
        else:
            x = x[:, 0]  # [B, D] the class token
        return self.head(self.head_drop(self.fc_norm(x)))  # [B, classes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x)[0])

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The softmax attention of every block, ``depth`` tensors ``[B, heads, 1+N, 1+N]`` (eval mode)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            maps = self.forward_features(x, return_attn=True)[1]
        self.train(was_training)
        return maps

    def resize_pos_embed(self, image_size: int) -> VisionTransformer:
        """Change the input resolution for good (fine-tuning at a higher resolution, paper section 3.2)."""
        grid = image_size // self.cfg.patch_size
        with torch.no_grad():
            new = resample_pos_embed(self.pos_embed.data, (grid, grid), self.num_prefix_tokens)
        self.pos_embed = nn.Parameter(new)
        self.cfg = replace(self.cfg, image_size=image_size)
        return self

    def reset_head(self, num_classes: int) -> VisionTransformer:
        """A new zero-initialised classifier (the paper's fine-tuning: "zero-initialized D x K layer")."""
        self.head = nn.Linear(self.cfg.embed_dim, num_classes) if num_classes else nn.Identity()
        if num_classes:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.cfg = replace(self.cfg, num_classes=num_classes)
        return self


def build(name_or_cfg: str | ViTConfig, **overrides: Any) -> VisionTransformer:
    cfg = get_config(name_or_cfg, **overrides) if isinstance(name_or_cfg, str) else replace(name_or_cfg, **overrides)
    return VisionTransformer(cfg)


def attention_rollout(maps: list[torch.Tensor], head_fusion: str = "mean", residual: float = 0.5,
                      num_prefix_tokens: int = 1, query: str = "cls") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"): average the heads,
    account for the residual connection as ``residual * I + (1 - residual) * A``, renormalise the rows and
    multiply the layers' matrices, first block rightmost. Returns how much the classifier's input draws on each
    patch, ``[B, N]`` (normalised to sum 1): the class token's row (``query="cls"``) or, for an average-pooled
    model, the mean of the patch tokens' rows (``query="mean"``). Reshape to the patch grid to draw it."""
    rollout = None
    for attn in maps:  # [B, H, T, T]
        a = attn.amax(dim=1) if head_fusion == "max" else attn.mean(dim=1)  # [B, T, T]
        a = residual * torch.eye(a.shape[-1], device=a.device) + (1 - residual) * a
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout  # [B, T, T]
    assert rollout is not None, "no attention maps"
    if query == "mean":
        row = rollout[:, num_prefix_tokens:, num_prefix_tokens:].mean(dim=1)  # [B, N]
    else:
        row = rollout[:, 0, num_prefix_tokens:]  # [B, N]
    return row / row.sum(dim=-1, keepdim=True)


def pooled_attention(attn: torch.Tensor, num_prefix_tokens: int, query: str = "cls") -> torch.Tensor:
    """One block's attention ``[B, H, T, T]`` -> what the pooled query looks at, head-averaged ``[B, N]``."""
    a = attn.mean(dim=1)  # [B, T, T]
    if query == "mean":
        return a[:, num_prefix_tokens:, num_prefix_tokens:].mean(dim=1)
    return a[:, 0, num_prefix_tokens:]


# ----------------------------------------------------------------------------------------------------------------
# Weight interop: timm and Hugging Face
# ----------------------------------------------------------------------------------------------------------------
def config_from_timm(model: nn.Module) -> ViTConfig:
    """Our config for a timm ``VisionTransformer`` instance (no download: read from its modules)."""
    blk = model.blocks[0]
    norm = model.norm if isinstance(model.norm, nn.LayerNorm) else model.fc_norm
    return ViTConfig(image_size=model.patch_embed.img_size[0], patch_size=model.patch_embed.patch_size[0],
                     in_chans=model.patch_embed.proj.in_channels, num_classes=model.num_classes,
                     embed_dim=model.embed_dim, depth=len(model.blocks), num_heads=blk.attn.num_heads,
                     mlp_ratio=blk.mlp.fc1.out_features / model.embed_dim, qkv_bias=blk.attn.qkv.bias is not None,
                     layer_norm_eps=norm.eps, global_pool=model.global_pool,
                     class_token=model.cls_token is not None)


def config_from_state_dict(sd: dict[str, torch.Tensor], num_heads: int = 0, layer_norm_eps: float = 1e-6
                           ) -> ViTConfig:
    """Infer a config from timm-named weights. The head count is not in the shapes: pass it, or it is taken
    from the paper config of the same width (192 -> 3, 384 -> 6, 768 -> 12, 1024 -> 16) or width / 64."""
    proj = sd["patch_embed.proj.weight"]  # [D, C, P, P]
    d, c, p = proj.shape[0], proj.shape[1], proj.shape[-1]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    prefix = 1 if "cls_token" in sd else 0
    grid = math.isqrt(sd["pos_embed"].shape[1] - prefix)
    heads = num_heads or {192: 3, 384: 6, 768: 12, 1024: 16}.get(d, max(1, d // 64))
    has_head = "head.weight" in sd
    return ViTConfig(image_size=grid * p, patch_size=p, in_chans=c,
                     num_classes=sd["head.weight"].shape[0] if has_head else 0, embed_dim=d, depth=depth,
                     num_heads=heads, mlp_ratio=sd["blocks.0.mlp.fc1.weight"].shape[0] / d,
                     qkv_bias="blocks.0.attn.qkv.bias" in sd, layer_norm_eps=layer_norm_eps,
                     global_pool="avg" if "fc_norm.weight" in sd else "token", class_token=bool(prefix))


def load_timm_state_dict(model: VisionTransformer, sd: dict[str, torch.Tensor], new_head: bool = False) -> None:
    """Load timm-named weights (also what :func:`hf_to_timm_state_dict` returns): keys must match exactly
    (parameter-free timm modules such as ``norm_pre`` or ``ls1`` have no keys). A position embedding for another
    grid is resampled; with ``new_head`` the classifier is left as it is (for fine-tuning)."""
    sd = dict(sd)
    if new_head:
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    if sd["pos_embed"].shape != model.pos_embed.shape:
        sd["pos_embed"] = resample_pos_embed(sd["pos_embed"], (model.cfg.grid_size,) * 2, model.num_prefix_tokens)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (new_head and k.startswith("head."))]
    if missing or unexpected:
        raise ValueError(f"state_dict does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")


def from_timm(timm_model: nn.Module) -> VisionTransformer:
    """Our model with the weights of a timm ``VisionTransformer`` (e.g. ``timm.create_model('vit_base_patch16_224',
    pretrained=True)``)."""
    model = VisionTransformer(config_from_timm(timm_model))
    load_timm_state_dict(model, timm_model.state_dict())
    return model


# Hugging Face ViT names -> timm names. Checkpoints on the hub (and what save_pretrained writes) use the classic
# names (vit.encoder.layer.{i}.attention.attention.query ...); transformers 5 renames the modules in memory
# (vit.layers.{i}.attention.q_proj ...). Both are accepted. q/k/v map to thirds of timm's fused qkv.
_HF_TOP = {"vit.embeddings.cls_token": "cls_token", "vit.embeddings.position_embeddings": "pos_embed",
           "vit.embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
           "vit.embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
           "vit.layernorm.weight": "norm.weight", "vit.layernorm.bias": "norm.bias",
           "classifier.weight": "head.weight", "classifier.bias": "head.bias"}
_HF_LAYER = {"layernorm_before": ("norm1", None), "layernorm_after": ("norm2", None),
             "attention.attention.query": ("attn.qkv", 0), "attention.attention.key": ("attn.qkv", 1),
             "attention.attention.value": ("attn.qkv", 2), "attention.output.dense": ("attn.proj", None),
             "intermediate.dense": ("mlp.fc1", None), "output.dense": ("mlp.fc2", None),
             "attention.q_proj": ("attn.qkv", 0), "attention.k_proj": ("attn.qkv", 1),
             "attention.v_proj": ("attn.qkv", 2), "attention.o_proj": ("attn.proj", None),
             "mlp.fc1": ("mlp.fc1", None), "mlp.fc2": ("mlp.fc2", None)}


def hf_key_to_timm(key: str) -> tuple[str, int | None] | None:
    """(timm name, third of qkv or None) for one Hugging Face ViT key; None for keys the classifier does not use
    (ViTModel's pooler)."""
    key = key if key.startswith(("vit.", "classifier.")) else "vit." + key  # a bare ViTModel has no "vit." prefix
    if key in _HF_TOP:
        return _HF_TOP[key], None
    if key.startswith("vit.pooler."):
        return None
    m = re.match(r"vit\.(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$", key)
    if m is None or m.group(2) not in _HF_LAYER:
        raise ValueError(f"unexpected Hugging Face ViT key {key!r}")
    name, part = _HF_LAYER[m.group(2)]
    return f"blocks.{m.group(1)}.{name}.{m.group(3)}", part


def hf_to_timm_state_dict(hf_sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ``ViTForImageClassification`` (or ``ViTModel``) state_dict to timm's names and fuse
    the separate query/key/value Linears into one ``qkv`` (rows stacked q, k, v, as timm's reshape expects)."""
    out: dict[str, torch.Tensor] = {}
    thirds: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in hf_sd.items():
        target = hf_key_to_timm(key)
        if target is None:
            continue
        name, part = target
        if part is None:
            out[name] = value
        else:
            thirds.setdefault(name, {})[part] = value
    for name, parts in thirds.items():
        out[name] = torch.cat([parts[0], parts[1], parts[2]], dim=0)  # [3D, D] or [3D]
    return out


def config_from_hf(hf_config: Any) -> ViTConfig:
    """Our config for a ``transformers.ViTConfig`` (HF ViT always classifies the class token)."""
    if getattr(hf_config, "hidden_act", "gelu") != "gelu":
        raise ValueError(f"only GELU ViTs are supported, got hidden_act={hf_config.hidden_act!r}")
    image_size = hf_config.image_size if isinstance(hf_config.image_size, int) else hf_config.image_size[0]
    patch_size = hf_config.patch_size if isinstance(hf_config.patch_size, int) else hf_config.patch_size[0]
    return ViTConfig(image_size=image_size, patch_size=patch_size, in_chans=hf_config.num_channels,
                     num_classes=len(hf_config.id2label) if hf_config.id2label else 0,
                     embed_dim=hf_config.hidden_size, depth=hf_config.num_hidden_layers,
                     num_heads=hf_config.num_attention_heads,
                     mlp_ratio=hf_config.intermediate_size / hf_config.hidden_size, qkv_bias=hf_config.qkv_bias,
                     layer_norm_eps=hf_config.layer_norm_eps)


def hf_config_from(cfg: ViTConfig, labels: list[str] | None = None) -> Any:
    """A ``transformers.ViTConfig`` for our config (to ``save_pretrained`` a model we trained)."""
    from transformers import ViTConfig as HFViTConfig

    if cfg.global_pool != "token":
        raise ValueError("Hugging Face ViTForImageClassification classifies the class token; global_pool must be "
                         "'token'")
    labels = labels or [str(i) for i in range(cfg.num_classes)]
    return HFViTConfig(image_size=cfg.image_size, patch_size=cfg.patch_size, num_channels=cfg.in_chans,
                       hidden_size=cfg.embed_dim, num_hidden_layers=cfg.depth, num_attention_heads=cfg.num_heads,
                       intermediate_size=cfg.mlp_hidden, qkv_bias=cfg.qkv_bias, layer_norm_eps=cfg.layer_norm_eps,
                       hidden_act="gelu", id2label=dict(enumerate(labels)),
                       label2id={name: i for i, name in enumerate(labels)})


def hf_image_processor(cfg: ViTConfig, mean: list[float] | None, std: list[float] | None) -> Any:
    """The ``transformers.ViTImageProcessor`` that feeds our model as it was trained: resize to its image size,
    scale to [0, 1], normalise with its training statistics (none: mean 0, std 1). Saved beside the weights, it
    makes a ``save_pretrained`` folder a complete ``pipeline("image-classification")`` model."""
    from transformers import ViTImageProcessor

    channels = cfg.in_chans
    return ViTImageProcessor(size={"height": cfg.image_size, "width": cfg.image_size},
                             image_mean=list(mean) if mean is not None else [0.0] * channels,
                             image_std=list(std) if std is not None else [1.0] * channels)


def from_hf(hf_model: nn.Module) -> VisionTransformer:
    """Our model with the weights of a ``transformers.ViTForImageClassification``."""
    model = VisionTransformer(config_from_hf(hf_model.config))
    load_timm_state_dict(model, hf_to_timm_state_dict(hf_model.state_dict()))
    return model


def to_hf(model: VisionTransformer, labels: list[str] | None = None) -> nn.Module:
    """A ``transformers.ViTForImageClassification`` holding our model's weights."""
    from transformers import ViTForImageClassification

    hf = ViTForImageClassification(hf_config_from(model.cfg, labels))
    ours = model.state_dict()
    new = {}
    for key in hf.state_dict():  # whatever names the installed transformers uses
        name, part = hf_key_to_timm(key)  # type: ignore[misc]
        new[key] = ours[name] if part is None else ours[name].chunk(3, dim=0)[part]
    hf.load_state_dict(new)
    return hf.eval()


def config_dict(cfg: ViTConfig) -> dict[str, Any]:
    return asdict(cfg)

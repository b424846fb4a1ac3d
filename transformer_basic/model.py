"""The Transformer encoder–decoder of Vaswani et al. 2017, "Attention Is All You Need" (arXiv:1706.03762).

Read top to bottom, it builds the model the way the paper explains it:

1. masks (padding and causal), 2. scaled dot-product attention written out, 3. multi-head attention,
4. position-wise feed-forward, 5. sinusoidal positional encoding and scaled embeddings, 6. encoder and decoder
layers with residual + LayerNorm (post-norm as in the paper, pre-norm by a flag), 7. the full model,
8. the training pieces (label smoothing, Noam schedule).

Teaching path first, then a fast path: with ``fast_attention=True`` step 2 is replaced by
``torch.nn.functional.scaled_dot_product_attention`` (one fused kernel, no [T, T] weights kept for backward on
CPU/GPU backends that support it). Both paths share every parameter, so a checkpoint runs on either, and
tests/test_transformer.py proves them equal, and proves our attention and layers equal to
``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer`` with copied weights.

Mask convention used everywhere in this file: a boolean mask is **True where attention is allowed**. That is the
convention of ``scaled_dot_product_attention`` and of the Annotated Transformer (1 = keep). PyTorch's
``nn.MultiheadAttention`` uses the *opposite* (True = ignore); pass ``~mask`` to it.

References: the Annotated Transformer (harvardnlp, 2022), nanoGPT's ``CausalSelfAttention`` (fast path beside the
manual one), d2l.ai chapter 11.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TransformerConfig:
    src_vocab: int
    """source vocabulary size (with the special tokens)"""
    tgt_vocab: int
    """target vocabulary size"""
    d_model: int = 128  # the paper's base model uses 512; 128 is plenty for dates and trains in minutes on a CPU
    n_heads: int = 4  # d_model / n_heads = 32 dims per head
    n_enc_layers: int = 2
    n_dec_layers: int = 2
    d_ff: int = 512  # 4 x d_model, the paper's ratio (2048 / 512)
    dropout: float = 0.1  # on sub-layer outputs, embeddings and attention weights, as in the paper
    max_len: int = 256  # longest sequence the positional-encoding table covers
    norm_first: bool = False  # False: post-norm x = LN(x + f(x)) (paper); True: pre-norm x = x + f(LN(x))
    learned_pos: bool = False  # learned position embeddings instead of sinusoids (the original notebook's choice)
    share_embeddings: bool = False  # one embedding table for source and target (needs a joint vocabulary)
    tie_output: bool = True  # output projection = target embedding matrix (Press & Wolf 2017; paper §3.4)
    fast_attention: bool = False  # F.scaled_dot_product_attention instead of the written-out attention
    pad_id: int = 0


# ----------------------------------------------------------------------------------------------------------------
# 1. Masks (bool, True = may attend)
# ----------------------------------------------------------------------------------------------------------------
def padding_mask(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """[B, T] token ids -> [B, 1, 1, T]: every query may look at every non-pad key. The two singleton dims
    broadcast over heads and queries, so one mask serves all of them."""
    return (tokens != pad_id)[:, None, None, :]  # [B, 1, 1, T]


def causal_mask(size: int, device: torch.device | None = None) -> torch.Tensor:
    """[1, 1, T, T] lower-triangular: position i may look at positions <= i only ("subsequent mask"), so the
    decoder cannot peek at the token it is asked to predict."""
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()[None, None]  # [1, 1, T, T]


# ----------------------------------------------------------------------------------------------------------------
# 2. Scaled dot-product attention, written out
# ----------------------------------------------------------------------------------------------------------------
def scaled_dot_product_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
    dropout: nn.Module | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V   (paper eq. 1).

    q: [B, H, Tq, dk], k: [B, H, Tk, dk], v: [B, H, Tk, dv], mask broadcastable to [B, H, Tq, Tk].
    Dividing by √d_k keeps the logits' variance ~1 whatever the head size, so the softmax does not saturate and
    its gradients do not vanish. Returns (output [B, H, Tq, dv], weights [B, H, Tq, Tk])."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # [B, H, Tq, Tk]
    if mask is not None:
        # -inf -> exactly zero weight after the softmax: padding / future keys receive no attention at all.
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # [B, H, Tq, Tk], each row sums to 1
    if dropout is not None:
        weights = dropout(weights)
    return weights @ v, weights  # [B, H, Tq, dv]


# ----------------------------------------------------------------------------------------------------------------
# 3. Multi-head attention
# ----------------------------------------------------------------------------------------------------------------
class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W_O, head_i = Attention(Q W_Q^i, K W_K^i, V W_V^i) (§3.2.2).

    The h heads' projections are one [D, D] matrix each for Q, K, V, reshaped into h slices of D/h: same
    parameters and FLOPs as one full-width head, but h different attention patterns."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, fast: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.h, self.dk, self.fast = n_heads, d_model // n_heads, fast
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.keep_weights = False  # set True (e.g. by translate.py) to keep the last attention map in self.weights
        self.weights: torch.Tensor | None = None

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.dk).transpose(1, 2)  # [B, T, D] -> [B, H, T, dk]

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """query [B, Tq, D], key/value [B, Tk, D], mask (True = attend) broadcastable to [B, H, Tq, Tk]."""
        q = self._split(self.q_proj(query))  # [B, H, Tq, dk]
        k = self._split(self.k_proj(key))  # [B, H, Tk, dk]
        v = self._split(self.v_proj(value))  # [B, H, Tk, dk]
        if self.fast and not self.keep_weights:
            # One fused kernel; its bool attn_mask also means True = attend. Dropout only while training.
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 dropout_p=self.dropout.p if self.training else 0.0)
        else:
            out, weights = scaled_dot_product_attention(q, k, v, mask, self.dropout)
            self.weights = weights.detach() if self.keep_weights else None
        b, _, tq, _ = out.shape
        out = out.transpose(1, 2).reshape(b, tq, self.h * self.dk)  # [B, H, Tq, dk] -> [B, Tq, D] (concat heads)
        return self.out_proj(out)  # [B, Tq, D]


# ----------------------------------------------------------------------------------------------------------------
# 4. Position-wise feed-forward
# ----------------------------------------------------------------------------------------------------------------
class FeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2, the same two-layer MLP applied to every position separately (§3.3)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(F.relu(self.linear1(x))))  # [B, T, D] -> [B, T, d_ff] -> [B, T, D]


# ----------------------------------------------------------------------------------------------------------------
# 5. Embeddings + positional encoding
# ----------------------------------------------------------------------------------------------------------------
def sinusoidal_encoding(max_len: int, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d))   (§3.5).

    Each pair of dimensions is a rotation at its own frequency (wavelengths 2π … 10000·2π), so PE(pos + k) is a
    linear function of PE(pos): relative offsets are easy for attention to read. Returns [max_len, d_model]."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]  # [L, 1]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))  # [D/2]
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)  # [L, D/2]
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


class Embedding(nn.Module):
    """Token embedding × √d_model + position encoding, then dropout (§3.4, §3.5).

    The √d scale lifts the embeddings (initialised small, and shared with the output layer when tied) to the same
    magnitude as the ±1 positional encodings, so position does not drown the token identity."""

    def __init__(self, vocab: int, d_model: int, max_len: int, dropout: float, learned_pos: bool, pad_id: int,
                 tokens: nn.Embedding | None = None):
        super().__init__()
        self.tokens = tokens if tokens is not None else nn.Embedding(vocab, d_model, padding_idx=pad_id)
        self.scale = math.sqrt(d_model)
        self.learned_pos = nn.Embedding(max_len, d_model) if learned_pos else None
        self.register_buffer("pe", sinusoidal_encoding(max_len, d_model), persistent=False)  # [L, D]
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.size(1)
        if t > self.pe.size(0):
            raise ValueError(f"sequence of length {t} is longer than max_len={self.pe.size(0)}")
        pos = self.learned_pos.weight[:t] if self.learned_pos is not None else self.pe[:t]  # [T, D]
        return self.dropout(self.tokens(x) * self.scale + pos)  # [B, T, D]


# ----------------------------------------------------------------------------------------------------------------
# 6. Encoder and decoder layers: sub-layer + residual + LayerNorm
# ----------------------------------------------------------------------------------------------------------------
class EncoderLayer(nn.Module):
    """Self-attention then feed-forward, each wrapped as LayerNorm(x + Dropout(Sublayer(x))) (§3.1).

    Post-norm (paper, ``norm_first=False``) normalises after the residual sum; pre-norm (``norm_first=True``,
    x + Sublayer(LN(x))) keeps an identity path from input to output, which trains deep stacks without warm-up
    (Xiong et al. 2020). Same parameter names as nn.TransformerEncoderLayer where they exist."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, norm_first: bool = False,
                 fast: bool = False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, fast)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor | None) -> torch.Tensor:
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.dropout1(self.self_attn(h, h, h, src_mask))
            return x + self.dropout2(self.ff(self.norm2(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, x, x, src_mask)))  # [B, S, D]
        return self.norm2(x + self.dropout2(self.ff(x)))  # [B, S, D]


class DecoderLayer(nn.Module):
    """Masked self-attention, encoder–decoder (cross) attention, feed-forward; each with residual + LN (§3.1).

    Self-attention uses the causal mask so position t sees only targets < t+1; cross-attention lets every target
    position read the whole (non-pad) source through the encoder output ``memory``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, norm_first: bool = False,
                 fast: bool = False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout, fast)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout, fast)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, y: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None,
                src_mask: torch.Tensor | None) -> torch.Tensor:
        """y [B, T, D] (shifted-right targets), memory [B, S, D]; tgt_mask [B|1, 1, T, T], src_mask [B, 1, 1, S]."""
        if self.norm_first:
            h = self.norm1(y)
            y = y + self.dropout1(self.self_attn(h, h, h, tgt_mask))
            h = self.norm2(y)
            y = y + self.dropout2(self.cross_attn(h, memory, memory, src_mask))
            return y + self.dropout3(self.ff(self.norm3(y)))
        y = self.norm1(y + self.dropout1(self.self_attn(y, y, y, tgt_mask)))  # [B, T, D]
        y = self.norm2(y + self.dropout2(self.cross_attn(y, memory, memory, src_mask)))  # queries: targets
        return self.norm3(y + self.dropout3(self.ff(y)))  # [B, T, D]


# ----------------------------------------------------------------------------------------------------------------
# 7. The encoder–decoder
# ----------------------------------------------------------------------------------------------------------------
class Transformer(nn.Module):
    """Encoder–decoder Transformer with a linear + softmax generator (Figure 1 of the paper)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.share_embeddings and cfg.src_vocab != cfg.tgt_vocab:
            raise ValueError("share_embeddings needs one joint vocabulary (src_vocab == tgt_vocab)")
        args = (cfg.d_model, cfg.max_len, cfg.dropout, cfg.learned_pos, cfg.pad_id)
        self.src_embed = Embedding(cfg.src_vocab, *args)
        self.tgt_embed = Embedding(cfg.tgt_vocab, *args, tokens=self.src_embed.tokens if cfg.share_embeddings
                                   else None)
        layer = (cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, cfg.norm_first, cfg.fast_attention)
        self.encoder = nn.ModuleList(EncoderLayer(*layer) for _ in range(cfg.n_enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(*layer) for _ in range(cfg.n_dec_layers))
        # Pre-norm leaves the residual stream un-normalised: a final LayerNorm is needed (post-norm ends in one).
        self.enc_norm = nn.LayerNorm(cfg.d_model) if cfg.norm_first else nn.Identity()
        self.dec_norm = nn.LayerNorm(cfg.d_model) if cfg.norm_first else nn.Identity()
        self.generator = nn.Linear(cfg.d_model, cfg.tgt_vocab)
        self._init_weights()
        if cfg.tie_output:
            self.generator.weight = self.tgt_embed.tokens.weight  # [V, D] used both ways

    def _init_weights(self) -> None:
        # Xavier/Glorot on every matrix, as in the Annotated Transformer; biases zero, LayerNorm (1, 0).
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        with torch.no_grad():  # the pad row stays zero (padding_idx also keeps its gradient at zero)
            self.src_embed.tokens.weight[self.cfg.pad_id].zero_()
            self.tgt_embed.tokens.weight[self.cfg.pad_id].zero_()

    def set_fast_attention(self, fast: bool) -> Transformer:
        """Switch every attention between the written-out and the fused path (weights are shared)."""
        self.cfg.fast_attention = fast
        for m in self.modules():
            if isinstance(m, MultiHeadAttention):
                m.fast = fast
        return self

    def keep_attention_weights(self, keep: bool = True) -> Transformer:
        """Keep every attention's last [B, H, Tq, Tk] map in ``module.weights`` (forces the teaching path)."""
        for m in self.modules():
            if isinstance(m, MultiHeadAttention):
                m.keep_weights = keep
        return self

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src [B, S] -> (memory [B, S, D], src_mask [B, 1, 1, S])."""
        src_mask = padding_mask(src, self.cfg.pad_id)
        x = self.src_embed(src)  # [B, S, D]
        for layer in self.encoder:
            x = layer(x, src_mask)
        return self.enc_norm(x), src_mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """tgt_in [B, T] (starts with BOS) -> logits [B, T, V]: position t predicts target token t+1."""
        t = tgt_in.size(1)
        # Causal AND padding: a query never sees future positions nor pad keys.
        tgt_mask = causal_mask(t, tgt_in.device) & padding_mask(tgt_in, self.cfg.pad_id)  # [B, 1, T, T]
        y = self.tgt_embed(tgt_in)  # [B, T, D]
        for layer in self.decoder:
            y = layer(y, memory, tgt_mask, src_mask)
        return self.generator(self.dec_norm(y))  # [B, T, V]

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)  # [B, T, V]


# ----------------------------------------------------------------------------------------------------------------
# 8. Training pieces: label smoothing and the Noam schedule
# ----------------------------------------------------------------------------------------------------------------
def label_smoothed_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float, pad_id: int) -> torch.Tensor:
    """Cross-entropy against a smoothed target q = (1 - ε) one_hot(y) + ε / V  (Szegedy et al. 2016; paper §5.4).

    Written out: loss = (1 - ε) · (−log p_y) + ε · mean_v(−log p_v), averaged over non-pad positions. It keeps the
    model from becoming over-confident (hurts perplexity, helps BLEU). Equals
    ``F.cross_entropy(..., label_smoothing=ε, ignore_index=pad_id)`` (tested). logits [N, V], target [N]."""
    logp = logits.log_softmax(dim=-1)  # [N, V]
    nll = -logp.gather(-1, target[:, None]).squeeze(-1)  # [N]
    uniform = -logp.mean(dim=-1)  # [N]
    per_token = (1.0 - smoothing) * nll + smoothing * uniform
    keep = target != pad_id
    return per_token[keep].sum() / keep.sum().clamp(min=1)


def noam_lambda(d_model: int, warmup: int, factor: float = 1.0):
    """lr(step) = factor · d^-0.5 · min(step^-0.5, step · warmup^-1.5)   (paper eq. 3).

    Linear warm-up for ``warmup`` steps (Adam's second-moment estimates are poor at first and post-norm
    Transformers diverge with a large early lr), then 1/√step decay. Use with LambdaLR and base lr 1.0."""

    def rate(step: int) -> float:
        step = max(step, 1)
        return factor * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)

    return rate


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights are counted once by .parameters()

"""Training throughput (tokens/s) of our Transformer, teaching and fast path, against ``torch.nn.Transformer``
built with the same sizes, side by side in one process.

    python transformer_basic/bench_speed.py                       # the README table (2 threads)
    python transformer_basic/bench_speed.py --batch-size 32 --rounds 5 --out bench.json

One step = forward + label-smoothed loss + backward + Adam, on a random batch of padded sentences (lengths
uniform in [L/2, L], so the padding masks matter). tokens/s counts non-pad source + target tokens. The models
run in interleaved rounds (A, B, C, A, B, C, ...) and the median round is reported, so that a burst of load from
another process on a shared machine hits all of them alike. The nn.Transformer gets the same embeddings,
positional encoding and tied output layer as ours; it has two extra final LayerNorms (negligible).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import dl_utils  # noqa: E402
import rl_utils  # noqa: E402
from transformer_basic.model import (  # noqa: E402
    Embedding,
    Transformer,
    TransformerConfig,
    causal_mask,
    count_parameters,
    label_smoothed_loss,
)


@dataclass
class Args:
    """Training tokens/s: ours (teaching and fast attention) vs nn.Transformer with the same sizes."""

    LIMITS = {"batch_size": (1, None), "src_len": (1, None), "tgt_len": (1, None), "vocab": (4, None),
              "d_model": (1, None), "n_heads": (1, None), "n_layers": (1, None), "d_ff": (1, None),
              "dropout": (0, 1), "steps": (1, None), "warmup_steps": (0, None), "rounds": (1, None)}

    batch_size: int = 64
    """sentence pairs per step"""
    src_len: int = 32
    """longest source sentence (tokens)"""
    tgt_len: int = 32
    """longest target sentence (tokens)"""
    vocab: int = 1_000
    """vocabulary size (joint, tied output layer)"""
    d_model: int = 128
    """model width"""
    n_heads: int = 4
    """attention heads"""
    n_layers: int = 2
    """encoder layers = decoder layers"""
    d_ff: int = 512
    """feed-forward width"""
    dropout: float = 0.1
    """dropout (the training configuration, so dropout cost is included)"""
    steps: int = 10
    """timed steps per model per round"""
    warmup_steps: int = 2
    """untimed steps per model before the first round (allocator, kernel selection)"""
    rounds: int = 7
    """interleaved rounds (the order rotates each round); the median and range of the paired ratios are reported"""
    torch_threads: int = 1
    """torch CPU threads (1: on a shared 2-core machine 2 threads are slower and far noisier)"""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda"""
    seed: int = 1
    """seed of the weights and the random batch"""
    out: str = ""
    """optional JSON file for the results"""


class TorchTransformer(nn.Module):
    """nn.Transformer (post-norm, ReLU, batch_first) wrapped with our embeddings and a tied output layer."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = Embedding(cfg.src_vocab, cfg.d_model, cfg.max_len, cfg.dropout, False, cfg.pad_id)
        self.core = nn.Transformer(cfg.d_model, cfg.n_heads, cfg.n_enc_layers, cfg.n_dec_layers, cfg.d_ff,
                                   cfg.dropout, batch_first=True)
        self.generator = nn.Linear(cfg.d_model, cfg.tgt_vocab)
        self.generator.weight = self.embed.tokens.weight

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        src_pad, tgt_pad = src == self.cfg.pad_id, tgt_in == self.cfg.pad_id  # True = ignore (PyTorch convention)
        future = ~causal_mask(tgt_in.size(1), src.device)[0, 0]  # [T, T], True = not allowed
        y = self.core(self.embed(src), self.embed(tgt_in), tgt_mask=future, src_key_padding_mask=src_pad,
                      tgt_key_padding_mask=tgt_pad, memory_key_padding_mask=src_pad)
        return self.generator(y)  # [B, T, V]


def random_batch(args: Args, device: torch.device, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    def padded(length: int) -> torch.Tensor:
        x = torch.randint(4, args.vocab, (args.batch_size, length), generator=gen)
        lens = torch.randint(max(length // 2, 2), length + 1, (args.batch_size,), generator=gen)
        x[torch.arange(length)[None] >= lens[:, None]] = 0  # right padding
        return x.to(device)

    return padded(args.src_len), padded(args.tgt_len + 1)


def main() -> None:
    args = rl_utils.parse_args(Args)
    if args.d_model % args.n_heads:
        raise rl_utils.UsageError(f"--d-model {args.d_model} must be divisible by --n-heads {args.n_heads}")
    rl_utils.set_seed(args.seed)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    device = rl_utils.pick_device(args.device)
    cfg = dict(src_vocab=args.vocab, tgt_vocab=args.vocab, d_model=args.d_model, n_heads=args.n_heads,
               n_enc_layers=args.n_layers, n_dec_layers=args.n_layers, d_ff=args.d_ff, dropout=args.dropout,
               max_len=max(args.src_len, args.tgt_len) + 1, share_embeddings=True)
    models = {
        "ours, teaching path": Transformer(TransformerConfig(**cfg, fast_attention=False)),
        "ours, fast path (SDPA)": Transformer(TransformerConfig(**cfg, fast_attention=True)),
        "nn.Transformer": TorchTransformer(TransformerConfig(**cfg)),
    }
    src, tgt = random_batch(args, device, torch.Generator().manual_seed(args.seed))
    tokens = int((src != 0).sum() + (tgt[:, 1:] != 0).sum())
    steps = {}
    for name, model in models.items():
        model.to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step(model=model, opt=opt) -> None:
            logits = model(src, tgt[:, :-1])
            loss = label_smoothed_loss(logits.flatten(0, 1), tgt[:, 1:].flatten(), 0.1, 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        steps[name] = step
        for _ in range(args.warmup_steps):
            step()
    times: dict[str, list[float]] = {name: [] for name in models}
    names = list(steps)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
            step = steps[name]
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)

    rows = []
    print(f"batch {args.batch_size} x (src {args.src_len}, tgt {args.tgt_len}), d_model {args.d_model}, "
          f"{args.n_heads} heads, {args.n_layers}+{args.n_layers} layers, d_ff {args.d_ff}, dropout {args.dropout}, "
          f"{torch.get_num_threads()} threads, {device}, {tokens} non-pad tokens per step\n")
    print("| model | parameters | ms / step | tokens/s | vs nn.Transformer |")
    print("|---|---|---|---|---|")
    for name, model in models.items():
        per_step = statistics.median(times[name]) / args.steps
        tps = tokens / per_step
        ratio = dl_utils.speed_ratio(times[name], times["nn.Transformer"])  # paired by round
        rows.append({"model": name, "params": count_parameters(model), "ms_per_step": round(1000 * per_step, 1),
                     "tokens_per_s": round(tps, 1), "ratio": round(ratio.median, 3),
                     "ratio_low": round(ratio.low, 3), "ratio_high": round(ratio.high, 3)})
        print(f"| {name} | {count_parameters(model):,} | {1000 * per_step:.1f} | {tps:,.0f} | {ratio} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "device": str(device), "rows": rows}, indent=2))
    fast = rows[1]
    ratio = fast["ratio"] if math.isfinite(fast["ratio"]) else math.nan
    print(f"\nfast path {fast['tokens_per_s']:,.0f} tokens/s = {ratio:.2f}x nn.Transformer "
          f"(range {fast['ratio_low']:.2f}-{fast['ratio_high']:.2f}x over {args.rounds} rounds; teaching path "
          f"{rows[0]['ratio']:.2f}x)")


if __name__ == "__main__":
    rl_utils.run_main(main)

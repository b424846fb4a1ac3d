"""Acting latency of the Pong Transformer: one step of N envs with the key/value cache against recomputing the
whole window (the last ``lookback`` frames plus the new one) every step, as the notes' first version did.

    python classic_rl/pong/bench_cache.py                              # lookback 10 and 256, 8 envs, CPU
    python classic_rl/pong/bench_cache.py --lookbacks 10,64,256 --steps 100

Both paths compute the same logits (checked here and in tests/test_pong.py); only the work differs: the cache
embeds and projects one frame per env per step, the recompute embeds lookback + 1 frames and attends them all.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import rl_utils  # noqa: E402
from classic_rl.pong.model import FramePolicy, TransformerActor  # noqa: E402


@dataclass
class Args:
    """Per-step acting latency of the Pong Transformer, with the KV cache and recomputing the window."""

    lookbacks: str = "10,256"
    """comma-separated lookback windows to measure"""
    num_envs: int = 8
    """envs acting together (one batch per step)"""
    steps: int = 50
    """timed steps per path (after as many warm-up steps as the window is long)"""
    d_model: int = 128
    """token width"""
    n_layer: int = 1
    """blocks"""
    n_head: int = 8
    """attention heads"""
    device: str = "cpu"
    """cpu, cuda or auto"""
    torch_threads: int = 1
    """torch CPU threads"""
    seed: int = 1
    """seed of the weights and the random frames"""

    LIMITS = {"num_envs": (1, None), "steps": (1, None), "n_layer": (1, None), "n_head": (1, None),
              "torch_threads": (0, None)}


def timed(fn, device: torch.device) -> float:  # type: ignore[no-untyped-def]
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


@torch.no_grad()
def measure(args: Args, lookback: int, device: torch.device) -> tuple[float, float, float]:
    """(median ms per step with the cache, recomputing the window, max |logit difference|)."""
    torch.manual_seed(args.seed)
    agent = FramePolicy("transformer", d_model=args.d_model, n_layer=args.n_layer, n_head=args.n_head,
                        lookback=lookback).to(device).eval()
    n, total = args.num_envs, lookback + 1 + args.steps
    frames = (torch.rand(total, n, 80, 80, device=device) < 0.05).to(torch.uint8)  # [T, N, 80, 80]
    actor = TransformerActor(agent, n, device)
    cached, recomputed, diff = [], [], 0.0
    out = {}
    for t in range(total):
        def step() -> None:
            out["cache"] = actor.step(frames[t])[0]
        dt = timed(step, device)
        lo = max(t - lookback, 0)
        window = frames[lo:t + 1].transpose(0, 1)  # [N, W, 80, 80]
        pos = torch.arange(lo, t + 1, device=device).expand(n, -1)
        starts = pos == 0

        def recompute() -> None:
            out["full"] = agent.forward_seq(window, pos, starts)[0][:, -1]
        dr = timed(recompute, device)
        if t > lookback:  # timed once the window is full
            cached.append(dt)
            recomputed.append(dr)
            diff = max(diff, float((out["cache"] - out["full"]).abs().max()))
    return 1e3 * statistics.median(cached), 1e3 * statistics.median(recomputed), diff


def main() -> None:
    args = rl_utils.parse_args(Args)
    lookbacks = rl_utils.parse_int_list(args.lookbacks, "--lookbacks", low=1)
    if args.n_head < 1 or args.d_model % args.n_head or args.d_model % 2:
        raise rl_utils.UsageError(f"--d-model {args.d_model} must be even and divisible by --n-head {args.n_head}")
    device = rl_utils.setup(args)  # type: ignore[arg-type]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"{args.num_envs} envs, d_model {args.d_model}, {args.n_layer} layer(s), {args.n_head} heads, {name}, "
          f"median of {args.steps} steps")
    print("| lookback | KV cache (ms/step) | recompute window (ms/step) | speed-up | max abs logit diff |")
    print("|---|---|---|---|---|")
    for lookback in lookbacks:
        cache_ms, full_ms, diff = measure(args, lookback, device)
        print(f"| {lookback} | {cache_ms:.2f} | {full_ms:.2f} | {full_ms / cache_ms:.1f}x | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    rl_utils.run_main(main)

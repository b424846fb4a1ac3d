"""Training speed: forward + backward + AdamW step, images/s, of our VisionTransformer against timm's
VisionTransformer with the same config, side by side. Repetitions are interleaved (ours, timm, ours, timm, ...) so
the load of a shared machine hits both alike; the median of the repetitions is reported.

    python vit/bench_speed.py                                    # the README table (CPU, 1 thread)
    python vit/bench_speed.py --configs vit_tiny_patch16_224 --batch-sizes 32 --device cuda
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import dl_utils  # noqa: E402
import rl_utils  # noqa: E402
from vit.model import CONFIGS, VisionTransformer, get_config  # noqa: E402


@dataclass
class Args:
    """Images/s of our ViT vs timm's VisionTransformer of the same config (forward + backward + optimiser step)."""

    LIMITS = {"repeats": (1, None), "steps": (1, None), "warmup": (0, None)}

    configs: str = "vit_micro_patch4_28,vit_micro_patch7_28,vit_tiny_patch16_224"
    """comma-separated named configs (vit/model.py)"""
    batch_sizes: str = "128,128,16"
    """batch size per config (one number = the same for all)"""
    repeats: int = 7
    """interleaved timed repetitions per model"""
    steps: int = 5
    """training steps per repetition"""
    warmup: int = 2
    """untimed steps per model before timing"""
    written_out: bool = False
    """time our written-out attention instead of scaled_dot_product_attention"""
    device: str = "cpu"
    """cpu, cuda or auto"""
    torch_threads: int = 1
    """torch CPU threads"""
    seed: int = 0
    """seed of the weights and the random batch"""
    out: str = ""
    """also write the results as JSON to this file"""


def timm_twin(cfg) -> torch.nn.Module:
    """timm's VisionTransformer with our config (same shapes; weights copied so both do identical work)."""
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    return TimmViT(img_size=cfg.image_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans,
                   num_classes=cfg.num_classes, embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
                   mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, global_pool=cfg.global_pool)


def time_steps(model, opt, x, y, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    args = rl_utils.parse_args(Args)
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    for name in names:
        if name not in CONFIGS:
            raise rl_utils.UsageError(f"unknown ViT config {name!r}; choose from: {', '.join(CONFIGS)}")
    sizes = rl_utils.parse_int_list(args.batch_sizes, "--batch-sizes", low=1)
    if len(sizes) == 1:
        sizes *= len(names)
    if len(sizes) != len(names):
        raise rl_utils.UsageError(f"--batch-sizes needs 1 or {len(names)} numbers, got {len(sizes)}")
    torch.set_num_threads(max(1, args.torch_threads))
    device = rl_utils.pick_device(args.device)
    rows = []
    for name, batch in zip(names, sizes):
        cfg = get_config(name)
        torch.manual_seed(args.seed)
        ours = VisionTransformer(cfg).to(device).set_fused_attn(not args.written_out)
        theirs = timm_twin(cfg).to(device)
        theirs.load_state_dict(ours.state_dict())  # same names, same numbers
        x = torch.randn(batch, cfg.in_chans, cfg.image_size, cfg.image_size, device=device)
        y = torch.randint(0, cfg.num_classes, (batch,), device=device)
        models = {"ours": ours, "timm": theirs}
        opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
        for k, m in models.items():
            m.train()
            time_steps(m, opts[k], x, y, args.warmup, device)
        times: dict[str, list[float]] = {"ours": [], "timm": []}
        for r in range(args.repeats):
            order = ("ours", "timm") if r % 2 == 0 else ("timm", "ours")  # alternate who goes first
            for k in order:
                times[k].append(time_steps(models[k], opts[k], x, y, args.steps, device))
        ips = {k: batch * args.steps / statistics.median(v) for k, v in times.items()}
        ratio = dl_utils.speed_ratio(times["ours"], times["timm"])  # paired by repetition
        row = dict(config=name, batch=batch, params=sum(p.numel() for p in ours.parameters()),
                   ours_img_s=round(ips["ours"], 1), timm_img_s=round(ips["timm"], 1),
                   ratio=round(ratio.median, 3), ratio_low=round(ratio.low, 3), ratio_high=round(ratio.high, 3))
        rows.append(row)
        print(f"{name:<24s} batch {batch:4d} | ours {ips['ours']:8.1f} img/s | timm {ips['timm']:8.1f} img/s | "
              f"ours/timm {ratio}", flush=True)
    meta = dict(device=str(device), torch_threads=args.torch_threads, torch=torch.__version__,
                attention="written-out" if args.written_out else "sdpa", repeats=args.repeats, steps=args.steps)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    ratios = [f"{r['ratio']:.2f}x ({r['ratio_low']:.2f}-{r['ratio_high']:.2f})" for r in rows]
    print(f"ours/timm training images/s: {', '.join(ratios)} (median and range of {args.repeats} interleaved "
          f"repeats, {device}, {args.torch_threads} thread(s), {meta['attention']} attention)")


if __name__ == "__main__":
    rl_utils.run_main(main)

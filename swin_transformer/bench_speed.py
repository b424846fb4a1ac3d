"""Training speed (forward + backward + AdamW step, images/s) of our Swin against timm's ``SwinTransformer`` with
the same config and the same weights, side by side: repetitions are interleaved (ours-written-out, ours-SDPA,
timm, ours-written-out, ...) so that a load change on a shared machine hits all of them alike; medians reported.

    python swin_transformer/bench_speed.py                                  # the mnist config, batch 64, 1 thread
    python swin_transformer/bench_speed.py --config tiny --batch-size 8     # Swin-T at 224
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

import rl_utils  # noqa: E402
from swin_transformer.model import CONFIGS, SwinTransformer, get_config, timm_to_ours  # noqa: E402


@dataclass
class Args:
    """Images/s of forward + backward + optimiser step: ours (written-out and SDPA attention) vs timm."""

    LIMITS = {"batch_size": (1, None), "repeats": (1, None), "warmup": (0, None)}

    config: str = "mnist"
    """one of our configs (mnist, cifar, micro, tiny, small, base, large)"""
    batch_size: int = 64
    """images per step"""
    repeats: int = 15
    """timed steps per model (interleaved); the median is reported"""
    warmup: int = 3
    """untimed steps per model first"""
    torch_threads: int = 1
    """torch CPU threads (0 = torch's default)"""
    seed: int = 0
    """seed of the weights and the batch"""
    out: str = ""
    """also write the results as JSON here"""


def timm_twin(cfg):
    """timm's SwinTransformer with our config (stochastic depth and dropout off in both, for equal work)."""
    from timm.models.swin_transformer import SwinTransformer as TimmSwin

    return TimmSwin(img_size=cfg.img_size, patch_size=cfg.patch_size, in_chans=cfg.in_chans,
                    num_classes=cfg.num_classes, embed_dim=cfg.embed_dim, depths=cfg.depths,
                    num_heads=cfg.num_heads, window_size=cfg.window_size, mlp_ratio=cfg.mlp_ratio,
                    qkv_bias=cfg.qkv_bias, drop_path_rate=0.0)


def main() -> None:
    args = rl_utils.parse_args(Args)
    if args.config not in CONFIGS:
        raise rl_utils.UsageError(f"unknown config {args.config!r}; choose one of: {', '.join(CONFIGS)}")
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    cfg = get_config(args.config, drop_path_rate=0.0)
    ref = timm_twin(cfg)
    models = {"timm": ref}
    for name, fused in (("ours (written-out)", False), ("ours (SDPA)", True)):
        ours = SwinTransformer(get_config(args.config, drop_path_rate=0.0, fused_attn=fused))
        ours.load_state_dict(timm_to_ours(ref.state_dict()))  # the same weights: the same arithmetic
        models[name] = ours
    x = torch.randn(args.batch_size, cfg.in_chans, cfg.img_size, cfg.img_size)
    y = torch.randint(0, cfg.num_classes, (args.batch_size,))
    optims = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}

    def step(name: str) -> float:
        model, opt = models[name], optims[name]
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    for m in models.values():
        m.train()
    for _ in range(args.warmup):
        for name in models:
            step(name)
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.repeats):
        for name in models:
            times[name].append(step(name))
    ips = {k: args.batch_size / statistics.median(v) for k, v in times.items()}
    best_ours = max(("ours (written-out)", "ours (SDPA)"), key=ips.get)
    print(f"config {args.config}: {cfg.img_size}px, patch {cfg.patch_size}, C {cfg.embed_dim}, depths "
          f"{list(cfg.depths)}, window {cfg.window_size}; batch {args.batch_size}, {torch.get_num_threads()} "
          f"thread(s), {args.repeats} interleaved repeats, median")
    for name, value in ips.items():
        print(f"  {name:<20s} {value:9.2f} images/s  ({value / ips['timm']:.2f}x timm)")
    result = {"config": args.config, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
              "repeats": args.repeats, "images_per_s": {k: round(v, 2) for k, v in ips.items()},
              "ours_images_per_s": round(ips[best_ours], 2), "ours_variant": best_ours,
              "timm_images_per_s": round(ips["timm"], 2), "ratio": round(ips[best_ours] / ips["timm"], 3),
              "device": "cpu", "torch": torch.__version__}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{best_ours}: {ips[best_ours]:.1f} images/s vs timm {ips['timm']:.1f}: {result['ratio']:.2f}x timm")


if __name__ == "__main__":
    rl_utils.run_main(main)

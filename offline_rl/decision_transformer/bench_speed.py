"""Speed of the Decision Transformer on this machine: gradient steps/s of training and milliseconds per acting
step with the window of the last K steps (one full forward) and with the key/value cache (a few tokens).

    python offline_rl/decision_transformer/bench_speed.py                  # the default (notes') config, Hopper sizes
    python offline_rl/decision_transformer/bench_speed.py --out offline_rl/decision_transformer/figures/speed.json

Random inputs of Hopper's sizes (11-d states, 3-d actions); no env or dataset is needed.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import rl_utils  # noqa: E402
from offline_rl.decision_transformer import train as dt  # noqa: E402


@dataclass
class Args(rl_utils.RunArgs):
    """Time training steps and acting steps of the Decision Transformer."""

    context: int = 20
    """K"""
    n_embd: int = 128
    """embedding width"""
    n_layer: int = 3
    """Transformer blocks"""
    n_head: int = 1
    """attention heads"""
    batch_size: int = 64
    """segments per training step"""
    train_steps: int = 10
    """training steps timed (after 2 warm-up steps)"""
    episodes: int = 10
    """parallel episodes an acting step serves (the evaluation's batch)"""
    act_steps: int = 100
    """acting steps timed per mode"""
    state_dim: int = 11
    """state size (Hopper's)"""
    act_dim: int = 3
    """action size (Hopper's)"""
    out: str = ""
    """also write the numbers to this JSON file"""

    LIMITS = {"train_steps": (1, None), "act_steps": (1, None), "episodes": (1, None), "batch_size": (1, None)}


def main() -> None:
    args = rl_utils.parse_args(Args)
    device = rl_utils.setup(args)
    run_args = dt.Args(context=args.context, n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head,
                       dropout=0.1, return_scale=1000.0)
    dt.check_args(run_args)
    model = dt.build_model(run_args, args.state_dim, args.act_dim, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, k = args.batch_size, args.context
    batch = dt.to_torch(dict(states=np.random.randn(b, k, args.state_dim).astype(np.float32),
                             actions=np.random.uniform(-1, 1, (b, k, args.act_dim)).astype(np.float32),
                             returns_to_go=np.random.uniform(0, 3000, (b, k, 1)).astype(np.float32),
                             timesteps=np.random.randint(0, 1000, (b, k)), keep=np.ones((b, k), bool)), device)

    def train_step() -> None:
        loss = dt.action_loss(model, batch, run_args.return_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        train_step()
    t0 = time.perf_counter()
    for _ in range(args.train_steps):
        train_step()
    result = {"train_steps_per_s": args.train_steps / (time.perf_counter() - t0)}
    model.eval()
    for mode in ("window", "cached"):
        run_args.eval_context = mode
        policy = dt.DTPolicy(model, 3600.0, args.episodes, run_args, device, args.act_dim, args.state_dim)
        policy.reset(np.ones(args.episodes, dtype=bool))
        obs = np.random.randn(args.episodes, args.state_dim).astype(np.float32)
        for _ in range(k):  # fill the window first: the steady state of a long episode
            policy(obs)
            policy.observe(np.ones(args.episodes))
        t0 = time.perf_counter()
        for _ in range(args.act_steps):
            policy(obs)
            policy.observe(np.ones(args.episodes))
        result[f"act_ms_per_step_{mode}"] = 1e3 * (time.perf_counter() - t0) / args.act_steps
    result.update(device=str(device), torch_threads=torch.get_num_threads(), batch_size=b, context=k,
                  n_embd=args.n_embd, n_layer=args.n_layer, episodes=args.episodes)
    print(json.dumps(result, indent=2))
    if args.out:
        rl_utils.write_text_atomic(Path(args.out), json.dumps(result, indent=2))


if __name__ == "__main__":
    rl_utils.run_main(main)

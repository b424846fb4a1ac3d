"""The memory-task figure: eval return vs env steps, per seed (thin) and the mean over seeds (thick), per backbone.

    python classic_rl/pong/plot_memory_task.py OUT.png LABEL=RUNS_GLOB [LABEL=RUNS_GLOB ...]

e.g. python classic_rl/pong/plot_memory_task.py classic_rl/pong/figures/memory_task.png \
    "transformer=runs/CartPoleNoVelocity-v1__ppo_transformer__*" "mlp=runs/CartPoleNoVelocity-v1__ppo_mlp__*"
(rl_utils.py plot draws the mean ± std band only; this adds every seed as a thin line.)
"""
import glob
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import rl_utils  # noqa: E402

out, groups = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
fig, ax = plt.subplots(figsize=(7, 4.2))
for (label, pattern), colour in zip(groups, ("tab:blue", "tab:orange", "tab:green", "tab:red")):
    runs = sorted(glob.glob(pattern))
    curves = [rl_utils.read_metrics(r, "eval/return")[:2] for r in runs]
    for x, y in curves:
        ax.plot(x, y, color=colour, alpha=0.35, lw=0.9)
    n = min(len(x) for x, _ in curves)
    assert all(np.array_equal(curves[0][0][:n], x[:n]) for x, _ in curves)  # the same eval steps in every seed
    ax.plot(curves[0][0][:n], np.mean([y[:n] for _, y in curves], 0), color=colour, lw=2.2,
            label=f"{label} (mean of {len(runs)} seeds; thin: each seed)")
ax.axhline(475, color="grey", ls="--", lw=0.8)
ax.text(0, 480, "475 (CartPole-v1's 'solved')", color="grey", fontsize=7, va="bottom")
ax.set_xlabel("environment steps")
ax.set_ylabel("eval return (greedy, 10 episodes)")
ax.set_ylim(0, 520)
ax.set_title("CartPoleNoVelocity-v1 (x and θ only): PPO, same settings")
ax.grid(alpha=0.3)
ax.legend(fontsize=8, loc="center right")
fig.tight_layout()
fig.savefig(out, dpi=110)
print("wrote", out)

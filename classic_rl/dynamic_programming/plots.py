"""Heat map of a state-value function on a grid world, with the greedy policy drawn as arrows."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from classic_rl.dynamic_programming.dp import TabularModel

# Cell letters: S start, F free, H hole/hell, C cliff, G goal.
BLOCKED = ("H", "C")


def plot_value_policy(model: TabularModel, V: np.ndarray, actions: np.ndarray, title: str, out: str | Path,
                      annotate: bool = True) -> Path | None:
    """Save V (heat map, one cell per state) with an arrow for the greedy action in every non-terminal cell.
    Returns None (and draws nothing) when the env's states are not cells of a grid (e.g. Taxi)."""
    if model.grid is None or model.action_deltas is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = model.grid
    grid_v = np.ma.masked_array(V.reshape(rows, cols), mask=np.isin(model.desc, BLOCKED))  # [rows, cols]
    fig, ax = plt.subplots(figsize=(0.62 * cols + 1.6, 0.62 * rows + 0.9))
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("0.35")  # holes and cliff cells in dark grey
    im = ax.imshow(grid_v, cmap=cmap)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    for s in range(rows * cols):
        r, c = divmod(s, cols)
        letter = model.desc[r, c]
        if letter in BLOCKED or letter == "G" or model.terminal[s] or model.unreachable[s]:
            ax.text(c, r, letter if letter != "F" else "", ha="center", va="center", color="w", fontsize=9,
                    fontweight="bold")
            continue
        dr, dc = model.action_deltas[actions[s]]
        ax.annotate("", xy=(c + 0.32 * dc, r + 0.32 * dr), xytext=(c - 0.32 * dc, r - 0.32 * dr),
                    arrowprops={"arrowstyle": "->", "color": "w", "lw": 1.4})
        if annotate:
            ax.text(c, r + 0.38, f"{V[s]:.2f}", ha="center", va="bottom", color="w", fontsize=6)
        if letter == "S":
            ax.text(c - 0.42, r - 0.42, "S", ha="left", va="top", color="w", fontsize=7, fontweight="bold")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out

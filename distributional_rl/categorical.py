"""The categorical return distribution of C51 (Bellemare et al. 2017) and D4PG (Barth-Maron et al. 2018).

A critic outputs probabilities p_j over N fixed atoms z_j = v_min + j Δz, Δz = (v_max − v_min) / (N − 1). The
distributional Bellman target for a transition (r, γ^m, done) moves every atom to T z_j = r + γ^m (1 − done) z_j,
which lies *between* atoms: :func:`project` splits each moved atom's mass between its two neighbours on the grid,
in proportion to closeness, after clipping to [v_min, v_max]. The critic is then trained by the cross-entropy
between that projected target and its own prediction (:func:`cross_entropy`; the notes' D4PG used a binary
cross-entropy, which is not the KL to a categorical target).

Two traps the notes' code fell into are handled here and tested in ``tests/test_distributional.py``:

* ``l == u``: when b = (T z_j − v_min) / Δz is an integer, floor and ceil coincide and the textbook weights
  (u − b, b − l) are both 0, so the atom's mass disappears. Here the lower weight is 1 − (b − l), which is 1 in
  that case, so every atom always hands out exactly its mass.
* the per-sample discount: ``discounts`` is γ^m for the m rewards actually summed (an n-step window cut at an
  episode end has fewer than n), and a terminated transition keeps only r.
"""

from __future__ import annotations

import torch


def make_support(v_min: float, v_max: float, n_atoms: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The atoms z_0 < ... < z_{N−1}, evenly spaced on [v_min, v_max]: [N]."""
    if not v_min < v_max:
        raise ValueError(f"v_min must be < v_max, got {v_min} and {v_max}")
    if n_atoms < 2:
        raise ValueError(f"need at least 2 atoms, got {n_atoms}")
    return torch.linspace(v_min, v_max, n_atoms, device=device)


def project(next_probs: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor, dones: torch.Tensor,
            support: torch.Tensor) -> torch.Tensor:
    """Project the shifted distribution r + γ^m (1 − done) Z' onto ``support``: returns [B, N] probabilities.

    next_probs [B, N] (rows sum to 1), rewards / discounts / dones [B], support [N]. Vectorised as in the paper's
    Algorithm 1: b = (clip(T z) − v_min) / Δz, l = ⌊b⌋; atom j gives p_j (1 − (b − l)) to l and p_j (b − l) to
    l + 1 (the second weight is 0 when b is an integer, so ``l == u`` keeps all its mass at l; at b = N − 1 the
    index l + 1 is clamped into range, where it receives weight 0)."""
    n = support.shape[0]
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (n - 1)
    shifted = rewards.unsqueeze(1) + (discounts * (1.0 - dones)).unsqueeze(1) * support.unsqueeze(0)  # [B, N]
    b = ((shifted.clamp(v_min, v_max) - v_min) / delta).clamp(0, n - 1)  # [B, N], in [0, N−1]
    lower = b.floor()
    upper_weight = b - lower  # in [0, 1)
    lower = lower.long()
    target = torch.zeros_like(next_probs)
    target.scatter_add_(1, lower, next_probs * (1.0 - upper_weight))
    target.scatter_add_(1, (lower + 1).clamp(max=n - 1), next_probs * upper_weight)
    return target


def cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """−Σ_j target_j log softmax(logits)_j per sample: [B] (the KL to the target up to its constant entropy).
    log_softmax keeps it finite where a predicted probability underflows to 0."""
    return -(target_probs * torch.log_softmax(logits, dim=-1)).sum(-1)


def expected_value(probs: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """E[Z] = Σ_j p_j z_j over the last dimension (Q-values for greedy action selection)."""
    return (probs * support).sum(-1)

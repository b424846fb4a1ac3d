"""TD3's networks: a deterministic tanh actor and twin critics in one batched forward (``classic_rl/continuous.py``,
shared with DDPG and SAC; tested there against separate MLPs)."""

from __future__ import annotations

from classic_rl.continuous import DeterministicActor, QEnsemble

__all__ = ["DeterministicActor", "QEnsemble"]

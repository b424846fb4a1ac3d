"""DDPG's networks: a deterministic tanh actor and one critic (an ensemble of 1 in ``classic_rl/continuous.py``,
the same code TD3's twin critics use)."""

from __future__ import annotations

from classic_rl.continuous import DeterministicActor, QEnsemble

__all__ = ["DeterministicActor", "QEnsemble"]

"""A2C's network: the shared MLP actor-critic of the policy-gradient family (``classic_rl/policies.py``), as in
Mnih et al. 2016 (separate actor and critic trunks by default; ``--shared-trunk`` joins them as the paper's
Atari network does)."""

from __future__ import annotations

from classic_rl.policies import ActorCritic

__all__ = ["ActorCritic"]

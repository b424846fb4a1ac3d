"""A3C's network: the shared MLP actor-critic of the policy-gradient family (``classic_rl/policies.py``), as in
A2C (separate actor and critic trunks by default; ``--shared-trunk`` joins them as the paper's Atari network
does). One copy lives in shared memory (the parameters every worker updates); each worker acts and computes its
gradients with a local copy that it refreshes from the shared one before every rollout."""

from __future__ import annotations

from classic_rl.policies import ActorCritic

__all__ = ["ActorCritic"]

"""SAC's networks: a tanh-Gaussian actor and twin critics evaluated in one batched forward (both live in
``classic_rl/continuous.py``, shared with DDPG and TD3; the tests there hold them to torch.distributions and to
separate MLPs)."""

from __future__ import annotations

from classic_rl.continuous import QEnsemble, SquashedGaussianActor

__all__ = ["QEnsemble", "SquashedGaussianActor"]

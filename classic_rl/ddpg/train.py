"""DDPG (Lillicrap et al. 2016): deterministic policy gradient with a replay buffer and soft target updates.

    python classic_rl/ddpg/train.py                                  # Pendulum-v1, 20k steps
    python classic_rl/ddpg/train.py --exploration-noise ou           # the paper's Ornstein-Uhlenbeck noise
    python classic_rl/ddpg/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt

DDPG is TD3 with TD3's three changes switched off: one critic (no clipped double Q), no target policy smoothing,
the actor updated at every step. So this file only sets those defaults; the losses, the update and the loop are
``classic_rl/td3/train.py`` (read it there). Every TD3 flag works here too, e.g. ``--num-critics 2`` turns the
clipped double-Q target back on. Unlike the notes' version, targets move by Polyak steps (not hard copies) and
rewards are not rescaled.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl.td3 import train as td3  # noqa: E402


@dataclass
class Args(td3.Args):
    """Train DDPG (one critic, no target smoothing, no delay) on a Box-action env."""

    num_critics: int = 1
    """critics whose minimum forms the target: DDPG's single critic (2 = TD3's clipped double Q)"""
    policy_delay: int = 1
    """critic updates per actor (and target) update: DDPG updates the actor at every step"""
    target_policy_noise: float = 0.0
    """std of the Gaussian noise on the target action: none in DDPG"""

    ALGO = "DDPG"


PRESETS = td3.PRESETS

if __name__ == "__main__":
    rl_utils.run_main(lambda: td3.main(Args, PRESETS))

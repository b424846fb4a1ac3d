"""Envs that fail on purpose, for the tests of distributed runs. Named with gymnasium's ``module:EnvId`` form
(``tests.fault_envs:FailingPendulum-v0``), so every worker process imports this module and registers them too."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
from gymnasium.envs.classic_control.pendulum import PendulumEnv

FAIL_AFTER = 300  # env steps of one env instance before it raises: past start-up, well inside a tiny run


class FailingPendulum(PendulumEnv):
    """Pendulum-v1 that raises ``RuntimeError("planted failure")`` on its FAIL_AFTER-th step."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps >= FAIL_AFTER:
            raise RuntimeError(f"planted failure after {self.steps} steps")
        return super().step(action)


class DyingPendulum(PendulumEnv):
    """Pendulum-v1 whose process exits abruptly (``os._exit``) on its FAIL_AFTER-th step, the first time only:
    the file named by $DLRL_DIE_ONCE is created just before, and an env that finds it lives normally."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps = 0

    def step(self, action):
        self.steps += 1
        marker = Path(os.environ["DLRL_DIE_ONCE"])
        if self.steps >= FAIL_AFTER and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().step(action)


for _name, _cls in (("FailingPendulum-v0", FailingPendulum), ("DyingPendulum-v0", DyingPendulum)):
    if _name not in gym.registry:
        gym.register(_name, entry_point=_cls, max_episode_steps=200)

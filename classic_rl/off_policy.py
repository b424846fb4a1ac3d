"""What the off-policy continuous-control scripts (DDPG, TD3, SAC) share beyond rl_utils: their common flags, the
envs and replay buffer, soft target updates, and the run's set-up and end. Evaluation, ``best.pt`` with its
held-out score, ``--eval-only`` and summary.json are the on-policy family's (``classic_rl/on_policy.py``), given
the actor as the agent: both families evaluate a deterministic policy the same way. Each ``train.py`` keeps its
losses and its update, the part its algorithm is about.

Loading a trained policy for rollouts (datasets, HER, D4PG): :func:`load_policy` -> ``act(obs, deterministic)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import rl_utils
from classic_rl import on_policy


@dataclass
class OffPolicyArgs(rl_utils.CommonArgs):
    """Flags of every off-policy continuous-control script."""

    env_id: str = "Pendulum-v1"
    """gymnasium environment id (Box actions)"""
    total_timesteps: int = 20_000
    """environment steps to train for"""
    buffer_size: int = 1_000_000
    """replay buffer capacity (transitions)"""
    batch_size: int = 256
    """minibatch size of every update"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 0.005
    """Polyak rate of the target networks: θ' ← τ θ + (1 − τ) θ' after every critic update"""
    learning_starts: int = 1_000
    """env steps of uniformly random actions before learning starts (fills the buffer with diverse data)"""
    hidden_sizes: str = "256,256"
    """comma-separated hidden layer sizes of the actor and the critics"""
    norm_obs: bool = False
    """normalise observations with running statistics (saved in every checkpoint, frozen in evaluation)"""
    norm_reward: bool = False
    """scale rewards by the running std of the discounted return (training only; evaluation reports raw)"""
    eval_every: int = 2_000
    """env steps between deterministic evaluations (0 = only at the end)"""

    LIMITS = {"buffer_size": (1, None), "batch_size": (1, None), "gamma": (0, 1), "tau": (0, 1),
              "learning_starts": (0, None)}


@dataclass
class Progress(on_policy.Progress):
    """The on-policy counters plus the number of gradient updates (TD3's policy delay counts them)."""

    updates: int = 0


def soft_update(online: nn.Module, target: nn.Module, tau: float) -> None:
    """θ' ← τ θ + (1 − τ) θ' for every parameter, in one fused call (τ = 1 copies)."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


def continuous_spaces(envs: gym.vector.VectorEnv, algo: str, env_id: str) -> tuple[int, int]:
    """(observation size, action size) for an MLP actor-critic on Box observations and Box actions; a one-line
    error pointing to the discrete-action methods otherwise."""
    if not isinstance(envs.single_action_space, gym.spaces.Box):
        raise rl_utils.UsageError(
            f"{algo} needs continuous (Box) actions, but {env_id} has {envs.single_action_space}: for discrete "
            "actions use classic_rl/sac_discrete/train.py (discrete SAC) or classic_rl/dqn/train.py (DQN family)")
    obs_dim = rl_utils.require_vector_obs(envs.single_observation_space, f"{algo} (MLP)")
    return obs_dim, int(np.prod(envs.single_action_space.shape))


class Session:
    """Everything an off-policy run holds between steps, built fresh or restored from ``--resume``: device, envs,
    replay buffer, the current observation, counters, the networks and optimizers the script gives, the run
    folder and the evaluator (``on_policy.Evaluator``: ``best.pt``, held-out score, summary).

    ``make_actor(args, envs, device)`` builds the policy that is evaluated and saved as ``agent``;
    ``make_learner(args, envs, device, actor)`` returns the other objects to checkpoint by name (critics, targets,
    optimizers, the temperature, ...). ``buffer_extras`` names extra per-step fields of the replay buffer and their
    spaces (DIAYN's skill: ``{"skill": Discrete(K)}``), given to :meth:`step_envs` by the same names."""

    def __init__(self, args: OffPolicyArgs, ckpt: rl_utils.Checkpoint | None, algo: str,
                 make_actor: Callable[..., nn.Module], make_learner: Callable[..., dict[str, Any]],
                 buffer_extras: dict[str, gym.Space] | None = None):
        self.args, self.algo = args, algo
        self.device = rl_utils.setup(args)
        self.envs = on_policy.make_envs(args)  # Box actions exposed as [-1, 1]
        self.actor = make_actor(args, self.envs, self.device)
        self.learner = make_learner(args, self.envs, self.device, self.actor)
        self.buffer = rl_utils.ReplayBuffer(args.buffer_size, args.num_envs, self.envs.single_observation_space,
                                            self.envs.single_action_space, extras=buffer_extras, gamma=args.gamma,
                                            device=self.device, seed=args.seed)
        self.rng = np.random.default_rng(args.seed)  # exploration draws, checkpointed for an exact resume
        self.obs, _ = self.envs.reset(seed=args.seed)
        self.progress = Progress(next_eval=args.eval_every)
        self.extra_state: dict[str, Any] = {}  # more objects a script checkpoints (restored by the script)
        if ckpt is not None:
            if ckpt["buffer"] is None:
                print("note: checkpoint has no replay buffer (--save-buffer): refilling it, the resume is not exact")
            else:
                rl_utils.load_state_into(self.buffer, ckpt["buffer"])
            if rl_utils.Run.restore(ckpt, **self._objects(with_buffer=False)):
                self.obs = ckpt["obs"]
        self.run = rl_utils.Run(args, algo.lower(), resume=ckpt)
        self.evaluate = on_policy.Evaluator(args, self.actor, self.envs, self.device, self.run, self.progress,
                                            self.checkpoint, make_actor)

    def _objects(self, with_buffer: bool = True) -> dict[str, Any]:
        objects = dict(agent=self.actor, **self.learner, progress=self.progress, explore_rng=self.rng,
                       envs=self.envs, **self.extra_state)
        if with_buffer:
            objects["buffer"] = self.buffer if self.args.save_buffer else None
        return objects

    def checkpoint(self, name: str) -> Path:
        return self.run.save(name, self.progress.global_step, **self._objects(), obs=self.obs)

    def step_envs(self, actions: np.ndarray, **extras: np.ndarray) -> np.ndarray:
        """One vector step with ``actions`` in [-1, 1]^d: store the transitions (with the *real* next observation
        where an episode ended, and the ``extras`` fields, one value per env), log finished episodes, advance the
        counters. Returns which envs' episodes ended (terminated or truncated)."""
        next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
        self.buffer.add(self.obs, rl_utils.real_next_obs(next_obs, infos), actions, rewards, terminated, truncated,
                        **extras)
        self.obs = next_obs
        self.progress.iteration += 1
        self.progress.global_step += self.args.num_envs
        self.run.log_episodes(rl_utils.finished_episodes(infos), self.progress.global_step)
        return terminated | truncated

    def count_update(self) -> int:
        """Count one gradient update; returns how many were done before it (0, 1, 2, ...)."""
        self.progress.updates += 1
        return self.progress.updates - 1

    def random_actions(self) -> np.ndarray:
        """Uniform actions for every env (before ``learning_starts``): in [-1, 1]^d for Box actions, indices for
        Discrete ones; from the checkpointed RNG."""
        space = self.envs.single_action_space
        if isinstance(space, gym.spaces.Discrete):
            return space.start + self.rng.integers(space.n, size=self.args.num_envs)
        shape = (self.args.num_envs, *space.shape)
        return self.rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)

    def after_step(self) -> bool:
        """Periodic evaluation and checkpoints; True when ``--target-return`` was reached."""
        step, every = self.progress.global_step, self.args.checkpoint_every
        if self.evaluate.due() and self.evaluate() >= self.args.target_return:
            print(f"target return {self.args.target_return} reached at step {step}")
            return True
        if every and step % every < self.args.num_envs:
            self.checkpoint(f"step_{step}")
            self.checkpoint("latest")
        return False

    def start_progress(self, total: int | None = None) -> None:
        """The progress bar (or plain lines without a terminal) to ``total`` steps (default: --total-timesteps)
        and the SPS clock, from the current step."""
        self.run.progress(self.args.total_timesteps if total is None else total, self.progress.global_step)
        self._sps_t0, self._sps_step0 = time.time(), self.progress.global_step

    def log_update(self, stats: dict[str, torch.Tensor], every: int) -> None:
        """Every ``every`` env steps: the update's losses (``losses/*``; the only ``.item()`` syncs of the loop),
        ``charts/SPS`` and the progress bar."""
        step = self.progress.global_step
        if step % every >= self.args.num_envs:
            return
        sps = (step - self._sps_step0) / max(time.time() - self._sps_t0, 1e-9)
        self.run.log_dict({f"losses/{k}": float(v) for k, v in stats.items()}, step)
        self.run.log("charts/SPS", sps, step)
        self.run.update_progress(step - self.run.bar.n, step, sps)

    end = on_policy.Session.end  # save latest.pt, then the resume hint (Ctrl-C) or the final evaluation + summary


def load_policy(path: str | Path, cls: type[OffPolicyArgs], make_actor: Callable[..., nn.Module],
                device: str | torch.device = "cpu") -> Callable[[np.ndarray, bool], np.ndarray]:
    """A trained policy from its checkpoint, ready to roll out: ``act(obs, deterministic=True)`` takes raw env
    observations [B, obs_dim] and returns actions [B, d] *in the env's own Box bounds* (action indices [B] for a
    Discrete env): the saved observation statistics are applied (frozen) and the [-1, 1] actions rescaled, exactly
    as the training run's evaluation."""
    ckpt = rl_utils.open_checkpoint(path, cls)
    saved = cls(**{**ckpt.args, "num_envs": 1})
    envs = on_policy.make_envs(saved)
    device = torch.device(device)
    actor = make_actor(saved, envs, device)
    rl_utils.load_state_into(actor, ckpt["agent"])
    actor.eval()
    rl_utils.set_env_state(envs, {"sub_envs": None, "wrappers": ckpt["envs"]["wrappers"]})
    norm = rl_utils.find_wrapper(envs, rl_utils.NormalizeObservation)
    raw = gym.make(saved.env_id)
    box = isinstance(raw.action_space, gym.spaces.Box)
    if box:
        low, high = raw.action_space.low.astype(np.float32), raw.action_space.high.astype(np.float32)  # env's bounds
    raw.close()
    envs.close()

    @torch.no_grad()
    def act(obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        x = norm.normalize(np.asarray(obs, dtype=np.float32)) if norm is not None else np.asarray(obs, np.float32)
        x = torch.as_tensor(x, dtype=torch.float32, device=device)
        unit = actor.deterministic(x) if deterministic else actor.explore(x)
        if not box:
            return unit.cpu().numpy()  # action indices
        unit = unit.clamp(-1.0, 1.0).cpu().numpy()
        return low + (unit + 1.0) * 0.5 * (high - low)  # RescaleAction's linear map from [-1, 1]

    return act

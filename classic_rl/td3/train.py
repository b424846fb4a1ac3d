"""TD3 (Fujimoto et al. 2018): DDPG plus clipped double Q, target policy smoothing and delayed actor updates.

    python classic_rl/td3/train.py                                   # Pendulum-v1, 20k steps
    python classic_rl/td3/train.py --env-id Hopper-v5 --total-timesteps 100000
    python classic_rl/td3/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt --capture-video

DDPG is this script with the three TD3 changes switched off (``classic_rl/ddpg/train.py`` sets those defaults:
one critic, no smoothing, no delay), so the two differ only by flags. Read top to bottom: arguments, the two
losses (what the deterministic policy gradient is about), the update, the loop. Envs, the replay buffer,
evaluation and checkpoints come from rl_utils and classic_rl/off_policy.py; networks from classic_rl/continuous.py.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import off_policy, on_policy  # noqa: E402
from classic_rl.continuous import DeterministicActor, QEnsemble  # noqa: E402
from classic_rl.policies import parse_hidden  # noqa: E402


@dataclass
class Args(off_policy.OffPolicyArgs):
    """Train TD3 (twin critics, target policy smoothing, delayed actor updates) on a Box-action env."""

    learning_rate: float = 1e-3
    """Adam learning rate of the actor and the critics (RL Zoo's Pendulum setting)"""
    num_critics: int = 2
    """critics whose minimum forms the target: 2 = clipped double Q (TD3), 1 = DDPG's single critic"""
    policy_delay: int = 2
    """critic updates per actor (and target) update: the actor follows a critic that has settled (DDPG: 1)"""
    target_policy_noise: float = 0.2
    """std of the Gaussian noise on the target action (smoothing the target over nearby actions; DDPG: 0)"""
    target_noise_clip: float = 0.5
    """clip of that noise, so the smoothed action stays near μ'(s')"""
    exploration_noise: str = "gaussian"
    """behaviour noise: gaussian (TD3) or ou (Ornstein-Uhlenbeck, temporally correlated, DDPG's original)"""
    noise_std: float = 0.1
    """std of the exploration noise, in units of the action half-range (actions live in [-1, 1])"""
    ou_theta: float = 0.15
    """OU noise: rate of the pull back to 0 per step"""
    log_every: int = 100
    """env steps between loss log rows"""

    LIMITS = {"learning_rate": (0, None), "num_critics": (1, 2), "policy_delay": (1, None),
              "target_policy_noise": (0, None), "target_noise_clip": (0, None), "noise_std": (0, None),
              "ou_theta": (0, 1), "log_every": (1, None)}
    CHOICES = {"exploration_noise": ("gaussian", "ou")}

    ALGO = "TD3"


# Tuned defaults per env, applied unless the flag is typed.
PRESETS: dict[str, dict[str, object]] = {
    # The paper's MuJoCo settings: lr 3e-4 and 10k random steps first (its original code's start_timesteps; the
    # 25k that CleanRL uses would spend a quarter of this 100k budget acting at random)
    "Hopper-v5": dict(total_timesteps=100_000, learning_rate=3e-4, learning_starts=10_000, eval_every=10_000),
}
for _mujoco in ("HalfCheetah-v5", "Walker2d-v5", "Ant-v5"):
    PRESETS[_mujoco] = PRESETS["Hopper-v5"]


def critic_loss(q: QEnsemble, q_target: QEnsemble, actor_target: DeterministicActor, batch: rl_utils.ReplayBatch,
                noise: float, noise_clip: float,
                target_range: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Regression of every critic on one target; returns (loss, Q(s,a) [n, B] detached).

    ã = clip(μ'(s') + clip(ε, −c, c), −1, 1),  ε ~ N(0, σ²)        (target policy smoothing; σ = 0: DDPG)
    y = r + γ (1 − terminated) min_i Q'_i(s', ã)                     (clipped double Q; one critic: DDPG)
    L = Σ_i ½ E[(Q_i(s, a) − y)²].
    ``target_range`` (lo, hi) clips y to the returns the rewards allow (HER's −1/0 rewards: [−1/(1−γ), 0])."""
    with torch.no_grad():
        next_actions = actor_target(batch.next_obs)  # [B, d]
        if noise > 0:
            eps = (torch.randn_like(next_actions) * noise).clamp(-noise_clip, noise_clip)
            next_actions = (next_actions + eps).clamp(-1.0, 1.0)
        next_q = q_target(batch.next_obs, next_actions).min(dim=0).values  # [B]
        target = batch.rewards + batch.discounts * (1.0 - batch.dones) * next_q  # [B]
        if target_range is not None:
            target = target.clamp(*target_range)
    q_values = q(batch.obs, batch.actions)  # [n, B]
    return 0.5 * (q_values - target).pow(2).mean(dim=1).sum(), q_values.detach()


def actor_loss(q: QEnsemble, actor: DeterministicActor, obs: torch.Tensor) -> torch.Tensor:
    """The deterministic policy gradient (Silver et al. 2014): ∇_θ J = E_s[∇_a Q_1(s, a)|_{a=μ(s)} ∇_θ μ(s)],
    i.e. minimise −E[Q_1(s, μ(s))] with the gradient flowing through the critic into the actor (the first critic
    only, as the TD3 paper: the other critic is not even evaluated)."""
    return -q(obs, actor(obs), members=1)[0].mean()


def build_actor(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> DeterministicActor:
    obs_dim, act_dim = off_policy.continuous_spaces(envs, args.ALGO, args.env_id)
    return DeterministicActor(obs_dim, act_dim, parse_hidden(args.hidden_sizes), args.noise_std).to(device)


def build_learner(args: Args, envs: gym.vector.VectorEnv, device: torch.device,
                  actor: DeterministicActor) -> dict[str, object]:
    """Critics, the target copies of actor and critics, and both optimizers."""
    obs_dim, act_dim = off_policy.continuous_spaces(envs, args.ALGO, args.env_id)
    q = QEnsemble(obs_dim, act_dim, parse_hidden(args.hidden_sizes), n=args.num_critics).to(device)
    adam = dict(lr=args.learning_rate, fused=device.type in ("cpu", "cuda"))  # fused: one kernel per step
    return dict(q=q, q_target=copy.deepcopy(q).requires_grad_(False),  # targets: Polyak steps only
                actor_target=copy.deepcopy(actor).requires_grad_(False),
                actor_optimizer=torch.optim.Adam(actor.parameters(), **adam),
                q_optimizer=torch.optim.Adam(q.parameters(), **adam))


def update(args: Args, actor: DeterministicActor, learner: dict, batch: rl_utils.ReplayBatch,
           update_actor: bool) -> dict[str, torch.Tensor]:
    """One critic step; with ``update_actor`` (every ``policy_delay``-th call) also one actor step and the
    targets' Polyak steps (TD3 delays both)."""
    q = learner["q"]
    loss_q, q_values = critic_loss(q, learner["q_target"], learner["actor_target"], batch,
                                   args.target_policy_noise, args.target_noise_clip)
    learner["q_optimizer"].zero_grad(set_to_none=True)
    loss_q.backward()
    learner["q_optimizer"].step()
    stats = {"qf_loss": loss_q.detach(), "qf_values": q_values.mean()}
    if update_actor:
        loss_pi = actor_loss(q, actor, batch.obs)
        learner["actor_optimizer"].zero_grad(set_to_none=True)
        loss_pi.backward(inputs=list(actor.parameters()))  # the critics' weights get no gradient from the actor
        learner["actor_optimizer"].step()
        off_policy.soft_update(q, learner["q_target"], args.tau)
        off_policy.soft_update(actor, learner["actor_target"], args.tau)
        stats["actor_loss"] = loss_pi.detach()
    return stats


class OUNoise:
    """Ornstein-Uhlenbeck noise x ← x − θ x + σ ε (unit time step), one process per env and action dimension:
    temporally correlated exploration for inertial systems (Lillicrap et al. 2016). Reset where episodes end."""

    def __init__(self, shape: tuple[int, ...], theta: float, sigma: float, rng: np.random.Generator):
        self.theta, self.sigma, self.rng = theta, sigma, rng
        self.state = np.zeros(shape, dtype=np.float32)

    def __call__(self) -> np.ndarray:
        self.state += -self.theta * self.state + self.sigma * self.rng.standard_normal(self.state.shape)
        return self.state

    def reset(self, mask: np.ndarray) -> None:
        self.state[mask] = 0.0

    def state_dict(self) -> dict:
        return {"state": self.state.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.state[...] = state["state"]


def main(cls: type[Args] = Args, presets: dict | None = None) -> None:
    args, ckpt = rl_utils.parse_run_args(cls, presets=PRESETS if presets is None else presets)
    algo = args.ALGO
    if args.eval_only:
        return on_policy.eval_only(cls, args, algo, make_agent=build_actor)
    s = off_policy.Session(args, ckpt, algo, build_actor, build_learner)
    actor, progress = s.actor, s.progress
    ou = OUNoise((args.num_envs, *s.envs.single_action_space.shape), args.ou_theta, args.noise_std, s.rng)
    if ckpt is not None and "ou_noise" in ckpt.state:
        ou.load_state_dict(ckpt["ou_noise"])
    s.extra_state["ou_noise"] = ou
    s.start_progress()
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.global_step < args.total_timesteps and not interrupt.requested:
            if progress.global_step < args.learning_starts:
                actions = s.random_actions()
            else:
                with torch.no_grad():
                    mu = actor(torch.as_tensor(s.obs, dtype=torch.float32, device=s.device)).cpu().numpy()
                noise = ou() if args.exploration_noise == "ou" else args.noise_std * s.rng.standard_normal(mu.shape)
                actions = np.clip(mu + noise, -1.0, 1.0).astype(np.float32)
            ended = s.step_envs(actions)
            ou.reset(ended)
            step = progress.global_step
            stats = {}
            if step > args.learning_starts:
                for _ in range(args.num_envs):  # one critic step per env step (update-to-data ratio 1)
                    progress_updates = s.count_update()
                    stats = update(args, actor, s.learner, s.buffer.sample(args.batch_size),
                                   update_actor=progress_updates % args.policy_delay == 0)
            s.log_update(stats, args.log_every)
            if s.after_step():
                break
    s.end(interrupt.requested)


if __name__ == "__main__":
    rl_utils.run_main(main)

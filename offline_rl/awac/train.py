"""AWAC: Advantage-Weighted Actor-Critic (Nair, Gupta, Dalal, Levine 2020): learn offline from a dataset, then
fine-tune online with the dataset kept in the replay buffer.

    python offline_rl/make_datasets.py --source <SAC Hopper run>          # offline_rl/data/hopper-*.hdf5
    python offline_rl/awac/train.py --dataset offline_rl/data/hopper-medium.hdf5
    python offline_rl/awac/train.py --dataset dlrl/hopper-medium-v0 --total-timesteps 100000   # + fine-tuning
    python offline_rl/awac/train.py --dataset ... --weighting none                             # BC baseline
    python offline_rl/awac/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt

Read top to bottom: arguments, the weights and the two losses (what AWAC is about), the update, then the loop:
``--offline-steps`` gradient steps on the dataset alone, then ``--total-timesteps`` env steps with one gradient
step each. The step counter of logs, evaluations and checkpoints runs through both phases (offline: gradient
steps; online: offline steps + env steps), so one curve shows the switch. Envs, evaluation, ``best.pt`` and
checkpoints come from classic_rl/off_policy.py (the Session of DDPG/TD3/SAC), the dataset from
offline_rl/datasets.py.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import off_policy, on_policy  # noqa: E402
from classic_rl.policies import parse_hidden  # noqa: E402
from offline_rl import common  # noqa: E402
from offline_rl.awac.model import Critics, GaussianActor  # noqa: E402

# the temperature each weighting uses unless --temperature is typed: CORL's λ for exp (its locomotion configs),
# the notes' / rlkit's β for the batch softmax
DEFAULT_TEMPERATURE = {"exp": 1.0 / 3.0, "softmax": 2.0, "none": 1.0}


@dataclass
class Args(common.OfflineArgs):
    """Train AWAC (or, with --weighting none, behaviour cloning) on an offline dataset, then optionally
    fine-tune online."""

    weighting: str = "exp"
    """actor weights: exp (CORL: min(exp(A/λ), max-weight)), softmax (the notes, rlkit, d3rlpy: N·softmax(A/β)
    over the batch), none (behaviour cloning: weight 1, no critics trained)"""
    temperature: float = math.nan
    """λ (exp) or β (softmax) of the offline phase (nan = 1/3 for exp, CORL's; 2 for softmax, the notes')"""
    finetune_temperature: float = math.nan
    """temperature of the online phase (nan = 1.0 for exp, CORL's fine-tuning value; softmax: as offline)"""
    max_weight: float = 100.0
    """clip of the exp weights (CORL): a few huge advantages must not turn the update into one-sample BC"""
    learning_rate: float = 3e-4
    """Adam learning rate of the actor and the critics (CORL, rlkit, d3rlpy)"""
    hidden_sizes: str = "256,256,256"
    """hidden layers of the actor and of each critic (CORL: 3 x 256)"""

    LIMITS = {"max_weight": (0, None), "learning_rate": (0, None)}
    CHOICES = {"weighting": ("exp", "softmax", "none")}

    def phase_temperature(self, online: bool) -> float:
        if online and not math.isnan(self.finetune_temperature):
            return self.finetune_temperature
        if online and self.weighting == "exp":
            return 1.0
        return DEFAULT_TEMPERATURE[self.weighting] if math.isnan(self.temperature) else self.temperature


def awac_weights(advantages: torch.Tensor, weighting: str, temperature: float, max_weight: float) -> torch.Tensor:
    """Per-sample weights of the actor's log-likelihood [B] (no gradient).

    exp:      w = min(exp(A / λ), w_max)               (CORL; the paper's exp(A/λ), clipped for stability)
    softmax:  w = B · softmax(A / β) over the batch     (the notes, rlkit, d3rlpy: Σ w = B, so the loss scale is
                                                         that of BC and only the relative advantage matters)
    none:     w = 1                                     (behaviour cloning)"""
    if weighting == "exp":
        return (advantages / temperature).exp().clamp(max=max_weight)
    if weighting == "softmax":
        return len(advantages) * torch.softmax(advantages / temperature, dim=0)
    return torch.ones_like(advantages)


def critic_loss(q: Critics, q_target: Critics, actor: GaussianActor, batch: rl_utils.ReplayBatch
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """y = r + γ (1 − terminated) min_i Q'_i(s', a'), a' ~ π(·|s') (no entropy term: AWAC's critic is plain
    policy evaluation of π); L = Σ_i ½ E[(Q_i(s, a) − y)²]. ``terminated`` comes from the dataset's terminals only:
    a time-out still bootstraps. Returns (loss, Q(s, a) [2, B] detached)."""
    with torch.no_grad():
        next_q = q_target(batch.next_obs, actor.sample(batch.next_obs)).min(dim=0).values  # [B]
        target = batch.rewards + batch.discounts * (1.0 - batch.dones) * next_q  # [B]
    q_values = q(batch.obs, batch.actions)  # [2, B]
    return 0.5 * (q_values - target).pow(2).mean(dim=1).sum(), q_values.detach()


def actor_loss(q: Critics, actor: GaussianActor, batch: rl_utils.ReplayBatch, weighting: str, temperature: float,
               max_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """L_π = −E_{(s,a)~D}[w(A(s, a)) log π(a|s)], A(s, a) = min_i Q_i(s, a) − min_i Q_i(s, ã), ã ~ π(·|s).

    Weighted maximum likelihood on the *data's* actions: the policy moves toward actions better than its own
    and never queries Q at actions the data lack, which is what keeps it near the data without a behaviour
    model. Returns (loss, weights [B])."""
    with torch.no_grad():
        if weighting == "none":
            weights = torch.ones_like(batch.rewards)
        else:
            # Q at the data's action and at a policy sample in one batched forward of 2B rows: [2, 2B] -> [2B]
            both = q(batch.obs.repeat(2, 1), torch.cat([batch.actions, actor.sample(batch.obs)])).min(0).values
            q_data, v_pi = both.chunk(2)
            weights = awac_weights(q_data - v_pi, weighting, temperature, max_weight)  # [B]
    return -(weights * actor.log_prob(batch.obs, batch.actions)).mean(), weights


def build_actor(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> GaussianActor:
    obs_dim, act_dim = off_policy.continuous_spaces(envs, "AWAC", args.env_id)
    return GaussianActor(obs_dim, act_dim, parse_hidden(args.hidden_sizes)).to(device)


def build_learner(args: Args, envs: gym.vector.VectorEnv, device: torch.device,
                  actor: GaussianActor) -> dict[str, object]:
    """Twin critics, their target copy and the two optimizers: what a checkpoint keeps beside the actor."""
    obs_dim, act_dim = off_policy.continuous_spaces(envs, "AWAC", args.env_id)
    q = Critics(obs_dim, act_dim, parse_hidden(args.hidden_sizes)).to(device)
    adam = dict(lr=args.learning_rate, fused=device.type in ("cpu", "cuda"))  # fused: one kernel per step
    return dict(q=q, q_target=copy.deepcopy(q).requires_grad_(False),  # moved only by soft updates
                actor_optimizer=torch.optim.Adam(actor.parameters(), **adam),
                q_optimizer=torch.optim.Adam(q.parameters(), **adam))


def update(args: Args, actor: GaussianActor, learner: dict, batch: rl_utils.ReplayBatch, online: bool
           ) -> dict[str, torch.Tensor]:
    """One gradient step: the critics (not for BC), the actor, then the targets' Polyak step."""
    stats: dict[str, torch.Tensor] = {}
    q, q_target = learner["q"], learner["q_target"]
    if args.weighting != "none":
        loss_q, q_values = critic_loss(q, q_target, actor, batch)
        learner["q_optimizer"].zero_grad(set_to_none=True)
        loss_q.backward()
        learner["q_optimizer"].step()
        off_policy.soft_update(q, q_target, args.tau)
        stats.update(qf_loss=loss_q.detach(), qf_values=q_values.mean())
    loss_pi, weights = actor_loss(q, actor, batch, args.weighting, args.phase_temperature(online), args.max_weight)
    learner["actor_optimizer"].zero_grad(set_to_none=True)
    loss_pi.backward()
    learner["actor_optimizer"].step()
    return {**stats, "actor_loss": loss_pi.detach(), "weights_max": weights.max(),
            "log_std": actor.log_std.detach().mean()}


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args)
    if args.eval_only:
        return on_policy.eval_only(Args, args, "AWAC" if args.weighting != "none" else "BC", make_agent=build_actor)
    dataset = common.load_dataset(args)
    algo = "AWAC" if args.weighting != "none" else "BC"
    s = off_policy.Session(args, ckpt, algo, build_actor, build_learner)
    actor, learner, progress = s.actor, s.learner, s.progress
    common.prepare(s, ckpt, args, dataset)
    total = args.offline_steps + args.total_timesteps
    s.start_progress(total)
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.global_step < total and not interrupt.requested:
            online = progress.global_step >= args.offline_steps
            if online:
                with torch.no_grad():
                    obs = torch.as_tensor(s.obs, dtype=torch.float32, device=s.device)
                    s.step_envs(actor.explore(obs).cpu().numpy())
            else:
                progress.global_step += 1  # offline: one gradient step is one step of the counter
            stats = {}
            if not online or progress.global_step - args.offline_steps > args.learning_starts:
                for _ in range(args.num_envs if online else 1):
                    stats = update(args, actor, learner, s.buffer.sample(args.batch_size), online)
            s.log_update(stats, args.log_every)
            if s.after_step():
                break
    common.end(s, args, interrupt.requested)


if __name__ == "__main__":
    rl_utils.run_main(main)

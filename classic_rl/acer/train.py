"""ACER (Wang et al. 2017, "Sample Efficient Actor-Critic with Experience Replay") for discrete actions.

    python classic_rl/acer/train.py                                  # CartPole-v1
    python classic_rl/acer/train.py --env-id LunarLander-v3
    python classic_rl/acer/train.py --no-trust-region                # what the trust region buys (README)
    python classic_rl/acer/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt

An actor-critic that learns from its own recent past: every rollout of ``num_steps`` steps in each of
``num_envs`` envs is stored, with the behaviour policy's probabilities μ(·|s), as one segment per env; after the
on-policy update on the fresh rollout come ~``replay_ratio`` updates on segments drawn from the replay. Three
pieces make that off-policy learning work: Retrace targets for Q (:func:`retrace_targets`), truncated importance
weights with a bias correction for the policy gradient, and an efficient trust region against an average policy
(:func:`trust_region_projection`); :func:`acer_loss` puts them together. Read top to bottom: arguments, the
math, the session (collection and checkpoints), the loop. The derivation is in README.md.
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
from classic_rl import on_policy  # noqa: E402
from classic_rl.acer.model import ACERNet, SegmentReplay, as_tensors  # noqa: E402
from classic_rl.policies import parse_hidden  # noqa: E402


@dataclass
class Args(on_policy.RMSpropArgs):
    """Train ACER (off-policy actor-critic: Retrace, truncated importance weights, trust region) on a gymnasium
    env with Discrete actions."""

    num_steps: int = 20
    """steps per env per rollout: the length of a replayed segment (Retrace runs along it)"""
    shared_trunk: bool = True
    """policy and Q heads share their hidden layers (as in the paper); --no-shared-trunk gives Q its own"""
    replay_ratio: float = 4.0
    """off-policy updates per on-policy update: Poisson(k) draws of it (the paper) or exactly round(k)"""
    poisson_replay: bool = True
    """draw the number of replay updates from Poisson(replay_ratio) (the paper); --no-poisson-replay: fixed"""
    buffer_segments: int = 2_500
    """replay capacity in segments (one segment = num_steps steps of one env), FIFO"""
    replay_start: int = 250
    """segments stored before replay updates begin"""
    replay_batch: int = 0
    """segments per replay update (0 = num_envs, the size of an on-policy update)"""
    truncation_c: float = 10.0
    """c of the truncated importance weight min(c, ρ) and of the bias correction [1 − c/ρ]_+"""
    trust_region: bool = True
    """project the policy gradient onto the trust region around the average policy (--no-trust-region: off)"""
    delta: float = 1.0
    """δ of the trust region: bound on the linearised change of KL(π_avg || π) per sample"""
    avg_decay: float = 0.99
    """α of the average policy network, θ_avg ← α θ_avg + (1 − α) θ after every update"""
    q_coef: float = 0.5
    """weight of the Q loss ½ (Q^ret − Q(a))²"""
    ent_coef: float = 0.01
    """entropy bonus coefficient (part of the policy gradient, so the trust region sees it)"""
    max_grad_norm: float = 10.0
    """global gradient-norm clipping"""
    log_every: int = 1_000
    """env steps between loss/SPS log rows"""
    save_buffer: bool = True
    """include the replay in ckpt/latest.pt and step_N.pt (needed for an exact resume; --no-save-buffer: smaller
    checkpoints, the resumed run refills the replay)"""

    LIMITS = {"replay_ratio": (0, None), "buffer_segments": (1, None),
              "replay_start": (1, None), "replay_batch": (0, None), "truncation_c": (0, None), "delta": (0, None),
              "avg_decay": (0, 1), "q_coef": (0, None), "ent_coef": (0, None), "max_grad_norm": (0, None),
              "log_every": (1, None)}


# Tuned defaults per env, applied unless the flag is typed (measurements in README.md).
PRESETS: dict[str, dict[str, object]] = {
    "CartPole-v1": dict(total_timesteps=300_000, num_envs=4, eval_every=10_000),
    "LunarLander-v3": dict(total_timesteps=1_000_000, num_envs=8, gamma=0.99, hidden_sizes="128,128",
                           buffer_segments=5_000, replay_start=500, eval_every=25_000),
}


def retrace_targets(rewards: torch.Tensor, q_taken: torch.Tensor, values: torch.Tensor, rho_bar: torch.Tensor,
                    last_values: torch.Tensor, final_values: torch.Tensor, terminated: torch.Tensor,
                    truncated: torch.Tensor, gamma: float) -> torch.Tensor:
    """Retrace targets Q^ret [T, B] along segments (all inputs [T, B] but ``last_values`` [B]; no gradient).

    Q^ret_t = r_t + γ (ρ̄_{t+1} (Q^ret_{t+1} − Q(s_{t+1}, a_{t+1})) + V(s_{t+1})),   ρ̄ = min(1, π(a|s)/μ(a|s)),
    computed backwards from the bootstrap Q^ret_T := V(s_T) after the segment's last step. At a termination the
    bracket is 0 (nothing follows); at a truncation it is V(real final observation) (``final_values``): the MDP
    goes on, but the next row of the segment belongs to a new episode, so no correction crosses the boundary.
    ``q_taken`` = Q(s_t, a_t), ``values`` = V(s_t), both of the current network."""
    q_ret = torch.zeros_like(rewards)
    after = last_values  # the bracket for the last step: V(s_T)
    for t in reversed(range(len(rewards))):
        after = torch.where(truncated[t], final_values[t], after)
        after = torch.where(terminated[t], torch.zeros_like(after), after)
        q_ret[t] = rewards[t] + gamma * after
        after = rho_bar[t] * (q_ret[t] - q_taken[t]) + values[t]  # the bracket seen from step t − 1
    return q_ret


def trust_region_projection(g: torch.Tensor, k: torch.Tensor, delta: float) -> torch.Tensor:
    """The closed-form solution of  min_z ½‖g − z‖²  s.t.  kᵀz ≤ δ  (per row; g, k [B, A]):

    z* = g − max(0, (kᵀg − δ) / ‖k‖²) k.

    g is the policy gradient w.r.t. the policy's statistics (here its logits), k = ∇ KL(π_avg || π) w.r.t. the
    same statistics; kᵀz is the first-order change of that KL caused by a step along z. When kᵀg ≤ δ the
    constraint is inactive and z* = g; otherwise z* removes just enough of g along k to make kᵀz* = δ."""
    scale = ((k * g).sum(-1, keepdim=True) - delta).clamp_min(0) / (k * k).sum(-1, keepdim=True).clamp_min(1e-12)
    return g - scale * k


def acer_loss(logits: torch.Tensor, q: torch.Tensor, avg_logits: torch.Tensor | None, actions: torch.Tensor,
              mu: torch.Tensor, q_ret: torch.Tensor, c: float, delta: float, ent_coef: float, q_coef: float,
              trust_region: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """ACER's loss on B samples (``logits``, ``q``, ``mu`` [B, A]; ``actions``, ``q_ret`` [B]); ``avg_logits`` of
    the average policy (None: no trust region, no KL diagnostics); ``trust_region=False`` only measures the KL to
    it. Returns (loss to minimise, diagnostics).

    With ρ(a) = π(a|s) / μ(a|s), V = Σ_a π(a) Q(a) (Q, V, ρ and the weights below are constants):

    g = min(c, ρ(a_t)) ∇log π(a_t) (Q^ret − V)                       truncated importance weight: variance ≤ c
      + Σ_a [1 − c/ρ(a)]_+ π(a) ∇log π(a) (Q(a) − V)                  bias correction: the part the truncation cut
      + c_H ∇H[π],                                                    under the current policy, with the critic

    taken w.r.t. the logits φ of each sample (the policy's statistics). With the trust region g is replaced by
    z* = :func:`trust_region_projection` (g, k = ∇_φ KL(π_avg || π) = π − π_avg, δ) and propagated into the
    network as ∂loss/∂φ = −z* / B. The critic regresses Q(s, a_t) on Q^ret: + c_Q ½ E[(Q^ret − Q(a_t))²]."""
    a = actions.long().unsqueeze(-1)
    with torch.no_grad():
        pi = logits.softmax(-1)
        q_d = q.detach()
        v = (pi * q_d).sum(-1)
        rho_all = pi / mu.clamp_min(1e-8)
        rho = rho_all.gather(-1, a).squeeze(-1)
        truncated_w = rho.clamp(max=c) * (q_ret - v)  # [B]
        correction_w = (1 - c / rho_all.clamp_min(1e-8)).clamp_min(0) * pi * (q_d - v.unsqueeze(-1))  # [B, A]
    phi = logits.detach().requires_grad_(True)  # the statistics: g is taken w.r.t. them, sample by sample
    with torch.enable_grad():
        logp = phi.log_softmax(-1)
        entropy = -(logp.exp() * logp).sum(-1)
        objective = truncated_w * logp.gather(-1, a).squeeze(-1) + (correction_w * logp).sum(-1) + ent_coef * entropy
        g, = torch.autograd.grad(objective.sum(), phi)  # row i = ∂objective_i/∂φ_i (the samples are independent)
    if avg_logits is not None:
        k = pi - avg_logits.detach().softmax(-1)
    z = trust_region_projection(g, k, delta) if trust_region and avg_logits is not None else g
    policy_loss = -(z * logits).sum(-1).mean()  # ∂/∂logits = −z / B: the (projected) gradient, pushed back
    q_taken = q.gather(-1, a).squeeze(-1)
    q_loss = 0.5 * (q_ret - q_taken).pow(2).mean()
    loss = policy_loss + q_coef * q_loss
    stats = {"policy_objective": objective.detach().mean(), "q_loss": q_loss.detach(),
             "entropy": entropy.detach().mean(), "rho_mean": rho.mean(), "rho_truncated": (rho > c).float().mean()}
    if avg_logits is not None:
        with torch.no_grad():
            avg_logp = avg_logits.log_softmax(-1)
            stats["kl_to_average"] = (avg_logp.exp() * (avg_logp - logits.detach().log_softmax(-1))).sum(-1).mean()
            stats["trust_region_active"] = ((k * g).sum(-1) > delta).float().mean()  # would bind, when off
    return loss, stats


DISCRETE_ONLY = ("; this ACER is discrete-only (the paper's continuous variant is not implemented here): for a Box "
                 "action space use PPO or A2C (classic_rl/{ppo,a2c}), SAC, TD3 or DDPG (classic_rl/{sac,td3,ddpg})")


def build_net(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> ACERNet:
    """The network for these envs; one-line errors for a Box action space and for image observations."""
    obs_dim = rl_utils.require_vector_obs(envs.single_observation_space, "ACER (MLP)")
    n_actions = rl_utils.require_discrete(envs, "ACER", hint=DISCRETE_ONLY)
    if args.activation not in ("tanh", "relu"):
        raise rl_utils.UsageError(f"--activation must be tanh or relu, got {args.activation!r}")
    return ACERNet(obs_dim, n_actions, parse_hidden(args.hidden_sizes), args.activation, args.shared_trunk).to(device)


class Session(on_policy.Session):
    """on_policy.Session (envs, network, optimizer, counters, run folder, evaluator, resume) plus what ACER adds:
    the average policy network and the segment replay, both in every checkpoint."""

    def __init__(self, args: Args, ckpt: rl_utils.Checkpoint | None):
        super().__init__(args, ckpt, "ACER", lambda agent: on_policy.make_optimizer(args, agent.parameters()),
                         make_agent=build_net)
        self.average = copy.deepcopy(self.agent).requires_grad_(False)
        self.replay = SegmentReplay(args.buffer_segments, args.num_steps, self.envs.single_observation_space.shape,
                                    int(self.envs.single_action_space.n))
        if ckpt is not None:  # after Session restored the RNG states: loading these consumes no random numbers
            rl_utils.load_state_into(self.average, ckpt["average"])
            if ckpt.state.get("replay") is not None:
                rl_utils.load_state_into(self.replay, ckpt["replay"])
            else:
                print("note: the checkpoint holds no replay (--no-save-buffer): it refills from now on")

    def checkpoint(self, name: str) -> Path:
        keep_replay = self.args.save_buffer and name != "best"  # best.pt is for evaluation
        return self.run.save(name, self.progress.global_step, agent=self.agent, optimizer=self.optimizer,
                             progress=self.progress, buffer=self.buffer, envs=self.envs, obs=self.obs,
                             average=self.average, replay=self.replay if keep_replay else None)

    @torch.no_grad()
    def collect(self) -> dict[str, np.ndarray]:
        """``num_steps`` vector steps of the current policy: a time-major segment per env (SegmentReplay's
        fields), with μ(·|s) of every step and the real final observation of truncated episodes."""
        args, envs, n = self.args, self.envs, self.args.num_envs
        obs_shape = envs.single_observation_space.shape
        seg = {"obs": np.zeros((args.num_steps + 1, n, *obs_shape), np.float32),
               "final_obs": np.zeros((args.num_steps, n, *obs_shape), np.float32),
               "mu": np.zeros((args.num_steps, n, int(envs.single_action_space.n)), np.float32),
               "actions": np.zeros((args.num_steps, n), np.int64), "rewards": np.zeros((args.num_steps, n), np.float32),
               "terminated": np.zeros((args.num_steps, n), bool), "truncated": np.zeros((args.num_steps, n), bool)}
        obs = self.obs
        for t in range(args.num_steps):
            seg["obs"][t] = obs
            logits = self.agent.logits(torch.as_tensor(obs, dtype=torch.float32, device=self.device))
            action = (logits - torch.empty_like(logits).exponential_().log()).argmax(-1)  # Gumbel-max: a ~ π
            seg["mu"][t] = logits.softmax(-1).cpu().numpy()
            seg["actions"][t] = action.cpu().numpy()
            obs, reward, terminated, truncated, infos = envs.step(seg["actions"][t])
            seg["rewards"][t], seg["terminated"][t], seg["truncated"][t] = reward, terminated, truncated
            cut = np.flatnonzero(truncated & ~terminated)
            if len(cut):  # the real last observation: what a time-limit end bootstraps from
                seg["final_obs"][t, cut] = rl_utils.real_next_obs(obs, infos)[cut]
            self.progress.global_step += n
            self.run.log_episodes(rl_utils.finished_episodes(infos), self.progress.global_step)
        seg["obs"][args.num_steps] = obs
        self.obs = obs
        return seg


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS)
    if args.eval_only:
        return on_policy.eval_only(Args, args, "ACER", make_agent=build_net)
    batch_size = args.num_steps * args.num_envs
    num_iterations = -(-args.total_timesteps // batch_size)  # ceil: at least total_timesteps steps
    s = Session(args, ckpt)
    agent, average, optimizer, replay, progress, run = s.agent, s.average, s.optimizer, s.replay, s.progress, s.run
    replay_batch = args.replay_batch or args.num_envs

    def learn(seg: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One ACER update on a [T, B] batch of segments, then the average network follows."""
        T, B = seg["actions"].shape
        logits_all, q_all = agent(seg["obs"].flatten(0, 1))  # [(T + 1) B, A]: the segments and the bootstrap
        logits, q = logits_all[:T * B], q_all[:T * B]
        with torch.no_grad():
            v_all = (logits_all.softmax(-1) * q_all).view(T + 1, B, -1).sum(-1)
            final_v = torch.zeros(T, B)
            cut = seg["truncated"] & ~seg["terminated"]
            if cut.any():  # V(real final observation) of the current network, where a time limit ended
                final_v[cut] = agent.value(seg["final_obs"][cut])
            actions = seg["actions"].flatten()
            pi_a = logits.softmax(-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            mu_a = seg["mu"].flatten(0, 1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            rho_bar = (pi_a / mu_a.clamp_min(1e-8)).clamp(max=1.0).view(T, B)
            q_taken = q.gather(-1, actions.unsqueeze(-1)).view(T, B)
            q_ret = retrace_targets(seg["rewards"], q_taken, v_all[:T], rho_bar, v_all[T], final_v,
                                    seg["terminated"], seg["truncated"], args.gamma)
            avg_logits = average.logits(seg["obs"][:T].flatten(0, 1))  # (off: still logged, KL to it)
        loss, stats = acer_loss(logits, q, avg_logits, actions, seg["mu"].flatten(0, 1), q_ret.flatten(),
                                args.truncation_c, args.delta, args.ent_coef, args.q_coef, args.trust_region)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)
        optimizer.step()
        with torch.no_grad():  # θ_avg ← α θ_avg + (1 − α) θ
            torch._foreach_lerp_(list(average.parameters()), list(agent.parameters()), 1 - args.avg_decay)
        return stats

    run.progress(num_iterations * batch_size, progress.global_step)
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.iteration < num_iterations and not interrupt.requested:
            # ---- one rollout of the current policy: stored, then learnt from on-policy (ρ = 1)
            seg = s.collect()
            replay.add(seg)
            stats = learn(as_tensors(seg, s.device))
            # ---- ~replay_ratio updates on stored segments (off-policy: μ is an older policy)
            if len(replay) >= args.replay_start:
                n_replay = np.random.poisson(args.replay_ratio) if args.poisson_replay else round(args.replay_ratio)
                for _ in range(n_replay):
                    stats = learn(replay.sample(replay_batch, s.device))
            progress.iteration += 1

            step = progress.global_step
            if step % args.log_every < batch_size:
                sps = step / max(run.elapsed, 1e-9)
                run.log_dict({f"losses/{k}": float(v) for k, v in stats.items()}, step)
                run.log_dict({"charts/SPS": sps, "charts/replay_segments": len(replay)}, step)
            run.update_progress(batch_size, step, step / max(run.elapsed, 1e-9))
            if s.after_update(batch_size):
                break
    s.end(interrupt.requested)


if __name__ == "__main__":
    rl_utils.run_main(main)

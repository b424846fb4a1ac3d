"""D4PG (Barth-Maron et al. 2018): DDPG with a categorical critic, N-step returns and actors running in parallel.

    python distributional_rl/d4pg/train.py                              # Pendulum-v1, a local Ray, cores - 1 actors
    python distributional_rl/d4pg/train.py --num-actors 4 --per
    python distributional_rl/d4pg/train.py --ray-address 10.0.0.1:6379  # join a cluster (`ray start --head` there)
    python distributional_rl/d4pg/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt --capture-video

Read top to bottom: arguments, the two losses (what D4PG changes in DDPG), the two kinds of Ray actors (the
explorers that step envs and the replay they push to), then the learner's loop. The categorical projection is
``distributional_rl/categorical.py`` (shared with C51), the n-step windows ``rl_utils.NStepAdder``, the Ray plumbing
``rl_utils.ray_session`` / ``rl_utils.RayPool``; evaluation, ``best.pt`` and ``--eval-only`` are the off-policy
family's (``classic_rl/on_policy.py``).

Data flow: each explorer steps its own envs with the weights it was last given, turns its steps into N-step
transitions and pushes them to the replay actor; the learner draws batches from the replay (one request in
flight while it trains on the previous answer), updates, and hands new weights to each explorer's next call.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import off_policy, on_policy  # noqa: E402
from classic_rl.policies import parse_hidden  # noqa: E402
from classic_rl.td3.train import OUNoise  # noqa: E402
from distributional_rl.categorical import cross_entropy, expected_value, make_support, project  # noqa: E402
from distributional_rl.d4pg.model import CategoricalCritic, DeterministicActor  # noqa: E402


@dataclass
class Args(off_policy.OffPolicyArgs):
    """Train D4PG (categorical critic, N-step returns, Ray actors) on a Box-action env."""

    learning_rate: float = 1e-3
    """Adam learning rate of the actor and the critic (DDPG's Pendulum setting here)"""
    n_step: int = 5
    """N-step returns, cut at episode ends (the paper's and the notes' 5)"""
    n_atoms: int = 51
    """atoms of the critic's return distribution"""
    v_min: float = -800.0
    """lowest atom. Pendulum's [-800, 0]: rewards lie in [-16.3, 0]; a swing-up from the bottom is worth about
    -400 discounted at γ 0.99, and the lower values of the first random episodes are clipped onto the edge atom
    (it only has to say "bad"). Seed 1 at 20k steps: -189.8 with [-800, 0], -205.1 with the full [-1630, 0]"""
    v_max: float = 0.0
    """highest atom"""
    num_actors: int = 0
    """explorer processes (Ray actors); 0 = the machine's cores - 1, at least 1"""
    num_envs: int = 1
    """environments per explorer (a SyncVectorEnv in each)"""
    actor_steps: int = 50
    """vector steps an explorer takes per call before it reports and takes the newest weights"""
    updates_per_step: float = 1.0
    """learner updates per env step: explorers wait when they run further ahead (1 = DDPG's ratio; the learner
    waits for data when it runs ahead)"""
    exploration_noise: str = "gaussian"
    """behaviour noise: gaussian, or ou (Ornstein-Uhlenbeck, the notes' θ 0.15 with --noise-std 0.3)"""
    noise_std: float = 0.1
    """std of the exploration noise in units of the action half-range (OU: its σ)"""
    ou_theta: float = 0.15
    """OU noise: pull back to 0 per step"""
    exploiter: bool = False
    """make explorer 0 act without noise (the notes' "exploiter"): its returns, logged as charts/exploiter_return,
    follow the current greedy policy between evaluations"""
    per: bool = False
    """prioritized replay by the critic's cross-entropy"""
    per_alpha: float = 0.6
    """PER: how strongly priorities shape sampling"""
    per_beta0: float = 0.4
    """PER: initial importance-sampling exponent, annealed to 1"""
    prefetch: int = 8
    """batches fetched from the replay per request (fewer round trips)"""
    broadcast_every: int = 50
    """learner updates between weight broadcasts: each explorer call acts with the newest weights at its start"""
    actor_restarts: int = 2
    """times Ray restarts an explorer that died before the run ends with its error"""
    ray_address: str = ""
    """HOST:PORT of a running Ray cluster to join (`ray start --head` prints it); empty = a local Ray for this run"""
    log_every: int = 1_000
    """env steps between loss log rows"""

    LIMITS = {"learning_rate": (0, None), "n_step": (1, None), "n_atoms": (2, None), "num_actors": (0, None),
              "actor_steps": (1, None), "updates_per_step": (0, None), "noise_std": (0, None), "ou_theta": (0, 1),
              "per_alpha": (0, None), "per_beta0": (0, 1), "prefetch": (1, None), "broadcast_every": (1, None),
              "actor_restarts": (0, None),
              "log_every": (1, None)}
    CHOICES = {"exploration_noise": ("gaussian", "ou")}
    ALGO = "D4PG"

    def __post_init__(self) -> None:
        if not self.v_min < self.v_max:
            raise rl_utils.UsageError(f"--v-min must be < --v-max, got {self.v_min:g} and {self.v_max:g}")
        if self.norm_obs or self.norm_reward:
            raise rl_utils.UsageError("D4PG does not normalise observations or rewards: every explorer would keep "
                                      "statistics of its own")

    def actors(self) -> int:
        """Explorers to start: ``--num-actors``, or one per core but the learner's."""
        return self.num_actors or max((os.cpu_count() or 2) - 1, 1)


# Tuned defaults per env, applied unless the flag is typed.
PRESETS: dict[str, dict[str, object]] = {
    # TD3's MuJoCo settings (lr 3e-4, 10k random steps first); Hopper's rewards are ~+1..4 per step while alive,
    # so discounted returns at γ 0.99 stay inside [-50, 350]
    "Hopper-v5": dict(total_timesteps=100_000, learning_rate=3e-4, learning_starts=10_000, eval_every=10_000,
                      v_min=-50.0, v_max=350.0),
}


def critic_loss(critic: CategoricalCritic, critic_target: CategoricalCritic, actor_target: DeterministicActor,
                batch: rl_utils.ReplayBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distributional TD loss; returns (loss, per-sample cross-entropy [B], Q(s, a) [B]).

    m = Φ(R + γ^m (1 − done) z | p_target(s', μ'(s')))   the target networks' distribution at the N-th next state,
                                                         projected onto the atoms (the window's own γ^m)
    L = −E[Σ_j m_j log p_j(s, a)]                        the cross-entropy (the notes used a binary one: not a KL)"""
    with torch.no_grad():
        next_probs = torch.softmax(critic_target(batch.next_obs, actor_target(batch.next_obs)), dim=-1)  # [B, N]
        target = project(next_probs, batch.rewards, batch.discounts, batch.dones, critic_target.support)  # [B, N]
    logits = critic(batch.obs, batch.actions)  # [B, N]
    ce = cross_entropy(logits, target)  # [B]
    q = expected_value(torch.softmax(logits.detach(), dim=-1), critic.support)
    return (batch.weights * ce).mean(), ce.detach(), q


def actor_loss(critic: CategoricalCritic, actor: DeterministicActor, obs: torch.Tensor) -> torch.Tensor:
    """The deterministic policy gradient through the critic's mean: minimise −E_s[Σ_j p_j(s, μ(s)) z_j]."""
    return -critic.q(obs, actor(obs)).mean()


def build_actor(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> DeterministicActor:
    obs_dim, act_dim = off_policy.continuous_spaces(envs, args.ALGO, args.env_id)
    return DeterministicActor(obs_dim, act_dim, parse_hidden(args.hidden_sizes), args.noise_std).to(device)


def build_learner(args: Args, envs: gym.vector.VectorEnv, device: torch.device,
                  actor: DeterministicActor) -> dict[str, Any]:
    obs_dim, act_dim = off_policy.continuous_spaces(envs, args.ALGO, args.env_id)
    support = make_support(args.v_min, args.v_max, args.n_atoms, device)
    critic = CategoricalCritic(obs_dim, act_dim, parse_hidden(args.hidden_sizes), support).to(device)
    adam = dict(lr=args.learning_rate, fused=device.type in ("cpu", "cuda"))
    return dict(critic=critic, critic_target=copy.deepcopy(critic).requires_grad_(False),  # Polyak steps only
                actor_target=copy.deepcopy(actor).requires_grad_(False),
                actor_optimizer=torch.optim.Adam(actor.parameters(), **adam),
                critic_optimizer=torch.optim.Adam(critic.parameters(), **adam))


def update(args: Args, actor: DeterministicActor, learner: dict[str, Any],
           batch: rl_utils.ReplayBatch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One critic step, one actor step, the targets' Polyak steps; returns (stats, PER priorities [B])."""
    critic = learner["critic"]
    loss_q, ce, q = critic_loss(critic, learner["critic_target"], learner["actor_target"], batch)
    learner["critic_optimizer"].zero_grad(set_to_none=True)
    loss_q.backward()
    learner["critic_optimizer"].step()
    loss_pi = actor_loss(critic, actor, batch.obs)
    learner["actor_optimizer"].zero_grad(set_to_none=True)
    loss_pi.backward(inputs=list(actor.parameters()))  # the critic's weights get no gradient from the actor
    learner["actor_optimizer"].step()
    off_policy.soft_update(critic, learner["critic_target"], args.tau)
    off_policy.soft_update(actor, learner["actor_target"], args.tau)
    return {"qf_loss": loss_q.detach(), "qf_values": q.mean(), "actor_loss": loss_pi.detach()}, ce


# ----------------------------------------------------------------------------------------------------------------
# Ray actors: explorers (envs + a copy of the policy) and the replay they push to
# ----------------------------------------------------------------------------------------------------------------
class Explorer:
    """Steps ``num_envs`` envs with the newest weights it was given and exploration noise of its own, turns the
    steps into N-step transitions (``rl_utils.NStepAdder``: windows cut at episode ends, truncations bootstrap
    from the real final observation) and pushes them to the replay actor."""

    def __init__(self, args: dict, index: int, seed: int, replay_name: str):
        import ray

        torch.set_num_threads(1)  # one process per core: more threads only contend
        self.args = Args(**args)
        self.index, self.replay = index, ray.get_actor(replay_name)
        self.envs = on_policy.make_envs(dataclasses.replace(self.args, seed=seed))
        self.actor = build_actor(self.args, self.envs, torch.device("cpu"))
        self.rng = np.random.default_rng(seed)
        shape = (self.args.num_envs, *self.envs.single_action_space.shape)
        self.noise_std = 0.0 if (self.args.exploiter and index == 0) else self.args.noise_std
        self.ou = OUNoise(shape, self.args.ou_theta, self.noise_std, self.rng)
        self.adder = rl_utils.NStepAdder(self.args.num_envs, self.args.n_step, self.args.gamma)
        self.obs, _ = self.envs.reset(seed=seed)

    def collect(self, weights: dict | None, steps: int, uniform: bool) -> dict:
        """``steps`` vector steps (uniform random actions while ``uniform``); returns the env steps taken, the
        episodes that finished and the replay's size, after the transitions reached the replay."""
        if weights is not None:
            self.actor.load_state_dict(weights)
        parts, episodes = [], []
        for _ in range(steps):
            if uniform:
                actions = self.rng.uniform(-1.0, 1.0, size=self.ou.state.shape).astype(np.float32)
            else:
                with torch.no_grad():
                    mu = self.actor(torch.as_tensor(self.obs, dtype=torch.float32)).numpy()
                noise = (self.ou() if self.args.exploration_noise == "ou"
                         else self.noise_std * self.rng.standard_normal(mu.shape))
                actions = np.clip(mu + noise, -1.0, 1.0).astype(np.float32)
            next_obs, rewards, terminated, truncated, infos = self.envs.step(actions)
            done = self.adder.add(self.obs, actions, rewards, terminated, truncated,
                                  rl_utils.real_next_obs(next_obs, infos))
            if done is not None:
                parts.append(done)
            self.ou.reset(terminated | truncated)
            episodes += rl_utils.finished_episodes(infos)
            self.obs = next_obs
        size = 0
        if parts:
            import ray

            batch = rl_utils.NStepTransitions(*(np.concatenate(p) for p in zip(*parts)))
            size = ray.get(self.replay.add.remote(batch))  # in the replay before the learner counts these steps
        return {"env_steps": steps * self.args.num_envs, "episodes": episodes, "replay_size": size,
                "exploiter": self.args.exploiter and self.index == 0}


class Replay:
    """The replay actor: a buffer of finished N-step transitions (``stored_discounts``: each keeps its own γ^m),
    uniform or prioritized; it answers the learner with several batches per request."""

    def __init__(self, args: dict, obs_space: gym.Space, action_space: gym.Space):
        torch.set_num_threads(1)
        self.args = a = Args(**args)
        cls = rl_utils.PrioritizedReplayBuffer if a.per else rl_utils.ReplayBuffer
        extra = {"alpha": a.per_alpha} if a.per else {}
        self.buffer = cls(a.buffer_size, 1, obs_space, action_space, stored_discounts=True, seed=a.seed, **extra)

    def add(self, tr: rl_utils.NStepTransitions) -> int:
        for i in range(len(tr)):
            self.buffer.add(tr.obs[i:i + 1], tr.next_obs[i:i + 1], tr.actions[i:i + 1], tr.rewards[i:i + 1],
                            tr.dones[i:i + 1], np.zeros(1, bool), discounts=tr.discounts[i:i + 1])
        return len(self.buffer)

    def sample(self, batch_size: int, count: int, beta: float) -> list[rl_utils.ReplayBatch]:
        if self.args.per:
            self.buffer.beta = beta
        return [self.buffer.sample(batch_size) for _ in range(count)]

    def update_priorities(self, indices: np.ndarray, errors: np.ndarray) -> None:
        self.buffer.update_priorities(indices, errors)

    def state_dict(self) -> dict:
        return self.buffer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.buffer.load_state_dict(state)


def explorer_seeds(seed: int, n: int) -> list[int]:
    """Independent env / noise seeds for n explorers, derived from the run's seed (numpy's SeedSequence)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


# ----------------------------------------------------------------------------------------------------------------
# The learner
# ----------------------------------------------------------------------------------------------------------------
class Flow:
    """The learner's side of the data flow: keeps the explorers busy unless the env steps would run ahead of the
    updates (``--updates-per-step``), counts what they report, and trains on batches from the replay with one
    request in flight."""

    def __init__(self, args: Args, explorers: rl_utils.RayPool, replay: rl_utils.RayPool, actor: DeterministicActor,
                 learner: dict[str, Any], progress: off_policy.Progress, run: rl_utils.Run, device: torch.device):
        self.args, self.explorers, self.replay, self.actor, self.learner = args, explorers, replay, actor, learner
        self.progress, self.run, self.device = progress, run, device
        self.call_steps = args.actor_steps * args.num_envs  # env steps one explorer call adds
        self.pending: dict[Any, int] = {}  # explorer call in flight -> explorer index
        self.idle = list(range(len(explorers)))
        self.replay_size = 0
        self.sample_ref: Any = None
        self.stats: dict[str, torch.Tensor] = {}
        self.weights = self.broadcast()

    def broadcast(self) -> Any:
        return rl_utils.RayPool.put({k: v.cpu() for k, v in self.actor.state_dict().items()})

    def allowed_updates(self) -> float:
        return (self.progress.global_step - self.args.learning_starts) * self.args.updates_per_step

    def learning(self) -> bool:
        return self.progress.global_step >= self.args.learning_starts and self.replay_size > 0

    def launch(self) -> None:
        """Start idle explorers while the steps in flight keep the data within one round of calls of the updates."""
        args, progress = self.args, self.progress
        while self.idle:
            if self.learning() and args.updates_per_step > 0:
                in_flight = progress.global_step + self.call_steps * (len(self.pending) + 1)
                ahead = in_flight - args.learning_starts - progress.updates / args.updates_per_step
                if ahead > self.call_steps * len(self.explorers):
                    return
            i = self.idle.pop(0)  # first come, first served: under the throttle no explorer starves
            uniform = progress.global_step < args.learning_starts
            self.pending[self.explorers.call(i, "collect", self.weights, args.actor_steps, uniform)] = i

    def harvest(self) -> None:
        """Count the explorer calls that finished; wait for one when the learner has nothing it may do."""
        if not self.pending:
            return
        block = not (self.learning() and self.progress.updates < self.allowed_updates())
        for ref in self.explorers.wait(list(self.pending), timeout=None if block else 0):
            self.idle.append(self.pending.pop(ref))
            report = self.explorers.get(ref)
            self.progress.global_step += report["env_steps"]
            self.replay_size = max(self.replay_size, report["replay_size"])
            if report["exploiter"]:
                for ret, _ in report["episodes"]:
                    self.run.log("charts/exploiter_return", ret, self.progress.global_step)
            else:
                self.run.log_episodes(report["episodes"], self.progress.global_step)

    def learn(self) -> None:
        """Updates up to the allowed number, ``--prefetch`` batches per replay request."""
        args, progress = self.args, self.progress
        while self.learning() and progress.updates < self.allowed_updates():
            beta = rl_utils.linear_schedule(args.per_beta0, 1.0, args.total_timesteps, progress.global_step)
            request = lambda: self.replay.call(0, "sample", args.batch_size, args.prefetch, beta)  # noqa: E731
            batches = self.replay.get(self.sample_ref if self.sample_ref is not None else request())
            self.sample_ref = request()  # the next answer is prepared while these batches train
            for batch in batches:
                batch = batch._replace(**{k: v.to(self.device) for k, v in batch._asdict().items()
                                          if isinstance(v, torch.Tensor)})
                self.stats, priorities = update(args, self.actor, self.learner, batch)
                progress.updates += 1
                if args.per:
                    self.replay.call(0, "update_priorities", batch.indices, priorities.cpu().numpy())
                if progress.updates % args.broadcast_every == 0:
                    self.weights = self.broadcast()

    def log(self, sps: float) -> None:
        step = self.progress.global_step
        self.run.log_dict({f"losses/{k}": float(v) for k, v in self.stats.items()}, step)
        self.run.log_dict({"charts/SPS": sps, "charts/updates": self.progress.updates}, step)
        self.run.update_progress(step - self.run.bar.n, step, sps)


def main(cls: type[Args] = Args) -> None:
    args, ckpt = rl_utils.parse_run_args(cls, presets=PRESETS)
    algo = args.ALGO
    if args.eval_only:
        return on_policy.eval_only(cls, args, algo, make_agent=build_actor)
    device = rl_utils.setup(args)
    envs = on_policy.make_envs(dataclasses.replace(args, num_envs=1))  # spaces, evaluation and checkpoints only
    actor = build_actor(args, envs, device)
    learner = build_learner(args, envs, device, actor)
    progress = off_policy.Progress(next_eval=args.eval_every)
    if ckpt is not None:
        rl_utils.Run.restore(ckpt, agent=actor, **learner, progress=progress)
        print("note: the explorers start fresh episodes: a D4PG resume continues the learner, not bit for bit")
    n_actors = args.actors()
    if args.ray_address:
        rl_utils.check_ray_address(args.ray_address)
    run = rl_utils.Run(args, algo.lower(), resume=ckpt)
    interrupt = rl_utils.GracefulInterrupt()
    with rl_utils.ray_session(args.ray_address, num_workers=n_actors + 1):
        spaces = (envs.single_observation_space, envs.single_action_space)
        replay = rl_utils.RayPool(Replay, 1, lambda i: (dataclasses.asdict(args), *spaces), name="replay")
        if ckpt is not None and ckpt["buffer"] is not None:
            replay.get(replay.call(0, "load_state_dict", ckpt["buffer"]))
        seeds = explorer_seeds(args.seed, n_actors)
        explorers = rl_utils.RayPool(Explorer, n_actors, lambda i: (dataclasses.asdict(args), i, seeds[i],
                                                                    replay.names[0]),
                                     name="explorer", max_restarts=args.actor_restarts)

        def checkpoint(name: str) -> Path:
            buffer = replay.get(replay.call(0, "state_dict")) if args.save_buffer else None
            return run.save(name, progress.global_step, agent=actor, **learner, progress=progress, envs=envs,
                            buffer=buffer)

        evaluate = on_policy.Evaluator(args, actor, envs, device, run, progress, checkpoint, build_actor)
        flow = Flow(args, explorers, replay, actor, learner, progress, run, device)
        run.progress(args.total_timesteps, progress.global_step)
        sps_t0, sps_step0 = time.time(), progress.global_step
        next_log = progress.global_step + args.log_every
        next_ckpt = (progress.global_step // args.checkpoint_every + 1) * args.checkpoint_every \
            if args.checkpoint_every else None
        with interrupt.installed():
            try:
                while progress.global_step < args.total_timesteps and not interrupt.requested:
                    flow.launch()
                    flow.harvest()
                    flow.learn()
                    step = progress.global_step
                    if step >= next_log:
                        next_log = step + args.log_every
                        flow.log((step - sps_step0) / max(time.time() - sps_t0, 1e-9))
                    if evaluate.due() and evaluate() >= args.target_return:
                        print(f"target return {args.target_return} reached at step {step}")
                        break
                    if next_ckpt is not None and step >= next_ckpt:
                        next_ckpt = (step // args.checkpoint_every + 1) * args.checkpoint_every
                        checkpoint(f"step_{step}")
                        checkpoint("latest")
            except rl_utils.WorkerError:
                if not interrupt.requested:  # Ctrl-C in a terminal reaches the workers too: that is not a failure
                    raise
        flow.log((progress.global_step - sps_step0) / max(time.time() - sps_t0, 1e-9))  # the last losses too
        explorers.close()
        if interrupt.requested:
            latest = run.save("latest", progress.global_step, agent=actor, **learner, progress=progress, envs=envs,
                              buffer=None)
            run.close()
            print(f"interrupted at step {progress.global_step}; resume with: python {sys.argv[0]} --resume {latest}")
        else:
            checkpoint("latest")
            evaluate.finish(algo)
    envs.close()


if __name__ == "__main__":
    rl_utils.run_main(main)

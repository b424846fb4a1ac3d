"""DQN + HER and DDPG + HER on goal envs: Hindsight Experience Replay (Andrychowicz et al. 2017).

    python classic_rl/her/train.py                                   # DQN+HER, 15-bit flipping
    python classic_rl/her/train.py --no-her                          # plain DQN on the same budget
    python classic_rl/her/train.py --n-bits 8 --strategy final --k 2
    python classic_rl/her/train.py --algo ddpg                       # DDPG+HER, FetchReach-v4 (gymnasium-robotics)
    python classic_rl/her/train.py --algo ddpg --env-id PointReach-v0

Read top to bottom: arguments, the goal-conditioned input [observation, goal], the two learners (DQN's
``dqn_loss`` on ε-greedy data; DDPG with TD3's ``critic_loss`` and the deterministic policy gradient), the loop
(whole episodes into the one HER buffer, updates on relabelled batches, success-rate evaluations). The
relabelling is ``classic_rl/her/buffer.py``; the envs are ``classic_rl/her/envs.py``.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import off_policy  # noqa: E402
from classic_rl.continuous import DeterministicActor, QEnsemble  # noqa: E402
from classic_rl.dqn.model import QNetwork  # noqa: E402
from classic_rl.dqn.train import dqn_loss  # noqa: E402
from classic_rl.her import envs as goal_envs  # noqa: E402
from classic_rl.her.buffer import STRATEGIES, HERBatch, HERBuffer  # noqa: E402
from classic_rl.policies import parse_hidden  # noqa: E402
from classic_rl.td3.train import critic_loss  # noqa: E402


@dataclass
class Args(rl_utils.CommonArgs):
    """Train DQN or DDPG with Hindsight Experience Replay on a goal env (Dict observation with achieved/desired
    goals). ``--algo ddpg`` switches the defaults to the paper's DDPG settings on FetchReach-v4."""

    algo: str = "dqn"
    """dqn (Discrete actions: bit flipping) or ddpg (Box actions: FetchReach-v4, PointReach-v0)"""
    env_id: str = "BitFlipping-v0"
    """goal env id (BitFlipping-v0 takes --n-bits; FetchReach-v4 needs gymnasium-robotics)"""
    n_bits: int = 15
    """bits of BitFlipping-v0 (the episode lasts n steps)"""
    total_timesteps: int = 60_000
    """environment steps to train for"""
    eval_every: int = 3_000
    """env steps between evaluations of the greedy policy's success rate"""
    eval_episodes: int = 20
    """episodes per evaluation"""
    her: bool = True
    """relabel goals in hindsight (--no-her: plain DQN/DDPG with the same buffer, budget and updates)"""
    strategy: str = "future"
    """future (a later achieved goal of the same episode), final (its last) or episode (any of its steps)"""
    k: int = 4
    """relabelled goals per real one: a sampled transition is relabelled with probability k / (k + 1)"""
    learning_rate: float = 1e-3
    """Adam learning rate (DDPG: of the actor and the critic, both 1e-3 in the paper)"""
    buffer_size: int = 1_000_000
    """replay capacity in transitions (the paper's: every transition of the run)"""
    batch_size: int = 128
    """minibatch size (the paper's DQN: 128; its DDPG: 256)"""
    gamma: float = 0.98
    """discount factor (the paper's)"""
    tau: float = 0.05
    """Polyak rate of the target networks per gradient step (the paper: 0.95 kept, i.e. 0.05 moved)"""
    learning_starts: int = 1_000
    """env steps of exploration before the first update"""
    gradient_steps: int = 1
    """gradient steps per env step"""
    hidden_sizes: str = "256,256"
    """comma-separated hidden layer sizes of the Q network (DDPG: of the actor and the critic)"""
    # DQN
    start_e: float = 1.0
    """DQN: initial exploration ε"""
    end_e: float = 0.05
    """DQN: final exploration ε"""
    exploration_fraction: float = 0.3
    """DQN: fraction of the run over which ε decays linearly"""
    double: bool = True
    """DQN: Double DQN targets"""
    # DDPG
    noise_std: float = 0.2
    """DDPG: std of the Gaussian action noise, in units of the action half-range (the paper's 20%)"""
    random_eps: float = 0.3
    """DDPG: probability of a uniformly random action instead (the paper's 30%: keeps exploring in 3-D)"""
    action_l2: float = 1.0
    """DDPG: weight of the mean squared action in the actor loss (the paper's: keeps μ off tanh saturation)"""
    clip_target: bool = True
    """DDPG: clip the critic's target to the return range of −1/0 rewards, [−1/(1−γ), 0] (the paper's code)"""

    LIMITS = {"n_bits": (1, None), "k": (0, None), "learning_rate": (0, None), "buffer_size": (1, None),
              "batch_size": (1, None), "gamma": (0, 1), "tau": (0, 1), "learning_starts": (0, None),
              "gradient_steps": (1, None), "start_e": (0, 1), "end_e": (0, 1), "exploration_fraction": (0, 1),
              "noise_std": (0, None), "random_eps": (0, 1), "action_l2": (0, None)}
    CHOICES = {"strategy": STRATEGIES, "algo": ("dqn", "ddpg")}


# Defaults per --algo, applied unless the flag is typed: the paper's DDPG+HER (batch 256, 1e-3, Polyak 0.95) on
# FetchReach-v4, whose episodes last 50 steps and which it solves in a few thousand (SB3's zoo trains 20k).
PRESETS: dict[str, dict[str, object]] = {
    "ddpg": dict(env_id="FetchReach-v4", total_timesteps=20_000, eval_every=2_000, batch_size=256),
}


def goal_obs(obs: dict[str, np.ndarray]) -> np.ndarray:
    """The networks' input for a batch of goal observations: [observation, desired goal] side by side."""
    return np.concatenate([obs["observation"], obs["desired_goal"]], -1).astype(np.float32)


def new_episode(obs: dict[str, np.ndarray], i: int) -> dict[str, list]:
    """Env i's episode under way, from its first observation: observation / achieved-goal rows (T + 1 when it
    ends), and per step the goal, action, reward and termination."""
    return dict(o=[obs["observation"][i]], ag=[obs["achieved_goal"][i]], g=[], a=[], r=[], d=[])


def goal_batch(b: HERBatch, gamma: float, device: torch.device) -> rl_utils.ReplayBatch:
    """A (relabelled) HER batch as the ReplayBatch DQN's and TD3's losses take: inputs [observation, goal] now and
    next, the goal's reward, done = the goal's termination (reached it where success ends the episode: no
    bootstrap), one-step discount γ, uniform weights."""
    n = len(b.actions)
    fields = (np.concatenate([b.observation, b.desired_goal], 1), b.actions, b.rewards,
              np.concatenate([b.next_observation, b.desired_goal], 1), b.terminated.astype(np.float32),
              np.full(n, gamma, np.float32), np.ones(n, np.float32))
    return rl_utils.ReplayBatch(*(torch.as_tensor(x, device=device) for x in fields), b.indices)


class DQNLearner:
    """DQN on [observation, goal] (Discrete actions): ε-greedy acting, DQN's own ``dqn_loss`` (Double DQN by
    default), a Polyak-averaged target network."""

    def __init__(self, args: Args, inputs: int, action_space: gym.spaces.Discrete, device: torch.device):
        self.args, self.device, self.n = args, device, int(action_space.n)
        self.q_net = QNetwork((inputs,), self.n, parse_hidden(args.hidden_sizes)).to(device)
        self.target = copy.deepcopy(self.q_net).requires_grad_(False)  # moved only by Polyak steps
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=args.learning_rate)

    def modules(self) -> dict[str, object]:
        """What checkpoints hold, by name."""
        return dict(q_net=self.q_net, target=self.target, optimizer=self.optimizer)

    def policy(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Greedy actions (evaluation)."""
        with torch.no_grad():
            return self.q_net(torch.as_tensor(goal_obs(obs), device=self.device)).argmax(1).cpu().numpy()

    def explore(self, obs: dict[str, np.ndarray], step: int, rng: np.random.Generator) -> np.ndarray:
        """ε-greedy, ε decaying linearly from start_e to end_e over exploration_fraction of the run."""
        a = self.args
        frac = min(step / max(a.exploration_fraction * a.total_timesteps, 1), 1.0)
        epsilon = a.start_e + frac * (a.end_e - a.start_e)
        actions = self.policy(obs)
        random = rng.random(len(actions)) < epsilon
        actions[random] = rng.integers(0, self.n, random.sum())
        return actions

    def update(self, batch: rl_utils.ReplayBatch) -> dict[str, torch.Tensor]:
        loss, _, q_taken = dqn_loss(self.q_net, self.target, batch, self.args.double)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        off_policy.soft_update(self.q_net, self.target, self.args.tau)
        return {"td_loss": loss.detach(), "q_values": q_taken.mean()}


def ddpg_actor_loss(q: QEnsemble, actor: DeterministicActor, obs: torch.Tensor,
                    action_l2: float) -> torch.Tensor:
    """The deterministic policy gradient through the critic (TD3's ``actor_loss``) plus the paper's action
    penalty: −E[Q(s‖g, μ(s‖g))] + λ E[‖μ(s‖g)‖² / d]. The penalty keeps the pre-tanh outputs small, so μ does not
    sit on the flat tails of tanh where its gradient vanishes."""
    actions = actor(obs)  # [B, d]
    return -q(obs, actions, members=1)[0].mean() + action_l2 * actions.pow(2).mean()


class DDPGLearner:
    """DDPG on [observation, goal] (Box actions in [-1, 1]^d): one critic and TD3's ``critic_loss`` with the
    smoothing off, the target clipped to the return range, Polyak targets; exploration as the paper's: with
    probability ``random_eps`` a uniform action, else μ plus Gaussian noise."""

    def __init__(self, args: Args, inputs: int, action_space: gym.spaces.Box, device: torch.device):
        self.args, self.device, self.act_dim = args, device, int(np.prod(action_space.shape))
        hidden = parse_hidden(args.hidden_sizes)
        self.actor = DeterministicActor(inputs, self.act_dim, hidden, args.noise_std).to(device)
        self.q = QEnsemble(inputs, self.act_dim, hidden, n=1).to(device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)  # targets: Polyak steps only
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=args.learning_rate)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=args.learning_rate)
        # −1/0 rewards: every return lies in [−1/(1−γ), 0]; a target outside it is an overestimate to cut
        self.target_range = (-1.0 / (1.0 - args.gamma), 0.0) if args.clip_target else None

    def modules(self) -> dict[str, object]:
        return dict(actor=self.actor, q=self.q, actor_target=self.actor_target, q_target=self.q_target,
                    actor_optimizer=self.actor_optimizer, q_optimizer=self.q_optimizer)

    def policy(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """μ(s‖g), no noise (evaluation)."""
        with torch.no_grad():
            return self.actor(torch.as_tensor(goal_obs(obs), device=self.device)).cpu().numpy()

    def explore(self, obs: dict[str, np.ndarray], step: int, rng: np.random.Generator) -> np.ndarray:
        mu = self.policy(obs)
        actions = np.clip(mu + self.args.noise_std * rng.standard_normal(mu.shape), -1.0, 1.0)
        random = rng.random(len(mu)) < self.args.random_eps
        actions[random] = rng.uniform(-1.0, 1.0, (random.sum(), self.act_dim))
        return actions.astype(np.float32)

    def update(self, batch: rl_utils.ReplayBatch) -> dict[str, torch.Tensor]:
        loss_q, q_values = critic_loss(self.q, self.q_target, self.actor_target, batch, noise=0.0, noise_clip=0.0,
                                       target_range=self.target_range)
        self.q_optimizer.zero_grad(set_to_none=True)
        loss_q.backward()
        self.q_optimizer.step()
        loss_pi = ddpg_actor_loss(self.q, self.actor, batch.obs, self.args.action_l2)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss_pi.backward(inputs=list(self.actor.parameters()))  # the critic gets no gradient from the actor
        self.actor_optimizer.step()
        off_policy.soft_update(self.q, self.q_target, self.args.tau)
        off_policy.soft_update(self.actor, self.actor_target, self.args.tau)
        return {"qf_loss": loss_q.detach(), "qf_values": q_values.mean(), "actor_loss": loss_pi.detach()}


LEARNERS = {"dqn": DQNLearner, "ddpg": DDPGLearner}
ACTION_SPACES = {"dqn": gym.spaces.Discrete, "ddpg": gym.spaces.Box}


def make_envs(args: Args) -> tuple[str, gym.vector.VectorEnv]:
    env_id = goal_envs.bit_flipping_id(args.n_bits) if args.env_id == "BitFlipping-v0" else args.env_id
    goal_envs.ensure_registered(env_id)
    envs = rl_utils.make_vec_env(env_id, args.num_envs, args.seed, **env_options(args))
    space = envs.single_observation_space
    if not (isinstance(space, gym.spaces.Dict) and {"observation", "achieved_goal", "desired_goal"} <= set(space)):
        raise rl_utils.UsageError(f"HER needs a goal env (a Dict observation with observation, achieved_goal and "
                                  f"desired_goal); {args.env_id} has {space}")
    rl_utils.require_space(envs.single_action_space, (ACTION_SPACES[args.algo],), f"{args.algo.upper()}+HER")
    return env_id, envs


def env_options(args: Args) -> dict[str, object]:
    """DDPG acts in [-1, 1]^d, rescaled to the env's Box bounds."""
    return dict(unit_actions=args.algo == "ddpg")


def build(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> DQNLearner | DDPGLearner:
    space = envs.single_observation_space
    inputs = space["observation"].shape[0] + space["desired_goal"].shape[0]
    return LEARNERS[args.algo](args, inputs, envs.single_action_space, device)


def run_algo(args: Args) -> str:
    return f"{args.algo}_her" if args.her else args.algo


def eval_only(args: Args) -> None:
    """``--eval-only --checkpoint PATH``: the saved policy's success rate on this run's eval episodes."""
    if not args.checkpoint:
        raise rl_utils.UsageError("--eval-only needs --checkpoint PATH")
    ckpt = rl_utils.open_checkpoint(args.checkpoint, Args)
    saved = Args(**{**ckpt.args, "eval_episodes": args.eval_episodes})
    device = rl_utils.setup(saved)
    env_id, envs = make_envs(saved)
    learner = build(saved, envs, device)
    for name, module in learner.modules().items():
        rl_utils.load_state_into(module, ckpt[name])
    result = rl_utils.evaluate(lambda i: rl_utils.make_env(env_id, i, training=False, **env_options(saved)),
                               learner.policy, saved.eval_episodes, seed=saved.seed + rl_utils.EVAL_SEED_OFFSET)
    print(f"eval success rate {result.success_rate:.2f}, return {result.returns.mean():.1f} over "
          f"{len(result.returns)} episodes ({env_id}, checkpoint step {ckpt.step})")


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS, preset_key="algo")
    if args.eval_only:
        return eval_only(args)
    device = rl_utils.setup(args)
    env_id, envs = make_envs(args)
    space, action_space = envs.single_observation_space, envs.single_action_space
    learner = build(args, envs, device)
    env = envs.envs[0].unwrapped
    buffer = HERBuffer(args.buffer_size, space["observation"].shape[0], space["desired_goal"].shape[0],
                       action_space.shape, action_space.dtype, env.compute_reward, args.strategy,
                       args.k if args.her else 0, success_terminates=goal_envs.success_terminates(env),
                       seed=args.seed)
    progress = {"step": 0, "best": -math.inf, "last": math.nan, "last_success": math.nan, "last_step": -1}
    rng = np.random.default_rng(args.seed)  # exploration draws, checkpointed for an exact resume
    # per-env episode under way: observation / achieved goal rows (T + 1), goal, actions, rewards, terminations
    obs, _ = envs.reset(seed=args.seed)
    episodes = [new_episode(obs, i) for i in range(args.num_envs)]
    if ckpt is not None:
        if ckpt["buffer"] is not None:
            rl_utils.load_state_into(buffer, ckpt["buffer"])
        else:
            print("note: checkpoint has no HER replay (--save-buffer): the resumed run refills it")
        # the envs come back mid-episode where they pickle (our goal envs); MuJoCo's start fresh episodes
        if rl_utils.Run.restore(ckpt, **learner.modules(), explore_rng=rng, envs=envs):
            obs, episodes = ckpt["obs"], ckpt["episodes"]
        progress.update(ckpt["progress"])
    run = rl_utils.Run(args, run_algo(args), resume=ckpt, task=env_id)
    eval_fn = lambda i: rl_utils.make_env(env_id, i, training=False, **env_options(args))  # noqa: E731

    def evaluate() -> None:
        result = rl_utils.evaluate(eval_fn, learner.policy, args.eval_episodes,
                                   seed=args.seed + rl_utils.EVAL_SEED_OFFSET)
        progress["last"], progress["last_success"] = float(result.returns.mean()), result.success_rate
        progress["last_step"] = progress["step"]
        run.log_dict(result.log_dict(), progress["step"])
        if progress["last_success"] >= progress["best"]:
            progress["best"] = progress["last_success"]
            save("best")
        print(f"step {progress['step']:>8d} | success {result.success_rate:5.2f} | return {progress['last']:6.1f} | "
              f"{run.elapsed:5.0f}s", flush=True)

    def save(name: str) -> Path:
        return run.save(name, progress["step"], **learner.modules(), progress=progress, explore_rng=rng, envs=envs,
                        obs=obs, episodes=episodes, buffer=buffer if args.save_buffer else None)

    run.progress(args.total_timesteps, progress["step"])
    next_eval = (progress["step"] // args.eval_every + 1) * args.eval_every if args.eval_every else math.inf
    stats: dict[str, torch.Tensor] = {}
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress["step"] < args.total_timesteps and not interrupt.requested:
            actions = learner.explore(obs, progress["step"], rng)
            next_obs, rewards, terminated, truncated, infos = envs.step(actions)
            real = rl_utils.real_next_obs(next_obs, infos)
            for i, ep in enumerate(episodes):
                ep["o"].append(real["observation"][i])
                ep["ag"].append(real["achieved_goal"][i])
                ep["g"].append(obs["desired_goal"][i])
                ep["a"].append(actions[i])
                ep["r"].append(rewards[i])
                ep["d"].append(terminated[i])
                if terminated[i] or truncated[i]:  # the whole episode goes in; the next starts from the reset obs
                    buffer.add_episode(np.array(ep["o"]), np.array(ep["ag"]), np.array(ep["g"]), np.array(ep["a"]),
                                       np.array(ep["r"], dtype=np.float32), np.array(ep["d"]))
                    episodes[i] = new_episode(next_obs, i)
            run.log_episodes(rl_utils.finished_episodes(infos), progress["step"] + args.num_envs)
            obs = next_obs
            progress["step"] += args.num_envs

            if progress["step"] >= args.learning_starts and len(buffer):
                for _ in range(args.gradient_steps * args.num_envs):
                    stats = learner.update(goal_batch(buffer.sample(args.batch_size), args.gamma, device))
                if progress["step"] % 500 < args.num_envs:  # the loop's only .item() syncs
                    run.log_dict({f"losses/{k}": float(v) for k, v in stats.items()}, progress["step"])
                    run.log("charts/SPS", progress["step"] / max(run.elapsed, 1e-9), progress["step"])
            run.update_progress(args.num_envs, progress["step"], progress["step"] / max(run.elapsed, 1e-9))
            if progress["step"] >= next_eval:
                next_eval += args.eval_every
                evaluate()
            if args.checkpoint_every and progress["step"] % args.checkpoint_every < args.num_envs:
                save(f"step_{progress['step']}")
                save("latest")
    latest = save("latest")
    if interrupt.requested:
        run.close()
        print(f"interrupted at step {progress['step']}; resume with: python {sys.argv[0]} --resume {latest}")
        return
    if progress.get("last_step") != progress["step"]:
        evaluate()  # the headline number always comes from an evaluation of the final network
    run.flush()
    title = f"{args.algo.upper()}{'+HER' if args.her else ''} on {env_id}"
    rl_utils.plot_curves([run.run_dir], run.run_dir / "learning_curve.png", tags=("eval/success_rate", "eval/return"),
                         title=title)
    run.write_summary(final_eval_success_rate=progress["last_success"], final_eval_return=progress["last"],
                      best_eval_success_rate=progress["best"], env_steps=progress["step"],
                      wall_time_s=round(run.elapsed, 1), sps=round(progress["step"] / max(run.elapsed, 1e-9), 1),
                      algo=run_algo(args), env_id=env_id, seed=args.seed)
    run.close()
    envs.close()
    print(f"final success rate {progress['last_success']:.2f} after {progress['step']} env steps "
          f"({run.elapsed:.0f}s) | run folder: {run.run_dir}")


if __name__ == "__main__":
    rl_utils.run_main(main)

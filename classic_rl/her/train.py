"""DQN + Hindsight Experience Replay on goal envs (Andrychowicz et al. 2017). Work in progress: DDPG+HER comes next.

    python classic_rl/her/train.py                                   # DQN+HER, 15-bit flipping
    python classic_rl/her/train.py --no-her                          # plain DQN on the same budget
    python classic_rl/her/train.py --n-bits 8 --strategy final --k 2

Read top to bottom: arguments, the goal-conditioned Q input, the loop (ε-greedy episodes into the HER buffer,
DQN updates on relabelled batches with DQN's own ``dqn_loss``, Polyak target updates, evaluation of the success
rate). The relabelling is ``classic_rl/her/buffer.py``; the envs are ``classic_rl/her/envs.py``.
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
from classic_rl.dqn.model import QNetwork  # noqa: E402
from classic_rl.dqn.train import dqn_loss  # noqa: E402
from classic_rl.her import envs as goal_envs  # noqa: E402
from classic_rl.her.buffer import STRATEGIES, HERBatch, HERBuffer  # noqa: E402
from classic_rl.policies import parse_hidden  # noqa: E402


@dataclass
class Args(rl_utils.CommonArgs):
    """Train DQN with Hindsight Experience Replay on a goal env (Dict observation with achieved/desired goals)."""

    env_id: str = "BitFlipping-v0"
    """goal env id (BitFlipping-v0 takes --n-bits)"""
    n_bits: int = 15
    """bits of BitFlipping-v0 (the episode lasts n steps)"""
    total_timesteps: int = 60_000
    """environment steps to train for"""
    eval_every: int = 3_000
    """env steps between evaluations of the greedy policy's success rate"""
    eval_episodes: int = 20
    """episodes per evaluation"""
    her: bool = True
    """relabel goals in hindsight (--no-her: plain DQN with the same buffer, budget and updates)"""
    strategy: str = "future"
    """future (a later achieved goal of the same episode), final (its last) or episode (any of its steps)"""
    k: int = 4
    """relabelled goals per real one: a sampled transition is relabelled with probability k / (k + 1)"""
    learning_rate: float = 1e-3
    """Adam learning rate"""
    buffer_size: int = 1_000_000
    """replay capacity in transitions (the paper's: every transition of the run)"""
    batch_size: int = 128
    """minibatch size (the paper's)"""
    gamma: float = 0.98
    """discount factor (the paper's)"""
    tau: float = 0.05
    """Polyak rate of the target network per gradient step (the paper: 0.95 kept, i.e. 0.05 moved)"""
    learning_starts: int = 1_000
    """env steps of ε-greedy acting before the first update"""
    gradient_steps: int = 1
    """gradient steps per env step"""
    start_e: float = 1.0
    """initial exploration ε"""
    end_e: float = 0.05
    """final exploration ε"""
    exploration_fraction: float = 0.3
    """fraction of the run over which ε decays linearly"""
    hidden_sizes: str = "256,256"
    """comma-separated hidden layer sizes of the Q network"""
    double: bool = True
    """Double DQN targets"""

    LIMITS = {"n_bits": (1, None), "k": (0, None), "learning_rate": (0, None), "buffer_size": (1, None),
              "batch_size": (1, None), "gamma": (0, 1), "tau": (0, 1), "gradient_steps": (1, None),
              "start_e": (0, 1), "end_e": (0, 1), "exploration_fraction": (0, 1)}
    CHOICES = {"strategy": STRATEGIES}


def goal_obs(obs: dict[str, np.ndarray]) -> np.ndarray:
    """The Q network's input for a batch of goal observations: [observation, desired goal] side by side."""
    return np.concatenate([obs["observation"], obs["desired_goal"]], -1).astype(np.float32)


def dqn_batch(b: HERBatch, gamma: float, device: torch.device) -> rl_utils.ReplayBatch:
    """A (relabelled) HER batch as DQN's ReplayBatch: inputs [observation, goal] now and next, the goal's reward,
    done = the goal's termination (reached it: no bootstrap), one-step discount γ, uniform weights."""
    n = len(b.actions)
    fields = (np.concatenate([b.observation, b.desired_goal], 1), b.actions, b.rewards,
              np.concatenate([b.next_observation, b.desired_goal], 1), b.terminated.astype(np.float32),
              np.full(n, gamma, np.float32), np.ones(n, np.float32))
    return rl_utils.ReplayBatch(*(torch.as_tensor(x, device=device) for x in fields), b.indices)


def make_envs(args: Args) -> tuple[str, gym.vector.VectorEnv]:
    env_id = goal_envs.bit_flipping_id(args.n_bits) if args.env_id == "BitFlipping-v0" else args.env_id
    envs = rl_utils.make_vec_env(env_id, args.num_envs, args.seed)
    space = envs.single_observation_space
    if not (isinstance(space, gym.spaces.Dict) and {"observation", "achieved_goal", "desired_goal"} <= set(space)):
        raise rl_utils.UsageError(f"HER needs a goal env (a Dict observation with observation, achieved_goal and "
                                  f"desired_goal); {args.env_id} has {space}")
    rl_utils.require_space(envs.single_action_space, (gym.spaces.Discrete,), "DQN+HER")
    return env_id, envs


def greedy(q_net: torch.nn.Module, device: torch.device):
    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            return q_net(torch.as_tensor(goal_obs(obs), device=device)).argmax(1).cpu().numpy()
    return act


def build(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> QNetwork:
    space = envs.single_observation_space
    inputs = space["observation"].shape[0] + space["desired_goal"].shape[0]
    return QNetwork((inputs,), int(envs.single_action_space.n), parse_hidden(args.hidden_sizes)).to(device)


def eval_only(args: Args) -> None:
    """``--eval-only --checkpoint PATH``: the saved Q network's greedy success rate on this run's eval episodes."""
    if not args.checkpoint:
        raise rl_utils.UsageError("--eval-only needs --checkpoint PATH")
    ckpt = rl_utils.open_checkpoint(args.checkpoint, Args)
    saved = Args(**{**ckpt.args, "eval_episodes": args.eval_episodes})
    device = rl_utils.setup(saved)
    env_id, envs = make_envs(saved)
    q_net = build(saved, envs, device)
    rl_utils.load_state_into(q_net, ckpt["q_net"])
    result = rl_utils.evaluate(lambda i: rl_utils.make_env(env_id, i, training=False), greedy(q_net, device),
                               saved.eval_episodes, seed=saved.seed + rl_utils.EVAL_SEED_OFFSET)
    print(f"eval success rate {result.success_rate:.2f}, return {result.returns.mean():.1f} over "
          f"{len(result.returns)} episodes ({env_id}, checkpoint step {ckpt.step})")


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args)
    if args.eval_only:
        return eval_only(args)
    device = rl_utils.setup(args)
    env_id, envs = make_envs(args)
    space = envs.single_observation_space
    obs_dim, goal_dim = space["observation"].shape[0], space["desired_goal"].shape[0]
    q_net = build(args, envs, device)
    target = copy.deepcopy(q_net).requires_grad_(False)  # moved only by Polyak steps
    optimizer = torch.optim.Adam(q_net.parameters(), lr=args.learning_rate)
    compute_reward = envs.envs[0].unwrapped.compute_reward
    buffer = HERBuffer(args.buffer_size, obs_dim, goal_dim, (), np.int64, compute_reward, args.strategy,
                       args.k if args.her else 0, success_terminates=True, seed=args.seed)
    progress = {"step": 0, "best": -math.inf, "last": math.nan, "last_success": math.nan, "last_step": -1}
    if ckpt is not None:
        rl_utils.Run.restore(ckpt, q_net=q_net, target=target, optimizer=optimizer)
        progress.update(ckpt["progress"])
        print("note: the HER replay is not saved: the resumed run refills it")
    run = rl_utils.Run(args, "dqn_her" if args.her else "dqn", resume=ckpt, task=env_id)
    eval_fn = lambda i: rl_utils.make_env(env_id, i, training=False)  # noqa: E731
    rng = np.random.default_rng(args.seed)

    def evaluate() -> None:
        result = rl_utils.evaluate(eval_fn, greedy(q_net, device), args.eval_episodes,
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
        return run.save(name, progress["step"], q_net=q_net, target=target, optimizer=optimizer, progress=progress)

    # per-env episode under way: observation / achieved goal rows (T + 1), goal, actions, rewards, terminations
    obs, _ = envs.reset(seed=args.seed)
    episodes = [dict(o=[obs["observation"][i]], ag=[obs["achieved_goal"][i]], g=[], a=[], r=[], d=[])
                for i in range(args.num_envs)]
    run.progress(args.total_timesteps, progress["step"])
    next_eval = (progress["step"] // args.eval_every + 1) * args.eval_every if args.eval_every else math.inf
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress["step"] < args.total_timesteps and not interrupt.requested:
            frac = min(progress["step"] / max(args.exploration_fraction * args.total_timesteps, 1), 1.0)
            epsilon = args.start_e + frac * (args.end_e - args.start_e)
            actions = greedy(q_net, device)(obs)
            explore = rng.random(args.num_envs) < epsilon
            actions[explore] = rng.integers(0, envs.single_action_space.n, explore.sum())
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
                    episodes[i] = dict(o=[next_obs["observation"][i]], ag=[next_obs["achieved_goal"][i]], g=[], a=[],
                                       r=[], d=[])
            run.log_episodes(rl_utils.finished_episodes(infos), progress["step"] + args.num_envs)
            obs = next_obs
            progress["step"] += args.num_envs

            if progress["step"] >= args.learning_starts and len(buffer):
                for _ in range(args.gradient_steps * args.num_envs):
                    batch = dqn_batch(buffer.sample(args.batch_size), args.gamma, device)
                    loss, _, q_taken = dqn_loss(q_net, target, batch, args.double)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    with torch.no_grad():
                        torch._foreach_lerp_(list(target.parameters()), list(q_net.parameters()), args.tau)
                if progress["step"] % 500 < args.num_envs:
                    run.log_dict({"losses/td_loss": float(loss.detach()), "losses/q_values": float(q_taken.mean()),
                                  "charts/epsilon": epsilon,
                                  "charts/SPS": progress["step"] / max(run.elapsed, 1e-9)}, progress["step"])
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
    title = f"DQN{'+HER' if args.her else ''} on {env_id}"
    rl_utils.plot_curves([run.run_dir], run.run_dir / "learning_curve.png", tags=("eval/success_rate", "eval/return"),
                         title=title)
    run.write_summary(final_eval_success_rate=progress["last_success"], final_eval_return=progress["last"],
                      best_eval_success_rate=progress["best"], env_steps=progress["step"],
                      wall_time_s=round(run.elapsed, 1), sps=round(progress["step"] / max(run.elapsed, 1e-9), 1),
                      algo="dqn_her" if args.her else "dqn", env_id=env_id, seed=args.seed)
    run.close()
    envs.close()
    print(f"final success rate {progress['last_success']:.2f} after {progress['step']} env steps "
          f"({run.elapsed:.0f}s) | run folder: {run.run_dir}")


if __name__ == "__main__":
    rl_utils.run_main(main)

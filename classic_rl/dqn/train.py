"""DQN and its improvements, composable by flags: ``--double --dueling --per --n-step N``.

    python classic_rl/dqn/train.py                                   # CartPole-v1, solved in ~50k steps
    python classic_rl/dqn/train.py --env-id LunarLander-v3 --double --dueling
    python classic_rl/dqn/train.py --env-id Pendulum-v1 --discrete-actions 11
    python classic_rl/dqn/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt --capture-video

Read top to bottom: arguments, the loss (the part DQN is about), then the training loop. Everything generic
(buffers, envs, logging, checkpoints) comes from rl_utils. C51 (``distributional_rl/c51/train.py``) runs this same
loop with its own arguments, network and loss: a :class:`Method` says what a value-based method plugs in.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl.dqn.model import QNetwork  # noqa: E402
from classic_rl.policies import parse_hidden  # noqa: E402


@dataclass
class ValueArgs(rl_utils.CommonArgs):
    """Flags of the value-based loop below, shared by DQN and C51."""

    double: bool = False
    """Double DQN: the online net picks the next action, the target net evaluates it"""
    dueling: bool = False
    """dueling head Q = V + A - mean(A)"""
    per: bool = False
    """prioritized experience replay (proportional, sum tree)"""
    n_step: int = 1
    """n-step returns (1 = plain one-step TD target)"""
    per_alpha: float = 0.6
    """PER: how strongly priorities shape sampling (0 = uniform)"""
    per_beta0: float = 0.4
    """PER: initial importance-sampling exponent, annealed linearly to 1 over the run"""
    discrete_actions: int = 0
    """discretise a continuous (Box) action space into this many actions per dimension (0 = off)"""
    hidden_sizes: str = "128,128"
    """comma-separated hidden layer sizes of the MLP Q-network (RL Zoo uses 256,256: 128,128 solves CartPole in as
    few steps here and its updates are ~1.6x faster on CPU)"""
    learning_rate: float = 2.3e-3
    """Adam learning rate"""
    adam_eps: float = 1e-8
    """Adam's ε (torch's default; the C51 paper used 0.01 / 32, which damps steps where gradients are tiny)"""
    anneal_lr: bool = True
    """decay the learning rate linearly to 0 over the run (keeps a solved policy from being un-learned late)"""
    buffer_size: int = 100_000
    """replay buffer capacity (transitions)"""
    gamma: float = 0.99
    """discount factor"""
    tau: float = 1.0
    """target update rate: 1.0 copies the online net (hard update), < 1 is Polyak averaging"""
    target_network_frequency: int = 10
    """env steps between target-network updates"""
    batch_size: int = 64
    """minibatch size"""
    start_e: float = 1.0
    """initial exploration epsilon"""
    end_e: float = 0.04
    """final exploration epsilon"""
    exploration_fraction: float = 0.16
    """fraction of total-timesteps over which epsilon decays linearly"""
    learning_starts: int = 1_000
    """env steps of random-ish experience before learning starts"""
    train_frequency: int = 256
    """vector-env steps between training phases"""
    gradient_steps: int = 128
    """gradient steps per training phase"""
    max_grad_norm: float = 10.0
    """gradient-norm clipping"""

    LIMITS = {"n_step": (1, None), "per_alpha": (0, None), "per_beta0": (0, 1), "discrete_actions": (0, None),
              "learning_rate": (0, None), "adam_eps": (0, None), "buffer_size": (1, None), "gamma": (0, 1),
              "tau": (0, 1),
              "target_network_frequency": (1, None), "batch_size": (1, None), "start_e": (0, 1), "end_e": (0, 1),
              "exploration_fraction": (0, 1), "learning_starts": (0, None), "train_frequency": (1, None),
              "gradient_steps": (1, None), "max_grad_norm": (0, None)}


@dataclass
class Args(ValueArgs):
    """Train a DQN-family agent (DQN, Double, Dueling, PER, n-step) on a discrete-action gymnasium env."""

    loss: str = "huber"
    """TD loss: huber (smooth L1, robust to large TD errors) or mse"""

    CHOICES = {"loss": ("huber", "mse")}


# Tuned defaults per env, applied unless the flag is typed (as RL Zoo's hyperparameter files).
PRESETS: dict[str, dict[str, object]] = {
    # CartPole: RL Zoo's settings (the Args defaults) plus what made the *final* network robust. DQN solves
    # CartPole and then often forgets it (returns back to ~100-300 by 50k steps): with the plain defaults 3 of 5
    # seeds ended >= 475. 3-step targets at γ 0.98 (a shorter credit horizon: values ~50 instead of ~100), a slow
    # Polyak target (τ 0.002 every step in place of a copy every 10 steps) and RL Zoo's 256-256 network ended
    # >= 475 in 14 of 14 seeds (τ 0.005: 13 of 14; any one or two of the changes: at most 6 of 7; the table in
    # classic_rl/dqn/README.md, "Robustness of the final evaluation").
    "CartPole-v1": dict(n_step=3, gamma=0.98, tau=0.002, target_network_frequency=1, hidden_sizes="256,256"),
    "LunarLander-v3": dict(
        total_timesteps=300_000, learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0,
        target_network_frequency=250, train_frequency=4, gradient_steps=1, exploration_fraction=0.12,
        end_e=0.1, eval_every=20_000, hidden_sizes="256,256",
    ),
    # RL Zoo's dqn.yml for MountainCar-v0. The reward is -1 per step until the flag: only exploration that
    # happens to reach it ever sees a different return, so ε decays slowly (20% of the run) and stays at 0.07;
    # γ 0.98 keeps the -1/step values bounded (~-50) so the first successes stand out quickly. A constant lr as the
    # Zoo's: with our default linear decay to 0, seed 1 ended at -120.2 (best -118.2), without it at -110.2.
    "MountainCar-v0": dict(
        total_timesteps=120_000, learning_rate=4e-3, batch_size=128, buffer_size=10_000, learning_starts=1_000,
        gamma=0.98, target_network_frequency=600, train_frequency=16, gradient_steps=8, exploration_fraction=0.2,
        end_e=0.07, eval_every=10_000, hidden_sizes="256,256", anneal_lr=False,
    ),
    "Pendulum-v1": dict(
        total_timesteps=20_000, learning_rate=1e-3, gamma=0.98, batch_size=128, buffer_size=20_000,
        learning_starts=1_000, target_network_frequency=200, train_frequency=1, gradient_steps=1,
        exploration_fraction=0.25, end_e=0.02, eval_every=2_000, hidden_sizes="256,256",
    ),
    "ALE/Pong-v5": dict(
        total_timesteps=10_000_000, learning_rate=1e-4, batch_size=32, buffer_size=100_000,
        learning_starts=80_000, target_network_frequency=1_000, train_frequency=4, gradient_steps=1,
        exploration_fraction=0.1, end_e=0.01, start_e=1.0, eval_every=250_000, torch_threads=2,
    ),
}


def dqn_loss(
    q_net: torch.nn.Module,
    target_net: torch.nn.Module,
    batch: rl_utils.ReplayBatch,
    double: bool,
    loss: str = "huber",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DQN objective on a replay batch; returns (loss, td_errors, Q(s,a)).

    TD target y = R + γ^m (1 - done) max_a' Q_target(s', a')   (m = rewards summed, 1 for plain DQN)
    Double DQN: y = R + γ^m (1 - done) Q_target(s', argmax_a' Q_online(s', a')), which stops the max from
    picking actions whose value is overestimated by noise in the same network that scores them."""
    with torch.no_grad():
        next_q_target = target_net(batch.next_obs)  # [B, A]
        if double:
            next_actions = q_net(batch.next_obs).argmax(dim=1, keepdim=True)  # [B, 1]
            next_q = next_q_target.gather(1, next_actions).squeeze(1)  # [B]
        else:
            next_q = next_q_target.max(dim=1).values  # [B]
        target = batch.rewards + batch.discounts * (1.0 - batch.dones) * next_q  # [B]
    q_taken = q_net(batch.obs).gather(1, batch.actions.long().view(-1, 1)).squeeze(1)  # [B]
    td_errors = target - q_taken
    per_sample = F.smooth_l1_loss(q_taken, target, reduction="none") if loss == "huber" else td_errors.pow(2)
    # Importance weights (all ones without PER) undo the bias of non-uniform sampling.
    return (batch.weights * per_sample).mean(), td_errors.detach(), q_taken.detach()


def update_target(q_net: torch.nn.Module, target_net: torch.nn.Module, tau: float) -> None:
    """θ_target ← τ θ + (1 − τ) θ_target (τ = 1: copy)."""
    with torch.no_grad():
        for p, tp in zip(q_net.parameters(), target_net.parameters()):
            tp.lerp_(p, tau)


def discrete_action_count(args: ValueArgs, envs: gym.vector.VectorEnv, algo: str) -> int:
    """The number of actions of a Discrete env; one line pointing to ``--discrete-actions`` for a Box one."""
    hint = ""
    if args.discrete_actions == 0:
        hint = f"; pass --discrete-actions N to discretise {args.env_id}'s continuous actions (e.g. 11)"
    return rl_utils.require_discrete(envs, algo, hint)


def build(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> tuple[QNetwork, QNetwork]:
    n_actions = discrete_action_count(args, envs, "DQN")
    q_net = QNetwork(envs.single_observation_space.shape, n_actions, parse_hidden(args.hidden_sizes),
                     args.dueling).to(device)
    target_net = copy.deepcopy(q_net).requires_grad_(False)  # never trained by backprop, only copied into
    return q_net, target_net


def td_loss(args: Args, q_net: nn.Module, target_net: nn.Module,
            batch: rl_utils.ReplayBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return dqn_loss(q_net, target_net, batch, args.double, args.loss)


def variant_name(base: str, args: ValueArgs) -> str:
    """``dqn``, ``dqn_double_dueling_per_3step``, ``c51_double``, ...: the run folder's algorithm part."""
    parts = [base] + [name for name in ("double", "dueling", "per") if getattr(args, name)]
    if args.n_step > 1:
        parts.append(f"{args.n_step}step")
    return "_".join(parts)


@dataclass(frozen=True)
class Method:
    """What a value-based method plugs into the loop below; everything else (ε-greedy acting, replay with PER
    and n-step, the training schedule, target updates, evaluation, checkpoints, resume) is the loop's.

    ``build(args, envs, device) -> (online, target)``: networks whose ``forward(obs)`` gives Q-values [B, A]
    (greedy acting reads them). ``loss(args, online, target, batch) -> (loss, errors [B], Q(s, a) [B])``: PER
    samples in proportion to |errors|."""

    args: type[ValueArgs]
    presets: dict[str, dict[str, object]]
    build: Callable[[ValueArgs, gym.vector.VectorEnv, torch.device], tuple[nn.Module, nn.Module]]
    loss: Callable[[ValueArgs, nn.Module, nn.Module, rl_utils.ReplayBatch],
                   tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    name: str  # the run folder's algorithm part, before the variant flags


DQN = Method(Args, PRESETS, build, td_loss, "dqn")


def greedy_policy(q_net: torch.nn.Module, device: torch.device):
    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return q_net(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()

    return act


def eval_env_fn(args: ValueArgs, video_dir: Path, video_prefix: str = "eval"):
    return lambda i: rl_utils.make_env(
        args.env_id, i, capture_video=args.capture_video, video_dir=video_dir, video_prefix=video_prefix,
        discrete_actions=args.discrete_actions, training=False,
    )


@dataclass
class Progress:
    """Counters a checkpoint carries (restored by ``rl_utils.Run.restore``)."""

    global_step: int = 0
    iteration: int = 0
    best_eval: float = -math.inf
    best_eval_step: int = -1
    last_eval: float = math.nan


def evaluate_checkpoint(path: Path, device: torch.device | None = None, seed_offset: int = rl_utils.EVAL_SEED_OFFSET,
                        method: Method = DQN, **overrides: object) -> tuple[rl_utils.EvalResult, rl_utils.Checkpoint]:
    """Greedy evaluation of a saved Q-network on the eval episodes (default) or the held-out ones (see
    ``rl_utils.HELDOUT_SEED_OFFSET``). ``overrides`` replace saved arguments (--capture-video, --eval-episodes);
    without ``device`` the saved arguments choose it (and seed everything)."""
    ckpt = rl_utils.open_checkpoint(path, method.args)
    saved = method.args(**{**ckpt.args, **overrides})
    device = device if device is not None else rl_utils.setup(saved)
    envs = rl_utils.make_vec_env(saved.env_id, 1, saved.seed, discrete_actions=saved.discrete_actions)
    q_net, _ = method.build(saved, envs, device)
    envs.close()
    rl_utils.load_state_into(q_net, ckpt["q_net"])
    result = rl_utils.evaluate(eval_env_fn(saved, ckpt.run_dir / "videos"), greedy_policy(q_net, device),
                               saved.eval_episodes, seed=saved.seed + seed_offset)
    return result, ckpt


def eval_only(args: ValueArgs, method: Method) -> None:
    if not args.checkpoint:
        raise rl_utils.UsageError("--eval-only needs --checkpoint PATH")
    result, ckpt = evaluate_checkpoint(args.checkpoint, method=method, capture_video=args.capture_video,
                                       eval_episodes=args.eval_episodes)
    if args.capture_video:
        print(f"videos: {ckpt.run_dir / 'videos'}")
    print(f"eval return {result.returns.mean():.1f} ± {result.returns.std():.1f} over {len(result.returns)} "
          f"episodes ({ckpt.args['env_id']}, checkpoint step {ckpt.step})")


def main(method: Method = DQN) -> None:
    args, ckpt = rl_utils.parse_run_args(method.args, presets=method.presets)
    if args.eval_only:
        return eval_only(args, method)
    device = rl_utils.setup(args)
    algo = variant_name(method.name, args)

    envs = rl_utils.make_vec_env(args.env_id, args.num_envs, args.seed, discrete_actions=args.discrete_actions)
    q_net, target_net = method.build(args, envs, device)
    n_actions = int(envs.single_action_space.n)
    # fused: one kernel for all parameters, ~1.5x faster updates on CPU for small nets
    optimizer = torch.optim.Adam(q_net.parameters(), lr=args.learning_rate, eps=args.adam_eps, fused=True)
    buffer_cls = rl_utils.PrioritizedReplayBuffer if args.per else rl_utils.ReplayBuffer
    extra = {"alpha": args.per_alpha} if args.per else {}
    buffer = buffer_cls(args.buffer_size, args.num_envs, envs.single_observation_space, envs.single_action_space,
                        gamma=args.gamma, n_step=args.n_step, device=device, seed=args.seed, **extra)
    rng = np.random.default_rng(args.seed)  # exploration draws, checkpointed for an exact resume

    obs, _ = envs.reset(seed=args.seed)
    progress = Progress()
    if ckpt is not None:
        exact = rl_utils.Run.restore(ckpt, q_net=q_net, target_net=target_net, optimizer=optimizer,
                                     progress=progress, explore_rng=rng, envs=envs)
        if ckpt["buffer"] is not None:
            rl_utils.load_state_into(buffer, ckpt["buffer"])
        else:
            print("note: checkpoint has no replay buffer (--save-buffer): refilling it, the resume is not exact")
        if exact:
            obs = ckpt["obs"]
    logger = rl_utils.Run(args, algo, resume=ckpt)
    act = greedy_policy(q_net, device)

    def checkpoint(name: str) -> Path:
        return logger.save(name, progress.global_step, q_net=q_net, target_net=target_net, optimizer=optimizer,
                           progress=progress, explore_rng=rng, envs=envs, obs=obs,
                           buffer=buffer if args.save_buffer else None)

    def run_eval(step: int) -> float:
        eval_envs = eval_env_fn(args, logger.run_dir / "videos", video_prefix=f"step{step}")
        result = rl_utils.evaluate(eval_envs, act, args.eval_episodes, seed=args.seed + rl_utils.EVAL_SEED_OFFSET)
        mean = float(result.returns.mean())
        logger.log_dict(result.log_dict(), step)
        progress.last_eval = mean
        if mean >= progress.best_eval:
            progress.best_eval, progress.best_eval_step = mean, step
            checkpoint("best")
        print(f"step {step:>8d} | eval return {mean:8.1f} ± {result.returns.std():6.1f} | {logger.elapsed:6.0f}s")
        return mean

    exploration_steps = args.exploration_fraction * args.total_timesteps
    bar = logger.progress(args.total_timesteps, progress.global_step)
    sps_t0, sps_step0 = time.time(), progress.global_step
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.global_step < args.total_timesteps and not interrupt.requested:
            step = progress.global_step
            epsilon = rl_utils.linear_schedule(args.start_e, args.end_e, exploration_steps, step)
            explore = rng.random(args.num_envs) < epsilon
            random_actions = rng.integers(0, n_actions, size=args.num_envs)
            actions = random_actions if explore.all() else np.where(explore, random_actions, act(obs))

            next_obs, rewards, terminated, truncated, infos = envs.step(actions)
            buffer.add(obs, rl_utils.real_next_obs(next_obs, infos), actions, rewards, terminated, truncated)
            obs = next_obs
            progress.iteration += 1
            step = progress.global_step = step + args.num_envs
            logger.log_episodes(rl_utils.finished_episodes(infos), step)

            if step > args.learning_starts and progress.iteration % args.train_frequency == 0:
                if args.anneal_lr:
                    lr = rl_utils.linear_schedule(args.learning_rate, 0.0, args.total_timesteps, step)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                if args.per:
                    buffer.beta = rl_utils.linear_schedule(args.per_beta0, 1.0, args.total_timesteps, step)
                for _ in range(args.gradient_steps):
                    batch = buffer.sample(args.batch_size)
                    loss, errors, q_taken = method.loss(args, q_net, target_net, batch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(q_net.parameters(), args.max_grad_norm, foreach=True)
                    optimizer.step()
                    if args.per:
                        buffer.update_priorities(batch.indices, errors.cpu().numpy())
                logger.log_dict({"losses/td_loss": loss.item(), "losses/q_values": q_taken.mean().item(),
                                 "charts/epsilon": epsilon, "charts/learning_rate": optimizer.param_groups[0]["lr"],
                                 **({"charts/per_beta": buffer.beta} if args.per else {})}, step)
            if step % args.target_network_frequency < args.num_envs:
                update_target(q_net, target_net, args.tau)

            if step % 1000 < args.num_envs:
                sps = (step - sps_step0) / max(time.time() - sps_t0, 1e-9)
                logger.log("charts/SPS", sps, step)
                logger.update_progress(step - bar.n, step, sps)
            if args.eval_every and step % args.eval_every < args.num_envs and run_eval(step) >= args.target_return:
                print(f"target return {args.target_return} reached at step {step}")
                break
            if args.checkpoint_every and step % args.checkpoint_every < args.num_envs:
                checkpoint(f"step_{step}")
                checkpoint("latest")

    step = progress.global_step
    latest = checkpoint("latest")
    if interrupt.requested:
        logger.close()
        print(f"interrupted at step {step}; resume with: python {sys.argv[0]} --resume {latest}")
        return
    if not (args.eval_every and step % args.eval_every < args.num_envs):
        run_eval(step)  # the headline number always comes from an evaluation of the final network
    final = progress.last_eval
    # best.pt was chosen on the eval episodes, so score it on held-out ones (see rl_utils.HELDOUT_SEED_OFFSET)
    heldout, best = evaluate_checkpoint(logger.ckpt_dir / "best.pt", device, rl_utils.HELDOUT_SEED_OFFSET,
                                        method, capture_video=False)
    heldout_mean = float(heldout.returns.mean())
    logger.log("eval/best_heldout_return", heldout_mean, step)
    print(f"best.pt (step {best.step}) on held-out episodes: {heldout_mean:.1f} ± {heldout.returns.std():.1f}")
    logger.flush()  # the plot reads metrics.csv: the final evaluation must be on disk first
    rl_utils.plot_curves([logger.run_dir], logger.run_dir / "learning_curve.png",
                         tags=("charts/episodic_return", "eval/return"), title=f"{algo} on {args.env_id}")
    logger.write_summary(
        final_eval_return=final, best_eval_return=progress.best_eval, best_eval_step=progress.best_eval_step,
        best_heldout_return=heldout_mean, env_steps=step,
        wall_time_s=round(logger.elapsed, 1), sps=round(step / max(logger.elapsed, 1e-9), 1),
        algo=algo, env_id=args.env_id, seed=args.seed,
    )
    logger.close()
    envs.close()
    print(f"final eval return {final:.1f} after {step} env steps ({logger.elapsed:.0f}s) | "
          f"run folder: {logger.run_dir} (TensorBoard logs, metrics.csv, learning_curve.png, ckpt/)")


if __name__ == "__main__":
    rl_utils.run_main(main)

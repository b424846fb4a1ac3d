"""What the on-policy scripts (A2C, PPO; REINFORCE and Actor-Critic may use it) share beyond rl_utils: the
policy flags, env and agent construction, collecting a rollout, deterministic evaluation with the training
observation statistics, ``--eval-only``, and the end of a run. Each ``train.py`` keeps its loss and its update
loop, the part its algorithm is about."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import rl_utils
from classic_rl.policies import ActorCritic, acting, greedy_policy, parse_hidden

# Sampling-time argument checks of torch.distributions cost ~30% of the acting phase; our inputs are valid.
torch.distributions.Distribution.set_default_validate_args(False)

@dataclass
class PolicyArgs(rl_utils.CommonArgs):
    """Flags of every MLP actor-critic script."""

    num_envs: int = 8
    """parallel environments (SyncVectorEnv)"""
    num_steps: int = 128
    """steps per env per rollout: a rollout is num_steps x num_envs transitions"""
    gamma: float = 0.99
    """discount factor"""
    hidden_sizes: str = "64,64"
    """comma-separated hidden layer sizes of the actor and critic MLPs"""
    activation: str = "tanh"
    """tanh or relu"""
    shared_trunk: bool = False
    """actor and critic share their hidden layers (separate by default)"""
    log_std_init: float = 0.0
    """initial log σ of the Gaussian policy (Box actions)"""
    norm_obs: bool = False
    """normalise observations with running statistics (saved in every checkpoint, frozen in evaluation)"""
    norm_reward: bool = False
    """scale rewards by the running std of the discounted return (training only; evaluation reports raw)"""
    eval_every: int = 10_000
    """env steps between deterministic evaluations (checked after each rollout; 0 = only at the end)"""

    LIMITS = {"num_steps": (1, None), "gamma": (0, 1)}


@dataclass
class RMSpropArgs(PolicyArgs):
    """PolicyArgs plus the optimizer flags of the A3C family (A2C, A3C, ACER): RMSprop as the A3C paper (and SB3's
    A2C) use, or Adam."""

    learning_rate: float = 7e-4
    """learning rate"""
    optimizer: str = "rmsprop"
    """rmsprop (as the A3C paper and SB3) or adam"""
    rms_alpha: float = 0.99
    """RMSprop smoothing constant"""
    optim_eps: float = 1e-5
    """ε of RMSprop / Adam (1e-5, larger than torch's default, keeps early steps from exploding)"""

    LIMITS = {"learning_rate": (0, None), "rms_alpha": (0, 1), "optim_eps": (0, None)}
    CHOICES = {"optimizer": ("rmsprop", "adam")}


def make_optimizer(args: RMSpropArgs, params: Any) -> torch.optim.Optimizer:
    """The optimizer ``args.optimizer`` names, over ``params``, with the flags above."""
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=args.learning_rate, eps=args.optim_eps)
    return torch.optim.RMSprop(params, lr=args.learning_rate, alpha=args.rms_alpha, eps=args.optim_eps)


@dataclass
class Progress:
    """Counters a checkpoint carries."""

    global_step: int = 0
    iteration: int = 0
    next_eval: int = 0
    best_eval: float = -math.inf
    best_eval_step: int = -1
    last_eval: float = math.nan
    last_eval_step: int = -1


def make_envs(args: PolicyArgs) -> gym.vector.VectorEnv:
    """Training envs: Box actions exposed as [-1, 1], optional observation/reward normalisation."""
    return rl_utils.make_vec_env(args.env_id, args.num_envs, args.seed, unit_actions=True, norm_obs=args.norm_obs,
                                 norm_reward=args.norm_reward, gamma=args.gamma)


def policy_spaces(args: PolicyArgs, envs: gym.vector.VectorEnv, algo: str) -> tuple[int, gym.Space]:
    """(observation size, action space) of an MLP policy for these envs; one-line errors for spaces it cannot
    take and for an unknown ``--activation``."""
    obs_dim = rl_utils.require_vector_obs(envs.single_observation_space, f"{algo} (MLP policy)")
    space = rl_utils.require_space(envs.single_action_space, (gym.spaces.Discrete, gym.spaces.Box), algo)
    if args.activation not in ("tanh", "relu"):
        raise rl_utils.UsageError(f"--activation must be tanh or relu, got {args.activation!r}")
    return obs_dim, space


def build_agent(args: PolicyArgs, envs: gym.vector.VectorEnv, device: torch.device, algo: str,
                critic: bool = True) -> ActorCritic:
    """The actor-critic for these envs; one-line errors for spaces an MLP policy cannot take."""
    obs_dim, space = policy_spaces(args, envs, algo)
    return ActorCritic(obs_dim, space, parse_hidden(args.hidden_sizes), args.activation, args.shared_trunk,
                       critic=critic, log_std_init=args.log_std_init).to(device)


def evaluate_agent(args: PolicyArgs, agent: ActorCritic, envs: gym.vector.VectorEnv, device: torch.device,
                   video_dir: Path, prefix: str = "eval",
                   seed_offset: int = rl_utils.EVAL_SEED_OFFSET) -> rl_utils.EvalResult:
    """Deterministic policy (argmax / Gaussian mean) on fresh envs, with the training envs' observation
    statistics, frozen. ``seed_offset``: the eval episodes (default) or the held-out ones (see rl_utils)."""
    env_fn = lambda i: rl_utils.make_env(  # noqa: E731
        args.env_id, i, unit_actions=True, training=False, capture_video=args.capture_video, video_dir=video_dir,
        video_prefix=prefix)
    return rl_utils.evaluate(env_fn, greedy_policy(agent, device), args.eval_episodes,
                             seed=args.seed + seed_offset,
                             obs_norm=rl_utils.find_wrapper(envs, rl_utils.NormalizeObservation))


def restore_for_eval(cls: type[PolicyArgs], ckpt: rl_utils.Checkpoint, algo: str, make_agent: Any = None,
                     device: torch.device | None = None, **overrides: Any
                     ) -> tuple[PolicyArgs, ActorCritic, gym.vector.VectorEnv, torch.device]:
    """A checkpoint's (args, agent, envs, device), ready to evaluate: its saved arguments (``overrides`` on top),
    its weights and its observation statistics. ``make_agent(args, envs, device)``, when given, builds the agent
    in place of :func:`build_agent`; without ``device`` the saved args choose it (and seed everything)."""
    saved = cls(**{**ckpt.args, "num_envs": 1, **overrides})
    device = device if device is not None else rl_utils.setup(saved)
    envs = make_envs(saved)
    agent = make_agent(saved, envs, device) if make_agent else build_agent(saved, envs, device, algo)
    rl_utils.load_state_into(agent, ckpt["agent"])
    rl_utils.set_env_state(envs, {"sub_envs": None, "wrappers": ckpt["envs"]["wrappers"]})  # statistics only
    return saved, agent, envs, device


def eval_only(cls: type[PolicyArgs], args: PolicyArgs, algo: str, make_agent: Any = None) -> None:
    """``--eval-only --checkpoint PATH``: rebuild the agent and the observation statistics, evaluate, print.
    ``make_agent(args, envs, device)``, when given, builds the agent in place of :func:`build_agent`."""
    if not args.checkpoint:
        raise rl_utils.UsageError("--eval-only needs --checkpoint PATH")
    ckpt = rl_utils.open_checkpoint(args.checkpoint, cls)
    saved, agent, envs, device = restore_for_eval(cls, ckpt, algo, make_agent, capture_video=args.capture_video,
                                                  eval_episodes=args.eval_episodes)
    result = evaluate_agent(saved, agent, envs, device, ckpt.run_dir / "videos")
    if args.capture_video:
        print(f"videos: {ckpt.run_dir / 'videos'}")
    print(f"eval return {result.returns.mean():.1f} ± {result.returns.std():.1f} over {len(result.returns)} "
          f"episodes ({saved.env_id}, checkpoint step {ckpt.step})")


@torch.no_grad()
def collect_rollout(agent: ActorCritic, envs: gym.vector.VectorEnv, buffer: rl_utils.RolloutBuffer, obs: Any,
                    progress: Progress, run: rl_utils.Run, device: torch.device) -> tuple[Any, torch.Tensor]:
    """Fill ``buffer`` with ``buffer.num_steps`` vector steps of the current policy, starting from ``obs``.
    Truncated episodes record V(real final obs) to bootstrap from. Returns (next obs, V(next obs)).

    An MLP ActorCritic acts in numpy (``policies.NumpyActing``: the same math, several times less overhead per
    step on a CPU); the rare V(final obs) at a truncation and the bootstrap value at the end use the torch
    network."""
    buffer.reset()
    policy = acting(agent, device)
    for _ in range(buffer.num_steps):
        action, logprob, value = policy.act(obs)
        next_obs, reward, terminated, truncated, infos = envs.step(action)
        final_values = rl_utils.values_of_final_obs(agent.value, next_obs, infos, terminated, truncated, device)
        buffer.add(obs, action, logprob, value, reward, terminated, truncated, final_values)
        obs = next_obs
        progress.global_step += envs.num_envs
        run.log_episodes(rl_utils.finished_episodes(infos), progress.global_step)
    return obs, agent.value(torch.as_tensor(obs, dtype=torch.float32, device=device))


class Evaluator:
    """Evaluates every ``eval_every`` env steps (checked after each update), keeps ``ckpt/best.pt``, logs
    ``eval/*`` and prints one line per evaluation."""

    def __init__(self, args: PolicyArgs, agent: ActorCritic, envs: gym.vector.VectorEnv, device: torch.device,
                 run: rl_utils.Run, progress: Progress, save: Any, make_agent: Any = None):
        self.args, self.agent, self.envs, self.device = args, agent, envs, device
        self.run, self.progress, self.save, self.make_agent = run, progress, save, make_agent

    def __call__(self) -> float:
        progress, step = self.progress, self.progress.global_step
        result = evaluate_agent(self.args, self.agent, self.envs, self.device, self.run.run_dir / "videos",
                                prefix=f"step{step}")
        mean = progress.last_eval = float(result.returns.mean())
        progress.last_eval_step = step
        self.run.log_dict(result.log_dict(), step)
        if mean >= progress.best_eval:
            progress.best_eval, progress.best_eval_step = mean, step
            self.save("best")
        print(f"step {step:>8d} | eval return {mean:8.1f} ± {result.returns.std():6.1f} | {self.run.elapsed:6.0f}s",
              flush=True)
        return mean

    def heldout_best(self, algo: str) -> float:
        """``ckpt/best.pt`` scored on held-out episodes (see ``rl_utils.HELDOUT_SEED_OFFSET``): its eval score
        chose it, so only fresh episodes say what it is worth. Logged as ``eval/best_heldout_return``."""
        ckpt = rl_utils.open_checkpoint(self.run.ckpt_dir / "best.pt", type(self.args))
        saved, agent, envs, device = restore_for_eval(type(self.args), ckpt, algo, self.make_agent, self.device,
                                                      capture_video=False)
        result = evaluate_agent(saved, agent, envs, device, self.run.run_dir, seed_offset=rl_utils.HELDOUT_SEED_OFFSET)
        envs.close()
        mean = float(result.returns.mean())
        self.run.log("eval/best_heldout_return", mean, self.progress.global_step)
        print(f"best.pt (step {ckpt.step}) on held-out episodes: {mean:.1f} ± {result.returns.std():.1f}", flush=True)
        return mean

    def due(self) -> bool:
        """True (and the next evaluation scheduled) when the step counter passed the next evaluation point."""
        progress, every = self.progress, self.args.eval_every
        if not every or progress.global_step < progress.next_eval:
            return False
        progress.next_eval += every * math.ceil((progress.global_step - progress.next_eval + 1) / every)
        return True

    def finish(self, algo: str) -> None:
        """Evaluate the final policy (unless just done), plot the curves, write summary.json, print the result."""
        progress, run, args = self.progress, self.run, self.args
        step = progress.global_step
        if progress.last_eval_step != step:
            self()  # the headline number always comes from an evaluation of the final policy
        heldout = self.heldout_best(algo)
        run.flush()  # the plot reads metrics.csv
        rl_utils.plot_curves([run.run_dir], run.run_dir / "learning_curve.png",
                             tags=("charts/episodic_return", "eval/return"), title=f"{algo} on {args.env_id}")
        run.write_summary(
            final_eval_return=progress.last_eval, best_eval_return=progress.best_eval,
            best_eval_step=progress.best_eval_step, best_heldout_return=heldout, env_steps=step,
            wall_time_s=round(run.elapsed, 1), sps=round(step / max(run.elapsed, 1e-9), 1), algo=algo.lower(),
            env_id=args.env_id, seed=args.seed,
        )
        run.close()
        print(f"final eval return {progress.last_eval:.1f} after {step} env steps ({run.elapsed:.0f}s) | "
              f"run folder: {run.run_dir} (TensorBoard logs, metrics.csv, learning_curve.png, ckpt/)")


class Session:
    """Everything an on-policy run holds between updates, built fresh or restored from ``--resume``: the device,
    envs, agent, optimizer, rollout storage, the current observation, counters, the run folder and the
    evaluator. Each train.py keeps its own update; this keeps the set-up and the end of a run in one place.

    ``make_agent(args, envs, device)``, when given, builds the agent in place of :func:`build_agent` (a network
    of the script's own); ``num_steps``, when given, is the rollout storage's length in place of
    ``args.num_steps`` (a script that collects whole episodes up to a cap)."""

    def __init__(self, args: PolicyArgs, ckpt: rl_utils.Checkpoint | None, algo: str,
                 make_optimizer: Any, critic: bool = True, make_agent: Any = None, num_steps: int | None = None):
        self.args, self.algo = args, algo
        self.device = rl_utils.setup(args)
        self.envs = make_envs(args)
        self.agent = (make_agent(args, self.envs, self.device) if make_agent
                      else build_agent(args, self.envs, self.device, algo, critic=critic))
        self.optimizer: torch.optim.Optimizer = make_optimizer(self.agent)
        self.buffer = rl_utils.RolloutBuffer(num_steps or args.num_steps, args.num_envs,
                                             self.envs.single_observation_space, self.envs.single_action_space,
                                             device=self.device)
        self.obs, _ = self.envs.reset(seed=args.seed)
        self.progress = Progress(next_eval=args.eval_every)
        if ckpt is not None:
            if rl_utils.Run.restore(ckpt, agent=self.agent, optimizer=self.optimizer, progress=self.progress,
                                    buffer=self.buffer, envs=self.envs):
                self.obs = ckpt["obs"]
            else:
                print("note: these envs cannot be saved mid-episode: the resumed run starts fresh episodes")
        self.run = rl_utils.Run(args, algo.lower(), resume=ckpt)
        self.evaluate = Evaluator(args, self.agent, self.envs, self.device, self.run, self.progress,
                                  self.checkpoint, make_agent)

    def checkpoint(self, name: str) -> Path:
        return self.run.save(name, self.progress.global_step, agent=self.agent, optimizer=self.optimizer,
                             progress=self.progress, buffer=self.buffer, envs=self.envs, obs=self.obs)

    def collect(self) -> torch.Tensor:
        """One rollout of the current policy into ``buffer``; returns V(observation after it)."""
        self.obs, last_values = collect_rollout(self.agent, self.envs, self.buffer, self.obs, self.progress,
                                                self.run, self.device)
        return last_values

    def after_update(self, batch_size: int) -> bool:
        """Periodic evaluation and checkpoints after an update; True when ``--target-return`` was reached."""
        step, every = self.progress.global_step, self.args.checkpoint_every
        if self.evaluate.due() and self.evaluate() >= self.args.target_return:  # before the checkpoint: it
            print(f"target return {self.args.target_return} reached at step {step}")  # saves the next eval step
            return True
        if every and step % every < batch_size:
            self.checkpoint(f"step_{step}")
            self.checkpoint("latest")
        return False

    def end(self, interrupted: bool) -> None:
        """Save ``latest.pt``; then either the resume hint (Ctrl-C) or the final evaluation, plot and summary."""
        latest = self.checkpoint("latest")
        if interrupted:
            self.run.close()
            print(f"interrupted at step {self.progress.global_step}; resume with: python {sys.argv[0]} "
                  f"--resume {latest}")
        else:
            self.evaluate.finish(self.algo)
        self.envs.close()

"""DIAYN, "Diversity is All You Need" (Eysenbach et al. 2018): skills without a reward, learned by SAC.

    python classic_rl/diayn/train.py                                  # Navigation2D-v0, 8 skills
    python classic_rl/diayn/train.py --env-id Pendulum-v1
    python classic_rl/diayn/train.py --env-id HalfCheetah-v5                # 30k steps: a short CPU budget
    python classic_rl/diayn/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt --capture-video

A skill z ~ p(z) = uniform over ``--num-skills`` is drawn at the start of every episode and held to its end; the
policy π(a | s, z) and the critics see the one-hot z beside the observation. A discriminator q_φ(z | s) learns
to tell the skill from the state it led to (cross-entropy), and SAC maximises the pseudo-reward
r = log q_φ(z | s') − log p(z) in place of the env's reward, which is never trained on (only reported). The
README explains why this maximises I(S; Z) + H[A | S] − I(A; Z | S).

Read top to bottom: arguments, skill conditioning, the discriminator and the pseudo-reward (what DIAYN is
about), the update (SAC's own, imported, on the relabelled batch), evaluation per skill, then the loop. Envs, the
replay buffer (with the skill as an extra field), checkpoints and resume come from rl_utils and
classic_rl/off_policy.py; the networks and SAC's losses from classic_rl/sac.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import off_policy, on_policy  # noqa: E402
from classic_rl.continuous import mlp  # noqa: E402
from classic_rl.diayn import envs as _nav_envs  # noqa: E402, F401  (registers Navigation2D-v0)
from classic_rl.policies import parse_hidden  # noqa: E402
from classic_rl.sac import train as sac  # noqa: E402
from classic_rl.sac.model import QEnsemble, SquashedGaussianActor  # noqa: E402


@dataclass
class Args(sac.Args):
    """Learn --num-skills skills without a reward (DIAYN): SAC on the pseudo-reward log q(z|s') − log p(z)."""

    env_id: str = "Navigation2D-v0"
    """gymnasium environment id (Box actions); Navigation2D-v0 is classic_rl/diayn/envs.py's 2-D point"""
    num_skills: int = 8
    """number of skills K; p(z) is uniform over them (fixed, as in the paper)"""
    total_timesteps: int = 20_000
    """environment steps to train for"""
    learning_rate: float = 3e-4
    """Adam learning rate of the actor and the critics (the paper's, as SAC's)"""
    discriminator_lr: float = 3e-4
    """Adam learning rate of the discriminator q_φ(z|s)"""
    alpha: float = 0.1
    """temperature α, the weight of the policy entropy H[A|S,Z] (the paper's fixed 0.1)"""
    autotune: bool = False
    """learn α toward the target entropy as SAC does (off: the paper keeps α fixed)"""
    hidden_sizes: str = "256,256"
    """comma-separated hidden layer sizes of the actor, the critics and the discriminator"""
    eval_every: int = 2_000
    """env steps between evaluations of every skill (0 = only at the end)"""
    eval_episodes: int = 2
    """episodes *per skill* in each evaluation (deterministic policy: tanh of the mean action)"""
    target_return: float = math.inf
    """stop early once an evaluation's discriminator accuracy reaches this (inf = never)"""

    LIMITS = {"num_skills": (2, None), "discriminator_lr": (0, None)}


# Per-env defaults, applied unless the flag is typed.
PRESETS: dict[str, dict[str, object]] = {
    "Pendulum-v1": dict(total_timesteps=20_000, eval_every=5_000),
    "MountainCarContinuous-v0": dict(total_timesteps=20_000, eval_every=5_000),
    # A short CPU budget (the paper trains for millions of steps); the SAC preset's 5k random steps first.
    "HalfCheetah-v5": dict(total_timesteps=30_000, learning_starts=5_000, eval_every=10_000, eval_episodes=1),
    "Hopper-v5": dict(total_timesteps=30_000, learning_starts=5_000, eval_every=10_000, eval_episodes=1),
}


# ---------------------------------------------------------------------------------------------------------------
# Skill conditioning
# ---------------------------------------------------------------------------------------------------------------
def skill_input(obs: torch.Tensor, skills: torch.Tensor, num_skills: int) -> torch.Tensor:
    """The policy's and the critics' input: [s, one_hot(z)] ([B, obs_dim + K])."""
    return torch.cat([obs, F.one_hot(skills.long(), num_skills).to(obs.dtype)], dim=-1)


def resample_skills(skills: np.ndarray, ended: np.ndarray, rng: np.random.Generator, num_skills: int) -> None:
    """In place: a fresh z ~ uniform(K) for every env whose episode just ended (terminated *or* truncated). Under
    gymnasium's SAME_STEP autoreset the observation returned with the end is already the next episode's first,
    so the new skill starts exactly with its new episode; the transition that ended was stored with the old z."""
    n = int(ended.sum())
    if n:
        skills[ended] = rng.integers(num_skills, size=n)


# ---------------------------------------------------------------------------------------------------------------
# The discriminator and the pseudo-reward: what DIAYN adds to SAC
# ---------------------------------------------------------------------------------------------------------------
class Discriminator(nn.Module):
    """q_φ(z | s): an MLP from the state to K logits."""

    def __init__(self, obs_dim: int, num_skills: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(obs_dim, hidden, num_skills)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states)  # [B, K] logits


def pseudo_reward(discriminator: Discriminator, states: torch.Tensor, skills: torch.Tensor,
                  num_skills: int) -> torch.Tensor:
    """r_z(s) = log q_φ(z|s) − log p(z), p(z) = 1/K: between −∞ and log K (= log K when q is sure of the right
    skill, 0 when it is at chance, negative when the state looks like another skill's). [B], no gradient."""
    with torch.no_grad():
        log_q = F.log_softmax(discriminator(states), dim=-1)  # [B, K]
        return log_q.gather(1, skills.long().view(-1, 1)).squeeze(1) + math.log(num_skills)  # − log(1/K)


def discriminator_loss(discriminator: Discriminator, states: torch.Tensor, skills: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """−E[log q_φ(z|s)] over replayed (s, z): the cross-entropy that tightens the variational bound on I(S; Z).
    Returns (loss, the batch's accuracy: argmax q_φ(·|s) = z, detached)."""
    logits = discriminator(states)
    loss = F.cross_entropy(logits, skills.long())
    return loss, (logits.argmax(-1) == skills.long()).float().mean().detach()


def diayn_batch(batch: rl_utils.ReplayBatch, discriminator: Discriminator, num_skills: int) -> rl_utils.ReplayBatch:
    """The replayed batch as SAC's losses take it: observations [s, one_hot(z)] now and next (z is constant within
    an episode, so the next state's skill is the same), and the env's reward *replaced* by the pseudo-reward of
    the state the action led to, log q_φ(z|s') − log p(z). Discounts, terminations and weights are kept."""
    z = batch.extras["skill"]
    return batch._replace(obs=skill_input(batch.obs, z, num_skills),
                          next_obs=skill_input(batch.next_obs, z, num_skills),
                          rewards=pseudo_reward(discriminator, batch.next_obs, z, num_skills))


def update(args: Args, actor: SquashedGaussianActor, learner: dict, batch: rl_utils.ReplayBatch,
           target_entropy: float) -> dict[str, torch.Tensor]:
    """One DIAYN gradient step: SAC's update (critics, actor, α, Polyak) on the pseudo-reward batch, then one
    discriminator step on the same replayed (s', z)."""
    disc = learner["discriminator"]
    relabelled = diayn_batch(batch, disc, args.num_skills)
    stats = sac.update(args, actor, learner, relabelled, target_entropy)
    loss_d, acc = discriminator_loss(disc, batch.next_obs, batch.extras["skill"])
    learner["discriminator_optimizer"].zero_grad(set_to_none=True)
    loss_d.backward()
    learner["discriminator_optimizer"].step()
    stats.update(discriminator_loss=loss_d.detach(), discriminator_accuracy=acc,
                 pseudo_reward=relabelled.rewards.mean())
    return stats


# ---------------------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------------------
def spaces(args: Args, envs: gym.vector.VectorEnv) -> tuple[int, int]:
    """(observation size, action size); one-line errors for a non-Box action or non-vector observation."""
    if not isinstance(envs.single_action_space, gym.spaces.Box):
        raise rl_utils.UsageError(
            f"DIAYN (on SAC) needs continuous (Box) actions, but {args.env_id} has {envs.single_action_space}: "
            "try Navigation2D-v0, Pendulum-v1, MountainCarContinuous-v0 or HalfCheetah-v5")
    obs_dim = rl_utils.require_vector_obs(envs.single_observation_space, "DIAYN (MLP)")
    return obs_dim, int(np.prod(envs.single_action_space.shape))


def build_actor(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> SquashedGaussianActor:
    """π(a | s, z): SAC's tanh-Gaussian actor on [s, one_hot(z)]."""
    obs_dim, act_dim = spaces(args, envs)
    return SquashedGaussianActor(obs_dim + args.num_skills, act_dim, parse_hidden(args.hidden_sizes)).to(device)


def build_discriminator(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> Discriminator:
    """q_φ(z|s) on the observation alone (no skill input, of course), as wide as the actor and the critics."""
    return Discriminator(spaces(args, envs)[0], args.num_skills, parse_hidden(args.hidden_sizes)).to(device)


def build_learner(args: Args, envs: gym.vector.VectorEnv, device: torch.device,
                  actor: SquashedGaussianActor) -> dict[str, object]:
    """SAC's learner (twin critics Q(s, z, a), target copy, α, optimizers) plus the discriminator q_φ(z|s)."""
    obs_dim, act_dim = spaces(args, envs)
    hidden = parse_hidden(args.hidden_sizes)
    q = QEnsemble(obs_dim + args.num_skills, act_dim, hidden, n=2).to(device)
    learner = sac.learner_around(args, q, actor, device)
    disc = learner["discriminator"] = build_discriminator(args, envs, device)
    learner["discriminator_optimizer"] = torch.optim.Adam(disc.parameters(), lr=args.discriminator_lr)
    return learner


# ---------------------------------------------------------------------------------------------------------------
# Evaluation: every skill's deterministic policy, and how well the discriminator tells them apart
# ---------------------------------------------------------------------------------------------------------------
class SkillEval(NamedTuple):
    accuracy: float  # fraction of all visited states s' with argmax q(·|s') = the skill that visited them
    skill_accuracy: np.ndarray  # [K] the same per skill
    returns: np.ndarray  # [K, episodes] the env's own return (reported only, never trained on)
    paths: list[list[np.ndarray]]  # per skill, per episode: the observations [length + 1, obs_dim]


@torch.no_grad()
def evaluate_skills(args: Args, actor: SquashedGaussianActor, discriminator: Discriminator, device: torch.device,
                    seed_offset: int = rl_utils.EVAL_SEED_OFFSET, video_dir: Path | None = None,
                    prefix: str = "eval") -> SkillEval:
    """For each skill z: ``--eval-episodes`` episodes of a = tanh(μ(s, z)) on fresh envs seeded
    ``seed + seed_offset + i`` (the same start states for every skill); the discriminator classifies every state
    reached. With ``--capture-video`` each skill's first episode is recorded as ``<prefix>-skill<z>``."""
    k_all, n = args.num_skills, args.eval_episodes
    correct, total = np.zeros(k_all), np.zeros(k_all)
    returns, paths = np.zeros((k_all, n)), []
    for k in range(k_all):
        envs = gym.vector.SyncVectorEnv(
            [rl_utils.make_env(args.env_id, i, unit_actions=True, training=False, capture_video=args.capture_video,
                               video_dir=video_dir, video_prefix=f"{prefix}-skill{k}") for i in range(n)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        obs, _ = envs.reset(seed=args.seed + seed_offset)
        skill = torch.full((n,), k, dtype=torch.long, device=device)
        done = np.zeros(n, dtype=bool)
        trail = [[o] for o in obs]
        while not done.all():
            x = torch.as_tensor(obs, dtype=torch.float32, device=device)
            actions = actor.deterministic(skill_input(x, skill, k_all)).cpu().numpy()
            obs, reward, terminated, truncated, infos = envs.step(actions)
            reached = rl_utils.real_next_obs(obs, infos)
            live = ~done
            logits = discriminator(torch.as_tensor(reached[live], dtype=torch.float32, device=device))
            correct[k] += int((logits.argmax(-1) == k).sum())
            total[k] += int(live.sum())
            returns[k] += np.where(live, reward, 0.0)
            for i in np.flatnonzero(live):
                trail[i].append(reached[i])
            done |= terminated | truncated
        envs.close()
        paths.append([np.asarray(t, dtype=np.float32) for t in trail])
    return SkillEval(float(correct.sum() / total.sum()), correct / total, returns, paths)


# Which two observation coordinates the skills figure shows, per env (default: the first two).
PLOT_AXES: dict[str, tuple[str, str]] = {
    "Navigation2D-v0": ("x", "y"),
    "Pendulum-v1": ("angle θ (rad)", "angular velocity (rad/s)"),
    "MountainCarContinuous-v0": ("position", "velocity"),
    "HalfCheetah-v5": ("torso angle (rad)", "forward velocity (m/s)"),
    "Hopper-v5": ("torso height (m)", "forward velocity (m/s)"),
}


def plot_coordinates(env_id: str, path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two coordinates of ``PLOT_AXES`` for a path of observations [T, obs_dim]."""
    if env_id == "Pendulum-v1":  # (cos θ, sin θ, θ̇): the angle itself reads better, the line cut where it wraps
        theta, omega = np.arctan2(path[:, 1], path[:, 0]), path[:, 2].astype(np.float64)
        cuts = np.flatnonzero(np.abs(np.diff(theta)) > np.pi) + 1
        return np.insert(theta, cuts, np.nan), np.insert(omega, cuts, np.nan)
    if env_id == "HalfCheetah-v5":  # qpos[1:] (8: rootz, rooty, 6 joints) then qvel (9: rootx velocity first)
        return path[:, 1], path[:, 8]
    if env_id == "Hopper-v5":  # qpos[1:] (5: rootz, rooty, 3 joints) then qvel (6: rootx velocity first)
        return path[:, 0], path[:, 5]
    return path[:, 0], path[:, 1] if path.shape[1] > 1 else np.arange(len(path))


def plot_skills(result: SkillEval, env_id: str, out: Path, title: str = "") -> Path:
    """Every skill's evaluation episodes in one colour each (a dot where each episode ends), with its
    discriminator accuracy and env return in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    colours = plt.get_cmap("tab10" if len(result.paths) <= 10 else "tab20")
    for k, episodes in enumerate(result.paths):
        colour = colours(k % colours.N)
        for j, path in enumerate(episodes):
            x, y = plot_coordinates(env_id, path)
            label = (f"skill {k}: acc {result.skill_accuracy[k]:.2f}, return {result.returns[k].mean():.0f}"
                     if j == 0 else None)
            ax.plot(x, y, "-", color=colour, alpha=0.8, lw=1.2, label=label)
            ax.plot(x[-1:], y[-1:], "o", color=colour, ms=5)
    if env_id == "Navigation2D-v0":
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.plot([0.7], [0.7], "k*", ms=12, label="env reward's goal (not trained on)")
    xlabel, ylabel = PLOT_AXES.get(env_id, ("observation[0]", "observation[1]"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"DIAYN skills on {env_id}: discriminator accuracy {result.accuracy:.2f}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


class SkillEvaluator:
    """The off-policy Session's evaluator for DIAYN (same interface as ``on_policy.Evaluator``): evaluates every
    skill each ``eval_every`` steps, logs ``eval/discriminator_accuracy`` (what ``best.pt`` is chosen by and
    ``--target-return`` compares to), ``eval/return`` and per skill ``eval/return_skill<z>``,
    ``eval/accuracy_skill<z>``."""

    due = on_policy.Evaluator.due

    def __init__(self, session: off_policy.Session):
        self.s, self.args, self.progress, self.run = session, session.args, session.progress, session.run
        self.last: SkillEval | None = None

    def __call__(self) -> float:
        s, step = self.s, self.progress.global_step
        result = self.last = evaluate_skills(self.args, s.actor, s.learner["discriminator"], s.device,
                                             video_dir=self.run.run_dir / "videos", prefix=f"step{step}")
        self.progress.last_eval, self.progress.last_eval_step = result.accuracy, step
        self.run.log_dict({"eval/discriminator_accuracy": result.accuracy, "eval/return": result.returns.mean(),
                           **{f"eval/return_skill{k}": r.mean() for k, r in enumerate(result.returns)},
                           **{f"eval/accuracy_skill{k}": a for k, a in enumerate(result.skill_accuracy)}}, step)
        if result.accuracy >= self.progress.best_eval:
            self.progress.best_eval, self.progress.best_eval_step = result.accuracy, step
            s.checkpoint("best")
        chance = 1 / self.args.num_skills
        print(f"step {step:>8d} | discriminator accuracy {result.accuracy:5.3f} (chance {chance:.3f}) | "
              f"env return per skill {np.array2string(result.returns.mean(1), precision=0)} | "
              f"{self.run.elapsed:6.0f}s", flush=True)
        return result.accuracy

    def heldout_best(self) -> SkillEval:
        """``best.pt`` (chosen by its accuracy on the eval episodes) on held-out episodes."""
        ckpt = rl_utils.open_checkpoint(self.run.ckpt_dir / "best.pt", Args)
        actor = build_actor(self.args, self.s.envs, self.s.device)
        disc = build_discriminator(self.args, self.s.envs, self.s.device)
        rl_utils.load_state_into(actor, ckpt["agent"])
        rl_utils.load_state_into(disc, ckpt["discriminator"])
        result = evaluate_skills(_no_video(self.args), actor, disc,
                                 self.s.device, seed_offset=rl_utils.HELDOUT_SEED_OFFSET)
        self.run.log("eval/best_heldout_discriminator_accuracy", result.accuracy, self.progress.global_step)
        print(f"best.pt (step {ckpt.step}) on held-out episodes: discriminator accuracy {result.accuracy:.3f}",
              flush=True)
        return result

    def finish(self, algo: str) -> None:
        """Evaluate the final policy (unless just done), score best.pt on held-out episodes, plot the accuracy
        curve and the skills, write summary.json."""
        progress, run, args = self.progress, self.run, self.args
        step = progress.global_step
        if self.last is None or progress.last_eval_step != step:
            self()  # the headline number always comes from an evaluation of the final policy
        final, heldout = self.last, self.heldout_best()
        run.flush()  # the plot reads metrics.csv
        rl_utils.plot_curves([run.run_dir], run.run_dir / "learning_curve.png",
                             tags=("eval/discriminator_accuracy", "losses/discriminator_accuracy"),
                             title=f"DIAYN on {args.env_id}, {args.num_skills} skills (chance "
                                   f"{1 / args.num_skills:.3f})")
        plot_skills(final, args.env_id, run.run_dir / "skills.png")
        run.write_summary(
            final_discriminator_accuracy=final.accuracy, final_eval_discriminator_accuracy=final.accuracy,
            best_eval_discriminator_accuracy=progress.best_eval, best_eval_step=progress.best_eval_step,
            best_heldout_discriminator_accuracy=heldout.accuracy,
            final_eval_return=float(final.returns.mean()), best_heldout_return=float(heldout.returns.mean()),
            final_eval_return_per_skill=[float(r.mean()) for r in final.returns],
            final_accuracy_per_skill=[float(a) for a in final.skill_accuracy],
            num_skills=args.num_skills, env_steps=step, wall_time_s=round(run.elapsed, 1),
            sps=round(step / max(run.elapsed, 1e-9), 1), algo=algo.lower(), env_id=args.env_id, seed=args.seed)
        run.close()
        print(f"final discriminator accuracy {final.accuracy:.3f} ({args.num_skills} skills, chance "
              f"{1 / args.num_skills:.3f}); env return per skill {np.array2string(final.returns.mean(1), precision=1)} "
              f"after {step} env steps ({run.elapsed:.0f}s) | run folder: {run.run_dir} (skills.png, "
              "learning_curve.png, metrics.csv, ckpt/)")


def filmstrip(videos: list[Path], out: Path, frames: int = 6, width: int = 160) -> Path:
    """One row per skill video, ``frames`` frames evenly spaced over its episode, each ``width`` pixels wide: the
    skills side by side in one picture (a README can show it; an .mp4 it cannot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from moviepy import VideoFileClip

    fig, axes = plt.subplots(len(videos), frames, figsize=(frames * width / 100, len(videos) * width / 100),
                             squeeze=False)
    for row, video in zip(axes, videos):
        with VideoFileClip(str(video)) as clip:
            times = np.linspace(0, max(clip.duration - 1 / clip.fps, 0), frames)
            for ax, t in zip(row, times):
                ax.imshow(clip.get_frame(t))
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_xlabel(f"t = {t * clip.fps:.0f}", fontsize=6)
        row[0].set_ylabel(video.stem.split("-")[-3], fontsize=8)  # "skill<k>"
    fig.tight_layout(pad=0.2)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _no_video(args: Args) -> Args:
    import dataclasses

    return dataclasses.replace(args, capture_video=False)


def eval_only(args: Args) -> None:
    """``--eval-only --checkpoint PATH``: every skill of the saved policy, its discriminator accuracy and env
    return; ``--capture-video`` records one episode per skill into <run>/videos; the figure goes to
    <run>/skills_eval.png."""
    if not args.checkpoint:
        raise rl_utils.UsageError("--eval-only needs --checkpoint PATH")
    ckpt = rl_utils.open_checkpoint(args.checkpoint, Args)
    saved = Args(**{**ckpt.args, "num_envs": 1, "capture_video": args.capture_video,
                    "eval_episodes": args.eval_episodes})
    device = rl_utils.setup(saved)
    envs = on_policy.make_envs(saved)
    actor = build_actor(saved, envs, device)
    disc = build_discriminator(saved, envs, device)
    rl_utils.load_state_into(actor, ckpt["agent"])
    rl_utils.load_state_into(disc, ckpt["discriminator"])
    envs.close()
    result = evaluate_skills(saved, actor, disc, device, video_dir=ckpt.run_dir / "videos", prefix="eval-only")
    figure = plot_skills(result, saved.env_id, ckpt.run_dir / "skills_eval.png")
    if args.capture_video:
        videos = [ckpt.run_dir / "videos" / f"eval-only-skill{k}-episode-0.mp4" for k in range(saved.num_skills)]
        strip = filmstrip(videos, ckpt.run_dir / "skills_filmstrip.png")
        print(f"videos: {ckpt.run_dir / 'videos'} (one per skill); frames of each: {strip}")
    print(f"discriminator accuracy {result.accuracy:.3f} over {saved.num_skills} skills x {saved.eval_episodes} "
          f"episodes; env return per skill {np.array2string(result.returns.mean(1), precision=1)} "
          f"({saved.env_id}, checkpoint step {ckpt.step}); figure: {figure}")


# ---------------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------------
def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS)
    if args.norm_obs or args.norm_reward:
        raise rl_utils.UsageError("DIAYN does not normalise: --norm-reward would scale an env reward it never "
                                  "trains on, and --norm-obs would move the discriminator's input under it")
    if args.eval_only:
        return eval_only(args)
    s = off_policy.Session(args, ckpt, "DIAYN", build_actor, build_learner,
                           buffer_extras={"skill": gym.spaces.Discrete(args.num_skills)})
    s.evaluate = SkillEvaluator(s)
    actor, progress, k = s.actor, s.progress, args.num_skills
    skills = s.rng.integers(k, size=args.num_envs) if ckpt is None else np.asarray(ckpt["skills"]).copy()
    s.extra_state["skills"] = skills  # checkpointed as is: resampled in place below
    target_entropy = -args.target_entropy_scale * float(np.prod(s.envs.single_action_space.shape))  # −|A|
    s.start_progress()
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.global_step < args.total_timesteps and not interrupt.requested:
            if progress.global_step < args.learning_starts:
                actions = s.random_actions()
            else:
                with torch.no_grad():
                    obs = torch.as_tensor(s.obs, dtype=torch.float32, device=s.device)
                    z = torch.as_tensor(skills, device=s.device)
                    actions = actor.explore(skill_input(obs, z, k)).cpu().numpy()
            ended = s.step_envs(actions, skill=skills)
            resample_skills(skills, ended, s.rng, k)
            stats = {}
            if progress.global_step > args.learning_starts:
                for _ in range(args.num_envs):  # one gradient step per env step (update-to-data ratio 1)
                    stats = update(args, actor, s.learner, s.buffer.sample(args.batch_size), target_entropy)
            s.log_update(stats, args.log_every)
            if s.after_step():
                break
    s.end(interrupt.requested)


if __name__ == "__main__":
    rl_utils.run_main(main)

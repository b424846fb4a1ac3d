"""One-step Actor-Critic: policy gradient weighted by the TD error δ = r + γ V(s') − V(s), Discrete and Box.

    python classic_rl/actor_critic/train.py                           # CartPole-v1, V critic, separate trunks
    python classic_rl/actor_critic/train.py --shared-trunk            # actor and critic share hidden layers
    python classic_rl/actor_critic/train.py --critic q --ent-coef 0.01  # Q(s,a) critic, Sarsa target
    python classic_rl/actor_critic/train.py --env-id Pendulum-v1 --norm-obs      # Gaussian policy (untuned)
    python classic_rl/actor_critic/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt --capture-video

Read top to bottom: arguments, the loss, then the loop: every ``num_steps`` steps of the ``num_envs`` envs
(1 = after every step), one gradient step on those transitions, each with its own one-step target. Episodes run
on across updates (autoreset); time-limit truncations bootstrap from V(final obs), terminations from 0.
Everything generic (envs, rollout storage, targets, logging, checkpoints) comes from rl_utils.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl.actor_critic.model import ActorCritic, QActorCritic, greedy_policy, parse_hidden  # noqa: E402


@dataclass
class Args(rl_utils.CommonArgs):
    """Train a one-step Actor-Critic (TD-error advantage, V or Q critic) on a Discrete or Box env."""

    total_timesteps: int = 300_000
    """environment steps to train for (summed over all parallel envs)"""
    num_envs: int = 8
    """parallel environments: each update averages over their transitions"""
    num_steps: int = 4
    """steps per env between updates (1 = update after every step); each transition keeps its one-step target"""
    learning_rate: float = 1e-3
    """Adam learning rate (actor and critic)"""
    anneal_lr: bool = False
    """decay the learning rate linearly to 0 over the run"""
    gamma: float = 0.99
    """discount factor"""
    critic: str = "v"
    """v: state-value critic, advantage δ = r + γV(s') − V(s); q: action-value critic Q(s,a) learned with the
    Sarsa target r + γ Q(s',a'), a' ~ π, and the actor weighted by Q(s,a) − E_π Q(s,·)"""
    shared_trunk: bool = False
    """actor and critic share their hidden layers (--critic v only)"""
    norm_adv: bool = True
    """standardise the advantages over each update's batch"""
    ent_coef: float = 0.0
    """entropy bonus coefficient (exploration)"""
    vf_coef: float = 0.5
    """critic loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping (0 = off)"""
    hidden_sizes: str = "64,64"
    """comma-separated hidden layer sizes of the actor and critic MLPs"""
    activation: str = "tanh"
    """tanh or relu"""
    log_std_init: float = 0.0
    """initial log σ of the Gaussian policy (Box actions)"""
    norm_obs: bool = False
    """normalise observations with running statistics (saved in every checkpoint, frozen in evaluation)"""
    norm_reward: bool = False
    """scale rewards by the running std of the discounted return (training only; evaluation reports raw)"""
    eval_every: int = 10_000
    """env steps between deterministic evaluations (checked after each update; 0 = only at the end)"""

    LIMITS = {"num_steps": (1, None), "learning_rate": (0, None), "gamma": (0, 1), "ent_coef": (0, None),
              "vf_coef": (0, None), "max_grad_norm": (0, None)}


# Tuned defaults per env, applied unless the flag is typed. Empty for now: the defaults are tuned for CartPole-v1;
# Box envs (Pendulum-v1) run end to end (tested) but no setting for them has been measured to learn yet.
PRESETS: dict[str, dict[str, object]] = {}


def one_step_targets(buffer: rl_utils.RolloutBuffer, last_values: torch.Tensor, gamma: float) -> None:
    """Fill ``buffer.returns`` with the one-step TD targets y_t = r_t + γ V(s'_t) and ``buffer.advantages`` with
    the TD errors δ_t = y_t − V(s_t), where V(s'_t) is the next row's value inside an episode, V(final obs) where
    a time limit truncated it, 0 where it terminated, ``last_values`` after the last row. This is GAE with λ = 0:
    nothing is summed across steps. With a Q critic, "V" is Q(s, a) and V(s') is Q(s', a'), a' ~ π (Sarsa)."""
    buffer.compute_advantages(last_values, gamma, lam=0.0)


def actor_critic_loss(
    logprob: torch.Tensor,
    entropy: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    targets: torch.Tensor,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The one-step actor-critic objective (all inputs [B]); returns (loss, diagnostics).

    actor:  policy_loss = −mean(A · log π(a|s)), A = δ = r + γ V(s') − V(s) (or Q(s,a) − b(s)), a constant here
    critic: value_loss = ½ mean((V(s) − y)²), y = r + γ V(s') held fixed (semi-gradient TD: the target is not
            differentiated, only the prediction is moved towards it)
    loss = policy_loss + c_V value_loss − c_H mean H[π(·|s)]."""
    policy_loss = -(advantages.detach() * logprob).mean()
    value_loss = 0.5 * (values - targets.detach()).pow(2).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy_mean
    stats = {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(), "entropy": entropy_mean.detach()}
    return loss, stats


@dataclass
class Progress:
    """Counters a checkpoint carries."""

    global_step: int = 0
    iteration: int = 0
    next_eval: int = 0
    best_eval: float = -math.inf
    last_eval: float = math.nan
    last_eval_step: int = -1


# Evaluation episodes use seeds far from the training envs' (seed, seed+1, ...) so they are never the same.
EVAL_SEED_OFFSET = 100_000


def make_envs(args: Args) -> gym.vector.VectorEnv:
    return rl_utils.make_vec_env(args.env_id, args.num_envs, args.seed, unit_actions=True, norm_obs=args.norm_obs,
                                 norm_reward=args.norm_reward, gamma=args.gamma)


def build(args: Args, envs: gym.vector.VectorEnv, device: torch.device) -> ActorCritic | QActorCritic:
    obs_dim = rl_utils.require_vector_obs(envs.single_observation_space, "Actor-Critic (MLP policy)")
    space = rl_utils.require_space(envs.single_action_space, (gym.spaces.Discrete, gym.spaces.Box), "Actor-Critic")
    if args.activation not in ("tanh", "relu"):
        raise rl_utils.UsageError(f"--activation must be tanh or relu, got {args.activation!r}")
    if args.critic not in ("v", "q"):
        raise rl_utils.UsageError(f"--critic must be v or q, got {args.critic!r}")
    hidden = parse_hidden(args.hidden_sizes)
    if args.critic == "q":
        if args.shared_trunk:
            raise rl_utils.UsageError("--shared-trunk needs --critic v (the Q critic has its own network)")
        return QActorCritic(obs_dim, space, hidden, args.activation, args.log_std_init).to(device)
    return ActorCritic(obs_dim, space, hidden, args.activation, args.shared_trunk,
                       log_std_init=args.log_std_init).to(device)


def algo_name(args: Args) -> str:
    return "actor_critic" + ("_q" if args.critic == "q" else "") + ("_shared" if args.shared_trunk else "")


def evaluate(args: Args, agent: torch.nn.Module, envs: gym.vector.VectorEnv, device: torch.device, video_dir: Path,
             prefix: str = "eval") -> rl_utils.EvalResult:
    """Deterministic policy (argmax / Gaussian mean) on fresh envs, observation statistics frozen."""
    env_fn = lambda i: rl_utils.make_env(  # noqa: E731
        args.env_id, i, unit_actions=True, training=False, capture_video=args.capture_video, video_dir=video_dir,
        video_prefix=prefix)
    return rl_utils.evaluate(env_fn, greedy_policy(agent, device), args.eval_episodes,
                             seed=args.seed + EVAL_SEED_OFFSET,
                             obs_norm=rl_utils.find_wrapper(envs, rl_utils.NormalizeObservation))


def eval_only(args: Args) -> None:
    if not args.checkpoint:
        raise rl_utils.UsageError("--eval-only needs --checkpoint PATH")
    ckpt = rl_utils.open_checkpoint(args.checkpoint, Args)
    saved = Args(**{**ckpt.args, "capture_video": args.capture_video, "eval_episodes": args.eval_episodes,
                    "num_envs": 1})
    device = rl_utils.setup(saved)
    envs = make_envs(saved)
    agent = build(saved, envs, device)
    rl_utils.load_state_into(agent, ckpt["agent"])
    rl_utils.set_env_state(envs, {"sub_envs": None, "wrappers": ckpt["envs"]["wrappers"]})  # statistics only
    result = evaluate(saved, agent, envs, device, ckpt.run_dir / "videos")
    if args.capture_video:
        print(f"videos: {ckpt.run_dir / 'videos'}")
    print(f"eval return {result.returns.mean():.1f} ± {result.returns.std():.1f} over {len(result.returns)} "
          f"episodes ({saved.env_id}, checkpoint step {ckpt.step})")


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS)
    if args.eval_only:
        return eval_only(args)
    batch_size = args.num_steps * args.num_envs
    num_iterations = max(args.total_timesteps // batch_size, 1)
    device = rl_utils.setup(args)

    envs = make_envs(args)
    agent = build(args, envs, device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate)
    buffer = rl_utils.RolloutBuffer(args.num_steps, args.num_envs, envs.single_observation_space,
                                    envs.single_action_space, device=device)
    obs, _ = envs.reset(seed=args.seed)
    progress = Progress(next_eval=args.eval_every)
    if ckpt is not None:
        if rl_utils.Run.restore(ckpt, agent=agent, optimizer=optimizer, progress=progress, buffer=buffer,
                                envs=envs):
            obs = ckpt["obs"]
        else:
            print("note: these envs cannot be saved mid-episode: the resumed run starts fresh episodes")
    run = rl_utils.Run(args, algo_name(args), resume=ckpt)

    def checkpoint(name: str) -> Path:
        return run.save(name, progress.global_step, agent=agent, optimizer=optimizer, progress=progress,
                        buffer=buffer, envs=envs, obs=obs)

    def run_eval() -> float:
        step = progress.global_step
        result = evaluate(args, agent, envs, device, run.run_dir / "videos", prefix=f"step{step}")
        mean = progress.last_eval = float(result.returns.mean())
        progress.last_eval_step = step
        run.log_dict(result.log_dict(), step)
        if mean >= progress.best_eval:
            progress.best_eval = mean
            checkpoint("best")
        print(f"step {step:>8d} | eval return {mean:8.1f} ± {result.returns.std():6.1f} | {run.elapsed:6.0f}s",
              flush=True)
        return mean

    run.progress(num_iterations * batch_size, progress.global_step)
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.iteration < num_iterations and not interrupt.requested:
            frac = 1.0 - progress.iteration / num_iterations
            optimizer.param_groups[0]["lr"] = args.learning_rate * (frac if args.anneal_lr else 1.0)

            # ---- num_steps steps of every env with the current policy
            buffer.reset()
            with torch.no_grad():
                for _ in range(args.num_steps):
                    obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
                    action, logprob, value = agent.act(obs_t)
                    next_obs, reward, terminated, truncated, infos = envs.step(action.cpu().numpy())
                    final_values = rl_utils.values_of_final_obs(agent.value, next_obs, infos, terminated,
                                                                truncated, device)
                    buffer.add(obs_t, action, logprob, value, reward, terminated, truncated, final_values)
                    obs = next_obs
                    progress.global_step += args.num_envs
                    run.log_episodes(rl_utils.finished_episodes(infos), progress.global_step)
                last_values = agent.value(torch.as_tensor(obs, dtype=torch.float32, device=device))
            one_step_targets(buffer, last_values, args.gamma)

            # ---- one gradient step: actor on the advantages, critic towards the one-step targets
            batch = buffer.all()
            logprob, entropy, values = agent.evaluate_actions(batch.obs, batch.actions)
            if args.critic == "q":  # Q(s,a) − b(s); the data was collected by these same parameters
                adv = batch.values - agent.baseline(batch.obs)
            else:
                adv = batch.advantages
            if args.norm_adv and len(adv) > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            loss, stats = actor_critic_loss(logprob, entropy, adv, values, batch.returns, args.vf_coef, args.ent_coef)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()
            progress.iteration += 1

            step = progress.global_step
            if progress.iteration == 1 or step // 1000 > (step - batch_size) // 1000:  # ~every 1000 steps
                run.log_dict({f"losses/{k}": float(v) for k, v in stats.items()}, step)
                run.log_dict({"charts/learning_rate": optimizer.param_groups[0]["lr"],
                              "charts/SPS": step / max(run.elapsed, 1e-9)}, step)
                run.update_progress(step - run.bar.n if run.bar is not None else 0, step,
                                    step / max(run.elapsed, 1e-9))
            if args.eval_every and step >= progress.next_eval:
                progress.next_eval += args.eval_every * math.ceil((step - progress.next_eval + 1) / args.eval_every)
                if run_eval() >= args.target_return:
                    print(f"target return {args.target_return} reached at step {step}")
                    break
            if args.checkpoint_every and step % args.checkpoint_every < batch_size:
                checkpoint(f"step_{step}")
                checkpoint("latest")

    step = progress.global_step
    latest = checkpoint("latest")
    if interrupt.requested:
        run.close()
        print(f"interrupted at step {step}; resume with: python {sys.argv[0]} --resume {latest}")
        return
    if progress.last_eval_step != step:
        run_eval()  # the headline number always comes from an evaluation of the final policy
    run.flush()
    rl_utils.plot_curves([run.run_dir], run.run_dir / "learning_curve.png",
                         tags=("charts/episodic_return", "eval/return"), title=f"{algo_name(args)} on {args.env_id}")
    run.write_summary(
        final_eval_return=progress.last_eval, best_eval_return=progress.best_eval, env_steps=step,
        wall_time_s=round(run.elapsed, 1), sps=round(step / max(run.elapsed, 1e-9), 1), algo=algo_name(args),
        env_id=args.env_id, seed=args.seed,
    )
    run.close()
    envs.close()
    print(f"final eval return {progress.last_eval:.1f} after {step} env steps ({run.elapsed:.0f}s) | "
          f"run folder: {run.run_dir} (TensorBoard logs, metrics.csv, learning_curve.png, ckpt/)")


if __name__ == "__main__":
    rl_utils.run_main(main)

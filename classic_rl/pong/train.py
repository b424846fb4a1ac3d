"""Pong from pixels with policy gradients: PG (REINFORCE), Actor-Critic and PPO over five backbones.

    python classic_rl/pong/train.py                                          # PPO, cnn, the notes' settings
    python classic_rl/pong/train.py --algo pg --backbone mlp                 # karpathy's Pong, frame differences
    python classic_rl/pong/train.py --algo ppo --backbone transformer --lookback 10
    python classic_rl/pong/train.py --collect steps --num-steps 128 --discount-by episodes   # standard PPO rollouts
    python classic_rl/pong/train.py --env-id CartPoleNoVelocity-v1 --backbone transformer   # the memory task
    python classic_rl/pong/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt --capture-video

Read top to bottom: arguments, the round discounting (the one piece of new math), the data of one update
(which steps are used, how the transformer sees its context), then the loop. The losses are imported, not
copied: ``ppo_loss`` (classic_rl/ppo), ``reinforce_loss`` and ``finished_mask`` (classic_rl/reinforce),
``actor_critic_loss`` (classic_rl/actor_critic); returns and GAE (with a cut mask of our own) and the rollout
storage are rl_utils'. The backbones, the 80x80 preprocessing and the KV-cached Transformer are in model.py.
A non-Atari env with vector observations and discrete actions (the memory task CartPoleNoVelocity-v1 of envs.py)
runs with the mlp and transformer backbones, which then read the observation vector in place of the frame.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl.actor_critic.train import actor_critic_loss  # noqa: E402
from classic_rl.on_policy import Progress  # noqa: E402
from classic_rl.pong import envs as _memory_envs  # noqa: E402, F401  (registers CartPoleNoVelocity-v1)
from classic_rl.pong.model import (  # noqa: E402
    BACKBONES,
    SIZE,
    VECTOR_BACKBONES,
    FramePolicy,
    TransformerActor,
    make_pong_env,
    obs_mode,
)
from classic_rl.ppo.train import ppo_loss  # noqa: E402
from classic_rl.reinforce.train import finished_mask, reinforce_loss  # noqa: E402

torch.distributions.Distribution.set_default_validate_args(False)  # our logits are valid; the checks cost time


@dataclass
class Args(rl_utils.CommonArgs):
    """Train PG, Actor-Critic or PPO on Pong from 80x80 binary frames with an mlp, cnn, cnn3d, cnn3d2d or
    transformer backbone (the notes' settings by default)."""

    env_id: str = "ALE/Pong-v5"
    """an Atari env id (the preprocessing and the UP/DOWN actions are Pong's), or an env with a flat Box
    observation and Discrete actions for --backbone mlp / transformer (CartPoleNoVelocity-v1: the memory task)"""
    algo: str = "ppo"
    """pg: REINFORCE, one step per batch; ac: R − V advantage with a critic, one step per batch; ppo: clipped
    surrogate, several passes of minibatches"""
    backbone: str = "cnn"
    """mlp (6400→hidden), cnn (16@8x8/4 → 32@4x4/2 → hidden), cnn3d (Conv3d over --frames frames), cnn3d2d
    (both, concatenated) or transformer (causal attention over the last --lookback frames, KV cache when acting)"""
    recipe: str = "notes"
    """notes: the notes' settings (the defaults below); cleanrl: CleanRL ppo_atari's (--backbone nature on the
    standard 84x84 grey 4-frame stack, all 6 actions, 128-step rollouts, 4 x 4 minibatches, clip 0.1, entropy
    0.01, lr 2.5e-4 annealed, 10M steps: the GPU reference recipe); flags typed on top still win"""
    total_timesteps: int = 2_000_000
    """environment steps to train for (agent steps of 4 frames, summed over the envs)"""
    num_envs: int = 8
    """parallel environments (SyncVectorEnv)"""
    collect: str = "episodes"
    """episodes: every update plays fresh episodes until --episodes-per-update of them ended (the notes);
    steps: --num-steps steps per env, episodes running on across updates (standard PPO)"""
    episodes_per_update: int = 10
    """--collect episodes: episodes that end per update (summed over the envs)"""
    max_rollout_steps: int = 1024
    """--collect episodes: steps per env per update at most (memory); a round (or episode) still running then
    is dropped from the update"""
    num_steps: int = 128
    """--collect steps: steps per env per rollout"""
    discount_by: str = "rounds"
    """rounds: returns stop at every point scored (a nonzero reward), as the notes (Atari only); episodes: at
    episode ends"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 1.0
    """GAE λ of ac and ppo (1 = Monte-Carlo return minus V, the notes')"""
    learning_rate: float = 1e-4
    """Adam learning rate"""
    anneal_lr: bool = False
    """decay the learning rate linearly to 0 over --total-timesteps (standard PPO's; the notes kept it constant)"""
    update_epochs: int = 10
    """ppo: passes over each batch"""
    num_minibatches: int = 64
    """ppo: minibatches per pass (the notes' 1/64 of the batch each)"""
    clip_coef: float = 0.2
    """ppo: ε of the clipped surrogate"""
    clip_vloss: bool = False
    """ppo: clip the value update around the old value"""
    norm_adv: bool = True
    """ac/ppo: standardise advantages (ppo per minibatch, ac over the batch)"""
    normalize_returns: bool = True
    """pg: standardise the discounted returns over the batch (karpathy's; see the README for why it matters)"""
    pg_divide_by: str = "rounds"
    """pg: divide Σ log π · R by the number of rounds in the batch (the notes' better curve) or by its steps"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """ac/ppo: value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient-norm clipping (0 = off)"""
    grad_chunk: int = 3000
    """pg/ac: steps per forward/backward piece; the gradients of the pieces are summed into one step (memory)"""
    hidden: int = 200
    """width of the mlp / cnn / cnn3d feature layer"""
    frames: int = 11
    """cnn3d / cnn3d2d: frames in the stack (>= 7: two Conv3d layers of time kernel 3, stride 2)"""
    d_model: int = 128
    """transformer: token width"""
    n_layer: int = 1
    """transformer: blocks"""
    n_head: int = 8
    """transformer: attention heads (d_model must divide by it)"""
    lookback: int = 10
    """transformer: earlier frames each step attends (the window; the acting cache holds this many)"""
    ffn: str = "mlp"
    """transformer: mlp (GPT-2's 4x MLP) or none (the notes' single Linear)"""
    seq_len: int = 64
    """transformer: steps per training chunk (each chunk also reads the --lookback frames before it)"""
    max_episode_steps: int = 0
    """cut episodes (truncation) after this many steps (0 = the env's own limit)"""
    norm_obs: bool = False
    """vector envs: standardise observations with running statistics shared by the envs (rl_utils'
    NormalizeObservation; saved in every checkpoint, frozen in evaluation)"""
    norm_reward: bool = False
    """vector envs: scale rewards by the running std of the discounted return (rl_utils' NormalizeReward); the
    logged and evaluated returns stay raw"""
    eval_every: int = 100_000
    """env steps between deterministic evaluations (checked after each update; 0 = only at the end)"""
    time_budget: float = 0.0
    """minutes of training after which the run stops as if --total-timesteps were reached (final evaluation,
    plot, summary); 0 = no limit. For "as far as an hour of CPU gets": --time-budget 60"""

    LIMITS = {"episodes_per_update": (1, None), "max_rollout_steps": (1, None), "num_steps": (1, None),
              "gamma": (0, 1), "gae_lambda": (0, 1), "learning_rate": (0, None), "update_epochs": (1, None),
              "num_minibatches": (1, None), "clip_coef": (0, None), "ent_coef": (0, None), "vf_coef": (0, None),
              "max_grad_norm": (0, None), "grad_chunk": (1, None), "hidden": (1, None), "frames": (2, None),
              "d_model": (2, None), "n_layer": (1, None), "n_head": (1, None), "lookback": (1, None),
              "seq_len": (1, None), "max_episode_steps": (0, None), "time_budget": (0, None)}
    CHOICES = {"recipe": ("notes", "cleanrl"), "algo": ("pg", "ac", "ppo"), "backbone": BACKBONES,
               "collect": ("episodes", "steps"), "discount_by": ("rounds", "episodes"),
               "pg_divide_by": ("rounds", "steps"), "ffn": ("mlp", "none")}


PRESETS: dict[str, dict[str, object]] = {  # the defaults are the notes' Pong settings
    # --recipe cleanrl: CleanRL's ppo_atari.py hyperparameters (its README: Pong 20.4 at 10M steps, on
    # PongNoFrameskip-v4, i.e. without ALE v5's sticky actions), on the standard preprocessing.
    "cleanrl": dict(
        backbone="nature", algo="ppo", collect="steps", num_envs=8, num_steps=128, discount_by="episodes",
        gamma=0.99, gae_lambda=0.95, learning_rate=2.5e-4, anneal_lr=True, update_epochs=4, num_minibatches=4,
        clip_coef=0.1, clip_vloss=True, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5, hidden=512,
        total_timesteps=10_000_000, eval_every=250_000,
    ),
    # The memory task (README "The memory task"): standard PPO, the same for both backbones (--backbone mlp is the
    # comparison), tuned on seed 1 of the transformer (one run per change, 300k steps unless said).
    # * --collect steps, 8 envs x 128 steps, 10 epochs of 4 minibatches (256 steps, or 8 chunks of 32), clip 0.2,
    #   γ 0.99, λ 0.95: standard PPO. --discount-by episodes: CartPole pays +1 every step, rounds would cut there.
    # * norm_obs: x and θ are small (|θ| < 0.21 rad, a few 0.01 per step) next to the position encoding added to
    #   each token (±1 per dimension); without it the transformer stayed below 100 for 300k steps.
    # * norm_reward: returns up to ~100 gave value losses of 10-90 that swamp the policy's gradient in the shared
    #   trunk under the 0.5 norm clip; with both the value loss fell to ~0.05 and the transformer reached 250 by 60k
    #   steps, then wandered between 94 and 494.
    # * learning rate 3e-4 annealed to 0 over 500k steps: constant 3e-4 peaked at 494 but ended at 338, constant
    #   1e-4 was still at 373 after 300k; annealed, seeds 1-3 end at 500 (about 3 min on one CPU core).
    # * widths: mlp hidden 64; transformer d 64, 1 layer, 4 heads, lookback 16 (32 learned slower: 322 at 300k).
    # Control: the MLP with these settings on CartPole-v1 (velocities visible) is at 500 from 70k steps on.
    "CartPoleNoVelocity-v1": dict(
        backbone="transformer", algo="ppo", collect="steps", num_envs=8, num_steps=128, discount_by="episodes",
        gamma=0.99, gae_lambda=0.95, learning_rate=3e-4, anneal_lr=True, update_epochs=10, num_minibatches=4,
        clip_coef=0.2, ent_coef=0.0, norm_obs=True, norm_reward=True, hidden=64, d_model=64, n_layer=1, n_head=4,
        lookback=16, seq_len=32, total_timesteps=500_000, eval_every=10_000,
    ),
}


def check_args(args: Args) -> None:
    """What the flag table cannot say: one-line errors before anything is built."""
    rl_utils.check_env_id(args.env_id)
    if not rl_utils.is_atari(args.env_id):
        if args.backbone not in VECTOR_BACKBONES:
            raise rl_utils.UsageError(f"--backbone {args.backbone} reads Atari frames (80x80 Pong preprocessing); "
                                      f"{args.env_id} is not an Atari env (use ALE/Pong-v5, or --backbone mlp or "
                                      f"transformer on its observation vector)")
        if args.discount_by == "rounds":
            raise rl_utils.UsageError(f"--discount-by rounds cuts returns at every nonzero reward (Pong's points); "
                                      f"{args.env_id} is not Pong: use --discount-by episodes")
        policy_spaces(args)  # a flat Box observation and Discrete actions, or one line saying what is wrong
    elif args.norm_obs or args.norm_reward:
        raise rl_utils.UsageError("--norm-obs and --norm-reward are for vector envs; Pong's frames are binary and "
                                  "its points ±1")
    if args.backbone in ("cnn3d", "cnn3d2d") and args.frames < 7:
        raise rl_utils.UsageError(f"--backbone {args.backbone} needs --frames >= 7 (two Conv3d layers of time "
                                  f"kernel 3, stride 2), got {args.frames}")
    if args.backbone == "transformer" and (args.d_model % args.n_head or args.d_model % 2):
        raise rl_utils.UsageError(f"--d-model {args.d_model} must be even and divisible by --n-head {args.n_head}")


# ----------------------------------------------------------------------------------------------------------------
# Round discounting
# ----------------------------------------------------------------------------------------------------------------
def round_cuts(rewards: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor, next_values: torch.Tensor,
               discount_by: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Where discounted returns and GAE stop, and what they bootstrap from there, over [T, N] arrays.

    episodes: cut at episode ends; bootstrap 0 at a termination, V(final obs) at a truncation (``next_values``
    from ``RolloutBuffer.next_values`` already holds exactly that).
    rounds: also cut at every point scored (a nonzero reward): a Pong point ends a "round" (the ball is served
    again), so the point's ±1 is credited only to the steps of the rally that produced it, and nothing is
    bootstrapped after it (0, as at a termination). A truncation in the middle of a rally still bootstraps."""
    if discount_by == "episodes":
        return terminated | truncated, next_values
    point = rewards != 0
    return terminated | truncated | point, torch.where(point, torch.zeros_like(next_values), next_values)


def count_rounds(rewards: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
                 used: torch.Tensor) -> int:
    """Rounds that end among the used steps (points, plus episode ends without one): PG's divisor."""
    return max(int(((rewards != 0) | terminated | truncated)[used].sum()), 1)


def normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + 1e-8) if len(x) > 1 else x


# ----------------------------------------------------------------------------------------------------------------
# Envs, agent, evaluation
# ----------------------------------------------------------------------------------------------------------------
def make_env(args: Args, capture_video: bool = False, video_dir: Path | None = None, training: bool = True
             ) -> gym.Env:
    """One env: Pong's frames and UP/DOWN for an Atari id (``model.make_pong_env``; ``training`` clips the
    rewards of the standard 84x84 path only); any other env as it is, with raw-return statistics (every backbone
    and algo reads its observation vector unchanged)."""
    if rl_utils.is_atari(args.env_id):
        return make_pong_env(args.env_id, obs_mode(args.backbone, args.algo), args.frames, args.max_episode_steps,
                             capture_video=capture_video, video_dir=video_dir, training=training)
    return rl_utils.make_env(args.env_id, capture_video=capture_video, video_dir=video_dir,
                             max_episode_steps=args.max_episode_steps or None)()


def make_envs(args: Args, num_envs: int) -> gym.vector.VectorEnv:
    rl_utils.check_env_id(args.env_id)  # registers the ALE envs with gymnasium
    envs = gym.vector.SyncVectorEnv([lambda: make_env(args) for _ in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    envs.action_space.seed(args.seed)
    if args.norm_obs:
        envs = rl_utils.NormalizeObservation(envs)
    if args.norm_reward:
        envs = rl_utils.NormalizeReward(envs, gamma=args.gamma)
    return envs


def policy_spaces(args: Args) -> tuple[tuple[int, ...], int]:
    """(shape of one step's input, number of actions): Pong's 80x80 frame and UP/DOWN, the standard 4x84x84
    stack and the game's full action set (--backbone nature), or a vector env's (D,) observation and its
    Discrete(n) actions (read from one env made for the purpose)."""
    if rl_utils.is_atari(args.env_id) and obs_mode(args.backbone, args.algo) != "atari84":
        return (SIZE, SIZE), 2
    if rl_utils.is_atari(args.env_id):
        env = make_env(args)
        shape, n_actions = env.observation_space.shape, env.action_space.n
        env.close()
        return tuple(shape), int(n_actions)
    env = gym.make(args.env_id)
    try:
        what = f"--backbone {args.backbone} on a non-Atari env"
        obs_dim = rl_utils.require_vector_obs(env.observation_space, what)
        n_actions = rl_utils.require_space(env.action_space, (gym.spaces.Discrete,), what).n
    finally:
        env.close()
    return (obs_dim,), int(n_actions)


def build(args: Args, device: torch.device) -> FramePolicy:
    obs_shape, n_actions = policy_spaces(args)
    return FramePolicy(args.backbone, args.hidden, args.frames, args.d_model, args.n_layer, args.n_head,
                       args.lookback, args.ffn, obs_shape, n_actions).to(device)


def algo_name(args: Args) -> str:
    return f"{args.algo}_{args.backbone}"


def evaluate(args: Args, agent: FramePolicy, device: torch.device, seed_offset: int = rl_utils.EVAL_SEED_OFFSET,
             video_dir: Path | None = None, obs_norm: rl_utils.NormalizeObservation | None = None
             ) -> rl_utils.EvalResult:
    """Greedy (argmax) play of ``eval_episodes`` episodes on fresh envs with fixed seeds; the transformer acts
    with its cache, emptied per env at each episode end (``rl_utils.evaluate`` calls ``reset``). ``obs_norm``:
    the training envs' observation statistics (--norm-obs), applied frozen."""
    def env_fn(i: int):  # type: ignore[no-untyped-def]
        return lambda: make_env(args, capture_video=args.capture_video and i == 0, video_dir=video_dir,
                                training=False)

    if agent.sequential:
        policy = TransformerActor(agent, args.eval_episodes, device)
    else:
        @torch.no_grad()
        def policy(obs: np.ndarray) -> np.ndarray:
            return agent(torch.as_tensor(obs, device=device))[0].argmax(-1).cpu().numpy()
    was_training = agent.training
    agent.eval()
    try:
        return rl_utils.evaluate(env_fn, policy, args.eval_episodes, seed=args.seed + seed_offset,
                                 obs_norm=obs_norm)
    finally:
        agent.train(was_training)


def load_agent(path: str | Path, overrides: dict | None = None) -> tuple[
        Args, FramePolicy, torch.device, rl_utils.Checkpoint, rl_utils.NormalizeObservation | None]:
    """A checkpoint's arguments (``overrides`` on top) and agent with its weights, on the device they choose,
    and (--norm-obs) the observation statistics it was trained with."""
    ckpt = rl_utils.open_checkpoint(path, Args)
    saved = Args(**{**ckpt.args, **(overrides or {})})
    device = rl_utils.setup(saved)
    agent = build(saved, device)
    rl_utils.load_state_into(agent, ckpt["agent"])
    obs_norm = None
    if saved.norm_obs:
        envs = make_envs(saved, 1)
        rl_utils.set_env_state(envs, {"sub_envs": None, "wrappers": ckpt["envs"]["wrappers"]})  # statistics only
        obs_norm = rl_utils.find_wrapper(envs, rl_utils.NormalizeObservation)
        envs.close()
    return saved, agent, device, ckpt, obs_norm


def eval_only(args: Args) -> None:
    if not args.checkpoint:
        raise rl_utils.UsageError("--eval-only needs --checkpoint PATH")
    saved, agent, device, ckpt, obs_norm = load_agent(args.checkpoint, {"capture_video": args.capture_video,
                                                                         "eval_episodes": args.eval_episodes})
    result = evaluate(saved, agent, device, video_dir=ckpt.run_dir / "videos", obs_norm=obs_norm)
    print(f"eval return {result.returns.mean():.1f} ± {result.returns.std():.1f} over {len(result.returns)} "
          f"episodes ({saved.env_id}, {algo_name(saved)}, checkpoint step {ckpt.step})")


# ----------------------------------------------------------------------------------------------------------------
# Collecting
# ----------------------------------------------------------------------------------------------------------------
class Context:
    """The transformer's memory between rollouts (``--collect steps``): each env's last ``lookback`` frames,
    positions and episode starts, so a training chunk at the start of a rollout sees the frames the acting
    cache saw. Empty slots are marked as episode starts of their own: nothing attends them."""

    def __init__(self, lookback: int, num_envs: int, obs_shape: tuple[int, ...], device: torch.device):
        self.obs = torch.zeros(lookback, num_envs, *obs_shape, dtype=torch.uint8, device=device)
        self.pos = torch.zeros(lookback, num_envs, dtype=torch.long, device=device)
        self.starts = torch.ones(lookback, num_envs, dtype=torch.bool, device=device)

    def clear(self) -> None:
        self.starts.fill_(True)

    def joined(self, buffer: rl_utils.RolloutBuffer, rows: int) -> tuple[torch.Tensor, ...]:
        """(obs, pos, starts) of [lookback + rows, N, ...]: this context, then the rollout's rows."""
        return (torch.cat([self.obs, buffer.obs[:rows]]), torch.cat([self.pos, buffer.extras["pos"][:rows]]),
                torch.cat([self.starts, buffer.episode_starts[:rows]]))

    def keep_tail(self, obs: torch.Tensor, pos: torch.Tensor, starts: torch.Tensor) -> None:
        lookback = len(self.obs)
        self.obs, self.pos, self.starts = obs[-lookback:].clone(), pos[-lookback:].clone(), starts[-lookback:].clone()


@torch.no_grad()
def collect(args: Args, agent: FramePolicy, actor: TransformerActor | None, envs: gym.vector.VectorEnv,
            buffer: rl_utils.RolloutBuffer, obs: np.ndarray, progress: Progress, run: rl_utils.Run,
            device: torch.device) -> tuple[np.ndarray, torch.Tensor, int]:
    """Fill ``buffer`` (from row 0) with the current policy. ``--collect episodes``: fresh episodes until
    ``episodes_per_update`` ended or the buffer is full; ``steps``: exactly ``num_steps`` rows from ``obs``.
    Returns (next obs, V(next obs) to bootstrap the last row from, rows filled)."""
    buffer.reset()
    n = envs.num_envs
    if args.collect == "episodes":
        obs, _ = envs.reset()
        buffer.next_start[:] = True
        if actor is not None:
            actor.reset(np.ones(n, dtype=bool))
    ended_total = 0
    while buffer.pos < buffer.num_steps:
        obs_t = torch.as_tensor(obs, device=device)
        if actor is not None:
            logits, values, pos = actor.step(obs_t)
        else:
            (logits, values), pos = agent(obs_t), torch.zeros(n, dtype=torch.long)
        dist = torch.distributions.Categorical(logits=logits)
        action = dist.sample()
        next_obs, reward, terminated, truncated, infos = envs.step(action.cpu().numpy())
        # A time limit is not the end of the game: the critic's V(real final obs) is what a truncation bootstraps
        # from (the seed's bug was to ignore `truncated`). Taken before the cache of that env is emptied.
        final_values = None
        cut = truncated & ~terminated
        if cut.any():
            idx = np.flatnonzero(cut)
            final = torch.as_tensor(rl_utils.real_next_obs(next_obs, infos)[idx], device=device)
            final_values = torch.zeros(n, device=device)
            idx_t = torch.as_tensor(idx, device=device)
            final_values[idx_t] = actor.peek(final, idx_t)[1] if actor is not None else agent(final)[1]
        buffer.add(obs_t, action, dist.log_prob(action), values, reward, terminated, truncated, final_values,
                   pos=pos)
        ended = terminated | truncated
        if actor is not None and ended.any():
            actor.reset(ended)
        obs = next_obs
        progress.global_step += n
        run.log_episodes(rl_utils.finished_episodes(infos), progress.global_step)
        ended_total += int(ended.sum())
        if args.collect == "episodes" and ended_total >= args.episodes_per_update:
            break
    if args.collect == "steps":
        obs_t = torch.as_tensor(obs, device=device)
        last_values = actor.peek(obs_t)[1] if actor is not None else agent(obs_t)[1]
    else:  # every used step's chain ends in a cut: nothing after the last row is ever bootstrapped from
        last_values = torch.zeros(n, device=device)
    return obs, last_values, buffer.pos


# ----------------------------------------------------------------------------------------------------------------
# The data of one update, read in pieces
# ----------------------------------------------------------------------------------------------------------------
class Batch:
    """One update's used steps with their advantages and returns, cut into pieces a forward can take.

    Frame backbones: a piece is any set of used steps. Transformer: a piece is a few chunks of ``seq_len``
    consecutive steps of one env, each read with the ``lookback`` frames before it (from the context before
    row 0), so every step sees the same window as when it acted; the loss covers only the chunk's used steps."""

    def __init__(self, args: Args, buffer: rl_utils.RolloutBuffer, rows: int, used: torch.Tensor,
                 advantages: torch.Tensor, returns: torch.Tensor, context: Context | None):
        self.args, self.buffer, self.rows, self.used = args, buffer, rows, used  # used [T, N]
        self.advantages, self.returns = advantages, returns  # [T, N], computed once per update
        self.n_used = int(used.sum())
        self.context = context
        if context is not None:
            self.obs, self.pos, self.starts = context.joined(buffer, rows)  # [lookback + T, N, ...]

    def pieces(self, n_pieces: int, generator: torch.Generator | None = None) -> list[tuple[torch.Tensor, ...]]:
        """About ``n_pieces`` pieces covering every used step once, in random order."""
        n_envs = self.buffer.num_envs
        if self.context is None:
            flat = torch.nonzero(self.used.flatten()).flatten()
            flat = flat[torch.randperm(len(flat), generator=generator)]
            size = max(-(-len(flat) // n_pieces), 1)
            return [(f // n_envs, f % n_envs) for f in flat.split(size)]
        seq = self.args.seq_len
        chunks = [(s, e) for e in range(n_envs) for s in range(0, self.rows, seq) if self.used[s:s + seq, e].any()]
        order = torch.randperm(len(chunks), generator=generator).tolist()
        per = max(len(chunks) // n_pieces, 1)
        groups = [order[i:i + per] for i in range(0, len(order), per)]
        return [(torch.tensor([chunks[i][0] for i in g]), torch.tensor([chunks[i][1] for i in g])) for g in groups]

    def forward(self, agent: FramePolicy, piece: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """The new log π, entropy and V of a piece's used steps, with their stored actions, old log π, old V,
        advantages and returns, all [M]."""
        buf = self.buffer
        if self.context is None:
            t, e = piece
            logits, values = agent(buf.obs[t, e])
        else:
            starts_of_chunks, e = piece  # [B], [B]
            lookback, seq = self.args.lookback, self.args.seq_len
            offsets = torch.arange(lookback + seq)  # row r of the joined arrays = rollout row r - lookback
            joined = starts_of_chunks[:, None] + offsets[None, :]  # [B, lookback + seq]
            past_end = joined >= lookback + self.rows  # padding after the last row
            joined = joined.clamp(max=lookback + self.rows - 1)
            ee = e[:, None].expand_as(joined)
            starts = self.starts[joined, ee] | past_end  # padding: an episode of its own, after everything real
            logits, values = agent.forward_seq(self.obs[joined, ee], self.pos[joined, ee], starts)
            t_all = (joined - lookback)[:, lookback:]  # [B, seq] rollout rows of the chunk
            keep = ~past_end[:, lookback:] & self.used[t_all, ee[:, lookback:]]
            logits, values = logits[:, lookback:][keep], values[:, lookback:][keep]
            t, e = t_all[keep], ee[:, lookback:][keep]
        dist = torch.distributions.Categorical(logits=logits)
        actions = buf.actions[t, e]
        return {"logprob": dist.log_prob(actions), "entropy": dist.entropy(), "value": values,
                "old_logprob": buf.logprobs[t, e], "old_value": buf.values[t, e],
                "advantages": self.advantages[t, e], "returns": self.returns[t, e]}


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------
def clip_and_step(args: Args, agent: FramePolicy, optimizer: torch.optim.Optimizer) -> None:
    if args.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
    optimizer.step()


def update(args: Args, agent: FramePolicy, optimizer: torch.optim.Optimizer, batch: Batch,
           n_rounds: int) -> dict[str, torch.Tensor]:
    """PG / AC: one gradient step on the whole batch, summed over pieces of ``grad_chunk`` steps. PPO:
    ``update_epochs`` passes of ``num_minibatches`` minibatches, each a step."""
    stats: dict[str, torch.Tensor] = {}
    if args.algo in ("pg", "ac"):
        optimizer.zero_grad(set_to_none=True)
        pieces = batch.pieces(max(-(-batch.n_used // args.grad_chunk), 1))
        for piece in pieces:
            out = batch.forward(agent, piece)
            m = len(out["logprob"])
            if args.algo == "pg":
                # reinforce_loss averages over the piece's steps; ×m / total gives the batch mean (divide by
                # steps), ×m / rounds the notes' −Σ log π · R / rounds. Advantages were standardised batch-wide.
                loss, stats = reinforce_loss(out["logprob"], out["entropy"], out["advantages"],
                                             torch.zeros_like(out["logprob"]), False, args.ent_coef)
                loss = loss * m / (n_rounds if args.pg_divide_by == "rounds" else batch.n_used)
            else:
                loss, stats = actor_critic_loss(out["logprob"], out["entropy"], out["advantages"], out["value"],
                                                out["returns"], args.vf_coef, args.ent_coef)
                loss = loss * m / batch.n_used
            loss.backward()
        clip_and_step(args, agent, optimizer)
        return stats
    for _ in range(args.update_epochs):
        for piece in batch.pieces(args.num_minibatches):
            out = batch.forward(agent, piece)
            adv = normalize(out["advantages"]) if args.norm_adv else out["advantages"]
            loss, stats = ppo_loss(out["logprob"], out["old_logprob"], adv, out["value"], out["old_value"],
                                   out["returns"], out["entropy"], args.clip_coef, args.clip_vloss, args.vf_coef,
                                   args.ent_coef)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_and_step(args, agent, optimizer)
    return stats


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS, preset_key=("env_id", "recipe"))
    check_args(args)
    if args.eval_only:
        return eval_only(args)
    device = rl_utils.setup(args)
    envs = make_envs(args, args.num_envs)
    agent = build(args, device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate)
    rows = args.max_rollout_steps if args.collect == "episodes" else args.num_steps
    buffer = rl_utils.RolloutBuffer(rows, args.num_envs, envs.single_observation_space, envs.single_action_space,
                                    extras={"pos": gym.spaces.Box(0, 2**62, (), np.int64)}, device=device)
    progress = Progress(next_eval=args.eval_every)
    # --norm-obs / --norm-reward: the envs' running statistics are part of the policy, saved with the weights
    env_state = {"envs": envs} if args.norm_obs or args.norm_reward else {}
    obs_norm = rl_utils.find_wrapper(envs, rl_utils.NormalizeObservation)
    if ckpt is not None:  # ALE envs cannot be saved mid-episode: a resumed run starts fresh episodes
        rl_utils.Run.restore(ckpt, agent=agent, optimizer=optimizer, progress=progress, **env_state)
    run = rl_utils.Run(args, algo_name(args), resume=ckpt)
    actor = TransformerActor(agent, args.num_envs, device) if agent.sequential else None
    context = Context(args.lookback, args.num_envs, envs.single_observation_space.shape, device) if actor else None
    obs, _ = envs.reset(seed=args.seed + progress.iteration)  # a resumed run plays new episodes

    def save(name: str) -> Path:
        return run.save(name, progress.global_step, agent=agent, optimizer=optimizer, progress=progress,
                        **env_state)

    def evaluate_now() -> float:
        step = progress.global_step
        result = evaluate(args, agent, device, video_dir=run.run_dir / "videos", obs_norm=obs_norm)
        mean = progress.last_eval = float(result.returns.mean())
        progress.last_eval_step = step
        run.log_dict(result.log_dict(), step)
        if mean >= progress.best_eval:
            progress.best_eval, progress.best_eval_step = mean, step
            save("best")
        print(f"step {step:>9d} | eval return {mean:6.1f} ± {result.returns.std():4.1f} | {run.elapsed:6.0f}s",
              flush=True)
        return mean

    run.progress(args.total_timesteps, progress.global_step)
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while (progress.global_step < args.total_timesteps and not interrupt.requested
               and not (args.time_budget and run.elapsed >= 60 * args.time_budget)):
            step0, t0 = progress.global_step, time.perf_counter()
            if args.anneal_lr:  # from the step count, so a resumed run continues the same schedule
                optimizer.param_groups[0]["lr"] = args.learning_rate * (1 - step0 / args.total_timesteps)
            obs, last_values, rows = collect(args, agent, actor, envs, buffer, obs, progress, run, device)
            collect_s = time.perf_counter() - t0

            # ---- returns and advantages, once per update, with the round (or episode) cuts
            rewards, term, trunc = buffer.rewards[:rows], buffer.terminated[:rows], buffer.truncated[:rows]
            values = buffer.values[:rows]
            if args.algo == "pg":  # no critic: Monte-Carlo returns, nothing bootstrapped
                cuts, _ = round_cuts(rewards, term, trunc, torch.zeros_like(rewards), args.discount_by)
                returns = rl_utils.discounted_returns(rewards, torch.zeros_like(rewards), cuts, args.gamma)
            else:
                cuts, next_values = round_cuts(rewards, term, trunc, buffer.next_values(last_values)[:rows],
                                               args.discount_by)
                advantages = rl_utils.gae(rewards, values, next_values, cuts, args.gamma, args.gae_lambda)
                returns = advantages + values
            # episodes: only complete rounds/episodes (the return of one still running is unknown); steps: all,
            # bootstrapped (PG has no critic to bootstrap with, so it drops the unfinished tail in both modes)
            used = (finished_mask(cuts) if args.collect == "episodes" or args.algo == "pg"
                    else torch.ones_like(cuts))
            if args.algo == "pg":
                advantages = returns.clone()
                if args.normalize_returns:
                    advantages[used] = normalize(returns[used])
            elif args.algo == "ac" and args.norm_adv:
                advantages = advantages.clone()
                advantages[used] = normalize(advantages[used])
            n_rounds = count_rounds(rewards, term, trunc, used)
            batch = Batch(args, buffer, rows, used, advantages, returns, context)

            t1 = time.perf_counter()
            stats = update(args, agent, optimizer, batch, n_rounds) if batch.n_used else {}
            update_s = time.perf_counter() - t1
            if context is not None:
                if args.collect == "steps":
                    context.keep_tail(batch.obs, batch.pos, batch.starts)
                else:
                    context.clear()
            progress.iteration += 1

            step = progress.global_step
            run.log_dict({f"losses/{k}": float(v) for k, v in stats.items()}, step)
            run.log_dict({"charts/SPS": step / max(run.elapsed, 1e-9),
                          "charts/collect_SPS": (step - step0) / max(collect_s, 1e-9),
                          "charts/update_seconds": update_s, "charts/rounds_per_update": n_rounds,
                          "charts/used_fraction": batch.n_used / max(rows * args.num_envs, 1)}, step)
            points = int((rewards != 0).sum())
            if rl_utils.is_atari(args.env_id) and points:  # a training curve at every update: once a game lasts
                # longer than the rollout cap, no episode ends inside an update and episodic_return goes silent
                run.log("charts/points_won_fraction", float((rewards > 0).sum()) / points, step)
            run.update_progress(step - step0, step, step / max(run.elapsed, 1e-9))
            if args.eval_every and step >= progress.next_eval:
                progress.next_eval += args.eval_every * math.ceil((step - progress.next_eval + 1) / args.eval_every)
                if evaluate_now() >= args.target_return:
                    print(f"target return {args.target_return} reached at step {step}")
                    break
            if args.checkpoint_every and step % args.checkpoint_every < step - step0:
                save(f"step_{step}")
                save("latest")
    latest = save("latest")
    envs.close()
    if interrupt.requested:
        run.close()
        print(f"interrupted at step {progress.global_step}; resume with: python {sys.argv[0]} --resume {latest}")
        return
    finish(args, agent, device, run, progress, evaluate_now, save)


def finish(args: Args, agent: FramePolicy, device: torch.device, run: rl_utils.Run, progress: Progress,
           evaluate_now, save) -> None:  # type: ignore[no-untyped-def]
    """Evaluate the final policy (unless just done), score best.pt on held-out episodes, plot, summary.json."""
    step = progress.global_step
    if progress.last_eval_step != step:
        evaluate_now()
    if not (run.ckpt_dir / "best.pt").exists():
        save("best")
    best_args, best_agent, _, best_ckpt, best_obs_norm = load_agent(run.ckpt_dir / "best.pt", {"device": args.device})
    held = evaluate(args, best_agent, device, seed_offset=rl_utils.HELDOUT_SEED_OFFSET, obs_norm=best_obs_norm)
    heldout = float(held.returns.mean())
    run.log("eval/best_heldout_return", heldout, step)
    print(f"best.pt (step {best_ckpt.step}) on held-out episodes: {heldout:.1f} ± {held.returns.std():.1f}")
    run.flush()
    name = algo_name(args)
    rl_utils.plot_curves([run.run_dir], run.run_dir / "learning_curve.png",
                         tags=("charts/episodic_return", "eval/return"), title=f"{name} on {args.env_id}")
    run.write_summary(
        final_eval_return=progress.last_eval, best_eval_return=progress.best_eval,
        best_eval_step=progress.best_eval_step, best_heldout_return=heldout, env_steps=step,
        wall_time_s=round(run.elapsed, 1), sps=round(step / max(run.elapsed, 1e-9), 1), algo=name,
        env_id=args.env_id, seed=args.seed)
    run.close()
    print(f"final eval return {progress.last_eval:.1f} after {step} env steps ({run.elapsed:.0f}s) | "
          f"run folder: {run.run_dir} (TensorBoard logs, metrics.csv, learning_curve.png, ckpt/)")


if __name__ == "__main__":
    rl_utils.run_main(main)

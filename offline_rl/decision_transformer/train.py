"""Decision Transformer (Chen et al. 2021): offline RL as return-conditioned sequence modelling; with
``--model bc`` the MLP behaviour-cloning baseline on the same batches.

    python offline_rl/make_datasets.py --source <SAC Hopper run>          # offline_rl/data/hopper-*.hdf5
    python offline_rl/decision_transformer/train.py --dataset offline_rl/data/hopper-medium.hdf5
    python offline_rl/decision_transformer/train.py --dataset ... --backbone hf-gpt2     # transformers' GPT2Model
    python offline_rl/decision_transformer/train.py --dataset ... --model bc             # the BC baseline
    python offline_rl/decision_transformer/train.py --dataset ... --delayed-reward       # the notes' sparse mode
    python offline_rl/decision_transformer/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt

Read top to bottom: arguments, the segment sampler (returns-to-go, left padding), the loss, the acting policy
(R̂ updated by each reward; a window of the last K steps, or a key/value cache), evaluation at several target
returns, then the loop: AdamW with a linear warm-up, gradient clipping, evaluations, checkpoints, resume.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import dl_utils  # noqa: E402
import rl_utils  # noqa: E402
from classic_rl import on_policy  # noqa: E402
from offline_rl import common, datasets  # noqa: E402
from offline_rl.decision_transformer.model import MLPBC, DecisionTransformer, DTConfig  # noqa: E402

# target returns per env family: the authors' evaluation targets (Hopper 3600 and 1800, ...)
DEFAULT_TARGETS = {"hopper": "3600,1800", "halfcheetah": "12000,6000", "walker2d": "5000,2500"}


@dataclass
class Args(rl_utils.RunArgs):
    """Train a Decision Transformer (or, with --model bc, an MLP behaviour-cloning baseline) on an offline
    dataset; defaults are the notes' Hopper config, sized for a CPU where stated."""

    dataset: str = ""
    """a D4RL-layout .hdf5 file or a Minari dataset id (make them with offline_rl/make_datasets.py)"""
    env_id: str = ""
    """env to evaluate on (default: the env the dataset records)"""
    eval_only: bool = False
    """only evaluate --checkpoint at every target (add --capture-video to record it) and exit"""
    checkpoint: str = ""
    """checkpoint to evaluate with --eval-only"""
    capture_video: bool = False
    """record videos of evaluation episodes into <run>/videos (--eval-only)"""
    target_return: float = math.inf
    """stop early once the first target's mean evaluation return reaches this (inf = never)"""
    model: str = "dt"
    """dt (Decision Transformer) or bc (MLP behaviour cloning from the current state, the baseline)"""
    backbone: str = "gpt"
    """gpt (dl_utils.GPT, written here, with a KV cache) or hf-gpt2 (transformers' GPT2Model, as the notes)"""
    activation: str = "gelu"
    """the GPT's MLP non-linearity: gelu (GPT-2's, the notes' GPT2Model default) or relu (the authors' config)"""
    context: int = 20
    """K: timesteps per training segment and in the acting window (the notes, the authors)"""
    n_embd: int = 128
    """embedding width (the notes, the authors)"""
    n_layer: int = 3
    """Transformer blocks (the notes, the authors)"""
    n_head: int = 1
    """attention heads (the notes, the authors)"""
    dropout: float = 0.1
    """dropout of the tokens, attention and residual branches (the notes, the authors)"""
    batch_size: int = 64
    """segments per gradient step (the notes, the authors)"""
    learning_rate: float = 1e-4
    """AdamW learning rate after the warm-up (the notes, the authors)"""
    weight_decay: float = 1e-4
    """AdamW weight decay (the notes, the authors)"""
    warmup_steps: int = 1_000
    """gradient steps of linear learning-rate warm-up: lr·min(1, (t+1)/warm-up) (the notes, the authors)"""
    grad_clip: float = 0.25
    """max gradient norm (the authors; a Transformer trained with a large lr on MSE spikes without it)"""
    offline_steps: int = 50_000
    """gradient steps (the notes: 50 × 1,000; the authors' repository: 10 × 10,000 = 100k)"""
    return_scale: float = 1000.0
    """returns-to-go are divided by this before embedding (the authors' MuJoCo value: keeps R̂ near 1)"""
    target_returns: str = ""
    """comma-separated returns to condition on at evaluation, the first one headlines (default: the authors'
    per env, Hopper 3600,1800; else the dataset's best episode return)"""
    delayed_reward: bool = False
    """the notes' sparse mode: each episode's whole return moved to its last step in the data; at evaluation R̂
    is then not decremented (the authors' 'delayed' mode)"""
    eval_context: str = "window"
    """acting: window (the authors': the last K steps, one full forward each step) or cached (a key/value cache,
    restarted every K steps, so contexts run 1..K as in training; a few tokens of compute per step)"""
    max_ep_len: int = 1000
    """size of the timestep embedding table; later steps of a longer episode share its last entry (MuJoCo
    episodes are 1,000 steps)"""
    eval_every: int = 10_000
    """gradient steps between evaluations at every target (0 = only at the end)"""
    eval_episodes: int = 10
    """episodes per evaluation and target (the notes: 100; 10 keeps an evaluation to a minute on a CPU)"""
    log_every: int = 500
    """gradient steps between loss log rows"""
    checkpoint_every: int = 0
    """gradient steps between checkpoints kept as ckpt/step_N.pt (0 = only at the end and on Ctrl-C)"""

    LIMITS = {"context": (1, None), "n_embd": (1, None), "n_layer": (1, None), "n_head": (1, None),
              "dropout": (0, 1), "batch_size": (1, None), "learning_rate": (0, None), "weight_decay": (0, None),
              "warmup_steps": (1, None), "grad_clip": (0, None), "offline_steps": (1, None),
              "return_scale": (0, None), "max_ep_len": (1, None), "log_every": (1, None), "eval_every": (0, None),
              "eval_episodes": (1, None), "checkpoint_every": (0, None)}
    CHOICES = {"model": ("dt", "bc"), "backbone": ("gpt", "hf-gpt2"), "eval_context": ("window", "cached"),
               "activation": ("gelu", "relu")}

    def targets(self, dataset: datasets.OfflineDataset | None = None) -> list[float]:
        text = self.target_returns or DEFAULT_TARGETS.get(datasets.env_family(self.env_id), "")
        if not text:
            if dataset is None:
                raise rl_utils.UsageError("pass --target-returns R1,R2,...")
            return [float(np.max(dataset.episode_returns()))]
        try:
            return [float(x) for x in text.split(",")]
        except ValueError:
            raise rl_utils.UsageError(f"--target-returns must be comma-separated numbers, got {text!r}") from None


def check_args(args: Args) -> None:
    """What the per-field limits cannot say."""
    if args.n_embd % args.n_head:
        raise rl_utils.UsageError(f"--n-embd ({args.n_embd}) must be divisible by --n-head ({args.n_head})")
    if args.eval_context == "cached" and (args.backbone != "gpt" or args.model != "dt"):
        raise rl_utils.UsageError("--eval-context cached needs --model dt --backbone gpt (the KV cache is ours)")


# ----------------------------------------------------------------------------------------------------------------
# Training segments: K consecutive steps of one episode, returns-to-go, left padding
# ----------------------------------------------------------------------------------------------------------------


def returns_to_go(rewards: np.ndarray, episodes: list[slice]) -> np.ndarray:
    """R̂_t = Σ_{t' ≥ t} r_t' inside each episode (undiscounted, as the authors) [N]."""
    rtg = np.zeros(len(rewards), dtype=np.float64)
    for ep in episodes:
        rtg[ep] = np.cumsum(rewards[ep][::-1])[::-1]
    return rtg.astype(np.float32)


def delay_rewards(rewards: np.ndarray, episodes: list[slice]) -> np.ndarray:
    """The notes' sparse reward: each episode's return on its last step, 0 elsewhere."""
    out = np.zeros_like(rewards)
    for ep in episodes:
        out[ep.stop - 1] = rewards[ep].sum()
    return out


class SegmentSampler:
    """Random training segments: a start index uniform over all transitions (so an episode is drawn with
    probability ∝ its length, the authors' sampling), then up to K steps to the episode's end; a segment cut short
    by the end is **left-padded** (zeros, ``keep`` False, timestep 0), so its last real step is always at
    position K − 1, where acting reads the prediction."""

    def __init__(self, dataset: datasets.OfflineDataset, actions: np.ndarray, context: int, delayed: bool,
                 seed: int):
        episodes = dataset.episode_slices()
        rewards = delay_rewards(dataset.rewards, episodes) if delayed else dataset.rewards
        self.states, self.actions, self.rtg = dataset.observations, actions, returns_to_go(rewards, episodes)
        n = len(dataset)
        self.ep_end, self.timestep = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        for ep in episodes:
            self.ep_end[ep] = ep.stop
            self.timestep[ep] = np.arange(ep.stop - ep.start)
        self.k, self.rng = context, np.random.default_rng(seed)  # the rng is checkpointed (exact resume)

    def segments(self, starts: np.ndarray) -> dict[str, np.ndarray]:
        """The segments beginning at ``starts`` [B]: states [B, K, o], actions [B, K, d], returns_to_go [B, K, 1]
        (unscaled), timesteps [B, K], keep [B, K]."""
        length = np.minimum(self.k, self.ep_end[starts] - starts)  # [B] real steps
        offset = np.arange(self.k)[None, :] - (self.k - length)[:, None]  # [B, K]: < 0 on the padding
        keep = offset >= 0
        idx = starts[:, None] + np.maximum(offset, 0)  # [B, K] (padding reads the start, then is zeroed)
        return dict(states=self.states[idx] * keep[..., None], actions=self.actions[idx] * keep[..., None],
                    returns_to_go=(self.rtg[idx] * keep)[..., None], timesteps=self.timestep[idx] * keep, keep=keep)

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        return self.segments(self.rng.integers(len(self.states), size=batch_size))

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def to_torch(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    out = {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
    out["timesteps"] = out["timesteps"].long()
    return {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}


def action_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], return_scale: float) -> torch.Tensor:
    """L = mean over real steps of ‖â_t − a_t‖² (padding excluded), â_t read from the state token s_t (it has
    seen R̂_≤t, s_≤t, a_<t). The authors' loss: no return or state prediction terms."""
    pred = model(batch["returns_to_go"] / return_scale, batch["states"], batch["actions"], batch["timesteps"],
                 batch["keep"])  # [B, K, d]
    keep = batch["keep"]
    return F.mse_loss(pred[keep], batch["actions"][keep])


# ----------------------------------------------------------------------------------------------------------------
# Acting: R̂ conditioned, updated by each reward
# ----------------------------------------------------------------------------------------------------------------


class DTPolicy:
    """The evaluation policy over E parallel episodes (``rl_utils.evaluate``'s ``reset`` / ``observe`` hooks).

    R̂ starts at the target return; after each reward r, R̂ ← R̂ − r (kept in delayed mode, the authors'). The
    action at step t comes from the state token s_t of:
    - ``window``: the last K steps (R̂, s, a with a_t = 0, left-padded at the episode's start), one forward;
    - ``cached``: the GPT's key/value cache of this chunk of K steps plus the new tokens (a_{t−1}, R̂_t, s_t);
      the chunk restarts every K steps, so the model sees 1..K steps as in training. Equal to the uncached
      forward of the same tokens (tested); all E episodes start together, so the chunks stay aligned."""

    def __init__(self, model: torch.nn.Module, target: float, episodes: int, args: Args, device: torch.device,
                 act_dim: int, state_dim: int):
        self.model, self.target, self.args, self.device = model, target, args, device
        t_max = args.max_ep_len + 1
        self.states = np.zeros((episodes, t_max, state_dim), np.float32)
        self.actions = np.zeros((episodes, t_max, act_dim), np.float32)
        self.rtg = np.zeros((episodes, t_max), np.float32)
        self.t = np.zeros(episodes, dtype=np.int64)  # steps taken in the current episode
        self.clock = 0  # steps since the evaluation started (the cache's chunk clock)
        self.cache: dl_utils.KVCache | None = None

    def reset(self, mask: np.ndarray) -> None:
        self.t[mask] = 0
        self.rtg[mask, 0] = self.target
        if mask.all():
            self.clock, self.cache = 0, None

    def observe(self, rewards: np.ndarray) -> None:
        rows, t = np.arange(len(self.t)), self.t
        decrement = 0.0 if self.args.delayed_reward else rewards
        nxt = np.minimum(t + 1, self.args.max_ep_len)  # an episode that ended keeps stepping (its result is in)
        self.rtg[rows, nxt] = self.rtg[rows, t] - decrement
        self.t = nxt

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        rows, t, k = np.arange(len(self.t)), self.t, self.args.context
        self.states[rows, t] = obs
        self.actions[rows, t] = 0.0  # a_t is what we predict: a placeholder the causal mask keeps unseen
        action = self._cached(rows, t) if self.args.eval_context == "cached" else self._window(rows, t, k)
        self.actions[rows, t] = action
        self.clock += 1
        return action

    def _window(self, rows: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
        offset = np.arange(k)[None, :] - (k - 1) + t[:, None]  # [E, K] episode steps t−K+1 .. t
        keep = offset >= 0
        idx = np.maximum(offset, 0)
        batch = to_torch(dict(states=self.states[rows[:, None], idx], actions=self.actions[rows[:, None], idx],
                              returns_to_go=self.rtg[rows[:, None], idx][..., None], timesteps=idx * keep,
                              keep=keep), self.device)
        pred = self.model(batch["returns_to_go"] / self.args.return_scale, batch["states"], batch["actions"],
                          batch["timesteps"], batch["keep"])
        return pred[:, -1].cpu().numpy()

    def _cached(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        model, dev = self.model, self.device
        if self.clock % self.args.context == 0:
            self.cache = None  # a new chunk: forget the previous K steps
        ts = torch.as_tensor(t, device=dev)[:, None]  # [E, 1]
        rtg = torch.as_tensor(self.rtg[rows, t], device=dev)[:, None, None] / self.args.return_scale
        state = torch.as_tensor(self.states[rows, t], device=dev)[:, None]
        zeros = torch.zeros(len(t), 1, self.actions.shape[2], device=dev)
        new = model.tokens(rtg, state, zeros, ts)[:, :2]  # [E, 2, D]: R̂_t, s_t
        if self.cache is not None:  # the previous step's action token goes in first
            prev_t = torch.as_tensor(np.maximum(t - 1, 0), device=dev)[:, None]
            prev_a = torch.as_tensor(self.actions[rows, np.maximum(t - 1, 0)], device=dev)[:, None]
            a_tok = model.tokens(torch.zeros_like(rtg), torch.zeros_like(state), prev_a, prev_t)[:, 2:]
            new = torch.cat([a_tok, new], dim=1)
        action, self.cache = model.step(new, self.cache)
        return action.cpu().numpy()


def evaluate(model: torch.nn.Module, args: Args, targets: list[float], device: torch.device, seed_offset: int,
             video_dir: Path | None = None) -> dict[float, rl_utils.EvalResult]:
    """``args.eval_episodes`` episodes at each target return, in parallel envs with the env's own action bounds
    mapped from [-1, 1] (the dataset's actions were mapped onto it the same way)."""
    model.eval()
    env_fn = lambda i: rl_utils.make_env(args.env_id, i, unit_actions=True, training=False,  # noqa: E731
                                         capture_video=args.capture_video and video_dir is not None,
                                         video_dir=video_dir)
    cfg = model.cfg
    results = {}
    for target in targets:
        policy = DTPolicy(model, target, args.eval_episodes, args, device, cfg.act_dim, cfg.state_dim)
        results[target] = rl_utils.evaluate(env_fn, policy, args.eval_episodes, seed=args.seed + seed_offset)
    model.train()
    return results


# ----------------------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------------------


def build_model(args: Args, state_dim: int, act_dim: int, device: torch.device) -> torch.nn.Module:
    cfg = DTConfig(state_dim, act_dim, context=args.context, n_embd=args.n_embd, n_layer=args.n_layer,
                   n_head=args.n_head, dropout=args.dropout, max_ep_len=args.max_ep_len, backbone=args.backbone,
                   activation=args.activation)
    return (DecisionTransformer(cfg) if args.model == "dt" else MLPBC(cfg)).to(device)


def env_dims(env_id: str) -> tuple[int, int]:
    import gymnasium as gym

    env = gym.make(env_id)
    space = env.action_space
    env.close()
    if not isinstance(space, gym.spaces.Box):
        raise rl_utils.UsageError(f"the Decision Transformer here needs continuous (Box) actions; {env_id} has {space}")
    return rl_utils.require_vector_obs(env.observation_space, "Decision Transformer"), int(np.prod(space.shape))


def report(results: dict[float, rl_utils.EvalResult], run: rl_utils.Run | None, step: int) -> float:
    """Log and print every target's mean return; returns the first (headline) target's."""
    parts = []
    for target, result in results.items():
        mean = float(result.returns.mean())
        if run is not None:
            run.log(f"eval/return_target_{target:g}", mean, step)
        parts.append(f"R̂ {target:g}: {mean:8.1f} ± {result.returns.std():6.1f}")
    headline = float(next(iter(results.values())).returns.mean())
    if run is not None:
        run.log("eval/return", headline, step)
    print(f"step {step:>8d} | eval " + " | ".join(parts) + (f" | {run.elapsed:6.0f}s" if run else ""), flush=True)
    return headline


def eval_only(args: Args) -> None:
    if not args.checkpoint:
        raise rl_utils.UsageError("--eval-only needs --checkpoint PATH")
    ckpt = rl_utils.open_checkpoint(args.checkpoint, Args)
    saved = Args(**{**ckpt.args, "eval_episodes": args.eval_episodes, "capture_video": args.capture_video,
                    "eval_context": args.eval_context, "target_returns": args.target_returns or
                    ckpt.args["target_returns"]})
    check_args(saved)
    device = rl_utils.setup(saved)
    model = build_model(saved, *env_dims(saved.env_id), device)
    rl_utils.load_state_into(model, ckpt["model"])
    results = evaluate(model, saved, saved.targets(), device, rl_utils.EVAL_SEED_OFFSET, ckpt.run_dir / "videos")
    print(f"checkpoint step {ckpt.step} ({saved.env_id}, {args.eval_episodes} episodes per target)")
    report(results, None, ckpt.step)


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args)
    if args.eval_only:
        return eval_only(args)
    check_args(args)
    dataset = common.load_dataset(args)
    targets = args.targets(dataset)
    args.target_returns = ",".join(f"{t:g}" for t in targets)  # recorded in config.json and checkpoints
    device = rl_utils.setup(args)
    state_dim, act_dim = env_dims(args.env_id)
    import gymnasium as gym

    raw = gym.make(args.env_id)
    actions = dataset.unit_actions(raw.action_space.low, raw.action_space.high)  # the model acts in [-1, 1]
    raw.close()
    sampler = SegmentSampler(dataset, actions, args.context, args.delayed_reward, args.seed)
    model = build_model(args, state_dim, act_dim, device)
    # AdamW on every parameter, as the authors' code
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: min(1.0, (t + 1) / args.warmup_steps))
    progress = on_policy.Progress(next_eval=args.eval_every)
    objects = dict(model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, progress=progress)
    if ckpt is not None:
        rl_utils.Run.restore(ckpt, **objects)
    else:
        common.set_obs_stats(dataset, model)
        print(f"dataset {args.dataset}: {json.dumps(dataset.summary(), default=float)}")
    algo = "dt" if args.model == "dt" else "dt_bc"
    run = rl_utils.Run(args, algo, resume=ckpt)

    def checkpoint(name: str) -> Path:
        return run.save(name, progress.global_step, **objects)

    latest: dict[str, float] = {}  # the last evaluation's mean return per target (summary.json)

    def evaluate_now() -> float:
        results = evaluate(model, args, targets, device, rl_utils.EVAL_SEED_OFFSET)
        latest.update({f"{t:g}": float(r.returns.mean()) for t, r in results.items()})
        mean = progress.last_eval = report(results, run, progress.global_step)
        progress.last_eval_step = progress.global_step
        if mean >= progress.best_eval:
            progress.best_eval, progress.best_eval_step = mean, progress.global_step
            checkpoint("best")
        return mean

    run.progress(args.offline_steps, progress.global_step)
    step0, t0 = progress.global_step, run.elapsed
    interrupt = rl_utils.GracefulInterrupt()
    with interrupt.installed():
        while progress.global_step < args.offline_steps and not interrupt.requested:
            loss = action_loss(model, to_torch(sampler.sample(args.batch_size), device), args.return_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            scheduler.step()
            progress.global_step += 1
            step = progress.global_step
            if step % args.log_every == 0:
                sps = (step - step0) / max(run.elapsed - t0, 1e-9)
                run.log_dict({"losses/action_mse": loss.item(), "losses/grad_norm": float(grad_norm),
                              "charts/learning_rate": scheduler.get_last_lr()[0], "charts/SPS": sps}, step)
                run.update_progress(step - run.bar.n, step, sps)
            if args.eval_every and step >= progress.next_eval:
                progress.next_eval += args.eval_every
                if evaluate_now() >= args.target_return:
                    print(f"target return {args.target_return} reached at step {step}")
                    break
            if args.checkpoint_every and step % args.checkpoint_every == 0:
                checkpoint(f"step_{step}")
                checkpoint("latest")
    checkpoint("latest")
    if interrupt.requested:
        run.close()
        print(f"interrupted at step {progress.global_step}: resume with --resume {run.run_dir}")
        return
    if progress.last_eval_step != progress.global_step:
        evaluate_now()  # the headline number always comes from an evaluation of the final model
    finish(run, args, model, progress, targets, device, latest)


def finish(run: rl_utils.Run, args: Args, model: torch.nn.Module, progress: on_policy.Progress,
           targets: list[float], device: torch.device, latest: dict[str, float]) -> None:
    """best.pt on held-out episodes, the learning curve, summary.json."""
    step = progress.global_step
    best = build_model(args, model.cfg.state_dim, model.cfg.act_dim, device)
    rl_utils.load_state_into(best, rl_utils.open_checkpoint(run.ckpt_dir / "best.pt", Args)["model"])
    heldout_results = evaluate(best, args, targets, device, rl_utils.HELDOUT_SEED_OFFSET)
    heldout = float(next(iter(heldout_results.values())).returns.mean())
    run.log("eval/best_heldout_return", heldout, step)
    print(f"best.pt (step {progress.best_eval_step}) on held-out episodes: {heldout:.1f}")
    run.flush()
    rl_utils.plot_curves([run.run_dir], run.run_dir / "learning_curve.png",
                         tags=tuple(f"eval/return_target_{t:g}" for t in targets),
                         title=f"{'Decision Transformer' if args.model == 'dt' else 'BC'} on {args.env_id}")
    run.write_summary(final_eval_return=progress.last_eval, best_eval_return=progress.best_eval,
                      best_eval_step=progress.best_eval_step, best_heldout_return=heldout, env_steps=step,
                      wall_time_s=round(run.elapsed, 1), sps=round(step / max(run.elapsed, 1e-9), 1),
                      algo="dt" if args.model == "dt" else "dt_bc", env_id=args.env_id, seed=args.seed,
                      final_eval_return_by_target=latest)
    run.close()
    common.extend_summary(run.run_dir / "summary.json", args, step)
    print(f"final eval return {progress.last_eval:.1f} (R̂ {targets[0]:g}) after {step} gradient steps "
          f"({run.elapsed:.0f}s) | run folder: {run.run_dir}")


if __name__ == "__main__":
    rl_utils.run_main(main)

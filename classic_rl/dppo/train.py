"""Distributed PPO (Heess et al. 2017): synchronous data-parallel PPO with workers on Ray.

    python classic_rl/dppo/train.py                                  # CartPole-v1, 2 workers on this machine
    python classic_rl/dppo/train.py --num-workers 4 --env-id Hopper-v5
    python classic_rl/dppo/train.py --ray-address 10.0.0.1:6379      # join a cluster (`ray start --head`)
    python classic_rl/dppo/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt

Each worker is a Ray actor holding ``--num-envs`` envs, a copy of the policy and its own rollout storage. Per
update: the learner broadcasts its weights; every worker collects a rollout and computes GAE on it; then, for
every minibatch step of every epoch, every worker computes the PPO gradient on its own shard with the newest
weights, the learner averages the gradients, clips, takes one Adam step and broadcasts the weights again. The
loss is PPO's own (``classic_rl/ppo/train.py``'s ``ppo_loss``): DPPO changes where the gradient is computed,
not what it is. With equal shards the average of the workers' gradients is the gradient of the pooled batch
(tested), so N workers x E envs behave as one PPO with N·E envs.

Read top to bottom: arguments, the pure pieces (shard statistics, gradient averaging), the worker, the loop.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import on_policy  # noqa: E402
from classic_rl.dppo.model import ActorCritic, greedy_policy  # noqa: E402,F401 (greedy_policy: for users)
from classic_rl.ppo import train as ppo  # noqa: E402


@dataclass
class Args(ppo.Args):
    """Train DPPO (PPO with data-parallel workers on Ray) on a gymnasium env with Discrete or Box actions."""

    num_workers: int = 2
    """Ray workers; each collects num_envs x num_steps steps per update and computes gradients on them"""
    num_envs: int = 4
    """parallel environments per worker (SyncVectorEnv); an update uses num_workers x num_envs x num_steps steps"""
    ray_address: str = ""
    """HOST:PORT of a Ray cluster to join (`ray start --head` prints it); empty = a local Ray on this machine"""

    LIMITS = {**ppo.Args.LIMITS, "num_workers": (1, None)}


# PPO's presets with the envs divided among the workers where they divide: 2 workers x 4 envs = PPO's 8 envs
# on CartPole, so with the default 2 workers the batch (and every hyperparameter) is PPO's.
PRESETS: dict[str, dict[str, object]] = {
    env_id: {**preset, "num_envs": max(1, int(preset["num_envs"]) // 2)} for env_id, preset in ppo.PRESETS.items()
}


# ---------------------------------------------------------------- the pure pieces
def pooled_moments(parts: list[tuple[float, float, int]]) -> tuple[float, float]:
    """(mean, std) of the union of shards given each shard's (sum, sum of squares, count): what the advantages
    are standardised with, so every worker scales its shard exactly as one PPO would scale the pooled batch."""
    total = sum(p[0] for p in parts)
    squares = sum(p[1] for p in parts)
    count = sum(p[2] for p in parts)
    mean = total / count
    var = max(squares / count - mean * mean, 0.0) * count / max(count - 1, 1)  # unbiased, as torch.std
    return mean, float(np.sqrt(var))


def average_gradients(grads: list[np.ndarray], counts: list[int]) -> np.ndarray:
    """Σ_i n_i g_i / Σ_i n_i of flat gradients: each worker's is of a mean over its n_i samples, so this weighted
    mean is the gradient of the mean over the pooled samples (the plain mean when the shards are equal)."""
    return sum(n * g for g, n in zip(grads, counts)) / sum(counts)


# Weights and gradients travel as one flat float32 numpy vector each: Ray passes numpy arrays without pickling
# them, and measured here one broadcast + gather round trip with 2 workers took ~4x longer as a state dict
# of tensors.
def get_flat(module: torch.nn.Module) -> np.ndarray:
    return torch.nn.utils.parameters_to_vector(module.parameters()).detach().cpu().numpy()


def set_flat(module: torch.nn.Module, vector: np.ndarray) -> None:
    params = list(module.parameters())
    torch.nn.utils.vector_to_parameters(torch.as_tensor(vector, device=params[0].device), params)


def obs_moments_since(before: dict, after: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, var, count) of the observations a worker's running statistics absorbed between two snapshots,
    recovered from the combined ones by inverting the parallel-variance update (Chan et al.). The learner
    merges these into the one set of statistics every worker then uses: workers that each kept their own would
    feed the same policy differently scaled inputs."""
    n0, n1 = before["count"], after["count"]
    k = n1 - n0
    mean = (after["mean"] * n1 - before["mean"] * n0) / k
    delta = mean - before["mean"]
    m2 = after["var"] * n1 - before["var"] * n0 - delta ** 2 * n0 * k / n1
    return mean, np.maximum(m2 / k, 0.0), k


# ---------------------------------------------------------------- the worker (a Ray actor)
def worker_seed(seed: int, index: int) -> int:
    """The seed of worker ``index``'s random stream (actions, minibatch order): drawn from (seed, index) by
    numpy's SeedSequence, so the workers' streams are independent of each other and of the learner's (seed)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


class EpisodeLog:
    """What ``on_policy.collect_rollout`` logs, kept for the learner (a worker has no run folder of its own)."""

    def __init__(self) -> None:
        self.episodes: list[tuple[float, int]] = []

    def log_episodes(self, episodes: list, step: int) -> None:
        self.episodes += episodes


class Worker:
    """``num_envs`` envs, a copy of the policy, a rollout buffer. Env seeds continue where the previous worker's
    end (worker i's env j gets seed + i·num_envs + j, as env i·num_envs + j of one big vector env), and each
    worker's own random stream (actions, minibatch order) is seeded from the run's seed and its index."""

    def __init__(self, args: dict, index: int):
        self.args = Args(**args)
        a = self.args
        torch.set_num_threads(1)  # one process per core: more threads only contend
        rl_utils.set_seed(worker_seed(a.seed, index))
        self.envs = on_policy.make_envs(dataclasses.replace(a, seed=a.seed + index * a.num_envs))
        self.device = torch.device("cpu")
        self.agent = make_agent(a, self.envs, self.device)
        self.buffer = rl_utils.RolloutBuffer(a.num_steps, a.num_envs, self.envs.single_observation_space,
                                             self.envs.single_action_space)
        self.obs, _ = self.envs.reset(seed=a.seed + index * a.num_envs)
        self.obs_norm = rl_utils.find_wrapper(self.envs, rl_utils.NormalizeObservation)
        self.progress = on_policy.Progress()
        self.minibatches: Any = iter(())

    def collect(self, weights: np.ndarray, obs_stats: dict | None) -> dict:
        """One rollout with ``weights`` (observations normalised with the learner's ``obs_stats``), then GAE.
        Returns the episodes that ended, this shard's advantage moments and the observation moments it saw."""
        set_flat(self.agent, weights)
        if self.obs_norm is not None and obs_stats is not None:
            self.obs_norm.load_state_dict(obs_stats)
        log = EpisodeLog()
        self.obs, last_values = on_policy.collect_rollout(self.agent, self.envs, self.buffer, self.obs,
                                                          self.progress, log, self.device)
        self.buffer.compute_advantages(last_values, self.args.gamma, self.args.gae_lambda)
        adv = self.buffer.advantages
        out = {"episodes": log.episodes, "adv": (float(adv.sum()), float((adv ** 2).sum()), adv.numel()),
               "returns": self.buffer.returns.flatten().numpy(), "values": self.buffer.values.flatten().numpy()}
        if self.obs_norm is not None and obs_stats is not None:
            out["obs"] = obs_moments_since(obs_stats, self.obs_norm.state_dict())
        return out

    def gradient(self, weights: np.ndarray, first: bool, adv_mean: float, adv_std: float, clip_coef: float
                 ) -> tuple[np.ndarray, int, dict[str, float]]:
        """PPO's gradient on this worker's next minibatch (``first``: a new epoch, a fresh permutation) at
        ``weights``; returns (flat gradient in ``parameters()`` order, minibatch size, loss statistics)."""
        a = self.args
        set_flat(self.agent, weights)
        if first:
            self.minibatches = iter(self.buffer.minibatches(a.num_steps * a.num_envs // a.num_minibatches))
        mb = next(self.minibatches)
        logprob, entropy, value = self.agent.evaluate_actions(mb.obs, mb.actions)
        adv = (mb.advantages - adv_mean) / (adv_std + 1e-8) if a.norm_adv else mb.advantages
        loss, stats = ppo.ppo_loss(logprob, mb.logprobs, adv, value, mb.values, mb.returns, entropy, clip_coef,
                                   a.clip_vloss, a.vf_coef, a.ent_coef)
        grads = torch.autograd.grad(loss, list(self.agent.parameters()))
        flat = torch.cat([g.reshape(-1) for g in grads]).numpy()
        return flat, len(mb.advantages), {k: float(v) for k, v in stats.items()}

    def state_dict(self) -> dict:
        """Everything a resume needs to continue this worker exactly: envs, current observation, random state."""
        return {"envs": rl_utils.get_env_state(self.envs), "obs": self.obs, "rng": rl_utils.rng_state(),
                "next_start": self.buffer.next_start.copy()}

    def load_state_dict(self, state: dict) -> bool:
        exact = rl_utils.set_env_state(self.envs, state["envs"])
        if exact:
            self.obs = state["obs"]
            self.buffer.next_start = state["next_start"].copy()
        rl_utils.set_rng_state(state["rng"])
        return exact


# ---------------------------------------------------------------- the loop (the learner)
def make_agent(args: Args, envs, device: torch.device) -> ActorCritic:
    return on_policy.build_agent(args, envs, device, "DPPO")


def validate(args: Args) -> int:
    """Minibatch size per worker; one-line errors before Ray starts."""
    shard = args.num_steps * args.num_envs
    if shard % args.num_minibatches:
        raise rl_utils.UsageError(f"--num-minibatches {args.num_minibatches} must divide num_steps x num_envs "
                                  f"= {shard} (each worker's shard)")
    if args.ray_address:
        rl_utils.check_ray_address(args.ray_address)
    return shard // args.num_minibatches


class Learner:
    """The learner's side of an update: broadcast, gather, average, step. Holds the pool and the policy."""

    def __init__(self, args: Args, pool: rl_utils.RayPool, agent: ActorCritic, optimizer: torch.optim.Optimizer,
                 stats_envs, run: rl_utils.Run, progress: on_policy.Progress):
        self.args, self.pool, self.agent, self.optimizer = args, pool, agent, optimizer
        self.run, self.progress = run, progress
        self.obs_norm = rl_utils.find_wrapper(stats_envs, rl_utils.NormalizeObservation)
        self.params = list(agent.parameters())

    def weights(self) -> Any:
        return self.pool.put(get_flat(self.agent))

    def collect(self) -> tuple[float, float, float]:
        """Every worker collects a rollout; merge observation statistics; returns (adv mean, adv std, explained
        variance of the pooled rollout)."""
        stats = self.obs_norm.state_dict() if self.obs_norm is not None else None
        results = self.pool.get(self.pool.call_all("collect", self.weights(), stats))
        for r in results:
            self.progress.global_step += len(r["returns"])
            self.run.log_episodes(r["episodes"], self.progress.global_step)
        if self.obs_norm is not None:
            for r in results:  # the same order every time: the merged statistics are reproducible
                self.obs_norm.obs_rms.update_from_moments(*r["obs"])
        returns = np.concatenate([r["returns"] for r in results])
        values = np.concatenate([r["values"] for r in results])
        explained = 1 - np.var(returns - values) / max(np.var(returns), 1e-8)
        return (*pooled_moments([r["adv"] for r in results]), float(explained))

    def step(self, first: bool, adv_mean: float, adv_std: float, clip_coef: float) -> dict[str, float]:
        """One gradient step: every worker's gradient on its next minibatch, averaged, clipped, Adam."""
        out = self.pool.get(self.pool.call_all("gradient", self.weights(), first, adv_mean, adv_std, clip_coef))
        grad = torch.as_tensor(average_gradients([g for g, _, _ in out], [n for _, n, _ in out]))
        for p, g in zip(self.params, torch.split(grad, [p.numel() for p in self.params])):
            p.grad = g.view_as(p).to(p.device)
        torch.nn.utils.clip_grad_norm_(self.params, self.args.max_grad_norm, foreach=True)
        self.optimizer.step()
        return {k: float(np.mean([s[k] for _, _, s in out])) for k in out[0][2]}


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS)
    if args.eval_only:
        return on_policy.eval_only(Args, args, "DPPO", make_agent)
    validate(args)
    batch_size = args.num_steps * args.num_envs * args.num_workers
    num_iterations = -(-args.total_timesteps // batch_size)  # ceil: at least total_timesteps steps
    device = rl_utils.setup(args)
    stats_envs = on_policy.make_envs(dataclasses.replace(args, num_envs=1))  # spaces, statistics, evaluation
    agent = make_agent(args, stats_envs, device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)  # as PPO's
    progress = on_policy.Progress(next_eval=args.eval_every)
    if ckpt is not None:
        rl_utils.Run.restore(ckpt, agent=agent, optimizer=optimizer, progress=progress, envs=stats_envs)
    run = rl_utils.Run(args, "dppo", resume=ckpt)
    interrupt = rl_utils.GracefulInterrupt()
    with rl_utils.ray_session(args.ray_address, num_workers=args.num_workers):
        pool = rl_utils.RayPool(Worker, args.num_workers, lambda i: (dataclasses.asdict(args), i), name="worker")
        if ckpt is not None:
            saved = ckpt["workers"]  # [] when Ctrl-C had stopped the workers before they could be asked
            exact = pool.get([pool.call(i, "load_state_dict", w) for i, w in enumerate(saved)])
            if len(saved) != args.num_workers or not all(exact):
                print("note: these envs cannot be saved mid-episode: the resumed run starts fresh episodes")
        learner = Learner(args, pool, agent, optimizer, stats_envs, run, progress)

        def checkpoint(name: str, workers: list | None = None) -> Path:
            if workers is None:
                workers = pool.get(pool.call_all("state_dict"))
            return run.save(name, progress.global_step, agent=agent, optimizer=optimizer, progress=progress,
                            envs=stats_envs, workers=workers)

        evaluate = on_policy.Evaluator(args, agent, stats_envs, device, run, progress, checkpoint, make_agent)
        run.progress(num_iterations * batch_size, progress.global_step)
        with interrupt.installed():
            try:
                while progress.iteration < num_iterations and not interrupt.requested:
                    frac = 1.0 - progress.iteration / num_iterations  # 1 -> 0 over the run
                    optimizer.param_groups[0]["lr"] = args.learning_rate * (frac if args.anneal_lr else 1.0)
                    clip_coef = args.clip_coef * (frac if args.anneal_clip else 1.0)

                    # ---- every worker collects a rollout with the current weights (in parallel), GAE on its own
                    t_collect = time.perf_counter()
                    adv_mean, adv_std, explained_var = learner.collect()
                    collect_s = time.perf_counter() - t_collect

                    # ---- epochs of minibatch steps: gradients on the shards, averaged here, one Adam step each
                    t_update = time.perf_counter()
                    for _epoch in range(args.update_epochs):
                        for j in range(args.num_minibatches):
                            stats = learner.step(j == 0, adv_mean, adv_std, clip_coef)
                        if args.target_kl and stats["approx_kl"] > args.target_kl:
                            break
                    update_s = time.perf_counter() - t_update
                    progress.iteration += 1

                    step = progress.global_step
                    run.log_dict({f"losses/{k}": v for k, v in stats.items()}, step)
                    run.log_dict({"losses/explained_variance": explained_var,
                                  "charts/learning_rate": optimizer.param_groups[0]["lr"],
                                  "charts/SPS": step / max(run.elapsed, 1e-9),
                                  "charts/collect_SPS": batch_size / max(collect_s, 1e-9),
                                  "charts/update_seconds": update_s}, step)
                    run.update_progress(batch_size, step, step / max(run.elapsed, 1e-9))
                    if evaluate.due() and evaluate() >= args.target_return:
                        print(f"target return {args.target_return} reached at step {step}")
                        break
                    if args.checkpoint_every and step % args.checkpoint_every < batch_size:
                        checkpoint(f"step_{step}")
                        checkpoint("latest")
            except rl_utils.WorkerError:
                if not interrupt.requested:  # Ctrl-C in a terminal reaches the workers too: that is not a failure
                    raise
        if interrupt.requested:
            try:
                workers = pool.get(pool.call_all("state_dict"), timeout=10)
            except Exception:  # noqa: BLE001 - the same Ctrl-C may have stopped the workers: save the learner
                workers = []
            latest = checkpoint("latest", workers)
            run.close()
            print(f"interrupted at step {progress.global_step}; resume with: python {sys.argv[0]} --resume {latest}")
        else:
            checkpoint("latest")
            evaluate.finish("DPPO")
        pool.close()
    stats_envs.close()


if __name__ == "__main__":
    rl_utils.run_main(main)

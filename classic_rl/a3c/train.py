"""Asynchronous Advantage Actor-Critic (A3C, Mnih et al. 2016): Hogwild workers, each with its own env and model
copy, apply n-step actor-critic gradients to one model in shared memory, without locks.

    python classic_rl/a3c/train.py                                   # CartPole-v1, one worker per core
    python classic_rl/a3c/train.py --num-workers 4 --env-id LunarLander-v3
    python classic_rl/a3c/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt

Read top to bottom: arguments, the shared optimizers, the worker (collect n steps, A2C's loss, gradients onto the
shared model, one step of the shared optimizer), then the main process, which only supervises: it owns the run
folder, the logs, evaluation and checkpoints, and ends the run at --total-timesteps (a step counter in shared
memory), on Ctrl-C, or within a second of a worker failing.

Workers start by ``fork`` on Linux (``--start-method``): a copy of the main process, ready at once. Forking a
process that runs threads can deadlock the child (a lock held by another thread stays held forever), so the main
process forks before it starts any: before the run folder's TensorBoard writer, the progress bar, with torch at
one thread. ``spawn`` (the default elsewhere; macOS cannot fork safely) starts a fresh interpreter per worker
and costs its imports, ~2-3 s a worker on this 2-core machine, on every run.
"""

from __future__ import annotations

import errno
import math
import os
import queue as queue_lib
import signal
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl import on_policy  # noqa: E402
from classic_rl.a2c import train as a2c  # noqa: E402
from classic_rl.a2c.train import a2c_loss  # noqa: E402
from classic_rl.a3c.model import ActorCritic  # noqa: E402

CPU = torch.device("cpu")


@dataclass
class Args(a2c.Args):
    """Train A3C (asynchronous advantage actor-critic, Hogwild workers) on a gymnasium env with Discrete or Box
    actions. Runs on the CPU (the workers share the model in CPU memory). A resume restores the weights, the
    optimizer statistics and the counters, but is not exact: Hogwild's interleaving of updates is not
    reproducible. The loss and its flags are A2C's (classic_rl/a2c/train.py)."""

    resume: str = ""
    """checkpoint file, or run folder (its ckpt/latest.pt), to continue from: weights, optimizer statistics and
    counters; not an exact continuation (Hogwild's interleaving of updates is not reproducible)"""
    torch_threads: int = 1
    """torch CPU threads of each worker (and of the main process); more only contend for the cores"""
    norm_obs: bool = False
    """not available in A3C: each worker would keep running statistics of its own (an error)"""
    norm_reward: bool = False
    """not available in A3C: each worker would keep running statistics of its own (an error)"""
    save_buffer: bool = False
    """unused: A3C keeps no replay buffer (each rollout is used once, then dropped)"""
    num_workers: int = os.cpu_count() or 1
    """worker processes, each with its own env(s), model copy and rollouts (default: this machine's CPU count)"""
    start_method: str = "fork" if sys.platform.startswith("linux") else "spawn"
    """how workers start: fork (instant; forked before the main process starts any thread) or spawn (a fresh
    interpreter each, ~2-3 s of imports; the default off Linux)"""
    num_envs: int = 1
    """envs per worker (SyncVectorEnv); one update uses num_steps x num_envs transitions"""
    num_steps: int = 20
    """steps per env per update: the n of the n-step return (the paper: 5, unstable on CartPole here)"""
    optimizer: str = "rmsprop"
    """rmsprop (the paper's shared RMSprop) or adam; both keep their statistics in shared memory"""
    ent_coef: float = 0.01
    """entropy bonus coefficient (the paper: 0.01)"""
    log_every: int = 1_000
    """env steps (per worker) between the loss rows a worker sends; the main process logs SPS as often"""

    LIMITS = {"num_workers": (1, None)}
    CHOICES = {"start_method": ("fork", "spawn")}

    def __post_init__(self) -> None:
        if self.norm_obs or self.norm_reward:  # each worker would keep statistics of its own
            raise rl_utils.UsageError("A3C does not normalise observations or rewards (--norm-obs, --norm-reward): "
                                      "each worker would keep its own running statistics")


# Tuned defaults per env, applied unless the flag is typed.
PRESETS: dict[str, dict[str, object]] = {
    "CartPole-v1": dict(total_timesteps=100_000, eval_every=10_000),
}


# ----------------------------------------------------------------------------------------------------------------
# Shared optimizers: torch's Adam / RMSprop, with every per-parameter statistic created up front and moved to
# shared memory, so all workers update the same moments (the paper's "shared RMSProp", its best variant).
# torch creates these lazily at the first step, which would give each worker a private copy; creating them here,
# with the same shapes and dtypes torch would, makes the update math exactly torch's (tests/test_a3c.py).
# ----------------------------------------------------------------------------------------------------------------
class _SharedStatistics:
    """Mixin for a torch optimizer: :meth:`fresh_state` per parameter, created in ``__init__``, then shared."""

    state: Any
    param_groups: list[dict[str, Any]]

    def _create_state(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = self.fresh_state(p, group)
        self.share_memory()

    def fresh_state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def share_memory(self) -> None:
        """Move every statistic to shared memory (in place; a no-op for those already there)."""
        for state in self.state.values():
            for value in state.values():
                value.share_memory_()

    def statistics(self) -> list[dict[str, torch.Tensor]]:
        """The per-parameter state dicts in parameter order: what a worker adopts."""
        return [self.state[p] for group in self.param_groups for p in group["params"]]

    def adopt(self, statistics: list[dict[str, torch.Tensor]]) -> None:
        """Use ``statistics`` (another process's :meth:`statistics`, received in shared memory) as this
        optimizer's state: steps here then update them in place, where every worker sees them."""
        params = [p for group in self.param_groups for p in group["params"]]
        if len(params) != len(statistics):
            raise ValueError(f"{len(statistics)} parameter states for {len(params)} parameters")
        for p, state in zip(params, statistics):
            self.state[p] = state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # type: ignore[misc]  # builds new tensors: share them again
        self.share_memory()


class SharedAdam(_SharedStatistics, torch.optim.Adam):
    """Adam whose step count and moments live in shared memory (updated lock-free, Hogwild style)."""

    def __init__(self, params: Any, **kwargs: Any):
        super().__init__(params, **kwargs)
        self._create_state()

    def fresh_state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, torch.Tensor]:
        state = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p)
        return state


class SharedRMSprop(_SharedStatistics, torch.optim.RMSprop):
    """RMSprop whose step count and running mean of squared gradients live in shared memory."""

    def __init__(self, params: Any, **kwargs: Any):
        super().__init__(params, **kwargs)
        self._create_state()

    def fresh_state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, torch.Tensor]:
        state = {"step": torch.tensor(0.0), "square_avg": torch.zeros_like(p)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(p)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(p)
        return state


def make_optimizer(args: Args, agent: ActorCritic) -> SharedAdam | SharedRMSprop:
    if args.optimizer == "rmsprop":
        return SharedRMSprop(agent.parameters(), lr=args.learning_rate, alpha=args.rms_alpha, eps=args.optim_eps)
    return SharedAdam(agent.parameters(), lr=args.learning_rate, eps=args.optim_eps)


# ----------------------------------------------------------------------------------------------------------------
# The worker: one process, one env (or a small vector env), one local copy of the model.
# ----------------------------------------------------------------------------------------------------------------
def worker_seed(seed: int, rank: int, num_envs: int) -> int:
    """Worker ``rank``'s seed: ``seed + rank`` (with one env per worker). Different workers must not play the
    same episodes with the same noise (that would defeat the decorrelation asynchrony is for), yet a run must
    follow from ``--seed``. With several envs per worker the offset is ``rank * num_envs``, so every env of every
    worker has its own seed ``seed + global env index``, as a SyncVectorEnv's sub-envs do. Evaluation seeds
    start at ``seed + rl_utils.EVAL_SEED_OFFSET``, far above."""
    return seed + rank * num_envs


class _EpisodeSink:
    """Stands in for ``Run`` in ``on_policy.collect_rollout``: keeps the finished episodes to send to main."""

    def __init__(self) -> None:
        self.episodes: list[tuple[float, int]] = []

    def log_episodes(self, episodes: list[tuple[float, int]], step: int) -> None:
        self.episodes.extend(episodes)

    def take(self) -> list[tuple[float, int]]:
        out, self.episodes = self.episodes, []
        return out


def sync(local_params: list[torch.Tensor], shared_params: list[torch.Tensor]) -> None:
    """Copy the shared weights into the local model (the paper's θ' ← θ before each rollout)."""
    with torch.no_grad():
        torch._foreach_copy_(local_params, shared_params)


def update(args: Args, local: ActorCritic, local_params: list[torch.Tensor], shared_params: list[torch.Tensor],
           optimizer: torch.optim.Optimizer, buffer: rl_utils.RolloutBuffer, last_values: torch.Tensor
           ) -> dict[str, torch.Tensor]:
    """One A3C update from a full rollout in ``buffer`` (all num_steps x num_envs transitions: the notes' bug
    cleared the buffer every step, so each update saw one). n-step returns cut at terminations and bootstrap
    truncations (RolloutBuffer); the gradient of A2C's loss is taken on the *local* copy that collected the
    rollout (``local_params`` are its parameters), then handed to the shared parameters, and the shared optimizer
    steps them: no lock, other workers may be stepping the same tensors at the same time (Hogwild)."""
    buffer.compute_advantages(last_values, args.gamma, args.gae_lambda)
    batch = buffer.all()
    logprob, entropy, value = local.evaluate_actions(batch.obs, batch.actions)
    adv = batch.advantages
    if args.norm_adv:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    loss, stats = a2c_loss(logprob, adv, value, batch.returns, entropy, args.vf_coef, args.ent_coef)
    for mine in local_params:
        mine.grad = None
    loss.backward()
    torch.nn.utils.clip_grad_norm_(local_params, args.max_grad_norm, foreach=True)
    for mine, theirs in zip(local_params, shared_params):
        theirs.grad = mine.grad  # a per-process attribute: other workers' shared tensors keep their own grads
    optimizer.step()
    return stats


def worker(rank: int, args: Args, shared: ActorCritic, statistics: list[dict[str, torch.Tensor]], counter: Any,
           go: Any, stop: Any, messages: Any, parent_pid: int) -> None:
    """Process entry point: run :func:`work`; report any exception to the main process as one message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: main decides
    try:
        work(rank, args, shared, statistics, counter, go, stop, messages, parent_pid)
    except BaseException as err:  # noqa: BLE001 - everything goes to main, which ends the run with one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        messages.put(("error", rank, f"{type(err).__name__}: {first}".rstrip(": "), traceback.format_exc()))
        sys.exit(1)


def work(rank: int, args: Args, shared: ActorCritic, statistics: list[dict[str, torch.Tensor]], counter: Any,
         go: Any, stop: Any, messages: Any, parent_pid: int) -> None:
    """Worker ``rank``'s life: its own env(s) and local model, then rollouts and updates until the shared step
    counter reaches --total-timesteps or main sets ``stop``. It starts stepping when main sets ``go`` (the run
    folder exists and its clock runs)."""
    torch.set_num_threads(args.torch_threads or 1)  # several workers on few cores: more threads only contend
    seed = worker_seed(args.seed, rank, args.num_envs)
    rl_utils.set_seed(seed)
    envs = rl_utils.make_vec_env(args.env_id, args.num_envs, seed, unit_actions=True)
    local = on_policy.build_agent(args, envs, CPU, "A3C")
    optimizer = make_optimizer(args, shared)
    optimizer.adopt(statistics)
    buffer = rl_utils.RolloutBuffer(args.num_steps, args.num_envs, envs.single_observation_space,
                                    envs.single_action_space)
    batch_size = args.num_steps * args.num_envs
    sink, progress = _EpisodeSink(), on_policy.Progress()
    obs, _ = envs.reset(seed=seed)
    local_params, shared_params = list(local.parameters()), list(shared.parameters())
    totals: dict[str, float] = {}
    updates, next_log = 0, args.log_every
    while not go.wait(0.5):
        if stop.is_set() or os.getppid() != parent_pid:
            return
    while not stop.is_set() and counter.value < args.total_timesteps:
        if os.getppid() != parent_pid:  # the main process is gone (killed): never outlive it
            break
        if args.anneal_lr:
            optimizer.param_groups[0]["lr"] = args.learning_rate * max(0.0, 1 - counter.value / args.total_timesteps)
        sync(local_params, shared_params)
        obs, last_values = on_policy.collect_rollout(local, envs, buffer, obs, progress, sink, CPU)
        stats = update(args, local, local_params, shared_params, optimizer, buffer, last_values)
        with counter.get_lock():
            counter.value += batch_size
            step = counter.value
        updates += 1
        for key, value in stats.items():
            totals[key] = totals.get(key, 0.0) + float(value)
        due = progress.global_step >= next_log
        if due or sink.episodes:
            means = None
            if due:
                means, totals, updates = {k: v / updates for k, v in totals.items()}, {}, 0
                next_log += args.log_every
            messages.put(("log", rank, step, sink.take(), means))
    envs.close()


# ----------------------------------------------------------------------------------------------------------------
# The main process: validate, start the workers, supervise (logs, evaluation, checkpoints), stop them on any exit.
# ----------------------------------------------------------------------------------------------------------------
class Workers:
    """The worker processes, the shared step counter and stop flag, and the message queue from workers to main."""

    STOP_GRACE_S = 5.0  # a worker finishes its current update (milliseconds) before it is terminated

    def __init__(self, args: Args, shared: ActorCritic, optimizer: SharedAdam | SharedRMSprop, start_step: int):
        ctx = mp.get_context(args.start_method)
        self.counter = ctx.Value("q", start_step)  # env steps taken by all workers together (int64, with a lock)
        self.go, self.stop = ctx.Event(), ctx.Event()
        self.messages = ctx.Queue()
        self.procs = [ctx.Process(target=worker, name=f"a3c-worker-{rank}", daemon=True,
                                  args=(rank, args, shared, optimizer.statistics(), self.counter, self.go,
                                        self.stop, self.messages, os.getpid()))
                      for rank in range(args.num_workers)]
        self.errors: list[tuple[int, str, str]] = []

    def start(self) -> None:
        # Children inherit an ignored SIGINT (forked, or through exec when spawned), so a Ctrl-C while they start
        # cannot kill them with a traceback; each worker keeps ignoring it, and the main process stops them.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for proc in self.procs:
                proc.start()
        finally:
            signal.signal(signal.SIGINT, previous)

    def poll(self, handle: Any, timeout: float) -> None:
        """Hand every waiting message to ``handle`` (errors are kept in ``errors``); wait up to ``timeout``."""
        try:
            msg = self.messages.get(timeout=timeout) if timeout > 0 else self.messages.get_nowait()
            while True:
                if msg[0] == "error":
                    self.errors.append(msg[1:])
                else:
                    handle(*msg[1:])
                msg = self.messages.get_nowait()
        except queue_lib.Empty:
            pass

    def failure(self, handle: Any) -> str | None:
        """The first failure as ``worker R: ...`` (an exception it reported, or its death), else None."""
        dead = [(rank, p.exitcode) for rank, p in enumerate(self.procs) if p.exitcode not in (None, 0)]
        if dead:
            self.poll(handle, 0.1)  # its report is written before it exits; collect it
        if self.errors:
            rank, message, _ = self.errors[0]
            return f"worker {rank}: {message}"
        if dead:
            rank, code = dead[0]
            return f"worker {rank} died ({f'signal {-code}' if code < 0 else f'exit code {code}'})"
        return None

    def traceback_note(self, run_dir: Path) -> str:
        """Write the failed worker's traceback into the run folder; the error line says where it is."""
        if not self.errors:
            return ""
        rank, _, text = self.errors[0]
        path = run_dir / f"worker{rank}_traceback.txt"
        try:
            path.write_text(text)
        except OSError:
            return ""
        return f" (traceback: {path})"

    def finished(self) -> bool:
        return all(p.exitcode == 0 for p in self.procs)

    def close(self, handle: Any) -> None:
        """Stop every worker: the stop flag, then (after a grace period) SIGTERM, then SIGKILL. Messages keep
        being read meanwhile (a process cannot exit while its queue has unsent data)."""
        self.stop.set()
        deadline = time.time() + self.STOP_GRACE_S
        while any(p.is_alive() for p in self.procs) and time.time() < deadline:
            self.poll(handle, 0.05)
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
            proc.join()
        self.poll(handle, 0)
        self.messages.close()


def check_run_folder(args: Args, ckpt: rl_utils.Checkpoint | None) -> None:
    """The check ``rl_utils.Run`` makes of the run folder, made before the workers fork (``Run`` starts a thread):
    an unwritable --runs-dir is one ``error:`` line before any process starts."""
    folder = ckpt.run_dir if ckpt is not None else Path(args.runs_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as err:
        raise rl_utils.UsageError(f"cannot write the run folder {folder}: {err.strerror or err}") from None


class Supervisor:
    """The main process's side of a run: the run folder (logs, TensorBoard, progress bar), the evaluation snapshot,
    checkpoints, and the loop that watches the workers until the run ends."""

    def __init__(self, args: Args, ckpt: rl_utils.Checkpoint | None, workers: Workers, shared: ActorCritic,
                 optimizer: torch.optim.Optimizer, envs: Any, progress: on_policy.Progress):
        self.args, self.workers, self.shared, self.optimizer = args, workers, shared, optimizer
        self.envs, self.progress = envs, progress
        self.run = rl_utils.Run(args, "a3c", resume=ckpt)
        self.eval_agent = on_policy.build_agent(args, envs, CPU, "A3C")  # a snapshot: evaluated and saved
        self.evaluator = on_policy.Evaluator(args, self.eval_agent, envs, CPU, self.run, progress, self.checkpoint)

    def snapshot(self) -> None:
        """Copy the shared weights (which the workers keep changing) into the policy to evaluate and save."""
        self.eval_agent.load_state_dict(self.shared.state_dict())

    def checkpoint(self, name: str) -> Path:
        return self.run.save(name, self.progress.global_step, agent=self.eval_agent, optimizer=self.optimizer,
                             progress=self.progress, envs=self.envs)

    def handle(self, rank: int, step: int, episodes: list[tuple[float, int]], losses: dict[str, float] | None
               ) -> None:
        """A worker's report: its finished episodes and, every --log-every of its steps, its mean losses."""
        self.run.log_episodes(episodes, step)
        if losses:
            self.run.log_dict({f"losses/{k}": v for k, v in losses.items()}, step)

    def loop(self, interrupt: rl_utils.GracefulInterrupt) -> tuple[str | None, bool]:
        """Watch the run until the workers reach --total-timesteps, an evaluation reaches --target-return, Ctrl-C,
        or a worker fails. Returns (the failure or None, whether the target was reached)."""
        args, run, workers, progress, evaluator = self.args, self.run, self.workers, self.progress, self.evaluator
        run.progress(args.total_timesteps, progress.global_step)
        start_step, start_time = progress.global_step, time.time()
        next_log = start_step + args.log_every
        every = args.checkpoint_every
        next_ckpt = (start_step // every + 1) * every if every else math.inf
        workers.go.set()
        while not interrupt.requested:
            workers.poll(self.handle, 0.2)
            failure = workers.failure(self.handle)
            if failure:
                return failure, False
            step = progress.global_step = workers.counter.value
            sps = (step - start_step) / max(time.time() - start_time, 1e-9)
            run.update_progress(step - run.bar.n, step, sps)
            if step >= next_log:
                run.log("charts/SPS", sps, step)
                next_log = step + args.log_every
            if evaluator.due():
                self.snapshot()
                if evaluator() >= args.target_return:
                    print(f"target return {args.target_return} reached at step {progress.last_eval_step}")
                    return None, True
            if step >= next_ckpt:
                self.snapshot()
                self.checkpoint(f"step_{step}")
                self.checkpoint("latest")
                next_ckpt += every * math.ceil((step - next_ckpt + 1) / every)
            if workers.finished():
                break
        return None, False


def main() -> None:
    args, ckpt = rl_utils.parse_run_args(Args, presets=PRESETS)
    if args.eval_only:
        return on_policy.eval_only(Args, args, "A3C")
    # ---- everything the user can get wrong is checked here, before a worker starts
    if rl_utils.setup(args).type != "cpu" and args.device != "auto":
        raise rl_utils.UsageError("A3C's workers share the model in CPU memory (Hogwild): use --device cpu")
    envs = on_policy.make_envs(replace(args, num_envs=1))  # the spaces, and what checkpoints store of the envs
    shared = on_policy.build_agent(args, envs, CPU, "A3C")
    optimizer = make_optimizer(args, shared)
    progress = on_policy.Progress(next_eval=args.eval_every)
    if ckpt is not None:
        rl_utils.Run.restore(ckpt, agent=shared, optimizer=optimizer, progress=progress)
        print("note: A3C resumes weights, optimizer statistics and counters; the workers start fresh episodes, and "
              "Hogwild's interleaving of updates makes the continued run differ from an uninterrupted one")
    check_run_folder(args, ckpt)
    shared.share_memory()
    workers = Workers(args, shared, optimizer, progress.global_step)
    workers.start()  # before the run folder: its TensorBoard writer is this process's first thread (see the top)
    supervisor, interrupt = None, rl_utils.GracefulInterrupt()
    failure, reached = None, False
    try:
        supervisor = Supervisor(args, ckpt, workers, shared, optimizer, envs, progress)
        with interrupt.installed():
            failure, reached = supervisor.loop(interrupt)
    finally:  # on every exit path, a second Ctrl-C and an exception in this process included
        workers.close(supervisor.handle if supervisor else lambda *report: None)
    run = supervisor.run
    if failure:
        run.close()
        raise rl_utils.WorkerError(failure + workers.traceback_note(run.run_dir))
    progress.global_step = workers.counter.value
    if reached:  # the final policy is the evaluated snapshot, not what the workers did during its evaluation
        progress.last_eval_step = progress.global_step
    else:
        supervisor.snapshot()
    latest = supervisor.checkpoint("latest")
    if interrupt.requested:
        run.close()
        print(f"interrupted at step {progress.global_step}; resume with: python {sys.argv[0]} --resume {latest}")
    else:
        supervisor.evaluator.finish("A3C")
    envs.close()


if __name__ == "__main__":
    rl_utils.run_main(main)

"""Unit and property tests for rl_utils: flags, buffers (wrap-around, n-step, PER), autoreset, checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rl_utils
from tests.conftest import run_script


# ---------------------------------------------------------------------------------------------------- flags
@dataclasses.dataclass
class _Args(rl_utils.CommonArgs):
    """Test args."""

    lr: float = 0.1
    """the learning rate"""
    fancy: bool = False
    """turn the fancy thing on"""


def test_parse_args_types_docs_and_presets():
    args = rl_utils.parse_args(_Args, ["--lr", "0.5", "--fancy", "--seed", "3"])
    assert (args.lr, args.fancy, args.seed) == (0.5, True, 3)
    help_text = rl_utils.build_parser(_Args).format_help()
    for field in dataclasses.fields(_Args):
        assert "--" + field.name.replace("_", "-") in help_text
    assert "the learning rate" in help_text and "gymnasium environment id" in help_text
    presets = {"CartPole-v1": {"lr": 0.01, "seed": 9}}
    args = rl_utils.parse_args(_Args, ["--seed", "3"], presets=presets)
    assert args.lr == 0.01 and args.seed == 3  # a typed flag beats the preset
    assert rl_utils.explicit_flags(_Args, ["--seed", "3", "--no-fancy"]) == {"seed", "fancy"}
    # two preset keys: the env's preset, then the one chosen by another field (a later key wins; flags win)
    presets = {"CartPole-v1": {"lr": 0.01, "fancy": True}, "3": {"lr": 0.02}}
    args = rl_utils.parse_args(_Args, ["--run-name", "3"], presets=presets, preset_key=("env_id", "run_name"))
    assert (args.lr, args.fancy) == (0.02, True)
    args = rl_utils.parse_args(_Args, ["--run-name", "3", "--lr", "0.5"], presets=presets,
                               preset_key=("env_id", "run_name"))
    assert (args.lr, args.fancy) == (0.5, True)


def test_bad_flag_exits_with_usage_error():
    with pytest.raises(SystemExit) as err:
        rl_utils.parse_args(_Args, ["--lr", "abc"])
    assert err.value.code == 2


def test_unknown_env_id_suggests_close_match():
    with pytest.raises(rl_utils.UsageError, match="CartPole-v1"):
        rl_utils.check_env_id("CartPol-v1")


# ---------------------------------------------------------------------------------------------------- sum tree
@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 100.0), min_size=1, max_size=70), st.integers(0, 2**31 - 1))
def test_sum_tree_total_and_prefix_search(priorities, seed):
    tree = rl_utils.SumTree(len(priorities))
    tree.update(np.arange(len(priorities)), np.array(priorities))
    assert tree.total == pytest.approx(sum(priorities))
    if tree.total <= 0:
        return
    values = np.random.default_rng(seed).uniform(0, tree.total, size=50)
    leaves = tree.find(values)
    cums = np.cumsum(priorities)
    expected = np.searchsorted(cums, values, side="right")
    # Same leaf as a linear prefix-sum scan, except where float rounding lands exactly on a boundary.
    assert np.all((leaves == expected) | np.isclose(values, cums[np.minimum(expected, len(cums) - 1)]))
    assert np.all(np.array(priorities)[leaves] > 0)  # never a zero-priority leaf


def test_sum_tree_sampling_frequency_proportional_to_priority():
    priorities = np.array([1.0, 2.0, 0.0, 4.0, 8.0, 1.0])
    tree = rl_utils.SumTree(len(priorities))
    tree.update(np.arange(6), priorities)
    tree.update(np.array([5, 5]), np.array([3.0, 1.0]))  # repeated index: last write wins, sums stay right
    assert tree.total == pytest.approx(16.0)
    values = np.random.default_rng(0).uniform(0, tree.total, size=200_000)
    freq = np.bincount(tree.find(values), minlength=6) / len(values)
    np.testing.assert_allclose(freq, priorities / priorities.sum(), atol=0.005)


# ---------------------------------------------------------------------------------------------------- buffers
def _random_stream(rng: np.random.Generator, steps: int, envs: int):
    """A stream of vector steps with episode ends: obs encode (step, env) so we can check what came back."""
    for t in range(steps):
        obs = np.stack([[t, e] for e in range(envs)]).astype(np.float32)
        nxt = obs + np.array([1.0, 0.0], np.float32)
        yield (obs, nxt, rng.integers(0, 3, envs), rng.normal(size=envs).astype(np.float32),
               rng.random(envs) < 0.15, rng.random(envs) < 0.1)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 40), st.integers(1, 60), st.integers(0, 1000))
def test_buffer_wraparound_keeps_the_newest(num_envs, rows, steps, seed):
    buf = rl_utils.ReplayBuffer(rows * num_envs, num_envs, (2,), seed=seed)
    data = list(_random_stream(np.random.default_rng(seed), steps, num_envs))
    for step in data:
        buf.add(*step)
    assert len(buf) == min(steps, rows) * num_envs
    kept_steps = {int(t) for t in buf.obs[:, :, 0].ravel()} if steps >= rows else set(range(steps))
    assert kept_steps == set(range(max(0, steps - rows), steps))
    batch = buf.sample(32)
    assert batch.obs.shape == (32, 2) and batch.indices.max() < len(buf)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(2, 30), st.lists(st.integers(1, 25), min_size=1, max_size=4),
       st.integers(0, 1000))
def test_buffer_extend_equals_step_by_step_adds(num_envs, rows, chunks, seed):
    """Blocks of steps stored with extend (an offline dataset's preload), in chunks that wrap the ring, leave the
    buffer exactly as one add per step."""
    chunks = [c for c in chunks if c <= rows] or [1]
    data = list(_random_stream(np.random.default_rng(seed), sum(chunks), num_envs))
    one, bulk = (rl_utils.ReplayBuffer(rows * num_envs, num_envs, (2,), seed=seed) for _ in range(2))
    for step in data:
        one.add(*step)
    start = 0
    for c in chunks:
        bulk.extend(*(np.stack(field) for field in zip(*data[start:start + c])))
        start += c
    a, b = one.state_dict(), bulk.state_dict()
    assert (a["pos"], a["full"]) == (b["pos"], b["full"]) and len(one) == len(bulk)
    for key in ("obs", "next_obs", "actions", "rewards", "terminated", "truncated"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_buffer_extend_refuses_more_than_it_holds():
    buf = rl_utils.ReplayBuffer(4, 1, (2,))
    data = [np.stack(f) for f in zip(*_random_stream(np.random.default_rng(0), 5, 1))]
    with pytest.raises(rl_utils.UsageError, match="raise --buffer-size"):
        buf.extend(*data)


def _brute_force_n_step(data, t, e, n, gamma, newest):
    """Walk forward from step t in env e: sum rewards, stop at termination (no bootstrap) or truncation."""
    ret, disc = 0.0, 1.0
    for k in range(n):
        if t + k > newest:
            break
        _, nxt, _, rew, term, trunc = data[t + k]
        ret += disc * rew[e]
        disc *= gamma
        boot = nxt[e]
        if term[e]:
            return ret, disc, 1.0, boot
        if trunc[e]:
            break
    return ret, disc, 0.0, boot


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(5, 25), st.integers(2, 40), st.integers(0, 1000))
def test_n_step_returns_match_brute_force(num_envs, n, rows, steps, seed):
    gamma = 0.9
    buf = rl_utils.ReplayBuffer(rows * num_envs, num_envs, (2,), gamma=gamma, n_step=n, seed=seed)
    data = list(_random_stream(np.random.default_rng(seed), steps, num_envs))
    for step in data:
        buf.add(*step)
    flat = np.arange(len(buf))
    batch = buf._batch(flat)
    for i, idx in enumerate(flat):
        row, e = divmod(int(idx), num_envs)
        t = int(buf.obs[row, e, 0])  # which global step this row holds
        ret, disc, done, boot = _brute_force_n_step(data, t, e, n, gamma, newest=steps - 1)
        assert batch.rewards[i].item() == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert batch.discounts[i].item() == pytest.approx(disc, rel=1e-6)
        assert batch.dones[i].item() == done
        np.testing.assert_array_equal(batch.next_obs[i].numpy(), boot)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(2, 40), st.integers(0, 1000))
def test_n_step_adder_emits_every_complete_window_once_equal_to_the_brute_force_loop(num_envs, n, steps, seed):
    """Distributed actors' n-step transitions (NStepAdder) against the loop the replay buffer is tested with:
    every window that is complete (n steps seen, or an episode end inside) comes out exactly once, with the
    same sum, discount, done and bootstrap observation; the incomplete tail waits."""
    gamma = 0.9
    data = list(_random_stream(np.random.default_rng(seed), steps, num_envs))
    adder = rl_utils.NStepAdder(num_envs, n, gamma)
    out = [adder.add(obs, act, rew, term, trunc, nxt) for obs, nxt, act, rew, term, trunc in data]
    out = [o for o in out if o is not None]
    seen = []
    for tr in out:
        for i in range(len(tr)):
            t, e = int(tr.obs[i, 0]), int(tr.obs[i, 1])
            ret, disc, done, boot = _brute_force_n_step(data, t, e, n, gamma, newest=steps - 1)
            assert tr.rewards[i] == pytest.approx(ret, rel=1e-5, abs=1e-5)
            assert tr.discounts[i] == pytest.approx(disc, rel=1e-6) and tr.dones[i] == done
            np.testing.assert_array_equal(tr.next_obs[i], boot)
            assert tr.actions[i] == data[t][2][e]
            seen.append((t, e))
    ends = lambda t, e: any(data[k][4][e] or data[k][5][e] for k in range(t, min(t + n, steps)))  # noqa: E731
    complete = {(t, e) for t in range(steps) for e in range(num_envs) if t + n - 1 <= steps - 1 or ends(t, e)}
    assert len(seen) == len(set(seen)) and set(seen) == complete


def test_stored_discounts_come_back_as_stored():
    """A buffer of transitions summed elsewhere serves each one's own γ^m, reward sum, done and next_obs."""
    buf = rl_utils.ReplayBuffer(10, 1, (2,), stored_discounts=True, seed=0)
    for i in range(4):
        buf.add(np.full((1, 2), i, np.float32), np.full((1, 2), i + 10, np.float32), np.zeros(1), np.full(1, 2.0 * i),
                np.array([i == 3]), np.zeros(1, bool), discounts=np.full(1, 0.9 ** (i + 1), np.float32))
    batch = buf._batch(np.arange(4))
    torch.testing.assert_close(batch.discounts, torch.tensor([0.9, 0.81, 0.729, 0.6561]))
    torch.testing.assert_close(batch.rewards, torch.tensor([0.0, 2.0, 4.0, 6.0]))
    torch.testing.assert_close(batch.dones, torch.tensor([0.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(batch.next_obs[:, 0], torch.tensor([10.0, 11.0, 12.0, 13.0]))
    with pytest.raises(ValueError, match="stored_discounts"):
        buf.add(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros(1), np.zeros(1), np.zeros(1, bool), np.zeros(1, bool))


def test_per_weights_and_priority_updates():
    buf = rl_utils.PrioritizedReplayBuffer(64, 2, (2,), alpha=1.0, seed=0)
    for step in _random_stream(np.random.default_rng(0), 32, 2):
        buf.add(*step)
    batch = buf.sample(16)
    np.testing.assert_allclose(batch.weights.numpy(), 1.0)  # all new transitions share the max priority
    buf.beta = 1.0
    td = np.full(len(buf), 1.0)
    td[7] = 10.0  # one transition with a 10x larger TD error: P = 10/73
    buf.update_priorities(np.arange(len(buf)), td - buf.eps)
    batch = buf.sample(512)
    assert (batch.indices == 7).mean() == pytest.approx(10 / 73, abs=0.04)
    w = batch.weights.numpy()
    # w_i = (N P_i)^-beta / max w: the 10x more frequent transition gets a 10x smaller weight.
    assert w[batch.indices != 7] == pytest.approx(1.0)
    assert w[batch.indices == 7] == pytest.approx(0.1, rel=1e-4)


def test_buffer_state_dict_roundtrip():
    buf = rl_utils.PrioritizedReplayBuffer(20, 2, (2,), seed=0)
    for step in _random_stream(np.random.default_rng(1), 13, 2):
        buf.add(*step)
    buf.update_priorities(np.arange(6), np.arange(6.0))
    clone = rl_utils.PrioritizedReplayBuffer(20, 2, (2,), seed=5)
    clone.load_state_dict(buf.state_dict())
    a, b = buf.sample(8), clone.sample(8)
    np.testing.assert_array_equal(a.indices, b.indices)
    torch.testing.assert_close(a.weights, b.weights)


def test_float64_observations_are_stored_and_served_as_float32():
    """MuJoCo observes float64; the buffers must hand float32 networks float32 batches (Dict spaces too),
    while integer and bool fields keep their dtype."""
    box64 = gym.spaces.Box(-np.inf, np.inf, (3,), dtype=np.float64)
    dict_space = gym.spaces.Dict({"observation": box64, "step": gym.spaces.Discrete(5)})
    action64 = gym.spaces.Box(-1, 1, (2,), dtype=np.float64)
    buf = rl_utils.ReplayBuffer(10, 1, dict_space, action64, seed=0)
    obs = {"observation": np.full((1, 3), 0.1, dtype=np.float64), "step": np.array([3])}
    for _ in range(4):
        buf.add(obs, obs, np.full((1, 2), 0.5), np.ones(1), np.zeros(1, bool), np.zeros(1, bool))
    batch = buf.sample(4)
    assert batch.obs["observation"].dtype == batch.next_obs["observation"].dtype == torch.float32
    assert batch.actions.dtype == torch.float32 and batch.obs["step"].dtype == torch.int64
    torch.testing.assert_close(batch.obs["observation"], torch.full((4, 3), 0.1))
    net = torch.nn.Linear(3 + 2, 1)  # what failed before: float64 rows into a float32 layer
    net(torch.cat([batch.obs["observation"], batch.actions], -1))
    rollout = rl_utils.RolloutBuffer(2, 1, box64, action64)
    rollout.add(np.full((1, 3), 0.1), np.zeros((1, 2)), np.zeros(1), np.zeros(1), np.ones(1),
                np.zeros(1, bool), np.zeros(1, bool))
    assert rollout.obs.dtype == rollout.actions.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------- autoreset
def test_autoreset_truncation_bootstraps_from_real_final_obs():
    """CartPole cut at 5 steps: the transition that ends by truncation must carry the real last observation
    (not the reset one), terminated=False; a termination sets terminated=True."""
    envs = rl_utils.make_vec_env("CartPole-v1", 2, seed=0, max_episode_steps=5)
    reference = gym.make("CartPole-v1", max_episode_steps=5)
    obs, _ = envs.reset(seed=0)
    ref_obs, _ = reference.reset(seed=0)
    np.testing.assert_allclose(obs[0], ref_obs)
    buf = rl_utils.ReplayBuffer(100, 2, (4,), seed=0)
    for _ in range(5):
        nxt, rew, term, trunc, infos = envs.step(np.array([0, 0]))
        ref_next, *_ = reference.step(0)
        real = rl_utils.real_next_obs(nxt, infos)
        buf.add(obs, real, np.array([0, 0]), rew, term, trunc)
        obs = nxt
    assert trunc.all() and not term.any()
    np.testing.assert_allclose(real[0], ref_next)  # the true final observation
    assert not np.allclose(obs[0], ref_next)  # while the env already shows the reset observation
    assert [ep[1] for ep in rl_utils.finished_episodes(infos)] == [5, 5]
    batch = buf._batch(np.array([8]))  # row 4, env 0: the truncated step
    assert batch.dones.item() == 0.0  # truncation is not termination: bootstrap
    np.testing.assert_allclose(batch.next_obs[0].numpy(), ref_next)
    # Pushing right forever terminates (pole falls) well before 500 steps.
    env = rl_utils.make_vec_env("CartPole-v1", 1, seed=1)
    env.reset(seed=1)
    for _ in range(200):
        _, _, term, trunc, infos = env.step(np.array([1]))
        if term[0] or trunc[0]:
            break
    assert term[0] and not trunc[0] and "final_obs" in infos


def test_evaluate_matches_a_manual_rollout():
    result = rl_utils.evaluate(lambda i: rl_utils.make_env("CartPole-v1", i), lambda o: np.ones(len(o), int),
                               episodes=3, seed=7)
    for i in range(3):
        env = gym.make("CartPole-v1")
        env.reset(seed=7 + i)
        total, length, done = 0.0, 0, False
        while not done:
            _, r, term, trunc, _ = env.step(1)
            total, length = total + r, length + 1
            done = term or trunc
        assert result.returns[i] == total and result.lengths[i] == length
    assert np.isnan(result.success_rate) and "eval/success_rate" not in result.log_dict()


class _CountingPolicy:
    """A stateful policy: counts its own steps per env and must be reset when that env's episode ends."""

    def __init__(self):
        self.count = None
        self.resets = []

    def reset(self, mask):
        self.resets.append(mask.copy())
        self.count = np.where(mask, 0, self.count) if self.count is not None else np.zeros(len(mask), int)

    def __call__(self, obs):
        self.count += 1
        return np.zeros(len(obs), dtype=np.int64)


class _SuccessEnv(gym.Env):
    """Ends after `idx + 1` steps; reports is_success on even idx only."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, idx):
        self.idx, self.t = idx, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t > self.idx
        return np.zeros(1, np.float32), 1.0, done, False, {"is_success": self.idx % 2 == 0}


def test_evaluate_resets_stateful_policies_and_reports_success():
    policy = _CountingPolicy()
    result = rl_utils.evaluate(lambda i: (lambda: _SuccessEnv(i)), policy, episodes=3, seed=0)
    assert result.lengths.tolist() == [1, 2, 3] and result.returns.tolist() == [1.0, 2.0, 3.0]
    assert result.successes.tolist() == [1.0, 0.0, 1.0] and result.success_rate == pytest.approx(2 / 3)
    assert policy.resets[0].all()  # before the first step
    assert [m.tolist() for m in policy.resets[1:]] == [[True, False, False], [False, True, False],
                                                       [False, False, True]]
    assert result.log_dict()["eval/success_rate"] == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------------------------------- misc
def test_checkpoint_errors_are_one_line(tmp_path):
    with pytest.raises(rl_utils.UsageError, match="not found"):
        rl_utils.load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(rl_utils.UsageError, match="cannot read"):
        rl_utils.load_checkpoint(bad)
    net = torch.nn.Linear(2, 2)
    path = rl_utils.save_checkpoint(tmp_path / "ok.pt", net=net, step=3)
    loaded = rl_utils.load_checkpoint(path)
    assert loaded["step"] == 3 and torch.equal(loaded["net"]["weight"], net.weight.detach())


needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")


@needs_dev_full
def test_a_full_disk_keeps_the_last_checkpoint_whole_and_leaves_no_temporary(tmp_path):
    """/dev/full fails every write with ENOSPC, as a full disk does: the write of the new checkpoint goes there."""
    net = torch.nn.Linear(2, 2)
    path = rl_utils.save_checkpoint(tmp_path / "latest.pt", net=net, step=1)
    (tmp_path / "latest.tmp").symlink_to("/dev/full")  # where save_checkpoint writes before its rename
    with torch.no_grad():
        net.weight.add_(1.0)
    with pytest.raises(rl_utils.UsageError, match="No space left on device.*previous latest.pt"):
        rl_utils.save_checkpoint(path, net=net, step=2)
    assert rl_utils.load_checkpoint(path)["step"] == 1 and not (tmp_path / "latest.tmp").is_symlink()
    (tmp_path / "summary.json.tmp").symlink_to("/dev/full")
    (tmp_path / "summary.json").write_text("old")
    with pytest.raises(OSError, match="No space"):
        rl_utils.write_text_atomic(tmp_path / "summary.json", "new" * 10_000)
    assert (tmp_path / "summary.json").read_text() == "old" and not (tmp_path / "summary.json.tmp").is_symlink()


@needs_dev_full
def test_a_full_disk_anywhere_else_is_one_error_line(capsys):
    def main():
        with open("/dev/full", "w") as f:
            f.write("x" * 100_000)
            f.flush()

    with pytest.raises(SystemExit) as exit_info:
        rl_utils.run_main(main)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: No space left on device")

    def bug():
        raise FileNotFoundError(2, "a bug, not the machine")

    with pytest.raises(FileNotFoundError):  # other OSErrors are not swallowed
        rl_utils.run_main(bug)


def test_moving_average_and_schedule():
    np.testing.assert_allclose(rl_utils.moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1, 2, 4, 6])
    assert rl_utils.linear_schedule(1.0, 0.0, 10, 5) == 0.5
    assert rl_utils.linear_schedule(1.0, 0.0, 10, 50) == 0.0


def test_plot_cli_and_errors(tmp_path):
    for seed in (1, 2):
        run = tmp_path / f"run{seed}"
        run.mkdir()
        rows = "\n".join(f"{s},eval/return,{s * seed / 10},{s / 100}" for s in range(0, 1000, 100))
        (run / "metrics.csv").write_text("step,tag,value,wall_time\n" + rows + "\n")
    out = tmp_path / "curves.png"
    run_script("rl_utils.py", "plot", tmp_path / "run1", tmp_path / "run2", "--out", out)
    assert out.stat().st_size > 1000
    proc = run_script("rl_utils.py", "plot", tmp_path / "run1", "--tag", "eval/retrun", "--out", tmp_path / "x.png",
                      check=False)
    assert proc.returncode == 2 and "tags there: eval/return" in proc.stderr and not (tmp_path / "x.png").exists()
    proc = run_script("rl_utils.py", "plot", tmp_path / "nope", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and len(proc.stderr.splitlines()) == 1


def test_fresh_run_reusing_a_run_name_starts_clean_but_resume_keeps_history(tmp_path):
    args = _Args(runs_dir=str(tmp_path), run_name="same")
    first = rl_utils.RunLogger(args, "algo")
    for step in (100, 200, 300):
        first.log("eval/return", 1.0, step)
    first.close()
    ckpt = rl_utils.Checkpoint(first.run_dir / "ckpt" / "latest.pt", {"args": {}, "step": 200, "elapsed": 1.0})
    resumed = rl_utils.Run(args, "algo", resume=ckpt)  # drops step 300 only
    resumed.close()
    assert rl_utils.read_metrics(first.run_dir, "eval/return")[0].tolist() == [100, 200]
    second = rl_utils.RunLogger(args, "algo")  # same name, not a resume: the old curve must not leak in
    second.log("eval/return", 2.0, 50)
    second.close()
    assert second.run_dir == first.run_dir
    steps, values, _ = rl_utils.read_metrics(second.run_dir, "eval/return")
    assert steps.tolist() == [50] and values.tolist() == [2.0]
    assert len(list(second.run_dir.glob("events.out.tfevents.*"))) == 1

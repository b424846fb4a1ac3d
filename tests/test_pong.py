"""Pong (classic_rl/pong): the cached Transformer equals its full forward across an episode reset, the windowed
training mask gives masked keys exactly zero weight and a chunk read with its lookback equals the whole
sequence, training re-evaluates the acting policy exactly (PPO's first ratio is 1), round discounting on a
hand-computed example, the 80x80 preprocessing, bad input, every backbone and every algorithm end to end, and the
memory task (CartPoleNoVelocity-v1: the env, the vector-observation transformer, a tiny run).

The end-to-end runs are five (every backbone once, every algo at least once), not all 15 combinations: each is a
Pong subprocess of several seconds; the combinations share all code paths but the backbone and the loss."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import rl_utils
from classic_rl.pong import envs as memory_envs
from classic_rl.pong import train as pong
from classic_rl.pong.model import FrameDiff, FramePolicy, TransformerActor, prepro, window_keep_mask
from classic_rl.reinforce.train import finished_mask
from tests.conftest import only_run_dir, run_script

TRAIN = "classic_rl/pong/train.py"
TINY = ("--total-timesteps", "300", "--num-envs", "2", "--max-episode-steps", "60", "--max-rollout-steps", "64",
        "--episodes-per-update", "2", "--update-epochs", "2", "--num-minibatches", "2", "--eval-every", "0",
        "--eval-episodes", "1", "--frames", "7", "--seq-len", "16")


def _episodes(length: int, batch: int, resets: list[int], obs_shape: tuple[int, ...] = (80, 80)
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random binary frames [B, T, 80, 80] (or Gaussian vector observations [B, T, D] for ``obs_shape`` (D,))
    with episode starts at 0 and at ``resets[b]``, and the episode-absolute positions the acting side counts."""
    if len(obs_shape) == 1:
        frames = torch.randn(batch, length, *obs_shape)
    else:
        frames = (torch.rand(batch, length, *obs_shape) < 0.05).to(torch.uint8)
    starts = torch.zeros(batch, length, dtype=torch.bool)
    starts[:, 0] = True
    for b, r in enumerate(resets):
        starts[b, r] = True
    pos = torch.zeros(batch, length, dtype=torch.long)
    for b in range(batch):
        p = 0
        for t in range(length):
            p = 0 if starts[b, t] else p
            pos[b, t] = p
            p += 1
    return frames, pos, starts


@pytest.mark.parametrize("ffn,obs_shape,n_actions", [("mlp", (80, 80), 2), ("none", (80, 80), 2),
                                                     ("mlp", (2,), 3)])  # (2,): the memory task's (x, θ)
def test_cached_acting_equals_the_full_forward_at_every_position_across_a_reset(ffn, obs_shape, n_actions):
    torch.manual_seed(0)
    agent = FramePolicy("transformer", n_layer=2, lookback=4, ffn=ffn, obs_shape=obs_shape, n_actions=n_actions)
    frames, pos, starts = _episodes(15, 2, resets=[6, 9], obs_shape=obs_shape)
    with torch.no_grad():
        full_logits, full_values = agent.forward_seq(frames, pos, starts)
    actor = TransformerActor(agent, 2, torch.device("cpu"))
    for t in range(15):
        if t and starts[:, t].any():
            actor.reset(starts[:, t].numpy())
        peek_logits, _ = actor.peek(frames[:, t])  # must not move the cache
        logits, values, used_pos = actor.step(frames[:, t])
        assert torch.equal(used_pos, pos[:, t]) and logits.shape == (2, n_actions)
        assert (logits - full_logits[:, t]).abs().max() < 1e-5, t
        assert (values - full_values[:, t]).abs().max() < 1e-5, t
        assert (peek_logits - logits).abs().max() < 1e-6


def test_window_mask_by_hand():
    """lookback 1, an episode starting at position 3: each query sees itself and its predecessor in its episode."""
    starts = torch.tensor([[True, False, False, True, False]])
    expected = torch.tensor([[1, 0, 0, 0, 0],
                             [1, 1, 0, 0, 0],
                             [0, 1, 1, 0, 0],
                             [0, 0, 0, 1, 0],
                             [0, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(window_keep_mask(starts, 1)[0, 0], expected)


@pytest.mark.parametrize("fused", [True, False])
def test_masked_frames_get_exactly_zero_weight(fused):
    """Changing every frame a query may not see (other episode, or more than lookback back, or later) leaves
    that query's output bit for bit the same."""
    torch.manual_seed(1)
    agent = FramePolicy("transformer", n_layer=1, lookback=3)  # one layer: the window is the receptive field
    for block in agent.body.h:
        block.attn.fused = fused
    frames, pos, starts = _episodes(12, 1, resets=[5])
    query = 10  # sees 7..10 (window 3, episode from 5)
    other = frames.clone()
    other[:, [0, 1, 2, 3, 4, 5, 6, 11]] = 1 - other[:, [0, 1, 2, 3, 4, 5, 6, 11]]
    with torch.no_grad():
        a, va = agent.forward_seq(frames, pos, starts)
        b, vb = agent.forward_seq(other, pos, starts)
        c, _ = agent.forward_seq(torch.where(torch.arange(12)[None, :, None, None] == 8, 1 - frames, frames), pos,
                                 starts)
    assert torch.equal(a[0, query], b[0, query]) and torch.equal(va[0, query], vb[0, query])
    assert not torch.equal(a[0, query], c[0, query])  # a frame inside the window does count


def test_a_chunk_with_its_lookback_equals_the_whole_sequence():
    """Training reads chunks of seq_len steps plus the lookback frames before them: the same outputs as one
    forward over the whole sequence with the windowed mask (the full attention it stands for)."""
    torch.manual_seed(2)
    agent = FramePolicy("transformer", lookback=5)
    frames, pos, starts = _episodes(40, 1, resets=[17])
    with torch.no_grad():
        whole, _ = agent.forward_seq(frames, pos, starts)
        for s in (5, 12, 20, 33):
            lo = s - 5
            chunk, _ = agent.forward_seq(frames[:, lo:s + 7], pos[:, lo:s + 7], starts[:, lo:s + 7])
            assert (chunk[:, 5:] - whole[:, s:s + 7]).abs().max() < 1e-5, s


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """As the scripts: one torch thread (the machine is shared; small tensors gain nothing from more)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _NoRun:
    def log_episodes(self, *_):
        pass


@pytest.mark.parametrize("backbone,collect,env_id", [("transformer", "steps", "ALE/Pong-v5"),
                                                     ("transformer", "episodes", "ALE/Pong-v5"),
                                                     ("cnn3d2d", "episodes", "ALE/Pong-v5"),
                                                     ("transformer", "steps", "CartPoleNoVelocity-v1")])
def test_training_reevaluates_the_acting_policy_exactly(backbone, collect, env_id):
    """Every used step's log π and V recomputed from the stored data (the transformer: chunks with their
    lookback, the context carried over from the previous rollout) equal what the acting pass computed: PPO's
    first ratio is exactly 1. Episodes of 20 steps end inside the rollouts, so caches are reset mid-way."""
    args = pong.Args(env_id=env_id, backbone=backbone, algo="ppo", collect=collect, num_envs=2, num_steps=24,
                     max_rollout_steps=30, episodes_per_update=3, max_episode_steps=20, lookback=6, seq_len=8,
                     frames=7, hidden=16)
    rl_utils.set_seed(0)
    envs = pong.make_envs(args, 2)
    agent = pong.build(args, torch.device("cpu"))
    rows = args.num_steps if collect == "steps" else args.max_rollout_steps
    buffer = rl_utils.RolloutBuffer(rows, 2, envs.single_observation_space, envs.single_action_space,
                                    extras={"pos": gym.spaces.Box(0, 2**62, (), np.int64)})
    actor = TransformerActor(agent, 2, torch.device("cpu")) if agent.sequential else None
    context = pong.Context(6, 2, envs.single_observation_space.shape, torch.device("cpu")) if actor else None
    obs, _ = envs.reset(seed=0)
    progress = pong.Progress()
    for _ in range(2):  # the second rollout's first chunks need the first one's frames
        obs, last, n = pong.collect(args, agent, actor, envs, buffer, obs, progress, _NoRun(), torch.device("cpu"))
        used = torch.ones(n, 2, dtype=torch.bool)
        batch = pong.Batch(args, buffer, n, used, torch.zeros(n, 2), torch.zeros(n, 2), context)
        seen = 0
        with torch.no_grad():
            for piece in batch.pieces(3):
                out = batch.forward(agent, piece)
                assert (out["logprob"] - out["old_logprob"]).abs().max() < 1e-5
                assert (out["value"] - out["old_value"]).abs().max() < 1e-5
                seen += len(out["logprob"])
        assert seen == n * 2
        if context is not None and collect == "steps":
            context.keep_tail(batch.obs, batch.pos, batch.starts)
    assert buffer.terminated[:n].any() or buffer.truncated[:n].any() or collect == "steps"
    envs.close()


def test_round_discounting_by_hand():
    """γ = ½, three envs over 6 steps.
    env 0: a point won at t=2, then the game lost at t=5 (terminated with the point).
    env 1: a point at t=1; a time limit at t=3 in mid-rally (V(final obs) = 2); the next rally runs past the
           rollout (bootstrap V = 4 after the last row).
    env 2: a point at the very step a time limit cut the episode (t=5, V(final obs) = 3).
    rounds: every point ends the credit (nothing bootstrapped after it); episodes: only episode ends."""
    rewards = [[0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0], [-1, 0, 1]]
    term = [[0, 0, 0]] * 5 + [[1, 0, 0]]
    trunc = [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]]
    buf = rl_utils.RolloutBuffer(6, 3, gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2))
    for t in range(6):
        final = torch.tensor([0.0, 2.0 if trunc[t][1] else 0.0, 3.0 if trunc[t][2] else 0.0])
        buf.add(torch.zeros(3, 1), torch.zeros(3), torch.zeros(3), torch.zeros(3), np.array(rewards[t], np.float32),
                np.array(term[t], bool), np.array(trunc[t], bool), final)
    next_values = buf.next_values(torch.tensor([0.0, 4.0, 0.0]))

    def returns(by):
        cuts, nv = pong.round_cuts(buf.rewards, buf.terminated, buf.truncated, next_values, by)
        g = rl_utils.discounted_returns(buf.rewards, nv, cuts, 0.5)
        torch.testing.assert_close(rl_utils.gae(buf.rewards, buf.values, nv, cuts, 0.5, 1.0), g)  # V = 0, λ = 1
        return g, cuts

    g, cuts = returns("rounds")
    torch.testing.assert_close(g[:, 0], torch.tensor([0.25, 0.5, 1.0, -0.25, -0.5, -1.0]))
    torch.testing.assert_close(g[:, 1], torch.tensor([0.5, 1.0, 0.5, 1.0, 1.0, 2.0]))
    torch.testing.assert_close(g[:, 2], torch.tensor([1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0]))
    # which steps a complete-rounds update uses: env 1's last rally has no end yet
    assert finished_mask(cuts)[:, 1].tolist() == [True] * 4 + [False] * 2
    assert finished_mask(cuts)[:, 0].all() and finished_mask(cuts)[:, 2].all()
    assert pong.count_rounds(buf.rewards, buf.terminated, buf.truncated, finished_mask(cuts)) == 5

    g, cuts = returns("episodes")
    torch.testing.assert_close(g[:, 0], torch.tensor([0.21875, 0.4375, 0.875, -0.25, -0.5, -1.0]))
    torch.testing.assert_close(g[:, 1], torch.tensor([0.625, 1.25, 0.5, 1.0, 1.0, 2.0]))
    torch.testing.assert_close(g[:, 2], torch.tensor([0.078125, 0.15625, 0.3125, 0.625, 1.25, 2.5]))


def test_preprocessing_on_a_synthetic_frame():
    """Background (144 and 109) erased, score board cropped, paddles and ball kept at half resolution."""
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[..., 0] = 144
    frame[100:110, 20:40, 0] = 109  # a second background colour
    frame[10:20, 50:60, 0] = 236  # score digits: above row 35, cropped
    frame[60:76, 140:144, 0] = 92  # our paddle
    frame[120:124, 80:82, 0] = 236  # the ball
    out = prepro(frame)
    assert out.shape == (80, 80) and out.dtype == np.uint8
    expected = np.zeros((80, 80), np.uint8)
    expected[13:21, 70:72] = 1  # out[i, j] = frame[35 + 2i, 2j]: rows 61, 63, .., 75 and columns 140, 142
    expected[43:45, 40] = 1  # rows 121, 123, column 80
    assert np.array_equal(out, expected)
    assert out.sum() == expected.sum() > 0


def test_frame_difference_starts_at_zero_and_shows_motion():
    class Stub(gym.Env):
        observation_space = gym.spaces.Box(0, 1, (80, 80), np.uint8)
        action_space = gym.spaces.Discrete(2)

        def reset(self, seed=None, options=None):
            self.t = 0
            return self._frame(), {}

        def step(self, action):
            self.t += 1
            return self._frame(), 0.0, False, False, {}

        def _frame(self):
            f = np.zeros((80, 80), np.uint8)
            f[10, self.t] = 1
            return f

    env = FrameDiff(Stub())
    first, _ = env.reset()
    assert not first.any()
    diff = env.step(0)[0]
    assert diff[10, 1] == 1 and diff[10, 0] == -1 and np.abs(diff).sum() == 2 and diff.dtype == np.int8


@pytest.mark.parametrize("argv,message", [
    (["--env-id", "CartPole-v1"], "is not an Atari env"),
    (["--env-id", "CartPoleNoVelocity-v1", "--backbone", "cnn"], "is not an Atari env"),  # frames only on Atari
    (["--lookback", "0"], "--lookback must be >= 1"),
])  # more rows (--frames, --backbone, --ffn, --d-model) in tests/test_bad_input.py
def test_bad_input_is_one_error_line(argv, message, tmp_path):
    proc = run_script(TRAIN, *argv, "--runs-dir", tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:") and message in proc.stderr


@pytest.mark.parametrize("algo,backbone,extra", [
    ("pg", "mlp", ("--pg-divide-by", "steps")),
    ("ac", "cnn", ()),
    ("ppo", "cnn3d", ("--discount-by", "episodes")),
    ("pg", "cnn3d2d", ()),
    ("ppo", "transformer", ("--collect", "steps", "--num-steps", "32", "--ffn", "none")),
])
def test_every_backbone_and_algo_runs_end_to_end(algo, backbone, extra, tmp_path):
    run_script(TRAIN, "--algo", algo, "--backbone", backbone, *TINY, *extra, "--runs-dir", tmp_path)
    run = only_run_dir(tmp_path)
    assert run.name.startswith(f"ALE-Pong-v5__{algo}_{backbone}__1__")
    summary = json.loads((run / "summary.json").read_text())
    assert -21 <= summary["final_eval_return"] <= 21 and summary["env_steps"] >= 300 and summary["wall_time_s"] > 0
    tags = (run / "metrics.csv").read_text()
    assert "charts/SPS" in tags and "losses/policy_loss" in tags and "eval/return" in tags
    assert (run / "learning_curve.png").exists() and (run / "ckpt" / "latest.pt").exists()
    if backbone == "transformer":  # the cached greedy policy replays the checkpoint; same seed, same weights
        out = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt" / "best.pt", "--eval-episodes", "1").stdout
        assert "eval return" in out and "ppo_transformer" in out
        again = tmp_path / "again"
        run_script(TRAIN, "--algo", algo, "--backbone", backbone, *TINY, *extra, "--runs-dir", again)
        first, second = (torch.load(d / "ckpt" / "latest.pt", weights_only=False)["agent"]
                         for d in (run, only_run_dir(again)))
        assert all(torch.equal(first[k], second[k]) for k in first)


def test_bench_cache_reports_both_paths_and_equal_logits():
    out = run_script("classic_rl/pong/bench_cache.py", "--lookbacks", "3", "--steps", "3").stdout
    row = next(line for line in out.splitlines() if line.startswith("| 3 |"))
    assert float(row.split("|")[5]) < 1e-5  # max abs logit difference between the two paths


def test_memory_env_is_cartpole_without_its_velocities():
    """CartPoleNoVelocity-v1 passes gymnasium's checker, and with the same seed and actions observes exactly
    CartPole-v1's (x, θ), with the same rewards, ends and 500-step limit."""
    env = gym.make("CartPoleNoVelocity-v1")
    check_env(env.unwrapped, skip_render_check=True)  # rendering is CartPole's own, unchanged
    assert env.observation_space.shape == (2,) and env.spec.max_episode_steps == 500
    full = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=3)
    full_obs, _ = full.reset(seed=3)
    for t in range(100):
        assert np.array_equal(obs, full_obs[memory_envs.KEEP]) and obs.dtype == np.float32
        obs, reward, terminated, truncated, _ = env.step(t % 2)
        full_obs, full_reward, full_term, full_trunc, _ = full.step(t % 2)
        assert (reward, terminated, truncated) == (full_reward, full_term, full_trunc)
        if terminated:
            break
    assert terminated  # alternating pushes do not balance the pole for 100 steps


@pytest.mark.parametrize("env_id,argv,name", [
    ("CartPoleNoVelocity-v1", (), "ppo_transformer"),  # the preset: ppo, --collect steps, transformer
    ("CartPole-v1", ("--algo", "ac", "--backbone", "mlp", "--discount-by", "episodes"), "ac_mlp"),  # no preset
])
def test_vector_envs_run_end_to_end(env_id, argv, name, tmp_path):
    run_script(TRAIN, "--env-id", env_id, *argv, "--total-timesteps", "512", "--num-envs", "2", "--num-steps", "64",
               "--max-rollout-steps", "64", "--eval-every", "256", "--eval-episodes", "2", "--runs-dir", tmp_path)
    run = only_run_dir(tmp_path)
    assert run.name.startswith(f"{env_id}__{name}__1__")
    summary = json.loads((run / "summary.json").read_text())
    assert 0 < summary["final_eval_return"] <= 500 and summary["env_steps"] >= 512
    assert "eval/return" in (run / "metrics.csv").read_text() and (run / "ckpt" / "best.pt").exists()
    if name == "ppo_transformer":  # the preset normalises observations: the replay needs the saved statistics
        out = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt" / "best.pt", "--eval-episodes", "2").stdout
        assert f"eval return {summary['best_eval_return']:.1f}" in out


def test_cleanrl_recipe_is_the_standard_atari_path(tmp_path):
    """--recipe cleanrl: CleanRL ppo_atari's settings on the 4x84x84 grey stack with the full action set and the
    Nature CNN; a flag typed on top still wins over the recipe."""
    run_script(TRAIN, "--recipe", "cleanrl", "--clip-coef", "0.2", "--total-timesteps", "64", "--num-envs", "2",
               "--num-steps", "32", "--max-episode-steps", "40", "--eval-every", "0", "--eval-episodes", "1",
               "--runs-dir", tmp_path)
    run = only_run_dir(tmp_path)
    assert run.name.startswith("ALE-Pong-v5__ppo_nature__1__")
    config = json.loads((run / "config.json").read_text())
    assert (config["clip_coef"], config["ent_coef"], config["update_epochs"]) == (0.2, 0.01, 4)
    assert config["anneal_lr"] and config["learning_rate"] == 2.5e-4
    assert (config["collect"], config["discount_by"], config["hidden"]) == ("steps", "episodes", 512)
    weights = torch.load(run / "ckpt" / "latest.pt", weights_only=False)["agent"]
    assert weights["actor.weight"].shape == (6, 512)  # Pong's 6 actions, not the notes' UP/DOWN
    assert weights["body.convs.0.weight"].shape == (32, 4, 8, 8)  # 4 stacked frames in


def test_time_budget_stops_the_run_and_still_finishes_it(tmp_path):
    """--time-budget ends training early (after the first update here) and the run still evaluates, plots and
    writes its summary, as if --total-timesteps had been reached."""
    run_script(TRAIN, "--env-id", "CartPole-v1", "--backbone", "mlp", "--discount-by", "episodes", "--collect",
               "steps", "--num-envs", "2", "--num-steps", "64", "--total-timesteps", "1000000", "--time-budget",
               "0.0001", "--eval-every", "0", "--eval-episodes", "1", "--runs-dir", tmp_path)
    run = only_run_dir(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 128 and (run / "learning_curve.png").exists()

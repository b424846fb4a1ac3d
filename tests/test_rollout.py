"""The on-policy core of rl_utils against brute force: discounted returns and GAE across terminations and
truncations in several envs, the rollout buffer (bootstrapping, sequences with episode starts), observation
normalisation state, Dict observations and extra fields in the replay buffer, checkpoint helpers."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import rl_utils


# ---------------------------------------------------------------------------------------------------- brute force
def _stream(rng, steps, envs):
    """Random rewards/values with terminations and truncations mid-rollout (never both on one step)."""
    rewards = rng.normal(size=(steps, envs))
    values = rng.normal(size=(steps, envs))
    term = rng.random((steps, envs)) < 0.15
    trunc = (rng.random((steps, envs)) < 0.1) & ~term
    final_values = np.where(trunc, rng.normal(size=(steps, envs)), 0.0)
    last_values = rng.normal(size=envs)
    return rewards, values, term, trunc, final_values, last_values


def _value_after(t, e, values, term, trunc, final_values, last_values):
    """V of the real state after step t in env e."""
    if term[t, e]:
        return 0.0
    if trunc[t, e]:
        return final_values[t, e]
    return last_values[e] if t + 1 == len(values) else values[t + 1, e]


def _brute_gae(t, e, rewards, values, term, trunc, final_values, last_values, gamma, lam):
    """A_t = Σ_k (γλ)^k δ_{t+k}, walking forward in env e until its episode ends or the rollout does."""
    adv, weight = 0.0, 1.0
    for k in range(t, len(rewards)):
        delta = rewards[k, e] + gamma * _value_after(k, e, values, term, trunc, final_values, last_values) \
            - values[k, e]
        adv += weight * delta
        if term[k, e] or trunc[k, e]:
            break
        weight *= gamma * lam
    return adv


def _brute_return(t, e, rewards, values, term, trunc, final_values, last_values, gamma):
    """G_t = Σ γ^k r_{t+k} up to the episode's end or the rollout's, plus γ^m × what it bootstraps from."""
    ret, disc = 0.0, 1.0
    for k in range(t, len(rewards)):
        ret += disc * rewards[k, e]
        disc *= gamma
        if term[k, e] or trunc[k, e] or k + 1 == len(rewards):
            return ret + disc * _value_after(k, e, values, term, trunc, final_values, last_values)
    raise AssertionError("unreachable")


def _filled_buffer(rewards, values, term, trunc, final_values):
    steps, envs = rewards.shape
    buf = rl_utils.RolloutBuffer(steps, envs, gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2))
    for t in range(steps):
        buf.add(np.zeros((envs, 1)), np.zeros(envs), torch.zeros(envs), torch.tensor(values[t], dtype=torch.float32),
                rewards[t].astype(np.float32), term[t], trunc[t], torch.tensor(final_values[t], dtype=torch.float32))
    return buf


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 4), st.floats(0.5, 1.0), st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_gae_and_returns_match_brute_force(steps, envs, gamma, lam, seed):
    data = _stream(np.random.default_rng(seed), steps, envs)
    rewards, values, term, trunc, final_values, last_values = data
    buf = _filled_buffer(rewards, values, term, trunc, final_values)
    last = torch.tensor(last_values, dtype=torch.float32)
    buf.compute_advantages(last, gamma, lam)
    for t in range(steps):
        for e in range(envs):
            expected = _brute_gae(t, e, *data, gamma, lam)
            assert buf.advantages[t, e].item() == pytest.approx(expected, rel=1e-4, abs=1e-4)
            assert buf.returns[t, e].item() == pytest.approx(expected + values[t, e], rel=1e-4, abs=1e-4)
    buf.compute_returns(last, gamma)
    for t in range(steps):
        for e in range(envs):
            expected = _brute_return(t, e, *data, gamma)
            assert buf.returns[t, e].item() == pytest.approx(expected, rel=1e-4, abs=1e-4)


def test_gae_limits_lambda_one_is_monte_carlo_and_zero_is_td():
    rewards, values, term, trunc, final_values, last_values = _stream(np.random.default_rng(3), 20, 3)
    buf = _filled_buffer(rewards, values, term, trunc, final_values)
    last = torch.tensor(last_values, dtype=torch.float32)
    nxt = buf.next_values(last)
    mc = rl_utils.discounted_returns(buf.rewards, nxt, buf.cuts, 0.97)
    torch.testing.assert_close(rl_utils.gae(buf.rewards, buf.values, nxt, buf.cuts, 0.97, 1.0), mc - buf.values,
                               rtol=1e-5, atol=1e-5)
    td = buf.rewards + 0.97 * nxt - buf.values
    torch.testing.assert_close(rl_utils.gae(buf.rewards, buf.values, nxt, buf.cuts, 0.97, 0.0), td)


def test_whole_episode_returns_cut_at_every_episode_end():
    """REINFORCE collects whole episodes: with every chain ending in a termination, the bootstrap is unused."""
    rewards = torch.tensor([[1.0], [1.0], [1.0], [2.0], [2.0]])
    cuts = torch.tensor([[False], [False], [True], [False], [True]])
    out = rl_utils.discounted_returns(rewards, torch.full((5, 1), 99.0) * (~cuts), cuts, 0.5)
    torch.testing.assert_close(out.squeeze(1), torch.tensor([1.75, 1.5, 1.0, 3.0, 2.0]))


# ---------------------------------------------------------------------------------------------------- rollouts
def test_rollout_on_a_real_env_bootstraps_truncation_from_the_real_final_obs():
    """CartPole cut at 4 steps in 2 envs: the truncated step's final value is V(real last obs), not V(reset)."""
    envs = rl_utils.make_vec_env("CartPole-v1", 2, seed=0, max_episode_steps=4)
    reference = gym.make("CartPole-v1", max_episode_steps=4)
    obs, _ = envs.reset(seed=0)
    reference.reset(seed=0)
    value_fn = lambda o: o[:, 2] * 10  # noqa: E731 - a "critic" we can compute by hand: 10 x pole angle
    buf = rl_utils.RolloutBuffer(6, 2, envs.single_observation_space, envs.single_action_space)
    for t in range(6):
        nxt, rew, term, trunc, infos = envs.step(np.array([0, 0]))
        ref_next, *_ = reference.step(0) if t < 4 else (None,)
        finals = rl_utils.values_of_final_obs(value_fn, nxt, infos, term, trunc, torch.device("cpu"))
        buf.add(obs, np.array([0, 0]), torch.zeros(2), value_fn(torch.as_tensor(obs)), rew, term, trunc, finals)
        if t == 3:
            assert trunc.all() and not term.any()
            assert finals[0].item() == pytest.approx(10 * ref_next[2], rel=1e-6)
            assert finals[0].item() != pytest.approx(10 * nxt[0, 2], rel=1e-3)  # the reset obs is elsewhere
        else:
            assert finals is None  # nothing truncated: nothing to bootstrap from
        obs = nxt
    assert buf.episode_starts[:, 0].tolist() == [True, False, False, False, True, False]
    assert buf.next_start.tolist() == [False, False]


def test_sequences_cover_every_step_once_with_episode_starts():
    steps, envs, seq = 8, 3, 4
    buf = rl_utils.RolloutBuffer(steps, envs, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3))
    term = np.zeros((steps, envs), bool)
    term[2, 0] = term[5, 1] = True
    for t in range(steps):
        obs = np.stack([[t, e] for e in range(envs)]).astype(np.float32)
        buf.add(obs, np.zeros(envs), torch.zeros(envs), torch.zeros(envs), np.zeros(envs, np.float32), term[t],
                np.zeros(envs, bool))
    buf.compute_advantages(torch.zeros(envs), 0.99, 0.95)
    seen = set()
    for batch in buf.sequences(seq, 2, generator=torch.Generator().manual_seed(0)):
        assert batch.obs.shape[0] == seq and batch.episode_starts.shape == batch.obs.shape[:2]
        for b in range(batch.obs.shape[1]):
            t0, e = batch.obs[0, b].tolist()
            assert batch.obs[:, b, 0].tolist() == list(range(int(t0), int(t0) + seq))  # contiguous in time
            assert (batch.obs[:, b, 1] == e).all()  # one env
            for k in range(seq):
                t = int(t0) + k
                expected = t == 0 or bool(term[t - 1, int(e)])
                assert batch.episode_starts[k, b].item() == expected
                seen.add((t, int(e)))
    assert len(seen) == steps * envs
    with pytest.raises(rl_utils.UsageError, match="multiple"):
        next(iter(buf.sequences(3, 2)))


def test_flat_minibatches_are_a_permutation():
    buf = _filled_buffer(*_stream(np.random.default_rng(0), 6, 4)[:5])
    buf.compute_advantages(torch.zeros(4), 0.9, 0.9)
    seen = torch.cat([b.values for b in buf.minibatches(5, torch.Generator().manual_seed(1))])
    assert sorted(seen.tolist()) == sorted(buf.values.flatten().tolist())


# ---------------------------------------------------------------------------------------------------- normalisation
def test_observation_statistics_are_saved_restored_and_frozen_in_evaluation():
    envs = rl_utils.make_vec_env("Pendulum-v1", 2, seed=0, norm_obs=True, norm_reward=True, unit_actions=True)
    envs.reset(seed=0)
    for _ in range(50):
        _, rew, _, _, _ = envs.step(envs.action_space.sample())
    norm = rl_utils.find_wrapper(envs, rl_utils.NormalizeObservation)
    assert norm.obs_rms.count > 50 and np.abs(rew).max() <= 10
    state = rl_utils.get_env_state(envs)
    assert state["sub_envs"] is not None and set(state["wrappers"]) == {"NormalizeObservation", "NormalizeReward"}
    fresh = rl_utils.make_vec_env("Pendulum-v1", 2, seed=5, norm_obs=True, norm_reward=True, unit_actions=True)
    assert rl_utils.set_env_state(fresh, state)
    fresh_norm = rl_utils.find_wrapper(fresh, rl_utils.NormalizeObservation)
    np.testing.assert_array_equal(fresh_norm.obs_rms.mean, norm.obs_rms.mean)
    np.testing.assert_array_equal(fresh_norm.obs_rms.var, norm.obs_rms.var)
    before = norm.state_dict()
    seen = []
    rl_utils.evaluate(lambda i: rl_utils.make_env("Pendulum-v1", i, unit_actions=True, training=False),
                      lambda o: (seen.append(o.copy()), np.zeros((len(o), 1)))[1], 2, seed=9, obs_norm=norm)
    np.testing.assert_array_equal(norm.state_dict()["mean"], before["mean"])  # evaluation does not update
    raw = gym.make("Pendulum-v1")
    first, _ = raw.reset(seed=9)
    np.testing.assert_allclose(seen[0][0], norm.normalize(first), rtol=1e-5)  # but applies the statistics
    with pytest.raises(rl_utils.UsageError, match="NormalizeObservation"):
        rl_utils.set_env_state(rl_utils.make_vec_env("Pendulum-v1", 2, seed=0), state)


def test_normalized_final_obs_uses_the_same_statistics():
    envs = rl_utils.make_vec_env("CartPole-v1", 1, seed=0, norm_obs=True, max_episode_steps=3)
    envs.reset(seed=0)
    norm = rl_utils.find_wrapper(envs, rl_utils.NormalizeObservation)
    raw = gym.make("CartPole-v1", max_episode_steps=3)
    raw.reset(seed=0)
    for _ in range(3):
        _, _, _, trunc, infos = envs.step(np.array([1]))
        raw_last, *_ = raw.step(1)
    assert trunc[0]
    np.testing.assert_allclose(infos["final_obs"][0], norm.normalize(raw_last), rtol=1e-6)


# ---------------------------------------------------------------------------------------------------- spaces
class _GoalEnv(gym.Env):
    observation_space = gym.spaces.Dict({"observation": gym.spaces.Box(-10, 10, (2,), np.float32),
                                         "desired_goal": gym.spaces.Box(-10, 10, (1,), np.float32)})
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return {"observation": np.array([self.t, 1.0], np.float32), "desired_goal": np.array([5.0], np.float32)}

    def step(self, action):
        self.t += 1
        return self._obs(), -1.0, False, self.t >= 3, {}


def test_dict_observations_and_extra_fields_in_the_replay_buffer():
    envs = gym.vector.SyncVectorEnv([_GoalEnv, _GoalEnv], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    buf = rl_utils.ReplayBuffer(20, 2, envs.single_observation_space, envs.single_action_space,
                                extras={"skill": gym.spaces.Discrete(4)}, seed=0)
    obs, _ = envs.reset(seed=0)
    for _ in range(3):
        nxt, rew, term, trunc, infos = envs.step(np.zeros((2, 1), np.float32))
        real = rl_utils.real_next_obs(nxt, infos)
        buf.add(obs, real, np.zeros((2, 1)), rew, term, trunc, skill=np.array([1, 3]))
        obs = nxt
    assert trunc.all()
    assert real["observation"][:, 0].tolist() == [3.0, 3.0]  # the real last obs, not the reset (t = 0)
    assert nxt["observation"][:, 0].tolist() == [0.0, 0.0]
    batch = buf._batch(np.arange(6))
    assert set(batch.obs) == {"observation", "desired_goal"} and batch.obs["observation"].shape == (6, 2)
    assert batch.next_obs["observation"][:, 0].tolist() == [1, 1, 2, 2, 3, 3]
    assert batch.extras["skill"].tolist() == [1, 3, 1, 3, 1, 3]
    with pytest.raises(ValueError, match="extra fields"):
        buf.add(obs, real, np.zeros((2, 1)), rew, term, trunc)
    clone = rl_utils.ReplayBuffer(20, 2, envs.single_observation_space, envs.single_action_space,
                                  extras={"skill": gym.spaces.Discrete(4)})
    clone.load_state_dict(buf.state_dict())
    assert clone._batch(np.arange(6)).extras["skill"].tolist() == [1, 3, 1, 3, 1, 3]


def test_n_step_returns_is_a_pure_function_of_a_trajectory_chunk():
    rewards = np.array([[1.0], [2.0], [4.0], [8.0]], np.float32)
    term = np.array([[False], [False], [True], [False]])
    trunc = np.zeros_like(term)
    ret, disc, done, boot = rl_utils.n_step_returns(rewards, term, trunc, np.array([0, 1, 3]), np.zeros(3, int),
                                                    n=3, gamma=0.5, available=np.array([4, 3, 1]))
    np.testing.assert_allclose(ret, [1 + 1 + 1, 2 + 2, 8])  # stops at the termination; the last row is alone
    np.testing.assert_allclose(disc, [0.125, 0.25, 0.5])
    assert done.tolist() == [True, True, False] and boot.tolist() == [2, 2, 3]


def test_require_space_names_the_algorithms_that_fit():
    with pytest.raises(rl_utils.UsageError, match="Box action space use .*PPO"):
        rl_utils.require_discrete(gym.vector.SyncVectorEnv([lambda: gym.make("Pendulum-v1")]), "DQN")
    with pytest.raises(rl_utils.UsageError, match="flatten"):
        rl_utils.require_vector_obs(_GoalEnv.observation_space, "PPO (MLP policy)")
    with pytest.raises(rl_utils.UsageError, match="CNN"):
        rl_utils.require_vector_obs(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), "PPO (MLP policy)")


def test_unit_actions_rescale_and_clip_to_the_env_bounds():
    env = rl_utils.make_env("Pendulum-v1", unit_actions=True)()  # torque bounds ±2
    env.reset(seed=0)
    assert env.unwrapped.max_torque == 2.0
    env.step(np.array([5.0], np.float32))  # clipped to 1 -> rescaled to +2
    assert env.unwrapped.last_u == pytest.approx(2.0)
    env.step(np.array([-0.5], np.float32))
    assert env.unwrapped.last_u == pytest.approx(-1.0)


# ---------------------------------------------------------------------------------------------------- run args
@dataclasses.dataclass
class _Args(rl_utils.CommonArgs):
    """Test args."""

    lr: float = 0.1
    """a rate"""

    LIMITS = {"lr": (0, 1)}


@dataclasses.dataclass
class _Counters:
    step: int = 0
    best: float = -1.0


def test_limits_are_checked_once_at_the_edge():
    with pytest.raises(rl_utils.UsageError, match="--total-timesteps must be >= 1, got 0"):
        rl_utils.parse_args(_Args, ["--total-timesteps", "0"])
    with pytest.raises(rl_utils.UsageError, match="--lr must be <= 1"):
        rl_utils.parse_args(_Args, ["--lr", "2"])
    with pytest.raises(rl_utils.UsageError, match="--lr must be a number"):
        rl_utils.parse_args(_Args, ["--lr", "nan"])


def test_run_save_restore_roundtrip_and_resume_from_a_run_folder(tmp_path):
    args = _Args(runs_dir=str(tmp_path), run_name="r")
    run = rl_utils.Run(args, "test")
    net, counters, rng = torch.nn.Linear(3, 2), _Counters(step=7, best=3.5), np.random.default_rng(0)
    rng.random(3)
    run.save("latest", 7, net=net, counters=counters, explore_rng=rng)
    run.close()
    expected_draw = np.random.default_rng(0)
    expected_draw.random(3)
    args2, ckpt = rl_utils.parse_run_args(_Args, ["--resume", str(run.run_dir), "--lr", "0.5"])
    assert ckpt.path == run.run_dir / "ckpt" / "latest.pt" and ckpt.step == 7 and args2.lr == 0.5
    assert args2.run_name == "r"
    net2, counters2, rng2 = torch.nn.Linear(3, 2), _Counters(), np.random.default_rng(99)
    rl_utils.Run.restore(ckpt, net=net2, counters=counters2, explore_rng=rng2)
    assert torch.equal(net2.weight, net.weight) and counters2 == counters
    assert rng2.random() == expected_draw.random()
    with pytest.raises(rl_utils.UsageError, match="does not fit"):
        rl_utils.Run.restore(ckpt, net=torch.nn.Linear(4, 2))
    with pytest.raises(rl_utils.UsageError, match="has no 'optimizer'"):
        rl_utils.Run.restore(ckpt, optimizer=torch.optim.SGD(net.parameters(), lr=0.1))


def test_another_scripts_checkpoint_is_refused_in_one_line(tmp_path):
    path = rl_utils.save_checkpoint(tmp_path / "x.pt", script="classic_rl/dqn/train.py", args={"seed": 1})
    with pytest.raises(rl_utils.UsageError, match="written by classic_rl/dqn/train.py"):
        rl_utils.open_checkpoint(path, _Args)
    path = rl_utils.save_checkpoint(tmp_path / "y.pt", args={"seed": 1, "gamma_prime": 2})
    with pytest.raises(rl_utils.UsageError, match="gamma_prime"):
        rl_utils.open_checkpoint(path, _Args)
    with pytest.raises(rl_utils.UsageError, match="no checkpoint in run folder"):
        rl_utils.open_checkpoint(tmp_path, _Args)
    with pytest.raises(rl_utils.UsageError, match="cannot write the run folder"):
        rl_utils.Run(_Args(runs_dir=str(path), run_name="r"), "test")  # runs-dir is a file

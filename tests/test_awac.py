"""AWAC (offline_rl/awac): the two weightings, the Gaussian log-density, the critic target, no gradient into the
targets, the dataset preload (masks from terminals only, actions onto [-1, 1]), the script end to end with an
exact resume across the offline -> online switch, and the fast learning test: behaviour cloning on a small
scripted Pendulum dataset beats the random policy by far."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import rl_utils
from offline_rl import common, datasets
from offline_rl.awac import train as awac
from offline_rl.awac.model import Critics, GaussianActor
from tests.conftest import only_run_dir, run_script
from tests.offline_data import pendulum_dataset

TRAIN = "offline_rl/awac/train.py"
RANDOM_PENDULUM = -1200.0  # a uniform-random policy's mean return on Pendulum-v1 (about −1,200 ± 300)


def test_exp_weights_are_clipped_and_softmax_weights_sum_to_the_batch():
    adv = torch.tensor([-3.0, 0.0, 0.5, 4.0])
    exp = awac.awac_weights(adv, "exp", 1 / 3, max_weight=100.0)
    torch.testing.assert_close(exp, torch.tensor([np.exp(-9.0), 1.0, np.exp(1.5), 100.0], dtype=torch.float32))
    soft = awac.awac_weights(adv, "softmax", 2.0, max_weight=100.0)
    expected = 4 * np.exp(adv.numpy() / 2) / np.exp(adv.numpy() / 2).sum()
    torch.testing.assert_close(soft, torch.as_tensor(expected, dtype=torch.float32))
    assert soft.sum().item() == pytest.approx(4.0)
    assert torch.equal(awac.awac_weights(adv, "none", 1.0, 100.0), torch.ones(4))


def test_temperatures_per_phase():
    args = awac.Args()
    assert args.phase_temperature(online=False) == pytest.approx(1 / 3) and args.phase_temperature(True) == 1.0
    soft = awac.Args(weighting="softmax")
    assert soft.phase_temperature(False) == soft.phase_temperature(True) == 2.0
    typed = awac.Args(temperature=0.5, finetune_temperature=0.7)
    assert typed.phase_temperature(False) == 0.5 and typed.phase_temperature(True) == 0.7


def test_gaussian_log_prob_equals_torch_distributions_summed_over_dims():
    torch.manual_seed(0)
    actor = GaussianActor(5, 3, [16])
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([-0.3, -2.0, -7.0]))  # the last one is clamped to −6
    obs, actions = torch.randn(8, 5), torch.rand(8, 3) * 2 - 1
    mean, _ = actor(obs)
    std = torch.tensor([-0.3, -2.0, -6.0]).exp()
    expected = torch.distributions.Normal(mean, std).log_prob(actions).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, actions), expected)
    assert actor.sample(obs).abs().max() <= 1.0


def _batch(n: int = 16, obs_dim: int = 4, act_dim: int = 2) -> rl_utils.ReplayBatch:
    g = torch.Generator().manual_seed(1)
    return rl_utils.ReplayBatch(obs=torch.randn(n, obs_dim, generator=g), actions=torch.rand(n, act_dim, generator=g),
                                rewards=torch.randn(n, generator=g), next_obs=torch.randn(n, obs_dim, generator=g),
                                dones=(torch.rand(n, generator=g) < 0.3).float(), discounts=torch.full((n,), 0.99),
                                weights=torch.ones(n), indices=np.arange(n))


def test_critic_target_is_r_plus_discounted_min_target_q_at_a_policy_sample_and_cut_at_terminals():
    torch.manual_seed(0)
    actor, q = GaussianActor(4, 2, [16]), Critics(4, 2, [16])
    q_target = Critics(4, 2, [16]).requires_grad_(False)
    batch = _batch()
    torch.manual_seed(5)
    loss, q_values = awac.critic_loss(q, q_target, actor, batch)
    torch.manual_seed(5)  # the same policy sample a' ~ π(·|s')
    with torch.no_grad():
        next_q = q_target(batch.next_obs, actor.sample(batch.next_obs)).min(0).values
    target = batch.rewards + 0.99 * (1 - batch.dones) * next_q
    expected = sum(0.5 * ((q_values[i] - target) ** 2).mean() for i in range(2))
    torch.testing.assert_close(loss, expected)


def test_actor_loss_is_the_advantage_weighted_log_likelihood_of_the_data_actions():
    torch.manual_seed(0)
    actor, q = GaussianActor(4, 2, [16]), Critics(4, 2, [16])
    batch = _batch()
    torch.manual_seed(3)
    loss, weights = awac.actor_loss(q, actor, batch, "exp", 1 / 3, max_weight=100.0)
    torch.manual_seed(3)  # the same policy sample ã ~ π(·|s)
    with torch.no_grad():
        advantage = q(batch.obs, batch.actions).min(0).values - q(batch.obs, actor.sample(batch.obs)).min(0).values
    expected_w = (3 * advantage).exp().clamp(max=100.0)
    torch.testing.assert_close(weights, expected_w)
    torch.testing.assert_close(loss, -(expected_w * actor.log_prob(batch.obs, batch.actions)).mean())
    assert weights.std() > 0  # the weights differ per sample, so a loss without them would differ


def test_an_update_moves_targets_only_by_polyak_and_bc_trains_no_critic():
    torch.manual_seed(0)
    args = awac.Args(hidden_sizes="16", tau=0.5)
    actor, q = GaussianActor(4, 2, [16]), Critics(4, 2, [16])
    learner = dict(q=q, q_target=Critics(4, 2, [16]).requires_grad_(False),
                   actor_optimizer=torch.optim.Adam(actor.parameters(), lr=1e-3),
                   q_optimizer=torch.optim.Adam(q.parameters(), lr=1e-3))
    before = {k: v.clone() for k, v in learner["q_target"].state_dict().items()}
    awac.update(args, actor, learner, _batch(), online=False)
    after_q = q.state_dict()
    for k, v in learner["q_target"].state_dict().items():
        torch.testing.assert_close(v, 0.5 * before[k] + 0.5 * after_q[k])  # θ' ← τθ + (1 − τ)θ', nothing else
    assert all(p.grad is None for p in learner["q_target"].parameters())
    frozen = {k: v.clone() for k, v in q.state_dict().items()}
    stats = awac.update(awac.Args(weighting="none"), actor, learner, _batch(), online=False)
    assert "qf_loss" not in stats and all(torch.equal(v, frozen[k]) for k, v in q.state_dict().items())


def test_preload_keeps_terminals_as_terminations_time_outs_as_truncations_and_maps_actions(tmp_path):
    dataset = pendulum_dataset(tmp_path / "p.hdf5", episodes=2)
    dataset.terminals[50] = True  # a planted terminal: it must stop bootstrapping, a time-out must not
    buffer = rl_utils.ReplayBuffer(1000, 1, (3,), gym.spaces.Box(-1, 1, (1,)))
    common.preload(buffer, dataset, "Pendulum-v1")
    assert len(buffer) == 400
    np.testing.assert_array_equal(buffer.obs[:400, 0], dataset.observations)
    np.testing.assert_array_equal(buffer.next_obs[:400, 0], dataset.next_observations)
    np.testing.assert_allclose(buffer.actions[:400, 0], dataset.actions / 2.0, atol=1e-6)  # Pendulum's torque bounds ±2
    assert buffer.terminated[:400, 0].nonzero()[0].tolist() == [50]  # only terminals stop bootstrapping
    assert buffer.truncated[:400, 0].nonzero()[0].tolist() == [199, 399]  # the time-outs


def test_awac_runs_offline_then_online_resumes_exactly_across_the_switch_and_evaluates(tmp_path):
    data = tmp_path / "pendulum.hdf5"
    pendulum_dataset(data, episodes=4)
    flags = ("--dataset", data, "--eval-every", "0", "--eval-episodes", "2", "--hidden-sizes", "32,32",
              "--batch-size", "64", "--save-buffer")
    run_script(TRAIN, *flags, "--offline-steps", "300", "--total-timesteps", "100", "--runs-dir", tmp_path / "whole")
    run_script(TRAIN, *flags, "--offline-steps", "200", "--total-timesteps", "0", "--runs-dir", tmp_path / "split")
    split = only_run_dir(tmp_path / "split")
    out = run_script(TRAIN, "--resume", split, "--offline-steps", "300", "--total-timesteps", "100").stdout
    assert "refilling" not in out
    summary = json.loads((split / "summary.json").read_text())
    assert summary["offline_steps"] == 300 and summary["online_env_steps"] == 100 and summary["algo"] == "awac"
    a = torch.load(split / "ckpt" / "latest.pt", weights_only=False)
    b = torch.load(only_run_dir(tmp_path / "whole") / "ckpt" / "latest.pt", weights_only=False)
    for net in ("agent", "q", "q_target"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in b[net]), net
    mean, std = datasets.load_hdf5(data).obs_stats()  # the policy carries the dataset's statistics
    np.testing.assert_allclose(a["agent"]["normalizer.mean"].numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(a["agent"]["normalizer.std"].numpy(), std, rtol=1e-6)
    evaluated = run_script(TRAIN, "--eval-only", "--checkpoint", split / "ckpt" / "latest.pt").stdout
    assert "eval return" in evaluated


def test_behaviour_cloning_on_scripted_pendulum_data_beats_random(tmp_path):
    """The fast learning test (~15 s): 20 noisy swing-up episodes (dataset mean ≈ −150), 3,000 BC steps."""
    data = tmp_path / "pendulum.hdf5"
    dataset = pendulum_dataset(data, episodes=20)
    assert dataset.episode_returns().mean() > -300  # the data are worth imitating
    run_script(TRAIN, "--dataset", data, "--weighting", "none", "--offline-steps", "3000", "--eval-every", "0",
               "--eval-episodes", "10", "--hidden-sizes", "64,64", "--runs-dir", tmp_path / "runs")
    summary = json.loads((only_run_dir(tmp_path / "runs") / "summary.json").read_text())
    assert summary["algo"] == "bc" and summary["final_eval_return"] > RANDOM_PENDULUM / 2, summary


def test_the_d3rlpy_baseline_reads_the_same_file_and_reports_like_ours(tmp_path):
    """benchmarks/d3rlpy_baseline.py (the README's side-by-side column): a tiny run writes the summary keys the
    tables read, with the gradient-step budget as given."""
    data = tmp_path / "pendulum.hdf5"
    pendulum_dataset(data, episodes=2)
    run_script("benchmarks/d3rlpy_baseline.py", "--algo", "bc", "--dataset", data, "--total-timesteps", "100",
               "--eval-every", "50", "--eval-episodes", "2", "--runs-dir", tmp_path / "runs", timeout=300)
    summary = json.loads((only_run_dir(tmp_path / "runs") / "summary.json").read_text())
    assert summary["algo"] == "d3rlpy_bc" and summary["offline_steps"] == 100 and summary["best_eval_step"] in (50, 100)
    assert -2000 < summary["final_eval_return"] <= 0 and summary["sps"] > 0

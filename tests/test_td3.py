"""TD3 and DDPG (one script, DDPG = TD3 with its three changes off): the target against its formula with clipped
smoothing noise, the delayed actor and target updates, DDPG's defaults, OU noise, and exact resume."""

from __future__ import annotations

import copy

import numpy as np
import torch

import rl_utils
from classic_rl.ddpg.train import Args as DDPGArgs
from classic_rl.td3.train import Args, OUNoise, build_actor, build_learner, critic_loss, update
from tests.conftest import only_run_dir, resume_matches_straight_run, run_script

TRAIN = "classic_rl/td3/train.py"
TINY = ("--total-timesteps", "600", "--learning-starts", "300", "--batch-size", "32", "--hidden-sizes", "32,32",
        "--eval-every", "300", "--eval-episodes", "2")


def _learner(args: Args):
    torch.manual_seed(0)
    envs = rl_utils.make_vec_env("Pendulum-v1", 1, 0, unit_actions=True)
    actor = build_actor(args, envs, torch.device("cpu"))
    return actor, build_learner(args, envs, torch.device("cpu"), actor)


def _batch(n: int = 16) -> rl_utils.ReplayBatch:
    g = torch.Generator().manual_seed(3)
    return rl_utils.ReplayBatch(obs=torch.randn(n, 3, generator=g), actions=torch.rand(n, 1, generator=g) * 2 - 1,
                                rewards=torch.randn(n, generator=g), next_obs=torch.randn(n, 3, generator=g),
                                dones=(torch.arange(n) % 4 == 0).float(), discounts=torch.full((n,), 0.99),
                                weights=torch.ones(n), indices=np.arange(n), extras={})


def test_target_uses_clipped_smoothing_noise_and_the_min_of_the_twins():
    args = Args(hidden_sizes="16,16")
    actor, learner = _learner(args)
    batch = _batch()
    torch.manual_seed(9)
    loss, q_values = critic_loss(learner["q"], learner["q_target"], learner["actor_target"], batch,
                                 noise=5.0, noise_clip=0.3)  # huge noise: only the clip keeps it near μ'(s')
    torch.manual_seed(9)
    mu = learner["actor_target"](batch.next_obs)
    eps = (torch.randn_like(mu) * 5.0).clamp(-0.3, 0.3)
    smoothed = (mu + eps).clamp(-1, 1)
    assert (smoothed - mu).abs().max() <= 0.3 + 1e-6
    x = torch.cat([batch.next_obs, smoothed], -1)
    q1, q2 = (learner["q_target"].net.member(i)(x).squeeze(-1) for i in range(2))
    y = batch.rewards + 0.99 * (1 - batch.dones) * torch.minimum(q1, q2)
    expected = sum(0.5 * ((q_values[i] - y) ** 2).mean() for i in range(2))
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-5, atol=1e-6)


def test_actor_and_targets_move_only_on_delayed_updates():
    args = Args(hidden_sizes="16,16")
    actor, learner = _learner(args)
    frozen = {k: copy.deepcopy(learner[k]) for k in ("q_target", "actor_target")}
    actor_before = copy.deepcopy(actor)
    update(args, actor, learner, _batch(), update_actor=False)
    for a, b in zip(actor.parameters(), actor_before.parameters()):
        assert torch.equal(a, b)  # the critic stepped, the actor did not
    for k in frozen:
        for a, b in zip(learner[k].parameters(), frozen[k].parameters()):
            assert torch.equal(a, b) and not a.requires_grad and a.grad is None
    update(args, actor, learner, _batch(), update_actor=True)
    assert any(not torch.equal(a, b) for a, b in zip(actor.parameters(), actor_before.parameters()))
    for before, online, after in zip(frozen["actor_target"].parameters(), actor.parameters(),
                                     learner["actor_target"].parameters()):
        torch.testing.assert_close(after, before + args.tau * (online - before))


def test_ddpg_is_td3_with_its_three_changes_off():
    ddpg, td3 = DDPGArgs(), Args()
    assert (ddpg.num_critics, ddpg.policy_delay, ddpg.target_policy_noise) == (1, 1, 0.0)
    assert (td3.num_critics, td3.policy_delay, td3.target_policy_noise) == (2, 2, 0.2)
    actor, learner = _learner(DDPGArgs(hidden_sizes="16,16"))
    assert learner["q"](torch.zeros(4, 3), torch.zeros(4, 1)).shape == (1, 4)


def test_ou_noise_is_correlated_mean_reverting_and_resets():
    noise = OUNoise((2, 1), theta=0.15, sigma=0.2, rng=np.random.default_rng(0))
    xs = np.array([noise().copy() for _ in range(5000)])[:, 0, 0]
    lag1 = np.corrcoef(xs[:-1], xs[1:])[0, 1]
    assert 0.8 < lag1 < 0.9  # 1 − θ = 0.85 for an AR(1) process
    assert abs(xs.std() - 0.2 / np.sqrt(1 - 0.85 ** 2)) < 0.05  # stationary std σ / √(1 − (1 − θ)²)
    noise.reset(np.array([True, False]))
    assert noise.state[0, 0] == 0 and noise.state[1, 0] != 0


def test_resume_continues_exactly_with_ou_noise(tmp_path):
    a, b = resume_matches_straight_run(TRAIN, tmp_path, (*TINY, "--exploration-noise", "ou", "--save-buffer"), at=450)
    for key in ("agent", "q", "q_target", "actor_target"):
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], rtol=0, atol=0)
    assert np.array_equal(a["ou_noise"]["state"], b["ou_noise"]["state"])


def test_the_loop_updates_the_actor_every_policy_delay_critic_steps(tmp_path):
    """The wiring in main(), not just update(): with --log-every 1 every update is logged, and the actor's loss
    appears only on the updates that also moved the actor (every 2nd with TD3's delay, every one with DDPG's)."""
    for script, per_actor in ((TRAIN, 2), ("classic_rl/ddpg/train.py", 1)):
        run_script(script, "--runs-dir", tmp_path / script.split("/")[1], *TINY, "--log-every", "1")
        rows = (only_run_dir(tmp_path / script.split("/")[1]) / "metrics.csv").read_text().splitlines()
        critic = sum(",losses/qf_loss," in r for r in rows)
        actor = sum(",losses/actor_loss," in r for r in rows)
        assert critic == 300 and actor == critic // per_actor, (script, critic, actor)  # steps 301-600 learn


def test_the_buffer_gets_truncation_not_termination_and_the_real_final_observation(tmp_path):
    """Pendulum never terminates; its 200-step time limit truncates. The off-policy Session must store that as
    truncated (so the target bootstraps) with the real last observation, not the next episode's first."""
    from classic_rl import off_policy

    args = Args(runs_dir=str(tmp_path), run_name="x", hidden_sizes="8,8", learning_starts=10_000)
    s = off_policy.Session(args, None, "TD3", build_actor, build_learner)
    last_obs = None
    for _ in range(200):
        last_obs = s.obs.copy()
        s.step_envs(s.random_actions())
    b = s.buffer
    assert not b.terminated[:200].any() and b.truncated[:200, 0].tolist() == [False] * 199 + [True]
    assert np.array_equal(b.obs[199, 0], last_obs[0])
    assert not np.allclose(b.next_obs[199, 0], s.obs[0])  # the real final observation, not the reset one
    s.run.close()
    s.envs.close()

"""DIAYN: the pseudo-reward and the discriminator loss against their formulas, the skill fed to the policy and the
critics, the env reward kept out of the critic target, skills held for an episode and redrawn at its end (also
at a truncation), the 2-D env, every entry point as a user runs it, exact resume, and one learning test."""

from __future__ import annotations

import copy
import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium.utils.env_checker import check_env

import rl_utils
from classic_rl.diayn import envs as _envs  # noqa: F401  (registers Navigation2D-v0)
from classic_rl.diayn.train import (
    Args,
    Discriminator,
    build_actor,
    build_learner,
    diayn_batch,
    discriminator_loss,
    pseudo_reward,
    resample_skills,
    skill_input,
    update,
)
from tests.conftest import only_run_dir, resume_matches_straight_run, run_script

TRAIN = "classic_rl/diayn/train.py"
TINY = ("--total-timesteps", "600", "--learning-starts", "300", "--batch-size", "32", "--hidden-sizes", "32,32",
        "--num-skills", "4", "--eval-every", "300", "--eval-episodes", "1")
K = 4


def _learner(seed: int = 0):
    torch.manual_seed(seed)
    args = Args(hidden_sizes="16,16", batch_size=8, num_skills=K)
    envs = rl_utils.make_vec_env("Navigation2D-v0", 1, 0, unit_actions=True)
    actor = build_actor(args, envs, torch.device("cpu"))
    return args, actor, build_learner(args, envs, torch.device("cpu"), actor)


def _batch(n: int = 8, rewards: float | None = None) -> rl_utils.ReplayBatch:
    g = torch.Generator().manual_seed(3)
    env_rewards = torch.randn(n, generator=g) if rewards is None else torch.full((n,), rewards)
    box = lambda: torch.rand(n, 2, generator=g) * 2 - 1  # noqa: E731
    return rl_utils.ReplayBatch(obs=box(), actions=box(), rewards=env_rewards, next_obs=box(),
                                dones=torch.zeros(n), discounts=torch.full((n,), 0.99), weights=torch.ones(n),
                                indices=np.arange(n), extras={"skill": torch.arange(n) % K})


def test_pseudo_reward_is_log_q_of_the_skill_minus_log_uniform_prior():
    torch.manual_seed(0)
    disc = Discriminator(3, 5, (16,))
    states, skills = torch.randn(10, 3), torch.tensor([0, 1, 2, 3, 4, 4, 3, 2, 1, 0])
    log_q = torch.log_softmax(disc(states), dim=-1)  # by hand: log q(z|s) − log p(z), p(z) = 1/5
    expected = torch.stack([log_q[i, skills[i]] for i in range(10)]) - math.log(1 / 5)
    torch.testing.assert_close(pseudo_reward(disc, states, skills, 5), expected.detach())
    assert (pseudo_reward(disc, states, skills, 5) <= math.log(5) + 1e-6).all()  # log K is the most it can pay


def test_discriminator_loss_is_torch_cross_entropy_and_counts_argmax_hits():
    torch.manual_seed(1)
    disc = Discriminator(2, K, (8,))
    states, skills = torch.randn(12, 2), torch.randint(0, K, (12,))
    loss, acc = discriminator_loss(disc, states, skills)
    logits = disc(states)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, skills))
    assert acc == pytest.approx((logits.argmax(1) == skills).float().mean().item())
    loss.backward()
    assert all(p.grad is not None for p in disc.parameters())


def test_policy_and_critics_take_the_one_hot_skill_beside_the_observation():
    args, actor, learner = _learner()
    batch = _batch()
    relabelled = diayn_batch(batch, learner["discriminator"], K)
    one_hot = F.one_hot(batch.extras["skill"], K).float()
    for ours, raw in ((relabelled.obs, batch.obs), (relabelled.next_obs, batch.next_obs)):
        torch.testing.assert_close(ours, torch.cat([raw, one_hot], -1))
    assert actor.trunk[0].in_features == 2 + K  # π(a | s, z)
    assert learner["q"].net.weights[0].shape[1] == 2 + K + 2  # Q(s, z, a): observation, skill, action
    assert learner["discriminator"].net[0].in_features == 2  # q(z | s): the state alone
    obs = torch.zeros(1, 2)  # the same state under two skills: two different actions
    a0 = actor.deterministic(skill_input(obs, torch.tensor([0]), K))
    a1 = actor.deterministic(skill_input(obs, torch.tensor([1]), K))
    assert not torch.allclose(a0, a1)


def test_the_env_reward_never_reaches_the_critic_target():
    """Two batches that differ only in the env's reward (0 vs 1e6) give the same relabelled rewards and, from
    the same state, the same update of every network: the critics regress on log q(z|s') − log p(z) alone."""
    args, actor, learner = _learner()
    disc = learner["discriminator"]
    small, huge = _batch(rewards=0.0), _batch(rewards=1e6)
    torch.testing.assert_close(diayn_batch(small, disc, K).rewards, diayn_batch(huge, disc, K).rewards)
    torch.testing.assert_close(diayn_batch(huge, disc, K).rewards,
                               pseudo_reward(disc, huge.next_obs, huge.extras["skill"], K))
    after = []
    for batch in (small, huge):
        a, lrn = copy.deepcopy(actor), copy.deepcopy(learner)
        torch.manual_seed(7)
        update(args, a, lrn, batch, target_entropy=-2.0)
        after.append((a, lrn))
    for name in ("q", "discriminator"):
        for p, q in zip(after[0][1][name].parameters(), after[1][1][name].parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    for p, q in zip(after[0][0].parameters(), after[1][0].parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_resample_redraws_exactly_the_skills_of_ended_episodes():
    rng = np.random.default_rng(0)
    skills = np.zeros(1000, dtype=np.int64)
    ended = np.arange(1000) % 2 == 0
    resample_skills(skills, ended, rng, 8)
    assert (skills[~ended] == 0).all()
    assert set(np.unique(skills[ended])) == set(range(8))  # uniform over all K skills


def test_navigation_env_passes_the_gymnasium_checker():
    env = gym.make("Navigation2D-v0", render_mode="rgb_array")
    check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    for _ in range(50):
        obs, reward, terminated, truncated, _ = env.step(np.array([1.0, 1.0], np.float32))
    assert truncated and not terminated and np.allclose(obs, [1.0, 1.0])  # clipped at the corner
    assert reward == pytest.approx(-np.linalg.norm(obs - np.array([0.7, 0.7])), abs=1e-6)
    assert env.render().shape == (128, 128, 3)


def test_smoke_run_skills_per_episode_eval_only_and_video(tmp_path):
    """The script as a user runs it: every output file, the summary's keys; in the saved replay buffer each
    episode (ended by a truncation every 50 steps: Navigation2D never terminates) carries one skill, redrawn at
    its end; --eval-only reproduces the final accuracy and records one video per skill."""
    proc = run_script(TRAIN, "--runs-dir", tmp_path, "--num-envs", "2", "--save-buffer", *TINY)
    run = only_run_dir(tmp_path)
    assert run.name.startswith("Navigation2D-v0__diayn__1__")
    for name in ("config.json", "metrics.csv", "learning_curve.png", "skills.png", "summary.json",
                 "ckpt/latest.pt", "ckpt/best.pt"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 600 and summary["num_skills"] == K
    for key in ("final_eval_return", "final_discriminator_accuracy", "best_heldout_return", "wall_time_s"):
        assert np.isfinite(summary[key]), key
    assert 0 <= summary["final_discriminator_accuracy"] <= 1
    tags = {line.split(",")[1] for line in (run / "metrics.csv").read_text().splitlines()[1:]}
    assert {"eval/discriminator_accuracy", "eval/return", "eval/return_skill3", "losses/discriminator_loss",
            "losses/pseudo_reward", "losses/qf_loss"} <= tags and "final discriminator accuracy" in proc.stdout

    buf = torch.load(run / "ckpt/latest.pt", weights_only=False)["buffer"]
    skill, ended = buf["extras"]["skill"][:300], (buf["terminated"] | buf["truncated"])[:300]  # [300 rows, 2 envs]
    assert ended.sum() == 12  # 300 steps / 50 per episode, 2 envs
    same = skill[1:] == skill[:-1]
    assert same[~ended[:-1]].all()  # within an episode the skill never changes
    per_episode = [skill[t, e] for e in range(2) for t in range(0, 300, 50)]
    assert len(set(per_episode)) > 1 and not same[ended[:-1]].all()  # ...and it is redrawn when one ends

    out = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt/latest.pt", "--eval-episodes", "1",
                     "--capture-video")
    assert f"discriminator accuracy {summary['final_discriminator_accuracy']:.3f}" in out.stdout
    assert len(list((run / "videos").glob("eval-only-skill*.mp4"))) == K and (run / "skills_filmstrip.png").exists()


def test_same_seed_same_run_and_resume_continues_exactly(tmp_path):
    a, b = resume_matches_straight_run(TRAIN, tmp_path, (*TINY, "--save-buffer"), at=450)
    for key in ("agent", "q", "q_target", "discriminator"):
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], rtol=0, atol=0)
    np.testing.assert_array_equal(a["skills"], b["skills"])


@pytest.mark.slow
def test_diayn_separates_four_skills_on_the_2d_env(tmp_path):
    """One learning test: 4 skills on Navigation2D-v0 (64-64 nets, 2.5k steps, ~30 s on 2 CPU cores) from chance
    (0.25) to a discriminator accuracy >= 0.8 on the deterministic skills."""
    run_script(TRAIN, "--runs-dir", tmp_path, "--num-skills", "4", "--hidden-sizes", "64,64", "--total-timesteps",
               "2500", "--learning-starts", "500", "--eval-every", "0", timeout=300)
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["final_discriminator_accuracy"] >= 0.8, summary

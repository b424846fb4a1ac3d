"""BCQ (offline_rl/bcq): the soft clipped double-Q target over generated actions against a per-state loop, the
bounded perturbation, argmax-Q action selection, the VAE's loss against torch.distributions, targets moved by
Polyak steps only, and the script as a user runs it (exact resume, the dataset's statistics in the checkpoint,
--eval-only)."""

from __future__ import annotations

import json

import numpy as np
import torch

import rl_utils
from offline_rl.bcq import train as bcq
from offline_rl.bcq.model import VAE, BCQPolicy, Perturbation, select
from tests.conftest import only_run_dir, run_script
from tests.offline_data import pendulum_dataset

TRAIN = "offline_rl/bcq/train.py"
TINY = ("--hidden-sizes", "32,32", "--vae-hidden-sizes", "32,32", "--n-act", "10", "--batch-size", "32")


def _policy(phi: float = 0.05) -> BCQPolicy:
    torch.manual_seed(0)
    return BCQPolicy(4, 2, [16], [16], latent_dim=4, phi=phi, n_act=7)


def _batch(n: int = 12) -> rl_utils.ReplayBatch:
    g = torch.Generator().manual_seed(1)
    return rl_utils.ReplayBatch(obs=torch.randn(n, 4, generator=g), actions=torch.rand(n, 2, generator=g) * 2 - 1,
                                rewards=torch.randn(n, generator=g), next_obs=torch.randn(n, 4, generator=g),
                                dones=(torch.rand(n, generator=g) < 0.3).float(), discounts=torch.full((n,), 0.99),
                                weights=torch.ones(n), indices=np.arange(n))


def test_perturbation_moves_an_action_by_at_most_phi_and_phi_zero_is_the_identity():
    obs, actions = torch.randn(64, 4), torch.rand(64, 2) * 1.8 - 0.9  # inside (−1, 1) by more than Φ
    moved = Perturbation(4, 2, [16], phi=0.05)(obs, actions)
    assert (moved - actions).abs().max() <= 0.05 + 1e-6 and (moved - actions).abs().max() > 0
    assert torch.equal(Perturbation(4, 2, [16], phi=0.0)(obs, actions), actions)
    edge = Perturbation(4, 2, [16], phi=1.0)(obs, torch.ones(64, 2))
    assert edge.abs().max() <= 1.0  # clipped to the action box


def test_vae_loss_is_mse_plus_half_the_kl_of_torch_distributions():
    policy, batch = _policy(), _batch()
    torch.manual_seed(3)
    loss = bcq.vae_loss(policy, batch, kl_weight=0.5)
    torch.manual_seed(3)  # the same reparameterised z
    recon, mean, std = policy.vae(batch.obs, batch.actions)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mean, std), torch.distributions.Normal(0, 1))
    torch.testing.assert_close(loss, (recon - batch.actions).pow(2).mean() + 0.5 * kl.mean())


def test_generated_latents_are_clipped_to_half():
    vae = VAE(4, 2, [16], latent_dim=3)
    obs = torch.randn(500, 4)
    torch.manual_seed(0)
    generated = vae.decode(obs)
    torch.manual_seed(0)
    z = torch.randn(500, 3)
    assert z.abs().max() > 0.5  # the draw has values the clip must cut
    torch.testing.assert_close(generated, vae.decode(obs, z.clamp(-0.5, 0.5)))


def test_select_takes_the_candidate_of_highest_q1_for_each_state():
    policy = _policy()
    obs, candidates = torch.randn(5, 4), torch.rand(5, 9, 2) * 2 - 1
    with torch.no_grad():
        chosen = select(policy.q, obs, candidates)
        for b in range(5):
            q1 = torch.stack([policy.q(obs[b:b + 1], candidates[b, i:i + 1])[0, 0] for i in range(9)])
            torch.testing.assert_close(chosen[b], candidates[b, q1.argmax()])


def test_critic_target_equals_a_loop_over_states_and_generated_actions():
    policy, batch = _policy(), _batch()
    q_target, perturb_target = _policy().q, Perturbation(4, 2, [16], phi=0.05)
    torch.manual_seed(7)
    target = bcq.critic_target(policy, q_target, perturb_target, batch, n=10, lam=0.75)
    torch.manual_seed(7)  # the same generated actions
    with torch.no_grad():
        candidates = policy.candidates(batch.next_obs, 10, perturb_target)  # [B, 10, d]
        for b in range(len(batch.obs)):
            values = []
            for i in range(10):
                q1, q2 = q_target(batch.next_obs[b:b + 1], candidates[b, i:i + 1])[:, 0]
                values.append(0.75 * min(q1, q2) + 0.25 * max(q1, q2))
            expected = batch.rewards[b] + 0.99 * (1 - batch.dones[b]) * max(values)
            torch.testing.assert_close(target[b], expected)


def test_an_update_moves_both_targets_only_by_polyak():
    args = bcq.Args(tau=0.5, n_target=3)
    policy = _policy()
    learner = dict(q_target=_policy().q.requires_grad_(False),
                   perturb_target=Perturbation(4, 2, [16], phi=0.05).requires_grad_(False),
                   vae_optimizer=torch.optim.Adam(policy.vae.parameters()),
                   actor_optimizer=torch.optim.Adam(policy.perturb.parameters()),
                   q_optimizer=torch.optim.Adam(policy.q.parameters()))
    before = {name: {k: v.clone() for k, v in learner[name].state_dict().items()}
              for name in ("q_target", "perturb_target")}
    vae_before = {k: v.clone() for k, v in policy.vae.state_dict().items()}
    stats = bcq.update(args, policy, learner, _batch())
    for name, online in (("q_target", policy.q), ("perturb_target", policy.perturb)):
        after = online.state_dict()
        for k, v in learner[name].state_dict().items():
            if k.startswith("normalizer"):
                continue
            torch.testing.assert_close(v, 0.5 * before[name][k] + 0.5 * after[k])  # θ' ← τθ + (1 − τ)θ'
        assert all(p.grad is None for p in learner[name].parameters())
    assert any(not torch.equal(v, vae_before[k]) for k, v in policy.vae.state_dict().items())  # the VAE learned
    assert {"vae_loss", "qf_loss", "actor_loss"} <= set(stats)


def test_bcq_resumes_exactly_carries_the_dataset_statistics_and_evaluates(tmp_path):
    data = tmp_path / "pendulum.hdf5"
    pendulum_dataset(data, episodes=4)
    flags = ("--dataset", data, "--eval-every", "0", "--eval-episodes", "2", "--save-buffer", *TINY)
    run_script(TRAIN, *flags, "--offline-steps", "120", "--runs-dir", tmp_path / "whole")
    run_script(TRAIN, *flags, "--offline-steps", "70", "--runs-dir", tmp_path / "split")
    split = only_run_dir(tmp_path / "split")
    run_script(TRAIN, "--resume", split, "--offline-steps", "120")
    summary = json.loads((split / "summary.json").read_text())
    assert summary["algo"] == "bcq" and summary["offline_steps"] == 120 and "final_eval_return" in summary
    a = torch.load(split / "ckpt" / "latest.pt", weights_only=False)
    b = torch.load(only_run_dir(tmp_path / "whole") / "ckpt" / "latest.pt", weights_only=False)
    for net in ("agent", "q_target", "perturb_target"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in b[net]), net
    from offline_rl import datasets

    mean, _ = datasets.load_hdf5(data).obs_stats()
    for part in ("vae", "perturb", "q"):  # every network normalises with the dataset's statistics
        np.testing.assert_allclose(a["agent"][f"{part}.normalizer.mean"].numpy(), mean, rtol=1e-6)
    evaluated = run_script(TRAIN, "--eval-only", "--checkpoint", split / "ckpt" / "latest.pt").stdout
    assert "eval return" in evaluated

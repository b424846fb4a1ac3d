"""C51: the loss against a brute-force target (plain and Double action selection, terminations, n-step discounts),
no gradient into the target network, the categorical network's shapes and dueling per atom, and every entry point
as a user runs it (train, eval-only, resume, the distribution figure, Atari end to end), plus one learning test."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

import rl_utils
from distributional_rl.c51.model import CategoricalQNetwork
from distributional_rl.c51.train import Args, c51_loss
from distributional_rl.categorical import make_support
from tests.conftest import only_run_dir, resume_matches_straight_run, run_script
from tests.test_distributional import brute_force_projection

TRAIN = "distributional_rl/c51/train.py"
PLOT = "distributional_rl/c51/plot_distributions.py"
TINY = ("--total-timesteps", "600", "--learning-starts", "200", "--train-frequency", "4", "--gradient-steps", "1",
        "--eval-every", "300", "--eval-episodes", "2", "--batch-size", "16")


class _TableNet(torch.nn.Module):
    """Logits per observation id ([n_obs, A, N] table), with CategoricalQNetwork's interface."""

    def __init__(self, logits, support):
        super().__init__()
        self.table = torch.nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))
        self.register_buffer("support", support)

    def logits(self, obs):
        return self.table[obs.long().view(-1)]

    def probs(self, obs):
        return torch.softmax(self.logits(obs), -1)

    def forward(self, obs):
        return (self.probs(obs) * self.support).sum(-1)


def _batch(obs, actions, rewards, next_obs, dones, discounts):
    n = len(actions)
    return rl_utils.ReplayBatch(obs, actions, rewards, next_obs, dones, discounts, torch.ones(n), np.arange(n))


def _case(seed=0, n_obs=4, n_actions=3, batch=12):
    g = torch.Generator().manual_seed(seed)
    support = make_support(-4.0, 4.0, 9)
    online = _TableNet(torch.randn(n_obs, n_actions, 9, generator=g) * 2, support)
    target = _TableNet(torch.randn(n_obs, n_actions, 9, generator=g) * 2, support)
    batch = _batch(torch.randint(n_obs, (batch,), generator=g).float(), torch.randint(n_actions, (batch,), generator=g),
                   torch.randn(batch, generator=g) * 3, torch.randint(n_obs, (batch,), generator=g).float(),
                   (torch.rand(batch, generator=g) < 0.3).float(), 0.9 ** torch.randint(1, 4, (batch,), generator=g))
    return online, target, batch, support


@pytest.mark.parametrize("double", [False, True])
def test_loss_equals_a_brute_force_target_sample_by_sample(double):
    """For every sample: a* by the mean of the target's (or, Double, the online net's) distribution at s', the
    brute-force projection of r + γ^m (1 − done) z under p_target(s', a*), then −Σ m log p_online(s, a)."""
    online, target, batch, support = _case(seed=int(double))
    loss, ce, q_taken = c51_loss(online, target, batch, double)
    for i in range(len(batch.actions)):
        s, s2, a = int(batch.obs[i]), int(batch.next_obs[i]), int(batch.actions[i])
        chooser = online if double else target
        a_star = int(torch.argmax(chooser(torch.tensor([float(s2)]))[0]))
        p_next = target.probs(torch.tensor([float(s2)]))[0, a_star].detach()
        m = brute_force_projection(p_next[None], batch.rewards[i:i + 1], batch.discounts[i:i + 1],
                                   batch.dones[i:i + 1], support)[0]
        log_p = torch.log_softmax(online.table[s, a].double(), -1)
        torch.testing.assert_close(ce[i].double(), -(m * log_p).sum(), atol=1e-5, rtol=0)
        torch.testing.assert_close(q_taken[i], (torch.softmax(online.table[s, a], -1) * support).sum())
    torch.testing.assert_close(loss, ce.mean())


def test_double_selection_changes_the_target_where_the_nets_disagree():
    support = make_support(-1.0, 1.0, 3)
    # state 1: the target net's means prefer action 1 (mass on +1), the online net's prefer action 0
    target_logits = torch.tensor([[[0.0, 0.0, 0.0]] * 2, [[9.0, 0.0, 0.0], [0.0, 0.0, 9.0]]])
    online_logits = torch.tensor([[[0.0, 0.0, 0.0]] * 2, [[0.0, 0.0, 9.0], [9.0, 0.0, 0.0]]])
    online, target = _TableNet(online_logits, support), _TableNet(target_logits, support)
    batch = _batch(torch.tensor([0.0]), torch.tensor([0]), torch.tensor([0.0]), torch.tensor([1.0]),
                   torch.tensor([0.0]), torch.tensor([1.0]))
    _, ce_plain, _ = c51_loss(online, target, batch, double=False)
    _, ce_double, _ = c51_loss(online, target, batch, double=True)
    p_target = torch.softmax(target_logits[1], -1)  # the two candidate target distributions (γ = 1, r = 0)
    log_p = torch.log_softmax(online_logits[0, 0], -1)
    torch.testing.assert_close(ce_plain[0], -(p_target[1] * log_p).sum())  # argmax of the target's means
    torch.testing.assert_close(ce_double[0], -(p_target[0] * log_p).sum())  # argmax of the online net's means


def test_no_gradient_reaches_the_target_network():
    online, target, batch, _ = _case()
    target.requires_grad_(True)  # even if the target's weights could take a gradient, the target is built without
    loss, _, _ = c51_loss(online, target, batch, double=True)
    loss.backward()
    assert target.table.grad is None and online.table.grad is not None and online.table.grad.abs().sum() > 0


@pytest.mark.parametrize("dueling", [False, True])
def test_network_gives_a_distribution_per_action_and_its_mean(dueling):
    support = make_support(-10.0, 10.0, 51)
    net = CategoricalQNetwork((4,), 3, support, (32, 32), dueling)
    obs = torch.randn(5, 4)
    probs = net.probs(obs)
    assert probs.shape == (5, 3, 51)
    torch.testing.assert_close(probs.sum(-1), torch.ones(5, 3))
    torch.testing.assert_close(net(obs), (probs * support).sum(-1))
    if dueling:  # Q-logits = V + A − mean_a A per atom: the mean over actions of the logits is the value stream
        head = net.body.head
        features = net.body.trunk(obs)
        torch.testing.assert_close(net.logits(obs).mean(dim=1), head.value(features), atol=1e-5, rtol=0)


def test_bad_bounds_are_one_line():
    with pytest.raises(rl_utils.UsageError, match="--v-min must be < --v-max"):
        Args(v_min=5.0, v_max=5.0)


def test_smoke_run_eval_only_and_the_distribution_figure(tmp_path):
    proc = run_script(TRAIN, "--runs-dir", tmp_path, *TINY, "--checkpoint-every", "300", "--double", "--per",
                      "--n-step", "3")
    run = only_run_dir(tmp_path)
    assert run.name.startswith("CartPole-v1__c51_double_per_3step__1__")
    for name in ("config.json", "metrics.csv", "learning_curve.png", "summary.json", "ckpt/best.pt",
                 "ckpt/step_300.pt", "ckpt/step_600.pt"):
        assert (run / name).exists(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["env_steps"] == 600 and "final eval return" in proc.stdout.strip().splitlines()[-1]
    state = rl_utils.open_checkpoint(run, Args)["q_net"]
    torch.testing.assert_close(state["support"], make_support(-100.0, 100.0, 101))  # the atoms travel with it
    assert state["body.head.2.weight"].shape[0] == 2 * 101  # 2 actions x 101 atoms
    evaluated = run_script(TRAIN, "--eval-only", "--checkpoint", run / "ckpt/best.pt", "--eval-episodes", "2")
    assert "eval return" in evaluated.stdout
    out = run_script(PLOT, "--run", run, "--num-states", "2").stdout
    assert (run / "distributions.png").stat().st_size > 10_000 and "distributions.png" in out


def test_resume_continues_exactly(tmp_path):
    straight, resumed = resume_matches_straight_run(TRAIN, tmp_path, (*TINY, "--save-buffer", "--per"), at=300)
    assert all(torch.equal(straight["q_net"][k], resumed["q_net"][k]) for k in straight["q_net"])


def test_atari_pong_runs_end_to_end(tmp_path):
    run_script(TRAIN, "--env-id", "ALE/Pong-v5", "--runs-dir", tmp_path, "--total-timesteps", "96",
               "--learning-starts", "64", "--buffer-size", "500", "--train-frequency", "4", "--gradient-steps", "1",
               "--batch-size", "8", "--eval-every", "0", "--eval-episodes", "1", "--target-return", "-100")
    run = only_run_dir(tmp_path)
    config = json.loads((run / "config.json").read_text())
    assert (config["n_atoms"], config["v_min"], config["v_max"]) == (51, -10.0, 10.0)  # the Atari preset
    state = rl_utils.open_checkpoint(run, Args)["q_net"]
    assert [v.shape for v in state.values() if v.ndim == 4][0] == (32, 4, 8, 8)  # Nature CNN on 4 stacked frames
    assert [v.shape for v in state.values() if v.ndim == 2][-1][0] == 6 * 51


@pytest.mark.slow
def test_c51_solves_cartpole(tmp_path):
    """The headline: default C51 reaches a 10-episode greedy mean >= 475 on CartPole-v1 well within 100k steps."""
    start = time.time()
    run_script(TRAIN, "--runs-dir", tmp_path, "--seed", "1", "--target-return", "475", timeout=400)
    steps, _ = rl_utils.first_crossing(only_run_dir(tmp_path), 475)
    assert steps is not None and steps <= 50_000
    assert time.time() - start < 120

"""The policy-gradient family's shared actor-critic: the fast acting/evaluation path equals torch.distributions,
Gaussian log-probabilities are summed over action dimensions, sampling follows the policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from classic_rl.policies import ActorCritic, NumpyActing, TorchActing, parse_hidden
from rl_utils import UsageError


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))])
def test_fast_path_equals_torch_distributions(space):
    torch.manual_seed(0)
    agent = ActorCritic(5, space, (16, 16))
    if not agent.discrete:
        agent.log_std.data = torch.tensor([-0.3, 0.4])
    obs = torch.randn(7, 5)
    action, logprob, value = agent.act(obs)
    dist = agent.distribution(obs)
    torch.testing.assert_close(logprob, agent.log_prob(dist, action))
    new_logprob, entropy, value2 = agent.evaluate_actions(obs, action)
    torch.testing.assert_close(new_logprob, logprob)
    torch.testing.assert_close(entropy, agent.entropy(dist))
    torch.testing.assert_close(value, value2)
    torch.testing.assert_close(value, agent.value(obs))  # the plain nn.Module path
    if not agent.discrete:  # independent dimensions: log π(a|s) = Σ_i log N(a_i; μ_i, σ_i)
        manual = sum(torch.distributions.Normal(dist.mean[:, i], dist.stddev[:, i]).log_prob(action[:, i])
                     for i in range(2))
        torch.testing.assert_close(logprob, manual)
        assert action.shape == (7, 2) and logprob.shape == (7,)


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))])
@pytest.mark.parametrize("kind", ["separate", "shared", "no critic", "relu, 3 layers"])
def test_numpy_acting_equals_the_torch_path_on_the_same_noise(space, kind):
    """The acting path PPO/A2C use (numpy, actor and critic fused side by side) samples the same action with the
    same log-probability and value as ActorCritic.act, given the same torch random state."""
    torch.manual_seed(0)
    hidden, activation = ((16, 8, 4), "relu") if kind.startswith("relu") else ((16, 16), "tanh")
    agent = ActorCritic(5, space, hidden, activation, shared=kind == "shared", critic=kind != "no critic")
    if not agent.discrete:
        agent.log_std.data = torch.tensor([-0.3, 0.4])
    with torch.no_grad():  # non-zero biases and a sharper head: a mistake in either would show
        for p in agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    acting = NumpyActing(agent)
    for _ in range(3):  # several steps: the random streams stay in step
        state = torch.get_rng_state()
        action, logprob, value = acting.act(obs)
        torch.set_rng_state(state)
        with torch.no_grad():
            ref = agent.act(torch.from_numpy(obs))
        np.testing.assert_array_equal(action, ref[0].numpy()) if agent.discrete else \
            np.testing.assert_allclose(action, ref[0].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(logprob, ref[1].numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(value, ref[2].numpy(), rtol=1e-5, atol=1e-5)
        assert logprob.dtype == np.float32 and value.shape == (64,)
    np.testing.assert_allclose(acting.deterministic(obs), agent.deterministic(torch.from_numpy(obs)).numpy(),
                               rtol=1e-5, atol=1e-5)
    # the torch adapter (agents other than the MLP ActorCritic) gives the same interface
    torch.set_rng_state(state)
    action2, _, value2 = TorchActing(agent, torch.device("cpu")).act(obs)
    np.testing.assert_allclose(value2, value, rtol=1e-5, atol=1e-5)


def test_numpy_acting_reads_the_weights_when_built():
    agent = ActorCritic(2, gym.spaces.Box(-1, 1, (1,)), (4,))
    before = NumpyActing(agent).deterministic(np.ones((1, 2), np.float32))
    with torch.no_grad():
        agent.actor_head.bias.add_(1.0)
    np.testing.assert_allclose(NumpyActing(agent).deterministic(np.ones((1, 2), np.float32)), before + 1.0,
                               rtol=1e-6)


def test_gumbel_max_sampling_follows_the_softmax():
    torch.manual_seed(1)
    agent = ActorCritic(1, gym.spaces.Discrete(3), (4,))
    with torch.no_grad():
        agent.actor_head.weight.zero_()
        agent.actor_head.bias.copy_(torch.log(torch.tensor([0.2, 0.3, 0.5])))
    actions, _, _ = agent.act(torch.zeros(20_000, 1))
    freq = torch.bincount(actions, minlength=3).float() / 20_000
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.3, 0.5]), atol=0.015, rtol=0)


def test_deterministic_action_is_argmax_or_mean():
    agent = ActorCritic(3, gym.spaces.Box(-1, 1, (2,)), (8,))
    obs = torch.randn(4, 3)
    torch.testing.assert_close(agent.deterministic(obs), agent.distribution(obs).mean)
    agent = ActorCritic(3, gym.spaces.Discrete(4), (8,))
    assert torch.equal(agent.deterministic(obs), agent.distribution(obs).logits.argmax(-1))


def test_separate_trunks_keep_the_actor_loss_out_of_the_critic():
    agent = ActorCritic(3, gym.spaces.Discrete(2), (8,))
    logprob, _, value = agent.evaluate_actions(torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]))
    logprob.sum().backward()
    assert all(p.grad is None for p in agent.critic_trunk.parameters())
    shared = ActorCritic(3, gym.spaces.Discrete(2), (8,), shared=True)
    _, _, value = shared.evaluate_actions(torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]))
    value.sum().backward()
    assert shared.actor_trunk[0].weight.grad is not None and shared.critic_trunk is None


def test_hidden_sizes_are_validated():
    assert parse_hidden("64, 32") == (64, 32)
    for bad in ("64,abc", "", "0"):
        with pytest.raises(UsageError, match="--hidden-sizes"):
            parse_hidden(bad)
    assert np.isfinite(ActorCritic(2, gym.spaces.Discrete(2), (4,)).value(torch.zeros(1, 2)).item())

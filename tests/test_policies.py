"""The policy-gradient family's shared actor-critic: the fast acting/evaluation path equals torch.distributions,
Gaussian log-probabilities are summed over action dimensions, sampling follows the policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from classic_rl.policies import ActorCritic, parse_hidden
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

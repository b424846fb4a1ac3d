"""Policies shared by the policy-gradient family (REINFORCE, Actor-Critic, A2C, PPO).

One MLP actor-critic covers both action kinds:

* ``Discrete(n)``: the actor outputs n logits, π(·|s) = Categorical(softmax(logits)).
* ``Box(d)`` (exposed as [-1, 1] by ``rl_utils.make_env(unit_actions=True)``): a diagonal Gaussian
  N(μ(s), diag σ²) with a *state-independent* learned log σ (as in PPO's MuJoCo setup). The env clips the sampled
  action; the log-probability is that of the unclipped sample, summed over the d dimensions (the dimensions are
  independent, so log π(a|s) = Σ_i log N(a_i; μ_i, σ_i)).

The critic V(s) is a separate MLP by default; ``shared=True`` puts actor and critic heads on one trunk (fewer
parameters, but the two losses then pull on the same features, which is why PPO's MuJoCo default keeps them
apart). Orthogonal initialisation with small output gains (0.01 for the policy, 1 for the value) follows
Engstrom et al. / Huang et al. ("The 37 implementation details of PPO"): the initial policy is close to
uniform, which keeps early updates from collapsing exploration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"64,64"`` -> (64, 64); a one-line error for anything else (validated once, at the edge)."""
    from rl_utils import UsageError

    try:
        sizes = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise UsageError(f"--hidden-sizes must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--hidden-sizes needs at least one layer of size >= 1, got {text!r}")
    return sizes


def layer_init(layer: nn.Linear, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(in_dim: int, hidden: Sequence[int], activation: str = "tanh") -> nn.Sequential:
    """Hidden layers only (the trunk); heads are added by the caller."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [layer_init(nn.Linear(in_dim, size)), ACTIVATIONS[activation]()]
        in_dim = size
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """π(·|s) and V(s) for a flat Box observation and a Discrete or Box action space.

    Shapes: ``obs`` [B, obs_dim]; ``distribution(obs)`` has batch shape [B]; ``log_prob`` / ``entropy`` /
    ``value`` return [B]. Set ``critic=False`` for plain REINFORCE (no value head)."""

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: Sequence[int] = (64, 64),
                 activation: str = "tanh", shared: bool = False, critic: bool = True, log_std_init: float = 0.0):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.shared = shared
        self.actor_trunk = mlp(obs_dim, hidden, activation)
        self.critic_trunk = None if shared or not critic else mlp(obs_dim, hidden, activation)
        width = hidden[-1] if hidden else obs_dim
        self.actor_head = layer_init(nn.Linear(width, out), gain=0.01)
        self.critic_head = layer_init(nn.Linear(width, 1), gain=1.0) if critic else None
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))

    def distribution(self, obs: torch.Tensor) -> Distribution:
        out = self.actor_head(self.actor_trunk(obs))  # [B, n] logits or [B, d] means
        if self.discrete:
            return Categorical(logits=out)
        return Normal(out, self.log_std.exp().expand_as(out))

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        """log π(a|s), [B]: summed over action dimensions for a Gaussian."""
        return dist.log_prob(actions) if self.discrete else dist.log_prob(actions).sum(-1)

    def entropy(self, dist: Distribution) -> torch.Tensor:
        return dist.entropy() if self.discrete else dist.entropy().sum(-1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        if self.critic_head is None:
            return torch.zeros(obs.shape[0], device=obs.device)
        trunk = self.actor_trunk if self.shared else self.critic_trunk
        return self.critic_head(trunk(obs)).squeeze(-1)  # [B]

    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample a ~ π(·|s); returns (action, log π(a|s), V(s))."""
        dist = self.distribution(obs)
        action = dist.sample()
        return action, self.log_prob(dist, action), self.value(obs)

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log π(a|s), entropy of π(·|s), V(s)) for stored actions, each [B]."""
        dist = self.distribution(obs)
        return self.log_prob(dist, actions), self.entropy(dist), self.value(obs)

    @torch.no_grad()
    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation action: argmax for Discrete, the mean for a Gaussian."""
        out = self.actor_head(self.actor_trunk(obs))
        return out.argmax(-1) if self.discrete else out


def greedy_policy(agent: ActorCritic, device: torch.device):
    """obs batch (numpy) -> deterministic actions (numpy), for ``rl_utils.evaluate``."""

    def act(obs: np.ndarray) -> np.ndarray:
        return agent.deterministic(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()

    return act

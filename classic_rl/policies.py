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
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Distribution, Normal

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def parse_hidden(text: str) -> tuple[int, ...]:
    """``"64,64"`` -> (64, 64); a one-line error for anything else (validated once, at the edge)."""
    from rl_utils import parse_int_list

    return tuple(parse_int_list(text, "--hidden-sizes", low=1))


def layer_init(layer: nn.Linear, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def fast_forward(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``layers(x)`` for an :func:`mlp` without nn.Module call overhead (~8 µs a layer on a CPU), for acting."""
    for layer in layers:
        if isinstance(layer, nn.Linear):
            x = F.linear(x, layer.weight, layer.bias)
        elif isinstance(layer, nn.Tanh):
            x = torch.tanh(x)
        else:
            x = torch.relu(x)
    return x


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
        """π(·|s) as a torch Distribution (the plain, readable path; tests hold the fast path below equal)."""
        out = self.actor_head(self.actor_trunk(obs))  # [B, n] logits or [B, d] means
        if self.discrete:
            return Categorical(logits=out)
        return Normal(out, self.log_std.exp().expand_as(out))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        if self.critic_head is None:
            return torch.zeros(obs.shape[0], device=obs.device)
        trunk = self.actor_trunk if self.shared else self.critic_trunk
        return self.critic_head(trunk(obs)).squeeze(-1)  # [B]

    # The fast path: the same quantities written out, without building Distribution objects. On a CPU a small
    # policy's step is dominated by per-op overhead, and Categorical(...).sample() alone costs ~60 µs, more than
    # the whole MLP; this path is ~3x cheaper. tests/test_policies.py holds both paths equal.
    def act(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample a ~ π(·|s); returns (action, log π(a|s), V(s)), each [B] (action [B, d] for Box)."""
        features = fast_forward(self.actor_trunk, obs)
        out = F.linear(features, self.actor_head.weight, self.actor_head.bias)
        if self.discrete:
            # Gumbel-max: argmax(logits + Gumbel noise) is an exact sample of softmax(logits); −log E, E ~ Exp(1).
            action = (out - torch.empty_like(out).exponential_().log()).argmax(-1)  # [B]
            logprob = out.log_softmax(-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
        else:
            std = self.log_std.exp()
            noise = torch.randn_like(out)
            action = out + std * noise  # [B, d]
            logprob = (-0.5 * noise.pow(2) - self.log_std - HALF_LOG_2PI).sum(-1)  # Σ_i log N(a_i; μ_i, σ_i)
        return action, logprob, self._value(obs, features)

    def _value(self, obs: torch.Tensor, actor_features: torch.Tensor) -> torch.Tensor:
        """V(s) [B] on the fast path, reusing the actor's features when the trunk is shared."""
        if self.critic_head is None:
            return torch.zeros(obs.shape[0], device=obs.device)
        critic = actor_features if self.shared else fast_forward(self.critic_trunk, obs)
        return F.linear(critic, self.critic_head.weight, self.critic_head.bias).squeeze(-1)

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log π(a|s), entropy of π(·|s), V(s)) for stored actions, each [B]."""
        features = fast_forward(self.actor_trunk, obs)
        out = F.linear(features, self.actor_head.weight, self.actor_head.bias)
        if self.discrete:
            logp_all = out.log_softmax(-1)  # [B, n]
            logprob = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        else:
            z = (actions - out) * torch.exp(-self.log_std)
            logprob = (-0.5 * z.pow(2) - self.log_std - HALF_LOG_2PI).sum(-1)
            entropy = (0.5 + HALF_LOG_2PI + self.log_std).sum().expand(out.shape[0])  # does not depend on s
        return logprob, entropy, self._value(obs, features)

    def log_prob(self, dist: Distribution, actions: torch.Tensor) -> torch.Tensor:
        """log π(a|s), [B], from a :meth:`distribution`: summed over action dimensions for a Gaussian."""
        return dist.log_prob(actions) if self.discrete else dist.log_prob(actions).sum(-1)

    def entropy(self, dist: Distribution) -> torch.Tensor:
        return dist.entropy() if self.discrete else dist.entropy().sum(-1)

    @torch.no_grad()
    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation action: argmax for Discrete, the mean for a Gaussian."""
        out = F.linear(fast_forward(self.actor_trunk, obs), self.actor_head.weight, self.actor_head.bias)
        return out.argmax(-1) if self.discrete else out


class NumpyActing:
    """:meth:`ActorCritic.act` and :meth:`ActorCritic.deterministic` in numpy, for acting on the CPU.

    Why: with a small MLP and cheap envs the acting phase is per-operation overhead. A torch op costs ~5-8 µs on
    this CPU whatever its size, a numpy op on an [8, 64] array ~1-2 µs; and the actor and the critic run as one
    network: their layers side by side (the first layers concatenated, the deeper ones and the heads
    block-diagonal), so one matmul serves both. ``benchmarks/acting_speed.py`` measures the result. The noise
    comes from torch's global generator (``exponential_`` / ``randn`` of the same shape as the torch path), so a
    run keeps the one random stream that checkpoints save; tests/test_policies.py holds both paths equal on the
    same noise.

    It reads the weights when built (a copy to the host for a CUDA-trained agent): build it again after every
    update, as ``on_policy.collect_rollout`` does once per rollout."""

    def __init__(self, agent: ActorCritic):
        self.discrete = agent.discrete
        actor = _layers(agent.actor_trunk, agent.actor_head)
        self.actor = actor  # for deterministic(): the actor alone
        self.log_std = None if agent.discrete else _host(agent.log_std).copy()
        self.n_out = agent.actor_head.out_features
        if agent.critic_head is None:  # no critic (REINFORCE): V = 0
            self.fused = actor
        elif agent.shared:  # one trunk, the two heads side by side
            w, b, _ = actor[-1]
            self.fused = [*actor[:-1], (np.concatenate([w, _host(agent.critic_head.weight).T], 1),
                                        np.concatenate([b, _host(agent.critic_head.bias)]), None)]
        else:
            self.fused = [_side_by_side(la, lc, first=i == 0) for i, (la, lc) in
                          enumerate(zip(actor, _layers(agent.critic_trunk, agent.critic_head)))]
        if self.discrete:
            self._noise = torch.empty(0)  # resized to the batch on first use; refilled in place each step

    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample a ~ π(·|s); returns (action, log π(a|s), V(s)), each [B] (action [B, d] for Box), numpy."""
        both = _forward(self.fused, np.asarray(obs, dtype=np.float32))  # [B, n (+ 1)]
        out = both[:, :self.n_out]  # logits or Gaussian means
        value = both[:, self.n_out] if both.shape[1] > self.n_out else np.zeros(len(out), dtype=np.float32)
        if self.discrete:
            if self._noise.shape != out.shape:
                self._noise = torch.empty(out.shape)
                self._noise_np = self._noise.numpy()  # a view: exponential_() below refills it
            self._noise.exponential_()
            action = (out - np.log(self._noise_np)).argmax(-1)  # Gumbel-max, as ActorCritic.act
            shifted = out - out.max(-1, keepdims=True)
            picked = shifted[np.arange(len(out)), action]
            logprob = picked - np.log(np.exp(shifted).sum(-1))  # log softmax of the taken action
        else:
            noise = torch.randn(out.shape).numpy()
            action = out + np.exp(self.log_std) * noise
            logprob = (-0.5 * noise ** 2 - self.log_std - HALF_LOG_2PI).sum(-1, dtype=np.float32)
        return action, logprob, value

    def deterministic(self, obs: np.ndarray) -> np.ndarray:
        """The evaluation action: argmax for Discrete, the mean for a Gaussian."""
        out = _forward(self.actor, np.asarray(obs, dtype=np.float32))
        return out.argmax(-1) if self.discrete else out


Layer = tuple[np.ndarray, np.ndarray, Any]  # (weight [in, out], bias [out], activation or None)


def _layers(trunk: nn.Sequential | None, head: nn.Linear) -> list[Layer]:
    """An mlp() trunk and its head as numpy layers (Linear, activation pairs; the head has no activation)."""
    modules = list(trunk or ())
    out = [(_host(lin.weight).T, _host(lin.bias), _tanh if isinstance(act, nn.Tanh) else _relu)
           for lin, act in zip(modules[::2], modules[1::2])]
    return [*out, (_host(head.weight).T, _host(head.bias), None)]


def _side_by_side(a: Layer, c: Layer, first: bool) -> Layer:
    """Two layers as one: the first takes the same input (weights concatenated), a deeper one takes the two
    halves of the previous output (block-diagonal weights)."""
    (wa, ba, act), (wc, bc, _) = a, c
    if first:
        weight = np.concatenate([wa, wc], 1)
    else:
        weight = np.zeros((wa.shape[0] + wc.shape[0], wa.shape[1] + wc.shape[1]), dtype=wa.dtype)
        weight[:wa.shape[0], :wa.shape[1]], weight[wa.shape[0]:, wa.shape[1]:] = wa, wc
    return weight, np.concatenate([ba, bc]), act


def _forward(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    for weight, bias, act in layers:
        x = x @ weight
        x += bias
        if act is not None:
            x = act(x)
    return x


def _host(param: torch.Tensor) -> np.ndarray:
    return param.detach().cpu().numpy()  # a view on CPU


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0, out=x)


def _tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x, out=x)


class TorchActing:
    """Any other agent with torch ``act`` / ``value`` / ``deterministic`` (e.g. Actor-Critic's Q critic) behind
    :class:`NumpyActing`'s numpy-in, numpy-out interface, so one rollout loop serves both."""

    def __init__(self, agent: nn.Module, device: torch.device):
        self.agent, self.device = agent, device

    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(x.cpu().numpy() for x in self.agent.act(self._tensor(obs)))

    @torch.no_grad()
    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.agent.value(self._tensor(obs)).cpu().numpy()

    @torch.no_grad()
    def deterministic(self, obs: np.ndarray) -> np.ndarray:
        return self.agent.deterministic(self._tensor(obs)).cpu().numpy()


def acting(agent: nn.Module, device: torch.device) -> NumpyActing | TorchActing:
    """How ``agent`` acts on numpy observations: the numpy path for the MLP :class:`ActorCritic` (whatever device
    trains it), torch otherwise. Build it again after each update (it reads the weights then)."""
    return NumpyActing(agent) if isinstance(agent, ActorCritic) else TorchActing(agent, device)


def greedy_policy(agent: nn.Module, device: torch.device):
    """obs batch (numpy) -> deterministic actions (numpy), for ``rl_utils.evaluate``."""
    return acting(agent, device).deterministic

"""Networks of the off-policy continuous-control family (DDPG, TD3, SAC; later HER, DIAYN, D4PG build on them).

Actions are always in [-1, 1]^d: ``rl_utils.make_env(unit_actions=True)`` rescales them linearly to the env's own
Box bounds, so no network here knows the bounds.

* :class:`EnsembleMLP` — ``n`` independent MLPs evaluated in one batched forward (``torch.baddbmm`` over stacked
  weights). Twin critics (TD3, SAC) are an ensemble of 2: one matmul per layer instead of two, and one autograd
  graph. Tests hold it equal to ``n`` separate ``nn.Sequential`` MLPs with the same weights.
* :class:`DeterministicActor` — a = tanh(μ(s)) (DDPG, TD3).
* :class:`SquashedGaussianActor` — a = tanh(u), u ~ N(μ(s), σ(s)²) (SAC), with the change-of-variables
  log-density summed over action dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
LOG_2 = math.log(2.0)


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None = None) -> nn.Sequential:
    """Linear-ReLU layers, then a linear output layer unless ``out_dim`` is None (a trunk). PyTorch's default
    init, as SB3 and CleanRL use for these algorithms."""
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(in_dim, size), nn.ReLU()]
        in_dim = size
    if out_dim is not None:
        layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class EnsembleMLP(nn.Module):
    """``n`` MLPs with the same shape, stacked: input [B, in] (or [n, B, in]) -> output [n, B, out].

    Layer k holds ``weight`` [n, in_k, out_k] and ``bias`` [n, 1, out_k]; each member is initialised exactly as an
    ``nn.Linear`` would be (uniform ±1/√in_k for both), so an ensemble of 1 is an ordinary MLP."""

    def __init__(self, n: int, in_dim: int, hidden: Sequence[int], out_dim: int):
        super().__init__()
        self.n = n
        sizes = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes, sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor, members: int | None = None) -> torch.Tensor:
        """``members``: evaluate only the first that many (TD3's actor loss reads Q_1 alone: half the work)."""
        n = self.n if members is None else members
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(n, -1, -1)  # [n, B, in]: every member sees the same batch
        last = len(self.weights) - 1
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b[:n], x, w[:n])  # [n, B, out_k] = b + x @ w, all members in one call
            if k < last:
                x = torch.relu(x)
        return x

    def member(self, i: int) -> nn.Sequential:
        """Member ``i`` as a plain ``nn.Sequential`` of Linear/ReLU (a copy; for tests and for reading)."""
        layers: list[nn.Module] = []
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            linear = nn.Linear(w.shape[1], w.shape[2])
            with torch.no_grad():
                linear.weight.copy_(w[i].T)
                linear.bias.copy_(b[i, 0])
            layers.append(linear)
            if k < len(self.weights) - 1:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)


class QEnsemble(nn.Module):
    """``n`` critics Q_i(s, a), one batched forward: obs [B, o], actions [B, d] -> [n, B]."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], n: int = 2):
        super().__init__()
        self.net = EnsembleMLP(n, obs_dim + act_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, members: int | None = None) -> torch.Tensor:
        """Q-values [n, B], or [members, B] of the first ``members`` critics only."""
        return self.net(torch.cat([obs, actions], dim=-1), members).squeeze(-1)


class DeterministicActor(nn.Module):
    """μ(s) = tanh(MLP(s)) in [-1, 1]^d (DDPG, TD3). :meth:`explore` adds Gaussian noise of std ``noise_std``
    (in units of the half-range of the actions) and clips, the behaviour policy of the training run."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], noise_std: float = 0.1):
        super().__init__()
        self.net = mlp(obs_dim, hidden, act_dim)
        self.noise_std = noise_std

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))  # [B, d]

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        action = self(obs)
        return (action + self.noise_std * torch.randn_like(action)).clamp(-1.0, 1.0)


def tanh_log_det_jacobian(u: torch.Tensor) -> torch.Tensor:
    """log |d tanh(u) / du| = log(1 − tanh²u), written as 2 (log 2 − u − softplus(−2u)) so it stays finite where
    tanh saturates (1 − tanh²u rounds to 0 in float32 for |u| > ~9). Elementwise, same shape as ``u``."""
    return 2.0 * (LOG_2 - u - F.softplus(-2.0 * u))


class SquashedGaussianActor(nn.Module):
    """SAC's policy: u ~ N(μ(s), diag σ(s)²), a = tanh(u) ∈ (-1, 1)^d.

    The density of a follows from the change of variables a = tanh(u), dimension by dimension:
    log π(a|s) = Σ_i [log N(u_i; μ_i, σ_i) − log(1 − tanh² u_i)]. The correction uses the *pre-squash* sample u
    (the notes' source applied it to the already squashed action) and is summed over the d dimensions together
    with the Gaussian term. log σ is clamped to [−5, 2] (CleanRL, SB3: σ between 0.007 and 7.4)."""

    LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.trunk = mlp(obs_dim, hidden)  # [B, width]
        width = hidden[-1] if hidden else obs_dim
        self.mean = nn.Linear(width, act_dim)
        self.log_std = nn.Linear(width, act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(obs)
        log_std = self.log_std(features).clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)
        return self.mean(features), log_std  # [B, d] each

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample a = tanh(μ + σ ε), ε ~ N(0, I), and log π(a|s) [B]: gradients flow through
        both into μ and σ (the reparameterisation trick)."""
        mean, log_std = self(obs)
        eps = torch.randn_like(mean)
        u = mean + log_std.exp() * eps
        gaussian = (-0.5 * eps.pow(2) - log_std - HALF_LOG_2PI).sum(-1)  # log N(u; μ, σ), (u − μ)/σ = ε
        return torch.tanh(u), gaussian - tanh_log_det_jacobian(u).sum(-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The evaluation action tanh(μ(s)) (the mode of u, squashed)."""
        return torch.tanh(self(obs)[0])

    def explore(self, obs: torch.Tensor) -> torch.Tensor:
        """A sample of the policy itself (SAC explores with its own stochasticity)."""
        return self.sample(obs)[0]

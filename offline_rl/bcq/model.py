"""BCQ's networks (Fujimoto, Meger, Precup 2019, continuous version; sizes from the authors' code): a conditional
VAE G_ω(a|s) of the behaviour policy, a perturbation network ξ_φ(s, a) that may move a generated action by at
most Φ, and twin critics. The policy is all three together:

    π(s) = argmax_{a_i + ξ_φ(s, a_i)} Q_1(s, a_i + ξ_φ(s, a_i)),   a_i ~ G_ω(·|s), i = 1..n

so it only ever picks actions close to ones the data contain (the VAE) and chooses among them with Q: that is
what keeps the critic from being queried, and fooled, far outside the data (extrapolation error).

Actions live in [-1, 1]^d (the dataset's actions are mapped there once; the envs rescale back). Every network reads
observations through the dataset's fixed normalisation (``offline_rl.common.ObsNormalizer``), saved with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from classic_rl.continuous import mlp
from offline_rl.common import Critics, ObsNormalizer


class VAE(nn.Module):
    """Conditional VAE of the data's actions: E(s, a) -> (μ, σ) of z ∈ R^k, D(s, z) -> a = tanh(·) ∈ [-1, 1]^d.

    log σ is clamped to [−4, 15] (the authors' code: keeps σ from collapsing to 0 or exploding early). Decoding
    for *generation* draws z ~ N(0, I) clipped to [−0.5, 0.5]: the clip keeps the samples in the high-density part
    of the latent space, where the decoder reproduces the data's actions rather than inventing new ones."""

    LOG_STD_MIN, LOG_STD_MAX = -4.0, 15.0
    Z_CLIP = 0.5

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], latent_dim: int):
        super().__init__()
        self.normalizer = ObsNormalizer(obs_dim)
        self.latent_dim = latent_dim
        self.encoder = mlp(obs_dim + act_dim, hidden, 2 * latent_dim)
        self.decoder = mlp(obs_dim + latent_dim, hidden, act_dim)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction [B, d], μ [B, k] and σ [B, k] of q(z|s, a), with z = μ + σ ε (reparameterised)."""
        x = self.normalizer(obs)
        mean, log_std = self.encoder(torch.cat([x, actions], -1)).chunk(2, dim=-1)
        std = log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX).exp()
        z = mean + std * torch.randn_like(std)
        return self._decode(x, z), mean, std

    def _decode(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(torch.cat([x, z], -1)))

    def decode(self, obs: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Generated actions [B, d]: D(s, z) with z ~ N(0, I) clipped to ±0.5 unless ``z`` [B, k] is given."""
        if z is None:
            z = torch.randn(len(obs), self.latent_dim, device=obs.device).clamp(-self.Z_CLIP, self.Z_CLIP)
        return self._decode(self.normalizer(obs), z)


class Perturbation(nn.Module):
    """ξ_φ(s, a) = Φ · tanh(MLP(s, a)); returns the perturbed action clip(a + ξ, −1, 1) [B, d].

    Φ (0.05 of the action half-range, the paper's MuJoCo value) is how far BCQ may move away from what the
    behaviour policy would do: Φ = 0 is (Q-filtered) behaviour cloning, Φ = 1 is unconstrained Q-learning over
    the whole action space."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], phi: float):
        super().__init__()
        self.normalizer = ObsNormalizer(obs_dim)
        self.net = mlp(obs_dim + act_dim, hidden, act_dim)
        self.phi = phi

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        xi = self.phi * torch.tanh(self.net(torch.cat([self.normalizer(obs), actions], -1)))
        return (actions + xi).clamp(-1.0, 1.0)


def select(q: Critics, obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The candidate of highest Q_1 for each state: obs [B, o], candidates [B, n, d] -> actions [B, d]."""
    b, n, d = candidates.shape
    q1 = q(obs.repeat_interleave(n, 0), candidates.reshape(b * n, d), members=1).view(b, n)  # [B, n]
    return candidates[torch.arange(b, device=obs.device), q1.argmax(1)]


class BCQPolicy(nn.Module):
    """The acting policy: ``n_act`` generated, perturbed candidates per state, the one of highest Q_1 taken.

    It holds the VAE, the perturbation network and the critics, so one ``state_dict`` (the checkpoint's
    ``agent``) is everything ``--eval-only`` and rollouts need."""

    def __init__(self, obs_dim: int, act_dim: int, vae_hidden: Sequence[int], hidden: Sequence[int],
                 latent_dim: int, phi: float, n_act: int):
        super().__init__()
        self.vae = VAE(obs_dim, act_dim, vae_hidden, latent_dim)
        self.perturb = Perturbation(obs_dim, act_dim, hidden, phi)
        self.q = Critics(obs_dim, act_dim, hidden)
        self.n_act = n_act

    def candidates(self, obs: torch.Tensor, n: int, perturb: Perturbation | None = None) -> torch.Tensor:
        """n generated actions per state, each perturbed (by ``perturb``, default this policy's): [B, n, d]."""
        rows = obs.repeat_interleave(n, 0)  # [B n, o]: state b's copies are rows b n .. b n + n − 1
        actions = (self.perturb if perturb is None else perturb)(rows, self.vae.decode(rows))  # [B n, d]
        return actions.view(len(obs), n, -1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """π(s) [B, d] (BCQ's policy; the VAE's sampling makes it stochastic in principle, argmax-Q in practice)."""
        return select(self.q, obs, self.candidates(obs, self.n_act))

    explore = deterministic  # BCQ learns offline only: no exploration policy of its own

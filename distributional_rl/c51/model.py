"""C51's network: for every action a categorical distribution over the fixed atoms z_0 < ... < z_{N-1}.

The body is the DQN family's :class:`~classic_rl.dqn.model.QNetwork` (MLP for vectors, Nature-CNN for 84x84
frame stacks, optional dueling head) with ``N`` outputs per action instead of one: logits [B, A, N]. ``forward``
returns the expected return per action, Q(s, a) = Σ_j p_j(s, a) z_j [B, A], so greedy acting, evaluation and the
whole DQN loop use it unchanged; the loss reads :meth:`CategoricalQNetwork.logits`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from classic_rl.dqn.model import QNetwork
from distributional_rl.categorical import expected_value


class CategoricalQNetwork(nn.Module):
    """Logits of Z(s, a) over ``support`` for every action; Q-values as their means."""

    def __init__(self, obs_shape: Sequence[int], n_actions: int, support: torch.Tensor,
                 hidden_sizes: Sequence[int] = (128, 128), dueling: bool = False):
        super().__init__()
        self.n_actions, self.n_atoms = n_actions, len(support)
        self.body = QNetwork(obs_shape, n_actions, hidden_sizes, dueling, n_atoms=self.n_atoms)
        # a buffer, not a parameter: the atoms are fixed, and they travel with the checkpoint and the device
        self.register_buffer("support", support.clone())

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.body(obs).view(-1, self.n_actions, self.n_atoms)  # [B, A, N]

    def probs(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(obs), dim=-1)  # [B, A, N], each row sums to 1

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return expected_value(self.probs(obs), self.support)  # [B, A]

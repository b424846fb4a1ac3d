"""Decision Transformer (Chen et al. 2021) and the MLP behaviour-cloning baseline the same script trains.

A trajectory is read as a sequence of tokens, three per timestep, (R̂_1, s_1, a_1, R̂_2, s_2, a_2, ...), where
R̂_t = Σ_{t' ≥ t} r_t' is the return-to-go. Each token is a linear embedding of its input plus an embedding of
the episode timestep t (the authors' replacement for position embeddings); a causal GPT reads them, and the
action a_t is predicted from the hidden state of the *state* token s_t (it has seen R̂_≤t, s_≤t, a_<t, not a_t).
At test time R̂_1 is the return we ask for; after each reward R̂ drops by it.

Shapes: B batch, K context (timesteps), D embedding, o state size, d action size; tokens are [B, 3K, D].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

import dl_utils
from offline_rl.common import ObsNormalizer


@dataclass
class DTConfig:
    state_dim: int
    act_dim: int
    context: int = 20
    """K: timesteps the model sees (the notes' and the authors' Hopper value)"""
    n_embd: int = 128
    n_layer: int = 3
    n_head: int = 1
    dropout: float = 0.1
    max_ep_len: int = 1000
    """size of the timestep embedding table (MuJoCo episodes are at most 1,000 steps)"""
    backbone: str = "gpt"
    """gpt (dl_utils.GPT, written here, with a KV cache) or hf-gpt2 (transformers' GPT2Model, as the notes)"""
    activation: str = "gelu"
    """the GPT's MLP non-linearity: gelu (GPT-2's) or relu (the authors' config)"""


class HFGPT2Backbone(nn.Module):
    """transformers' ``GPT2Model`` on embedded tokens, its position embeddings zeroed and frozen (the DT authors
    removed them: the timestep embedding carries position). Same interface as ``dl_utils.GPT``, no cache."""

    def __init__(self, cfg: dl_utils.GPTConfig, n_positions: int):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        config = GPT2Config(vocab_size=1, n_positions=n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                            n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
                            attn_pdrop=cfg.dropout, layer_norm_epsilon=cfg.layer_norm_epsilon,
                            activation_function="relu" if cfg.activation == "relu" else "gelu_new")
        self.gpt2 = GPT2Model(config)
        nn.init.zeros_(self.gpt2.wpe.weight)
        self.gpt2.wpe.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, past: None = None
                ) -> tuple[torch.Tensor, None]:
        if past is not None:
            raise ValueError("the hf-gpt2 backbone has no KV cache here: evaluate with --eval-context window")
        mask = None if keep is None else keep.long()
        return self.gpt2(inputs_embeds=x, attention_mask=mask).last_hidden_state, None


class DecisionTransformer(nn.Module):
    """(R̂, s, a) tokens -> GPT -> a_t from the state tokens, tanh-bounded to the [-1, 1] actions."""

    def __init__(self, cfg: DTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.n_embd
        self.normalizer = ObsNormalizer(cfg.state_dim)  # the dataset's statistics, saved with the model
        self.embed_timestep = nn.Embedding(cfg.max_ep_len, d)
        self.embed_return = nn.Linear(1, d)
        self.embed_state = nn.Linear(cfg.state_dim, d)
        self.embed_action = nn.Linear(cfg.act_dim, d)
        self.embed_ln = nn.LayerNorm(d)
        gpt = dl_utils.GPTConfig(n_embd=d, n_layer=cfg.n_layer, n_head=cfg.n_head, dropout=cfg.dropout,
                                 activation=cfg.activation)
        self.transformer = (dl_utils.GPT(gpt) if cfg.backbone == "gpt"
                            else HFGPT2Backbone(gpt, n_positions=3 * cfg.context))
        self.predict_action = nn.Sequential(nn.Linear(d, cfg.act_dim), nn.Tanh())

    def tokens(self, returns_to_go: torch.Tensor, states: torch.Tensor, actions: torch.Tensor,
               timesteps: torch.Tensor) -> torch.Tensor:
        """Interleaved embeddings [B, 3K, D] of returns-to-go [B, K, 1] (already scaled), raw states [B, K, o],
        actions [B, K, d] and timesteps [B, K] (long)."""
        b, k = timesteps.shape
        time = self.embed_timestep(timesteps.clamp(max=self.cfg.max_ep_len - 1))  # [B, K, D]
        r = self.embed_return(returns_to_go) + time
        s = self.embed_state(self.normalizer(states)) + time
        a = self.embed_action(actions) + time
        return self.embed_ln(torch.stack([r, s, a], dim=2).reshape(b, 3 * k, -1))  # R̂_1 s_1 a_1 R̂_2 ...

    def forward(self, returns_to_go: torch.Tensor, states: torch.Tensor, actions: torch.Tensor,
                timesteps: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted actions [B, K, d]; ``keep`` [B, K] marks real timesteps (False = left padding)."""
        b, k = timesteps.shape
        x = self.tokens(returns_to_go, states, actions, timesteps)
        keep3 = None if keep is None else keep.repeat_interleave(3, dim=1)  # each timestep's three tokens
        hidden, _ = self.transformer(x, keep3)  # [B, 3K, D]
        return self.predict_action(hidden.view(b, k, 3, -1)[:, :, 1])  # from the state tokens

    def step(self, tokens: torch.Tensor, past: dl_utils.KVCache | None) -> tuple[torch.Tensor, dl_utils.KVCache]:
        """Cached acting: run only the new ``tokens`` [B, n, D] (their last one a state token) after ``past``;
        returns the action predicted from that state token [B, d] and the longer cache."""
        hidden, present = self.transformer(tokens, None, past)
        return self.predict_action(hidden[:, -1]), present


class MLPBC(nn.Module):
    """The behaviour-cloning baseline: a_t = tanh(MLP(s_t)) from the current state alone, trained on the same
    batches and the same masked MSE as the DT (it reads only the state of each timestep)."""

    def __init__(self, cfg: DTConfig, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.cfg = cfg
        self.normalizer = ObsNormalizer(cfg.state_dim)
        sizes = [cfg.state_dim] + [hidden] * layers
        body: list[nn.Module] = []
        for i in range(layers):
            body += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU(), nn.Dropout(cfg.dropout)]
        self.net = nn.Sequential(*body, nn.Linear(hidden, cfg.act_dim), nn.Tanh())

    def forward(self, returns_to_go: torch.Tensor, states: torch.Tensor, actions: torch.Tensor,
                timesteps: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.normalizer(states))  # [B, K, d]

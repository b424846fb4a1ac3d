"""Pong observations and policies: the notes' 80x80 binarised frames, five backbones (mlp, cnn, cnn3d, cnn3d2d,
transformer) under one actor head (UP/DOWN logits) and one critic head, and the Transformer's two forwards.
mlp and transformer also read a vector env's observation in place of the frame (the memory task, envs.py).

The Transformer is the project's one causal self-attention (``dl_utils.GPTBlock`` / ``CausalSelfAttention``,
tested equal to Hugging Face's GPT-2): this file only embeds the frames, builds the masks and keeps the cache.

* training (:meth:`FramePolicy.forward_seq`): one contiguous sequence per env, each query attending the previous
  ``lookback`` frames of its own episode (:func:`window_keep_mask`), so a chunk of C steps plus ``lookback``
  frames of context costs one forward of C + lookback tokens instead of C forwards of lookback + 1;
* acting (:class:`TransformerActor`): a key/value cache of the last ``lookback`` tokens per env, so each step
  computes only the new token; an env whose episode ended has its cache marked empty.
Both see the same tokens at the same positions (episode-absolute sinusoidal positions: a token's embedding
never depends on where a window starts), so they compute the same function (tests/test_pong.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import rl_utils  # noqa: E402
from dl_utils import CausalSelfAttention, GPTBlock, GPTConfig, causal_keep_mask  # noqa: E402

SIZE = 80  # the notes' (karpathy's) frame: 80 x 80 after cropping and 2x down-sampling
UP, DOWN = 2, 3  # Pong's minimal action set: NOOP, FIRE, RIGHT (paddle up), LEFT (paddle down), ...
BACKBONES = ("mlp", "cnn", "cnn3d", "cnn3d2d", "transformer", "nature")
VECTOR_BACKBONES = ("mlp", "transformer")  # these also read a vector observation; the convs need frames


# ----------------------------------------------------------------------------------------------------------------
# Observations
# ----------------------------------------------------------------------------------------------------------------
def prepro(frame: np.ndarray) -> np.ndarray:
    """karpathy's Pong preprocessing: RGB [210, 160, 3] -> [80, 80] uint8 in {0, 1}. Crop the score board and
    the bottom border (rows 35..194), keep every 2nd pixel of the red channel, erase the two background
    colours (144, 109): what is left (paddles, ball) is 1."""
    x = frame[35:195:2, ::2, 0]
    return ((x != 144) & (x != 109) & (x != 0)).astype(np.uint8)


class TwoActions(gym.ActionWrapper):
    """Discrete(2) -> Pong's UP (2) / DOWN (3), as the notes (``a + 2``): the policy never wastes probability on
    NOOP/FIRE, which move nothing."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.action_space = gym.spaces.Discrete(2)

    def action(self, action: int) -> int:
        return int(action) + UP


class FrameDiff(gym.ObservationWrapper):
    """frame_t − frame_{t−1} (int8 in {−1, 0, 1}; zeros at the first step of an episode): one image that shows
    which way the ball moves, the notes' input of mlp and cnn."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(-1, 1, (SIZE, SIZE), np.int8)
        self.prev: np.ndarray | None = None

    def reset(self, **kwargs):  # type: ignore[no-untyped-def]
        obs, info = self.env.reset(**kwargs)
        self.prev = obs
        return np.zeros((SIZE, SIZE), np.int8), info

    def observation(self, obs: np.ndarray) -> np.ndarray:
        diff = obs.astype(np.int8) - self.prev.astype(np.int8)  # type: ignore[union-attr]
        self.prev = obs
        return diff


def obs_mode(backbone: str, algo: str) -> str:
    """What a backbone reads per step: ``diff`` (mlp/cnn under PG, the notes' choice), ``stack`` (cnn3d and
    cnn3d2d: the last ``frames`` frames), ``frame`` (mlp/cnn under AC/PPO; the transformer, whose history is
    its attention window) or ``atari84`` (nature: the standard preprocessing, not the notes')."""
    if backbone == "nature":  # the reference path: DQN / CleanRL's 84x84 grey 4-frame stack, all actions
        return "atari84"
    if backbone in ("cnn3d", "cnn3d2d"):
        return "stack"
    if backbone in ("mlp", "cnn") and algo == "pg":
        return "diff"
    return "frame"


def make_pong_env(env_id: str, mode: str, frames: int, max_episode_steps: int = 0,
                  capture_video: bool = False, video_dir: str | Path | None = None, training: bool = True
                  ) -> gym.Env:
    """One env: ALE's own frame skipping (v5: 4 frames per step, sticky actions 0.25), raw-return statistics,
    2 actions, the 80x80 binary frame, then a frame difference or a stack of ``frames`` frames. Mode
    ``atari84`` is instead ``rl_utils.make_env``'s standard Atari preprocessing (as DQN and CleanRL's
    ``ppo_atari``) with the env's full action set; ``training`` there turns the sign-clipping of rewards on
    (the logged episode returns are the raw score either way)."""
    if mode == "atari84":  # frame skip, no-op starts, 84x84 grey, 4-frame stack, rewards clipped when training
        return rl_utils.make_env(env_id, capture_video=capture_video, video_dir=video_dir, training=training,
                                 max_episode_steps=max_episode_steps or None)()
    kwargs: dict = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    if capture_video:
        kwargs["render_mode"] = "rgb_array"
    env = gym.make(env_id, **kwargs)
    if capture_video:
        env = gym.wrappers.RecordVideo(env, str(video_dir or "videos"), episode_trigger=lambda ep: ep == 0)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = TwoActions(env)
    env = gym.wrappers.TransformObservation(env, prepro, gym.spaces.Box(0, 1, (SIZE, SIZE), np.uint8))
    if mode == "diff":
        env = FrameDiff(env)
    elif mode == "stack":  # padded with the first frame at an episode start (gymnasium's "reset" padding)
        env = gym.wrappers.FrameStackObservation(env, frames)
    return env


# ----------------------------------------------------------------------------------------------------------------
# Frame backbones: obs [B, ...] -> features [B, F]
# ----------------------------------------------------------------------------------------------------------------
class MLP(nn.Module):
    """6400 (or a vector observation's size) -> hidden, ReLU (karpathy's one hidden layer)."""

    def __init__(self, hidden: int, in_dim: int = SIZE * SIZE):
        super().__init__()
        self.fc, self.out_dim = nn.Linear(in_dim, hidden), hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 80, 80] or [B, D]
        return F.relu(self.fc(x.flatten(1)))


class CNN(nn.Module):
    """Conv 16@8x8/4 -> 32@4x4/2 -> Linear hidden (the DQN-Nature front without its third conv)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 8, 4), nn.Conv2d(16, 32, 4, 2)  # 80 -> 19 -> 8
        self.fc, self.out_dim = nn.Linear(32 * 8 * 8, hidden), hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 80, 80]
        h = F.relu(self.conv2(F.relu(self.conv1(x.unsqueeze(1)))))  # [B, 32, 8, 8]
        return F.relu(self.fc(h.flatten(1)))


class NatureCNN(nn.Module):
    """The DQN-Nature / CleanRL ``ppo_atari`` network over a 4 x 84 x 84 uint8 stack: Conv 32@8x8/4 ->
    64@4x4/2 -> 64@3x3/1 -> Linear 512, ReLU, pixels scaled to [0, 1] (the reference-style path, not the
    notes': it is how the reference score of the README was reached)."""

    def __init__(self, hidden: int = 512, channels: int = 4):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(channels, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                                   nn.Conv2d(64, 64, 3, 1), nn.ReLU())  # 84 -> 20 -> 9 -> 7
        self.fc, self.out_dim = nn.Linear(64 * 7 * 7, hidden), hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 4, 84, 84], 0..255
        return F.relu(self.fc(self.convs(x / 255.0).flatten(1)))


def conv3d_depth(frames: int) -> int:
    """Depth left after the two Conv3d layers (kernel 3, stride 2 in time): 11 frames -> 5 -> 2."""
    return ((frames - 3) // 2 + 1 - 3) // 2 + 1


class CNN3D(nn.Module):
    """Conv3d 16@(3,8,8)/(2,4,4) -> 32@(3,4,4)/2 -> Linear hidden over a stack of frames: the time kernel sees
    the ball's trajectory directly (needs >= 7 frames)."""

    def __init__(self, hidden: int, frames: int):
        super().__init__()
        self.conv1 = nn.Conv3d(1, 16, (3, 8, 8), (2, 4, 4))
        self.conv2 = nn.Conv3d(16, 32, (3, 4, 4), 2)
        self.fc, self.out_dim = nn.Linear(32 * conv3d_depth(frames) * 8 * 8, hidden), hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, K, 80, 80]
        h = F.relu(self.conv2(F.relu(self.conv1(x.unsqueeze(1)))))  # [B, 32, D, 8, 8]
        return F.relu(self.fc(h.flatten(1)))


class CNN3D2D(nn.Module):
    """cnn3d on the stack and cnn on its last frame difference, features concatenated (the notes' best PG
    model: cnn3d's fast start with cnn's final score)."""

    def __init__(self, hidden: int, frames: int):
        super().__init__()
        self.c3d, self.c2d = CNN3D(hidden, frames), CNN(hidden)
        self.out_dim = 2 * hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, K, 80, 80]
        return torch.cat([self.c3d(x), self.c2d(x[:, -1] - x[:, -2])], dim=1)


# ----------------------------------------------------------------------------------------------------------------
# Transformer pieces
# ----------------------------------------------------------------------------------------------------------------
def sinusoidal(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sin/cos encoding of integer positions [...] -> [..., dim] (Vaswani et al.): defined for any
    episode length, no table to outgrow."""
    i = torch.arange(0, dim, 2, device=pos.device, dtype=torch.float32)
    angle = pos.to(torch.float32)[..., None] / torch.pow(10_000.0, i / dim)  # [..., dim/2]
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)


def window_keep_mask(starts: torch.Tensor, lookback: int) -> torch.Tensor:
    """Training mask [B, 1, L, L] (True = attend) for sequences whose ``starts`` [B, L] mark episode starts:
    query q sees key k iff k <= q (causal, ``dl_utils.causal_keep_mask``), q − k <= lookback (the window the
    acting cache holds) and both lie in the same episode. The diagonal is always True."""
    length = starts.shape[1]
    causal = causal_keep_mask(None, length, length, starts.device)  # [1, 1, L, L]
    idx = torch.arange(length, device=starts.device)
    window = (idx[:, None] - idx[None, :]) <= lookback  # [L, L]
    episode = starts.long().cumsum(1)  # [B, L]: the same number within one episode
    same = episode[:, :, None] == episode[:, None, :]  # [B, L, L]
    return causal & window & same[:, None]


class LinearBlock(nn.Module):
    """``--ffn none``: the notes' block, pre-LN attention and then a single residual Linear in place of the
    4x MLP. The attention is the project's ``CausalSelfAttention``."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(cfg.n_embd), CausalSelfAttention(cfg)
        self.ln_2, self.proj = nn.LayerNorm(cfg.n_embd), nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, past=None):  # type: ignore[no-untyped-def]
        attn, present = self.attn(self.ln_1(x), mask, past)
        x = x + attn
        return x + self.proj(self.ln_2(x)), present


class TransformerBody(nn.Module):
    """Frame embedding (6400 -> d, or a vector observation's D -> d) + episode-absolute position, ``n_layer``
    pre-LN causal blocks (``dl_utils.GPTBlock``, or :class:`LinearBlock` for ``--ffn none``), a final LayerNorm.
    A "frame" below is one step's observation of shape ``obs_shape``: [80, 80] for Pong, [D] for a vector env."""

    def __init__(self, d_model: int, n_layer: int, n_head: int, lookback: int, ffn: str,
                 obs_shape: tuple[int, ...] = (SIZE, SIZE)):
        super().__init__()
        self.cfg = GPTConfig(n_embd=d_model, n_layer=n_layer, n_head=n_head, dropout=0.0)
        self.obs_dims = len(obs_shape)  # trailing dims of one frame, flattened into the embedding's input
        self.embed = nn.Linear(int(np.prod(obs_shape)), d_model)
        block = GPTBlock if ffn == "mlp" else LinearBlock
        self.h = nn.ModuleList(block(self.cfg) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.lookback, self.out_dim = lookback, d_model

    def tokens(self, frames: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """frames [..., *obs_shape], pos [...] -> tokens [..., d]."""
        return self.embed(frames.flatten(-self.obs_dims).float()) + sinusoidal(pos, self.out_dim)

    def forward(self, frames: torch.Tensor, pos: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """Full forward over sequences: frames [B, L, *obs_shape], pos/starts [B, L] -> features [B, L, d]."""
        x, mask = self.tokens(frames, pos), window_keep_mask(starts, self.lookback)
        for block in self.h:
            x, _ = block(x, mask)
        return self.ln_f(x)

    def step(self, frames: torch.Tensor, pos: torch.Tensor, past: list, valid: torch.Tensor
             ) -> tuple[torch.Tensor, list, torch.Tensor]:
        """One new token per env with the cache: frames [N, *obs_shape], pos [N], ``past`` per layer (K, V) each
        [N, H, lookback, hd], ``valid`` [N, lookback] (False = empty slot or another episode). Returns
        (features [N, d], the cache shifted by one with the new token last, its validity)."""
        x = self.tokens(frames, pos)[:, None]  # [N, 1, d]
        keep = torch.cat([valid, torch.ones_like(valid[:, :1])], dim=1)  # [N, lookback + 1]
        mask = causal_keep_mask(keep, 1, keep.shape[1], x.device)  # [N, 1, 1, lookback + 1]
        present = []
        for block, kv in zip(self.h, past):
            x, (k, v) = block(x, mask, kv)
            present.append((k[:, :, 1:], v[:, :, 1:]))  # drop the oldest: keep the last `lookback`
        return self.ln_f(x[:, 0]), present, keep[:, 1:]

    def empty_cache(self, n: int, device: torch.device) -> tuple[list, torch.Tensor]:
        hd = self.cfg.n_embd // self.cfg.n_head
        zeros = lambda: torch.zeros(n, self.cfg.n_head, self.lookback, hd, device=device)  # noqa: E731
        return [(zeros(), zeros()) for _ in self.h], torch.zeros(n, self.lookback, dtype=torch.bool, device=device)


# ----------------------------------------------------------------------------------------------------------------
# The policy: backbone + actor head (2 logits for Pong) + critic head
# ----------------------------------------------------------------------------------------------------------------
class FramePolicy(nn.Module):
    """π(UP/DOWN | s) and V(s) on one trunk (the notes' models share it). ``forward(obs)`` for the frame
    backbones; ``forward_seq(frames, pos, starts)`` and ``step`` for the transformer. ``obs_shape`` and
    ``n_actions`` are Pong's by default; a vector env passes its (D,) and its number of actions (mlp and
    transformer only: the conv backbones are built for 80x80 frames)."""

    def __init__(self, backbone: str, hidden: int = 200, frames: int = 11, d_model: int = 128, n_layer: int = 1,
                 n_head: int = 8, lookback: int = 10, ffn: str = "mlp", obs_shape: tuple[int, ...] = (SIZE, SIZE),
                 n_actions: int = 2):
        super().__init__()
        self.backbone_name = backbone
        self.body: nn.Module = {
            "mlp": lambda: MLP(hidden, int(np.prod(obs_shape))), "cnn": lambda: CNN(hidden),
            "cnn3d": lambda: CNN3D(hidden, frames), "cnn3d2d": lambda: CNN3D2D(hidden, frames),
            "transformer": lambda: TransformerBody(d_model, n_layer, n_head, lookback, ffn, obs_shape),
            "nature": lambda: NatureCNN(hidden, obs_shape[0]),
        }[backbone]()
        self.actor = nn.Linear(self.body.out_dim, n_actions)
        self.critic = nn.Linear(self.body.out_dim, 1)

    @property
    def sequential(self) -> bool:
        return self.backbone_name == "transformer"

    def heads(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(feat), self.critic(feat).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [B, ...] (any int or float dtype) -> (logits [B, A], values [B])."""
        return self.heads(self.body(obs.float()))

    def forward_seq(self, frames: torch.Tensor, pos: torch.Tensor, starts: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, L, *obs_shape] -> (logits [B, L, A], values [B, L]) with the windowed episode mask."""
        return self.heads(self.body(frames, pos, starts))


class TransformerActor:
    """Acting with the key/value cache, for N envs at once. Tracks each env's episode-absolute position and its
    last ``lookback`` keys/values; ``reset(mask)`` empties the cache of the envs whose episode ended (and is
    what ``rl_utils.evaluate`` calls). ``__call__(obs)`` is the greedy policy evaluation wants."""

    def __init__(self, agent: FramePolicy, num_envs: int, device: torch.device, greedy: bool = False):
        self.agent, self.device, self.greedy = agent, device, greedy
        self.past, self.valid = agent.body.empty_cache(num_envs, device)
        self.pos = torch.zeros(num_envs, dtype=torch.long, device=device)  # position of the next token

    def reset(self, mask: np.ndarray) -> None:
        idx = torch.as_tensor(np.flatnonzero(mask), device=self.device)
        self.valid[idx] = False
        self.pos[idx] = 0

    @torch.no_grad()
    def peek(self, obs: torch.Tensor, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, values) of ``obs`` for the envs ``idx`` (all by default) without moving the cache: the value
        of a truncated episode's final observation, or of the observation after a rollout."""
        idx = torch.arange(len(self.pos), device=self.device) if idx is None else idx
        past = [(k[idx], v[idx]) for k, v in self.past]
        feat, _, _ = self.agent.body.step(obs, self.pos[idx], past, self.valid[idx])
        return self.agent.heads(feat)

    @torch.no_grad()
    def step(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """obs [N, *obs_shape] -> (logits [N, A], values [N], positions used [N]); the cache moves on by one."""
        pos = self.pos.clone()
        feat, self.past, self.valid = self.agent.body.step(obs, pos, self.past, self.valid)
        self.pos += 1
        logits, values = self.agent.heads(feat)
        return logits, values, pos

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        logits, _, _ = self.step(torch.as_tensor(obs, device=self.device))
        return logits.argmax(-1).cpu().numpy()

"""C51 (Bellemare, Dabney & Munos 2017): DQN that learns the whole return distribution, not just its mean.

    python distributional_rl/c51/train.py                          # CartPole-v1, 101 atoms on [-100, 100]
    python distributional_rl/c51/train.py --env-id LunarLander-v3
    python distributional_rl/c51/train.py --env-id ALE/Pong-v5      # 51 atoms on [-10, 10], the paper's Atari set-up
    python distributional_rl/c51/plot_distributions.py --run runs/<run>   # the README figure for your run
    python distributional_rl/c51/train.py --eval-only --checkpoint runs/<run>/ckpt/best.pt --capture-video

The loop is DQN's (``classic_rl/dqn/train.py``: ε-greedy acting, replay with ``--per`` and ``--n-step``,
``--double``, ``--dueling``, target network, evaluation, checkpoints, resume): this file adds what C51 is about,
its arguments (the atoms), its network (``model.py``) and its loss (:func:`c51_loss`). The projection onto the
atoms and the cross-entropy live in ``distributional_rl/categorical.py``, shared with D4PG.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import rl_utils  # noqa: E402
from classic_rl.dqn import train as dqn  # noqa: E402
from classic_rl.policies import parse_hidden  # noqa: E402
from distributional_rl.c51.model import CategoricalQNetwork  # noqa: E402
from distributional_rl.categorical import cross_entropy, expected_value, make_support, project  # noqa: E402


@dataclass
class Args(dqn.ValueArgs):
    """Train C51 (a categorical return distribution per action; DQN's loop, flags and variants) on a
    discrete-action gymnasium env."""

    total_timesteps: int = 100_000
    """environment steps to train for (CartPole-v1 is solved well within them: see the README)"""
    n_atoms: int = 101
    """atoms of the categorical return distribution"""
    v_min: float = -100.0
    """lowest atom; returns below it are clipped onto it"""
    v_max: float = 100.0
    """highest atom. CartPole's default [-100, 100] with 101 atoms is CleanRL c51.py's: the discounted return
    of +1 per step is at most 1 / (1 - γ) = 100 at γ 0.99, and Δz = 2"""

    LIMITS = {"n_atoms": (2, None)}

    def __post_init__(self) -> None:
        if not self.v_min < self.v_max:
            raise rl_utils.UsageError(f"--v-min must be < --v-max, got {self.v_min:g} and {self.v_max:g}")


# Tuned defaults per env, applied unless the flag is typed: DQN's presets (the loop is the same) with atoms
# sized to each env's discounted returns.
PRESETS: dict[str, dict[str, object]] = {
    # Rewards: +100 for landing, -100 for a crash, shaping worth roughly ±150 more over an episode; discounted at
    # γ 0.99 the returns stay inside ±200 (Δz = 4 with 101 atoms)
    "LunarLander-v3": dict(dqn.PRESETS["LunarLander-v3"], n_atoms=101, v_min=-200.0, v_max=200.0),
    # The paper's Atari setting: rewards are clipped to ±1 in training, 51 atoms on [-10, 10], lr 2.5e-4
    "ALE/Pong-v5": dict(dqn.PRESETS["ALE/Pong-v5"], n_atoms=51, v_min=-10.0, v_max=10.0, learning_rate=2.5e-4),
}


def c51_loss(online: CategoricalQNetwork, target: CategoricalQNetwork, batch: rl_utils.ReplayBatch,
             double: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The distributional TD loss on a replay batch; returns (loss, per-sample cross-entropy [B], Q(s, a) [B]).

    a* = argmax_a' E[Z_target(s', a')]            (Double: argmax_a' E[Z_online(s', a')])
    m  = Φ(r + γ^m (1 − done) z | p_target(s', a*))   the target distribution projected onto the atoms
    L  = −Σ_j m_j log p_j(s, a)                      the cross-entropy (= KL(m ‖ p) + H(m), H fixed by the target)

    The per-sample cross-entropy is also what PER prioritises."""
    rows = torch.arange(batch.actions.shape[0], device=batch.actions.device)
    with torch.no_grad():
        next_probs = target.probs(batch.next_obs)  # [B, A, N]
        next_q = online(batch.next_obs) if double else expected_value(next_probs, target.support)  # [B, A]
        next_dist = next_probs[rows, next_q.argmax(dim=1)]  # [B, N]
        target_probs = project(next_dist, batch.rewards, batch.discounts, batch.dones, target.support)  # [B, N]
    logits = online.logits(batch.obs)[rows, batch.actions.long().view(-1)]  # [B, N]
    ce = cross_entropy(logits, target_probs)  # [B]
    q_taken = expected_value(torch.softmax(logits.detach(), dim=-1), online.support)  # [B]
    return (batch.weights * ce).mean(), ce.detach(), q_taken


def loss(args: Args, online: CategoricalQNetwork, target: CategoricalQNetwork,
         batch: rl_utils.ReplayBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return c51_loss(online, target, batch, args.double)


def build(args: Args, envs: gym.vector.VectorEnv,
          device: torch.device) -> tuple[CategoricalQNetwork, CategoricalQNetwork]:
    n_actions = dqn.discrete_action_count(args, envs, "C51")
    support = make_support(args.v_min, args.v_max, args.n_atoms)
    online = CategoricalQNetwork(envs.single_observation_space.shape, n_actions, support,
                                 parse_hidden(args.hidden_sizes), args.dueling).to(device)
    return online, copy.deepcopy(online).requires_grad_(False)  # the target: only copied into, never trained


C51 = dqn.Method(Args, PRESETS, build, loss, "c51")


if __name__ == "__main__":
    rl_utils.run_main(lambda: dqn.main(C51))

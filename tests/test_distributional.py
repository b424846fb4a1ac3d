"""The categorical projection shared by C51 and D4PG: conserved mass (including atoms that land exactly on the
grid, the notes' ``l == u`` bug, and targets beyond v_min/v_max), equality with a brute-force loop, the exact
shift on a unit grid, the preserved mean, and the cross-entropy against torch's."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distributional_rl.categorical import cross_entropy, expected_value, make_support, project


def brute_force_projection(next_probs, rewards, discounts, dones, support):
    """The paper's Algorithm 1, one sample and one atom at a time, with l == u handled explicitly."""
    n = len(support)
    v_min, v_max = float(support[0]), float(support[-1])
    delta = (v_max - v_min) / (n - 1)
    out = torch.zeros(next_probs.shape, dtype=torch.float64)
    for i in range(next_probs.shape[0]):
        for j in range(n):
            tz = float(rewards[i]) + float(discounts[i]) * (1.0 - float(dones[i])) * float(support[j])
            b = (min(max(tz, v_min), v_max) - v_min) / delta
            lo, up = math.floor(b), math.ceil(b)
            p = float(next_probs[i, j])
            if lo == up:
                out[i, lo] += p
            else:
                out[i, lo] += p * (up - b)
                out[i, up] += p * (b - lo)
    return out


def _random_case(seed: int, batch: int = 16, n: int = 11, v_min: float = -5.0, v_max: float = 5.0):
    g = torch.Generator().manual_seed(seed)
    support = make_support(v_min, v_max, n)
    probs = torch.softmax(torch.randn(batch, n, generator=g) * 2, -1)
    rewards = torch.randn(batch, generator=g) * 4  # some shifted atoms fall beyond v_min / v_max
    rewards[:4] = torch.tensor([1.0, -2.0, 0.0, 3.0])  # γ = 1 below: every atom lands exactly on the grid
    discounts = torch.rand(batch, generator=g)
    discounts[:4] = 1.0
    dones = (torch.rand(batch, generator=g) < 0.25).float()
    dones[:4] = 0.0
    return probs, rewards, discounts, dones, support


@pytest.mark.parametrize("seed", range(5))
def test_projection_conserves_mass_and_equals_the_brute_force_loop(seed):
    probs, rewards, discounts, dones, support = _random_case(seed)
    target = project(probs, rewards, discounts, dones, support)
    assert (target >= 0).all()
    torch.testing.assert_close(target.sum(-1), torch.ones(len(probs)), atol=1e-6, rtol=0)
    ref = brute_force_projection(probs, rewards, discounts, dones, support)
    torch.testing.assert_close(target.double(), ref, atol=1e-6, rtol=0)


def test_atoms_landing_on_the_grid_shift_exactly_and_pile_up_at_the_edge():
    support = make_support(-3.0, 3.0, 7)  # Δz = 1
    probs = torch.full((1, 7), 1 / 7)
    target = project(probs, torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.0]), support)
    # every atom moves up by one; the top two both end at v_max (clipped), nothing is lost (l == u everywhere)
    torch.testing.assert_close(target, torch.tensor([[0, 1, 1, 1, 1, 1, 2]]) / 7)


def test_terminated_transition_keeps_only_the_reward_split_between_neighbours():
    support = make_support(-3.0, 3.0, 7)
    probs = torch.softmax(torch.randn(1, 7), -1)
    target = project(probs, torch.tensor([0.25]), torch.tensor([0.99]), torch.tensor([1.0]), support)
    torch.testing.assert_close(target, torch.tensor([[0, 0, 0, 0.75, 0.25, 0, 0]]))


def test_projection_preserves_the_mean_when_nothing_is_clipped():
    """Splitting an atom between its neighbours in proportion to closeness keeps its position on average."""
    support = make_support(-10.0, 10.0, 51)
    g = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(32, 51, generator=g), -1)
    rewards, discounts = torch.rand(32, generator=g) - 0.5, torch.full((32,), 0.9)
    target = project(probs, rewards, discounts, torch.zeros(32), support)
    torch.testing.assert_close(expected_value(target, support), rewards + 0.9 * expected_value(probs, support))


def test_cross_entropy_equals_torch_soft_target_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 51, generator=g) * 5
    target = torch.softmax(torch.randn(8, 51, generator=g), -1)
    torch.testing.assert_close(cross_entropy(logits, target), F.cross_entropy(logits, target, reduction="none"))


def test_support_validation():
    with pytest.raises(ValueError):
        make_support(1.0, 1.0, 51)
    with pytest.raises(ValueError):
        make_support(0.0, 1.0, 1)

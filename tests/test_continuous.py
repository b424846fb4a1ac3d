"""The off-policy continuous-control networks: the batched ensemble equals separate MLPs, and SAC's tanh-Gaussian
log-density equals torch.distributions' TransformedDistribution(Normal, TanhTransform) summed over dimensions."""

from __future__ import annotations

import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from classic_rl.continuous import EnsembleMLP, QEnsemble, SquashedGaussianActor, tanh_log_det_jacobian


def test_ensemble_equals_separate_mlps_forward_and_backward():
    torch.manual_seed(0)
    ens = EnsembleMLP(3, 5, (16, 8), 2)
    members = [ens.member(i) for i in range(3)]
    x = torch.randn(7, 5)
    out = ens(x)  # [3, 7, 2]
    for i, m in enumerate(members):
        torch.testing.assert_close(out[i], m(x), rtol=1e-6, atol=1e-6)
    # gradients of member i's loss reach only member i's slice, equal to the plain MLP's
    out[1].pow(2).sum().backward()
    ref = members[1]
    ref(x).pow(2).sum().backward()
    torch.testing.assert_close(ens.weights[0].grad[1], ref[0].weight.grad.T, rtol=1e-5, atol=1e-6)
    assert ens.weights[0].grad[0].abs().max() == 0 and ens.weights[0].grad[2].abs().max() == 0


def test_q_ensemble_shapes_and_independent_initialisation():
    torch.manual_seed(0)
    q = QEnsemble(obs_dim=3, act_dim=2, hidden=(32, 32), n=2)
    values = q(torch.randn(10, 3), torch.rand(10, 2) * 2 - 1)
    assert values.shape == (2, 10) and not torch.allclose(values[0], values[1])


def test_first_member_only_equals_the_full_ensembles_first_row_and_grads_only_it():
    torch.manual_seed(0)
    q = QEnsemble(obs_dim=3, act_dim=2, hidden=(16, 16), n=2)
    obs, actions = torch.randn(6, 3), torch.rand(6, 2, requires_grad=True)
    first = q(obs, actions, members=1)
    assert first.shape == (1, 6)
    torch.testing.assert_close(first[0], q(obs, actions)[0])
    first.sum().backward()
    assert q.net.weights[0].grad[0].abs().max() > 0 and q.net.weights[0].grad[1].abs().max() == 0


def test_tanh_gaussian_log_prob_equals_transformed_distribution_summed_over_dims():
    torch.manual_seed(1)
    actor = SquashedGaussianActor(obs_dim=4, act_dim=3, hidden=(32, 32))
    obs = torch.randn(64, 4) * 3
    torch.manual_seed(7)
    action, log_prob = actor.sample(obs)
    mean, log_std = actor(obs)
    torch.manual_seed(7)
    eps = torch.randn_like(mean)  # the same noise the actor drew
    dist = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform(cache_size=1)])
    u = mean + log_std.exp() * eps
    squashed = dist.transforms[0](u)  # caches (u, tanh u), so log_prob below inverts exactly
    torch.testing.assert_close(action, squashed)
    torch.testing.assert_close(log_prob, dist.log_prob(squashed).sum(-1), rtol=1e-5, atol=1e-4)
    assert action.abs().max() < 1 and log_prob.shape == (64,)
    torch.testing.assert_close(actor.deterministic(obs), torch.tanh(mean))


def test_tanh_correction_is_stable_where_tanh_saturates():
    u = torch.tensor([-30.0, -3.0, 0.0, 0.5, 3.0, 30.0])
    exact = torch.log1p(-torch.tanh(u[1:-1].double()) ** 2).float()
    torch.testing.assert_close(tanh_log_det_jacobian(u)[1:-1], exact, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(tanh_log_det_jacobian(u)).all()  # log(1 - tanh²(30)) would be log(0) = -inf

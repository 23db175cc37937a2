"""The latent SCM whose log densities are a regime classifier's logits (causal_wm.crl.latent_scm)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from causal_wm.crl.latent_scm import LatentSCM, LatentSCMParameters, export_parameters
from causal_wm.scm import Intervention, random_scm

torch.set_num_threads(1)

CHAIN = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])  # 0 -> 1 -> 2


def _regimes(scm, per_regime: int, seed: int):
    """Observational rows and two mean-shift hard interventions per node (true latents)."""
    menu = [None] + [Intervention.hard(k, shift=s, std=0.7) for k in range(scm.n) for s in (-1.0, 1.0)]
    return [scm.sample(per_regime, iv, seed=seed + r) for r, iv in enumerate(menu)], menu


def test_trained_on_true_latents_it_finds_the_mechanisms_and_the_laws():
    """Known answer: on the true latents of a linear Gaussian SCM, the classifier's optimum is the SCM
    itself, so the fitted weights are the SCM's and the laws are the interventions'."""
    scm = random_scm(CHAIN, "linear", seed=3).standardized()
    data, menu = _regimes(scm, 3000, seed=0)
    model = LatentSCM(3, [iv.targets for iv in menu[1:]])
    z = torch.as_tensor(np.concatenate(data), dtype=torch.float32)
    labels = torch.as_tensor(np.repeat(np.arange(len(data)), 3000))
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(600):
        loss = F.cross_entropy(model.logits(z), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    W = model.weight.detach().numpy() * (1 - np.eye(3))
    true = scm.weight_matrix()
    np.testing.assert_allclose(W, true, atol=0.08)
    assert np.all(np.abs(W[CHAIN == 0]) < 0.08) and np.all(np.abs(W[CHAIN == 1]) > 0.3)
    mu = model.mu.detach().numpy()
    tau = np.exp(model.log_tau.detach().numpy())
    for r, iv in enumerate(menu[1:]):
        (k,) = iv.targets
        assert mu[r, k] == pytest.approx(iv.shift[0], abs=0.08)
        assert tau[r, k] == pytest.approx(0.7, abs=0.06)
    np.testing.assert_allclose(np.exp(model.log_sigma.detach().numpy()), scm.noise_std, atol=0.08)


@pytest.mark.parametrize("mechanism", ["linear", "mlp"])
def test_export_to_other_coordinates_keeps_every_log_ratio(mechanism):
    """Rewriting the SCM in u = (z - center) / scale (scale may flip a sign) changes no log ratio."""
    torch.manual_seed(0)
    model = LatentSCM(4, [(0,), (1,), (2, 3), (3,)], mechanism, hidden=5, seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    center = np.array([0.3, -1.0, 2.0, 0.0])
    scale = np.array([2.0, -0.5, 1.5, -3.0])
    params = export_parameters(model, [1, 2, 5, 7], center, scale)
    u = np.random.default_rng(0).standard_normal((200, 4))
    z = torch.as_tensor(center + scale * u, dtype=torch.float64)
    expected = model.double().log_ratios(z).detach().numpy()
    np.testing.assert_allclose(params.log_ratios(u), expected, atol=1e-8)
    assert params.regimes == [1, 2, 5, 7] and params.targets == [(0,), (1,), (2, 3), (3,)]
    again = LatentSCMParameters.from_dict(params.to_dict())
    np.testing.assert_allclose(again.log_ratios(u), expected, atol=1e-8)


def test_the_diagonal_never_enters_a_mechanism():
    model = LatentSCM(3, [(0,), (1,), (2,)], "mlp", hidden=4)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.w1.normal_()
        model.w2.normal_()
    z = torch.randn(10, 3, requires_grad=True)
    means = model.mechanism_means(z)
    for k in range(3):
        (grad,) = torch.autograd.grad(means[:, k].sum(), z, retain_graph=True)
        assert torch.all(grad[:, k] == 0)
    S = model.edge_strength(z.detach())
    assert np.all(np.diag(S) == 0) and S.shape == (3, 3)


def test_law_mismatch_is_small_for_gaussian_laws_and_large_for_a_distorted_latent():
    scm = random_scm(CHAIN, "linear", seed=3).standardized()
    data, menu = _regimes(scm, 4000, seed=10)
    model = LatentSCM(3, [iv.targets for iv in menu[1:]])
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(scm.weight_matrix()))
        model.bias.copy_(torch.as_tensor(scm.noise_mean))
        model.log_sigma.copy_(torch.log(torch.as_tensor(scm.noise_std)))
        for r, iv in enumerate(menu[1:]):
            model.mu[r, iv.targets[0]] = iv.shift[0]
            model.log_tau[r, iv.targets[0]] = float(np.log(0.7))
    z = torch.as_tensor(np.concatenate(data), dtype=torch.float32)
    squashed = z.clone()
    squashed[:, 1] = 2.0 * torch.tanh(z[:, 1] / 2.0)   # a compressed tail on latent 1
    with torch.no_grad():
        exact, distorted = float(model.law_mismatch(z, 4000)), float(model.law_mismatch(squashed, 4000))
    assert exact < 0.01
    assert distorted > 5 * exact


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="mechanism"):
        LatentSCM(2, [(0,)], "quadratic")
    with pytest.raises(ValueError, match="targets"):
        LatentSCM(2, [(0,), (2,)])
    with pytest.raises(ValueError, match="at least one"):
        LatentSCM(2, [])

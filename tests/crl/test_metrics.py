"""Tests of causal_wm.crl.metrics: invariances and hand-made known values."""

from __future__ import annotations

import numpy as np
import pytest

from causal_wm.crl.metrics import (
    align,
    allowed_mixing_pattern,
    correlation_matrix,
    edge_precision_recall,
    evaluate,
    incorrect_mixing_norm,
    mcc,
    normalized_latent_error,
    r2_matrix,
    shd,
)


@pytest.fixture
def latents() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4000, 4))


def test_mcc_perfect_under_permutation_and_scaling(latents):
    perm = np.array([2, 0, 3, 1])
    z_hat = latents[:, perm] * np.array([3.0, -0.5, 2.0, -7.0])
    res = mcc(latents, z_hat)
    assert res.value == pytest.approx(1.0, abs=1e-12)
    # learned latent permutation[i] is matched to true latent i
    np.testing.assert_array_equal(z_hat[:, res.permutation] != 0, np.ones_like(latents, dtype=bool))
    np.testing.assert_array_equal(perm[res.permutation], np.arange(4))
    assert mcc(latents, z_hat, "spearman").value == pytest.approx(1.0, abs=1e-12)


def test_spearman_invariant_to_monotone_maps_pearson_is_not(latents):
    z_hat = np.exp(2.0 * latents)
    assert mcc(latents, z_hat, "spearman").value == pytest.approx(1.0, abs=1e-12)
    assert mcc(latents, z_hat, "pearson").value < 0.9


def test_mcc_known_value_for_mixed_latent(latents):
    # z_hat_0 = z_0 + z_1 with unit-variance independent z: corr = 1/sqrt(2) with both z_0 and z_1.
    z_hat = latents.copy()
    z_hat[:, 0] = latents[:, 0] + latents[:, 1]
    z_hat[:, 1] = latents[:, 0] - latents[:, 1]
    res = mcc(latents, z_hat)
    assert res.value == pytest.approx((2 / np.sqrt(2) + 2) / 4, abs=0.03)
    assert res.matrix.shape == (4, 4)


def test_correlation_matrix_constant_column_and_errors(latents):
    z_hat = latents.copy()
    z_hat[:, 2] = 1.0
    C = correlation_matrix(latents, z_hat)
    assert np.all(C[:, 2] == 0.0)
    with pytest.raises(ValueError, match="same shape"):
        mcc(latents, latents[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        mcc(latents, np.full_like(latents, np.nan))
    with pytest.raises(ValueError, match="method"):
        mcc(latents, latents, "kendall")


def test_r2_matrix_nonlinear_function_and_independent(latents):
    z_hat = np.stack([latents[:, 1] ** 3, np.tanh(latents[:, 0]), latents[:, 3], latents[:, 2]], axis=1)
    r = r2_matrix(latents, z_hat)
    assert r.diag > 0.97
    assert r.sep < 0.02
    np.testing.assert_array_equal(r.permutation, [1, 0, 3, 2])
    # an even function of z_0 carries no linear information but the probe is nonparametric
    r_even = r2_matrix(latents[:, :1], latents[:, :1] ** 2)
    assert r_even.diag < 0.02


def test_shd_known_values():
    A = np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])  # 0->1, 0->2, 1->2
    B = np.array([[0, 0, 1], [1, 0, 0], [0, 0, 0]])  # 1->0 (reversed), 0->2, missing 1->2
    assert shd(A, B, reversal_cost=1) == 2
    assert shd(A, B, reversal_cost=2) == 3
    assert shd(A, A) == 0
    precision, recall = edge_precision_recall(A, B)
    assert precision == pytest.approx(1 / 2)
    assert recall == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="reversal_cost"):
        shd(A, B, reversal_cost=3)


def test_shd_permutation_invariance():
    rng = np.random.default_rng(1)
    A = np.triu((rng.random((6, 6)) < 0.5).astype(int), k=1)
    perm = rng.permutation(6)
    # learned latent perm[i] is true latent i: relabel the true graph accordingly
    B = np.zeros_like(A)
    B[np.ix_(perm, perm)] = A
    assert shd(A, B, perm) == 0
    assert shd(A, B, perm, reversal_cost=2) == 0
    assert edge_precision_recall(A, B, perm) == (1.0, 1.0)
    with pytest.raises(ValueError, match="permutation"):
        shd(A, B, np.zeros(6, dtype=int))


def test_incorrect_mixing_norm_hard_and_soft():
    rng = np.random.default_rng(2)
    n, d = 3, 10
    G = np.linalg.qr(rng.standard_normal((d, n)))[0] @ np.diag([1.0, 2.0, 3.0])
    graph = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])  # chain 0 -> 1 -> 2
    perm = np.array([2, 0, 1])
    # perfect encoder up to permutation and scaling: H = P S G^+
    H = (np.diag([2.0, -1.0, 5.0]) @ np.linalg.pinv(G))[np.argsort(perm)]
    assert incorrect_mixing_norm(H, G, graph) == pytest.approx(0.0, abs=1e-12)
    assert incorrect_mixing_norm(H, G, graph, permutation=perm) == pytest.approx(0.0, abs=1e-12)
    # learned latent 1 = z_1 + z_0 (mixing with its parent): wrong for hard, allowed for soft
    E = np.eye(n)
    E[1, 0] = 1.0
    H_soft = E @ np.linalg.pinv(G)
    assert incorrect_mixing_norm(H_soft, G, graph, hard=True) == pytest.approx(1 / np.sqrt(2))
    assert incorrect_mixing_norm(H_soft, G, graph, hard=False) == pytest.approx(0.0, abs=1e-12)
    # mixing with a grandparent is allowed only by the ancestors pattern
    E = np.eye(n)
    E[2, 0] = 1.0
    H_anc = E @ np.linalg.pinv(G)
    assert incorrect_mixing_norm(H_anc, G, graph, hard=False) == pytest.approx(1 / np.sqrt(2))
    assert incorrect_mixing_norm(H_anc, G, graph, hard=False, soft_pattern="ancestors") == pytest.approx(0.0)
    assert allowed_mixing_pattern(graph, hard=False).sum() == 5
    with pytest.raises(ValueError, match="do not fit"):
        incorrect_mixing_norm(H[:, :5], G, graph)


def test_align_and_latent_error(latents):
    perm = np.array([3, 2, 1, 0])
    z_hat = latents[:, perm] * np.array([2.0, -3.0, 0.5, 4.0])
    a = align(latents, z_hat)
    np.testing.assert_allclose(a.z_aligned, latents, atol=1e-10)
    np.testing.assert_array_equal(a.permutation, [3, 2, 1, 0])
    np.testing.assert_allclose(a.scale, [0.25, 2.0, -1 / 3, 0.5])
    assert normalized_latent_error(latents, z_hat) == pytest.approx(0.0, abs=1e-10)
    # independent learned latents: the best scale is ~0, the error ~1
    other = np.random.default_rng(5).standard_normal(latents.shape)
    assert normalized_latent_error(latents, other) == pytest.approx(1.0, abs=0.01)
    # known value: z_hat = z + noise of std s gives error sqrt(s^2 / (1 + s^2)) per coordinate
    noisy = latents + 0.5 * np.random.default_rng(6).standard_normal(latents.shape)
    assert normalized_latent_error(latents, noisy) == pytest.approx(np.sqrt(0.25 / 1.25), abs=0.02)


def test_evaluate_gives_every_metric(latents):
    rng = np.random.default_rng(3)
    G = rng.standard_normal((12, 4))
    graph = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
    perm = np.array([1, 3, 0, 2])
    H = np.linalg.pinv(G)[np.argsort(perm)]
    z_hat = (latents @ G.T) @ H.T
    learned_graph = np.zeros_like(graph)
    learned_graph[np.ix_(perm, perm)] = graph
    out = evaluate(latents, z_hat, true_graph=graph, learned_graph=learned_graph, encoder=H, mixing_matrix=G)
    assert out["mcc_pearson"] == pytest.approx(1.0)
    assert out["mcc_spearman"] == pytest.approx(1.0)
    assert out["permutation"] == perm.tolist()
    assert out["shd"] == 0 and out["shd_rev2"] == 0
    assert out["edge_precision"] == 1.0 and out["edge_recall"] == 1.0
    assert out["incorrect_mixing"] == pytest.approx(0.0, abs=1e-10)
    assert out["z_error"] == pytest.approx(0.0, abs=1e-10)
    assert out["r2_diag"] > 0.97 and out["r2_sep"] < 0.02

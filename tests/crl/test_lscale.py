"""Tests of LSCALE-I on tiny problems (oracle scores unless stated)."""

from __future__ import annotations

import numpy as np
import pytest

from causal_wm.crl.dag import gap_threshold, transitive_reduction
from causal_wm.crl.lscale import _graph_from_statistics, _regression_statistics, lscale_i
from causal_wm.crl.metrics import incorrect_mixing_norm, mcc, shd
from causal_wm.scm import (
    lscale_problem,
    transitive_closure,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hard_oracle_recovers_graph_and_latents(seed):
    p = lscale_problem(4, 12, 3000, hard=True, seed=seed)
    res = lscale_i(p.observations, score_diffs=p.oracle_score_differences(), hard=True)
    z_hat = res.encode(p.observations[0])
    m = mcc(p.latents[0], z_hat)
    assert m.value > 0.999
    assert shd(p.graph, res.graph, m.permutation) == 0
    # env_targets: learned latent hit by each env is the one matched to the env's true target
    for env, target in enumerate(p.targets):
        assert m.permutation[target[0]] == res.target_latents[env]
    # finite-sample unmixing leaves small coefficients, large relative to low-variance latents
    assert incorrect_mixing_norm(res.encoder, p.mixing.G, p.graph, hard=True, permutation=m.permutation) < 0.3
    assert res.encoder.shape == (4, 12) and res.graph.shape == (4, 4)


def test_hard_gaussian_scores_small_problem():
    p = lscale_problem(3, 8, 20000, hard=True, seed=3)
    res = lscale_i(p.observations, scores="gaussian", hard=True)
    m = mcc(p.latents[0], res.encode(p.observations[0]))
    assert m.value > 0.99
    assert shd(p.graph, res.graph, m.permutation) == 0


def test_soft_oracle_mixes_with_parents_and_finds_closure():
    p = lscale_problem(4, 10, 3000, hard=False, seed=4)
    res = lscale_i(p.observations, score_diffs=p.oracle_score_differences(), hard=False)
    np.testing.assert_array_equal(res.encoder, res.encoder_soft)
    # each learned latent mixes its node with the node's parents only
    perm = np.empty(4, dtype=int)
    perm[[t[0] for t in p.targets]] = res.target_latents
    assert incorrect_mixing_norm(res.encoder_soft, p.mixing.G, p.graph, hard=False, permutation=perm) < 1e-6
    assert shd(transitive_closure(p.graph), res.graph_soft, perm) == 0
    assert shd(transitive_reduction(p.graph), transitive_reduction(res.graph_soft), perm) == 0


def test_nonlinear_latents_exact_graph_from_soft_interventions():
    p = lscale_problem(4, 10, 3000, hard=False, latent="quadratic", seed=5)
    assert p.graph.sum() >= 2
    res = lscale_i(p.observations, score_diffs=p.oracle_score_differences(), hard=False, nonlinear_latents=True)
    perm = np.empty(4, dtype=int)
    perm[[t[0] for t in p.targets]] = res.target_latents
    assert shd(p.graph, res.graph, perm) == 0


def test_regression_statistics_zero_for_non_parent_ancestors():
    # population covariance of the chain z0 -> z1 -> z2 plus z0 -> z3 <- z2: z0 is an ancestor of z2
    # but not a parent, z1 is an ancestor of z3 but not a parent
    n, N = 4, 10_000
    B = np.zeros((n, n))
    B[0, 1], B[1, 2], B[0, 3], B[2, 3] = 0.8, -0.5, 0.3, 0.6
    lift = np.linalg.inv(np.eye(n) - B.T)  # z = lift @ noise
    C = lift @ np.diag([1.0, 0.5, 2.0, 1.0]) @ lift.T
    H = np.linalg.cholesky(C)  # any H with H H^T = C gives the same learned-latent covariance
    T = _regression_statistics(H, N)
    assert T[0, 2] < 1e-8 and T[1, 3] < 1e-8
    for i, j in [(0, 1), (1, 2), (0, 3), (2, 3)]:
        assert T[i, j] > 10
    np.testing.assert_array_equal(np.tril(T), 0.0)
    # t statistics grow like sqrt(N)
    np.testing.assert_allclose(_regression_statistics(H, 4 * N)[0, 1], 2 * T[0, 1])


def test_regression_evidence_removes_a_false_score_edge():
    # chain 0 -> 1 -> 2 -> 3; the score statistics also carry moderate evidence for 0 -> 2
    n, N = 4, 50_000
    S, U = np.full((n, n), 0.01), np.full((n, n), 2.0)
    T = np.zeros((n, n))
    for i, j in [(0, 1), (1, 2), (2, 3)]:
        S[i, j], U[i, j], T[i, j] = 0.6, 40.0, 200.0
    S[0, 2], U[0, 2] = 0.2, 12.0
    T[0, 2], T[0, 3], T[1, 3] = 15.0, 10.0, 12.0
    np.fill_diagonal(S, 0.0)
    np.fill_diagonal(U, 0.0)
    noise = U / np.sqrt(N / n)
    chain = np.eye(n, k=1, dtype=np.int64)
    without, _ = _graph_from_statistics(S, noise, "auto", N)
    assert without[0, 2] == 1
    graph, info = _graph_from_statistics(S, noise, "auto", N, T)
    np.testing.assert_array_equal(graph, chain)
    assert 15.0 < info["threshold_t"] < 200.0


def test_hard_gaussian_scores_weak_edges_n8():
    # a run where the score statistics alone add a false edge between an ancestor and its grandchild
    p = lscale_problem(8, 100, 50_000, hard=True, seed=17)
    res = lscale_i(p.observations, hard=True)
    m = mcc(p.latents[0], res.encode(p.observations[0]))
    assert m.value > 0.99
    assert shd(p.graph, res.graph, m.permutation) == 0
    T = np.array(res.diagnostics["edge_statistic_t"])
    assert T.shape == (8, 8) and np.all(np.tril(T) == 0)


def test_gap_threshold_splits_null_and_signal():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(0.005, 0.02, 30), rng.uniform(0.5, 1.5, 10)])
    tau = gap_threshold(values, 20)
    assert 0.02 < tau < 0.5


def test_errors():
    p = lscale_problem(3, 6, 500, seed=0)
    envs = p.observations
    with pytest.raises(ValueError, match="one interventional environment per latent"):
        lscale_i(envs[:3], n=3, score_diffs=p.oracle_score_differences()[:2])
    with pytest.raises(ValueError, match="exactly one"):
        lscale_i(envs, n=2)
    with pytest.raises(ValueError, match="d >= n"):
        lscale_i([x[:, :2] for x in envs])
    bad = [x.copy() for x in envs]
    bad[2][5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        lscale_i(bad)
    with pytest.raises(ValueError, match="same dimension"):
        lscale_i([envs[0], envs[1], envs[2][:, :5], envs[3]])
    with pytest.raises(ValueError, match="shape of envs"):
        lscale_i(envs, score_diffs=[D[:100] for D in p.oracle_score_differences()])
    # rank-deficient: the observations span only 2 of 3 dimensions
    G = p.mixing.G.copy()
    G[:, 2] = G[:, 0] + G[:, 1]
    with pytest.raises(ValueError, match="rank-deficient"):
        lscale_i([z @ G.T for z in p.latents])
    with pytest.raises(ValueError, match="oracle"):
        lscale_i(envs, scores="oracle")

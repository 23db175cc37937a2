"""Score-difference estimators against the exact oracle of the latent SCM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from causal_wm.crl.scores import (
    ClassifierScores,
    GaussianScores,
    OracleScores,
    ScoreMatchingScores,
    Support,
    make_estimator,
    score_differences,
    score_differences_between,
    score_error,
)
from causal_wm.scm import gscale_problem, lscale_problem

# a small budget that keeps every learned fit on the tiny problem under a few seconds on one thread
TINY = dict(hidden=32, depth=2, epochs=40, batch_size=256, patience=5)


@pytest.fixture(scope="module")
def lscale_small():
    return lscale_problem(3, 6, 5000, seed=0)


@pytest.fixture(scope="module")
def tiny():
    """A 2-D linear Gaussian problem with linear mixing (d = n = 2)."""
    return lscale_problem(2, 2, 2000, seed=0)


# --- gaussian and oracle -------------------------------------------------------------------------------
def test_gaussian_matches_oracle(lscale_small):
    p = lscale_small
    oracle = p.oracle_score_differences()
    assert score_error(score_differences(p.observations, n=p.n), oracle) < 0.02
    # n estimated from the spectrum gives the same support on noiseless data
    assert score_error(score_differences(p.observations), oracle) < 0.02
    # another reference environment
    assert score_error(score_differences(p.observations, n=p.n, reference=2),
                       p.oracle_score_differences(2)) < 0.02


def test_gaussian_error_shrinks_with_samples():
    errors = []
    for num in (1000, 20000):
        p = lscale_problem(3, 6, num, seed=1)
        errors.append(score_error(score_differences(p.observations, n=3), p.oracle_score_differences()))
    assert errors[1] < errors[0] / 4


def test_sign_convention_one_dimensional():
    # observational N(0, 1), interventional N(1, 4): s^0 - s^1 = -x + (x - 1) / 4
    rng = np.random.default_rng(0)
    obs = rng.normal(0.0, 1.0, size=(200_000, 1))
    inter = rng.normal(1.0, 2.0, size=(200_000, 1))
    x = np.linspace(-2, 2, 9)[:, None]
    est = GaussianScores().fit([obs, inter])
    np.testing.assert_allclose(est(x)[0], -x + (x - 1.0) / 4.0, atol=0.02)
    np.testing.assert_allclose(est.pair_difference(x, 1, 0), -est(x)[0])
    np.testing.assert_allclose(est.score(x, 0), -x, atol=0.02)


def test_oracle_interface(lscale_small):
    p = lscale_small
    expected = p.oracle_score_differences(1)
    got = score_differences(p.observations, method="oracle", problem=p, reference=1)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(e, g)
    oracle = OracleScores(p).fit(p.observations)
    np.testing.assert_allclose(oracle(p.observations[1])[2], expected[2])
    # pairs compose: (s^1 - s^2) = (s^0 - s^2) - (s^0 - s^1)
    np.testing.assert_allclose(oracle.pair_difference(p.observations[1], 1, 2), expected[1] - expected[0],
                               atol=1e-10)
    with pytest.raises(ValueError, match="latents only"):
        oracle(p.observations[0][:10])


def test_pair_differences_between_interventions():
    # two hard interventions per node, linear latents and mixing: the gaussian estimator is exact
    p = gscale_problem(3, 5, 20000, latent="linear", mixing="linear", seed=0)
    got = score_differences_between(p.observations, p.pairs, n=3)
    oracle = OracleScores(p)
    expected = [oracle.pair_difference(p.observations[0], a, b) for a, b in p.pairs]
    assert score_error(got, expected) < 0.01
    # differences of two interventions on one node touch that latent only (docs/science.md 2.1)
    G = p.mixing.G
    for (a, _), D in zip(p.pairs, got, strict=True):
        latent = np.abs(D @ G).mean(axis=0)
        target = p.interventions[a].targets[0]
        assert np.argmax(latent) == target
        assert np.delete(latent, target).max() < 0.1 * latent[target]


def test_support_rank_rule(lscale_small):
    p = lscale_small
    support = Support(p.observations)
    assert support.n == p.n
    G = p.mixing.G
    residual = G - support.basis @ (support.basis.T @ G)
    assert np.abs(residual).max() < 1e-8
    assert Support(p.observations, 2).basis.shape == (6, 2)


# --- learned estimators --------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["ssm", "dsm", "classifier"])
def test_learned_estimators_from_scratch(tiny, method):
    """Without the Gaussian start the networks alone must learn the differences."""
    oracle = tiny.oracle_score_differences()
    est = make_estimator(method, n=2, seed=0, device="cpu", gaussian_init=False, **TINY).fit(tiny.observations)
    assert score_error(est(tiny.observations[0]), oracle) < 0.1


@pytest.mark.parametrize("method", ["ssm", "dsm", "classifier"])
def test_learned_estimators_keep_gaussian_start(tiny, method):
    oracle = tiny.oracle_score_differences()
    got = score_differences(tiny.observations, method=method, n=2, seed=0, device="cpu", **TINY)
    assert score_error(got, oracle) < 0.02


def test_classifier_logit_is_log_ratio_and_deterministic(tiny):
    est = ClassifierScores(n=2, seed=3, device="cpu", **TINY).fit(tiny.observations)
    x = tiny.observations[0][:500]
    # finite differences of the logit agree with the returned gradient (d = n here)
    h = 1e-2
    grad = est.pair_difference(x, 0, 1)
    for j in range(2):
        e = np.zeros(2)
        e[j] = h
        fd = (est.log_ratio(x + e, 0, 1) - est.log_ratio(x - e, 0, 1)) / (2 * h)
        np.testing.assert_allclose(fd, grad[:, j], atol=2e-3 * np.abs(grad).max())
    # reversed pair reuses the network with the opposite sign
    np.testing.assert_allclose(est.pair_difference(x, 1, 0), -grad)
    again = ClassifierScores(n=2, seed=3, device="cpu", **TINY).fit(tiny.observations)
    np.testing.assert_array_equal(again.pair_difference(x, 0, 1), grad)


def test_classifier_trains_requested_pairs_only(tiny):
    got = score_differences_between(tiny.observations, [(1, 2)], method="classifier", n=2, device="cpu", **TINY)
    expected = OracleScores(tiny).pair_difference(tiny.observations[0], 1, 2)
    assert score_error(got, [expected]) < 0.02
    est = ClassifierScores(pairs=[(2, 1)], n=2, device="cpu", **TINY).fit(tiny.observations)
    assert list(est.networks) == [(2, 1)]


def test_score_matching_scores_per_environment(tiny):
    est = ScoreMatchingScores("ssm", n=2, seed=0, device="cpu", **TINY).fit(tiny.observations)
    x = tiny.observations[0][:100]
    np.testing.assert_allclose(est.score(x, 0) - est.score(x, 2), est.pair_difference(x, 0, 2), atol=1e-9)
    assert len(est(x)) == len(tiny.observations) - 1


@pytest.mark.gpu
def test_classifier_on_cuda(tiny):
    oracle = tiny.oracle_score_differences()
    got = score_differences(tiny.observations, method="classifier", n=2, device="cuda", **TINY)
    assert score_error(got, oracle) < 0.02


# --- error measure and validation ----------------------------------------------------------------------
def test_score_error_values():
    rng = np.random.default_rng(0)
    oracle = [rng.normal(size=(50, 4)) for _ in range(3)]
    assert score_error(oracle, oracle) == 0.0
    assert score_error([np.zeros_like(o) for o in oracle], oracle) == pytest.approx(1.0)
    assert score_error([2 * o for o in oracle], oracle) == pytest.approx(1.0)
    assert score_error([1.5 * o for o in oracle], oracle) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="shape mismatch"):
        score_error([oracle[0][:, :3]], [oracle[0]])
    with pytest.raises(ValueError, match="same non-zero number"):
        score_error(oracle[:2], oracle)
    with pytest.raises(ValueError, match="all zero"):
        score_error([np.zeros((3, 2))], [np.zeros((3, 2))])


def test_input_errors():
    rng = np.random.default_rng(0)
    good = [rng.normal(size=(100, 3)) for _ in range(3)]
    with pytest.raises(ValueError, match="list of"):
        score_differences(np.zeros((2, 100, 3)))
    with pytest.raises(ValueError, match="at least 2 environments"):
        score_differences(good[:1])
    with pytest.raises(ValueError, match="2-D"):
        score_differences([good[0], good[1][:, 0]])
    with pytest.raises(ValueError, match="same dimension"):
        score_differences([good[0], good[1][:, :2]])
    bad = good[1].copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        score_differences([good[0], bad])
    with pytest.raises(ValueError, match="n must be between"):
        score_differences(good, n=4)
    with pytest.raises(ValueError, match="at least 4"):
        score_differences([good[0], good[1][:3]], n=3)
    with pytest.raises(ValueError, match="unknown score-difference method"):
        score_differences(good, method="kde")
    with pytest.raises(ValueError, match="does not take"):
        score_differences(good, method="gaussian", epochs=3)
    with pytest.raises(ValueError, match="needs problem"):
        score_differences(good, method="oracle")
    with pytest.raises(ValueError, match="reference"):
        score_differences(good, reference=3)
    with pytest.raises(ValueError, match="too few"):
        score_differences([good[0], good[1][:4]], method="classifier", n=3)
    singular = np.concatenate([good[1][:, :2], good[1][:, :1]], axis=1)
    with pytest.raises(ValueError, match="singular covariance"):
        score_differences([good[0], singular], n=3)
    est = GaussianScores(n=3)
    with pytest.raises(ValueError, match="not fitted"):
        est(good[0])
    est.fit(good)
    with pytest.raises(ValueError, match="out of range"):
        est.pair_difference(good[0], 0, 5)
    with pytest.raises(ValueError, match="points must have shape"):
        est(good[0][:, :2])


def test_benchmark_script_smoke(tmp_path):
    script = Path(__file__).resolve().parents[2] / "scripts" / "bench_scores.py"
    out = tmp_path / "scores.json"
    subprocess.run([sys.executable, str(script), "--debug", "--problems", "lscale_linear", "--methods",
                    "gaussian", "classifier", "--device", "cpu", "--out", str(out)], check=True,
                   capture_output=True, timeout=300)
    doc = json.loads(out.read_text())
    assert doc["complete"]
    assert {r["method"] for r in doc["rows"]} == {"gaussian", "classifier"}
    assert all(np.isfinite(r["error"]) for r in doc["rows"])
    assert out.with_suffix(".png").exists()

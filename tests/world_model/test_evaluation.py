"""Tests of the sample-comparison metrics (``causal_wm.world_model.evaluation``)."""

from __future__ import annotations

import numpy as np
import pytest

from causal_wm.world_model.evaluation import distribution_distances, gaussian_w2, mmd, success_rate


def _normal(num: int, mean: float, seed: int, d: int = 3, scale: float = 1.0) -> np.ndarray:
    return mean + scale * np.random.default_rng(seed).standard_normal((num, d))


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    x = _normal(800, 0.0, seed=0)
    same = mmd(x, _normal(800, 0.0, seed=1))
    shifts = [mmd(x, _normal(800, s, seed=1)) for s in (0.25, 0.5, 1.0)]
    assert abs(same) < 0.005, same
    assert shifts[0] > 5 * max(abs(same), 1e-3)
    assert shifts[0] < shifts[1] < shifts[2]
    # a change of spread only is seen too
    assert mmd(x, _normal(800, 0.0, seed=1, scale=1.5)) > 5 * max(abs(same), 1e-3)


def test_mmd_is_symmetric_and_unbiased_around_zero():
    x, y = _normal(300, 0.0, seed=2), _normal(500, 0.3, seed=3)
    assert mmd(x, y) == pytest.approx(mmd(y, x), rel=1e-9)
    values = [mmd(_normal(200, 0.0, seed=10 + k), _normal(200, 0.0, seed=50 + k)) for k in range(20)]
    # the unbiased estimator takes both signs around 0 for equal distributions
    assert min(values) < 0 < max(values)
    assert abs(np.mean(values)) < 3 * np.std(values) / np.sqrt(len(values)) + 1e-4


def test_mmd_subsamples_with_a_seed_and_takes_a_fixed_bandwidth():
    x, y = _normal(600, 0.0, seed=4), _normal(500, 0.5, seed=5)
    assert mmd(x, y, max_rows=400, seed=1) == mmd(x, y, max_rows=400, seed=1)
    assert mmd(x, y, max_rows=400, seed=1) != mmd(x, y, max_rows=400, seed=2)
    # without subsampling and with a fixed bandwidth the seed plays no part
    assert mmd(x, y, bandwidth=2.0, seed=1) == mmd(x, y, bandwidth=2.0, seed=9)
    wide, narrow = mmd(x, y, bandwidth=50.0), mmd(x, y, bandwidth=1.0)
    assert 0 < wide < narrow


def test_mmd_errors_are_clear():
    x = _normal(10, 0.0, seed=0)
    with pytest.raises(ValueError, match="same dimension"):
        mmd(x, _normal(10, 0.0, seed=1, d=2))
    with pytest.raises(ValueError, match="NaN"):
        mmd(np.full((5, 3), np.nan), x)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, x, bandwidth="silverman")
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        mmd(x[:1], x)


def test_gaussian_w2_matches_the_closed_form():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200_000, 2))
    y = np.array([1.0, -2.0]) + 2.0 * rng.standard_normal((200_000, 2))
    # equal-shape isotropic Gaussians: W2^2 = ||dm||^2 + d (s_x - s_y)^2 = 5 + 2
    assert gaussian_w2(x, y) == pytest.approx(np.sqrt(7.0), rel=0.01)
    assert gaussian_w2(y, x) == pytest.approx(gaussian_w2(x, y), rel=1e-6)
    assert gaussian_w2(x, x) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same dimension"):
        gaussian_w2(x, y[:, :1])


def test_distribution_distances_and_success_rate():
    x, y = _normal(500, 0.0, seed=0), _normal(500, 1.0, seed=1)
    out = distribution_distances(x, y)
    assert set(out) == {"mmd", "gaussian_w2", "mean_error", "cov_error"}
    assert out["mean_error"] == pytest.approx(np.sqrt(3.0), abs=0.2)
    assert out["mmd"] > 0.1
    assert success_rate([0.1, 0.5, 0.2, 1.0], 0.25) == 0.5
    with pytest.raises(ValueError, match="empty"):
        success_rate([], 0.1)
    with pytest.raises(ValueError, match="tolerance"):
        success_rate([0.1], -1.0)

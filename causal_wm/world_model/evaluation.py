"""Metrics that compare a world model's imagined samples with real ones.

- ``mmd``: unbiased squared maximum mean discrepancy with a Gaussian RBF kernel (kernel two-sample
  statistic; 0 in expectation for equal distributions, can be slightly negative).
- ``gaussian_w2``: the 2-Wasserstein distance between Gaussian fits of the two samples, a
  kernel-free second number that reads as a distance in latent units.
- ``distribution_distances``: both, plus mean and covariance errors, as one JSON-ready dict.
- ``success_rate``: share of distances within a tolerance (goal reaching).
- ``ranking_metrics``: H@1 and MRR of multi-step predictions among the true next states of a batch
  (the ranking metrics of causal model-based RL benchmarks).

Samples are ``(N, d)`` arrays (rows are samples).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from causal_wm._random import SeedLike, as_generator

MAX_ROWS = 2000
# rows of the pooled sample the median heuristic looks at (its pairs give the median to ~1e-3)
MEDIAN_ROWS = 1000


def _samples(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty (N, d) array, got shape {np.shape(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _pair(x: Any, y: Any, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = _samples(x, "x"), _samples(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    if len(x) < min_rows or len(y) < min_rows:
        raise ValueError(f"need at least {min_rows} rows in each sample, got {len(x)} and {len(y)}")
    return x, y


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def mmd(x: np.ndarray, y: np.ndarray, *, bandwidth: float | str = "median", max_rows: int = MAX_ROWS,
        seed: SeedLike = 0) -> float:
    """Unbiased squared MMD between samples ``x`` ``(N, d)`` and ``y`` ``(M, d)``.

    Kernel ``k(a, b) = exp(-||a - b||^2 / (2 h^2))``; ``bandwidth="median"`` sets ``h`` to the
    median pairwise distance of the pooled (subsampled) sample, else ``h`` is the given positive
    number (the median is taken over the pairs of at most ``MEDIAN_ROWS`` pooled rows drawn
    with ``seed``). Each sample is subsampled without replacement to at most ``max_rows`` rows with
    ``seed`` (the statistic costs ``O((N + M)^2)``). The unbiased estimator leaves out the
    diagonal of the within-sample kernel matrices, so it is symmetric in ``x`` and ``y`` and
    fluctuates around 0 for equal distributions.
    """
    x, y = _pair(x, y, 2)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int | np.integer) or max_rows < 2:
        raise ValueError(f"max_rows must be an int >= 2, got {max_rows!r}")
    rng = as_generator(seed)
    if len(x) > max_rows:
        x = x[np.sort(rng.choice(len(x), size=max_rows, replace=False))]
    if len(y) > max_rows:
        y = y[np.sort(rng.choice(len(y), size=max_rows, replace=False))]
    dxx, dyy, dxy = _squared_distances(x, x), _squared_distances(y, y), _squared_distances(x, y)
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}")
        pooled = np.concatenate([x, y])
        if len(pooled) > MEDIAN_ROWS:
            pooled = pooled[rng.choice(len(pooled), size=MEDIAN_ROWS, replace=False)]
        pooled = _squared_distances(pooled, pooled)[np.triu_indices(len(pooled), 1)]
        h2 = float(np.median(pooled))
        if h2 <= 0.0:
            # more than half the pairs coincide: fall back to the mean so the kernel stays defined
            h2 = float(np.mean(pooled))
        if h2 <= 0.0:
            return 0.0  # every point is the same point in both samples
    else:
        h = float(bandwidth)
        if not (np.isfinite(h) and h > 0):
            raise ValueError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}")
        h2 = h * h
    kxx, kyy, kxy = (np.exp(-d / (2.0 * h2)) for d in (dxx, dyy, dxy))
    n, m = len(x), len(y)
    within_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * kxy.mean())


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def gaussian_w2(x: np.ndarray, y: np.ndarray) -> float:
    """2-Wasserstein distance between the Gaussian fits of ``x`` ``(N, d)`` and ``y`` ``(M, d)``.

    ``W2^2 = ||m_x - m_y||^2 + tr(S_x + S_y - 2 (S_y^{1/2} S_x S_y^{1/2})^{1/2})`` with sample
    means and covariances (``ddof=1``); returns ``W2`` (same units as the samples).
    """
    x, y = _pair(x, y, 2)
    mx, my = x.mean(axis=0), y.mean(axis=0)
    sx, sy = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    root_y = _psd_sqrt(sy)
    cross = _psd_sqrt(root_y @ sx @ root_y)
    w2 = float(np.sum((mx - my) ** 2) + np.trace(sx) + np.trace(sy) - 2.0 * np.trace(cross))
    return float(np.sqrt(max(w2, 0.0)))


def distribution_distances(x: np.ndarray, y: np.ndarray, *, seed: SeedLike = 0) -> dict[str, float]:
    """``mmd``, ``gaussian_w2``, ``mean_error`` (Euclidean norm of the mean difference) and
    ``cov_error`` (Frobenius norm of the covariance difference) between ``x`` (e.g. imagined
    samples) and ``y`` (e.g. real ones), both ``(N, d)``."""
    x, y = _pair(x, y, 2)
    cov_x, cov_y = np.atleast_2d(np.cov(x, rowvar=False)), np.atleast_2d(np.cov(y, rowvar=False))
    return {
        "mmd": mmd(x, y, seed=seed),
        "gaussian_w2": gaussian_w2(x, y),
        "mean_error": float(np.linalg.norm(x.mean(axis=0) - y.mean(axis=0))),
        "cov_error": float(np.linalg.norm(cov_x - cov_y)),
    }


def success_rate(distances: np.ndarray, tolerance: float) -> float:
    """Share of ``distances`` (any shape, e.g. final distance to the goal per episode) that are
    ``<= tolerance``."""
    d = np.asarray(distances, dtype=np.float64).ravel()
    if d.size == 0:
        raise ValueError("distances is empty")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("distances must be finite and non-negative")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a finite non-negative number, got {tolerance!r}")
    return float(np.mean(d <= tolerance))


def rollout_means(model: Any, z0: np.ndarray, regime0: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Chained predictions ``(B, H, n)`` of a planner model (``predict(action, noise, z_now, regime_now)``,
    e.g. ``CausalWorldModel.for_menu(menu)``) from start latents ``z0`` ``(B, n)`` produced by actions
    ``regime0`` ``(B,)`` under the action sequences ``actions`` ``(B, H)``; every step feeds zero noise
    (the median of every noise coordinate, a point prediction) and the previous prediction."""
    z0 = np.asarray(z0, dtype=np.float64)
    actions = np.asarray(actions, dtype=np.int64)
    regime0 = np.asarray(regime0, dtype=np.int64).reshape(-1)
    if z0.ndim != 2 or actions.ndim != 2 or len(actions) != len(z0) or len(regime0) != len(z0):
        raise ValueError(f"need z0 (B, n), regime0 (B,) and actions (B, H) with one row each, got "
                         f"{z0.shape}, {regime0.shape}, {actions.shape}")
    B, H = actions.shape
    n = z0.shape[1]
    out = np.empty((B, H, n))
    current, previous = z0.copy(), regime0.copy()
    for h in range(H):
        step = np.empty((B, n))
        pairs = np.stack([actions[:, h], previous], axis=1)
        for a, r in np.unique(pairs, axis=0):
            rows = np.flatnonzero((pairs[:, 0] == a) & (pairs[:, 1] == r))
            step[rows] = model.predict(int(a), np.zeros((len(rows), n)), current[rows], int(r))
        out[:, h] = step
        current, previous = step, actions[:, h].copy()
    return out


def ranking_metrics(predicted: np.ndarray, true: np.ndarray, horizons: tuple[int, ...] = (1, 5, 10)
                    ) -> dict[str, dict[str, float]]:
    """H@1 and MRR of predictions among the true states of a batch, per horizon.

    ``predicted`` and ``true`` are ``(B, H, n)``: row ``b`` at step ``h`` is the state ``h + 1`` steps
    after the start of rollout ``b``. For horizon ``k``, prediction ``b`` is ranked against every true
    state ``true[:, k - 1]`` of the batch by Euclidean distance; ``H@1`` is the share ranked first at
    its own true state, ``MRR`` the mean reciprocal rank (ties count against the prediction).
    Returns ``{str(k): {"H@1": ..., "MRR": ...}}`` for the horizons ``k <= H``.
    """
    predicted, true = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if predicted.shape != true.shape or predicted.ndim != 3:
        raise ValueError(f"predicted and true must both be (B, H, n), got {predicted.shape} and {true.shape}")
    if len(predicted) < 2:
        raise ValueError("ranking needs a batch of at least 2 rollouts")
    out = {}
    for k in horizons:
        if not 1 <= k <= predicted.shape[1]:
            continue
        p, t = predicted[:, k - 1], true[:, k - 1]
        d = np.sqrt(((p[:, None, :] - t[None, :, :]) ** 2).sum(-1))
        own = np.diag(d)
        rank = np.sum(d <= own[:, None], axis=1)  # includes the own state: rank 1 when it is nearest
        out[str(k)] = {"H@1": float(np.mean(rank == 1)), "MRR": float(np.mean(1.0 / rank))}
    return out

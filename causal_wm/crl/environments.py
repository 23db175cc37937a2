"""Checks of the environments handed to the learners (``envs[0]`` observational, ``envs[1:]``
interventional, each ``(N_m, d)``): shapes and values (``validate_envs``), extreme magnitudes
(``rescale_envs``) and environments whose distribution shows no detectable effect of an intervention
(``null_environment_test``, ``screen_null_envs``: a Gaussian likelihood-ratio test of mean and
covariance against the observational environment)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def validate_envs(envs: Sequence[np.ndarray], *, min_envs: int = 2) -> list[np.ndarray]:
    """Check a list of environments and return them as float64 arrays ``(N_m, d)``.

    Raises ``ValueError`` for: not a list of arrays, fewer than ``min_envs`` environments, an array
    that is not 2-D, empty environments, unequal ``d``, NaN or infinite values.
    """
    if isinstance(envs, np.ndarray) or not isinstance(envs, Sequence):
        raise ValueError("envs must be a list of (N_m, d) arrays, one per environment (envs[0] observational)")
    if len(envs) < min_envs:
        raise ValueError(f"need at least {min_envs} environments (one observational, one or more "
                         f"interventional), got {len(envs)}")
    out = []
    for m, x in enumerate(envs):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"environment {m} must be a 2-D array (N, d), got shape {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"environment {m} has no samples")
        # the sum is finite iff every entry is (a NaN or inf propagates); far cheaper than isfinite
        # on the whole array, which is only consulted to rule out an overflow of the sum
        if not np.isfinite(x.sum()) and not np.all(np.isfinite(x)):
            raise ValueError(f"environment {m} contains NaN or infinite values")
        out.append(x)
    dims = {x.shape[1] for x in out}
    if len(dims) != 1:
        raise ValueError(f"all environments must have the same dimension d, got {[x.shape[1] for x in out]}")
    return out


# Data whose largest magnitude lies outside this range are rescaled before any second moment is
# formed: squares of 1e200 overflow (and of 1e-200 underflow) and end in "Eigenvalues did not converge".
_SAFE_MAGNITUDE = (2.0**-100, 2.0**100)
# Environments whose magnitudes differ by more than this factor cannot share one float64 scale.
_MAX_MAGNITUDE_RATIO = 2.0**200
# Significance level of the no-effect test of interventional environments (Bonferroni over them).
NULL_ENV_ALPHA = 1e-3
# Relative energy of a given score difference below which it is treated as zero (round-off level).
_NULL_ENERGY_TOL = 1e-10
NULL_ENV_POLICIES = ("raise", "drop", "keep")


def rescale_envs(envs: list[np.ndarray], who: str = "the learner") -> tuple[list[np.ndarray], float]:
    """Bring environments of extreme magnitude (largest ``|x|`` above ``2^100`` or below ``2^-100``)
    to order one by dividing all of them by one power of two, ``scale``; returns
    ``(envs / scale, scale)``, ``scale = 1.0`` (and the arrays unchanged) for data in that range.

    Dividing by a power of two is exact, so rescaled data are the original ones to the last bit
    (up to underflow). A linear encoder ``E`` learned on the rescaled data reads the original ones as
    ``E / scale``, and score differences (gradients in ``x``) transform as ``D * scale``.

    Raises ``ValueError`` when the environments' magnitudes differ by more than ``2^200`` (no common
    float64 scale holds them all) or an environment is all zeros while others are not.
    """
    tops = [float(np.max(np.abs(x))) for x in envs]
    top = max(tops)
    if top == 0.0 or all(_SAFE_MAGNITUDE[0] <= t <= _SAFE_MAGNITUDE[1] for t in tops):
        return envs, 1.0
    for m, t in enumerate(tops):
        if t == 0.0 or top / t > _MAX_MAGNITUDE_RATIO:
            raise ValueError(f"{who}: environment {m} has values of magnitude up to {t:.3g} while another "
                             f"reaches {top:.3g}; environments whose scales differ by more than "
                             f"{_MAX_MAGNITUDE_RATIO:.3g} cannot be analysed together in float64: check the "
                             "units of every environment")
    scale = float(2.0 ** round(np.log2(top)))
    out = [x / scale for x in envs]
    for m, x in enumerate(out):
        if not np.isfinite(x.sum()) and not np.all(np.isfinite(x)):
            raise ValueError(f"{who}: environment {m} has non-finite values after dividing the data by "
                             f"their common scale {scale:.3g}: check the data")
    return out, scale


def check_null_policy(null_envs: str) -> str:
    if null_envs not in NULL_ENV_POLICIES:
        raise ValueError(f"null_envs must be one of {NULL_ENV_POLICIES}, got {null_envs!r}")
    return null_envs


def _principal_basis(envs: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Top principal directions ``(d, k')`` of the pooled, per-environment centred data, ``k'`` the
    smaller of ``k`` and their numerical rank (eigenvalues above ``1e-10`` of the largest)."""
    d = envs[0].shape[1]
    scatter = np.zeros((d, d))
    for x in envs:
        xc = x - x.mean(axis=0)
        scatter += xc.T @ xc
    w, V = np.linalg.eigh(scatter / sum(len(x) for x in envs))
    w, V = w[::-1], V[:, ::-1]
    rank = int(np.sum(w > 1e-10 * max(w[0], np.finfo(np.float64).tiny)))
    return V[:, : max(1, min(k, rank))]


def _gaussian_lr(y0: np.ndarray, y1: np.ndarray) -> float:
    """Likelihood-ratio statistic of ``H0``: the two samples ``(N_a, k)`` share one Gaussian (mean
    and covariance), ``N log|S_pool| - N_0 log|S_0| - N_1 log|S_1|`` with maximum-likelihood
    covariances; asymptotically chi-square with ``k + k (k + 1) / 2`` degrees of freedom."""
    n0, n1 = len(y0), len(y1)
    mu0, mu1 = y0.mean(axis=0), y1.mean(axis=0)
    S0 = (y0 - mu0).T @ (y0 - mu0) / n0
    S1 = (y1 - mu1).T @ (y1 - mu1) / n1
    delta = mu1 - mu0
    Sp = (n0 * S0 + n1 * S1 + np.outer(delta, delta) * n0 * n1 / (n0 + n1)) / (n0 + n1)
    logdets = []
    for S in (Sp, S0, S1):
        sign, logdet = np.linalg.slogdet(S)
        if sign <= 0 or not np.isfinite(logdet):
            return np.inf  # a degenerate sample: certainly not the observational distribution
        logdets.append(logdet)
    return float(max((n0 + n1) * logdets[0] - n0 * logdets[1] - n1 * logdets[2], 0.0))


def null_environment_test(envs: Sequence[np.ndarray], k: int, *, score_diffs: Sequence[np.ndarray] | None = None,
                          alpha: float = NULL_ENV_ALPHA) -> dict[str, Any]:
    """Which interventional environments show no detectable difference from ``envs[0]``.

    Samples (``score_diffs`` None): a Gaussian likelihood-ratio two-sample test of mean and
    covariance of every ``envs[m]`` against ``envs[0]`` on the top-``k`` principal directions of
    the pooled data (chi-square, ``k + k (k + 1) / 2`` degrees of freedom); environment ``m`` is null
    when its p-value is at least ``alpha / M`` (Bonferroni over the ``M`` environments). An
    intervention of any practical size is far beyond this (the published designs multiply a noise
    variance by 5 or 0.25); an intervention that leaves mean and covariance of the observations
    unchanged (it changes higher moments only) is not seen by this test.

    Given score differences ``D^m`` (evaluated at ``envs[0]``): their energy in coordinates
    whitened by the observational covariance, relative to the observational score scale there
    (``E||s^0||^2 = k`` for a Gaussian), ``e_m = E_0[D^T C_0 D] / k``; null when ``e_m`` is at
    round-off level (``1e-10``). The estimation error of someone else's score estimator cannot be
    calibrated here, so this catches only differences that are zero up to round-off.

    Returns ``{"method", "dims", "statistic", "p_value", "df", "threshold", "null"}`` (lists over
    ``envs[1:]``).
    """
    M = len(envs) - 1
    basis = _principal_basis(envs, k)
    k = basis.shape[1]
    y0 = envs[0] @ basis
    if score_diffs is not None:
        C0 = np.atleast_2d(np.cov(y0, rowvar=False))
        energy = []
        for D in score_diffs:
            Dy = np.asarray(D) @ basis
            energy.append(float(np.einsum("ij,jk,ik->", Dy, C0, Dy) / (len(Dy) * k)))
        return {"method": "score_energy", "dims": k, "statistic": energy, "p_value": [float("nan")] * M, "df": None,
                "threshold": _NULL_ENERGY_TOL, "null": [not e > _NULL_ENERGY_TOL for e in energy]}
    from scipy import stats

    df = k + k * (k + 1) // 2
    statistic, pvals, null = [], [], []
    for x in envs[1:]:
        if min(len(x), len(y0)) <= k + 1:  # too few samples for the test; the learners refuse them anyway
            statistic.append(float("nan"))
            pvals.append(float("nan"))
            null.append(False)
            continue
        stat = _gaussian_lr(y0, x @ basis)
        p = float(stats.chi2.sf(stat, df))
        statistic.append(stat)
        pvals.append(p)
        null.append(p >= alpha / M)
    return {"method": "gaussian_likelihood_ratio", "dims": k, "statistic": statistic, "p_value": pvals, "df": df,
            "threshold": alpha / M, "null": null}


def screen_null_envs(envs: list[np.ndarray], k: int, null_envs: str, who: str,
                     score_diffs: list[np.ndarray] | None = None) -> tuple[list[int], dict[str, Any]]:
    """Apply ``null_envs`` ("raise", "drop", "keep") to ``null_environment_test``: returns the kept
    interventional environment indices (1-based) and the test's diagnostics with ``dropped`` added.

    Raises ``ValueError`` ("raise") naming the first null environment, its statistic and p-value."""
    check_null_policy(null_envs)
    M = len(envs) - 1
    if null_envs == "keep":
        return list(range(1, M + 1)), {"method": None, "dropped": []}
    info = null_environment_test(envs, k, score_diffs=score_diffs)
    bad = [m + 1 for m, flag in enumerate(info["null"]) if flag]
    if bad and null_envs == "raise":
        m = bad[0]
        stat = info["statistic"][m - 1]
        if info["method"] == "score_energy":
            detail = (f"its score difference score_diffs[{m - 1}] has relative energy {stat:.3g} (zero up to "
                      f"round-off; threshold {info['threshold']:.0e})")
        else:
            detail = (f"Gaussian likelihood-ratio test of mean and covariance against envs[0] on the "
                      f"{info['dims']}-dim principal subspace: statistic "
                      f"{stat:.3g} on {info['df']} degrees of freedom, p-value {info['p_value'][m - 1]:.3g} "
                      f">= {info['threshold']:.3g} (level {NULL_ENV_ALPHA:g}, Bonferroni over {M} environments)")
        others = f" (also environments {bad[1:]})" if len(bad) > 1 else ""
        raise ValueError(f"{who}: interventional environment {m} (envs[{m}]) shows no detectable effect of an "
                         f"intervention{others}: {detail}. It looks like more observational samples. Check that "
                         "its samples come from the intervention; pass null_envs='drop' to leave such "
                         "environments out, or null_envs='keep' to use them anyway")
    kept = [m for m in range(1, M + 1) if m not in bad]
    return kept, {**info, "dropped": bad}


def keep_envs(kept: Sequence[int], envs: list[np.ndarray], labels: list[int],
              score_diffs: list[np.ndarray] | None) -> tuple[list[np.ndarray], list[int], list[np.ndarray] | None]:
    """The observational environment plus the interventional ones in ``kept`` (indices 1..M), with
    their regime labels and score differences (``screen_null_envs``'s choice applied)."""
    if len(kept) == len(envs) - 1:
        return envs, labels, score_diffs
    return ([envs[0], *(envs[m] for m in kept)], [labels[m - 1] for m in kept],
            None if score_diffs is None else [score_diffs[m - 1] for m in kept])

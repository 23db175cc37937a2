"""Evaluation metrics for causal representation learning (docs/science.md section 5).

Conventions shared by every function here:

- Arguments come in the order *true first, learned second*. Latents are arrays ``(N, n)`` of the
  same samples (usually the observational environment); graphs are ``(n, n)`` adjacencies with
  ``A[i, j] = 1`` iff ``i -> j``.
- A ``permutation`` is an integer array ``p`` of length ``n`` saying that learned latent ``p[i]``
  is matched to true latent ``i``: ``z_hat[:, p]`` lines up with ``z_true`` and
  ``learned_graph[np.ix_(p, p)]`` is the learned graph written over the true indices. Every
  function that needs one and is not given one takes the Pearson-MCC matching (Hungarian algorithm on
  the absolute correlation matrix).

Metrics:

- ``mcc``: mean absolute correlation of the matched pairs (Pearson: identifiability up to
  permutation and linear scaling; Spearman: up to permutation and element-wise monotone maps).
- ``r2_matrix``: CITRIS-style ``R^2`` matrix; a one-dimensional nonparametric probe predicts every
  true latent from every learned latent (see the function for the probe); ``diag`` and ``sep``.
- ``shd``: structural Hamming distance after the matching, reversed edge costing 1 (published
  LSCALE-I code) or 2 (false positives plus false negatives, published UMNI-CRL code).
- ``edge_precision_recall``: directed edges after the matching.
- ``incorrect_mixing_norm``: linear models; spectral norm of the effective mixing ``E = H G`` (rows
  normalised) outside the pattern the theory allows.
- ``normalized_latent_error``: ``||Z_aligned - Z||_F / ||Z||_F`` after permutation and per-coordinate
  least-squares scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

from causal_wm.scm.graphs import transitive_closure

__all__ = [
    "Alignment",
    "MCCResult",
    "R2Result",
    "align",
    "allowed_mixing_pattern",
    "correlation_matrix",
    "edge_precision_recall",
    "evaluate",
    "incorrect_mixing_norm",
    "match",
    "mcc",
    "normalized_latent_error",
    "r2_matrix",
    "shd",
]


# --- input checks -------------------------------------------------------------------------------
def _latent_pair(z_true: np.ndarray, z_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z_true = np.asarray(z_true, dtype=np.float64)
    z_hat = np.asarray(z_hat, dtype=np.float64)
    if z_true.ndim != 2 or z_hat.ndim != 2:
        raise ValueError(f"latents must be 2-d arrays (N, n), got shapes {z_true.shape} and {z_hat.shape}")
    if z_true.shape != z_hat.shape:
        raise ValueError(f"true and learned latents must have the same shape (N, n), got {z_true.shape} "
                         f"and {z_hat.shape}")
    if z_true.shape[0] < 3:
        raise ValueError(f"need at least 3 samples to compare latents, got {z_true.shape[0]}")
    if not (np.all(np.isfinite(z_true)) and np.all(np.isfinite(z_hat))):
        raise ValueError("latents contain NaN or infinite values")
    return z_true, z_hat


def _graph(A: np.ndarray, name: str, n: int | None = None) -> np.ndarray:
    A = np.asarray(A)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) adjacency, got shape {A.shape}")
    if n is not None and A.shape[0] != n:
        raise ValueError(f"{name} must be ({n}, {n}), got {A.shape}")
    if not np.all(np.isfinite(A)) or not np.all((A == 0) | (A == 1)):
        raise ValueError(f"{name} entries must be 0 or 1 (A[i, j] = 1 iff i -> j)")
    return A.astype(np.int64)


def _permutation(permutation: np.ndarray | None, n: int) -> np.ndarray:
    if permutation is None:
        return np.arange(n)
    p = np.asarray(permutation, dtype=np.int64)
    if p.shape != (n,) or not np.array_equal(np.sort(p), np.arange(n)):
        raise ValueError(f"permutation must be a permutation of 0..{n - 1}, got {permutation!r}")
    return p


# --- matching and MCC ---------------------------------------------------------------------------
def correlation_matrix(z_true: np.ndarray, z_hat: np.ndarray, method: str = "pearson") -> np.ndarray:
    """``C[i, j] = |corr(z_true[:, i], z_hat[:, j])|`` ``(n, n)``; ``method`` "pearson" or
    "spearman" (Pearson correlation of the ranks). Constant columns correlate 0 with everything."""
    z_true, z_hat = _latent_pair(z_true, z_hat)
    if method == "spearman":
        z_true, z_hat = rankdata(z_true, axis=0), rankdata(z_hat, axis=0)
    elif method != "pearson":
        raise ValueError(f"unknown correlation method {method!r}; choose 'pearson' or 'spearman'")
    a = z_true - z_true.mean(axis=0)
    b = z_hat - z_hat.mean(axis=0)
    na, nb = np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0)
    # A constant column carries no information: give it zero correlation instead of NaN.
    na = np.where(na > 0, na, np.inf)
    nb = np.where(nb > 0, nb, np.inf)
    return np.clip(np.abs((a / na).T @ (b / nb)), 0.0, 1.0)


def match(score: np.ndarray) -> np.ndarray:
    """Hungarian matching maximising ``sum_i score[i, p[i]]``; returns ``p`` (learned index matched
    to true index ``i``) for a square score matrix ``(n, n)``."""
    score = np.asarray(score, dtype=np.float64)
    rows, cols = linear_sum_assignment(-score)
    p = np.empty(score.shape[0], dtype=np.int64)
    p[rows] = cols
    return p


@dataclass(frozen=True)
class MCCResult:
    """Mean correlation coefficient.

    Attributes:
        value: mean of the matched absolute correlations, in ``[0, 1]``.
        matrix: ``(n, n)`` absolute correlations, rows true latents, columns learned latents.
        permutation: ``(n,)``, learned latent ``permutation[i]`` matched to true latent ``i``.
    """

    value: float
    matrix: np.ndarray
    permutation: np.ndarray

    def __float__(self) -> float:
        return self.value


def mcc(z_true: np.ndarray, z_hat: np.ndarray, method: str = "pearson") -> MCCResult:
    """Mean correlation coefficient between true and learned latents ``(N, n)`` with Hungarian
    matching on the absolute correlation matrix. Invariant to permuting and rescaling (including
    sign flips) the learned latents; Spearman also to monotone element-wise maps."""
    C = correlation_matrix(z_true, z_hat, method)
    p = match(C)
    return MCCResult(float(C[np.arange(len(p)), p].mean()), C, p)


# --- R^2 matrix ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class R2Result:
    """CITRIS-style ``R^2`` matrix.

    Attributes:
        matrix: ``(n, n)``, ``matrix[i, j]`` = held-out ``R^2`` of predicting true latent ``i`` from
            learned latent ``j`` alone, clipped below at 0.
        permutation: the matching used for ``diag`` and ``sep`` (learned ``permutation[i]`` <-> true ``i``).
        diag: mean of the matched entries (1 is perfect).
        sep: mean over true latents of the largest unmatched entry in their row (0 is perfect).
    """

    matrix: np.ndarray
    permutation: np.ndarray
    diag: float
    sep: float


def _binned_probe_r2(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                     bins: int) -> np.ndarray:
    """Held-out ``R^2`` of a piecewise-constant regression of every column of ``y`` on the scalar
    ``x``: equal-count bins of ``x`` fitted on one half, evaluated on the other. Returns ``(k,)``."""
    edges = np.quantile(x_fit, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    fit_bin = np.searchsorted(edges, x_fit, side="right")
    test_bin = np.searchsorted(edges, x_test, side="right")
    counts = np.bincount(fit_bin, minlength=bins).astype(np.float64)
    sums = np.stack([np.bincount(fit_bin, weights=y, minlength=bins) for y in y_fit.T], axis=1)
    # Ties in x can leave a bin empty; it then predicts the overall mean.
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1.0)[:, None], y_fit.mean(axis=0))
    residual = ((y_test - means[test_bin]) ** 2).sum(axis=0)
    total = ((y_test - y_test.mean(axis=0)) ** 2).sum(axis=0)
    return 1.0 - residual / np.where(total > 0, total, np.inf)


def r2_matrix(z_true: np.ndarray, z_hat: np.ndarray, *, permutation: np.ndarray | None = None,
              bins: int | None = None, seed: int = 0) -> R2Result:
    """``R^2`` matrix in the CITRIS convention: a probe predicts every true latent from every learned
    latent, here one learned latent at a time.

    The probe is a nonparametric 1-d regressor: equal-count bins of the learned latent (``bins``,
    default ``round(sqrt(N / 2))`` clipped to [5, 200]) each predicting the mean of the true latent
    in the bin (a kNN-like estimate of ``E[z_i | z_hat_j]``). It is fitted on a random half of the
    samples and scored on the other half, so a learned latent that is any measurable function of a
    true one scores close to 1, and an independent one close to 0 (negative values clipped to 0).

    ``diag`` and ``sep`` use ``permutation`` or, if None, the Hungarian matching of the matrix itself.
    """
    z_true, z_hat = _latent_pair(z_true, z_hat)
    N, n = z_true.shape
    if bins is None:
        bins = int(np.clip(round(np.sqrt(N / 2)), 5, 200))
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}")
    order = np.random.default_rng(seed).permutation(N)
    fit, test = order[: N // 2], order[N // 2:]
    R = np.empty((n, n))
    for j in range(n):
        R[:, j] = _binned_probe_r2(z_hat[fit, j], z_true[fit], z_hat[test, j], z_true[test], bins)
    R = np.clip(R, 0.0, 1.0)
    p = match(R) if permutation is None else _permutation(permutation, n)
    diag = float(R[np.arange(n), p].mean())
    off = R.copy()
    off[np.arange(n), p] = -np.inf
    sep = float(off.max(axis=1).mean()) if n > 1 else 0.0
    return R2Result(R, p, diag, sep)


# --- graphs -------------------------------------------------------------------------------------
def _aligned_graphs(true_graph: np.ndarray, learned_graph: np.ndarray,
                    permutation: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    A = _graph(true_graph, "true_graph")
    B = _graph(learned_graph, "learned_graph", A.shape[0])
    p = _permutation(permutation, A.shape[0])
    return A, B[np.ix_(p, p)]


def shd(true_graph: np.ndarray, learned_graph: np.ndarray, permutation: np.ndarray | None = None,
        reversal_cost: int = 1) -> int:
    """Structural Hamming distance between the true DAG and the learned graph, the learned one
    written over the true indices by ``permutation`` (identity if None).

    ``reversal_cost=2``: number of differing adjacency entries (false positives plus false
    negatives; a reversed edge counts 2). ``reversal_cost=1``: number of node pairs whose edges
    differ (missing, extra or reversed edge each count 1)."""
    A, B = _aligned_graphs(true_graph, learned_graph, permutation)
    if reversal_cost == 2:
        return int(np.abs(A - B).sum())
    if reversal_cost == 1:
        differ = (A != B) | (A.T != B.T)
        return int(np.triu(differ, k=1).sum())
    raise ValueError(f"reversal_cost must be 1 or 2, got {reversal_cost!r}")


def edge_precision_recall(true_graph: np.ndarray, learned_graph: np.ndarray,
                          permutation: np.ndarray | None = None) -> tuple[float, float]:
    """Precision and recall of the directed edges of the learned graph (written over the true indices
    by ``permutation``). A reversed edge is wrong in both. With no learned edges precision is 1; with
    no true edges recall is 1."""
    A, B = _aligned_graphs(true_graph, learned_graph, permutation)
    tp = int((A & B).sum())
    n_learned, n_true = int(B.sum()), int(A.sum())
    precision = tp / n_learned if n_learned else 1.0
    recall = tp / n_true if n_true else 1.0
    return precision, recall


# --- linear models ------------------------------------------------------------------------------
def _effective_mixing(encoder: np.ndarray, mixing_matrix: np.ndarray) -> np.ndarray:
    H = np.asarray(encoder, dtype=np.float64)
    G = np.asarray(mixing_matrix, dtype=np.float64)
    if H.ndim != 2 or G.ndim != 2 or H.shape[1] != G.shape[0] or H.shape[0] != G.shape[1]:
        raise ValueError(f"encoder (n, d) and mixing_matrix (d, n) do not fit: {H.shape} and {G.shape}")
    E = H @ G
    norms = np.linalg.norm(E, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("the encoder maps the observations of some latent direction to zero (E = H G "
                         "has a zero row)")
    return E / norms


def allowed_mixing_pattern(true_graph: np.ndarray, hard: bool = True, soft_pattern: str = "parents") -> np.ndarray:
    """``(n, n)`` boolean mask over (true latent, true latent): which entries of the aligned effective
    mixing the theory allows to be nonzero. Hard interventions: the identity (Z up to permutation
    and scaling). Soft: the identity plus ``E[i, j]`` for ``j`` a parent (``soft_pattern="parents"``,
    docs/science.md section 4) or an ancestor (``"ancestors"``) of ``i``."""
    A = _graph(true_graph, "true_graph")
    allowed = np.eye(A.shape[0], dtype=bool)
    if hard:
        return allowed
    if soft_pattern == "parents":
        return allowed | (A.T != 0)
    if soft_pattern == "ancestors":
        return allowed | (transitive_closure(A).T != 0)
    raise ValueError(f"soft_pattern must be 'parents' or 'ancestors', got {soft_pattern!r}")


def incorrect_mixing_norm(encoder: np.ndarray, mixing_matrix: np.ndarray, true_graph: np.ndarray,
                          hard: bool = True, permutation: np.ndarray | None = None,
                          soft_pattern: str = "parents") -> float:
    """Spectral norm of the effective mixing outside the allowed pattern.

    ``E = H G`` ``(n, n)`` with ``H`` the learned encoder ``(n, d)`` and ``G`` the true mixing ``(d, n)``
    maps true to learned latents; its rows are normalised to unit Euclidean norm (removing the free
    scale of each learned latent) and permuted so that row ``i`` is the learned latent matched to true
    latent ``i`` (``permutation``; if None, the Hungarian matching maximising ``sum |E[p[i], i]|``).
    Returns ``|| E * (1 - allowed) ||_2`` with ``allowed`` from ``allowed_mixing_pattern``: 0 for a
    perfect encoder, at most 1 per row.
    """
    E = _effective_mixing(encoder, mixing_matrix)
    n = E.shape[0]
    allowed = allowed_mixing_pattern(_graph(true_graph, "true_graph", n), hard, soft_pattern)
    p = match(np.abs(E).T) if permutation is None else _permutation(permutation, n)
    return float(np.linalg.norm(np.where(allowed, 0.0, E[p]), ord=2))


# --- latent error -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Alignment:
    """Learned latents aligned to the true ones: ``z_aligned = z_hat[:, permutation] * scale``.

    Attributes:
        permutation: ``(n,)``, learned latent ``permutation[i]`` matched to true latent ``i``.
        scale: ``(n,)`` least-squares scale of each matched learned latent (sign included).
        z_aligned: ``(N, n)`` aligned learned latents.
    """

    permutation: np.ndarray
    scale: np.ndarray
    z_aligned: np.ndarray


def align(z_true: np.ndarray, z_hat: np.ndarray, permutation: np.ndarray | None = None) -> Alignment:
    """Align learned to true latents ``(N, n)``: permute by ``permutation`` (Pearson-MCC matching if
    None), then scale each coordinate by ``a_i = <z_true_i, z_hat_p(i)> / <z_hat_p(i), z_hat_p(i)>``
    (least squares through the origin; no offset, latents of the linear protocol are compared as is)."""
    z_true, z_hat = _latent_pair(z_true, z_hat)
    n = z_true.shape[1]
    p = mcc(z_true, z_hat).permutation if permutation is None else _permutation(permutation, n)
    zp = z_hat[:, p]
    denom = (zp**2).sum(axis=0)
    scale = np.where(denom > 0, (z_true * zp).sum(axis=0) / np.where(denom > 0, denom, 1.0), 0.0)
    return Alignment(p, scale, zp * scale)


def normalized_latent_error(z_true: np.ndarray, z_hat: np.ndarray, permutation: np.ndarray | None = None) -> float:
    """``||align(z_true, z_hat).z_aligned - z_true||_F / ||z_true||_F`` (Frobenius norms over all
    samples and coordinates). 0 for a perfect recovery up to permutation and scaling; 1 for learned
    latents uncorrelated with the true ones."""
    z_true, z_hat = _latent_pair(z_true, z_hat)
    a = align(z_true, z_hat, permutation)
    total = np.linalg.norm(z_true)
    if total == 0:
        raise ValueError("true latents are all zero; the normalised error is undefined")
    return float(np.linalg.norm(a.z_aligned - z_true) / total)


# --- everything at once -------------------------------------------------------------------------
def evaluate(z_true: np.ndarray, z_hat: np.ndarray, *, true_graph: np.ndarray | None = None,
             learned_graph: np.ndarray | None = None, encoder: np.ndarray | None = None,
             mixing_matrix: np.ndarray | None = None, hard: bool = True, r2: bool = True,
             permutation: np.ndarray | None = None) -> dict:
    """All metrics at once, as a flat JSON-ready dict.

    Latents ``(N, n)`` are required; graph metrics need ``true_graph`` and ``learned_graph``; the
    incorrect-mixing norm needs ``encoder`` ``(n, d)``, ``mixing_matrix`` ``(d, n)`` and
    ``true_graph``. Every metric uses one matching: ``permutation`` if given, else the Pearson-MCC
    matching. Keys: ``mcc_pearson``, ``mcc_spearman``, ``permutation``, ``z_error``, and when
    available ``r2_diag``, ``r2_sep``, ``shd`` (reversal 1), ``shd_rev2``, ``edge_precision``,
    ``edge_recall``, ``incorrect_mixing``.
    """
    z_true, z_hat = _latent_pair(z_true, z_hat)
    pearson = mcc(z_true, z_hat, "pearson")
    p = pearson.permutation if permutation is None else _permutation(permutation, z_true.shape[1])
    out: dict = {
        "mcc_pearson": pearson.value,
        "mcc_spearman": mcc(z_true, z_hat, "spearman").value,
        "permutation": p.tolist(),
        "z_error": normalized_latent_error(z_true, z_hat, p),
    }
    if r2:
        r = r2_matrix(z_true, z_hat, permutation=p)
        out["r2_diag"], out["r2_sep"] = r.diag, r.sep
    if true_graph is not None and learned_graph is not None:
        out["shd"] = shd(true_graph, learned_graph, p, reversal_cost=1)
        out["shd_rev2"] = shd(true_graph, learned_graph, p, reversal_cost=2)
        out["edge_precision"], out["edge_recall"] = edge_precision_recall(true_graph, learned_graph, p)
    if encoder is not None and mixing_matrix is not None and true_graph is not None:
        out["incorrect_mixing"] = incorrect_mixing_norm(encoder, mixing_matrix, true_graph, hard, p)
    return out

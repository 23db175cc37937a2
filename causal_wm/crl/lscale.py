"""LSCALE-I: score-based causal representation learning for linear mixing (docs/science.md section 4;
Varıcı et al., JMLR 2025, arXiv 2402.00849).

Setting: ``x = G z`` with ``G`` ``(d, n)`` of rank ``n``; ``envs[0]`` observational, ``envs[1:]`` one
single-node intervention per latent, targets unknown (environment order carries no information).

The steps, with ``D^m = s^0 - s^m`` the score differences (observational minus interventional) at the
observational samples:

1. Support. Project ``x`` onto the top-``n`` principal directions of the pooled data and whiten with
   the observational covariance: ``y = Σ0^{-1/2} U^T x``. In ``y`` the true encoder rows ``r_k`` (with
   ``z = r^T y``) are a basis, and score differences transform as ``D_y = Σ0^{1/2} U^T D_x``.
2. ``R^m = E_0[D_y^m D_y^m^T]``: its column space ``V_m`` lies in ``span{r_t, r_pa(t)}`` for the node
   ``t`` env ``m`` hits (sparsity of the latent score difference), and contains ``r_t``.
3. Causal order, greedily: with ``Q`` spanning the encoder rows found so far (an ancestor-closed
   set), the next environment is the one whose ``R^m`` projected off ``Q`` is closest to rank one
   (smallest second eigenvalue, in whitened coordinates): all parents of its node are already in
   ``Q``. Its encoder row is ``h = R^m u`` with ``u`` the top eigenvector of the projected matrix:
   ``h`` lies in ``V_m`` (so ``ẑ`` mixes ``z_t`` with its parents only) and outside ``span Q``. This
   step needs no threshold.
4. Hard interventions: in env ``m`` (hard on ``t``), ``z_t`` is independent of every node earlier in
   the order, so regressing ``ẑ_t`` on the earlier learned latents there and keeping the residual
   removes the parent mixing: ``ẑ`` equals ``z`` up to permutation and scaling. (Least squares needs
   only each environment's covariance.)
5. Graph. In the learned coordinates the score difference of env ``m_k`` is ``D_ẑ = H^{-T} D_y``;
   its power ``P[i, k] = E[(D^{m_k}_ẑ,i)^2]`` on coordinate ``i`` is zero off ``{k} ∪ pa(k)``. Two
   scale-free normalisations of ``P`` (``_edge_statistics``): by the environments' own powers, and by
   the estimation-noise level of coordinate ``i`` (from the precisions of the learned latents). Each
   gets a cut from the data (``gap_threshold``: Otsu's split in log scale, keeping at least half of the
   ``n (n - 1)`` off-diagonal entries null, as in any DAG), and the edge evidence is the mean of the
   two log-ratios to the cuts (soft encoders: the first alone). Hard interventions add a second view
   (``_regression_statistics``): once ``ẑ`` is unmixed, regressing ``ẑ_j`` on the learned latents before
   it in the observational environment gives zero coefficients to ancestors that are not parents,
   where score differences estimated with noise can show as much power as on a weak true edge. Its
   absolute t statistics get their own cut (``gap_threshold`` on the pairs above the diagonal, at least
   a quarter of them null) and the evidence for ``i -> j``, ``i`` before ``j``, is the mean of the score
   evidence and the log-ratio of ``t`` to its cut; reversed pairs keep the score evidence alone. The
   ``t`` statistics of non-edges are inflated beyond ``N(0, 1)`` by the finite-sample error of the
   encoder (measured 10 to 40 at ``N = 50k``, true edges mostly far above), so neither view alone is
   used. No fixed constant: the published code's fixed cut (1e-3) misses weak edges or adds false
   ones. Edges with positive evidence are
   projected to the closest DAG (``causal_wm.crl.dag``), so the weakest evidence breaks any cycle.
   With soft interventions the same statistic on the soft encoder finds ``{k} ∪ an(k)``: the
   transitive closure of the graph (the paper's "identifiability up to ancestors").
6. Sufficiently nonlinear latent models (``nonlinear_latents=True``): ``V_m = span{r_t, r_pa(t)}``
   exactly, so the exact graph follows from soft interventions by subspace intersections:
   ``P_t = V_t ∩ span(earlier rows) = span r_pa(t)``, and ``j`` is a parent of ``t`` iff intersecting
   ``P_t`` with the span of ``j``'s ancestral rows gains a dimension when ``r_j`` is added.
   Subspace dimensions use principal angles with a tolerance derived from the spectra of ``R^m``.
   Linear SCMs do not qualify (there ``V_m`` has dimension at most 2).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from causal_wm.crl.dag import closest_dag, gap_threshold
from causal_wm.crl.environments import check_null_policy, keep_envs, rescale_envs, screen_null_envs, validate_envs
from causal_wm.crl.representation import LinearEncoderResult, regime_labels
from causal_wm.crl.scores import score_differences

__all__ = ["LinearCRLResult", "lscale_i"]

# Rows of each environment used to find the n-dim support; noiseless linear data span it exactly
# from a few samples, and more rows only refine it for noisy data.
_SUPPORT_ROWS = 12_000
# Below this ratio to the largest eigenvalue the pooled data are treated as not spanning n dimensions.
_RANK_TOL = 1e-10
# Regression t statistics below this are not significant at any usual level; flooring them keeps the
# spread of pure noise from forming a cluster of its own in the cut.
_T_FLOOR = 3.0
# At least n (n - 1) / _T_NULL_DIVISOR of the pairs above the diagonal are taken as null (a quarter).
_T_NULL_DIVISOR = 8


@dataclass
class LinearCRLResult(LinearEncoderResult):
    """Output of ``lscale_i``.

    Learned latents are numbered in the estimated causal order (latent 0 has no learned parents).

    Attributes:
        encoder: ``(n, d)``; learned latents ``z_hat = x @ encoder.T`` (``encode``), unit variance in
            the observational environment. Hard interventions: ``z`` up to permutation and scaling.
        graph: ``(n, n)`` DAG over learned latents, ``A[i, j] = 1`` iff learned ``i -> j``.
        env_targets: regime -> learned latents it intervenes on, ``{regimes[m - 1]: (target_latents[m - 1],)}``
            (regime ``m`` is ``envs[m]`` unless ``lscale_i`` was given ``regimes``).
        target_latents: ``(M,)``; ``target_latents[m - 1]`` is the learned latent that ``envs[m]`` hit
            (with ``null_envs="drop"``: counting the environments kept, ``diagnostics["dropped_envs"]``
            lists the others, which have no ``env_targets`` entry).
        encoder_soft: ``(n, d)`` encoder before the hard-intervention unmixing (each learned latent
            mixes its node with its parents); equals ``encoder`` for soft interventions.
        graph_soft: ``(n, n)`` graph read with ``encoder_soft``: the transitive closure of the graph
            for linear latent models, the graph itself with ``nonlinear_latents``.
        hard: whether the hard-intervention steps ran.
        diagnostics: spectra, order ratios, edge statistics, thresholds, removed DAG weight, seconds.
    """

    encoder: np.ndarray
    graph: np.ndarray
    env_targets: dict[int, tuple[int, ...]]
    target_latents: np.ndarray
    encoder_soft: np.ndarray
    graph_soft: np.ndarray
    hard: bool
    diagnostics: dict[str, Any] = field(default_factory=dict)

    FORMAT: ClassVar[str] = "causal_wm.crl.lscale"

    def encode(self, x: np.ndarray, *, soft: bool = False) -> np.ndarray:
        """Learned latents ``(N, n)`` of observations ``x`` ``(N, d)`` (``soft``: with ``encoder_soft``)."""
        return self._check_x(x) @ (self.encoder_soft if soft else self.encoder).T


# --- input checks -------------------------------------------------------------------------------
def _check_score_diffs(score_diffs: Sequence[np.ndarray], envs: list[np.ndarray]) -> list[np.ndarray]:
    M = len(envs) - 1
    if isinstance(score_diffs, np.ndarray) or len(score_diffs) != M:
        raise ValueError(f"score_diffs must be a list of {M} arrays (one per interventional environment)")
    checked = []
    for m, D in enumerate(score_diffs, start=1):
        D = np.asarray(D, dtype=np.float64)
        if D.shape != envs[0].shape:
            raise ValueError(f"score_diffs[{m - 1}] must have the shape of envs[0] {envs[0].shape} "
                             f"(differences at the observational samples), got {D.shape}")
        if not np.isfinite(D.sum()) and not np.all(np.isfinite(D)):
            raise ValueError(f"score_diffs[{m - 1}] contains NaN or infinite values")
        checked.append(D)
    return checked


def _validate(envs: list[np.ndarray], n: int | None, dropped: Sequence[int] = ()) -> int:
    """Check the counts and sizes of validated environments; returns ``n``. ``dropped``: the
    environments ``null_envs="drop"`` left out (for the messages)."""
    M = len(envs) - 1
    d = envs[0].shape[1]
    n = M if n is None else int(n)
    after = (f" (after dropping environments {list(dropped)}, which show no detectable effect: "
             "null_envs='drop')" if dropped else "")
    if n < 1:
        if dropped:
            raise ValueError(f"lscale_i: no interventional environment is left{after}; LSCALE-I needs one "
                             "single-node intervention per latent")
        raise ValueError(f"n must be a positive number of latents, got {n}")
    if M < n:
        raise ValueError(f"LSCALE-I needs one interventional environment per latent: got {M} interventional "
                         f"environments for n={n} latents{after}; too few for identifiability")
    if M > n:
        raise ValueError(f"lscale_i got M = {M} interventional environments for n = {n} latents{after}; LSCALE-I "
                         f"needs exactly one single-node intervention per latent: drop the {M - n} extra "
                         f"environment(s), or pass n={M} if the data have {M} latents")
    if d < n:
        raise ValueError(f"observations of dimension d={d} cannot hold n={n} latents (need d >= n)")
    for m, x in enumerate(envs):
        if len(x) <= n:
            raise ValueError(f"environment {m} has {len(x)} samples; need more than n={n}")
    return n


def _support(envs: list[np.ndarray], n: int, seed: int, n_given: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` principal directions ``U`` ``(d, n)`` of the pooled data and the pooled spectrum
    (``n_given``: whether the caller chose ``n``, else it is the number of environments; for the
    message when the data span fewer dimensions)."""
    rng = np.random.default_rng(seed)
    rows = max(_SUPPORT_ROWS // len(envs), 4 * n)
    blocks = [x if len(x) <= rows else x[rng.choice(len(x), rows, replace=False)] for x in envs]
    # centre each environment separately: environment means differ and are not part of the span
    pooled = np.concatenate([b - b.mean(axis=0) for b in blocks])
    cov = pooled.T @ pooled / len(pooled)
    eigenvalues, vectors = np.linalg.eigh(cov)
    eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
    if eigenvalues[0] <= 0 or eigenvalues[n - 1] <= _RANK_TOL * eigenvalues[0]:
        rank = int(np.sum(eigenvalues > _RANK_TOL * max(eigenvalues[0], 0.0)))
        M = len(envs) - 1
        if not n_given and 0 < rank < n:
            raise ValueError(f"rank-deficient data: the observations span {rank} dimensions, fewer than n={n} "
                             f"latents. n defaults to the number of interventional environments (lscale_i got "
                             f"M = {M}), and LSCALE-I needs exactly one single-node intervention per latent: if "
                             f"the data have {rank} latents, drop the {M - rank} extra environment(s) (or pass "
                             "null_envs='drop' if they change nothing); else check the mixing")
        raise ValueError(f"rank-deficient data: the observations span {rank} dimensions, fewer than n={n} "
                         f"latents: the mixing is not injective or n is too large (check the mixing, or pass "
                         f"n={rank} with {rank} interventional environments)")
    return vectors[:, :n], eigenvalues


def _sqrt_psd(C: np.ndarray, inverse: bool) -> np.ndarray:
    w, V = np.linalg.eigh(C)
    if w[0] <= _RANK_TOL * w[-1]:
        raise ValueError(f"rank-deficient observational environment: its covariance on the n={len(C)}-dim support "
                         "of the pooled data is singular (envs[0] spans fewer dimensions than the "
                         "interventional environments together: a latent constant in envs[0], or more "
                         "latents, and so environments, than the observational data hold)")
    return (V / np.sqrt(w)) @ V.T if inverse else (V * np.sqrt(w)) @ V.T


# --- steps --------------------------------------------------------------------------------------
def _causal_order(R: list[np.ndarray]) -> tuple[list[int], np.ndarray, list[float]]:
    """Greedy causal order of the environments, encoder rows in whitened coordinates and the second
    eigenvalue of the chosen environment's projected ``R^m`` at every step.

    The criterion is the absolute second eigenvalue in whitened coordinates, not ``λ2 / λ1``: an
    intervention on a high-variance node has a huge first eigenvalue and so a tiny ratio even when
    parents are missing, while in whitened coordinates the estimation noise of the second eigenvalue
    sits at a similar small level for every environment (measured with Gaussian score estimates).
    """
    n = R[0].shape[0]
    remaining = list(range(len(R)))
    rows: list[np.ndarray] = []
    order: list[int] = []
    seconds: list[float] = []
    Q = np.zeros((n, 0))
    scale = max(max(float(np.trace(r)) for r in R), 1e-300)
    for _ in range(n):
        P = np.eye(n) - Q @ Q.T
        best = None
        for m in remaining:
            w, V = np.linalg.eigh(P @ R[m] @ P)
            second = max(w[-2], 0.0) if n - len(order) > 1 else 0.0
            if best is None or second < best[0]:
                best = (second, m, V[:, -1], w[-1])
        assert best is not None
        second, m, u, top = best
        if top <= 1e-12 * scale:
            raise ValueError(f"environment {m + 1} shows no score difference outside the latents found so far "
                             "(its intervention changes nothing, or the score differences are zero): check "
                             "its samples, or leave it out")
        h = R[m] @ u
        h /= np.linalg.norm(h)
        rows.append(h)
        order.append(m)
        seconds.append(float(second))
        # re-orthonormalise the span of all rows found so far
        Q = np.linalg.qr(np.array(rows).T)[0]
        remaining.remove(m)
    return order, np.array(rows), seconds


def _unmix_hard(H: np.ndarray, C_env: list[np.ndarray]) -> np.ndarray:
    """Regress each learned latent on the earlier ones in its own (hard-intervened) environment and
    keep the residual direction. ``C_env[k]`` is the covariance of the whitened data of the env that hit
    learned latent ``k``; least squares needs only these second moments."""
    H = H.copy()
    for k in range(1, H.shape[0]):
        C = C_env[k]
        earlier = H[:k]
        beta = np.linalg.solve(earlier @ C @ earlier.T, earlier @ C @ H[k])
        H[k] = H[k] - beta @ earlier
    return H


def _standardize(H: np.ndarray, C0: np.ndarray) -> np.ndarray:
    """Scale rows to unit variance under the covariance ``C0`` and fix the sign (largest entry > 0)."""
    scale = np.sqrt(np.einsum("ij,jk,ik->i", H, C0, H))
    sign = np.sign(H[np.arange(len(H)), np.argmax(np.abs(H), axis=1)])
    return H * (sign / scale)[:, None]


def _edge_statistics(H: np.ndarray, R_learned_order: list[np.ndarray], C_learned_order: list[np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Two normalisations of the edge evidence ``P[i, k] = E[(D^{m_k}_i)^2]``: the power of the score
    difference of the env that hit learned latent ``k`` on learned coordinate ``i``
    (``D_zhat = H^{-T} D_y``), zero off ``{k} ∪ pa(k)`` in the population. Both are independent of the
    scales of the learned latents; diagonals are 0.

    - ``scale_free[i, k] = sqrt(P[i, k] / sqrt(P[i, i] P[k, k]))``: relative to the two environments'
      own score-difference powers.
    - ``noise_units[i, k] = sqrt(P[i, k] / (Θ^0_ii + Θ^{m_k}_ii) * N / n)`` with ``Θ^m`` the precision
      of the learned latents in env ``m`` (``C_learned_order``: whitened covariances of the envs, in
      learned order): for Gaussian score estimates the error of row ``i`` of a precision matrix has
      variance ``~ Θ_ii tr(Θ Σ) / N``, so null entries are of order one (measured median 0.85 to 1.6).
      ``N`` is filled in by the caller; here the factor ``N / n`` is left out.
    """
    Hinv = np.linalg.inv(H)
    power = np.stack([np.clip(np.diag(Hinv.T @ R @ Hinv), 0.0, None) for R in R_learned_order], axis=1)
    own = np.maximum(np.diag(power), 1e-300)
    scale_free = np.sqrt(power / np.sqrt(own[:, None] * own[None, :]))
    theta0 = np.diag(np.linalg.inv(H @ H.T))
    theta = np.stack([np.diag(np.linalg.inv(H @ C @ H.T)) for C in C_learned_order], axis=1)
    noise = np.sqrt(power / (theta0[:, None] + theta))
    for S in (scale_free, noise):
        np.fill_diagonal(S, 0.0)
    return scale_free, noise


def _regression_statistics(H: np.ndarray, num_samples: int) -> np.ndarray:
    """Absolute t statistics ``T[i, j]`` ``(n, n)``, ``i < j``, of the coefficient of learned latent ``i`` in
    the least-squares regression of learned latent ``j`` on the latents before it in the learned causal
    order, in the observational environment (whitened coordinates: the covariance of the learned
    latents there is ``H H^T``). With hard interventions the learned latents are the true ones up to
    permutation and scaling, so ancestors of ``j`` that are not parents have coefficient zero: a second
    view of the edges, independent of the score-difference estimates. Zero on and below the diagonal.
    """
    n = H.shape[0]
    C = H @ H.T
    T = np.zeros((n, n))
    for j in range(1, n):
        inv = np.linalg.inv(C[:j, :j])
        beta = inv @ C[:j, j]
        residual = max(float(C[j, j] - C[j, :j] @ beta), 1e-300)
        T[:j, j] = np.abs(beta) / np.sqrt(residual * np.diag(inv) / num_samples)
    return T


def _graph_from_statistics(scale_free: np.ndarray, noise: np.ndarray | None, threshold: float | str,
                           num_samples: int, regression: np.ndarray | None = None
                           ) -> tuple[np.ndarray, dict[str, Any]]:
    """Threshold the edge statistics and project to the closest DAG.

    ``threshold="auto"``: each statistic gets its own cut from the data (``gap_threshold``); the
    evidence for ``i -> k`` is the mean of the two log-ratios ``log(S / cut)`` (combining the two noise
    models measured fewer errors than either alone). Values below ``1 / sqrt(N)`` (scale-free; not
    resolvable from ``N`` samples) and below 3 noise units are raised to those floors first, so exact
    zeros and pure noise do not form clusters of their own. A number: a fixed cut on the scale-free
    statistic alone; so does ``noise=None`` (soft encoders, whose latents mix with their parents:
    there the noise-unit model does not hold and measured worse). ``regression``: the ``t`` statistics
    of ``_regression_statistics`` (hard encoders, "auto" only); floored at 3 (not significant at any
    usual level) and cut by ``gap_threshold`` with at least ``n (n - 1) / 8`` (a quarter of the pairs
    above the diagonal) null: a DAG need not leave any pair null, so this assumes graphs no denser than
    that; the score half of the evidence still stands for the others. Pairs above the diagonal get the
    mean of the score evidence and ``log(t / cut)``. The DAG keeps the edges with positive evidence
    that maximise the total evidence.
    """
    n = scale_free.shape[0]
    off = ~np.eye(n, dtype=bool)
    half = n * (n - 1) // 2
    if threshold == "auto" and noise is None:
        free = np.maximum(scale_free, 1.0 / np.sqrt(num_samples))
        tau_free = gap_threshold(free[off], half)
        evidence = np.log(free / tau_free)
        info = {"threshold": tau_free}
    elif threshold == "auto":
        assert noise is not None
        units = noise * np.sqrt(num_samples / n)
        free = np.maximum(scale_free, 1.0 / np.sqrt(num_samples))
        noisy = np.maximum(units, 3.0)
        tau_free = gap_threshold(free[off], half)
        tau_noise = gap_threshold(noisy[off], half)
        evidence = 0.5 * (np.log(free / tau_free) + np.log(noisy / tau_noise))
        info = {"threshold": tau_free, "threshold_noise_units": tau_noise}
        if regression is not None:
            upper = np.triu(np.ones((n, n), dtype=bool), k=1)
            t = np.maximum(regression, _T_FLOOR)
            tau_t = gap_threshold(t[upper], max(1, n * (n - 1) // _T_NULL_DIVISOR))
            evidence = np.where(upper, 0.5 * (evidence + np.log(t / tau_t)), evidence)
            info["threshold_t"] = tau_t
    else:
        tau = float(threshold)
        if not tau > 0:
            raise ValueError(f"threshold must be 'auto' or a positive number, got {threshold!r}")
        evidence = np.log(np.maximum(scale_free, 1e-300) / tau)
        info = {"threshold": tau}
    W = np.where(off & (evidence > 0), evidence, 0.0)
    res = closest_dag(W)
    info["removed_weight"] = res.removed_weight
    return res.adjacency, info


# --- subspaces (nonlinear latent models) --------------------------------------------------------
def _orth(A: np.ndarray, tol: float) -> np.ndarray:
    if A.size == 0:
        return np.zeros((A.shape[0], 0))
    U, s, _ = np.linalg.svd(A, full_matrices=False)
    return U[:, s > tol * max(s[0], 1e-300)] if s.size else np.zeros((A.shape[0], 0))


def _intersect(U: np.ndarray, V: np.ndarray, tol: float) -> np.ndarray:
    """Orthonormal basis of ``span U ∩ span V`` (orthonormal inputs): principal directions whose
    angle has sine below ``tol``."""
    if U.shape[1] == 0 or V.shape[1] == 0:
        return np.zeros((U.shape[0], 0))
    A, cos, _ = np.linalg.svd(U.T @ V, full_matrices=False)
    sin = np.sqrt(np.clip(1.0 - cos**2, 0.0, None))
    return U @ A[:, sin < tol]


def _nonlinear_graph(R_learned_order: list[np.ndarray], H: np.ndarray, threshold: float | str
                     ) -> tuple[np.ndarray, dict[str, Any]]:
    """Exact graph of a sufficiently nonlinear model from column-space intersections (step 6)."""
    n = H.shape[0]
    spectra = [np.clip(np.linalg.eigvalsh(R)[::-1], 0.0, None) for R in R_learned_order]
    relative = [w / max(w[0], 1e-300) for w in spectra]
    tail = np.concatenate([r[1:] for r in relative]) if n > 1 else np.zeros(0)
    if threshold == "auto":
        # the root found first has rank one, so the pooled tail always holds n - 1 null eigenvalues
        rank_tol = gap_threshold(tail, n - 1) if tail.size else 0.5
    else:
        rank_tol = float(threshold)
    rank_tol = float(np.clip(rank_tol, 1e-14, 0.5))
    # a direction in a column space carries eigenvalue ~ cos^2 of its angle; null ones ~ rank_tol
    sin_tol = float(np.clip(np.sqrt(rank_tol) * 10.0, 1e-6, 0.2))
    V = []
    for R, w in zip(R_learned_order, relative, strict=True):
        _, evecs = np.linalg.eigh(R)
        V.append(evecs[:, ::-1][:, : max(1, int(np.sum(w > rank_tol)))])
    Hn = H / np.linalg.norm(H, axis=1, keepdims=True)
    graph = np.zeros((n, n), dtype=np.int64)
    closure: list[np.ndarray] = []   # span of the rows of j and its ancestors
    above: list[np.ndarray] = []     # span of the rows of j's ancestors
    for t in range(n):
        earlier = _orth(Hn[:t].T, sin_tol) if t else np.zeros((n, 0))
        P = _intersect(V[t], earlier, sin_tol)  # = span of the parent rows
        for j in range(t):
            if _intersect(P, closure[j], sin_tol).shape[1] > _intersect(P, above[j], sin_tol).shape[1]:
                graph[j, t] = 1
        pa = np.flatnonzero(graph[:, t])
        anc = _orth(np.concatenate([closure[p] for p in pa], axis=1), sin_tol) if pa.size else np.zeros((n, 0))
        above.append(anc)
        closure.append(_orth(np.concatenate([anc, V[t], Hn[t][:, None]], axis=1), sin_tol))
    return graph, {"rank_threshold": rank_tol, "angle_sine_threshold": sin_tol,
                   "column_space_ranks": [int(v.shape[1]) for v in V]}


# --- the algorithm ------------------------------------------------------------------------------
def lscale_i(envs: Sequence[np.ndarray], *, score_diffs: Sequence[np.ndarray] | None = None,
             scores: str = "gaussian", hard: bool = True, n: int | None = None,
             nonlinear_latents: bool = False, threshold: float | str = "auto", seed: int = 0,
             score_options: dict[str, Any] | None = None, regimes: Sequence[int] | None = None,
             null_envs: str = "raise") -> LinearCRLResult:
    """LSCALE-I for linear mixing with one single-node intervention per latent, targets unknown.

    Args:
        envs: ``envs[0]`` observational samples ``(N0, d)``; ``envs[1:]`` one interventional
            environment per latent ``(N_m, d)``, in any order.
        score_diffs: optional precomputed ``D^m = s^0 - s^m`` (observational minus interventional),
            one ``(N0, d)`` array per interventional env, evaluated at the samples of ``envs[0]``
            (e.g. ``CRLProblem.oracle_score_differences()``). None: estimate them with ``scores``.
        scores: score-difference method of ``causal_wm.crl.scores.score_differences`` ("gaussian",
            "ssm", "dsm", "classifier"), run on the ``n``-dim support coordinates.
        hard: interventions are (stochastic) hard: unmix to recover ``z`` up to permutation and
            scaling and the exact graph. False: soft interventions (latents up to mixing with their
            parents; graph up to transitive closure for linear latent models).
        n: number of latents; default ``len(envs) - 1``.
        nonlinear_latents: the latent model is sufficiently nonlinear: read the exact graph from
            column-space intersections (works with soft interventions).
        threshold: "auto" (from the data, see the module docstring) or a fixed positive cut on the edge
            statistic (with ``nonlinear_latents``: on relative eigenvalues of ``R^m``).
        seed: seed of the support subsample and of learned score estimators.
        score_options: extra options for the score estimator.
        regimes: regime labels of ``envs[1:]`` (keys of ``env_targets``); default ``1..M``.
        null_envs: what to do with interventional environments that show no detectable effect
            (``causal_wm.crl.scores.null_environment_test``: a Gaussian likelihood-ratio test of mean
            and covariance against ``envs[0]`` at level 1e-3, Bonferroni; with ``score_diffs`` given, a
            score difference that is zero up to round-off): ``"raise"`` (default) refuses them,
            ``"drop"`` leaves them out (``diagnostics["dropped_envs"]``; ``n`` then defaults to the
            environments left, and too few left for one intervention per latent is refused),
            ``"keep"`` skips the test.

    Data of extreme magnitude (beyond ``2^±100``) are divided by a power of two first
    (``diagnostics["data_scale"]``); the encoder reads the original observations.

    Returns:
        ``LinearCRLResult``.

    Raises:
        ValueError: fewer (or more) interventional environments than latents, ``d < n``, NaN or
            infinite values, mismatched dimensions, rank-deficient data, an environment with no
            detectable effect (``null_envs="raise"``).
    """
    start = time.perf_counter()
    envs = validate_envs(envs)
    check_null_policy(null_envs)
    labels = regime_labels(regimes, len(envs) - 1)
    if score_diffs is not None:
        score_diffs = _check_score_diffs(score_diffs, envs)
    if null_envs != "drop":
        _validate(envs, n)  # counts first: the clearest message for a wrong number of environments
    envs, data_scale = rescale_envs(envs, "lscale_i")
    if score_diffs is not None and data_scale != 1.0:
        score_diffs = [D * data_scale for D in score_diffs]  # gradients in x / scale
    n_given = n is not None
    kept, null_info = screen_null_envs(envs, len(envs) - 1 if n is None else int(n), null_envs, "lscale_i",
                                       score_diffs)
    dropped = null_info["dropped"]
    envs, labels, score_diffs = keep_envs(kept, envs, labels, score_diffs)
    n = _validate(envs, n, dropped)
    U, pooled_spectrum = _support(envs, n, seed, n_given)
    Y = [x @ U for x in envs]
    C0 = np.cov(Y[0].T).reshape(n, n)
    whiten = _sqrt_psd(C0, inverse=True)  # y_w = whiten @ y, observational covariance I
    unwhiten = _sqrt_psd(C0, inverse=False)
    if score_diffs is not None:
        Dy = [D @ U for D in score_diffs]
        score_seconds = 0.0
    else:
        if scores == "oracle":
            raise ValueError("scores='oracle' needs the ground truth: pass score_diffs="
                             "problem.oracle_score_differences() instead")

        t0 = time.perf_counter()
        Dy = score_differences(Y, method=scores, n=n, reference=0, seed=seed, **(score_options or {}))
        score_seconds = time.perf_counter() - t0
    # chain rule through y = unwhiten @ y_w: D_yw = unwhiten @ D_y
    Dw = [D @ unwhiten for D in Dy]
    N0 = len(Y[0])
    R = [D.T @ D / N0 for D in Dw]
    if not all(np.all(np.isfinite(r)) for r in R):
        raise ValueError("score differences are not finite on the support")

    order, H_soft, second_eigenvalues = _causal_order(R)
    H_soft = _standardize(H_soft, np.eye(n))
    H = H_soft
    C_env = [whiten @ np.cov(Y[m + 1].T).reshape(n, n) @ whiten for m in order]  # whitened, learned order
    if hard:
        H = _standardize(_unmix_hard(H_soft, C_env), np.eye(n))
    R_ordered = [R[m] for m in order]
    S_soft, noise_soft = _edge_statistics(H_soft, R_ordered, C_env)
    graph_soft, info_soft = _graph_from_statistics(S_soft, None, threshold, N0)
    diagnostics: dict[str, Any] = {
        "pooled_spectrum": pooled_spectrum[: min(len(pooled_spectrum), 2 * n)].tolist(),
        "order_second_eigenvalues": second_eigenvalues,
        "edge_statistic_soft": S_soft.tolist(),
        "edge_statistic_noise_units_soft": (noise_soft * np.sqrt(N0 / n)).tolist(),
        **{f"{k}_soft": v for k, v in info_soft.items()},
    }
    graph = graph_soft
    if hard:
        S, noise = _edge_statistics(H, R_ordered, C_env)
        T = _regression_statistics(H, N0)
        graph, info = _graph_from_statistics(S, noise, threshold, N0, T)
        diagnostics.update(edge_statistic=S.tolist(), edge_statistic_noise_units=(noise * np.sqrt(N0 / n)).tolist(),
                           edge_statistic_t=T.tolist(), **info)
    if nonlinear_latents:
        graph_nl, info = _nonlinear_graph(R_ordered, H_soft, threshold)
        diagnostics.update(info)
        diagnostics["graph_from_statistic"] = graph.tolist()
        graph_soft = graph_nl
        graph = graph_nl
    target_latents = np.empty(n, dtype=np.int64)
    target_latents[order] = np.arange(n)
    to_x = whiten @ U.T / data_scale  # (n, d): y_w = to_x @ x on the original (unscaled) observations
    diagnostics["data_scale"] = data_scale
    diagnostics["null_env_test"] = null_info
    diagnostics["dropped_envs"] = list(dropped)
    diagnostics["score_seconds"] = score_seconds
    diagnostics["seconds"] = time.perf_counter() - start
    env_targets = {r: (int(t),) for r, t in zip(labels, target_latents, strict=True)}
    return LinearCRLResult(encoder=H @ to_x, graph=graph, env_targets=env_targets, target_latents=target_latents,
                           encoder_soft=H_soft @ to_x, graph_soft=graph_soft, hard=hard,
                           diagnostics=diagnostics)

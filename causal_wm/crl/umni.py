"""UMNI-CRL: linear causal representation learning from unknown multi-node interventions.

Varıcı, Acartürk, Shanmugam, Tajer, NeurIPS 2024 (arXiv 2406.05937); docs/science.md section 4.

Setting. ``x = G z`` with ``G`` ``(d, n)`` of rank ``n``; environment ``m = 1..M`` intervenes on an
unknown set of latents (row ``m`` of an unknown 0/1 matrix ``T`` ``(M, n)`` of rank ``n``), the same
mechanism change for a node in every environment that hits it. With ``D^m = s^0 - s^m``
(observational minus interventional score, at the observational samples) and ``delta_t`` the score
change of node ``t`` alone, ``D^m_z = sum_t T[m, t] delta_t`` and ``delta_t(z)`` is non-zero only on
``{t} ∪ pa(t)``. A weight vector ``w`` combines environments into ``D^w = sum_m w_m D^m``, whose
latent expansion has coefficients ``c = T^T w``.

Pipeline (all in the ``n``-dim support coordinates ``y`` of the data, see ``scores.Support``):

1. Correlations ``R[i, j] = E_0[D^i D^j^T]`` ``(n, n)`` for all environment pairs. Every later step
   reads only quadratic forms ``R_w = sum_ij w_i w_j R[i, j]``, evaluated through a factor ``L``
   with ``R_w = L_w^T L_w``, so a batch of candidate ``w`` costs one small tensor product.
2. Causal order. With the encoder rows ``H`` found so far (orthonormal, ``k x n``) and ``Q`` a basis
   of their null space, ``Q^T R_w Q`` has rank one exactly when the unfound part of ``c`` is one node
   whose parents are all found; its top eigenvector, lifted by ``Q``, is the next encoder row (it
   reads that node plus a mix of found ones: a lower-triangular effective mixing).
3. Environment targets. In the learned coordinates ``zh`` of step 2 the conditional of ``zh_k``
   given its predecessors is invariant across environments unless the environment intervenes on
   node ``k`` (``zh_k`` is ``z_k`` plus predecessors, and the predecessors span the true ones), so a
   likelihood-ratio (Chow) test per ``(environment, node)`` estimates the target matrix ``T``.
4. Ancestors (soft identifiability). Walking pairs ``t < j`` of the order backwards, ``w_j + a w_t``
   with ``a`` cancelling node ``t`` (``c = T^T w`` is known once ``T`` is, so ``a = -c_j[t] / c_t[t]``)
   has ``Q^T R Q`` of rank one (``Q`` spans what is left after removing the rows that are neither
   ``t`` nor its known descendants) iff ``t`` is not an ancestor of ``j``; then the combination and
   its top eigenvector replace row ``j``. The result reads every node up to a mix of its ancestors,
   and the ancestor relation is the transitive closure of the graph. (Scanning ``a`` over the reals
   instead is wrong: for Gaussian scores the 2 x 2 block of a parent and its child has a real root of
   ``det = 0``, a spurious rank-one point; the published integer scan meets it only by accident.)
5. Hard interventions: unmixing. Under a hard intervention ``z_k`` is independent of its
   predecessors, so regressing ``zh_k`` on them in the environments that hit ``k`` and keeping the
   residual recovers ``z_k`` up to scale.
6. Hard graph: edge ``s -> k`` (``s`` before ``k``) iff the partial correlation of ``zh_s`` and
   ``zh_k`` given the other predecessors of ``k`` is non-zero by a Fisher z test on the observational
   samples.

Making the search tractable. The published search tries every ``w`` in ``{-k..k}^M`` at every step
(``k = 32`` at ``n = 8``). Here:

- candidates are enumerated in order of complexity (L1 norm: single environments, then pairs
  ``e_i ± e_j``, ...; one sign per ``±w`` and gcd 1, since ``R_{-w} = R_w`` and scaling does not
  change the rank) and the search stops at the first level that contains a clear rank-one
  candidate. When the targets are triangular in some causal order (the published design) single
  environments always suffice, so at ``n = 8`` each step evaluates ``M`` candidates; a general
  design reaches further levels. If no level up to ``max_l1`` (or a budget of 200k candidates) is
  clear, the best candidate seen is used and the step is flagged (``clear: False`` in
  ``diagnostics["order"]["steps"]``). The search stays on integers on purpose: real weights meet
  spurious rank-one points (for Gaussian scores a 2 x 2 block of a parent and its child reaches
  ``det = 0`` along a curve of real combinations).
- rank tests are vectorised: one batched ``eigvalsh`` of ``(B, p, p)`` projected matrices, scored
  by the eigenvalue ratio ``lambda_2 / lambda_1``, never by a rank with a fixed tolerance.
- the ancestor step needs no search once the targets are estimated: one rank test per pair. Without
  usable targets it scans the exact finite set of rational coefficients that can cancel a node.

Thresholds come from the data. A causal-order level is accepted when the widest gap between the
sorted log eigenvalue ratios of its candidates is at least ``gap`` decades and lies above the best.
An ancestor test compares its second eigenvalue with the estimation error of the scores: when the
scores are estimated here, they are estimated again from random halves of every environment, and
half the difference of two half-estimates (the same error size as the full estimate) gives the
second eigenvalue a pure-error version (averaged over ``calibration_splits``); the test finds rank
two when the ratio exceeds ``snr``. With given score differences the threshold is the midpoint, in
log scale, between the accepted (rank-one) and rejected ratios of the causal-order search.
Environment targets use a chi-square test at level ``alpha`` (Bonferroni) together with a
two-group split of the per-sample effect sizes; graph edges a Fisher z test at level ``alpha``
(Bonferroni), and, because with many samples the small residual mixing left by estimated scores
makes tiny partial correlations significant, when the significant absolute partial correlations
fall into two groups at least 0.75 decades apart only the upper group are edges.

Outputs. Learned latent ``i`` is the ``i``-th node of the recovered causal order, so ``graph`` is
upper triangular. Hard: ``graph`` is the DAG over learned latents and ``encode`` gives the latents
up to permutation and scaling. Soft: ``graph`` is the recovered ancestor relation (the transitive
closure of the DAG, which is what soft interventions identify) and ``encode`` gives each latent up to
a mix of its ancestors. Which member of that family is returned is a choice the data cannot make;
``umni_crl`` takes the one uncorrelated with the learned ancestors in the environments that intervene
on the latent (``_interventional_residual_rows``): exact for a hard intervention, and for a soft one
it removes only the part of the parents' influence that the intervention left in place.

Evaluation convention. The published evaluation (``umni_crl_test.py`` of acarturk-e/umni-crl) scores
the soft encoder against the true latents, not against a transformed version: it forms
``E = H_s G`` with rows normalised (sign of the diagonal) and reports ``||E z - z|| / ||z||`` and the
entries of ``E`` outside the node-plus-ancestors pattern; it computes no MCC itself. The MCC here
(``scripts/bench_umni.py``) is likewise taken between the true latents and ``encode(x)`` on the
observational samples (Pearson, Hungarian matching), so any ancestor mixing left in a learned latent
lowers it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from causal_wm.crl.environments import check_null_policy, keep_envs, rescale_envs, screen_null_envs, validate_envs
from causal_wm.crl.representation import LinearEncoderResult, regime_labels
from causal_wm.crl.scores import GaussianScores, Support
from causal_wm.scm.graphs import transitive_closure

__all__ = ["UMNIResult", "fisher_z_test", "partial_correlation", "umni_crl"]


@dataclass
class UMNIResult(LinearEncoderResult):
    """Output of ``umni_crl``.

    Attributes:
        encoder: ``(n, d)`` linear encoder, ``z_hat = x @ encoder.T``; hard: the unmixed encoder,
            soft: the encoder up to ancestors.
        graph: ``(n, n)`` int64 over learned latents, ``A[i, j] = 1`` iff learned ``i -> j``; hard:
            the DAG, soft: the ancestor relation (transitive closure), see the module docstring.
        hard: whether the hard-intervention steps were run.
        env_targets: regime -> learned latents it intervenes on (the rows of ``target_matrix``; regime
            ``m`` is ``envs[m]`` unless ``umni_crl`` was given ``regimes``).
        target_matrix: ``(M, n)`` int64 estimated intervention matrix, ``[m - 1, i] = 1`` iff env ``m``
            intervenes on learned latent ``i`` (with ``null_envs="drop"``: counting the environments
            kept; ``diagnostics["dropped_envs"]`` lists the others, which have no ``env_targets`` entry).
        order_encoder: ``(n, d)`` encoder after the causal-order step (lower-triangular mixing).
        ancestor_encoder: ``(n, d)`` encoder after the ancestor step (mixing with ancestors only).
        ancestor_graph: ``(n, n)`` int64 estimated ancestor relation (``[i, j] = 1`` iff ``i`` is a
            learned ancestor of ``j``).
        order_weights: ``(M, n)`` environment weights of the causal-order step; column ``i`` combines
            the envs into the score difference that isolates learned latent ``i``.
        ancestor_weights: ``(M, n)`` the same after the ancestor step (real valued).
        diagnostics: eigenvalue ratios, thresholds, p-values and counts of every decision.
    """

    encoder: np.ndarray
    graph: np.ndarray
    hard: bool
    env_targets: dict[int, tuple[int, ...]]
    target_matrix: np.ndarray
    order_encoder: np.ndarray
    ancestor_encoder: np.ndarray
    ancestor_graph: np.ndarray
    order_weights: np.ndarray
    ancestor_weights: np.ndarray
    diagnostics: dict[str, Any] = field(default_factory=dict)

    FORMAT: ClassVar[str] = "causal_wm.crl.umni"


# --- statistics ---------------------------------------------------------------------------------
def partial_correlation(z: np.ndarray, i: int, j: int, given: Sequence[int]) -> float:
    """Sample partial correlation of columns ``i`` and ``j`` of ``z`` ``(N, k)`` given ``given``."""
    cols = [i, j, *given]
    cov = np.atleast_2d(np.cov(z[:, cols], rowvar=False))
    P = np.linalg.pinv(cov)
    r = -P[0, 1] / math.sqrt(P[0, 0] * P[1, 1])
    return float(np.clip(r, -1.0, 1.0))


def fisher_z_test(r: float, num_samples: int, num_given: int) -> float:
    """Two-sided p-value of ``H0: partial correlation = 0`` by Fisher's z transform, for a sample
    partial correlation ``r`` from ``num_samples`` samples given ``num_given`` variables."""
    dof = num_samples - num_given - 3
    if dof <= 0:
        raise ValueError(f"the Fisher z test needs more than {num_given + 3} samples, got {num_samples}")
    r = min(max(r, -1.0 + 1e-15), 1.0 - 1e-15)
    z = math.atanh(r) * math.sqrt(dof)
    return float(2.0 * stats.norm.sf(abs(z)))


def _two_group_split(log_values: np.ndarray) -> tuple[float, float]:
    """Best split of sorted 1-D values into a low and a high group (Otsu: most between-group
    variance). Returns ``(threshold, separation)``: the midpoint between the groups and the distance
    between the largest low value and the smallest high value; ``(inf, 0)`` for fewer than 2 values."""
    v = np.sort(np.asarray(log_values, dtype=np.float64))
    if v.size < 2 or v[-1] - v[0] <= 0:
        return math.inf, 0.0
    best, cut = -1.0, 1
    total = v.sum()
    for k in range(1, v.size):
        m0 = v[:k].mean()
        m1 = (total - v[:k].sum()) / (v.size - k)
        between = k * (v.size - k) * (m1 - m0) ** 2
        if between > best:
            best, cut = between, k
    return 0.5 * (v[cut - 1] + v[cut]), float(v[cut] - v[cut - 1])


def _largest_gap(log_values: np.ndarray) -> tuple[float, float]:
    """The widest gap between consecutive sorted values: ``(midpoint, width)``; ``(inf, 0)`` for
    fewer than 2 values."""
    v = np.sort(np.asarray(log_values, dtype=np.float64))
    if v.size < 2:
        return math.inf, 0.0
    i = int(np.argmax(np.diff(v)))
    return 0.5 * (v[i] + v[i + 1]), float(v[i + 1] - v[i])


# --- linear algebra helpers -----------------------------------------------------------------------
def _null_basis(rows: np.ndarray, n: int) -> np.ndarray:
    """Orthonormal basis ``(n, n - k)`` of the vectors orthogonal to the ``k`` rows ``(k, n)``."""
    if rows.shape[0] == 0:
        return np.eye(n)
    _, _, Vt = np.linalg.svd(rows, full_matrices=True)
    return Vt[rows.shape[0]:].T


def _integer_candidates(M: int, l1: int) -> np.ndarray:
    """All integer vectors ``(B, M)`` with L1 norm ``l1``, gcd 1 and a positive first non-zero."""
    out = []
    for s in range(1, min(M, l1) + 1):
        for parts in itertools.combinations(range(1, l1), s - 1):  # compositions of l1 into s parts
            mags = np.diff([0, *parts, l1])
            if math.gcd(*mags.tolist()) != 1:
                continue
            for support in itertools.combinations(range(M), s):
                for signs in itertools.product((1, -1), repeat=s - 1):
                    w = np.zeros(M, dtype=np.int64)
                    w[list(support)] = mags * np.array((1, *signs))
                    out.append(w)
    return np.array(out, dtype=np.int64).reshape(-1, M)


class _Correlations:
    """The score-difference correlations ``R[i, j]`` through a factor: ``R_w = L_w^T L_w`` with
    ``L_w = sum_m w_m L[:, m, :]`` ``(r, n)``."""

    def __init__(self, S: np.ndarray, scale: float | None = None) -> None:
        M, N, n = S.shape
        flat = S.transpose(1, 0, 2).reshape(N, M * n)
        gram = flat.T @ flat / N
        if scale is None:
            scale = float(np.trace(gram)) / M
            if not scale > 0:
                raise ValueError("all score differences are zero: the environments carry no intervention "
                                 "signal")
        self.scale = scale
        gram /= scale
        vals, vecs = np.linalg.eigh(gram)
        keep = vals > 1e-12 * max(vals[-1], np.finfo(np.float64).tiny)
        self.L = (np.sqrt(vals[keep])[:, None] * vecs[:, keep].T).reshape(-1, M, n)
        self.M, self.n = M, n

    def projected(self, W: np.ndarray, Q: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """``Q^T R_w Q`` ``(B, p, p)`` for the rows ``w`` of ``W`` ``(B, M)``."""
        Lq = self.L @ Q  # (r, M, p)
        out = []
        for start in range(0, len(W), chunk):
            Lw = np.einsum("bm,rmp->brp", W[start: start + chunk], Lq)
            out.append(np.einsum("brp,brq->bpq", Lw, Lw))
        return np.concatenate(out) if out else np.zeros((0, Q.shape[1], Q.shape[1]))

    def cross(self, w: np.ndarray, v: np.ndarray, Q: np.ndarray) -> np.ndarray:
        """``Q^T sum_ij w_i v_j R[i, j] Q`` ``(p, p)``."""
        Lq = self.L @ Q
        return np.einsum("m,rmp->rp", w, Lq).T @ np.einsum("m,rmp->rp", v, Lq)


def _ratios(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalue ratio ``lambda_2 / lambda_1`` ``(B,)``, top eigenvalue and top eigenvector
    ``(B, p)`` of symmetric ``(B, p, p)``."""
    vals, vecs = np.linalg.eigh(P)
    top = np.maximum(vals[:, -1], np.finfo(np.float64).tiny)
    second = np.maximum(vals[:, -2], 0.0) if P.shape[1] > 1 else np.zeros(len(P))
    return second / top, vals[:, -1], vecs[:, :, -1]


# --- the algorithm --------------------------------------------------------------------------------
def _check_counts(envs: list[np.ndarray], n: int | None, dropped: Sequence[int] = ()) -> int:
    """Check the counts and sizes of validated environments; returns ``n``. ``dropped``: the
    environments ``null_envs="drop"`` left out (for the messages)."""
    M = len(envs) - 1
    d = envs[0].shape[1]
    n = M if n is None else int(n)
    after = (f" (after dropping environments {list(dropped)}, which show no detectable effect: "
             "null_envs='drop')" if dropped else "")
    if n < 1:
        if dropped:
            raise ValueError(f"umni_crl: no interventional environment is left{after}")
        raise ValueError(f"n must be positive, got {n}")
    if M < n:
        raise ValueError(f"UMNI-CRL needs at least n={n} interventional environments, got {M}{after}: too few "
                         "for identifiability (the target matrix must have rank n)")
    if d < n:
        raise ValueError(f"observations have d={d} < n={n} dimensions: a linear mixing cannot be injective")
    for m, x in enumerate(envs):
        if len(x) <= n + 3:
            raise ValueError(f"environment {m} has {len(x)} samples; need more than n + 3 = {n + 3}")
    return n


def umni_crl(envs: Sequence[np.ndarray], *, score_diffs: Sequence[np.ndarray] | None = None,
             scores: str = "gaussian", hard: bool = True, n: int | None = None, seed: int = 0,
             device: str = "auto", alpha: float = 0.01, gap: float = 1.0, max_l1: int | None = None,
             calibration_splits: int = 2, snr: float = 8.0,
             score_options: dict[str, Any] | None = None, regimes: Sequence[int] | None = None,
             null_envs: str = "raise") -> UMNIResult:
    """Run UMNI-CRL (module docstring).

    Args:
        envs: ``envs[0]`` observational samples ``(N_0, d)``, ``envs[m]`` the samples ``(N_m, d)`` of
            interventional environment ``m = 1..M``; targets unknown, possibly several nodes each.
        score_diffs: optional ``D^m = s^0 - s^m`` at the samples of ``envs[0]``, one ``(N_0, d)`` array
            per interventional environment; None estimates them with ``scores``.
        scores: estimator of ``causal_wm.crl.scores`` used when ``score_diffs`` is None (fitted on the
            support coordinates); ``"oracle"`` needs ``score_options={"problem": <CRLProblem>}``.
        hard: run the hard-intervention unmixing and graph steps.
        n: number of latents (default ``M``); needs ``n <= M`` and ``n <= d``.
        seed, device: passed to the score estimator.
        alpha: level of the target and Fisher z tests (Bonferroni-corrected inside).
        gap: decades between the rank-one and the other candidates for a search level to be accepted.
            The rule is relative: in a design where no single environment isolates a node (targets
            not triangular in any causal order), the best rank-two single environment can sit a
            decade below the rest and be accepted; with exact scores a larger gap (e.g. 4) sends the
            search on to combinations, whose rank-one members sit at round-off level.
        max_l1: largest L1 norm of the integer search (default ``M + 2``).
        calibration_splits: when the scores are estimated here (``score_diffs`` None, not oracle),
            estimate them again from two random halves of every environment, this many times; half the
            difference measures the error of the full estimate, and the ancestor tests compare each
            second eigenvalue with the error's (averaged over the splits). 0 turns this off.
        snr: an ancestor test finds rank two when the second eigenvalue exceeds ``snr`` times the error's.
        regimes: regime labels of ``envs[1:]`` (keys of ``env_targets``); default ``1..M``.
        score_options: extra options of the score estimator.
        null_envs: what to do with interventional environments that show no detectable effect
            (``causal_wm.crl.scores.null_environment_test``: a Gaussian likelihood-ratio test of mean
            and covariance against ``envs[0]`` at level 1e-3, Bonferroni; with score differences
            given or oracle, a score difference that is zero up to round-off): ``"raise"`` (default)
            refuses them, ``"drop"`` leaves them out (``diagnostics["dropped_envs"]``; ``n`` then
            defaults to the environments left, and fewer left than ``n`` is refused), ``"keep"``
            skips the test.

    Data of extreme magnitude (beyond ``2^±100``) are divided by a power of two first
    (``diagnostics["data_scale"]``); the encoders read the original observations.
    """
    envs = validate_envs(envs)
    check_null_policy(null_envs)
    M = len(envs) - 1
    labels = regime_labels(regimes, M)
    d = envs[0].shape[1]
    N0 = len(envs[0])
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    started = time.perf_counter()
    if score_diffs is None and scores == "oracle":
        from causal_wm.crl.scores import score_differences

        # on the original arrays: the oracle recognises its problem's observations
        score_diffs = score_differences(envs, method="oracle", n=n, **(score_options or {}))
    if score_diffs is not None:
        if isinstance(score_diffs, np.ndarray) or len(score_diffs) != M:
            raise ValueError(f"need one score difference per interventional environment: {len(score_diffs)} "
                             f"for {M} environments")
        checked = []
        for m, D in enumerate(score_diffs):
            D = np.asarray(D, dtype=np.float64)
            if D.shape != (N0, d):
                raise ValueError(f"score_diffs[{m}] must have shape ({N0}, {d}) (at the samples of envs[0]), "
                                 f"got {D.shape}")
            if not np.all(np.isfinite(D)):
                raise ValueError(f"score_diffs[{m}] contains NaN or infinite values")
            checked.append(D)
        score_diffs = checked
    if null_envs != "drop":
        _check_counts(envs, n)
    envs, data_scale = rescale_envs(envs, "umni_crl")
    if score_diffs is not None and data_scale != 1.0:
        score_diffs = [D * data_scale for D in score_diffs]  # gradients in x / scale
    n_given = n is not None
    kept, null_info = screen_null_envs(envs, M if n is None else int(n), null_envs, "umni_crl", score_diffs)
    dropped = null_info["dropped"]
    envs, labels, score_diffs = keep_envs(kept, envs, labels, score_diffs)
    n = _check_counts(envs, n, dropped)
    M = len(envs) - 1
    support = Support(envs, n)
    lead = support.eigenvalues[0]
    if support.eigenvalues[n - 1] <= 1e-9 * lead:
        rank = int(np.sum(support.eigenvalues > 1e-9 * lead))
        cause = (f"n defaults to the number of interventional environments (umni_crl got M = {M}); UMNI-CRL "
                 f"accepts more environments than latents: pass n={rank} if the data have {rank} latents"
                 if not n_given else f"the mixing is not injective or n is too large (pass n={rank} if the data "
                 f"have {rank} latents)")
        raise ValueError(f"the observations span fewer than n={n} dimensions (pooled covariance "
                         f"eigenvalue {n} is {support.eigenvalues[n - 1]:.3g}, largest {lead:.3g}): "
                         f"rank-deficient data; {cause}")
    Y = [support.project(x) for x in envs]
    noise_diffs = None
    if score_diffs is None:
        # estimated on the support coordinates directly: the same scores, without d-dim round trips
        S, noise_diffs = _estimate_scores(Y, scores, n, seed, device, score_options or {},
                                          calibration_splits)
        S = np.stack(S)
    else:
        S = np.stack([D @ support.basis for D in score_diffs])
    if not np.all(np.isfinite(S)):
        raise ValueError("score differences are not finite on the support of the data")
    seconds_scores = time.perf_counter() - started
    # Work in coordinates whitened by the observational covariance: then eigenvalue ratios compare
    # latent-level magnitudes instead of the arbitrary scales of the mixing (a badly conditioned G
    # can make the second eigenvalue of a rank-two combination look like noise).
    vals, vecs = np.linalg.eigh(np.cov(Y[0], rowvar=False).reshape(n, n))
    if not vals[0] > 1e-12 * max(vals[-1], np.finfo(np.float64).tiny):
        raise ValueError(f"rank-deficient observational environment: its covariance on the n={n}-dim support of "
                         "the pooled data is singular (envs[0] spans fewer dimensions than the "
                         "interventional environments together: a latent constant in envs[0], or n too large)")
    whiten = (vecs / np.sqrt(vals)) @ vecs.T  # y' = whiten @ y; scores transform with its inverse
    unwhiten = (vecs * np.sqrt(vals)) @ vecs.T
    y0 = Y[0]
    Y = [y @ whiten for y in Y]
    S = S @ unwhiten
    if noise_diffs:
        noise_diffs = [[D @ unwhiten for D in split] for split in noise_diffs]
    corr = _Correlations(S)
    noise = None
    if noise_diffs:
        noise = [_Correlations(np.stack(split), scale=corr.scale) for split in noise_diffs]
    diag: dict[str, Any] = {"n": n, "num_envs": M,
                            "support_eigenvalues": support.eigenvalues[: n + 1].tolist(),
                            "data_scale": data_scale, "null_env_test": null_info, "dropped_envs": list(dropped)}

    H, W_order, order_diag = _causal_order(corr, n, gap, M + 2 if max_l1 is None else int(max_l1),
                                           [_moments(y) for y in Y])
    diag["order"] = order_diag
    Z = [y @ H.T for y in Y]
    targets, target_diag = _env_targets(Z, alpha)
    diag["targets"] = target_diag
    H_anc, W_anc, anc, anc_diag = _ancestors(corr, H, W_order, order_diag, targets, noise, snr)
    diag["ancestors"] = anc_diag
    # encoder rows act on centred coordinates; x @ encoder.T differs from them by a constant only
    H = H @ whiten  # encoder rows in the support coordinates
    H_anc, choice_diag = _interventional_residual_rows(H_anc, anc, [y @ H_anc.T for y in Y], targets)
    diag["ancestors"]["envs_per_latent"] = choice_diag
    H_anc = H_anc @ whiten
    to_x = support.basis.T / data_scale  # the encoders read the original (unscaled) observations
    order_encoder = H @ to_x
    ancestor_encoder = H_anc @ to_x
    if hard:
        U, unmix_diag = _unmix(Z, targets)
        diag["unmixing"] = unmix_diag
        H_hard = U @ H
        graph, graph_diag = _hard_graph(y0 @ H_hard.T, alpha)
        diag["graph"] = graph_diag
        encoder = H_hard @ to_x
    else:
        graph = anc.copy()
        encoder = ancestor_encoder
    diag["seconds"] = {"scores": seconds_scores, "algorithm": time.perf_counter() - started - seconds_scores}
    env_targets = {r: tuple(int(i) for i in np.flatnonzero(row)) for r, row in
                   zip(labels, targets, strict=True)}
    return UMNIResult(encoder=encoder, graph=graph.astype(np.int64), hard=hard, env_targets=env_targets,
                      target_matrix=targets,
                      order_encoder=order_encoder, ancestor_encoder=ancestor_encoder,
                      ancestor_graph=anc.astype(np.int64), order_weights=W_order, ancestor_weights=W_anc,
                      diagnostics=diag)


def _estimate_scores(envs: list[np.ndarray], method: str, n: int, seed: int, device: str,
                     options: dict[str, Any], splits: int):
    """Score differences at ``envs[0]`` (each ``(N_0, n)``; envs in support coordinates) and ``splits``
    error proxies of the same size: half the
    difference of the estimates from two random halves of every environment (each half estimate has
    twice the error variance of the full one, their difference four times)."""
    from causal_wm.crl.scores import make_estimator

    def estimate(fit_envs: list[np.ndarray]) -> list[np.ndarray]:
        est = make_estimator(method, n=n, seed=seed, device=device, **options).fit(fit_envs)
        if isinstance(est, GaussianScores):
            # the fitted Gaussian scores are affine: evaluate them with one product per environment
            u = est.support.project(envs[0])
            P0, mu0 = est.precisions[0], est.means[0]
            return [(-u @ (P0 - P) + (mu0 @ P0 - mu @ P)) @ est.support.basis.T
                    for P, mu in zip(est.precisions[1:], est.means[1:], strict=True)]
        return est(envs[0])

    diffs = estimate(envs)
    rng = np.random.default_rng(seed)
    errors = []
    for _ in range(splits):
        perms = [rng.permutation(len(x)) for x in envs]
        a = estimate([x[p[: len(x) // 2]] for x, p in zip(envs, perms, strict=True)])
        b = estimate([x[p[len(x) // 2:]] for x, p in zip(envs, perms, strict=True)])
        errors.append([0.5 * (da - db) for da, db in zip(a, b, strict=True)])
    return diffs, errors or None


def _two_valued_spread(moments: list, H: np.ndarray, h: np.ndarray) -> float:
    """How far the residual variances of latent ``h . y`` given the latents ``H y`` are, across all
    environments, from taking just two values (log scale, within-group sum of squares of the best
    two-group split). A node's mechanism changes the same way in every environment that hits it, so
    a true node has exactly two conditionals (unchanged, changed); a mixture that only looks rank one
    by a numerical coincidence has more."""
    rows = np.vstack([H, h[None, :]])
    k = H.shape[0]
    logs = np.sort([math.log(max(_residual_ss(rows @ S @ rows.T, k) / (N - k - 1), 1e-300))
                    for N, _, S in moments])
    best = math.inf
    for cut in range(1, len(logs)):
        a, b = logs[:cut], logs[cut:]
        best = min(best, float(((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()))
    return best


def _causal_order(corr: _Correlations, n: int, gap: float, max_l1: int, moments: list | None = None,
                  max_candidates: int = 200_000):
    """Step 2: encoder rows ``H`` ``(n, n)`` (orthonormal, in causal order) and weights ``(M, n)``."""
    M = corr.M
    H = np.zeros((0, n))
    W = np.zeros((M, n))
    accepted: list[float] = []
    rejected: list[float] = []
    steps = []
    levels = {}
    for k in range(n):
        Q = _null_basis(H, n)
        p = Q.shape[1]
        if p == 1:
            # one direction left: any w with energy there isolates the last node; take the most
            # concentrated single environment
            cands = np.eye(M, dtype=np.int64)
            P = corr.projected(cands.astype(float), Q)[:, 0, 0]
            total = np.einsum("bpp->b", corr.projected(cands.astype(float), np.eye(n)))
            best = int(np.argmax(P / np.maximum(total, 1e-300)))
            w, h = cands[best].astype(float), Q[:, 0]
            steps.append({"level": 1, "ratio": 0.0, "candidates": M, "clear": True})
        else:
            seen_w, seen_r, seen_v = [], [], []
            clear = False
            level = 1
            for level in range(1, max_l1 + 1):
                if level not in levels:
                    levels[level] = _integer_candidates(M, level)
                cands = levels[level]
                if len(cands) == 0:
                    continue
                if sum(len(c) for c in seen_w) + len(cands) > max_candidates and seen_w:
                    break
                r, _, v = _ratios(corr.projected(cands.astype(float), Q))
                seen_w.append(cands)
                seen_r.append(r)
                seen_v.append(v)
                allr = np.concatenate(seen_r)
                logs = np.log10(np.maximum(allr, 1e-300))
                thr, sep = _largest_gap(logs)
                if sep >= gap and logs.min() < thr:
                    clear = True
                    break
            allw = np.concatenate(seen_w).astype(float)
            allr = np.concatenate(seen_r)
            allv = np.concatenate(seen_v)
            best = int(np.argmin(allr))
            if clear and moments is not None:
                low = np.flatnonzero(np.log10(np.maximum(allr, 1e-300)) < thr)
                if low.size > 1:
                    spread = [_two_valued_spread(moments, H, Q @ allv[i]) for i in low]
                    best = int(low[int(np.argmin(spread))])
            w, ratio, v = allw[best], float(allr[best]), allv[best]
            if clear:
                logs = np.log10(np.maximum(allr, 1e-300))
                thr, _ = _largest_gap(logs)
                accepted.append(ratio)
                rejected.extend(allr[logs > thr].tolist())
            h = Q @ v
            steps.append({"level": int(level), "ratio": ratio, "candidates": len(allr), "clear": clear})
        g = math.gcd(*np.abs(w).astype(np.int64).tolist()) if np.all(w == np.round(w)) else 1
        W[:, k] = w / max(g, 1)
        H = np.vstack([H, h / np.linalg.norm(h)])
    return H, W, {"steps": steps, "accepted_ratios": accepted, "rejected_ratios": rejected}


def _interventional_residual_rows(H: np.ndarray, anc: np.ndarray, Z: list[np.ndarray], targets: np.ndarray):
    """Choose one member of each latent's ancestor family.

    Soft interventions fix row ``j`` of ``H`` ``(n, n)`` only up to adding rows of ``j``'s ancestors
    (``anc[:, j]``). Take the member that is uncorrelated with its learned ancestors in the
    environments that intervene on ``j`` (``targets[:, j]``; within-environment centred, pooled):
    the regression of ``zh_j`` on the ancestors' latents in those environments is subtracted. This is
    the unmixing of step 5 restricted to ancestors: exact when the intervention on ``j`` is hard (then
    ``z_j`` is independent of its ancestors there), and for a soft one it keeps the part of the parent
    mechanism that the intervention did not change instead of removing all of it (the observational
    residual, or the smallest-norm row, removes more of ``z_j``). A latent that no environment is
    estimated to hit falls back to the observational environment ``Z[0]``.

    Args:
        H: ``(n, n)`` encoder rows up to ancestors, acting on the coordinates of ``Z``.
        anc: ``(n, n)`` bool ancestor relation, ``anc[i, j]`` iff ``i`` is an ancestor of ``j``.
        Z: ``Z[m]`` ``(N_m, n)`` latents ``y @ H.T`` of environment ``m = 0..M``.
        targets: ``(M, n)`` estimated target matrix.

    Returns ``(rows (n, n), envs_per_latent)``, the environments used for each latent.
    """
    out = H.copy()
    used: list[list[int]] = []
    for j in range(H.shape[0]):
        a = np.flatnonzero(anc[:, j])
        envs = [m for m in range(1, len(Z)) if targets[m - 1, j]] or [0]
        used.append(envs if a.size else [])
        if not a.size:
            continue
        scatter = sum(_moments(Z[m])[2] for m in envs)
        beta = np.linalg.solve(scatter[np.ix_(a, a)], scatter[a, j])
        out[j] = H[j] - beta @ H[a]
    return out, used


def _cancelling_coefficients(wj: np.ndarray, wt: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate coefficients ``a = num / den`` of ``w_j + a w_t``: the component of node ``t`` in
    ``c_j = T^T w_j`` is an integer of size at most ``|w_j|_1`` and the one in ``c_t`` a non-zero integer
    of size at most ``|w_t|_1`` (``T`` is 0/1), so cancelling needs ``a = -p / q`` with ``|p| <= |w_j|_1``
    and ``1 <= q <= |w_t|_1`` (both capped at ``cap``). Real weights fall back to a fine grid."""
    if not (np.all(wj == np.round(wj)) and np.all(wt == np.round(wt))):
        a = np.tan(np.linspace(-np.pi / 2, np.pi / 2, 2001)[1:-1])
        return a, np.ones_like(a)
    P = int(min(np.abs(wj).sum(), cap))
    Qm = int(min(max(np.abs(wt).sum(), 1), cap))
    pairs = {(0, 1)}
    for q in range(1, Qm + 1):
        for p in range(-P, P + 1):
            if p != 0 and math.gcd(p, q) == 1:
                pairs.add((p, q))
    num, den = map(np.array, zip(*sorted(pairs), strict=True))
    return num.astype(float), den.astype(float)


def _ancestors(corr: _Correlations, H: np.ndarray, W: np.ndarray, order_diag: dict, targets: np.ndarray,
               noise: list[_Correlations] | None = None, snr: float = 8.0, max_coefficient: int = 16):
    """Step 3: encoder up to ancestors, its weights and the ancestor relation ``(n, n)``.

    With the estimated target matrix ``T`` ``(M, n)`` the node coefficients ``c = T^T w`` of every
    combination are known, so the coefficient that cancels node ``t`` in ``w_j + a w_t`` is
    ``a = -c_j[t] / c_t[t]``: one rank test per pair, and no scan over ``a`` that could meet a
    spurious rank-one point (for Gaussian scores ``det = 0`` of a 2 x 2 block has real roots). Without
    a usable ``T`` (a zero ``c_t[t]``) the exact candidate set of ``_cancelling_coefficients`` is
    scanned, as the published algorithm does with integers.
    """
    n = H.shape[0]
    H = H.copy()
    W = W.astype(float).copy()
    C = targets.T.astype(float) @ W  # (n, n): column j = node coefficients of combination j
    anc = np.zeros((n, n), dtype=bool)
    acc = np.log10(np.maximum(order_diag["accepted_ratios"], 1e-300))
    rej = np.log10(np.maximum(order_diag["rejected_ratios"], 1e-300))
    if acc.size and rej.size:
        threshold = 0.5 * (acc.max() + np.median(rej))
    elif acc.size:
        threshold = acc.max() + 2.0
    else:
        threshold = -3.0
    tests = []
    for t in reversed(range(n)):
        for j in range(t + 1, n):
            if anc[t, j]:
                continue
            keep = [i for i in range(j) if i != t and not anc[t, i]]
            Q = _null_basis(H[keep], n)
            wj, wt = W[:, j], W[:, t]
            Rjj = corr.cross(wj, wj, Q)
            Rtt = corr.cross(wt, wt, Q)
            X = corr.cross(wj, wt, Q)
            X = X + X.T
            if abs(C[t, t]) > 0.5:  # integer-valued for integer weights
                num, den = np.array([-C[t, j]]), np.array([C[t, t]])
            else:
                num, den = _cancelling_coefficients(wj, wt, max_coefficient)
            a = num / den
            P = Rjj[None] + a[:, None, None] * X[None] + (a**2)[:, None, None] * Rtt[None]
            r, _, v = _ratios(P)
            best = int(np.argmin(r))
            ratio = float(r[best])
            signal_noise = math.nan
            if noise:
                w = wj + a[best] * wt
                top = v[best][:, None]
                proj = np.eye(len(top)) - top @ top.T
                second = float(np.linalg.eigvalsh(P[best])[-2])
                error = float(np.mean([np.linalg.eigvalsh(proj @ e.cross(w, w, Q) @ proj)[-1]
                                       for e in noise]))
                signal_noise = second / max(error, 1e-300)
                is_ancestor = signal_noise > snr
            else:
                is_ancestor = bool(np.log10(max(ratio, 1e-300)) > threshold)
            tests.append({"t": t, "j": j, "ratio": ratio, "a": float(a[best]), "ancestor": is_ancestor,
                          "signal_noise": signal_noise, "candidates": len(a)})
            if is_ancestor:
                anc[t, j] = True
                anc[t] |= anc[j]
            else:
                h = Q @ v[best]
                h /= np.linalg.norm(h)
                H[j] = h if h @ H[j] >= 0 else -h
                w_new = den[best] * wj + num[best] * wt
                if np.all(w_new == np.round(w_new)):
                    g = math.gcd(*np.abs(w_new).astype(np.int64).tolist())
                    w_new = w_new / max(g, 1)
                W[:, j] = w_new
                C[:, j] = targets.T @ w_new
    anc = transitive_closure(anc.astype(np.int64)).astype(bool)
    return H, W, anc, {"threshold_log10": float(threshold), "tests": tests}


def _moments(z: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Sample count, mean ``(n,)`` and scatter matrix ``(n, n)`` (sum of centred outer products)."""
    mu = z.mean(axis=0)
    zc = z - mu
    return len(z), mu, zc.T @ zc


def _pooled(a: tuple[int, np.ndarray, np.ndarray], b: tuple[int, np.ndarray, np.ndarray]):
    """Moments of two samples pooled into one (common mean)."""
    na, ma, Sa = a
    nb, mb, Sb = b
    n = na + nb
    delta = mb - ma
    return n, (na * ma + nb * mb) / n, Sa + Sb + np.outer(delta, delta) * na * nb / n


def _residual_ss(scatter: np.ndarray, k: int) -> float:
    """Residual sum of squares of latent ``k`` regressed (with intercept) on latents ``< k``, from the
    scatter matrix."""
    if k == 0:
        return float(scatter[0, 0])
    coef = np.linalg.solve(scatter[:k, :k], scatter[:k, k])
    return float(scatter[k, k] - scatter[:k, k] @ coef)


def _env_targets(Z: list[np.ndarray], alpha: float):
    """Step 4a: ``(M, n)`` estimated targets by a Chow likelihood-ratio test of the conditional of
    latent ``k`` given latents ``< k`` (Gaussian, linear: coefficients, intercept and residual
    variance, ``k + 2`` degrees of freedom) between env ``m`` and env 0."""
    M, n = len(Z) - 1, Z[0].shape[1]
    moments = [_moments(z) for z in Z]
    effect = np.zeros((M, n))
    pvals = np.ones((M, n))
    for m in range(1, M + 1):
        pooled = _pooled(moments[0], moments[m])
        for k in range(n):
            n0, nm, npool = moments[0][0], moments[m][0], pooled[0]
            rss0, rssm = _residual_ss(moments[0][2], k), _residual_ss(moments[m][2], k)
            rssp = _residual_ss(pooled[2], k)
            stat = npool * math.log(rssp / npool) - n0 * math.log(rss0 / n0) - nm * math.log(rssm / nm)
            stat = max(stat, 0.0)
            pvals[m - 1, k] = float(stats.chi2.sf(stat, df=k + 2))
            effect[m - 1, k] = stat / npool  # per-sample effect size
    significant = pvals < alpha / (M * n)
    logs = np.log10(np.maximum(effect, 1e-300))
    thr, sep = _two_group_split(logs.ravel())
    large = logs > thr if sep >= 1.0 else np.ones_like(significant)
    targets = (significant & large).astype(np.int64)
    return targets, {"effect": effect.tolist(), "threshold_log10": float(thr), "separation": float(sep)}


def _unmix(Z: list[np.ndarray], targets: np.ndarray):
    """Step 4b: lower-triangular ``U`` ``(n, n)`` with unit diagonal such that ``Z @ U.T`` has every
    latent independent of its predecessors in the environments that hit it."""
    n = Z[0].shape[1]
    U = np.eye(n)
    used = []
    for k in range(1, n):
        envs = [m for m in range(1, len(Z)) if targets[m - 1, k]]
        if not envs:
            used.append([])
            continue
        scatter = sum(_moments(Z[m])[2] for m in envs)
        beta = np.linalg.solve(scatter[:k, :k], scatter[:k, k])
        U[k, :k] = -beta
        used.append(envs)
    return U, {"envs_per_latent": used}


def _hard_graph(z0: np.ndarray, alpha: float, separation: float = 0.75):
    """Step 5: edges ``s -> k`` for ``s < k`` from observational latents ``(N, n)``.

    Every pair is tested by Fisher z on the partial correlation given the other predecessors of
    ``k`` (level ``alpha``, Bonferroni). With many samples a small residual mixing of the learned
    latents makes tiny partial correlations significant, so when the absolute partial correlations of
    the significant pairs fall into two groups at least ``separation`` decades apart, only the upper
    group are edges.
    """
    N, n = z0.shape
    num_tests = max(n * (n - 1) // 2, 1)
    tests = []
    for k in range(1, n):
        for s in range(k):
            given = [i for i in range(k) if i != s]
            r = partial_correlation(z0, s, k, given)
            p = fisher_z_test(r, N, len(given))
            tests.append({"s": s, "k": k, "partial_correlation": r, "p_value": p})
    significant = [t for t in tests if t["p_value"] < alpha / num_tests]
    logs = np.log10(np.maximum([abs(t["partial_correlation"]) for t in significant], 1e-300))
    thr, sep = _two_group_split(logs)
    cut = thr if sep >= separation else -math.inf
    A = np.zeros((n, n), dtype=np.int64)
    for t in tests:
        t["edge"] = bool(t["p_value"] < alpha / num_tests and math.log10(max(abs(t["partial_correlation"]),
                                                                              1e-300)) > cut)
        A[t["s"], t["k"]] = int(t["edge"])
    return A, {"tests": tests, "threshold_log10": float(cut), "separation": float(sep)}

"""Score-difference estimators (docs/science.md sections 2 and 3).

Every estimator answers the same question: given samples of an observational environment
``envs[0]`` ``(N_0, d)`` and of interventional environments ``envs[1:]`` ``(N_m, d)``, what is

    D^m(x) = s^0(x) - s^m(x) = grad_x log (p^0(x) / p^m(x))      (observational minus interventional)

at given points ``x`` ``(N, d)``? ``score_differences`` evaluates it at the samples of one reference
environment (``envs[0]`` by default), as LSCALE-I and UMNI-CRL need; ``pair_difference(x, a, b)``
gives ``s^a(x) - s^b(x)`` for any two environments (first minus second), as GSCALE-I needs for two
interventions on the same node.

Estimators (``method``):

- ``oracle``: exact, from a ``causal_wm.scm.CRLProblem`` (``OracleScores``); ground truth for tests.
- ``gaussian``: a Gaussian per environment on the ``n``-dim support of the data (``GaussianScores``);
  exact up to estimation error for linear Gaussian SCMs with linear mixing.
- ``ssm`` / ``dsm``: an MLP score network per environment trained by sliced or denoising score
  matching (``ScoreMatchingScores``).
- ``classifier``: an MLP logistic classifier per environment pair whose logit estimates
  ``log p^a / p^b``; the score difference is the logit's input gradient (``ClassifierScores``).

Support. Observations of a linear mixing fill an ``n``-dim subspace of ``R^d``; densities (and so
scores) exist only on it. The learned estimators therefore work in ``n`` coordinates
``y = (x - center) @ basis`` (``basis`` ``(d, n)``: the top-``n`` eigenvectors of the covariance of
all environments pooled) and map scores back with ``s_x = s_y @ basis.T``, so every estimated
difference lies in the span of ``basis``; the oracle's ``J^{+T} D_Z`` lies in the column space of
the mixing, the same span. When ``n`` is None it is the numerical rank of the pooled covariance:
the number of eigenvalues above ``rank_tol * largest`` (``rank_tol = 1e-8`` by default), which is
exact for noiseless data and equals ``d`` (no projection) for data that fill ``R^d``. For noisy
observations pass ``n``.

Error measure (``score_error``): relative mean squared error over all environments and samples,
``sum_m sum_i ||D_hat^m(x_i) - D^m(x_i)||^2 / sum_m sum_i ||D^m(x_i)||^2``; 0 is exact, 1 is as bad
as predicting zero.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from causal_wm._torch import TrainResult, generator, smooth_mlp, train_early_stopping
from causal_wm.crl.environments import validate_envs
from causal_wm.device import resolve_device

if TYPE_CHECKING:
    from causal_wm.scm.protocol import CRLProblem

METHODS = ("oracle", "gaussian", "ssm", "dsm", "classifier")


# --- the support projection ------------------------------------------------------------------------
def _check_points(x: np.ndarray, d: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"points must have shape (N, {d}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("points contain NaN or infinite values")
    return x


class Support:
    """Affine coordinates on the ``n``-dim support of the data: ``y = (x - center) @ basis``.

    Attributes:
        center: ``(d,)`` pooled mean of all environments.
        basis: ``(d, n)`` orthonormal columns, the top-``n`` eigenvectors of the pooled covariance.
        eigenvalues: ``(d,)`` eigenvalues of the pooled covariance, descending (for diagnostics).
    """

    def __init__(self, envs: Sequence[np.ndarray], n: int | None = None, *, rank_tol: float = 1e-8) -> None:
        envs = validate_envs(envs, min_envs=1)
        d = envs[0].shape[1]
        if n is not None and not 1 <= int(n) <= d:
            raise ValueError(f"n must be between 1 and d={d}, got n={n}")
        total = sum(len(x) for x in envs)
        if total < 2:
            raise ValueError("need at least 2 samples in total to estimate the support")
        # pooled covariance from per-environment centred blocks: no concatenated copy of the data,
        # and no cancellation when the data sit far from the origin
        means = [x.mean(axis=0) for x in envs]
        self.center = sum(len(x) * mu for x, mu in zip(envs, means, strict=True)) / total
        scatter = np.zeros((d, d))
        for x, mu in zip(envs, means, strict=True):
            xc = x - mu
            shift = mu - self.center
            scatter += xc.T @ xc + len(x) * np.outer(shift, shift)
        cov = scatter / (total - 1)
        eigenvalues, vectors = np.linalg.eigh(cov)
        order = np.argsort(eigenvalues)[::-1]
        self.eigenvalues = eigenvalues[order]
        if n is None:
            top = max(self.eigenvalues[0], np.finfo(np.float64).tiny)
            n = int(np.sum(self.eigenvalues > rank_tol * top))
            if n == 0:
                raise ValueError("the pooled covariance is zero: all samples are identical")
        self.n = int(n)
        self.d = d
        self.basis = vectors[:, order[: self.n]]

    def project(self, x: np.ndarray) -> np.ndarray:
        """Coordinates ``(N, n)`` of points ``x`` ``(N, d)``."""
        return (x - self.center) @ self.basis

    def lift_gradient(self, g: np.ndarray) -> np.ndarray:
        """A gradient (score) ``(N, n)`` with respect to ``y`` as a gradient ``(N, d)`` with respect to
        ``x`` (chain rule through ``y = (x - center) @ basis``)."""
        return g @ self.basis.T


# --- the common interface --------------------------------------------------------------------------
class ScoreDifferenceEstimator(ABC):
    """Base class: fit on environments, then evaluate score differences anywhere.

    Subclasses implement ``fit`` and ``pair_difference``. ``envs[0]`` is the observational
    environment; ``__call__(x)`` returns ``[s^0(x) - s^m(x) for m = 1..M]``, each ``(N, d)``.
    """

    num_envs: int = 0
    d: int = 0

    @abstractmethod
    def fit(self, envs: Sequence[np.ndarray]) -> ScoreDifferenceEstimator:
        """Fit on ``envs`` (``envs[0]`` observational), each ``(N_m, d)``; returns ``self``."""

    @abstractmethod
    def pair_difference(self, x: np.ndarray, a: int, b: int) -> np.ndarray:
        """``s^a(x) - s^b(x)`` ``(N, d)`` at points ``x`` ``(N, d)`` (first minus second)."""

    def _check_fitted(self) -> None:
        if self.num_envs == 0:
            raise ValueError(f"{type(self).__name__} is not fitted; call fit(envs) first")

    def _check_pair(self, a: int, b: int) -> tuple[int, int]:
        self._check_fitted()
        for e in (a, b):
            if not 0 <= int(e) < self.num_envs:
                raise ValueError(f"environment index {e} out of range 0..{self.num_envs - 1}")
        if a == b:
            raise ValueError(f"a pair needs two different environments, got ({a}, {b})")
        return int(a), int(b)

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """``[s^0(x) - s^m(x) for m = 1..M]``, each ``(N, d)``, at points ``x`` ``(N, d)``."""
        self._check_fitted()
        return self.differences_between(x, [(0, m) for m in range(1, self.num_envs)])

    def differences_between(self, x: np.ndarray, pairs: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """``[s^a(x) - s^b(x) for (a, b) in pairs]``, each ``(N, d)`` (first minus second)."""
        return [self.pair_difference(x, a, b) for a, b in pairs]


class OracleScores(ScoreDifferenceEstimator):
    """Exact score differences of a ``CRLProblem`` (its latent SCM pushed through the known mixing).

    ``fit`` only checks that the environments match the problem's. Points must be observations of
    the problem whose latents are known, so ``pair_difference`` accepts only the observations of one
    of the problem's environments (found by identity or equality); ``at_reference`` is the direct form.
    """

    def __init__(self, problem: CRLProblem) -> None:
        self.problem = problem
        self.num_envs = len(problem.observations)
        self.d = problem.d

    def fit(self, envs: Sequence[np.ndarray] | None = None) -> OracleScores:
        if envs is not None:
            envs = validate_envs(envs)
            if len(envs) != self.num_envs or any(
                    x.shape != o.shape for x, o in zip(envs, self.problem.observations, strict=True)):
                raise ValueError("the oracle's environments must be the problem's observations")
        return self

    def _latents_of(self, x: np.ndarray) -> np.ndarray:
        for obs, z in zip(self.problem.observations, self.problem.latents, strict=True):
            if x is obs or (x.shape == obs.shape and np.array_equal(x, obs)):
                return z
        raise ValueError("the oracle knows latents only at the problem's own observations; pass one "
                         "environment's observations (problem.observations[k])")

    def pair_difference(self, x: np.ndarray, a: int, b: int) -> np.ndarray:
        a, b = self._check_pair(a, b)
        z = self._latents_of(np.asarray(x))
        ivs = self.problem.interventions
        return self.problem.mixing.pushforward_score(z, self.problem.scm.score_difference(z, ivs[a], ivs[b]))

    def at_reference(self, reference: int = 0) -> list[np.ndarray]:
        """``[s^0 - s^m]`` ``(N_ref, d)`` at the observations of environment ``reference``."""
        return self.problem.oracle_score_differences(reference)


class GaussianScores(ScoreDifferenceEstimator):
    """A Gaussian per environment on the ``n``-dim support: ``s^m(y) = -P_m (y - mu_m)``.

    ``mu_m`` ``(n,)`` and ``P_m`` ``(n, n)`` (inverse of the unbiased sample covariance) are fitted
    in the support coordinates ``y``; scores are mapped back to ``x`` with the support basis.

    Args:
        n: support dimension (None: numerical rank of the pooled covariance, see the module docstring).
        rank_tol: relative eigenvalue tolerance of that rank rule.
    """

    def __init__(self, n: int | None = None, *, rank_tol: float = 1e-8) -> None:
        self.n = n
        self.rank_tol = rank_tol

    def fit(self, envs: Sequence[np.ndarray]) -> GaussianScores:
        envs = validate_envs(envs)
        self.support = Support(envs, self.n, rank_tol=self.rank_tol)
        k = self.support.n
        self.means, self.precisions = [], []
        for m, x in enumerate(envs):
            if len(x) <= k:
                raise ValueError(f"environment {m} has {len(x)} samples; a covariance in {k} dimensions "
                                 f"needs at least {k + 1}")
            y = self.support.project(x)
            cov = np.cov(y, rowvar=False).reshape(k, k)
            eig = np.linalg.eigvalsh(cov)
            if eig[0] <= 1e-12 * max(eig[-1], np.finfo(np.float64).tiny):
                raise ValueError(f"environment {m} has a singular covariance on the {k}-dim support; "
                                 "pass a smaller n or check the data")
            self.means.append(y.mean(axis=0))
            self.precisions.append(np.linalg.inv(cov))
        self.num_envs = len(envs)
        self.d = envs[0].shape[1]
        return self

    def score(self, x: np.ndarray, m: int) -> np.ndarray:
        """Estimated score ``s^m(x)`` ``(N, d)`` of environment ``m``."""
        self._check_fitted()
        y = self.support.project(_check_points(x, self.d))
        return self.support.lift_gradient(-(y - self.means[m]) @ self.precisions[m])

    def pair_difference(self, x: np.ndarray, a: int, b: int) -> np.ndarray:
        return self.differences_between(x, [(a, b)])[0]

    def differences_between(self, x: np.ndarray, pairs: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        pairs = [self._check_pair(a, b) for a, b in pairs]
        y = self.support.project(_check_points(x, self.d))
        out = []
        for a, b in pairs:
            # s^a - s^b = -P_a (y - mu_a) + P_b (y - mu_b) = -y (P_a - P_b) + (P_a mu_a - P_b mu_b)
            g = -y @ (self.precisions[a] - self.precisions[b]) + (
                self.means[a] @ self.precisions[a] - self.means[b] @ self.precisions[b])
            out.append(self.support.lift_gradient(g))
        return out


# --- learned estimators (torch) ------------------------------------------------------------------------
def _gaussian_fit(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(k,)`` and precision ``(k, k)`` of samples ``u`` ``(N, k)``."""
    cov = np.atleast_2d(np.cov(u, rowvar=False))
    return u.mean(axis=0), np.linalg.inv(cov)


class _LearnedScores(ScoreDifferenceEstimator):
    """Shared machinery of the torch estimators: support projection, whitening, splits, evaluation.

    The networks see whitened support coordinates ``u = ((x - center) @ basis) / scale`` with
    ``scale`` ``(n,)`` the pooled standard deviations along the basis, so one set of defaults fits
    data of any scale; gradients with respect to ``u`` are mapped back by the chain rule.
    """

    def __init__(self, *, n: int | None = None, rank_tol: float = 1e-8, hidden: int = 64, depth: int = 2,
                 epochs: int = 100, batch_size: int = 512, lr: float = 2e-3, weight_decay: float = 0.0,
                 patience: int = 5, lr_decays: int = 3, val_fraction: float = 0.2, gaussian_init: bool = True,
                 seed: int = 0, device: str | torch.device = "auto", progress: bool = False) -> None:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if batch_size < 1 or epochs < 0 or patience < 1 or lr_decays < 0:
            raise ValueError(f"need batch_size >= 1, epochs >= 0, patience >= 1, lr_decays >= 0; got "
                             f"{batch_size}, {epochs}, {patience}, {lr_decays}")
        self.n, self.rank_tol = n, rank_tol
        self.hidden, self.depth, self.epochs, self.batch_size = hidden, depth, epochs, batch_size
        self.lr, self.weight_decay, self.patience, self.lr_decays = lr, weight_decay, patience, lr_decays
        self.val_fraction = val_fraction
        self.gaussian_init, self.seed, self.progress = gaussian_init, seed, progress
        self.device = resolve_device(device)
        self.train_results: dict[Any, TrainResult] = {}

    def _prepare(self, envs: Sequence[np.ndarray]) -> list[np.ndarray]:
        envs = validate_envs(envs)
        self.support = Support(envs, self.n, rank_tol=self.rank_tol)
        k = self.support.n
        self.scale = np.sqrt(np.maximum(self.support.eigenvalues[:k], np.finfo(np.float64).tiny))
        self.num_envs, self.d = len(envs), envs[0].shape[1]
        rng = np.random.default_rng(self.seed)
        self._train_u, self._val_u = [], []
        for m, x in enumerate(envs):
            num_val = round(self.val_fraction * len(x))
            if len(x) - num_val <= k or num_val < 2:
                raise ValueError(f"environment {m} has {len(x)} samples: too few for a {k}-dim fit with a "
                                 f"{self.val_fraction:.0%} held-out split")
            u = self.support.project(x) / self.scale
            perm = rng.permutation(len(x))
            self._val_u.append(self._tensor(u[perm[:num_val]]))
            self._train_u.append(self._tensor(u[perm[num_val:]]))
        return envs

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32, device=self.device)

    def _whitened(self, x: np.ndarray) -> np.ndarray:
        return self.support.project(_check_points(x, self.d)) / self.scale

    def _lift(self, g_u: np.ndarray) -> np.ndarray:
        # u = y / scale, so d/dy = (d/du) / scale
        return self.support.lift_gradient(g_u / self.scale)

    def _sample(self, u: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(u), (min(self.batch_size, len(u)),), generator=gen, device=self.device)
        return u[idx]

    def _steps_per_epoch(self, num: int) -> int:
        return max(1, -(-num // self.batch_size))

    def _train(self, key: Any, module: nn.Module, step_loss, val_loss, num: int) -> None:
        self.train_results[key] = train_early_stopping(
            module, step_loss, val_loss, epochs=self.epochs, steps_per_epoch=self._steps_per_epoch(num),
            lr=self.lr, weight_decay=self.weight_decay, patience=self.patience, lr_decays=self.lr_decays)


class _ScoreNet(nn.Module):
    """``s(u) = u W^T + b + MLP(u)``: an affine part (the exact form of a Gaussian score) plus a
    smooth residual, ``(B, k) -> (B, k)``."""

    def __init__(self, k: int, hidden: int, depth: int, seed: int, zero_residual: bool) -> None:
        super().__init__()
        self.affine = nn.Linear(k, k)
        self.residual = smooth_mlp(k, k, hidden, depth, zero_last=zero_residual, seed=seed)
        with torch.no_grad():
            self.affine.weight.copy_(-torch.eye(k))  # the standard-normal score: a sane start
            self.affine.bias.zero_()

    def set_gaussian(self, mean: np.ndarray, precision: np.ndarray) -> None:
        # s(u) = -P (u - mu) = -u P + P mu   (P symmetric)
        with torch.no_grad():
            self.affine.weight.copy_(torch.as_tensor(-precision, dtype=torch.float32))
            self.affine.bias.copy_(torch.as_tensor(precision @ mean, dtype=torch.float32))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.affine(u) + self.residual(u)


class ScoreMatchingScores(_LearnedScores):
    """One score network per environment, trained by sliced (``ssm``) or denoising (``dsm``) score
    matching; ``s^a - s^b`` is the difference of two networks.

    The network ``s(u) = affine(u) + MLP(u)`` works in whitened support coordinates ``u``. With
    ``gaussian_init`` the affine part starts at the environment's Gaussian score and the residual at
    zero, so training refines the ``gaussian`` estimator and early stopping on held-out score
    matching loss keeps it when the data are Gaussian.

    Objectives (per sample, ``k`` = support dimension):
    - ``ssm``: sliced score matching with variance reduction,
      ``v^T (d s / d u) v + 0.5 ||s||^2`` with ``num_slices`` Gaussian directions ``v``; the held-out
      loss is the exact Hyvärinen objective ``tr(d s / d u) + 0.5 ||s||^2`` (``k`` backward passes).
    - ``dsm``: denoising score matching at noise level ``noise_std`` (in whitened units),
      ``0.5 ||noise_std * s(u + noise_std * e) + e||^2`` averaged over the antithetic pair ``+-e``;
      it learns the score of the data convolved with that noise, a bias of order ``noise_std^2``.

    Args:
        objective: ``"ssm"`` or ``"dsm"``.
        num_slices: random directions per sample (ssm).
        noise_std: perturbation level (dsm).
        n, rank_tol: support dimension and its rank rule (module docstring).
        hidden, depth: width and number of hidden layers of the residual MLP.
        epochs, batch_size, lr, weight_decay: Adam budget; an epoch is ``ceil(N_train / batch_size)``
            minibatches drawn with replacement.
        patience, lr_decays, val_fraction: a held-out split (``val_fraction`` of every environment)
            is scored after every epoch; ``patience`` epochs without improvement halve the learning
            rate (back at the best weights), the plateau after ``lr_decays`` halvings stops training,
            and the best weights are kept (``causal_wm._torch.train_early_stopping``).
        gaussian_init: start from the Gaussian fit (see above).
        seed, device: randomness and torch device (``"auto"``: CUDA when available).
        progress: show a tqdm bar over the networks.
    """

    def __init__(self, objective: str = "ssm", *, num_slices: int = 1, noise_std: float = 0.1,
                 **options: Any) -> None:
        if objective not in ("ssm", "dsm"):
            raise ValueError(f"unknown score matching objective {objective!r}; choose 'ssm' or 'dsm'")
        if num_slices < 1 or noise_std <= 0:
            raise ValueError(f"need num_slices >= 1 and noise_std > 0, got {num_slices}, {noise_std}")
        super().__init__(**options)
        self.objective, self.num_slices, self.noise_std = objective, num_slices, noise_std

    def fit(self, envs: Sequence[np.ndarray]) -> ScoreMatchingScores:
        self._prepare(envs)
        k = self.support.n
        self.networks: list[_ScoreNet] = []
        for m in tqdm(range(self.num_envs), desc=f"{self.objective} networks", disable=not self.progress):
            net = _ScoreNet(k, self.hidden, self.depth, self.seed + 1000 * m, zero_residual=self.gaussian_init)
            net.to(self.device)
            if self.gaussian_init:
                train = self._train_u[m].double().cpu().numpy()
                net.set_gaussian(*_gaussian_fit(train))
            gen = generator(self.seed + 1000 * m + 1, self.device)
            step, val = self._losses(net, self._train_u[m], self._val_u[m], gen, self.seed + 1000 * m + 2)
            self._train(m, net, step, val, len(self._train_u[m]))
            net.requires_grad_(False)
            self.networks.append(net)
        return self

    def _losses(self, net: _ScoreNet, train: torch.Tensor, val: torch.Tensor, gen: torch.Generator,
                val_seed: int):
        if self.objective == "dsm":
            sigma = self.noise_std
            val_noise = torch.randn(val.shape, generator=generator(val_seed, self.device), device=self.device)

            def dsm(u: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
                # antithetic pair u +- sigma e: the terms linear in e cancel between the two, which
                # removes most of the variance of the plain loss at small sigma
                plus = ((sigma * net(u + sigma * e) + e) ** 2).sum(dim=1)
                minus = ((sigma * net(u - sigma * e) - e) ** 2).sum(dim=1)
                return 0.25 * (plus + minus).mean()

            def step() -> torch.Tensor:
                u = self._sample(train, gen)
                return dsm(u, torch.randn(u.shape, generator=gen, device=self.device))

            def val_loss() -> float:
                with torch.no_grad():
                    return float(dsm(val, val_noise))

            return step, val_loss

        def ssm_step() -> torch.Tensor:
            u = self._sample(train, gen).requires_grad_(True)
            s = net(u)
            v = torch.randn((self.num_slices, *u.shape), generator=gen, device=self.device)
            jvp = 0.0
            for j in range(self.num_slices):
                (g,) = torch.autograd.grad((s * v[j]).sum(), u, create_graph=True)
                jvp = jvp + (g * v[j]).sum(dim=1)
            return (jvp / self.num_slices + 0.5 * (s**2).sum(dim=1)).mean()

        def exact_val() -> float:
            total = 0.0
            for chunk in torch.split(val, 8192):
                u = chunk.clone().requires_grad_(True)
                with torch.enable_grad():
                    s = net(u)
                    trace = torch.zeros(len(u), device=self.device)
                    for i in range(u.shape[1]):
                        (g,) = torch.autograd.grad(s[:, i].sum(), u, retain_graph=i + 1 < u.shape[1])
                        trace += g[:, i]
                total += float((trace + 0.5 * (s.detach() ** 2).sum(dim=1)).sum())
            return total / len(val)

        return ssm_step, exact_val

    def _score_u(self, u: np.ndarray, m: int) -> np.ndarray:
        out = []
        with torch.no_grad():
            for chunk in torch.split(self._tensor(u), 65536):
                out.append(self.networks[m](chunk).double().cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.support.n))

    def score(self, x: np.ndarray, m: int) -> np.ndarray:
        """Estimated score ``s^m(x)`` ``(N, d)`` of environment ``m`` (for ``dsm``: of the data
        convolved with the training noise)."""
        self._check_fitted()
        return self._lift(self._score_u(self._whitened(x), m))

    def pair_difference(self, x: np.ndarray, a: int, b: int) -> np.ndarray:
        return self.differences_between(x, [(a, b)])[0]

    def differences_between(self, x: np.ndarray, pairs: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        pairs = [self._check_pair(a, b) for a, b in pairs]
        u = self._whitened(x)
        scores = {m: self._score_u(u, m) for m in sorted({e for p in pairs for e in p})}
        return [self._lift(scores[a] - scores[b]) for a, b in pairs]


class LogRatioNet(nn.Module):
    """``r(u) = -0.5 u^T A u + w^T u + c + MLP(u)``, ``(B, k) -> (B,)``: the exact form of a
    Gaussian log density ratio (``A`` symmetric) plus a smooth residual."""

    def __init__(self, k: int, hidden: int, depth: int, seed: int, zero_residual: bool) -> None:
        super().__init__()
        self.quadratic = nn.Parameter(torch.zeros(k, k))
        self.linear = nn.Linear(k, 1)
        self.residual = smooth_mlp(k, 1, hidden, depth, zero_last=zero_residual, seed=seed)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()

    def set_gaussian(self, mean_a: np.ndarray, prec_a: np.ndarray, mean_b: np.ndarray,
                     prec_b: np.ndarray) -> None:
        # log N(u; mu_a, P_a^-1) - log N(u; mu_b, P_b^-1)
        w = prec_a @ mean_a - prec_b @ mean_b
        c = (-0.5 * mean_a @ prec_a @ mean_a + 0.5 * mean_b @ prec_b @ mean_b
             + 0.5 * (np.linalg.slogdet(prec_a)[1] - np.linalg.slogdet(prec_b)[1]))
        with torch.no_grad():
            self.quadratic.copy_(torch.as_tensor(prec_a - prec_b, dtype=torch.float32))
            self.linear.weight.copy_(torch.as_tensor(w[None], dtype=torch.float32))
            self.linear.bias.fill_(float(c))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        A = 0.5 * (self.quadratic + self.quadratic.T)
        quad = -0.5 * ((u @ A) * u).sum(dim=1)
        return quad + self.linear(u)[:, 0] + self.residual(u)[:, 0]


class ClassifierScores(_LearnedScores):
    """Log density ratios by logistic regression: one classifier per environment pair ``(a, b)``
    whose logit estimates ``r(x) = log p^a(x) / p^b(x)``, so ``grad r = s^a - s^b``.

    Classes are balanced (every minibatch holds ``batch_size`` samples of each environment and the
    loss averages the two classes), so the prior odds are 1 and the Bayes logit is the log ratio.
    The logit ``r(u) = -0.5 u^T A u + w^T u + c + MLP(u)`` (in whitened support coordinates)
    contains the exact Gaussian log ratio; with ``gaussian_init`` it starts there (residual zero)
    and early stopping on the held-out logistic loss keeps that start when training does not help.
    Input gradients are taken in eval mode (the network has no BatchNorm or dropout anyway).

    Args:
        pairs: the pairs ``(a, b)`` to train at ``fit`` (default ``(0, m)`` for every interventional
            ``m``); other pairs are trained on first use, ``(b, a)`` reuses ``(a, b)`` negated.
        other options: as ``ScoreMatchingScores`` (``hidden``, ``depth``, ``epochs``, ...).
    """

    def __init__(self, *, pairs: Sequence[tuple[int, int]] | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.pairs = None if pairs is None else [(int(a), int(b)) for a, b in pairs]

    def fit(self, envs: Sequence[np.ndarray]) -> ClassifierScores:
        self._prepare(envs)
        self.networks: dict[tuple[int, int], LogRatioNet] = {}
        self._gaussians: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        pairs = self.pairs if self.pairs is not None else [(0, m) for m in range(1, self.num_envs)]
        for a, b in tqdm([self._check_pair(a, b) for a, b in pairs], desc="classifiers",
                         disable=not self.progress):
            self._network(a, b)
        return self

    def _gaussian(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        if m not in self._gaussians:
            self._gaussians[m] = _gaussian_fit(self._train_u[m].double().cpu().numpy())
        return self._gaussians[m]

    def _network(self, a: int, b: int) -> tuple[LogRatioNet, float]:
        """The classifier of ``(a, b)`` and the sign that turns its logit into ``log p^a / p^b``."""
        if (a, b) in self.networks:
            return self.networks[(a, b)], 1.0
        if (b, a) in self.networks:
            return self.networks[(b, a)], -1.0
        seed = self.seed + 1000 * a + 37 * b
        net = LogRatioNet(self.support.n, self.hidden, self.depth, seed, zero_residual=self.gaussian_init)
        net.to(self.device)
        if self.gaussian_init:
            net.set_gaussian(*self._gaussian(a), *self._gaussian(b))
        gen = generator(seed + 1, self.device)
        ta, tb, va, vb = self._train_u[a], self._train_u[b], self._val_u[a], self._val_u[b]

        def balanced_loss(ua: torch.Tensor, ub: torch.Tensor) -> torch.Tensor:
            # label 1 for a, 0 for b: softplus(-r) and softplus(r) are the two logistic losses
            return 0.5 * (F.softplus(-net(ua)).mean() + F.softplus(net(ub)).mean())

        def step() -> torch.Tensor:
            return balanced_loss(self._sample(ta, gen), self._sample(tb, gen))

        def val_loss() -> float:
            with torch.no_grad():
                return float(balanced_loss(va, vb))

        self._train((a, b), net, step, val_loss, max(len(ta), len(tb)))
        net.requires_grad_(False)
        self.networks[(a, b)] = net
        return net, 1.0

    def log_ratio(self, x: np.ndarray, a: int, b: int) -> np.ndarray:
        """Estimated ``log p^a(x) / p^b(x)`` ``(N,)`` (on the support coordinates)."""
        a, b = self._check_pair(a, b)
        net, sign = self._network(a, b)
        with torch.no_grad():
            r = torch.cat([net(c) for c in torch.split(self._tensor(self._whitened(x)), 65536)])
        return sign * r.double().cpu().numpy()

    def pair_difference(self, x: np.ndarray, a: int, b: int) -> np.ndarray:
        a, b = self._check_pair(a, b)
        net, sign = self._network(a, b)
        net.eval()
        grads = []
        for chunk in torch.split(self._tensor(self._whitened(x)), 65536):
            u = chunk.clone().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(net(u).sum(), u)
            grads.append(g.double().cpu().numpy())
        g_u = np.concatenate(grads, axis=0) if grads else np.zeros((0, self.support.n))
        return self._lift(sign * g_u)


# --- functional interface ----------------------------------------------------------------------------
def make_estimator(method: str = "gaussian", *, n: int | None = None, seed: int = 0, device: str = "auto",
                   problem: CRLProblem | None = None, **options: Any) -> ScoreDifferenceEstimator:
    """The estimator of ``method`` (one of ``METHODS``), unfitted (the oracle needs ``problem``).

    ``options`` go to the estimator's constructor (see ``GaussianScores``, ``ScoreMatchingScores``,
    ``ClassifierScores``); unknown ones raise ``ValueError``.
    """
    if method == "oracle":
        if problem is None:
            raise ValueError("method='oracle' needs problem=<CRLProblem> (the ground truth)")
        _no_options(method, options)
        return OracleScores(problem)
    if method == "gaussian":
        _no_options(method, {k: v for k, v in options.items() if k != "rank_tol"})
        return GaussianScores(n, **options)
    if method in ("ssm", "dsm"):
        _no_options(method, {k: v for k, v in options.items()
                             if k not in _LEARNED_OPTIONS | {"num_slices", "noise_std"}})
        return ScoreMatchingScores(method, n=n, seed=seed, device=device, **options)
    if method == "classifier":
        _no_options(method, {k: v for k, v in options.items() if k not in _LEARNED_OPTIONS | {"pairs"}})
        return ClassifierScores(n=n, seed=seed, device=device, **options)
    raise ValueError(f"unknown score-difference method {method!r}; choose one of {METHODS}")


_LEARNED_OPTIONS = frozenset(inspect.signature(_LearnedScores.__init__).parameters) - {"self", "n", "seed",
                                                                                      "device"}


def _no_options(method: str, options: dict) -> None:
    if options:
        raise ValueError(f"method {method!r} does not take the option(s) {sorted(options)}")


def score_differences(envs: Sequence[np.ndarray], *, method: str = "gaussian", n: int | None = None,
                      reference: int = 0, seed: int = 0, device: str = "auto",
                      **options: Any) -> list[np.ndarray]:
    """Estimated ``D^m(x) = s^0(x) - s^m(x)`` (observational minus interventional score) for every
    interventional env ``m = 1..M``, evaluated at the samples of ``envs[reference]``; each ``(N_ref, d)``.

    Args:
        envs: ``envs[0]`` observational samples ``(N_0, d)``, ``envs[m]`` interventional ``(N_m, d)``.
        method: one of ``METHODS``; ``oracle`` needs ``problem=<CRLProblem>`` in ``options``.
        n: dimension of the support (latent dimension); None estimates it (module docstring).
        reference: the environment whose samples are the evaluation points.
        seed: seed of the learned estimators (initialisation, minibatches, noise).
        device: torch device of the learned estimators (``"auto"``: CUDA when available).
        options: estimator options (see ``make_estimator``).
    """
    envs = validate_envs(envs)
    if not 0 <= reference < len(envs):
        raise ValueError(f"reference must index an environment 0..{len(envs) - 1}, got {reference}")
    estimator = make_estimator(method, n=n, seed=seed, device=device, **options)
    if isinstance(estimator, OracleScores):
        return estimator.fit(envs).at_reference(reference)
    return estimator.fit(envs)(envs[reference])


def score_differences_between(envs: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]], *,
                              method: str = "gaussian", n: int | None = None, reference: int = 0,
                              seed: int = 0, device: str = "auto", **options: Any) -> list[np.ndarray]:
    """``s^a(x) - s^b(x)`` (first minus second) for every ``(a, b)`` in ``pairs``, at the samples of
    ``envs[reference]``; each ``(N_ref, d)``. For example the two hard interventions on one node
    (``problem.pairs``) for GSCALE-I. The classifier trains one classifier per listed pair only."""
    envs = validate_envs(envs)
    if not 0 <= reference < len(envs):
        raise ValueError(f"reference must index an environment 0..{len(envs) - 1}, got {reference}")
    pairs = [(int(a), int(b)) for a, b in pairs]
    if method == "classifier":
        options.setdefault("pairs", pairs)
    estimator = make_estimator(method, n=n, seed=seed, device=device, **options)
    return estimator.fit(envs).differences_between(envs[reference], pairs)


def score_error(estimated: Sequence[np.ndarray], oracle: Sequence[np.ndarray]) -> float:
    """Relative mean squared error ``sum ||D_hat - D||^2 / sum ||D||^2`` over all environments and
    samples (lists of ``(N, d)`` arrays, same shapes). 0 is exact; 1 is the error of predicting 0."""
    if len(estimated) != len(oracle) or len(oracle) == 0:
        raise ValueError(f"need the same non-zero number of arrays, got {len(estimated)} and {len(oracle)}")
    num = den = 0.0
    for e, o in zip(estimated, oracle, strict=True):
        e, o = np.asarray(e, dtype=np.float64), np.asarray(o, dtype=np.float64)
        if e.shape != o.shape:
            raise ValueError(f"shape mismatch: estimated {e.shape} vs oracle {o.shape}")
        num += float(np.sum((e - o) ** 2))
        den += float(np.sum(o**2))
    if den == 0.0:
        raise ValueError("the oracle differences are all zero; the relative error is undefined")
    return num / den

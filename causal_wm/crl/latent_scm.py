"""A latent SCM whose log densities are the logits of a regime classifier (docs/science.md section 9).

For learned coordinates ``z = h(x)`` of observations from an observational regime 0 and regimes
``r = 1..R`` that each hard-intervene on a known set of latents ``T_r``, the log density ratio of
regime ``r`` to regime 0 is invariant to the encoder (its Jacobian cancels) and, for an SCM with
mechanisms ``p_k(z_k | z_pa(k))`` and intervention laws ``q_{r,k}(z_k)``, equals

    log p^r(z) / p^0(z) = sum over k in T_r of  log q_{r,k}(z_k) - log p_k(z_k | z_pa(k)).

``LatentSCM`` parametrises the right-hand side: Gaussian mechanisms
``p_k(z_k | z) = N(z_k; g_k(z), sigma_k^2)`` with ``g_k`` linear (``W`` with zero diagonal) or
linear plus a one-hidden-layer SiLU network per node (its input weights masked on the diagonal),
and Gaussian intervention laws ``q_{r,k} = N(mu_{r,k}, tau_{r,k}^2)``. Trained as the logits of a
softmax classifier over the regimes (``logit_0 = 0``), jointly with the encoder, it forces every
regime's log ratio to depend on its targets and their parents only, and its mechanisms' input
weights are the latent graph. ``A[i, j] = 1`` iff ``i -> j`` throughout; ``W[i, k]`` is the weight
of ``z_i`` in ``g_k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MECHANISMS = ("linear", "mlp")
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((x - mean) * torch.exp(-log_std)) ** 2 - log_std - _LOG_SQRT_2PI


class LatentSCM(nn.Module):
    """Log density ratios ``(B, R)`` of ``R`` hard-intervention regimes against the observational one.

    Args:
        n: number of latents.
        targets: ``targets[r - 1]`` = the latents regime ``r`` intervenes on (``r = 1..R``).
        mechanism: ``"linear"`` or ``"mlp"`` (linear plus a SiLU network of width ``hidden`` per node).
        hidden: width of the per-node networks (``"mlp"``).
        seed: initialisation.
    """

    def __init__(self, n: int, targets: Sequence[Sequence[int]], mechanism: str = "linear", hidden: int = 16,
                 seed: int = 0) -> None:
        super().__init__()
        if mechanism not in MECHANISMS:
            raise ValueError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")
        if n < 1 or not targets:
            raise ValueError(f"a latent SCM needs n >= 1 and at least one interventional regime, got n={n}, "
                             f"{len(targets)} regimes")
        mask = torch.zeros(len(targets), n)
        for r, ts in enumerate(targets):
            if not ts or min(ts) < 0 or max(ts) >= n:
                raise ValueError(f"regime {r + 1} targets {tuple(ts)} must be latents in 0..{n - 1}")
            mask[r, list(ts)] = 1.0
        self.n, self.mechanism, self.hidden = n, mechanism, hidden
        self.register_buffer("target_mask", mask)
        self.register_buffer("off_diagonal", 1.0 - torch.eye(n))
        self.weight = nn.Parameter(torch.zeros(n, n))      # weight[i, k]: z_i in g_k
        self.bias = nn.Parameter(torch.zeros(n))
        self.log_sigma = nn.Parameter(torch.zeros(n))
        self.mu = nn.Parameter(torch.zeros(len(targets), n))
        self.log_tau = nn.Parameter(torch.zeros(len(targets), n))
        if mechanism == "mlp":
            gen = torch.Generator().manual_seed(int(seed))
            self.w1 = nn.Parameter(torch.randn(n, hidden, n, generator=gen) / math.sqrt(n))  # [k, h, i]
            self.b1 = nn.Parameter(torch.randn(n, hidden, generator=gen) * 0.1)
            self.w2 = nn.Parameter(torch.zeros(n, hidden))

    @property
    def num_regimes(self) -> int:
        return int(self.target_mask.shape[0])

    def mechanism_means(self, z: torch.Tensor) -> torch.Tensor:
        """``g_k(z)`` for every node: ``(B, n)``."""
        out = z @ (self.weight * self.off_diagonal) + self.bias
        if self.mechanism == "mlp":
            w1 = self.w1 * self.off_diagonal[:, None, :]  # no input z_k into g_k
            pre = torch.einsum("bi,khi->bkh", z, w1) + self.b1
            out = out + torch.einsum("bkh,kh->bk", F.silu(pre), self.w2)
        return out

    def log_ratios(self, z: torch.Tensor) -> torch.Tensor:
        """``log p^r(z) / p^0(z)`` for ``r = 1..R``: ``(B, R)``."""
        log_p = _gaussian_log_density(z, self.mechanism_means(z), self.log_sigma)          # (B, n)
        log_q = _gaussian_log_density(z[:, None, :], self.mu, self.log_tau)                # (B, R, n)
        return ((log_q - log_p[:, None, :]) * self.target_mask).sum(-1)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Classifier logits ``(B, R + 1)`` over the regimes, observational first (``logit_0 = 0``)."""
        ratios = self.log_ratios(z)
        return torch.cat([torch.zeros_like(ratios[:, :1]), ratios], dim=1)

    def sparsity_penalty(self) -> torch.Tensor:
        """L1 of the linear weights plus the group L1 of every (node, input) block of the networks."""
        penalty = (self.weight * self.off_diagonal).abs().sum()
        if self.mechanism == "mlp":
            # path norm of input i through node k's network: sqrt(sum_h (w1[k, h, i] w2[k, h])^2)
            norms = torch.sqrt(((self.w1 * self.w2[:, :, None]) ** 2).sum(1) + 1e-12)        # (k, i)
            penalty = penalty + (norms * self.off_diagonal).sum()
        return penalty

    def law_mismatch(self, z: torch.Tensor, block: int) -> torch.Tensor:
        """How far the model's Gaussian laws are from the samples, beyond what the classifier sees.

        ``z`` ``(block * (R + 1), n)`` holds ``block`` rows of every regime in order (observational
        first). For every intervened latent in its own regime (law ``q``) and for every mechanism's
        residual ``z_k - g_k(z)`` in the observational rows (law ``N(0, sigma_k^2)``), the mean squared
        gap between the sorted samples and the law's quantiles at ``(i + 1/2) / block``, in units of the
        law's variance (a one-dimensional Wasserstein-2 distance). The cross-entropy hardly constrains
        the tails, where samples are classified with near certainty; a monotone distortion of a latent
        there (e.g. a compressed tail) makes these laws non-Gaussian and shows up here."""
        grid = torch.special.ndtri((torch.arange(block, device=z.device, dtype=z.dtype) + 0.5) / block)
        obs = z[:block]
        resid = obs - self.mechanism_means(obs)
        sigma = torch.exp(self.log_sigma)
        gap = ((torch.sort(resid, dim=0).values - grid[:, None] * sigma) / sigma).pow(2).mean()
        rows = z[block:].reshape(self.num_regimes, block, self.n)
        tau = torch.exp(self.log_tau)
        expected = self.mu[:, None, :] + grid[None, :, None] * tau[:, None, :]
        per = ((torch.sort(rows, dim=1).values - expected) / tau[:, None, :]).pow(2).mean(1)     # (R, n)
        return gap + (per * self.target_mask).sum() / self.target_mask.sum()

    @torch.no_grad()
    def edge_strength(self, z: torch.Tensor) -> np.ndarray:
        """``S[i, k] = E|d g_k / d z_i|`` over the rows ``z`` ``(B, n)``; diagonal 0 (``(n, n)``)."""
        if self.mechanism == "linear":
            return (self.weight * self.off_diagonal).abs().cpu().numpy().astype(np.float64)
        with torch.enable_grad():
            zz = z.detach().clone().requires_grad_(True)
            means = self.mechanism_means(zz)
            rows = [torch.autograd.grad(means[:, k].sum(), zz, retain_graph=True)[0].abs().mean(0)
                    for k in range(self.n)]
        S = torch.stack(rows, dim=1).cpu().numpy().astype(np.float64)
        np.fill_diagonal(S, 0.0)
        return S


@dataclass
class LatentSCMParameters:
    """A fitted ``LatentSCM`` in output coordinates, as plain numbers (hand-off to the world model).

    Output coordinates ``u = (z - center) / scale`` (per latent, ``scale`` may be negative to orient a
    latent). Attributes, all in ``u``:
        mechanism: ``"linear"`` or ``"mlp"``.
        weight: ``(n, n)`` linear weights, ``weight[i, k]`` of ``u_i`` in ``g_k``; diagonal 0.
        bias: ``(n,)``; noise_std: ``(n,)`` std of ``u_k`` around ``g_k``.
        w1: ``(n, hidden, n)``, b1 ``(n, hidden)``, w2 ``(n, hidden)``: the networks (``"mlp"``), so that
            ``g_k(u) = bias_k + u @ weight[:, k] + w2[k] . silu(w1[k] @ u + b1[k])``.
        targets: the latents every regime intervenes on; regimes: their labels.
        law_mean, law_std: ``(R, n)`` intervention laws ``N(law_mean[r, k], law_std[r, k]^2)`` (rows of
            regime ``regimes[r]``, entries of non-targets unused).
    """

    mechanism: str
    weight: np.ndarray
    bias: np.ndarray
    noise_std: np.ndarray
    regimes: list[int]
    targets: list[tuple[int, ...]]
    law_mean: np.ndarray
    law_std: np.ndarray
    w1: np.ndarray | None = None
    b1: np.ndarray | None = None
    w2: np.ndarray | None = None

    def mean(self, u: np.ndarray, k: int) -> np.ndarray:
        """``g_k(u)`` ``(B,)`` for ``u`` ``(B, n)``."""
        u = np.asarray(u, dtype=np.float64)
        w = self.weight[:, k].copy()
        w[k] = 0.0
        out = u @ w + self.bias[k]
        if self.mechanism == "mlp":
            assert self.w1 is not None and self.b1 is not None and self.w2 is not None
            w1 = self.w1[k].copy()
            w1[:, k] = 0.0
            pre = u @ w1.T + self.b1[k]
            out = out + (pre / (1.0 + np.exp(-pre))) @ self.w2[k]
        return out

    def log_ratios(self, u: np.ndarray) -> np.ndarray:
        """``log p^r(u) / p^0(u)`` ``(B, R)`` of every regime, in these coordinates (``u`` ``(B, n)``)."""
        u = np.asarray(u, dtype=np.float64)

        def log_normal(x: np.ndarray, mean: Any, std: Any) -> np.ndarray:
            return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - _LOG_SQRT_2PI

        log_p = np.column_stack([log_normal(u[:, k], self.mean(u, k), self.noise_std[k]) for k in range(u.shape[1])])
        out = np.zeros((len(u), len(self.targets)))
        for r, ts in enumerate(self.targets):
            for k in ts:
                out[:, r] += log_normal(u[:, k], self.law_mean[r, k], self.law_std[r, k]) - log_p[:, k]
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mechanism": self.mechanism, "regimes": [int(r) for r in self.regimes],
                               "targets": [list(t) for t in self.targets]}
        for name in ("weight", "bias", "noise_std", "law_mean", "law_std", "w1", "b1", "w2"):
            value = getattr(self, name)
            out[name] = None if value is None else np.asarray(value, dtype=np.float64).tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatentSCMParameters:
        arrays = {k: None if d.get(k) is None else np.asarray(d[k], dtype=np.float64)
                  for k in ("weight", "bias", "noise_std", "law_mean", "law_std", "w1", "b1", "w2")}
        return cls(mechanism=str(d["mechanism"]), regimes=[int(r) for r in d["regimes"]],
                   targets=[tuple(int(t) for t in ts) for ts in d["targets"]], **arrays)  # type: ignore[arg-type]


@torch.no_grad()
def load_parameters(scm: LatentSCM, params: LatentSCMParameters) -> None:
    """Set ``scm``'s parameters to ``params`` (same ``n``, regimes' targets and mechanism kind)."""
    if params.mechanism != scm.mechanism or params.weight.shape != (scm.n, scm.n):
        raise ValueError(f"cannot load {params.mechanism} parameters of {params.weight.shape[0]} latents into a "
                         f"{scm.mechanism} SCM of {scm.n}")

    def put(param: torch.Tensor, value: np.ndarray) -> None:
        param.copy_(torch.as_tensor(value, dtype=param.dtype, device=param.device))

    put(scm.weight, params.weight)
    put(scm.bias, params.bias)
    put(scm.log_sigma, np.log(params.noise_std))
    put(scm.mu, params.law_mean)
    put(scm.log_tau, np.log(params.law_std))
    if scm.mechanism == "mlp":
        assert params.w1 is not None and params.b1 is not None and params.w2 is not None
        put(scm.w1, params.w1)
        put(scm.b1, params.b1)
        put(scm.w2, params.w2)


@torch.no_grad()
def export_parameters(scm: LatentSCM, regimes: Sequence[int], center: np.ndarray, scale: np.ndarray
                      ) -> LatentSCMParameters:
    """``scm`` (fitted on raw coordinates ``z``) rewritten in ``u = (z - center) / scale``.

    With ``z = center + scale * u``: ``g_k`` in ``u`` is ``(g_k(center + scale u) - center_k) / scale_k``
    and every std is divided by ``|scale_k|``; the log ratios are unchanged (both densities of a
    target gain the same log Jacobian)."""
    c = np.asarray(center, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    n = scm.n
    off = 1.0 - np.eye(n)
    W = scm.weight.detach().cpu().double().numpy() * off
    b = scm.bias.detach().cpu().double().numpy()
    weight = W * s[:, None] / s[None, :]
    bias = (b + c @ W - c) / s
    w1 = b1 = w2 = None
    if scm.mechanism == "mlp":
        W1 = scm.w1.detach().cpu().double().numpy() * off[:, None, :]     # [k, h, i], w1[k, :, k] = 0
        w1 = W1 * s[None, None, :]
        b1 = scm.b1.detach().cpu().double().numpy() + np.einsum("khi,i->kh", W1, c)
        w2 = scm.w2.detach().cpu().double().numpy() / s[:, None]
    sigma = np.exp(scm.log_sigma.detach().cpu().double().numpy()) / np.abs(s)
    mask = scm.target_mask.cpu().numpy() > 0
    law_mean = (scm.mu.detach().cpu().double().numpy() - c) / s
    law_std = np.exp(scm.log_tau.detach().cpu().double().numpy()) / np.abs(s)
    targets = [tuple(int(k) for k in np.flatnonzero(row)) for row in mask]
    return LatentSCMParameters(scm.mechanism, weight, bias, sigma, [int(r) for r in regimes], targets,
                               np.where(mask, law_mean, 0.0), np.where(mask, law_std, 1.0), w1, b1, w2)

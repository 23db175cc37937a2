"""Mixing functions ``x = g(z)`` from latents ``(N, n)`` to observations ``(N, d)``.

The published synthetic protocol (docs/science.md section 6): linear ``G = Q R``, its ``tanh(G z)``
generalised-linear variant, and a 3-layer tanh MLP. Every mixing gives its Jacobian ``(N, d, n)``
so oracle score differences can be pushed to observation space:
``D_X(x) = J(z)^{+T} D_Z(z)`` (for linear mixing ``(G^+)^T D_Z``).
"""

from __future__ import annotations

import numpy as np

from causal_wm._random import SeedLike, as_generator


class Mixing:
    """Base class of an injective smooth map ``R^n -> R^d``."""

    n: int
    d: int

    def __call__(self, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def jacobian(self, z: np.ndarray) -> np.ndarray:
        """``(N, d, n)`` Jacobian at latents ``z`` ``(N, n)``."""
        raise NotImplementedError

    def pushforward_score(self, z: np.ndarray, latent_score: np.ndarray) -> np.ndarray:
        """Observation-space score (difference) ``(N, d)`` on the support of ``g``:
        ``J(z)^{+T} s_Z(z)``, the minimum-norm solution of ``J^T s_X = s_Z``."""
        J = self.jacobian(z)
        return np.einsum("ndk,nk->nd", np.linalg.pinv(J).transpose(0, 2, 1), latent_score)


class LinearMixing(Mixing):
    """``x = G z`` with ``G`` of shape ``(d, n)`` and rank ``n``."""

    def __init__(self, G: np.ndarray) -> None:
        self.G = np.asarray(G, dtype=np.float64)
        self.d, self.n = self.G.shape
        if self.d < self.n or np.linalg.matrix_rank(self.G) < self.n:
            raise ValueError(f"linear mixing needs d >= n and rank n, got G of shape {self.G.shape}")

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return z @ self.G.T

    def jacobian(self, z: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.G, (len(z), self.d, self.n))

    def pushforward_score(self, z: np.ndarray, latent_score: np.ndarray) -> np.ndarray:
        return latent_score @ np.linalg.pinv(self.G)


class TanhMixing(Mixing):
    """Generalised linear mixing ``x = tanh(G z)``."""

    def __init__(self, G: np.ndarray) -> None:
        self.G = np.asarray(G, dtype=np.float64)
        self.d, self.n = self.G.shape

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z @ self.G.T)

    def jacobian(self, z: np.ndarray) -> np.ndarray:
        return (1.0 - np.tanh(z @ self.G.T) ** 2)[:, :, None] * self.G[None]


class MLPMixing(Mixing):
    """Three tanh layers: ``x = tanh(W3 tanh(W2 tanh(W1 z)))`` with ``W1`` ``(h, n)``, ``W2``
    ``(h, h)``, ``W3`` ``(d, h)``."""

    def __init__(self, W1: np.ndarray, W2: np.ndarray, W3: np.ndarray) -> None:
        self.W1, self.W2, self.W3 = (np.asarray(W, dtype=np.float64) for W in (W1, W2, W3))
        self.n = self.W1.shape[1]
        self.d = self.W3.shape[0]

    def _layers(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h1 = np.tanh(z @ self.W1.T)
        h2 = np.tanh(h1 @ self.W2.T)
        return h1, h2, np.tanh(h2 @ self.W3.T)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self._layers(z)[2]

    def jacobian(self, z: np.ndarray) -> np.ndarray:
        h1, h2, x = self._layers(z)
        J = (1 - h1**2)[:, :, None] * self.W1[None]
        J = (1 - h2**2)[:, :, None] * np.einsum("ij,njk->nik", self.W2, J)
        return (1 - x**2)[:, :, None] * np.einsum("ij,njk->nik", self.W3, J)


def random_linear_mixing_matrix(n: int, d: int, seed: SeedLike = None, *, min_condition: float = 0.1) -> np.ndarray:
    """``G = Q R`` ``(d, n)``: ``Q`` the first ``n`` columns of a random orthogonal ``d x d`` matrix,
    ``R`` uniform in ``[-0.5, 0.5]^{n x n}`` with ``sigma_min / sigma_max >= min_condition``;
    columns scaled to max-abs 1 (the published protocol)."""
    if d < n:
        raise ValueError(f"d must be >= n for an injective mixing, got d={d} < n={n}")
    rng = as_generator(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    for _ in range(10_000):
        R = rng.uniform(-0.5, 0.5, size=(n, n))
        sv = np.linalg.svd(R, compute_uv=False)
        if sv[-1] / sv[0] >= min_condition:
            break
    G = Q[:, :n] @ R
    return G / np.abs(G).max(axis=0, keepdims=True)


MIXING_KINDS = ("linear", "tanh", "mlp")


def random_mixing(kind: str, n: int, d: int, seed: SeedLike = None) -> Mixing:
    """A random mixing of the published protocol: ``linear``, ``tanh`` (``tanh(G z)``) or ``mlp``."""
    rng = as_generator(seed)
    if kind == "linear":
        return LinearMixing(random_linear_mixing_matrix(n, d, rng))
    if kind == "tanh":
        return TanhMixing(random_linear_mixing_matrix(n, d, rng))
    if kind == "mlp":
        if d < n:
            raise ValueError(f"d must be >= n for an injective mixing, got d={d} < n={n}")
        h = d
        W1 = random_linear_mixing_matrix(n, h, rng)
        W2 = np.linalg.qr(rng.standard_normal((h, h)))[0] * 1.5
        W3 = np.linalg.qr(rng.standard_normal((d, h)))[0] * 1.5
        return MLPMixing(W1, W2, W3)
    raise ValueError(f"unknown mixing kind {kind!r}; choose one of {MIXING_KINDS}")

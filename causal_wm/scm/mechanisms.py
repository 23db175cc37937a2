"""Mechanisms ``f_i(z_pa(i))`` of additive-noise SCMs: ``z_i = f_i(z_pa(i)) + N_i``.

Every mechanism reads the full latent matrix ``z`` of shape ``(N, n)`` and its own ``parents``
(a tuple of column indices), and gives its value ``(N,)`` and its gradient with respect to the
parents ``(N, p)`` with ``p = len(parents)``. Gradients are analytic so that densities and scores
of the SCM are exact.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from causal_wm._random import SeedLike, as_generator


class Mechanism(ABC):
    """Base class: a deterministic function of the parents of one node."""

    parents: tuple[int, ...]

    @abstractmethod
    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Value ``f(z_pa)`` for latents ``z`` of shape ``(N, n)``; returns ``(N,)``."""

    @abstractmethod
    def grad(self, z: np.ndarray) -> np.ndarray:
        """Gradient ``d f / d z_pa`` of shape ``(N, p)``, columns in the order of ``parents``."""

    @property
    def is_linear(self) -> bool:
        return False


class LinearMechanism(Mechanism):
    """``f(z_pa) = weights . z_pa``."""

    def __init__(self, parents: tuple[int, ...], weights: np.ndarray) -> None:
        self.parents = tuple(parents)
        self.weights = np.asarray(weights, dtype=np.float64).reshape(len(self.parents))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return z[:, self.parents] @ self.weights

    def grad(self, z: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.weights, (z.shape[0], len(self.parents))).copy()

    @property
    def is_linear(self) -> bool:
        return True


class QuadraticMechanism(Mechanism):
    """``f(z_pa) = sqrt(z_pa^T M z_pa)`` with ``M`` positive semi-definite (the published form).

    The square root is not differentiable where the quadratic form vanishes (a null set); there the
    gradient uses ``max(q, 1e-12)``.
    """

    def __init__(self, parents: tuple[int, ...], matrix: np.ndarray) -> None:
        self.parents = tuple(parents)
        p = len(self.parents)
        self.matrix = np.asarray(matrix, dtype=np.float64).reshape(p, p)

    def _quadratic(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zp = z[:, self.parents]
        Mz = zp @ self.matrix.T
        return np.maximum(np.einsum("np,np->n", zp, Mz), 0.0), zp @ (0.5 * (self.matrix + self.matrix.T))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.sqrt(self._quadratic(z)[0])

    def grad(self, z: np.ndarray) -> np.ndarray:
        q, sym = self._quadratic(z)
        return sym / np.sqrt(np.maximum(q, 1e-12))[:, None]


class MLPMechanism(Mechanism):
    """A one-hidden-layer tanh network: ``f(z_pa) = w2 . tanh(W1 z_pa + b1) + b2``."""

    def __init__(self, parents: tuple[int, ...], W1: np.ndarray, b1: np.ndarray, w2: np.ndarray,
                 b2: float = 0.0) -> None:
        self.parents = tuple(parents)
        self.W1 = np.asarray(W1, dtype=np.float64)
        self.b1 = np.asarray(b1, dtype=np.float64)
        self.w2 = np.asarray(w2, dtype=np.float64)
        self.b2 = float(b2)
        if self.W1.shape != (self.b1.size, len(self.parents)) or self.w2.shape != (self.b1.size,):
            raise ValueError("MLPMechanism weights: W1 (h, p), b1 (h,), w2 (h,) for p parents")

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z[:, self.parents] @ self.W1.T + self.b1) @ self.w2 + self.b2

    def grad(self, z: np.ndarray) -> np.ndarray:
        h = np.tanh(z[:, self.parents] @ self.W1.T + self.b1)
        return ((1.0 - h**2) * self.w2) @ self.W1


class FunctionMechanism(Mechanism):
    """A user-given function of the parents with its analytic gradient.

    ``fn(z_pa) -> (N,)`` and ``grad_fn(z_pa) -> (N, p)`` receive the parent columns ``(N, p)`` only.
    Use module-level functions so the mechanism pickles (vector envs send it to subprocesses).
    """

    def __init__(self, parents: tuple[int, ...], fn: Callable[[np.ndarray], np.ndarray],
                 grad_fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self.parents = tuple(parents)
        self.fn = fn
        self.grad_fn = grad_fn

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(z[:, self.parents]), dtype=np.float64)

    def grad(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.grad_fn(z[:, self.parents]), dtype=np.float64)


class ScaledMechanism(Mechanism):
    """``factor * base(z_pa)``: a mechanism changed by a constant factor (``-1`` flips the sign of every
    parent's effect, ``0`` removes them). ``scaled_mechanism`` keeps a linear base linear."""

    def __init__(self, base: Mechanism, factor: float) -> None:
        if not (isinstance(factor, int | float) and np.isfinite(factor)):
            raise ValueError(f"factor must be a finite number, got {factor!r}")
        self.base = base
        self.factor = float(factor)
        self.parents = tuple(base.parents)

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self.factor * self.base(z)

    def grad(self, z: np.ndarray) -> np.ndarray:
        return self.factor * self.base.grad(z)


def scaled_mechanism(mechanism: Mechanism, factor: float) -> Mechanism:
    """``factor * mechanism``: a ``LinearMechanism`` with scaled weights for a linear one (so linear
    SCMs stay linear), else a ``ScaledMechanism``."""
    if isinstance(mechanism, LinearMechanism):
        return LinearMechanism(mechanism.parents, mechanism.weights * float(factor))
    return ScaledMechanism(mechanism, factor)


MECHANISM_KINDS = ("linear", "quadratic", "mlp")


def random_mechanism(kind: str, parents: tuple[int, ...], seed: SeedLike = None, *,
                     weight_range: tuple[float, float] = (0.5, 1.5), hidden: int = 8) -> Mechanism | None:
    """A random mechanism of the published protocol (docs/science.md section 6); None for a root node.

    - ``linear``: weights with random sign and magnitude uniform in ``weight_range``.
    - ``quadratic``: ``sqrt(z_pa^T L^T L z_pa)`` with ``L`` uniform in ``[-1, 1]^{p x p}``.
    - ``mlp``: tanh network with ``hidden`` units, weights normal / sqrt(fan-in).
    """
    if not parents:
        return None
    rng = as_generator(seed)
    p = len(parents)
    if kind == "linear":
        magnitude = rng.uniform(*weight_range, size=p)
        return LinearMechanism(parents, magnitude * rng.choice([-1.0, 1.0], size=p))
    if kind == "quadratic":
        L = rng.uniform(-1.0, 1.0, size=(p, p))
        return QuadraticMechanism(parents, L.T @ L)
    if kind == "mlp":
        W1 = rng.normal(size=(hidden, p)) * 2.0 / np.sqrt(p)
        b1 = rng.normal(size=hidden) * 0.5
        w2 = rng.normal(size=hidden) * 1.5 / np.sqrt(hidden)
        return MLPMechanism(parents, W1, b1, w2)
    raise ValueError(f"unknown mechanism kind {kind!r}; choose one of {MECHANISM_KINDS}")

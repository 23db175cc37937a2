"""Additive-Gaussian-noise structural causal models over latent variables.

``z_i = c_i * f_i(z_pa(i)) + mu_i + sigma_i * eps_i`` with ``eps ~ N(0, I)``, where ``c_i = 1``,
``mu_i = noise_mean[i]`` and ``sigma_i = noise_std[i]`` observationally, and an ``Intervention``
changes ``(c, mu, sigma)`` of its targets (hard and do: ``c = 0``). Arrays of latents are ``(N, n)``.

Every regime has exact sampling, log-density and score ``grad_z log p(z)`` of the untruncated
model. An optional box ``[low, high]`` truncates samples by rejection; densities and scores stay
those of the untruncated model (the truncated density differs only by a constant factor inside the
box, so scores agree there).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from causal_wm._random import SeedLike, as_generator
from causal_wm.scm.graphs import parents, topological_order, validate_dag
from causal_wm.scm.interventions import Intervention
from causal_wm.scm.mechanisms import LinearMechanism, Mechanism, random_mechanism

_LOG_2PI = float(np.log(2.0 * np.pi))


class SCM:
    """A latent SCM with additive Gaussian noise.

    Args:
        adjacency: ``(n, n)`` DAG, ``A[i, j] = 1`` iff ``i -> j``.
        mechanisms: one per node, ``None`` for nodes without parents; each mechanism's parents must
            equal the node's parents in ``adjacency``.
        noise_std: ``(n,)`` observational noise standard deviations.
        noise_mean: ``(n,)`` observational noise means (default 0).
        box: optional ``(low, high)``, each ``(n,)``: samples outside are rejected.
        names: optional node names.
    """

    def __init__(self, adjacency: np.ndarray, mechanisms: Sequence[Mechanism | None],
                 noise_std: np.ndarray | Sequence[float], noise_mean: np.ndarray | Sequence[float] | None = None,
                 box: tuple[np.ndarray, np.ndarray] | None = None, names: Sequence[str] | None = None) -> None:
        self.graph = validate_dag(adjacency)
        n = self.graph.shape[0]
        self.n = n
        if len(mechanisms) != n:
            raise ValueError(f"need one mechanism per node: {len(mechanisms)} for {n} nodes")
        for j, mech in enumerate(mechanisms):
            pa = tuple(parents(self.graph, j))
            if mech is None and pa:
                raise ValueError(f"node {j} has parents {pa} but no mechanism")
            if mech is not None and tuple(sorted(mech.parents)) != pa:
                raise ValueError(f"mechanism of node {j} reads {mech.parents}, graph parents are {pa}")
        self.mechanisms = list(mechanisms)
        self.noise_std = np.asarray(noise_std, dtype=np.float64).reshape(n)
        if np.any(self.noise_std <= 0) or not np.all(np.isfinite(self.noise_std)):
            raise ValueError("noise_std must be positive and finite")
        self.noise_mean = (np.zeros(n) if noise_mean is None
                           else np.asarray(noise_mean, dtype=np.float64).reshape(n))
        if box is not None:
            low, high = (np.broadcast_to(np.asarray(b, dtype=np.float64), (n,)).copy() for b in box)
            if np.any(low >= high):
                raise ValueError("box needs low < high for every node")
            box = (low, high)
        self.box = box
        self.names = list(names) if names is not None else [f"z{i}" for i in range(n)]
        self.order = topological_order(self.graph)
        self._is_linear = all(m is None or m.is_linear for m in self.mechanisms)
        self._params_cache = lru_cache(maxsize=256)(self._node_params_uncached)
        self._affine_cache = lru_cache(maxsize=256)(self._affine_uncached)

    # --- structure ----------------------------------------------------------------------------
    @property
    def is_linear(self) -> bool:
        """True iff every mechanism is linear (then the SCM is linear Gaussian)."""
        return self._is_linear

    def check_intervention(self, intervention: Intervention | None) -> None:
        """Raise ``ValueError`` if ``intervention`` targets a node this SCM does not have."""
        if intervention is not None and max(intervention.targets) >= self.n:
            raise ValueError(f"intervention targets {intervention.targets} but the SCM has nodes "
                             f"0..{self.n - 1}")

    def node_params(self, intervention: Intervention | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(factor, mean, std)``, each ``(n,)``: mechanism factor, noise mean and noise std of
        every node in the regime of ``intervention`` (None = observational). Read-only arrays."""
        return self._params_cache(intervention)

    def _node_params_uncached(self, intervention: Intervention | None):
        self.check_intervention(intervention)
        factor, mean, std = np.ones(self.n), self.noise_mean.copy(), self.noise_std.copy()
        if intervention is not None:
            for t in intervention.targets:
                factor[t], mean[t], std[t] = intervention.node_params(t, float(self.noise_std[t]))
        for a in (factor, mean, std):
            a.setflags(write=False)
        return factor, mean, std

    def weight_matrix(self, intervention: Intervention | None = None) -> np.ndarray:
        """Linear SCMs only: ``W[i, j]`` = effective weight of ``i -> j`` in the regime."""
        if not self.is_linear:
            raise ValueError("weight_matrix is defined for linear SCMs only")
        factor = self.node_params(intervention)[0]
        W = np.zeros((self.n, self.n))
        for j, mech in enumerate(self.mechanisms):
            if mech is not None:
                assert isinstance(mech, LinearMechanism)
                W[list(mech.parents), j] = mech.weights * factor[j]
        return W

    def _affine_uncached(self, intervention: Intervention | None):
        # z = u (I - W)^{-1} row-wise, u = mean + std * eps
        _, mean, std = self.node_params(intervention)
        M = np.linalg.inv(np.eye(self.n) - self.weight_matrix(intervention))
        return std[:, None] * M, mean @ M

    # --- sampling -----------------------------------------------------------------------------
    def forward(self, eps: np.ndarray, intervention: Intervention | None = None) -> np.ndarray:
        """Latents ``(N, n)`` from standardised exogenous noise ``eps`` ``(N, n)`` in a regime."""
        eps = np.asarray(eps, dtype=np.float64)
        if eps.ndim != 2 or eps.shape[1] != self.n:
            raise ValueError(f"eps must have shape (N, {self.n}), got {eps.shape}")
        if self.is_linear:
            A, c = self._affine_cache(intervention)
            return eps @ A + c
        factor, mean, std = self.node_params(intervention)
        z = mean + std * eps
        for j in self.order:
            mech = self.mechanisms[j]
            if mech is not None and factor[j] != 0.0:
                z[:, j] += factor[j] * mech(z)
        return z

    def abduct(self, z: np.ndarray, intervention: Intervention | None = None) -> np.ndarray:
        """Inverse of ``forward``: the standardised noise ``(N, n)`` that produced ``z`` ``(N, n)``."""
        z = self._check_z(z)
        return self._residual(z, intervention)[0]

    def sample(self, num: int, intervention: Intervention | None = None, seed: SeedLike = None,
               *, max_tries: int = 1000) -> np.ndarray:
        """``num`` i.i.d. latent samples ``(num, n)`` of the regime; truncated to the box if any."""
        rng = as_generator(seed)
        if self.box is None:
            return self.forward(rng.standard_normal((num, self.n)), intervention)
        out = np.empty((num, self.n))
        filled = 0
        for _ in range(max_tries):
            z = self.forward(rng.standard_normal((max(num - filled, 1) * 2, self.n)), intervention)
            z = z[self.in_box(z)][: num - filled]
            out[filled: filled + len(z)] = z
            filled += len(z)
            if filled == num:
                return out
        raise RuntimeError(f"rejection sampling into the box accepted {filled} of {num} samples in "
                           f"{max_tries} rounds; the regime {intervention} puts almost no mass in the box")

    def in_box(self, z: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: which rows of ``z`` lie inside the box (all True without a box)."""
        if self.box is None:
            return np.ones(len(z), dtype=bool)
        return np.all((z >= self.box[0]) & (z <= self.box[1]), axis=1)

    # --- densities and scores -----------------------------------------------------------------
    def _check_z(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.n:
            raise ValueError(f"z must have shape (N, {self.n}), got {z.shape}")
        return z

    def _residual(self, z: np.ndarray, intervention: Intervention | None):
        factor, mean, std = self.node_params(intervention)
        f = np.zeros_like(z)
        for j, mech in enumerate(self.mechanisms):
            if mech is not None and factor[j] != 0.0:
                f[:, j] = factor[j] * mech(z)
        return (z - f - mean) / std, factor, std

    def log_prob(self, z: np.ndarray, intervention: Intervention | None = None) -> np.ndarray:
        """Exact log-density ``(N,)`` of the untruncated regime at ``z`` ``(N, n)``."""
        z = self._check_z(z)
        eps, _, std = self._residual(z, intervention)
        return -0.5 * np.sum(eps**2, axis=1) - np.sum(np.log(std)) - 0.5 * self.n * _LOG_2PI

    def score(self, z: np.ndarray, intervention: Intervention | None = None) -> np.ndarray:
        """Exact score ``grad_z log p(z)`` ``(N, n)`` of the untruncated regime."""
        z = self._check_z(z)
        eps, factor, std = self._residual(z, intervention)
        r = eps / std  # (z_j - f_j - mu_j) / sigma_j^2
        s = -r
        for j, mech in enumerate(self.mechanisms):
            if mech is not None and factor[j] != 0.0:
                s[:, list(mech.parents)] += (r[:, j] * factor[j])[:, None] * mech.grad(z)
        return s

    def score_difference(self, z: np.ndarray, intervention_a: Intervention | None,
                         intervention_b: Intervention | None) -> np.ndarray:
        """``D(z) = s_a(z) - s_b(z)`` ``(N, n)``: score of regime a minus score of regime b."""
        return self.score(z, intervention_a) - self.score(z, intervention_b)

    def moments(self, intervention: Intervention | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Linear SCMs only: exact mean ``(n,)`` and covariance ``(n, n)`` of the untruncated regime."""
        A, c = self._affine_cache(intervention) if self.is_linear else (None, None)
        if A is None:
            raise ValueError("closed-form moments exist for linear SCMs only; sample instead")
        return c.copy(), A.T @ A

    def standardized(self) -> SCM:
        """Linear SCMs only: the same model with every node rescaled to observational variance 1.

        ``z'_i = z_i / s_i`` with ``s_i`` the observational std of ``z_i``; still a linear Gaussian
        SCM on the same graph (weights ``w_ij s_i / s_j``, noise std ``sigma_j / s_j``).
        """
        _, cov = self.moments()
        s = np.sqrt(np.diag(cov))
        mechs: list[Mechanism | None] = []
        for j, mech in enumerate(self.mechanisms):
            if mech is None:
                mechs.append(None)
            else:
                assert isinstance(mech, LinearMechanism)
                mechs.append(LinearMechanism(mech.parents, mech.weights * s[list(mech.parents)] / s[j]))
        box = None if self.box is None else (self.box[0] / s, self.box[1] / s)
        return SCM(self.graph, mechs, self.noise_std / s, self.noise_mean / s, box=box, names=self.names)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_params_cache")
        state.pop("_affine_cache")
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._params_cache = lru_cache(maxsize=256)(self._node_params_uncached)
        self._affine_cache = lru_cache(maxsize=256)(self._affine_uncached)

    def __repr__(self) -> str:
        kinds = sorted({type(m).__name__ for m in self.mechanisms if m is not None}) or ["roots only"]
        return f"SCM(n={self.n}, edges={int(self.graph.sum())}, mechanisms={kinds})"


def random_scm(adjacency: np.ndarray, mechanism: str = "linear", seed: SeedLike = None, *,
               noise_var_range: tuple[float, float] = (0.5, 1.5),
               weight_range: tuple[float, float] = (0.5, 1.5)) -> SCM:
    """An SCM of the published protocol on ``adjacency``: noise variances uniform in
    ``noise_var_range`` and random mechanisms of kind ``mechanism`` (``linear``, ``quadratic``,
    ``mlp``; see ``random_mechanism``)."""
    A = validate_dag(adjacency)
    rng = as_generator(seed)
    n = A.shape[0]
    noise_std = np.sqrt(rng.uniform(*noise_var_range, size=n))
    mechs = [random_mechanism(mechanism, tuple(parents(A, j)), rng, weight_range=weight_range)
             for j in range(n)]
    return SCM(A, mechs, noise_std)

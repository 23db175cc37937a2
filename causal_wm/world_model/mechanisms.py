"""Learned causal mechanisms over learned latents.

Every learned latent ``z_k`` gets an additive-noise mechanism ``z_k = f_k(z_pa(k)) + r_k`` whose
residual ``r_k`` follows a learned one-dimensional distribution (``QuantileNoise``). Distributions
are stored as quantile functions on a standard-normal grid, so a standard normal number ``e`` maps
to a sample ``Q(e)`` and back (``Q^-1``): sampling, abduction of the exogenous noise and common random
numbers across actions all use the same ``e``. Learned latents are identified only up to
element-wise invertible maps, so a fixed parametric noise family would be wrong in general; an
empirical quantile function is exact in the limit for any continuous one-dimensional law.

``f_k`` is linear, with weights from two-stage least squares on the regimes as instruments (see
``NodeMechanism.fit``: learned parents are noisy, and plain least squares would shrink every
causal effect), or a small tanh MLP when it predicts far better on held-out rows (a linear map
extrapolates sanely to interventions outside the data; an MLP only where it must).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

# Standard-normal grid of the stored quantile functions; beyond it the quantile function continues
# linearly with the slope of its last grid cell.
GRID = np.linspace(-3.0, 3.0, 61)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


class QuantileNoise:
    """A one-dimensional distribution as its quantile function on ``GRID`` (standard-normal scores).

    Args:
        values: ``(len(GRID),)`` non-decreasing quantiles ``Q(GRID)``.
    """

    def __init__(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape != GRID.shape or not np.all(np.isfinite(values)):
            raise ValueError(f"quantiles must be {GRID.shape} finite numbers, got shape {values.shape}")
        # strictly increasing so that the inverse is a function (and left as is when it already is,
        # so that a saved and reloaded distribution is bit-identical)
        values = np.maximum.accumulate(values)
        if np.any(np.diff(values) <= 0):
            spread = max(float(values[-1] - values[0]), 1e-6)
            values = values + np.arange(len(GRID)) * spread * 1e-9
        self.values = values

    @classmethod
    def fit(cls, samples: np.ndarray) -> QuantileNoise:
        """Empirical quantiles of ``samples`` ``(m,)`` (at least 20 finite values)."""
        samples = np.asarray(samples, dtype=np.float64).reshape(-1)
        if samples.size < 20:
            raise ValueError(f"a noise distribution needs at least 20 samples, got {samples.size}")
        if not np.all(np.isfinite(samples)):
            raise ValueError("noise samples contain NaN or infinite values")
        return cls(np.quantile(samples, _normal_cdf(GRID)))

    @classmethod
    def gaussian(cls, mean: float, std: float) -> QuantileNoise:
        return cls(mean + std * GRID)

    def _slopes(self) -> tuple[float, float]:
        step = GRID[1] - GRID[0]
        low = (self.values[1] - self.values[0]) / step
        high = (self.values[-1] - self.values[-2]) / step
        # the outermost cells are the noisiest: use the mean slope of the outer 5 cells
        low = (self.values[5] - self.values[0]) / (5 * step) if len(GRID) > 6 else low
        high = (self.values[-1] - self.values[-6]) / (5 * step) if len(GRID) > 6 else high
        return float(low), float(high)

    def quantile(self, e: np.ndarray) -> np.ndarray:
        """Samples ``Q(e)`` of standard normal scores ``e`` (any shape)."""
        e = np.asarray(e, dtype=np.float64)
        out = np.interp(e, GRID, self.values)
        low, high = self._slopes()
        out = np.where(e < GRID[0], self.values[0] + (e - GRID[0]) * low, out)
        return np.where(e > GRID[-1], self.values[-1] + (e - GRID[-1]) * high, out)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Standard normal scores ``Q^-1(x)`` of values ``x`` (any shape)."""
        x = np.asarray(x, dtype=np.float64)
        out = np.interp(x, self.values, GRID)
        low, high = self._slopes()
        out = np.where(x < self.values[0], GRID[0] + (x - self.values[0]) / max(low, 1e-12), out)
        return np.where(x > self.values[-1], GRID[-1] + (x - self.values[-1]) / max(high, 1e-12), out)

    @property
    def mean(self) -> float:
        return float(np.mean(self.quantile(np.random.default_rng(0).standard_normal(20_000))))

    def moments(self, points: int = 4096) -> tuple[float, float]:
        """Mean and standard deviation of the distribution, by the midpoint rule on ``points``
        equal-probability cells of the standard normal (deterministic, no sampling)."""
        from scipy.special import ndtri

        x = self.quantile(ndtri((np.arange(points) + 0.5) / points))
        return float(np.mean(x)), float(np.std(x))

    def state(self) -> list[float]:
        return [float(v) for v in self.values]


class NodeMechanism:
    """``z_k = f(z_parents) + r`` with ``r ~ noise`` (see the module docstring).

    Args:
        parents: learned parent indices (ascending).
        weights: linear part ``(len(parents),)`` and ``intercept``.
        mlp: optional ``[(W1, b1), (W2, b2), (W3, b3)]`` numpy weights of a tanh MLP replacing the linear part.
        noise: the residual distribution.
        network: optional ``(w1 (H, p), b1 (H,), w2 (H,))`` SiLU network added to the linear part.
        base: optional earlier mechanism of the same latent that this one adjusts (a warm start after a
            mechanism shift): ``f(z) = base_scale * base.mean(z) + weights . z_parents + intercept``.
        base_scale: the factor ``alpha`` on ``base``'s mean (used only with ``base``).
    """

    def __init__(self, parents: list[int], weights: np.ndarray, intercept: float, noise: QuantileNoise,
                 mlp: list[tuple[np.ndarray, np.ndarray]] | None = None,
                 network: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                 base: NodeMechanism | None = None, base_scale: float = 1.0) -> None:
        self.parents = [int(p) for p in parents]
        self.weights = np.asarray(weights, dtype=np.float64).reshape(len(self.parents))
        self.intercept = float(intercept)
        self.noise = noise
        self.mlp = None if mlp is None else [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in mlp]
        # (w1 (H, p), b1 (H,), w2 (H,)): a SiLU network added to the linear part (the latent SCM of the
        # parametric image CRL route)
        self.network = None if network is None else tuple(np.asarray(a, np.float64) for a in network)
        if base is not None and mlp is not None:
            raise ValueError("a warm-started mechanism adjusts its base linearly; it cannot also have an mlp")
        if base is not None and sorted(base.parents) != self.parents:
            raise ValueError(f"the base mechanism reads parents {base.parents}, this one {self.parents}")
        self.base = base
        self.base_scale = float(base_scale)
        if not np.isfinite(self.base_scale):
            raise ValueError(f"base_scale must be finite, got {base_scale}")
        self.estimator = "mlp" if mlp is not None else "least squares"

    @property
    def kind(self) -> str:
        if self.mlp is not None:
            return "mlp"
        if self.base is not None:
            return f"warm start ({self.base.kind})"
        return "linear + network" if self.network is not None else "linear"

    def mean(self, z: np.ndarray) -> np.ndarray:
        """``f(z[:, parents])`` ``(num,)`` for latents ``z`` ``(num, n)``."""
        x = np.asarray(z, dtype=np.float64)[:, self.parents]
        if self.mlp is None:
            out = x @ self.weights + self.intercept
            if self.network is not None:
                w1, b1, w2 = self.network
                pre = x @ w1.T + b1
                out = out + (pre / (1.0 + np.exp(-pre))) @ w2
            if self.base is not None:
                out = out + self.base_scale * self.base.mean(z)
            return out
        h = x
        for i, (w, b) in enumerate(self.mlp):
            h = h @ w.T + b
            if i < len(self.mlp) - 1:
                h = np.tanh(h)
        return h[:, 0]

    def state(self) -> dict[str, Any]:
        return {"parents": self.parents, "weights": self.weights.tolist(), "intercept": self.intercept,
                "noise": self.noise.state(), "estimator": self.estimator,
                "mlp": None if self.mlp is None else [[w.tolist(), b.tolist()] for w, b in self.mlp],
                "network": None if self.network is None else [a.tolist() for a in self.network],
                "base": None if self.base is None else self.base.state(), "base_scale": self.base_scale}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NodeMechanism:
        mlp = None if state["mlp"] is None else [(np.asarray(w), np.asarray(b)) for w, b in state["mlp"]]
        network = state.get("network")
        base = state.get("base")
        mech = cls(state["parents"], np.asarray(state["weights"]), state["intercept"],
                   QuantileNoise(np.asarray(state["noise"])), mlp,
                   None if network is None else tuple(np.asarray(a) for a in network),
                   None if base is None else cls.from_state(base), float(state.get("base_scale", 1.0)))
        mech.estimator = str(state.get("estimator", mech.estimator))
        return mech

    @classmethod
    def warm_start(cls, base: NodeMechanism, z: np.ndarray, k: int, *, ridge: float = 1e-3) -> NodeMechanism:
        """The mechanism of latent ``k`` after a shift, adjusted from ``base`` (its mechanism before) on
        few rows ``z`` ``(m, n)`` (m >= 3) where ``k`` is not intervened on.

        ``f(z) = alpha * base.mean(z) + beta + gamma . z_parents`` with ``(alpha, beta, gamma)`` from least
        squares penalised by ``ridge * m * ((alpha - 1)^2 + beta^2 + |gamma|^2)``: the old mechanism is the
        prior, and tens of rows suffice for sign flips, rescalings and offsets. Adjusting a warm-started
        mechanism again folds both adjustments into one over the original base. The residual
        distribution is refitted (``residual_noise``). Returns a new mechanism; ``base`` is unchanged.
        """
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or not 0 <= k < z.shape[1]:
            raise ValueError(f"latents must be (m, n) with node {k} in range, got shape {z.shape}")
        if len(z) < 3:
            raise ValueError(f"a warm start of the mechanism of latent {k} needs at least 3 rows, got {len(z)}")
        if not np.all(np.isfinite(z)):
            raise ValueError("latents contain NaN or infinite values")
        if not ridge > 0:
            raise ValueError(f"ridge must be positive, got {ridge}")
        parents = list(base.parents)
        design = np.column_stack([base.mean(z), np.ones(len(z)), z[:, parents]])
        prior = np.zeros(design.shape[1])
        prior[0] = 1.0
        penalty = ridge * len(z) * np.eye(design.shape[1])
        delta = np.linalg.solve(design.T @ design + penalty, design.T @ (z[:, k] - design @ prior))
        alpha, beta, gamma = 1.0 + delta[0], float(delta[1]), delta[2:]
        if base.base is not None and base.mlp is None and base.network is None:
            # alpha * (a0 * g(z) + w0 . z_pa + b0) + beta + gamma . z_pa over the original base g
            alpha, beta, gamma = (alpha * base.base_scale, alpha * base.intercept + beta,
                                  alpha * base.weights + gamma)
            base = base.base
        mech = cls(parents, gamma, beta, QuantileNoise.gaussian(0, 1), base=base, base_scale=alpha)
        mech.estimator = "warm start"
        mech.noise = residual_noise(z[:, k] - mech.mean(z))
        return mech

    @classmethod
    def from_latent_scm(cls, scm: Any, k: int, parents: list[int], z: np.ndarray) -> NodeMechanism:
        """The mechanism of latent ``k`` that a latent SCM (``causal_wm.crl.latent_scm.LatentSCMParameters``,
        in the same coordinates as ``z``) found, restricted to ``parents`` (the thresholded graph: inputs
        outside it are dropped); its residual distribution is refitted on ``z`` ``(m, n)``, rows where
        ``k`` is not intervened on."""
        parents = sorted(int(p) for p in parents)
        network = None
        if scm.mechanism == "mlp" and parents:
            # the network's inputs outside the graph are held at the observational mean 0
            network = (scm.w1[k][:, parents], scm.b1[k], scm.w2[k])
        mech = cls(parents, scm.weight[parents, k], float(scm.bias[k]), QuantileNoise.gaussian(0, 1),
                   network=network)
        mech.estimator = "latent SCM of the representation"
        mech.noise = QuantileNoise.fit(np.asarray(z, dtype=np.float64)[:, k] - mech.mean(z))
        return mech

    @classmethod
    def fit(cls, z: np.ndarray, k: int, parents: list[int], *, regimes: np.ndarray | None = None,
            hidden: int = 32, steps: int = 600, mlp_gain: float = 0.8, max_mlp_rows: int = 8000,
            seed: int = 0) -> NodeMechanism:
        """Fit the mechanism of latent ``k`` on rows ``z`` ``(m, n)`` where ``k`` is not intervened on.

        Args:
            regimes: ``(m,)`` regime of every row. Learned latents are noisy proxies of the true
                ones, and least squares on noisy parents shrinks every causal weight towards zero
                (errors in variables), which is harmless for prediction in the data's regimes and
                badly wrong for interventions outside them. The regimes are instruments: they move
                the parents and leave ``k``'s own noise alone, so the linear weights come from
                two-stage least squares on them (per-regime means), which is consistent despite the
                noise in the parents. Without regimes, or when they do not move the parents in
                enough independent directions, ordinary least squares.
            mlp_gain: an MLP replaces the linear map only when its held-out mean squared error is
                below ``mlp_gain`` times the linear least-squares one (strongly nonlinear mechanisms).
        """
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or not 0 <= k < z.shape[1]:
            raise ValueError(f"latents must be (m, n) with node {k} in range, got shape {z.shape}")
        if len(z) < 40:
            raise ValueError(f"the mechanism of latent {k} needs at least 40 rows where it is not intervened "
                             f"on, got {len(z)}")
        parents = sorted(int(p) for p in parents)
        y = z[:, k]
        if not parents:
            return cls([], np.zeros(0), 0.0, QuantileNoise.fit(y))
        x = z[:, parents]
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(z))
        n_val = max(len(z) // 5, 10)
        val, train = order[:n_val], order[n_val:]
        design = np.column_stack([x, np.ones(len(x))])
        coef = np.linalg.lstsq(design[train], y[train], rcond=None)[0]
        linear_val = float(np.mean((design[val] @ coef - y[val]) ** 2))
        # the MLP sees a subsample: full-batch steps on tens of thousands of rows buy little accuracy
        sub = train[:max_mlp_rows]
        mlp, mlp_val = _fit_mlp(x[sub], y[sub], x[val], y[val], hidden=hidden, steps=steps, seed=seed)
        if mlp is not None and mlp_val < mlp_gain * linear_val:
            mech = cls(parents, np.zeros(len(parents)), 0.0, QuantileNoise.gaussian(0, 1), mlp)
        else:
            iv = None if regimes is None else instrumental_linear(x, y, np.asarray(regimes))
            coef = iv if iv is not None else np.linalg.lstsq(design, y, rcond=None)[0]
            mech = cls(parents, coef[:-1], float(coef[-1]), QuantileNoise.gaussian(0, 1))
            mech.estimator = "two-stage least squares" if iv is not None else "least squares"
        mech.noise = QuantileNoise.fit(y - mech.mean(z))
        return mech


def residual_noise(residuals: np.ndarray, *, min_quantile_rows: int = 50) -> QuantileNoise:
    """The residual distribution of a mechanism from its residuals ``(m,)`` (m >= 2, finite): empirical
    quantiles with at least ``min_quantile_rows`` of them, else Gaussian with their mean and std."""
    r = np.asarray(residuals, dtype=np.float64).reshape(-1)
    if r.size < 2:
        raise ValueError(f"a residual distribution needs at least 2 residuals, got {r.size}")
    if not np.all(np.isfinite(r)):
        raise ValueError("residuals contain NaN or infinite values")
    if r.size >= max(min_quantile_rows, 20):
        return QuantileNoise.fit(r)
    return QuantileNoise.gaussian(float(r.mean()), max(float(r.std(ddof=1)), 1e-6))


def instrumental_linear(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
                        min_strength: float = 0.1) -> np.ndarray | None:
    """Two-stage least squares of ``y`` ``(m,)`` on ``x`` ``(m, p)`` with group indicators as instruments:
    the count-weighted regression of the group means of ``y`` on those of ``x``. Returns ``(p + 1,)``
    (weights, intercept), or None when there are too few groups or the group means of ``x`` do not
    vary in ``p`` directions by at least ``min_strength`` of their within-group spread (weak
    instruments)."""
    labels, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    p = x.shape[1]
    if len(labels) < p + 2 or counts.min() < 5:
        return None
    mean_x = np.zeros((len(labels), p))
    np.add.at(mean_x, inverse, x)
    mean_x /= counts[:, None]
    mean_y = np.bincount(inverse, weights=y) / counts
    w = counts / counts.sum()
    centred = (mean_x - w @ mean_x) * np.sqrt(w)[:, None]
    within = np.sqrt(np.mean((x - mean_x[inverse]) ** 2, axis=0))
    strength = np.linalg.svd(centred / np.maximum(within, 1e-12), compute_uv=False)
    if strength.min() < min_strength:
        return None
    design = np.column_stack([mean_x, np.ones(len(labels))]) * np.sqrt(w)[:, None]
    return np.linalg.lstsq(design, mean_y * np.sqrt(w), rcond=None)[0]


def _fit_mlp(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *, hidden: int, steps: int,
             seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]] | None, float]:
    """A 2-hidden-layer tanh MLP by full-batch Adam (``causal_wm._torch.train_early_stopping``,
    held-out error every 20 steps, no early stop) with the best held-out weights kept."""
    from causal_wm._torch import train_early_stopping

    if steps <= 0:
        return None, float("inf")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                            nn.Linear(hidden, 1)).double()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    xv, yv = torch.as_tensor(x_val), torch.as_tensor(y_val)

    def step_loss() -> torch.Tensor:
        loss = torch.mean((net(xt)[:, 0] - yt) ** 2)
        if not torch.isfinite(loss):
            raise FloatingPointError("the mechanism fit diverged (non-finite loss)")
        return loss

    @torch.no_grad()
    def val_loss() -> float:
        return float(torch.mean((net(xv)[:, 0] - yv) ** 2))

    epochs = max(1, steps // 20)
    result = train_early_stopping(net, step_loss, val_loss, epochs=epochs, steps_per_epoch=20, lr=1e-2,
                                  patience=epochs)
    weights = [p.detach().numpy() for p in net.parameters()]
    layers = [(weights[i], weights[i + 1]) for i in range(0, len(weights), 2)]
    return layers, min(result.val_loss)

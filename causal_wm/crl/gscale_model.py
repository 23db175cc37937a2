"""The networks of GSCALE-I on vectors (``causal_wm.crl.gscale``): the per-coordinate monotone input
map and the structured model (encoder, decoder and one quadratic head per pair)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm
from torch import nn

from causal_wm._torch import smooth_mlp


# --- input map ----------------------------------------------------------------------------------
class InputMap(nn.Module):
    """Per-coordinate monotone map of observations ``(N, d) -> (N, d)`` and its inverse.

    ``standard``: ``(x - mean) / std``. ``quantile``: ``Phi^{-1}(F_j(x_j))`` with ``F_j`` the pooled
    empirical CDF of coordinate ``j`` (piecewise linear between ``knots`` quantiles, linear
    extrapolation beyond), followed by standardisation. Knots are kept in float64 so that strongly
    saturated coordinates (``tanh`` read-outs near +-1) keep their resolution.
    """

    def __init__(self, x: np.ndarray, kind: str = "quantile", knots: int = 513) -> None:
        super().__init__()
        self.kind = kind
        x = np.asarray(x, dtype=np.float64)
        d = x.shape[1]
        if kind == "quantile":
            probs = np.linspace(0.0, 1.0, knots)
            q = np.quantile(x, probs, axis=0).T  # (d, K)
            # strictly increasing knots: ties (a saturated read-out) would make the map non-invertible
            span = np.maximum(q[:, -1] - q[:, 0], 1e-12)
            q = q + np.arange(knots)[None, :] * (1e-9 * span[:, None])
            eps = 0.5 / len(x)
            g = norm.ppf(np.clip(probs, eps, 1 - eps))
            g = np.broadcast_to(g, (d, knots)).copy()
        elif kind == "standard":
            q = np.stack([x.min(axis=0), x.max(axis=0)], axis=1)
            q[:, 1] = np.maximum(q[:, 1], q[:, 0] + 1e-12)
            mu, sd = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-12)
            g = (q - mu[:, None]) / sd[:, None]
        else:
            raise ValueError(f"input_transform must be 'quantile' or 'standard', got {kind!r}")
        self.register_buffer("x_knots", torch.as_tensor(q, dtype=torch.float64))
        self.register_buffer("u_knots", torch.as_tensor(g, dtype=torch.float64))
        # standardise the mapped values (the quantile map is already close to unit variance)
        u = self._interp(torch.as_tensor(x[: min(len(x), 50_000)]), self.x_knots, self.u_knots).numpy()
        self.register_buffer("u_mean", torch.as_tensor(u.mean(axis=0), dtype=torch.float64))
        self.register_buffer("u_std", torch.as_tensor(np.maximum(u.std(axis=0), 1e-12), dtype=torch.float64))

    @staticmethod
    def _interp(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """Piecewise-linear interpolation per column of ``x`` ``(N, d)`` through knots ``(d, K)``."""
        xt = x.T.contiguous()
        idx = torch.searchsorted(xs, xt).clamp(1, xs.shape[1] - 1)
        x0, x1 = torch.gather(xs, 1, idx - 1), torch.gather(xs, 1, idx)
        y0, y1 = torch.gather(ys, 1, idx - 1), torch.gather(ys, 1, idx)
        t = (xt - x0) / (x1 - x0)
        return (y0 + t * (y1 - y0)).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        u = self._interp(x.to(torch.float64), self.x_knots, self.u_knots)
        return ((u - self.u_mean) / self.u_std).to(dtype)

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        dtype = u.dtype
        u = u.to(torch.float64) * self.u_std + self.u_mean
        return self._interp(u, self.u_knots, self.x_knots).to(dtype)


# --- the structured model -----------------------------------------------------------------------
class GScaleModel(nn.Module):
    """Encoder, decoder and per-pair heads.

    ``raw(u)`` ``(B, d) -> (B, n)`` is the network output on mapped observations; the learned latents
    are ``z_hat = (raw - center) / scale`` (``center`` the head vertices, ``scale`` the observational
    standard deviations, both set after training by ``finalize``). ``heads`` ``(n, 3)``: the logit of
    pair ``k`` is ``c0 + c1 raw_k + c2 raw_k^2`` (``log p^a / p^b`` for the pair ``(a, b)``).
    """

    def __init__(self, input_map: InputMap, n: int, hidden: int, depth: int, seed: int) -> None:
        super().__init__()
        d = input_map.x_knots.shape[0]
        self.input_map = input_map
        # a linear map plus a smooth residual that starts at zero: the linear part carries the
        # initialisation from the pair precisions (``linear_init``), the residual bends it
        self.encoder_linear = nn.Linear(d, n)
        self.encoder_net = smooth_mlp(d, n, hidden, depth, zero_last=True, seed=seed)
        self.decoder_net = smooth_mlp(n, d, hidden, depth, seed=seed + 1)
        self.heads = nn.Parameter(torch.zeros(n, 3))
        self.register_buffer("center", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))

    def raw(self, u: torch.Tensor) -> torch.Tensor:
        return self.encoder_linear(u) + self.encoder_net(u)

    def linear_init(self, weight: np.ndarray, bias: np.ndarray, heads: np.ndarray) -> None:
        """Set the linear part of the encoder (``weight`` ``(n, d)``, ``bias`` ``(n,)``) and the heads
        ``(n, 3)``."""
        with torch.no_grad():
            self.encoder_linear.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.encoder_linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
            self.heads.copy_(torch.as_tensor(heads, dtype=torch.float32))

    def logits(self, raw: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """Pair logits of ``raw`` ``(M, B, n)`` where block ``m`` belongs to the pair on coordinate
        ``slot[m]``; returns ``(M, B)``."""
        z = torch.gather(raw, 2, slot.view(-1, 1, 1).expand(-1, raw.shape[1], 1))[..., 0]
        c = self.heads[slot]
        return c[:, :1] + c[:, 1:2] * z + c[:, 2:3] * z * z

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Learned latents ``(N, n)`` of observations ``x`` ``(N, d)``."""
        u = self.input_map(x).to(self.center.dtype)
        return (self.raw(u) - self.center) / self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Observations ``(N, d)`` reconstructed from learned latents ``z`` ``(N, n)``."""
        return self.input_map.inverse(self.decoder_net(z * self.scale + self.center))

    def finalize(self, u_obs: torch.Tensor) -> None:
        """Set ``center`` to the vertex of every quadratic head and ``scale`` to the observational
        standard deviation (``u_obs`` mapped observational samples)."""
        with torch.no_grad():
            raw = self.raw(u_obs)
            c1, c2 = self.heads[:, 1], self.heads[:, 2]
            vertex = -c1 / (2 * c2)
            # a head without curvature has no vertex: fall back to the observational mean
            ok = c2.abs() > 1e-6 * (1 + c1.abs())
            center = torch.where(ok & torch.isfinite(vertex), vertex, raw.mean(dim=0))
            self.center.copy_(center)
            self.scale.copy_((raw - center).std(dim=0).clamp_min(1e-12))


class _Encoder(nn.Module):
    def __init__(self, model: GScaleModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode(x)


class _Decoder(nn.Module):
    def __init__(self, model: GScaleModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)

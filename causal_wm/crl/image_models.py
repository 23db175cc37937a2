"""Torch modules of the image CRL pipeline (``causal_wm.crl.images``).

Conventions: images inside the modules are float32 ``(B, 3, S, S)`` in ``[0, 1]`` (stable-baselines3
convention) with ``S`` a power of two ``>= 16``; codes ``y`` are ``(B, code_dim)``; learned latents
``z`` are ``(B, n)``. No BatchNorm or dropout anywhere: the pipeline differentiates networks in
their inputs, which is only valid in one fixed mode for such layers (docs/science.md section 3).
SiLU activations keep input gradients smooth.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from causal_wm._torch import smooth_mlp
from causal_wm.crl.latent_scm import LatentSCM
from causal_wm.crl.scores import LogRatioNet


def _check_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16 \
            or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two >= 16, got {image_size!r}")
    return int(math.log2(image_size)) - 2  # stride-2 stages down to 4 x 4


def _widths(stages: int, channels: int) -> list[int]:
    # double the width every other stage, capped at 4x: cheap early layers, enough late capacity
    return [channels * min(4, 2 ** (s // 2)) for s in range(stages)]


class ConvEncoder(nn.Module):
    """``(B, 3, S, S)`` -> ``(B, out_dim)``: stride-2 4x4 convolutions down to 4 x 4, then an MLP."""

    def __init__(self, image_size: int, out_dim: int, channels: int = 32, hidden: int = 256) -> None:
        super().__init__()
        stages = _check_size(image_size)
        widths = _widths(stages, channels)
        layers: list[nn.Module] = []
        width = 3
        for w in widths:
            layers += [nn.Conv2d(width, w, 4, 2, 1), nn.SiLU()]
            width = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * 16, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ConvDecoder(nn.Module):
    """``(B, in_dim)`` -> image logits ``(B, 3, S, S)`` (``sigmoid`` gives pixels in ``[0, 1]``)."""

    def __init__(self, image_size: int, in_dim: int, channels: int = 32, hidden: int = 256) -> None:
        super().__init__()
        stages = _check_size(image_size)
        widths = _widths(stages, channels)[::-1]
        self.start = widths[0]
        self.head = nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, widths[0] * 16), nn.SiLU())
        layers: list[nn.Module] = []
        for s, w in enumerate(widths):
            last = s == len(widths) - 1
            out = 3 if last else widths[s + 1]
            layers.append(nn.ConvTranspose2d(w, out, 4, 2, 1))
            if not last:
                layers.append(nn.SiLU())
        self.features = nn.Sequential(*layers)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.features(self.head(y).view(-1, self.start, 4, 4))


class ConvAutoencoder(nn.Module):
    """Stage 1: images ``(B, 3, S, S)`` -> code ``y`` ``(B, code_dim)`` -> image logits."""

    def __init__(self, image_size: int, code_dim: int, channels: int = 32, hidden: int = 256) -> None:
        super().__init__()
        if code_dim < 1:
            raise ValueError(f"code_dim must be positive, got {code_dim}")
        self.encoder = ConvEncoder(image_size, code_dim, channels, hidden)
        self.decoder = ConvDecoder(image_size, code_dim, channels, hidden)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.encoder(x)
        return y, self.decoder(y)


class Standardize(nn.Module):
    """Affine ``(v - mean) / std`` per coordinate, with fixed (buffer) statistics ``(k,)``."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().float().clone())
        self.register_buffer("std", std.detach().float().clone())

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return (v - self.mean) / self.std

    def inverse(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.std + self.mean


class PairReadout(nn.Module):
    """Route "pairs": code ``y`` ``(B, code_dim)`` -> learned latents ``(B, n)``.

    Latent ``k`` is the logit of the balanced classifier between the two hard interventions on node
    ``k`` (an estimate of ``log p^hi(y) / p^lo(y)``, a function of ``z_k`` alone; the heads are the
    log-ratio networks of ``causal_wm.crl.scores.ClassifierScores``), standardised to
    zero mean and unit variance on observational samples. All heads read the same whitened code
    ``u = (y - center) @ whitening``.
    """

    def __init__(self, code_dim: int, n: int, hidden: int, depth: int, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("center", torch.zeros(code_dim))
        self.register_buffer("whitening", torch.eye(code_dim))
        self.heads = nn.ModuleList(LogRatioNet(code_dim, hidden, depth, seed + 7 * k, True) for k in range(n))
        self.register_buffer("sign", torch.ones(n))
        self.out = Standardize(torch.zeros(n), torch.ones(n))

    def log_ratios(self, y: torch.Tensor) -> torch.Tensor:
        """Raw (signed) logits ``(B, n)``."""
        u = (y - self.center) @ self.whitening
        return torch.stack([head(u) for head in self.heads], dim=1) * self.sign

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.out(self.log_ratios(y))


class StructuredReadout(nn.Module):
    """Route "structured": an MLP ``y -> z`` ``(B, n)`` whose coordinate ``k`` alone feeds the
    classifier of the pair on node ``k`` (``r_k = a_k z_k + c_k + MLP_k(z_k)``), and an MLP
    ``z -> y`` that reconstructs the (standardised) code, so ``z`` must keep all of ``y``.
    """

    def __init__(self, code_dim: int, n: int, hidden: int, depth: int, seed: int = 0) -> None:
        super().__init__()
        self.n = n
        self.inp = Standardize(torch.zeros(code_dim), torch.ones(code_dim))
        self.encoder = smooth_mlp(code_dim, n, hidden, depth, seed=seed)
        self.decoder = smooth_mlp(n, code_dim, hidden, depth, seed=seed + 1)
        self.slope = nn.Parameter(torch.ones(n))
        self.offset = nn.Parameter(torch.zeros(n))
        # one small 1-d network per head, evaluated for all heads at once as grouped 1x1 convolutions
        self.head_hidden = nn.Conv1d(n, 8 * n, 1, groups=n)
        self.head_out = nn.Conv1d(8 * n, n, 1, groups=n)
        with torch.no_grad():
            self.head_out.weight.zero_()
            self.head_out.bias.zero_()
        self.out = Standardize(torch.zeros(n), torch.ones(n))

    def raw(self, y: torch.Tensor) -> torch.Tensor:
        """Unstandardised latents ``(B, n)``."""
        return self.encoder(self.inp(y))

    def logits(self, z_raw: torch.Tensor) -> torch.Tensor:
        """Pair logits ``(B, n)``; column ``k`` reads ``z_raw[:, k]`` only."""
        h = self.head_out(F.silu(self.head_hidden(z_raw[:, :, None])))[:, :, 0]
        return self.slope * z_raw + self.offset + h

    def log_ratios(self, y: torch.Tensor) -> torch.Tensor:
        """Pair logits ``(B, n)`` of codes ``y``."""
        return self.logits(self.raw(y))

    def reconstruct(self, z_raw: torch.Tensor) -> torch.Tensor:
        """Standardised code ``(B, code_dim)`` from unstandardised latents."""
        return self.decoder(z_raw)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.out(self.raw(y))


class MultinomialReadout(nn.Module):
    """Route "multinomial": one classifier over all ``2n + 1`` regimes (observational, then the pairs
    in order) on the standardised code. With balanced classes its logits are ``log p^r(y)`` up to
    one common function of ``y``, so ``logit[second_k] - logit[first_k]`` estimates
    ``log p^second / p^first`` of pair ``k`` (a function of ``z_k`` alone): learned latent ``k``,
    standardised on observational samples. All regimes train the shared features.
    """

    def __init__(self, code_dim: int, n: int, hidden: int, depth: int, seed: int = 0) -> None:
        super().__init__()
        self.inp = Standardize(torch.zeros(code_dim), torch.ones(code_dim))
        self.net = smooth_mlp(code_dim, 2 * n + 1, hidden, depth, seed=seed)
        self.register_buffer("first", 1 + 2 * torch.arange(n))
        self.register_buffer("second", 2 + 2 * torch.arange(n))
        self.out = Standardize(torch.zeros(n), torch.ones(n))

    def regime_logits(self, y: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 2n + 1)`` over the regimes."""
        return self.net(self.inp(y))

    def log_ratios(self, y: torch.Tensor) -> torch.Tensor:
        """Pair logits ``(B, n)``."""
        logits = self.regime_logits(y)
        return logits[:, self.second] - logits[:, self.first]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.out(self.log_ratios(y))


class _ReadoutMember(nn.Module):
    """One map ``u -> z`` ``(B, n)`` of a parametric read-out: a linear part plus an MLP (started at 0)."""

    def __init__(self, code_dim: int, n: int, hidden: int, depth: int, seed: int) -> None:
        super().__init__()
        self.linear = nn.Linear(code_dim, n)
        self.encoder = smooth_mlp(code_dim, n, hidden, depth, zero_last=True, seed=seed)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.linear(u) + self.encoder(u)


class ParametricReadout(nn.Module):
    """Route "parametric": a map ``h: y -> z`` ``(B, n)`` and a latent SCM on ``z``
    (``causal_wm.crl.latent_scm.LatentSCM``) whose log densities are the logits of one classifier
    over the observational regime and the ``2n`` regimes of the pairs (pair ``k``: regimes ``2k + 1``
    and ``2k + 2`` of the classifier, both hard interventions on latent ``k``).

    ``h`` is the mean of ``members`` independently trained maps, each standardised (and oriented) on
    observational frames by its ``member_center`` and ``member_scale`` ``(members, n)``: averaging
    cancels part of every member's estimation error. Pair logit ``k`` is
    ``log q_second(z_k) - log q_first(z_k)`` (a function of ``z_k`` alone, by construction); the
    output is ``z`` standardised (and oriented) on observational samples.
    """

    def __init__(self, code_dim: int, n: int, hidden: int, depth: int, mechanism: str = "linear",
                 mechanism_hidden: int = 16, seed: int = 0, members: int = 1) -> None:
        super().__init__()
        self.n = n
        self.inp = Standardize(torch.zeros(code_dim), torch.ones(code_dim))
        # member i: z = linear(u) + MLP(u); the linear part starts at every pair's linear discriminant
        self.members = nn.ModuleList(_ReadoutMember(code_dim, n, hidden, depth, seed + 97 * i) for i in range(members))
        self.register_buffer("member_center", torch.zeros(members, n))
        self.register_buffer("member_scale", torch.ones(members, n))
        self.scm = LatentSCM(n, [(k,) for k in range(n) for _ in range(2)], mechanism, mechanism_hidden, seed + 1)
        self.register_buffer("first", 2 * torch.arange(n))
        self.register_buffer("second", 2 * torch.arange(n) + 1)
        self.out = Standardize(torch.zeros(n), torch.ones(n))

    @property
    def mechanism(self) -> str:
        return self.scm.mechanism

    @property
    def num_members(self) -> int:
        return len(self.members)

    def raw(self, y: torch.Tensor) -> torch.Tensor:
        """Unstandardised latents ``(B, n)`` (the SCM's coordinates)."""
        u = self.inp(y)
        if len(self.members) == 1:
            return (self.members[0](u) - self.member_center[0]) / self.member_scale[0]
        z = torch.stack([m(u) for m in self.members])
        return ((z - self.member_center[:, None]) / self.member_scale[:, None]).mean(0)

    def regime_logits(self, y: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 2n + 1)`` over the regimes (observational first, ``logit_0 = 0``)."""
        return self.scm.logits(self.raw(y))

    def log_ratios(self, y: torch.Tensor) -> torch.Tensor:
        """Pair logits ``(B, n)``: ``log p^second / p^first`` of every pair."""
        ratios = self.scm.log_ratios(self.raw(y))
        return ratios[:, self.second] - ratios[:, self.first]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.out(self.raw(y))


class LatentDecoder(nn.Module):
    """Learned latents ``(B, n)`` -> code ``y`` ``(B, code_dim)`` (an MLP on standardised codes)."""

    def __init__(self, n: int, code_dim: int, hidden: int, depth: int, seed: int = 0) -> None:
        super().__init__()
        self.net = smooth_mlp(n, code_dim, hidden, depth, seed=seed)
        self.code = Standardize(torch.zeros(code_dim), torch.ones(code_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.code.inverse(self.net(z))

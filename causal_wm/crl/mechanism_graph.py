"""Latent graph from fitted mechanisms: a contrastive fit of the latent SCM over all regimes.

Given learned latents ``z`` (one coordinate per node, up to element-wise maps) in an observational
environment and in hard-intervention environments with known targets, fit one classifier over all
environments whose logits are the latent SCM's log densities (docs/science.md, GSCALE-I graph):

    logit_0(z) = 0,
    logit_m(z) = log q_m(z_k) - log p_k(z_k | g_k(z)),      m a hard intervention on node k,

where ``p_k`` is a Gaussian with mean ``mu_k(z)`` and log standard deviation ``s_k(z)`` produced by the
node's mechanism network ``g_k`` (an MLP whose first layer never sees ``z_k``) and ``q_m`` a learned
Gaussian. For the true parents the optimal logits are the true log density ratios
``log p^m(z) / p^0(z) = log q_m(z_k) - log p_k(z_k | z_pa(k))``, which depend on ``z_k`` and its parents
only; a group-L1 penalty on the columns of each mechanism's input weights drives the others to zero.
The Jacobians of the element-wise maps cancel between regimes, so the learned coordinates serve as
well as the true ones.

The graph is read from the fitted mechanisms: ``S[j, k]`` is the increase of the held-out
cross-entropy (nats per sample) when input ``j`` of mechanism ``k`` alone is replaced by a permuted copy
(its values drawn independently of everything else). Non-parents give ``S`` at the noise level; the
cut between the two groups comes from the data (``gap_threshold``; at least half of the ordered pairs
are not edges of any DAG), and the kept edges are projected on the closest DAG with weights
``log(S / threshold)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from causal_wm._torch import generator
from causal_wm.crl.dag import closest_dag, gap_threshold

__all__ = ["MechanismModel", "mechanism_graph", "mechanism_statistic"]

_LOG_2PI = math.log(2 * math.pi)


class MechanismModel(nn.Module):
    """Mechanisms of ``n`` nodes and the intervention densities of ``M`` environments.

    ``g_k``: ``z (B, n) -> (mean, log_std)`` of node ``k``, an MLP with ``depth`` tanh layers of width
    ``hidden`` whose first layer (and a linear skip ``L``) has a zero column ``k``; all ``n`` mechanisms
    run batched. ``linear=True`` keeps the skip only (a linear Gaussian mechanism with constant noise).
    ``slot[m]`` is the node hit by environment ``m + 1``.
    """

    def __init__(self, n: int, slot: np.ndarray, hidden: int = 32, depth: int = 2, linear: bool = False,
                 seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))
        self.n, self.linear = n, linear
        self.register_buffer("slot", torch.as_tensor(np.asarray(slot), dtype=torch.long))
        self.register_buffer("mask", 1.0 - torch.eye(n))
        M = len(slot)
        self.skip = nn.Parameter(torch.zeros(n, n))  # skip[k, j]: linear weight of input j in mechanism k
        self.bias = nn.Parameter(torch.zeros(n))
        self.log_std = nn.Parameter(torch.zeros(n))
        self.q_mean = nn.Parameter(torch.zeros(M))
        self.q_log_std = nn.Parameter(torch.zeros(M))
        self.layers = nn.ParameterList()
        if not linear:
            sizes = [n] + [hidden] * depth
            for a, b in itertools.pairwise(sizes):
                self.layers.append(nn.Parameter(torch.randn(n, b, a, generator=g) / math.sqrt(a)))
                self.layers.append(nn.Parameter(torch.zeros(n, b)))
            self.out = nn.Parameter(torch.zeros(n, 2, hidden))

    def mechanisms(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log_std)``, each ``(B, n)``: the conditional of node ``k`` given the other latents."""
        mean = z @ (self.skip * self.mask).T + self.bias
        log_std = self.log_std.expand_as(mean)
        if not self.linear:
            h = torch.tanh(torch.einsum("bj,khj->bkh", z, self.layers[0] * self.mask[:, None, :]) + self.layers[1])
            for i in range(2, len(self.layers), 2):
                h = torch.tanh(torch.einsum("bkh,kgh->bkg", h, self.layers[i]) + self.layers[i + 1])
            o = torch.einsum("bkh,koh->bko", h, self.out)
            mean = mean + o[..., 0]
            log_std = log_std + o[..., 1]
        return mean, log_std

    def log_p(self, z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        """``(B, n)``: ``log p_k(z_k | rest)``."""
        return -0.5 * ((z - mean) / log_std.exp()) ** 2 - log_std - 0.5 * _LOG_2PI

    def logits(self, z: torch.Tensor, log_p: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, M + 1)``: 0 for the observational environment, then ``log q_m(z_k) - log p_k``."""
        if log_p is None:
            log_p = self.log_p(z, *self.mechanisms(z))
        zk = z[:, self.slot]
        log_q = -0.5 * ((zk - self.q_mean) / self.q_log_std.exp()) ** 2 - self.q_log_std - 0.5 * _LOG_2PI
        r = log_q - log_p[:, self.slot]
        return torch.cat([torch.zeros_like(r[:, :1]), r], dim=1)

    def group_norms(self) -> torch.Tensor:
        """``(n, n)``, ``[j, k]``: norm of all first-layer weights from input ``j`` into mechanism ``k``."""
        sq = (self.skip * self.mask) ** 2
        if not self.linear:
            sq = sq + (self.layers[0] * self.mask[:, None, :]).pow(2).sum(dim=1)
        return (sq + 1e-12).sqrt().T


@dataclass
class _Fit:
    model: MechanismModel
    val_loss: float
    train_loss: float


def _fit(train: list[torch.Tensor], slot: np.ndarray, *, linear: bool, hidden: int, depth: int, steps: int,
         batch_size: int, lr: float, group_l1: float, seed: int, val: list[torch.Tensor]) -> _Fit:
    n = train[0].shape[1]
    model = MechanismModel(n, slot, hidden, depth, linear, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.05 * lr)
    gen = generator(seed + 1)
    labels = torch.arange(len(train)).repeat_interleave(batch_size)
    total = 0.0
    for _ in range(steps):
        z = torch.cat([t[torch.randint(len(t), (batch_size,), generator=gen)] for t in train])
        ce = F.cross_entropy(model.logits(z), labels)
        loss = ce + group_l1 * model.group_norms().sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total = 0.98 * total + 0.02 * float(ce.detach()) if total else float(ce.detach())
    model.eval()
    return _Fit(model, _held_out_loss(model, val), total)


def _held_out_loss(model: MechanismModel, val: list[torch.Tensor]) -> float:
    """Balanced cross-entropy (every environment weighted equally)."""
    with torch.no_grad():
        return float(np.mean([F.cross_entropy(model.logits(v), torch.full((len(v),), m)).item()
                              for m, v in enumerate(val)]))


def mechanism_statistic(model: MechanismModel, val: list[torch.Tensor], *, repeats: int = 2,
                        seed: int = 0) -> np.ndarray:
    """``S[j, k]``: held-out cross-entropy increase (nats per sample, balanced over environments) when
    input ``j`` of mechanism ``k`` alone is replaced by a permuted copy; ``S[k, k] = 0``."""
    n = model.n
    z = torch.cat(val)
    labels = torch.cat([torch.full((len(v),), m) for m, v in enumerate(val)])
    weights = torch.cat([torch.full((len(v),), 1.0 / len(v)) for v in val]) / len(val)
    gen = generator(seed)
    S = np.zeros((n, n))
    with torch.no_grad():
        base_lp = model.log_p(z, *model.mechanisms(z))
        base = float((F.cross_entropy(model.logits(z, base_lp), labels, reduction="none") * weights).sum())
        for _ in range(repeats):
            for j in range(n):
                zp = z.clone()
                zp[:, j] = z[torch.randperm(len(z), generator=gen), j]
                lp_perm = model.log_p(z, *model.mechanisms(zp))  # every mechanism fed the permuted input j
                for k in range(n):
                    if k == j:
                        continue
                    lp = base_lp.clone()
                    lp[:, k] = lp_perm[:, k]
                    ce = float((F.cross_entropy(model.logits(z, lp), labels, reduction="none") * weights).sum())
                    S[j, k] += (ce - base) / repeats
    return S


def mechanism_graph(latent_envs: Sequence[np.ndarray], targets: Sequence[int], *, seed: int = 0,
                    hidden: int = 32, depth: int = 2, steps: int = 1500, batch_size: int = 256, lr: float = 1e-2,
                    group_l1: float = 3e-4, val_fraction: float = 0.3, kinds: Sequence[str] = ("mlp", "linear"),
                    ) -> tuple[np.ndarray, dict[str, Any]]:
    """Latent DAG from the mechanisms of a contrastive fit of the latent SCM (module docstring).

    Args:
        latent_envs: learned latents ``(N_m, n)`` of every environment; ``[0]`` observational.
        targets: ``(M,)``; ``targets[m - 1]`` is the node that environment ``m`` hard-intervenes on.
        kinds: mechanism families to fit (``"mlp"``, ``"linear"``); the one with the lower held-out
            cross-entropy is read.

    Returns ``(A, info)``: ``A[i, j] = 1`` iff ``i -> j``; ``info`` holds the statistic ``S`` (``S[i, j]``
    the evidence for ``i -> j``), its threshold, the chosen family and the held-out losses.
    """
    torch_seed = int(seed) % (2**31)
    n = latent_envs[0].shape[1]
    slot = np.asarray(targets, dtype=np.int64)
    if len(slot) != len(latent_envs) - 1 or slot.min() < 0 or slot.max() >= n:
        raise ValueError(f"targets must give one node in 0..{n - 1} for each of the {len(latent_envs) - 1} "
                         "interventional environments")
    mean, sd = latent_envs[0].mean(axis=0), np.maximum(latent_envs[0].std(axis=0), 1e-12)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for z in latent_envs:
        zs = torch.as_tensor((z - mean) / sd, dtype=torch.float32)
        idx = rng.permutation(len(zs))
        cut = max(1, round(val_fraction * len(zs)))
        val.append(zs[idx[:cut]])
        train.append(zs[idx[cut:]])
    fits = {kind: _fit(train, slot, linear=kind == "linear", hidden=hidden, depth=depth, steps=steps,
                       batch_size=batch_size, lr=lr, group_l1=group_l1, seed=torch_seed, val=val)
            for kind in kinds}
    chosen = min(fits, key=lambda k: fits[k].val_loss)
    model = fits[chosen].model
    S = mechanism_statistic(model, val, seed=torch_seed + 2)
    off = ~np.eye(n, dtype=bool)
    threshold = gap_threshold(np.maximum(S[off], 1e-12), n * (n - 1) // 2)
    W = np.where(S > threshold, np.log(np.maximum(S, 1e-300) / threshold), 0.0)
    np.fill_diagonal(W, 0.0)
    A = closest_dag(W).adjacency
    with torch.no_grad():
        norms = model.group_norms().numpy()
    info = {"mechanism_statistic": S, "mechanism_threshold": threshold, "mechanism_kind": chosen,
            "mechanism_val_loss": {k: f.val_loss for k, f in fits.items()}, "mechanism_group_norms": norms}
    return A, info

"""Which interventions hit the same latent node: the pairing that GSCALE-I and the image pipeline
need (two hard interventions per node, docs/science.md sections 4.2 and 8.2).

- From an intervention menu: ``pairs_from_menu`` groups the hard single-node interventions by node
  and pairs the two whose means differ most; ``bayes_accuracy`` is the best balanced accuracy any
  classifier can reach between the two (the ground-truth-free yardstick of a pair's read-out).
- From data: ``find_pairs`` trains one multinomial classifier over the interventional environments
  and scores every candidate pair by how much of its log ratio's gradient falls on one direction of
  the data manifold (``pair_concentration``); ``min_cost_pairing`` is the exact perfect matching.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from causal_wm._torch import generator, smooth_mlp, train_early_stopping
from causal_wm.device import resolve_device

if TYPE_CHECKING:
    from causal_wm.crl.gscale import GScaleConfig, InputMap

__all__ = ["PairSearch", "bayes_accuracy", "find_pairs", "min_cost_pairing", "pair_concentration", "pairs_from_menu"]


# --- pairs from an intervention menu -------------------------------------------------------------
def _field(iv: Any, name: str) -> Any:
    return iv.get(name) if isinstance(iv, Mapping) else getattr(iv, name, None)


def _first(values: Any, default: float | None) -> float | None:
    if values is None:
        return default
    return float(values[0]) if isinstance(values, Sequence) and not isinstance(values, str) else float(values)


def pairs_from_menu(menu: Sequence[Any]) -> list[tuple[int, int]]:
    """The pairs of hard interventions per node, from an intervention menu.

    ``menu[k]`` is the intervention of regime ``k`` (``menu[0]`` None: observational), as an
    ``Intervention`` or its dict. The equivalence "same targets" groups the hard single-node
    interventions by node; on every node the two whose noise means differ most form the pair
    (mean-shift pairs give monotone log ratios, docs/science.md section 8), ordered by mean (then std).

    Returns:
        ``[(first, second), ...]`` regimes, one pair per node in ascending node order; learned latent
        ``k`` is pair ``k``.

    Raises:
        ValueError: a node with fewer than two hard single-node interventions, or no such node.
    """
    by_node: dict[int, list[tuple[float, float, int]]] = {}
    nodes: set[int] = set()
    for k, iv in enumerate(menu):
        if iv is None:
            continue
        targets = tuple(int(t) for t in _field(iv, "targets"))
        nodes.update(targets)
        if len(targets) != 1 or _field(iv, "kind") != "hard":
            continue
        shift = _first(_field(iv, "shift"), 0.0)
        spread = _first(_field(iv, "std"), None)
        spread = _first(_field(iv, "scale"), 1.0) if spread is None else spread
        by_node.setdefault(targets[0], []).append((shift, spread, k))
    if not nodes:
        raise ValueError("the menu has no interventions")
    missing = sorted(t for t in nodes if len(by_node.get(t, ())) < 2)
    if missing:
        raise ValueError(f"nodes {missing} have fewer than two hard single-node interventions in the menu; "
                         "the image pipeline needs a pair of hard interventions on every node")
    pairs = []
    for t in sorted(by_node):
        entries = by_node[t]
        best = max(((a, b) for i, a in enumerate(entries) for b in entries[i + 1:]),
                   key=lambda ab: abs(ab[0][0] - ab[1][0]))
        lo, hi = sorted(best)
        pairs.append((lo[2], hi[2]))
    return pairs


def bayes_accuracy(first: Any, second: Any, *, grid: int = 20001) -> float | None:
    """Balanced Bayes accuracy ``0.5 * integral of max(q_1, q_2)`` of telling two hard interventions on
    one node apart, when both give their noise as ``shift`` and absolute ``std`` (Gaussian targets);
    None when a std is relative (``scale``: it depends on the unknown observational noise)."""
    params = []
    for iv in (first, second):
        std = _first(_field(iv, "std"), None)
        if std is None or _field(iv, "kind") != "hard":
            return None
        params.append((_first(_field(iv, "shift"), 0.0), std))
    (m1, s1), (m2, s2) = params
    lo, hi = min(m1 - 8 * s1, m2 - 8 * s2), max(m1 + 8 * s1, m2 + 8 * s2)
    z = np.linspace(lo, hi, grid)
    q1 = np.exp(-0.5 * ((z - m1) / s1) ** 2) / (s1 * math.sqrt(2 * math.pi))
    q2 = np.exp(-0.5 * ((z - m2) / s2) ** 2) / (s2 * math.sqrt(2 * math.pi))
    return float(0.5 * np.trapezoid(np.maximum(q1, q2), z))



# --- pairs from data -----------------------------------------------------------------------------
def min_cost_pairing(cost: np.ndarray) -> tuple[list[tuple[int, int]], float]:
    """Minimum-cost perfect matching of ``2k`` items with symmetric pair costs ``(2k, 2k)``, exact by
    dynamic programming over subsets (``O(2^{2k} 2k)``; ``2k <= 24``). Returns pairs of item indices
    (sorted) and the total cost."""
    cost = np.asarray(cost, dtype=np.float64)
    M = cost.shape[0]
    if cost.shape != (M, M) or M % 2 or M == 0:
        raise ValueError(f"cost must be a square matrix of even size, got shape {cost.shape}")
    if M > 24:
        raise ValueError(f"exact pairing handles at most 24 items, got {M}")
    full = (1 << M) - 1
    best = np.full(1 << M, np.inf)
    choice = np.full(1 << M, -1, dtype=np.int64)
    best[full] = 0.0
    # best[S] = cheapest way to pair the items outside S; the lowest unpaired item is always paired next
    for S in range(full - 1, -1, -1):
        if bin(S).count("1") % 2:
            continue
        i = (~S & (S + 1)).bit_length() - 1
        for j in range(i + 1, M):
            if not S >> j & 1:
                T = S | (1 << i) | (1 << j)
                c = cost[i, j] + best[T]
                if c < best[S]:
                    best[S], choice[S] = c, j
    pairs, S = [], 0
    while S != full:
        i = (~S & (S + 1)).bit_length() - 1
        j = int(choice[S])
        pairs.append((i, j))
        S |= (1 << i) | (1 << j)
    return pairs, float(best[0])


@dataclass
class PairSearch:
    """Result of ``find_pairs``.

    Attributes:
        pairs: ``n`` pairs ``(a, b)`` of environment indices (1-based, ``a < b``).
        concentration: ``(2n, 2n)``; ``[a - 1, b - 1]`` = share of the tangent gradient energy of
            ``log p^a / p^b`` on its top local direction (1 for a log ratio of one latent).
        margin: smallest gap between the concentration of a chosen pair and the best alternative
            partner of either of its environments (a confidence diagnostic; positive is clear-cut).
        classifier_accuracy: held-out accuracy of the multinomial classifier.
    """

    pairs: list[tuple[int, int]]
    concentration: np.ndarray
    margin: float
    classifier_accuracy: float


def _kmeans(x: np.ndarray, k: int, seed: int, iters: int = 25) -> np.ndarray:
    """Labels ``(N,)`` of a plain k-means with k-means++ seeding."""
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        dist = np.min(((x[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1), axis=1)
        centers.append(x[rng.choice(len(x), p=dist / dist.sum())] if dist.sum() > 0 else x[rng.integers(len(x))])
    C = np.asarray(centers)
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(iters):
        labels = np.argmin(((x[:, None, :] - C[None]) ** 2).sum(-1), axis=1)
        for j in range(k):
            if np.any(labels == j):
                C[j] = x[labels == j].mean(axis=0)
    return labels


def pair_concentration(points: np.ndarray, gradients: np.ndarray, n: int, *, clusters: int = 16,
                       seed: int = 0) -> np.ndarray:
    """Concentration of pairwise log-ratio gradients on one local direction.

    Args:
        points: ``(P, d)`` evaluation points.
        gradients: ``(P, M, d)``; ``gradients[p, m]`` = gradient of ``log p^m`` (up to a term shared by
            all ``m``) at ``points[p]``.
        n: latent dimension (size of the local tangent plane).

    Returns ``(M, M)``: for ``a != b`` the share ``sum_c lambda_1^c / sum_c tr^c`` of the second-moment
    matrices of ``grad log p^a / p^b`` projected on the tangent plane of each local cluster ``c``.
    """
    P, M, d = gradients.shape
    labels = _kmeans(points, min(clusters, max(1, P // (4 * n))), seed)
    top = np.zeros((M, M))
    total = np.zeros((M, M))
    for c in np.unique(labels):
        idx = labels == c
        if idx.sum() < 2:
            continue
        local = points[idx] - points[idx].mean(axis=0)
        # tangent plane of the data manifold in this cluster: its top-n principal directions (the
        # classifier's gradient off the manifold is arbitrary)
        _, _, Vt = np.linalg.svd(local, full_matrices=False)
        T = Vt[:n].T if d > n else np.eye(d)
        g = gradients[idx] @ T  # (P_c, M, n)
        diff = g[:, :, None, :] - g[:, None, :, :]  # (P_c, M, M, n)
        # directions only: a few points with huge gradients (saturated read-outs) must not decide
        diff = diff / np.maximum(np.linalg.norm(diff, axis=-1, keepdims=True), 1e-300)
        second = np.einsum("pabi,pabj->abij", diff, diff)
        eig = np.linalg.eigvalsh(second)
        top += eig[..., -1]
        total += eig.sum(axis=-1)
    conc = np.where(total > 0, top / np.where(total > 0, total, 1.0), 0.0)
    np.fill_diagonal(conc, 0.0)
    return conc


def find_pairs(envs: Sequence[np.ndarray], *, n: int | None = None, config: GScaleConfig | None = None,
               seed: int = 0, device: str = "auto", input_map: InputMap | None = None) -> PairSearch:
    """Find which interventional environments hit the same latent node (see the module docstring).

    Args:
        envs: ``envs[0]`` observational ``(N_0, d)``, ``envs[1:]`` the ``2 n`` interventional ones.
        n: number of latents (default ``(len(envs) - 1) // 2``).
        config: ``pair_*`` settings (default: the ``cpu`` preset).
        seed, device: randomness and torch device (``"auto"``: CUDA when available).
        input_map: the per-coordinate map of the observations (default: fitted on the pooled data).
    """
    from causal_wm.crl.gscale import InputMap, TrainingDivergedError, _validate, make_config

    envs, n, _ = _validate(envs, n, None)
    cfg = config or make_config("cpu")
    dev = resolve_device(device)
    M, d = 2 * n, envs[0].shape[1]
    imap = (input_map or InputMap(np.concatenate(envs), cfg.input_transform)).to(dev)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for x in envs[1:]:
        u = imap(torch.as_tensor(x, device=dev)).float()
        perm = torch.as_tensor(rng.permutation(len(x)), device=dev)
        k = max(2, round(cfg.val_fraction * len(x)))
        val.append(u[perm[:k]])
        train.append(u[perm[k:]])
    net = smooth_mlp(d, M, cfg.pair_hidden, cfg.pair_depth, seed=seed).to(dev)
    gen = generator(seed + 1, dev)
    B = cfg.batch_size
    labels = torch.arange(M, device=dev).repeat_interleave(B)

    def step() -> torch.Tensor:
        batch = torch.cat([t[torch.randint(len(t), (B,), generator=gen, device=dev)] for t in train])
        loss = F.cross_entropy(net(batch), labels)
        if not torch.isfinite(loss):
            raise TrainingDivergedError("the pairing classifier's loss became non-finite; lower lr")
        return loss

    def val_loss() -> float:
        with torch.no_grad():
            # per-environment means: balanced classes, so the logits estimate log density ratios
            return float(sum(F.cross_entropy(net(v), torch.full((len(v),), m, device=dev)) for m, v in
                             enumerate(val)) / M)

    train_early_stopping(net, step, val_loss, epochs=cfg.pair_epochs,
                         steps_per_epoch=max(1, max(len(t) for t in train) // B), lr=cfg.lr, patience=5)
    net.requires_grad_(False)
    with torch.no_grad():
        acc = float(np.mean([(net(v).argmax(1) == m).float().mean().item() for m, v in enumerate(val)]))
    # evaluation points: an equal share of every interventional environment's held-out samples
    per = max(1, cfg.pair_points // M)
    points = torch.cat([v[:per] for v in val])
    jac = torch.cat([torch.func.vmap(torch.func.jacrev(net))(c) for c in torch.split(points, 2048)])
    conc = pair_concentration(points.double().cpu().numpy(), jac.double().cpu().numpy(), n,
                              clusters=cfg.pair_clusters, seed=seed)
    cost = 1.0 - conc
    pair_idx, _ = min_cost_pairing(cost)
    pairs = sorted((a + 1, b + 1) for a, b in pair_idx)
    margin = np.inf
    for a, b in pair_idx:
        others = [conc[a, j] for j in range(M) if j not in (a, b)] + [conc[b, j] for j in range(M) if j not in (a, b)]
        margin = min(margin, conc[a, b] - max(others))
    return PairSearch(pairs, conc, float(margin), acc)



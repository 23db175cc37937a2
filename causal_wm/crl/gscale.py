"""GSCALE-I: score-based causal representation learning for general mixing (docs/science.md section 4;
Varıcı et al., AISTATS 2024, arXiv 2310.15450, and JMLR 2025, arXiv 2402.00849).

Setting: ``x = g(z)`` with ``g`` injective and smooth, ``envs[0]`` observational and ``envs[1:]`` two
hard interventions per latent node (``2 n`` environments, order unknown). Learned latents are the true
ones up to permutation and element-wise invertible maps; with the structure below, up to permutation
and scaling when the two interventions of a node are Gaussian with a common mean.

The route (all score differences are estimated from samples, never given):

1. Pairing (``pairs=None``). For two hard interventions ``a, b`` on the same node ``t`` the log ratio
   ``log p^a / p^b`` depends on ``z_t`` alone, so its gradient in ``x`` lies, at every point, along one
   direction of the data manifold (``J^{+T}(z) e_t``). For two environments on different nodes it
   spreads over at least two. One multinomial classifier over the interventional environments gives
   every log ratio at once (``logit_a - logit_b``); ``find_pairs`` takes its input Jacobian (batched with
   ``torch.func``), splits the data in local clusters (where the manifold is nearly flat), projects the
   gradients on the cluster's tangent plane and scores each candidate pair by how much of the gradient
   energy falls on one direction. The pairing is the perfect matching with the largest total
   concentration (exact dynamic program over subsets).
2. Encoder (structured classifier, docs/science.md section 2.3). A shared encoder ``z_hat = h(x)`` and, for
   the pair on learned coordinate ``k``, a head that reads ``z_hat_k`` only:
   ``r_k = c0 + c1 z_hat_k + c2 z_hat_k^2``, trained as a balanced logistic classifier between the
   pair's two environments, plus a decoder ``x = f(z_hat)`` (reconstruction keeps ``h`` invertible).
   The logit of each pair depends on one coordinate by construction: an exact zero of the GSCALE-I
   sparsity objective. For the published design (noise variance x0.25 vs x4, common mean) the true log
   ratio is ``alpha + beta (z_t - mu)^2``, so the quadratic head is exact when ``z_hat_k`` is affine in
   ``z_t``; the only other smooth solution, ``|z_t|``, is not invertible and loses to reconstruction.
   The encoder is a linear map plus a smooth residual; the linear map starts from the pair precisions
   (``pair_precision_init``: the top eigenvector of ``P_a - P_b`` on the principal subspace, the
   LSCALE-I argument for the pair score difference), which training from a random start did not
   find (held-out pair accuracy stalled near 0.72 against a Bayes accuracy of 0.79).
   The vertex ``-c1 / (2 c2)`` of the head is the common mean of the pair, which becomes the origin of
   the learned latent (the scale is set to unit observational variance). Restarts are selected by
   held-out loss.
   Observations first pass through a per-coordinate monotone map (``InputMap``; empirical quantiles to
   a standard normal by default), which keeps the resolution of saturated read-outs.
3. Graph (``graph_method``). Default ``"mechanism"`` (``causal_wm.crl.mechanism_graph``): the latent SCM is
   fitted in the learned coordinates by one classifier over all environments whose logits are its log
   densities, ``logit_0 = 0`` and, for environment ``m`` on learned node ``k``,
   ``log q_m(z_k) - log p_k(z_k | g_k(z))`` with ``g_k`` a masked MLP (mean and log standard deviation,
   input ``k`` cut, group-L1 on its input weights) or a linear mechanism, whichever has the lower
   held-out cross-entropy. An edge ``j -> k`` is read where removing input ``j`` from ``g_k`` (a permuted
   copy in its place) raises the held-out cross-entropy above a cut found in the data, then projected
   on the closest DAG. The Jacobians of the element-wise maps cancel between regimes, so the learned
   coordinates serve as well as the true ones.
   ``"scores"`` (``latent_graph``): the two environments of node ``i`` differ only in the mechanism of
   ``i``, so a learned latent changes its distribution between them iff it is a descendant of ``i``
   (two-sample Kolmogorov-Smirnov distances, threshold from the data): this gives the ancestor
   relation, whose transitive reduction are edges. Shortcut edges (``i -> k`` with a longer path too)
   come from observational-vs-interventional log ratios re-estimated on the learned latents
   (reparametrisation invariance): for env ``m`` on learned node ``k`` the score difference is
   supported on ``{k} ∪ pa(k)``.

Training is interruptible: with ``checkpoint_dir`` every restart saves its state (weights, optimiser,
random generator, history; ``torch.load(weights_only=True)``-safe) every ``checkpoint_every`` epochs and
a rerun resumes from there; every checkpoint carries a fingerprint of the data and settings, and a
folder written for other data is refused. A non-finite loss raises ``TrainingDivergedError``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from causal_wm._random import derive_seed
from causal_wm._torch import generator, save_atomic, to_jsonable
from causal_wm.config import resolve_config
from causal_wm.crl.dag import closest_dag, gap_threshold, transitive_reduction
from causal_wm.crl.environments import validate_envs
from causal_wm.crl.gscale_model import GScaleModel, InputMap, _Decoder, _Encoder
from causal_wm.crl.mechanism_graph import mechanism_graph
from causal_wm.crl.pairing import PairSearch, find_pairs, min_cost_pairing, pair_concentration
from causal_wm.crl.representation import regime_labels
from causal_wm.crl.scores import score_differences
from causal_wm.device import resolve_device
from causal_wm.persistence import ModelFileError, Persistent, check_state, state_errors
from causal_wm.scm.graphs import transitive_closure

__all__ = [
    "PRESETS",
    "GScaleConfig",
    "GScaleModel",
    "GScaleResult",
    "InputMap",
    "PairSearch",
    "TrainingDivergedError",
    "data_fingerprint",
    "descendant_statistic",
    "find_pairs",
    "gscale_i",
    "latent_graph",
    "mechanism_graph",
    "min_cost_pairing",
    "pair_concentration",
    "pair_precision_init",
]


class TrainingDivergedError(RuntimeError):
    """Raised when a training loss becomes NaN or infinite (no broken model is returned)."""


# --- configuration ------------------------------------------------------------------------------
@dataclass
class GScaleConfig:
    """Settings of ``gscale_i``; ``PRESETS`` layers named sets on these defaults."""

    hidden: int = 128
    """width of the encoder and decoder MLPs"""
    depth: int = 3
    """hidden layers of the encoder and decoder MLPs"""
    epochs: int = 150
    """epochs of the structured classifier + autoencoder (an epoch = ceil(N_train / batch_size) steps)"""
    batch_size: int = 256
    """samples per environment in every step"""
    lr: float = 2e-3
    """Adam learning rate (cosine-decayed to 5% over the epochs)"""
    reconstruction_weight: float = 1.0
    """weight of the reconstruction error (of the standardised observations) against the pair losses"""
    scale_weight: float = 0.1
    """weight of the penalty that keeps every learned latent at unit observational variance"""
    restarts: int = 3
    """independent initialisations; the best held-out loss wins"""
    val_fraction: float = 0.2
    """held-out share of every environment (selection, early diagnostics)"""
    input_transform: str = "quantile"
    """'quantile' (each observed coordinate mapped to a standard normal through its pooled empirical
    quantiles: undoes saturating read-outs, a generic monotone per-coordinate preprocessing) or
    'standard' (mean 0, variance 1 per coordinate)"""
    pair_hidden: int = 128
    """width of the multinomial classifier used to find the pairs"""
    pair_depth: int = 2
    """hidden layers of that classifier"""
    pair_epochs: int = 60
    """maximum epochs of that classifier (early stopping on held-out loss)"""
    pair_points: int = 4000
    """points at which its input Jacobian is evaluated"""
    pair_clusters: int = 16
    """local clusters for the tangent-plane gradient concentration"""
    graph_epochs: int = 40
    """maximum epochs of the observational-vs-interventional classifiers on the learned latents"""
    graph_hidden: int = 64
    """width of those classifiers"""
    graph_method: str = "mechanism"
    """'mechanism' (edges from a contrastive fit of the latent SCM's mechanisms on the learned latents,
    ``causal_wm.crl.mechanism_graph``, combined with the descendant statistic) or 'scores' (descendant
    statistic plus observational-vs-interventional score classifiers, ``latent_graph``)"""
    mechanism_hidden: int = 32
    """width of every node's mechanism MLP ('mechanism' graph)"""
    mechanism_depth: int = 2
    """hidden layers of the mechanism MLPs"""
    mechanism_steps: int = 1500
    """Adam steps of the mechanism fit (each step draws batch_size samples of every environment)"""
    mechanism_group_l1: float = 3e-4
    """weight of the group-L1 penalty on the mechanisms' input weights"""
    linear_init: bool = True
    """start the encoder's linear part from the pair precisions (``pair_precision_init``)"""
    checkpoint_every: int = 10
    """epochs between checkpoints when ``checkpoint_dir`` is given"""
    amp: bool = False
    """bfloat16 autocast on CUDA for the structured training (ignored on CPU)"""

    def __post_init__(self) -> None:
        for name in ("hidden", "depth", "batch_size", "restarts", "pair_hidden", "pair_depth", "pair_points",
                     "pair_clusters", "graph_hidden", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("epochs", "pair_epochs", "graph_epochs"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.lr <= 0 or self.reconstruction_weight < 0 or self.scale_weight < 0:
            raise ValueError("lr must be positive and the loss weights non-negative")
        if self.graph_method not in ("mechanism", "scores"):
            raise ValueError(f"graph_method must be 'mechanism' or 'scores', got {self.graph_method!r}")
        for name in ("mechanism_hidden", "mechanism_depth", "mechanism_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.mechanism_group_l1 < 0:
            raise ValueError(f"mechanism_group_l1 must be >= 0, got {self.mechanism_group_l1}")
        if self.input_transform not in ("quantile", "standard"):
            raise ValueError(f"input_transform must be 'quantile' or 'standard', got {self.input_transform!r}")


PRESETS: dict[str, dict[str, Any]] = {
    # seconds on one CPU thread, for tests
    "debug": dict(hidden=32, depth=2, epochs=12, batch_size=64, restarts=1, pair_hidden=32, pair_epochs=8,
                  pair_points=600, pair_clusters=4, graph_epochs=6, graph_hidden=16, checkpoint_every=4,
                  mechanism_hidden=16, mechanism_steps=300),
    # n = 8, 5,000 samples per environment: about 3 minutes per problem on one thread of a shared 2-core CPU
    "cpu": dict(hidden=64, depth=2, epochs=40, batch_size=256, restarts=1, pair_hidden=128, pair_epochs=60,
                pair_points=3200, pair_clusters=12, graph_epochs=25, graph_hidden=32),
    # the defaults, for a GPU
    "full": dict(),
}


def make_config(preset: str = "cpu", **overrides: Any) -> GScaleConfig:
    """The configuration of ``preset`` with ``overrides`` applied (unknown keys raise ``ValueError``)."""
    return resolve_config(GScaleConfig, PRESETS, preset, overrides)


# --- result -------------------------------------------------------------------------------------
@dataclass
class GScaleResult(Persistent):
    """Output of ``gscale_i`` (a ``causal_wm.crl.Representation``).

    Attributes:
        model: the trained ``GScaleModel`` (eval mode; on the CPU unless moved with ``to``).
        graph: ``(n, n)`` DAG over learned latents, ``A[i, j] = 1`` iff learned ``i -> j``.
        env_targets: regime -> learned latents it intervenes on, ``{regimes[m - 1]: (target_latents[m - 1],)}``
            (regime ``m`` is ``envs[m]`` unless ``gscale_i`` was given ``regimes``).
        target_latents: ``(2n,)``; ``target_latents[m - 1]`` is the learned latent that ``envs[m]`` hit.
        pairs: ``n`` pairs ``(a, b)`` of environment indices (``a < b``) hitting the same node; pair ``k``
            is learned latent ``k``.
        pairs_given: whether the pairs were given (else found by ``find_pairs``).
        history: per restart, per epoch: ``loss`` (train), ``val_pair_loss``, ``val_reconstruction``,
            ``val_pair_accuracy`` (index 0 = before training).
        diagnostics: pairing costs, chosen restart, graph statistics and threshold (``graph["method"]``:
            ``"mechanism"`` or ``"scores"``; files written before the mechanism graph have no method and
            used ``"scores"``), seconds per stage.
    """

    model: GScaleModel
    graph: np.ndarray
    env_targets: dict[int, tuple[int, ...]]
    target_latents: np.ndarray
    pairs: list[tuple[int, int]]
    pairs_given: bool
    history: list[dict[str, list[float]]] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    FORMAT: ClassVar[str] = "causal_wm.crl.gscale"
    FORMAT_VERSION: ClassVar[int] = 1

    @property
    def n(self) -> int:
        return int(self.model.heads.shape[0])

    @property
    def d(self) -> int:
        return int(self.model.input_map.x_knots.shape[0])

    @property
    def device(self) -> torch.device:
        return self.model.center.device

    def encoder_module(self) -> nn.Module:
        """Torch module ``(N, d) -> (N, n)`` (float32 or float64 input)."""
        return _Encoder(self.model)

    def decoder_module(self) -> nn.Module:
        """Torch module ``(N, n) -> (N, d)``."""
        return _Decoder(self.model)

    def to(self, device: Any) -> GScaleResult:
        self.model.to(resolve_device(device))
        return self

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Learned latents ``(N, n)`` of observations ``x`` ``(N, d)`` (numpy in, numpy out)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"observations must have shape (N, {self.d}), got {x.shape}")
        if not len(x):
            return np.zeros((0, self.n))
        with torch.no_grad():
            return torch.cat([self.model.encode(c.to(self.device)).cpu()
                              for c in torch.split(torch.as_tensor(x), 65536)]).double().numpy()

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Observations ``(N, d)`` from learned latents ``z`` ``(N, n)``."""
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.n:
            raise ValueError(f"latents must have shape (N, {self.n}), got {z.shape}")
        if not len(z):
            return np.zeros((0, self.d))
        with torch.no_grad():
            return torch.cat([self.model.decode(c.float().to(self.device)).cpu()
                              for c in torch.split(torch.as_tensor(z), 65536)]).double().numpy()

    def state(self) -> dict[str, Any]:
        """Everything ``from_state`` needs (``weights_only``-safe: tensors, numbers, strings, lists)."""
        return {
            "format": self.FORMAT, "version": self.FORMAT_VERSION,
            "state": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "n": self.n, "d": self.d,
            "hidden": self.diagnostics["config"]["hidden"], "depth": self.diagnostics["config"]["depth"],
            "input_transform": self.model.input_map.kind,
            "knots": int(self.model.input_map.x_knots.shape[1]),
            "graph": torch.as_tensor(self.graph),
            "env_targets": [[int(r), list(t)] for r, t in sorted(self.env_targets.items())],
            "target_latents": torch.as_tensor(self.target_latents),
            "pairs": [list(p) for p in self.pairs], "pairs_given": self.pairs_given,
            "history": self.history, "diagnostics": json.dumps(to_jsonable(self.diagnostics)),
        }

    @classmethod
    def from_state(cls, state: Any, device: Any = "cpu", source: str = "state") -> GScaleResult:
        """Inverse of ``state``."""
        check_state(state, format=cls.FORMAT, version=cls.FORMAT_VERSION, source=source)
        with state_errors(source, "GSCALE-I model"):
            d, n, knots = int(state["d"]), int(state["n"]), int(state["knots"])
            # any fit of the right shapes will do: load_state_dict overwrites its buffers with the saved ones
            input_map = InputMap(np.linspace(-1, 1, 4 * d).reshape(-1, d) if state["input_transform"] == "standard"
                                 else np.random.default_rng(0).standard_normal((max(knots, 8), d)),
                                 state["input_transform"], knots)
            model = GScaleModel(input_map, n, state["hidden"], state["depth"], seed=0)
            model.load_state_dict(state["state"])
            model.eval()
            result = cls(model, state["graph"].numpy(), {int(r): tuple(t) for r, t in state["env_targets"]},
                         state["target_latents"].numpy(), [tuple(p) for p in state["pairs"]],
                         bool(state["pairs_given"]), state["history"], json.loads(state["diagnostics"]))
        return result.to(device)

    @classmethod
    def load(cls, path: str | os.PathLike, device: Any = "cpu") -> GScaleResult:
        """Read a file written by ``save`` (on the CPU by default)."""
        return super().load(path, device)


# --- input checks -------------------------------------------------------------------------------
def _validate(envs: Sequence[np.ndarray], n: int | None, pairs: Sequence[Sequence[int]] | None
              ) -> tuple[list[np.ndarray], int, list[tuple[int, int]] | None]:
    envs = validate_envs(envs)
    M = len(envs) - 1
    d = envs[0].shape[1]
    if M < 2 or M % 2:
        raise ValueError(f"GSCALE-I needs two hard interventions per latent node (2 n interventional "
                         f"environments after envs[0]); got {M} interventional environments")
    n = M // 2 if n is None else int(n)
    if M != 2 * n:
        raise ValueError(f"GSCALE-I needs exactly 2 n = {2 * n} interventional environments for n={n} "
                         f"latents, got {M}")
    if d < n:
        raise ValueError(f"observations of dimension d={d} cannot hold n={n} latents (need d >= n)")
    for m, x in enumerate(envs):
        if len(x) < 20:
            raise ValueError(f"environment {m} has {len(x)} samples; need at least 20")
    if pairs is not None:
        checked = []
        for p in pairs:
            if len(p) != 2:
                raise ValueError(f"every pair must hold two environment indices, got {p!r}")
            a, b = sorted(int(e) for e in p)
            checked.append((a, b))
        flat = sorted(e for p in checked for e in p)
        if len(checked) != n or flat != list(range(1, M + 1)):
            raise ValueError(f"pairs must split the interventional environments 1..{M} into {n} disjoint "
                             f"pairs, got {list(pairs)!r}")
        pairs = checked
    return envs, n, pairs


def pair_precision_init(mapped: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]], n: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear starting point of the encoder from Gaussian fits of the pair environments.

    On the top-``n`` principal subspace of the mapped observations ``u``, fit a Gaussian to every
    environment; for the pair ``(a, b)`` of node ``t`` the log ratio is ``alpha + beta z_t^2`` when
    ``z_t`` is linear in ``u``, so the difference of precisions ``P_a - P_b`` is rank one along the
    encoder row of ``z_t`` (the LSCALE-I argument applied to the pair score difference). The row is its
    top eigenvector, centred at the pair's mean and scaled to unit observational variance; the head
    starts at the 1-d Gaussian log ratio of the pair along it.

    Returns ``(weight (n, d), bias (n,), heads (n, 3))`` for ``GScaleModel.linear_init``.
    """
    pooled = np.concatenate([m - m.mean(axis=0) for m in mapped])
    _, vectors = np.linalg.eigh(np.cov(pooled, rowvar=False))
    basis = vectors[:, ::-1][:, :n]  # (d, n)
    ys = [m @ basis for m in mapped]
    stats = [(y.mean(axis=0), np.linalg.inv(np.cov(y, rowvar=False))) for y in ys]
    weight, bias, heads = [], [], []
    for a, b in pairs:
        values, vecs = np.linalg.eigh(stats[a][1] - stats[b][1])
        w = basis @ vecs[:, np.argmax(np.abs(values))]
        pa, pb = mapped[a] @ w, mapped[b] @ w
        center = 0.5 * (pa.mean() + pb.mean())
        sd = max(float((mapped[0] @ w - center).std()), 1e-12)
        w, center = w / sd, center / sd
        weight.append(w)
        bias.append(-center)
        za, zb = pa / sd - center, pb / sd - center
        ma, va, mb, vb = za.mean(), max(za.var(), 1e-6), zb.mean(), max(zb.var(), 1e-6)
        heads.append([-0.5 * (ma**2 / va - mb**2 / vb) - 0.5 * np.log(va / vb), ma / va - mb / vb,
                      -0.5 * (1 / va - 1 / vb)])
    return np.asarray(weight), np.asarray(bias), np.asarray(heads)


# --- checkpoints ----------------------------------------------------------------------------------
# Values of every environment hashed into the data fingerprint (a strided sample beyond this).
_FINGERPRINT_VALUES = 1 << 20
# Settings that do not change the result and so may differ between a run and its resume.
# The graph settings act after the encoder training, so checkpoints of either graph method resume.
_NOT_FINGERPRINTED = ("checkpoint_every", "graph_method", "mechanism_hidden", "mechanism_depth", "mechanism_steps",
                      "mechanism_group_l1")


def data_fingerprint(envs: Sequence[np.ndarray], n: int, pairs: Sequence[tuple[int, int]] | None, seed: int,
                     cfg: GScaleConfig) -> str:
    """sha1 over the shape, a strided sample of the values and the column sums of every environment,
    and ``n``, the ``pairs`` argument, ``seed`` and the resolved settings (as
    ``causal_wm.crl.images.pipeline`` fingerprints its data): a checkpoint is resumed only by a run
    with the same fingerprint."""
    h = hashlib.sha1()
    for x in envs:
        x = np.ascontiguousarray(x, dtype=np.float64)
        flat = x.reshape(-1)
        stride = max(1, flat.size // _FINGERPRINT_VALUES)
        h.update(np.asarray(x.shape, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(flat[::stride]).tobytes())
        with np.errstate(over="ignore"):
            h.update(x.sum(axis=0).tobytes())
    settings = {"n": int(n), "pairs": None if pairs is None else [list(map(int, p)) for p in pairs],
                "seed": int(seed),
                "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _NOT_FINGERPRINTED}}
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _mismatch(path: Path, found: Any, fingerprint: str) -> ValueError:
    why = ("has no data fingerprint (written by an older version), so it cannot be checked against these data"
           if found is None else f"was written for other data or settings (data fingerprint {str(found)[:12]}, "
           f"this run's {fingerprint[:12]})")
    return ValueError(f"checkpoint {path} {why}: gscale_i does not resume it. Use another checkpoint_dir, or "
                      f"delete the folder {path.parent} to start afresh")


def _read_checkpoint(path: Path, fingerprint: str, device: Any = "cpu") -> dict[str, Any]:
    """A restart checkpoint, checked against ``fingerprint`` (``ValueError`` on a mismatch,
    ``ModelFileError`` for an unreadable file)."""
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for truncated, corrupt and foreign files
        raise ModelFileError(f"{path} is not a readable GSCALE-I checkpoint ({type(err).__name__}: {err}); "
                             f"delete it (or the folder {path.parent}) to start afresh") from err
    if not isinstance(blob, dict) or "meta" not in blob:
        raise ModelFileError(f"{path} is not a GSCALE-I checkpoint; use another checkpoint_dir or delete the "
                             f"folder {path.parent}")
    if blob.get("fingerprint") != fingerprint:
        raise _mismatch(path, blob.get("fingerprint"), fingerprint)
    return blob


def _read_pairs_file(path: Path, fingerprint: str) -> list[tuple[int, int]]:
    try:
        saved = json.loads(path.read_text())
        found = [(int(a), int(b)) for a, b in saved["pairs"]]
    except (ValueError, KeyError, TypeError) as err:
        raise ModelFileError(f"{path} is not a readable GSCALE-I pairs file ({type(err).__name__}: {err}); "
                             f"delete it (or the folder {path.parent}) to start afresh") from err
    if saved.get("fingerprint") != fingerprint:
        raise _mismatch(path, saved.get("fingerprint"), fingerprint)
    return found


def _check_checkpoint_folder(folder: Path, fingerprint: str) -> None:
    """Refuse a folder holding checkpoints of other data before any work is done."""
    pairs_file = folder / "pairs.json"
    if pairs_file.exists():
        _read_pairs_file(pairs_file, fingerprint)
    for path in sorted(folder.glob("restart*.pt")):
        _read_checkpoint(path, fingerprint)


# --- structured training --------------------------------------------------------------------------
def _split(x: torch.Tensor, frac: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.as_tensor(rng.permutation(len(x)), device=x.device)
    k = max(2, round(frac * len(x)))
    return x[perm[k:]], x[perm[:k]]



def _train_restart(model: GScaleModel, train: list[torch.Tensor], val: list[torch.Tensor],
                   slot: torch.Tensor, label: torch.Tensor, cfg: GScaleConfig, seed: int,
                   dev: torch.device, checkpoint: Path | None, progress: bool, fingerprint: str = ""
                   ) -> tuple[dict, dict]:
    """Train one restart; returns the best state (by held-out loss) and the history."""
    M = len(train) - 1
    B = cfg.batch_size
    gen = generator(seed, dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = max(1, max(len(t) for t in train) // B)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps), eta_min=0.05 * cfg.lr)
    use_amp = cfg.amp and dev.type == "cuda"
    history: dict[str, list[float]] = {"loss": [], "val_pair_loss": [], "val_reconstruction": [],
                                       "val_pair_accuracy": []}
    start, best_val, best_state = 1, math.inf, None
    meta = {"seed": seed, "M": M, "epochs": cfg.epochs, "batch_size": B}
    if checkpoint is not None and checkpoint.exists():
        blob = _read_checkpoint(checkpoint, fingerprint, dev)
        if blob["meta"] == meta:
            model.load_state_dict(blob["model"])
            opt.load_state_dict(blob["optimizer"])
            sched.load_state_dict(blob["scheduler"])
            gen.set_state(blob["generator"].cpu())  # generator states are CPU byte tensors
            history, best_val, start = blob["history"], blob["best_val"], blob["epoch"] + 1
            best_state = blob["best_state"]

    def losses(blocks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        sizes = [len(b) for b in blocks]
        u = torch.cat(blocks)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
            raw = model.raw(u)
            recon = ((model.decoder_net(raw).float() - u) ** 2).mean()
        raw = raw.float()
        obs, rest = raw[: sizes[0]], raw[sizes[0]:]
        if len(set(sizes[1:])) == 1:
            r = model.logits(rest.view(M, sizes[1], -1), slot)
            lab = label[:, None].expand_as(r)
        else:  # held-out sets of unequal size: one block at a time
            parts = torch.split(rest, sizes[1:])
            r = torch.cat([model.logits(p[None], slot[m:m + 1])[0] for m, p in enumerate(parts)])[None]
            lab = torch.cat([label[m].expand(s) for m, s in enumerate(sizes[1:])])[None]
        # label 1 for the first environment of a pair, 0 for the second; both have equal weight
        weights = torch.cat([torch.full((s,), 1.0 / s, device=dev) for s in sizes[1:]]).view_as(r) / M
        pair = (F.binary_cross_entropy_with_logits(r, lab, reduction="none") * weights).sum()
        acc = (((r > 0).float() == lab).float() * weights).sum()
        scale = ((obs.var(dim=0) - 1.0) ** 2).mean()
        return pair, recon, scale, acc

    def evaluate() -> tuple[float, float, float]:
        model.eval()
        with torch.no_grad():
            pair, recon, _, acc = losses(val)
        return float(pair), float(recon), float(acc)

    if start == 1:
        p, r, a = evaluate()
        history["loss"].append(math.nan)
        history["val_pair_loss"].append(p)
        history["val_reconstruction"].append(r)
        history["val_pair_accuracy"].append(a)
    bar = tqdm(range(start, cfg.epochs + 1), desc="gscale epochs", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total = 0.0
        for _ in range(steps):
            batch = [t[torch.randint(len(t), (B,), generator=gen, device=dev)] for t in train]
            pair, recon, scale, _ = losses(batch)
            loss = pair + cfg.reconstruction_weight * recon + cfg.scale_weight * scale
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"GSCALE-I training diverged at epoch {epoch} (loss {float(loss.detach())}); no model was written. "
                    "Lower lr or check the data scale.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        p, r, a = evaluate()
        history["loss"].append(total / steps)
        history["val_pair_loss"].append(p)
        history["val_reconstruction"].append(r)
        history["val_pair_accuracy"].append(a)
        bar.set_postfix(pair=f"{p:.3f}", rec=f"{r:.4f}", acc=f"{a:.3f}")
        v = p + cfg.reconstruction_weight * r
        if v < best_val:
            best_val, best_state = v, copy.deepcopy(model.state_dict())
        if checkpoint is not None and (epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs):
            save_atomic({"meta": meta, "fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                         "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "generator": gen.get_state(),
                         "history": history, "best_val": best_val, "best_state": best_state}, checkpoint)
    if best_state is None:
        best_state = copy.deepcopy(model.state_dict())
    history["best_val"] = [best_val]
    return best_state, history


# --- graph --------------------------------------------------------------------------------------
def descendant_statistic(latent_envs: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """``K[i, k]``: Kolmogorov-Smirnov distance between the distributions of learned latent ``k`` in the
    two environments of the pair on learned node ``i`` (``pairs[i]``).

    The two environments differ only in the mechanism of node ``i``, so every non-descendant of ``i`` has
    the same distribution in both: ``K[i, k]`` is at the sampling-noise level unless ``k`` is a
    descendant of ``i``. No observational environment and no score estimate is involved.
    """
    n = latent_envs[0].shape[1]
    K = np.zeros((n, n))
    for i, (a, b) in enumerate(pairs):
        za, zb = np.sort(latent_envs[a], axis=0), np.sort(latent_envs[b], axis=0)
        for k in range(n):
            if k == i:
                continue
            grid = np.concatenate([za[:, k], zb[:, k]])
            cdf_a = np.searchsorted(za[:, k], grid, side="right") / len(za)
            cdf_b = np.searchsorted(zb[:, k], grid, side="right") / len(zb)
            K[i, k] = np.abs(cdf_a - cdf_b).max()
    return K


def latent_graph(latent_envs: Sequence[np.ndarray], pairs: Sequence[tuple[int, int]], *, seed: int = 0,
                 device: str = "auto", epochs: int = 40, hidden: int = 64, batch_size: int = 256,
                 null_quantile: float = 0.9) -> tuple[np.ndarray, dict[str, Any]]:
    """Latent DAG over learned latents from their distributions in the environments.

    1. Descendants: ``K = descendant_statistic`` (pair ``k`` on learned latent ``k``); cut by
       ``gap_threshold`` (at least half of the ``n (n - 1)`` ordered pairs are not ancestor-descendant
       pairs in any DAG), projected to the closest DAG with weights ``log(K / threshold)`` and closed
       transitively: the estimated ancestor relation ``T``.
    2. Its transitive reduction are edges of every DAG with that closure.
    3. Shortcut edges ``i -> k`` (``i`` an ancestor of ``k`` through other nodes) need the score
       difference: observational-vs-interventional log ratios estimated on the learned latents
       (``causal_wm.crl.scores`` classifiers), ``D^m = s^0 - s^m`` supported on ``{k} ∪ pa(k)`` for ``m``
       on ``k``; ``S[i, k] = sqrt(E[D_i^2] / E[D_k^2])``, the smaller over the two environments of ``k``
       (the support is common, the estimation errors are not). A shortcut is kept when ``S`` exceeds
       the ``null_quantile`` quantile of ``S`` over the pairs that ``T`` says are not ancestral
       (there ``S`` is estimation error and leakage only).

    Args:
        latent_envs: learned latents ``(N_m, n)`` of every environment (``[0]`` observational).
        pairs: ``n`` environment pairs; ``pairs[k]`` hits learned latent ``k``.

    Returns ``(A, info)`` with ``A[i, j] = 1`` iff ``i -> j`` and the statistics and thresholds.
    """
    n = latent_envs[0].shape[1]
    off = ~np.eye(n, dtype=bool)
    K = descendant_statistic(latent_envs, pairs)
    k_threshold = gap_threshold(K[off], n * (n - 1) // 2)
    W = np.where(K > k_threshold, np.log(np.maximum(K, 1e-300) / k_threshold), 0.0)
    np.fill_diagonal(W, 0.0)
    order_dag = closest_dag(W).adjacency
    T = transitive_closure(order_dag)
    reduction = transitive_reduction(order_dag)

    env_targets = np.zeros(len(latent_envs) - 1, dtype=np.int64)
    for k, (a, b) in enumerate(pairs):
        env_targets[[a - 1, b - 1]] = k
    # unit observational variance makes the ratios of mean squared derivatives scale-free
    sd = latent_envs[0].std(axis=0)
    zs = [z / sd for z in latent_envs]
    D = score_differences(zs, method="classifier", n=n, seed=seed, device=device, epochs=epochs, hidden=hidden,
                          depth=2, batch_size=batch_size)
    S = np.full((n, n), np.inf)
    for m, Dm in enumerate(D):
        k = int(env_targets[m])
        e2 = np.mean(Dm**2, axis=0)
        S[:, k] = np.minimum(S[:, k], np.sqrt(np.maximum(e2, 0.0) / max(e2[k], 1e-300)))
    S[~np.isfinite(S)] = 0.0
    np.fill_diagonal(S, 0.0)
    null = S[(T == 0) & off]
    s_threshold = float(np.quantile(null, null_quantile)) if null.size else np.inf
    shortcuts = (T == 1) & (reduction == 0) & (S > s_threshold)
    A = (reduction.astype(bool) | shortcuts).astype(np.int64)
    return A, {"descendant_statistic": K, "descendant_threshold": k_threshold, "ancestors": T,
               "score_statistic": S, "score_threshold": s_threshold}


# --- the algorithm --------------------------------------------------------------------------------
def gscale_i(envs: Sequence[np.ndarray], *, pairs: Sequence[Sequence[int]] | None = None, seed: int = 0,
             device: str = "auto", n: int | None = None, preset: str = "cpu",
             checkpoint_dir: str | os.PathLike | None = None, progress: bool = False,
             regimes: Sequence[int] | None = None, **options: Any) -> GScaleResult:
    """GSCALE-I on vector observations (see the module docstring for the method).

    Args:
        envs: ``envs[0]`` observational samples ``(N_0, d)``; ``envs[1:]`` ``2 n`` interventional
            environments ``(N_m, d)``, two hard interventions per latent node, in any order.
        pairs: ``n`` pairs of environment indices (1-based) that hit the same node; None finds them
            (``find_pairs``).
        seed: seed of every random choice (splits, initialisations, minibatches).
        device: torch device; ``"auto"`` picks CUDA when available.
        n: number of latents (default ``(len(envs) - 1) // 2``).
        preset: ``"debug"`` (seconds), ``"cpu"`` or ``"full"`` (see ``PRESETS``).
        checkpoint_dir: folder for restart checkpoints; a rerun with the same data and settings resumes.
            Every checkpoint (and the found ``pairs.json``) carries a fingerprint of the data, ``n``,
            ``pairs``, ``seed`` and the resolved settings (``data_fingerprint``); a folder written for
            other data or settings is refused with a ``ValueError`` (use another folder or delete it).
        progress: tqdm progress bars.
        regimes: regime labels of ``envs[1:]`` (keys of ``env_targets``); default ``1..2n``.
        options: ``GScaleConfig`` fields overriding the preset (``epochs=...``, ``restarts=...``).

    Returns:
        ``GScaleResult`` with ``encode``/``decode`` (numpy), ``encoder_module()``/``decoder_module()``,
        ``graph`` (``A[i, j] = 1`` iff learned ``i -> j``), ``env_targets``, ``pairs`` and diagnostics.

    Raises:
        ValueError: malformed environments (wrong count, NaN, ``d < n``, unequal ``d``) or settings; a
            ``checkpoint_dir`` holding checkpoints of other data or settings (``ModelFileError``: an
            unreadable checkpoint there).
        TrainingDivergedError: a non-finite training loss.
    """
    envs, n, given = _validate(envs, n, pairs)
    labels = regime_labels(regimes, len(envs) - 1)
    cfg = make_config(preset, **options)
    dev = resolve_device(device)
    M = 2 * n
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    fingerprint = ""
    if ckpt is not None:
        fingerprint = data_fingerprint(envs, n, given, seed, cfg)
        ckpt.mkdir(parents=True, exist_ok=True)
        _check_checkpoint_folder(ckpt, fingerprint)
    input_map = InputMap(np.concatenate(envs), cfg.input_transform).to(dev)
    seconds["input_map"] = time.perf_counter() - t0

    search: PairSearch | None = None
    if given is None:
        t = time.perf_counter()
        pairs_file = ckpt / "pairs.json" if ckpt is not None else None
        if pairs_file is not None and pairs_file.exists():
            found = _read_pairs_file(pairs_file, fingerprint)
        else:
            search = find_pairs(envs, n=n, config=cfg, seed=derive_seed(seed, 7919), device=str(dev),
                                input_map=input_map)
            found = search.pairs
            if pairs_file is not None:
                tmp = pairs_file.with_suffix(".json.tmp")
                tmp.write_text(json.dumps({"pairs": [[int(e) for e in p] for p in found],
                                           "fingerprint": fingerprint}))
                os.replace(tmp, pairs_file)
        chosen = [(int(a), int(b)) for a, b in found]
        seconds["pairing"] = time.perf_counter() - t
    else:
        chosen = given

    slot_np = np.zeros(M, dtype=np.int64)
    label_np = np.zeros(M, dtype=np.float32)
    for k, (a, b) in enumerate(chosen):
        slot_np[[a - 1, b - 1]] = k
        label_np[a - 1] = 1.0
    slot = torch.as_tensor(slot_np, device=dev)
    label = torch.as_tensor(label_np, device=dev)

    rng = np.random.default_rng(seed)
    mapped = [input_map(torch.as_tensor(x, device=dev)).float() for x in envs]
    splits = [_split(u, cfg.val_fraction, rng) for u in mapped]
    train = [s[0] for s in splits]
    val = [s[1] for s in splits]

    t = time.perf_counter()
    init = pair_precision_init([u.double().cpu().numpy() for u in train], chosen, n) if cfg.linear_init else None
    histories, best = [], None
    for r in tqdm(range(cfg.restarts), desc="gscale restarts", disable=not progress):
        model = GScaleModel(input_map, n, cfg.hidden, cfg.depth, seed=derive_seed(seed, 1009, r)).to(dev)
        if cfg.linear_init:
            model.linear_init(*init)
        path = ckpt / f"restart{r}.pt" if ckpt is not None else None
        state, hist = _train_restart(model, train, val, slot, label, cfg, derive_seed(seed, 1010, r), dev, path,
                                     progress, fingerprint)
        histories.append(hist)
        if best is None or hist["best_val"][0] < best[0]:
            best = (hist["best_val"][0], r, state)
    seconds["encoder"] = time.perf_counter() - t
    assert best is not None
    model = GScaleModel(input_map, n, cfg.hidden, cfg.depth, seed=0).to(dev)
    model.load_state_dict(best[2])
    model.eval()
    model.finalize(mapped[0])
    model = model.cpu()

    target_latents = slot_np.copy()
    env_targets = {r: (int(k),) for r, k in zip(labels, target_latents, strict=True)}
    t = time.perf_counter()
    latents = [GScaleResult(model, np.zeros((n, n)), env_targets, target_latents, chosen, given is not None).encode(x)
               for x in envs]
    if cfg.graph_method == "mechanism":
        graph, graph_info = mechanism_graph(latents, target_latents, seed=derive_seed(seed, 37),
                                            hidden=cfg.mechanism_hidden, depth=cfg.mechanism_depth,
                                            steps=cfg.mechanism_steps, batch_size=cfg.batch_size,
                                            group_l1=cfg.mechanism_group_l1)
        # the ancestor evidence, kept for inspection (it costs one pass over the latents)
        graph_info["descendant_statistic"] = descendant_statistic(latents, chosen)
    else:
        graph, graph_info = latent_graph(latents, chosen, seed=derive_seed(seed, 31), device=str(dev),
                                         epochs=cfg.graph_epochs, hidden=cfg.graph_hidden,
                                         batch_size=cfg.batch_size)
    graph_info["method"] = cfg.graph_method
    seconds["graph"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t0
    diagnostics: dict[str, Any] = {
        "config": dataclasses.asdict(cfg), "preset": preset, "device": str(dev),
        "chosen_restart": best[1], "restart_val_losses": [h["best_val"][0] for h in histories],
        "val_pair_accuracy": histories[best[1]]["val_pair_accuracy"][-1],
        "graph": graph_info, "seconds": seconds,
    }
    if search is not None:
        diagnostics.update(pair_concentration=search.concentration, pair_margin=search.margin,
                           pair_classifier_accuracy=search.classifier_accuracy)
    return GScaleResult(model, graph, env_targets, target_latents, chosen, given is not None, histories, diagnostics)

"""Causal representation learning from images (GSCALE-I on images, SCIENCE.md sections 4 and 8).

Input: frames of an observational regime (0) and of two hard interventions on every latent node,
with their regime labels, e.g. a ``causal_wm.data.Dataset`` collected on ``causal_wm/Balls-v0``.
Output (``ImageCRLResult``): an encoder ``images -> z_hat`` ``(N, n)`` that recovers the latent
causal variables up to permutation and element-wise invertible maps, a decoder ``z_hat -> images``,
the latent DAG over the learned latents and the learned latent(s) every regime intervenes on.

The pipeline (``fit_image_crl``):

1. Autoencoder (stage 1). A CNN autoencoder compresses frames ``(3, S, S)`` to a low-dimensional
   code ``y`` ``(code_dim,)``. It is only asked to keep the information: its code is entangled.
2. Read-out (stage 2). Log density ratios are invariant to invertible recodings (SCIENCE.md 2.3), so
   for the two hard interventions ``(lo, hi)`` on node ``t``, ``log p^hi / p^lo`` is the same
   function of ``z_t`` alone whether written in pixels, in ``y`` or in ``z``. A balanced classifier
   between the pair, trained on ``y``, therefore estimates a function of ``z_t`` only, and its logit
   is the learned latent ``t``: an exact zero of the GSCALE-I sparsity objective, reached without
   optimising it. For mean-shift pairs (the default menu of Balls-v0: ``N(-1, 0.7^2)`` vs
   ``N(+1, 0.7^2)``) that function is linear and monotone, so the logit is ``z_t`` up to an affine
   map. Three routes implement this (``route``):

   - ``"pairs"``: one log-ratio classifier per pair on ``y`` (``causal_wm.crl.scores.ClassifierScores``);
     latent ``k`` is the standardised logit of pair ``k``.
   - ``"multinomial"``: one classifier over all ``2n + 1`` regimes on ``y`` (shared features, every
     regime's frames train them); latent ``k`` is ``logit[second_k] - logit[first_k]``.
   - ``"structured"``: one MLP ``y -> z`` ``(n,)`` whose coordinate ``k`` alone feeds the classifier of
     pair ``k`` (a 1-d head), trained jointly with an MLP ``z -> y`` that reconstructs the code;
     restarts are selected by held-out classifier loss.

   The benchmark (``scripts/bench_gscale_images.py``) measures all three on one autoencoder; the
   default route is the one that measured best (``benchmarks/results/gscale.json``).
3. Graph (stage 3). For every interventional regime ``m`` on node ``k``, a classifier between the
   observational regime and ``m`` on the learned latents estimates ``r = log p^0 / p^m``; a hard
   intervention makes ``grad r`` nonzero only on ``{k} + pa(k)``. Edge strength
   ``M[i, k] = E|dr/dz_i| / E|dr/dz_k|`` (averaged over the regimes on ``k``, at observational
   samples; learned latents have unit observational variance), edge ``i -> k`` when
   ``M[i, k] > graph_threshold``, then the closest DAG (``causal_wm.crl.dag``).
4. Decoder (stage 4). An MLP ``z_hat -> y`` followed by the stage-1 image decoder.

Assumption on the design: the two regimes of a pair intervene on the same single node. By default
the pairs come from the dataset's intervention menu, pairing hard single-node interventions with
the same targets (the published GSCALE-I code makes the same assumption: it is told the pairing);
pass ``pairs`` explicitly for data without a menu, or ``pairs="find"`` to find the pairing from the
data (``causal_wm.crl.gscale.find_pairs`` on the stage-1 codes: a pair's log ratio concentrates its
gradient on one direction of the data manifold).

Hot paths are batched torch on the chosen device (bfloat16 autocast for the autoencoder on CUDA);
frames stream from the HDF5 file per batch unless they fit ``cache_bytes``; the autoencoder writes a
checkpoint every epoch and a rerun resumes it; a non-finite loss raises ``FloatingPointError``
before anything broken is written.

Checks that need no ground truth (SCIENCE.md section 8) are in ``result.diagnostics``: the held-out
reconstruction error of stage 1 (next to the error of predicting the mean frame) and the held-out
balanced accuracy of every pair classifier next to the Bayes accuracy of the design (0.92 for the
mean-shift pairs); a pair far below its Bayes accuracy flags a failed latent.

Conventions: frames are uint8 ``(N, H, W, 3)`` (gymnasium) or float ``(N, 3, H, W)`` in ``[0, 1]``
(torch); graphs ``A[i, j] = 1`` iff learned ``i -> j``; learned latent ``k`` belongs to pair ``k``
and increases from the first regime of the pair towards the second (``log p^second / p^first``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from causal_wm.crl._torch import save_atomic, to_jsonable, train_early_stopping
from causal_wm.crl.dag import closest_dag, gap_threshold
from causal_wm.crl.image_models import (
    ConvAutoencoder,
    LatentDecoder,
    MultinomialReadout,
    PairReadout,
    StructuredReadout,
)
from causal_wm.crl.scores import ClassifierScores
from causal_wm.device import resolve_device

__all__ = [
    "PRESETS",
    "ROUTES",
    "ImageCRLConfig",
    "ImageCRLResult",
    "bayes_accuracy",
    "evaluate_image_crl",
    "fit_image_crl",
    "image_crl_figures",
    "pairs_from_menu",
]

ROUTES = ("multinomial", "pairs", "structured")
FORMAT = "causal_wm.crl.images"
FORMAT_VERSION = 1


# --- configuration ------------------------------------------------------------------------------
@dataclass
class ImageCRLConfig:
    """Settings of ``fit_image_crl`` (presets in ``PRESETS``; every field can be overridden)."""

    image_size: int | None = None
    """model resolution S (a power of two); frames are area-downsampled to it; None: the frames' size"""
    max_per_regime: int | None = None
    """use at most this many frames of every regime (seeded subsample); None: all"""
    ae_max_per_regime: int | None = None
    """the autoencoder trains on at most this many frames of every regime (None: all); encoding is
    cheap, so the read-out and graph classifiers, whose estimation error dominates, can see more"""
    val_fraction: float = 0.1
    """held-out fraction of every regime (diagnostics, early stopping of the small networks)"""
    code_dim: int = 16
    """dimension of the stage-1 code y"""
    channels: int = 32
    """width of the first convolution stage (later stages up to 4x)"""
    hidden: int = 256
    """width of the dense layers of the autoencoder"""
    ae_epochs: int = 20
    """autoencoder epochs"""
    batch_size: int = 128
    """autoencoder minibatch size"""
    lr: float = 1e-3
    """autoencoder learning rate (Adam)"""
    route: str = "multinomial"
    """read-out route: "pairs" (a classifier per pair on y), "multinomial" (one classifier over all
    regimes on y) or "structured" (a shared y -> z MLP with one-coordinate heads)"""
    classifier_hidden: int = 64
    """width of the log-ratio classifiers (read-out "pairs" and graph)"""
    classifier_depth: int = 2
    """hidden layers of the log-ratio classifiers"""
    classifier_epochs: int = 50
    """maximum epochs of every classifier (early stopping on held-out logistic loss)"""
    classifier_patience: int = 5
    """epochs without improvement before a classifier stops"""
    classifier_batch_size: int = 512
    """per-class minibatch of the classifiers"""
    multinomial_hidden: int = 128
    """width of the multinomial read-out classifier"""
    structured_epochs: int = 60
    """maximum epochs of the structured read-out (early stopping)"""
    structured_restarts: int = 2
    """restarts of the structured read-out; the best held-out classifier loss is kept"""
    structured_recon_weight: float = 1.0
    """weight of the code reconstruction in the structured read-out loss"""
    graph_threshold: float | str = 0.2
    """edge threshold on M[i, k] (SCIENCE.md section 8), or "auto" (a gap in the sorted values)"""
    decoder_epochs: int = 100
    """maximum epochs of the latent decoder z -> y (early stopping)"""
    amp: bool = True
    """bfloat16 autocast for the autoencoder on CUDA (ignored on CPU)"""
    cache_bytes: int = 4 << 30
    """frames up to this many bytes are read once into (device) memory; more are streamed per batch"""

    def validate(self) -> ImageCRLConfig:
        if self.image_size is not None and (self.image_size < 16 or self.image_size & (self.image_size - 1)):
            raise ValueError(f"image_size must be a power of two >= 16 or None, got {self.image_size!r}")
        if self.max_per_regime is not None and self.max_per_regime < 20:
            raise ValueError(f"max_per_regime must be at least 20 or None, got {self.max_per_regime!r}")
        if self.ae_max_per_regime is not None and self.ae_max_per_regime < 10:
            raise ValueError(f"ae_max_per_regime must be at least 10 or None, got {self.ae_max_per_regime!r}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must lie in (0, 0.5), got {self.val_fraction!r}")
        for name in ("code_dim", "channels", "hidden", "batch_size", "classifier_hidden", "classifier_depth",
                     "classifier_patience", "classifier_batch_size", "multinomial_hidden", "structured_restarts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("ae_epochs", "classifier_epochs", "structured_epochs", "decoder_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, got {self.route!r}")
        if not (isinstance(self.graph_threshold, int | float) and self.graph_threshold > 0) \
                and self.graph_threshold != "auto":
            raise ValueError(f"graph_threshold must be a positive number or 'auto', got {self.graph_threshold!r}")
        if not self.structured_recon_weight >= 0:
            raise ValueError(f"structured_recon_weight must be >= 0, got {self.structured_recon_weight!r}")
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # seconds on one CPU thread: tests and smoke runs
    "debug": dict(image_size=16, max_per_regime=150, code_dim=8, channels=8, hidden=64, ae_epochs=10,
                  batch_size=16, lr=3e-3, classifier_hidden=32, classifier_epochs=30, classifier_batch_size=128,
                  structured_epochs=40, structured_restarts=1, decoder_epochs=30, cache_bytes=1 << 30),
    # about a quarter of an hour on two CPU cores: 32 x 32 model resolution; the autoencoder trains on
    # 1,500 frames per regime, the classifiers see 5,000 (their estimation error limits the result)
    "cpu": dict(image_size=32, max_per_regime=5000, ae_max_per_regime=1500, code_dim=16, channels=32, hidden=256,
                ae_epochs=15, batch_size=32, lr=2e-3, classifier_batch_size=128, classifier_epochs=300,
                classifier_patience=20, cache_bytes=2 << 30),
    # the published size (10,000 frames per regime, 64 x 64) for one GPU
    "full": dict(image_size=64, max_per_regime=10_000, code_dim=16, channels=64, hidden=512, ae_epochs=30,
                 batch_size=128, lr=2e-3, classifier_batch_size=256, classifier_epochs=200, classifier_patience=15,
                 structured_restarts=3, cache_bytes=8 << 30),
}


def make_config(preset: str = "cpu", **overrides: Any) -> ImageCRLConfig:
    """The configuration of ``preset`` with ``overrides`` applied (unknown keys raise ``ValueError``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    names = {f.name for f in dataclasses.fields(ImageCRLConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(names)}")
    return ImageCRLConfig(**{**PRESETS[preset], **overrides}).validate()


# --- the intervention design ----------------------------------------------------------------------
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
    (mean-shift pairs give monotone log ratios, SCIENCE.md section 8), ordered by mean (then std).

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


# --- frames ---------------------------------------------------------------------------------------
class _Frames:
    """Frames of every regime, read by row number from a ``Dataset`` (HDF5) or from memory.

    ``regime`` is ``(N,)``; ``read(rows)`` returns uint8 ``(m, H, W, 3)``.
    """

    def __init__(self, data: Any, menu: Sequence[Any] | None) -> None:
        from causal_wm.data import Dataset

        if isinstance(data, Dataset):
            self.dataset: Dataset | None = data
            self.memory: np.ndarray | None = None
            self.regime = np.asarray(data.regime, dtype=np.int64)
            shape = tuple(data.obs_shape)
            self.menu = data.menu if menu is None else list(menu)
            self.latent_source = data if data.has_latents else None
        else:
            arrays = self._arrays(data)
            self.dataset = None
            self.memory = np.concatenate([a for _, a in arrays])
            self.regime = np.concatenate([np.full(len(a), r, dtype=np.int64) for r, a in arrays])
            shape = self.memory.shape[1:]
            self.menu = None if menu is None else list(menu)
            self.latent_source = None
        if len(shape) != 3 or shape[2] != 3 or shape[0] != shape[1]:
            raise ValueError(f"frames must be square RGB images (H, W, 3), got frame shape {shape}")
        self.size = int(shape[0])
        self.frame_bytes = int(np.prod(shape))

    @staticmethod
    def _arrays(data: Any) -> list[tuple[int, np.ndarray]]:
        if isinstance(data, Mapping):
            items = sorted((int(r), a) for r, a in data.items())
        elif isinstance(data, Sequence) and not isinstance(data, str | np.ndarray):
            items = list(enumerate(data))
        else:
            raise ValueError("data must be a causal_wm.data.Dataset, a mapping regime -> uint8 frames "
                             "(N, H, W, 3), or a list of such arrays indexed by regime")
        out = []
        shapes = set()
        for r, a in items:
            a = np.asarray(a)
            if a.dtype != np.uint8 or a.ndim != 4:
                raise ValueError(f"frames of regime {r} must be uint8 (N, H, W, 3), got {a.dtype} {a.shape}")
            shapes.add(a.shape[1:])
            out.append((r, a))
        if len(shapes) > 1:
            raise ValueError(f"all regimes need frames of one shape, got {sorted(shapes)}")
        return out

    def read(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        if self.memory is not None:
            return self.memory[rows]
        assert self.dataset is not None
        return self.dataset.observations(rows)

    def latents(self, rows: np.ndarray) -> np.ndarray | None:
        return None if self.latent_source is None else self.latent_source.latents(rows)


class _Batches:
    """Model-ready minibatches (float ``(B, 3, S, S)`` in ``[0, 1]`` on the device) of selected rows.

    Selected frames that fit ``cache_bytes`` are read once, chunk by chunk, into a uint8 tensor on the
    device; otherwise every batch is read from the source (sorted rows: fast slab reads in HDF5).
    """

    def __init__(self, frames: _Frames, rows: np.ndarray, image_size: int, device: torch.device,
                 cache_bytes: int, progress: bool) -> None:
        self.frames, self.rows, self.image_size, self.device = frames, np.asarray(rows), image_size, device
        self.position = {int(r): i for i, r in enumerate(self.rows)}
        self.cache: torch.Tensor | None = None
        if len(self.rows) * frames.frame_bytes <= cache_bytes:
            order = np.argsort(self.rows)
            cache = torch.empty((len(self.rows), frames.size, frames.size, 3), dtype=torch.uint8, device=device)
            for s in tqdm(range(0, len(order), 4096), desc="reading frames", disable=not progress, leave=False):
                chunk = order[s: s + 4096]
                cache[torch.as_tensor(chunk, device=device)] = torch.as_tensor(frames.read(self.rows[chunk]),
                                                                              device=device)
            self.cache = cache

    def get(self, positions: np.ndarray) -> torch.Tensor:
        """Frames at ``positions`` (indices into ``rows``) as model input."""
        positions = np.asarray(positions, dtype=np.int64)
        if self.cache is not None:
            raw = self.cache[torch.as_tensor(positions, device=self.device)]
        else:
            order = np.argsort(self.rows[positions])
            raw = torch.as_tensor(self.frames.read(self.rows[positions][order]), device=self.device)
            raw = raw[torch.as_tensor(np.argsort(order), device=self.device)]
        return prepare_images(raw, self.image_size)


def prepare_images(images: Any, image_size: int) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` (numpy or torch) or float ``(N, 3, H, W)`` in ``[0, 1]`` -> float
    ``(N, 3, S, S)`` in ``[0, 1]`` at the model resolution ``S`` (area downsampling)."""
    x = torch.as_tensor(images)
    if x.ndim != 4:
        raise ValueError(f"images must be uint8 (N, H, W, 3) or float (N, 3, H, W), got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (N, H, W, 3), got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
    else:
        if x.shape[1] != 3:
            raise ValueError(f"float images must be (N, 3, H, W) in [0, 1], got shape {tuple(x.shape)}")
        x = x.float()
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"images must be square, got {tuple(x.shape[-2:])}")
    size = x.shape[-1]
    if size == image_size:
        return x
    if size % image_size == 0:
        return F.avg_pool2d(x, size // image_size)
    return F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)


# --- checkpoints ------------------------------------------------------------------------------------

def _load_checkpoint(path: Path | None, fingerprint: str) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != fingerprint:
        raise ValueError(f"checkpoint {path} was written for other data or settings; use another "
                         "checkpoint_dir or delete it")
    return state


def _fingerprint(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p.tobytes() if isinstance(p, np.ndarray) else json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _check_finite(value: float, what: str) -> None:
    if not math.isfinite(value):
        raise FloatingPointError(f"{what} became {value} (diverged); the model was not written. Lower the "
                                 "learning rate or check the data; the last checkpoint stays as it was")


# --- the result --------------------------------------------------------------------------------------
@dataclass
class ImageCRLResult:
    """Output of ``fit_image_crl``.

    Attributes:
        autoencoder: the stage-1 ``ConvAutoencoder`` (frames -> code ``y`` -> frames).
        readout: ``y -> z_hat`` (``PairReadout`` or ``StructuredReadout``).
        latent_decoder: ``z_hat -> y``.
        graph: ``(n, n)`` DAG over learned latents, ``A[i, j] = 1`` iff learned ``i -> j``.
        env_targets: regime -> learned latents it intervenes on (every menu entry whose targets all
            have a pair; without a menu, the regimes of the pairs).
        pairs: ``[(first, second)]`` regimes; learned latent ``k`` is pair ``k``, increasing from the
            first towards the second regime.
        config: the settings (``ImageCRLConfig`` as a dict).
        diagnostics: ground-truth-free checks and timings (see ``fit_image_crl``).
    """

    autoencoder: ConvAutoencoder
    readout: nn.Module
    latent_decoder: LatentDecoder
    graph: np.ndarray
    env_targets: dict[int, tuple[int, ...]]
    pairs: list[tuple[int, int]]
    config: dict[str, Any]
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.pairs)

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    @property
    def device(self) -> torch.device:
        return next(self.autoencoder.parameters()).device

    def to(self, device: str | torch.device) -> ImageCRLResult:
        device = resolve_device(device)
        for m in (self.autoencoder, self.readout, self.latent_decoder):
            m.to(device)
        return self

    def encoder_module(self) -> nn.Module:
        """A differentiable ``nn.Module``: float ``(B, 3, S, S)`` in ``[0, 1]`` -> ``z_hat`` ``(B, n)``."""
        return _Encoder(self.autoencoder, self.readout, self.image_size)

    def decoder_module(self) -> nn.Module:
        """A differentiable ``nn.Module``: ``z_hat`` ``(B, n)`` -> pixels ``(B, 3, S, S)`` in ``[0, 1]``."""
        return _Decoder(self.autoencoder, self.latent_decoder)

    @torch.no_grad()
    def codes(self, images: Any, batch_size: int = 1024) -> np.ndarray:
        """Stage-1 codes ``y`` ``(N, code_dim)`` of frames (uint8 NHWC or float NCHW)."""
        self.autoencoder.eval()
        out = [self.autoencoder.encoder(prepare_images(chunk, self.image_size).to(self.device)).float().cpu()
               for chunk in _chunks(images, batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, int(self.config["code_dim"])), np.float32)

    @torch.no_grad()
    def encode(self, images: Any, batch_size: int = 1024) -> np.ndarray:
        """Learned latents ``(N, n)`` float32 of frames: uint8 ``(N, H, W, 3)`` or float ``(N, 3, H, W)``
        in ``[0, 1]`` (numpy or torch); unit variance on observational frames."""
        module = self.encoder_module().eval()
        out = [module(prepare_images(chunk, self.image_size).to(self.device)).float().cpu()
               for chunk in _chunks(images, batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.n), np.float32)

    @torch.no_grad()
    def decode(self, z: Any, batch_size: int = 1024) -> np.ndarray:
        """Frames uint8 ``(N, S, S, 3)`` (model resolution) of learned latents ``(N, n)``."""
        z = torch.as_tensor(np.asarray(z, dtype=np.float32))
        if z.ndim != 2 or z.shape[1] != self.n:
            raise ValueError(f"latents must have shape (N, {self.n}), got {tuple(z.shape)}")
        module = self.decoder_module().eval()
        out = [module(c.to(self.device)).float().cpu() for c in torch.split(z, batch_size)]
        pixels = torch.cat(out) if out else torch.zeros((0, 3, self.image_size, self.image_size))
        return (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    def traversals(self, values: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
                   base: np.ndarray | None = None) -> np.ndarray:
        """Latent traversals: uint8 ``(n, len(values), S, S, 3)``; row ``k`` decodes ``base`` (default
        the observational mean, 0) with learned latent ``k`` set to each of ``values``."""
        base = np.zeros(self.n) if base is None else np.asarray(base, dtype=np.float64).reshape(self.n)
        z = np.repeat(base[None, None], self.n, 0).repeat(len(values), 1)
        for k in range(self.n):
            z[k, :, k] = values
        return self.decode(z.reshape(-1, self.n)).reshape(self.n, len(values), *([self.image_size] * 2), 3)

    # --- persistence ---
    def state(self) -> dict[str, Any]:
        """Everything ``from_state`` needs: plain tensors, lists and strings (``weights_only``-safe)."""
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "config": dict(self.config),
            "pairs": [list(p) for p in self.pairs],
            "env_targets": [[int(r), list(t)] for r, t in sorted(self.env_targets.items())],
            "graph": torch.as_tensor(self.graph, dtype=torch.int64),
            "modules": {name: {k: v.detach().cpu() for k, v in m.state_dict().items()}
                        for name, m in (("autoencoder", self.autoencoder), ("readout", self.readout),
                                        ("latent_decoder", self.latent_decoder))},
            "diagnostics": json.dumps(to_jsonable(self.diagnostics)),
        }

    @classmethod
    def from_state(cls, state: Any, device: str | torch.device = "auto", source: str = "state") -> ImageCRLResult:
        """Rebuild a result from ``state()`` onto ``device`` (modules frozen, in eval mode)."""
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{source} is not an image CRL model (format {FORMAT!r})")
        if state.get("version") != FORMAT_VERSION:
            raise ValueError(f"{source} has format version {state.get('version')}, this code reads {FORMAT_VERSION}")
        config = make_config("cpu", **state["config"])
        pairs = [tuple(p) for p in state["pairs"]]
        ae, readout, decoder = _build_modules(config, len(pairs), seed=0)
        for name, module in (("autoencoder", ae), ("readout", readout), ("latent_decoder", decoder)):
            module.load_state_dict(state["modules"][name])
        result = cls(ae, readout, decoder, state["graph"].numpy().astype(np.int64),
                     {int(r): tuple(t) for r, t in state["env_targets"]}, pairs, dataclasses.asdict(config),
                     json.loads(state["diagnostics"]))
        result.to(device)
        for m in (ae, readout, decoder):
            m.eval().requires_grad_(False)
        return result

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model with ``torch.save`` (plain tensors, lists and strings: loadable with
        ``weights_only=True``)."""
        path = Path(path)
        save_atomic(self.state(), path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "auto") -> ImageCRLResult:
        """Read a model written by ``save`` onto ``device``."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        return cls.from_state(state, device, source=str(path))


class _Encoder(nn.Module):
    def __init__(self, autoencoder: ConvAutoencoder, readout: nn.Module, image_size: int) -> None:
        super().__init__()
        self.autoencoder, self.readout, self.image_size = autoencoder, readout, image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.autoencoder.encoder(prepare_images(x, self.image_size)))


class _Decoder(nn.Module):
    def __init__(self, autoencoder: ConvAutoencoder, latent_decoder: LatentDecoder) -> None:
        super().__init__()
        self.autoencoder, self.latent_decoder = autoencoder, latent_decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.autoencoder.decoder(self.latent_decoder(z)))


def _chunks(images: Any, batch_size: int):
    n = len(images)
    for s in range(0, n, batch_size):
        yield images[s: s + batch_size]



def _build_modules(config: ImageCRLConfig, n: int, seed: int) -> tuple[ConvAutoencoder, nn.Module, LatentDecoder]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ae = ConvAutoencoder(int(config.image_size), config.code_dim, config.channels, config.hidden)
    if config.route == "pairs":
        readout: nn.Module = PairReadout(config.code_dim, n, config.classifier_hidden, config.classifier_depth, seed)
    elif config.route == "multinomial":
        readout = MultinomialReadout(config.code_dim, n, config.multinomial_hidden, config.classifier_depth, seed)
    else:
        readout = StructuredReadout(config.code_dim, n, config.classifier_hidden, config.classifier_depth, seed)
    decoder = LatentDecoder(n, config.code_dim, config.classifier_hidden, config.classifier_depth, seed)
    return ae, readout, decoder


# --- the pipeline -------------------------------------------------------------------------------------
def fit_image_crl(data: Any, *, preset: str = "cpu", device: str | torch.device = "auto", seed: int = 0,
                  checkpoint_dir: str | os.PathLike | None = None, progress: bool = True,
                  menu: Sequence[Any] | None = None, pairs: Sequence[tuple[int, int]] | str | None = None,
                  callback: Callable[[dict[str, Any]], None] | None = None, **overrides: Any) -> ImageCRLResult:
    """Learn latent causal variables, their DAG and a decoder from images with regime labels.

    Args:
        data: a ``causal_wm.data.Dataset`` (frames are read on demand; see ``cache_bytes``), or
            in-memory frames: a mapping ``regime -> uint8 (N, H, W, 3)`` or a list indexed by regime.
            Regime 0 is observational.
        preset: ``"debug"`` (seconds), ``"cpu"`` (minutes on a CPU), ``"full"`` (published size, GPU);
            see ``PRESETS``.
        device: torch device; ``"auto"`` picks CUDA when available (then bfloat16 autocast for the
            autoencoder, see ``amp``).
        seed: seeds initialisation, subsampling, splits and minibatches (same seed, same result on
            one device).
        checkpoint_dir: where stage checkpoints go; a run with the same data, settings and seed
            resumes from them (the autoencoder from its last finished epoch). The autoencoder
            checkpoint is shared by both routes and refuses other data or stage-1 settings
            (``ValueError``); the later stages are keyed by all settings.
        progress: tqdm progress bars.
        menu: the intervention menu (``menu[k]`` of regime ``k``, ``menu[0]`` None); default: the
            dataset's. Used to pair regimes (``pairs_from_menu``), for the Bayes accuracy of every
            pair and for ``env_targets``.
        pairs: ``[(first, second)]`` regimes of the two hard interventions on each node, when there is
            no menu or to override it; latent ``k`` is pair ``k``. ``"find"``: the pairing is unknown and
            found from the data (``causal_wm.crl.gscale.find_pairs`` on the stage-1 codes); then every
            interventional regime present must be one of two hard interventions on its node.
        callback: called with a dict after every autoencoder epoch (``stage``, ``epoch``,
            ``train_loss``: mean pixel cross-entropy, ``val_mse``: held-out pixel MSE); it may raise to
            stop a run (the epoch's checkpoint is already written).
        overrides: any ``ImageCRLConfig`` field.

    Returns:
        ``ImageCRLResult``. ``diagnostics`` holds ``reconstruction_mse`` (held-out pixel MSE of the
        autoencoder at the model resolution) and ``reconstruction_mse_mean_frame`` (MSE of the mean
        frame, for scale), ``pair_accuracy`` and ``bayes_accuracy`` (held-out balanced accuracy of
        every pair classifier and that of the design), ``graph_strength`` ``M`` and the threshold
        used, ``decoder_mse`` (held-out ``decode(encode(x))`` MSE), the autoencoder learning curve
        and ``seconds`` per stage (as recorded when the stage ran, also after a resume; ``total`` is
        this call's wall time).

    Raises:
        ValueError: bad data or settings, missing pairs, a checkpoint of another run.
        FloatingPointError: a loss diverged (NaN or infinite); nothing broken is written.
    """
    started = time.perf_counter()
    config = make_config(preset, **overrides)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    dev = resolve_device(device)
    frames = _Frames(data, menu)
    if config.image_size is None:
        config.image_size = frames.size
    if config.image_size > frames.size:
        raise ValueError(f"image_size {config.image_size} exceeds the frames' size {frames.size}")
    config.validate()

    present = set(np.unique(frames.regime).tolist())
    if 0 not in present:
        raise ValueError("the data have no observational frames (regime 0)")
    find = isinstance(pairs, str)
    if find:
        if pairs != "find":
            raise ValueError(f"pairs must be None, 'find' or a list of regime pairs, got {pairs!r}")
        interventional = sorted(r for r in present if r != 0)
        if len(interventional) < 2 or len(interventional) % 2:
            raise ValueError(f"pairs='find' needs the data to hold exactly two hard interventions per node (an even "
                             f"number of interventional regimes), got regimes {interventional}")
        used = [0, *interventional]
        n = len(interventional) // 2
    else:
        if pairs is None:
            if frames.menu is None:
                raise ValueError("no intervention menu: pass menu=[None, iv_1, ...], pairs=[(a, b), ...] (the "
                                 "regimes of the two hard interventions on every node) or pairs='find'")
            pairs = pairs_from_menu(frames.menu)
        try:
            pairs = [(int(a), int(b)) for a, b in pairs]
        except (TypeError, ValueError) as err:
            raise ValueError(f"pairs must be a list of (first, second) regimes, got {pairs!r}") from err
        used = [0] + [r for p in pairs for r in p]
        missing = sorted({r for r in used if r not in present})
        if missing:
            raise ValueError(f"regimes {missing} of the pairs have no frames in the data")
        if len(set(used)) != len(used):
            raise ValueError(f"pairs must use distinct interventional regimes, got {pairs}")
        n = len(pairs)

    # rows: a seeded subsample per regime, split into train / held-out
    rng = np.random.default_rng([seed, 1])
    train_rows: dict[int, np.ndarray] = {}
    val_rows: dict[int, np.ndarray] = {}
    for r in used:
        rows = np.flatnonzero(frames.regime == r)
        if config.max_per_regime is not None and len(rows) > config.max_per_regime:
            rows = np.sort(rng.choice(rows, config.max_per_regime, replace=False))
        rows = rng.permutation(rows)
        num_val = max(2, round(config.val_fraction * len(rows)))
        if len(rows) - num_val < 10:
            raise ValueError(f"regime {r} has {len(rows)} frames; need at least {num_val + 10}")
        val_rows[r], train_rows[r] = np.sort(rows[:num_val]), np.sort(rows[num_val:])
    all_rows = np.concatenate([np.concatenate([train_rows[r], val_rows[r]]) for r in used])
    batches = _Batches(frames, all_rows, int(config.image_size), dev, config.cache_bytes, progress)
    offsets = np.cumsum([0] + [len(train_rows[r]) + len(val_rows[r]) for r in used])
    train_pos = {r: offsets[i] + np.arange(len(train_rows[r])) for i, r in enumerate(used)}
    val_pos = {r: offsets[i] + len(train_rows[r]) + np.arange(len(val_rows[r])) for i, r in enumerate(used)}

    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)
    probe = batches.get(np.array([0, len(all_rows) - 1])).cpu().numpy()
    stage1_keys = ("image_size", "max_per_regime", "ae_max_per_regime", "val_fraction", "code_dim", "channels",
                   "hidden", "ae_epochs", "batch_size", "lr")
    data_print = _fingerprint(all_rows, probe, [int(frames.size)], pairs, seed)
    stage1_print = _fingerprint(data_print, {k: getattr(config, k) for k in stage1_keys})
    later_print = _fingerprint(stage1_print, dataclasses.asdict(config))
    seconds: dict[str, float] = {}

    ae, readout, latent_decoder = _build_modules(config, n, seed)
    ae.to(dev)
    t0 = time.perf_counter()
    ae_rng = np.random.default_rng([seed, 3])
    ae_train = np.concatenate([
        train_pos[r] if config.ae_max_per_regime is None or len(train_pos[r]) <= config.ae_max_per_regime
        else np.sort(ae_rng.choice(train_pos[r], config.ae_max_per_regime, replace=False)) for r in used])
    history = _train_autoencoder(ae, batches, ae_train,
                                 np.concatenate([val_pos[r] for r in used]), config, dev, seed,
                                 None if ckpt is None else ckpt / "autoencoder.pt", stage1_print, progress, callback)
    # training time as recorded epoch by epoch, so a resumed run still reports what the stage cost
    seconds["autoencoder"] = float(sum(h.get("seconds", 0.0) for h in history))
    seconds["autoencoder_this_run"] = time.perf_counter() - t0
    ae.eval().requires_grad_(False)
    recon, mean_frame = _reconstruction_error(ae, batches, np.concatenate([val_pos[r] for r in used]),
                                              np.concatenate([train_pos[r] for r in used]))

    t0 = time.perf_counter()
    codes_train = {r: _encode_positions(ae.encoder, batches, train_pos[r]) for r in used}
    codes_val = {r: _encode_positions(ae.encoder, batches, val_pos[r]) for r in used}
    seconds["codes"] = time.perf_counter() - t0
    pair_search = None
    if find:
        from causal_wm.crl.gscale import find_pairs

        t0 = time.perf_counter()
        search = find_pairs([codes_train[r] for r in used], n=n, seed=seed, device=str(dev))
        pairs = [(used[a], used[b]) for a, b in search.pairs]
        pair_search = {"margin": search.margin, "classifier_accuracy": search.classifier_accuracy,
                       "concentration": search.concentration.tolist()}
        seconds["find_pairs"] = time.perf_counter() - t0
    assert not isinstance(pairs, str) and pairs is not None

    t0 = time.perf_counter()
    path2 = None if ckpt is None else ckpt / f"readout_{config.route}_{later_print[:12]}.pt"
    state2 = _load_checkpoint(path2, later_print)
    readout.to(dev)
    if state2 is None:
        readout_diag = _fit_readout(readout, config, codes_train, codes_val, pairs, dev, seed, progress)
        seconds["readout"] = time.perf_counter() - t0
        if path2 is not None:
            save_atomic({"fingerprint": later_print, "readout": readout.state_dict(), "seconds": seconds["readout"],
                          "diagnostics": json.dumps(to_jsonable(readout_diag))}, path2)
    else:
        readout.load_state_dict(state2["readout"])
        readout_diag = json.loads(state2["diagnostics"])
        seconds["readout"] = float(state2.get("seconds", time.perf_counter() - t0))
    readout.eval().requires_grad_(False)

    z_train = {r: _apply(readout, codes_train[r], dev) for r in used}
    z_val = {r: _apply(readout, codes_val[r], dev) for r in used}
    accuracy = _pair_accuracy(readout, codes_val, pairs, dev)
    design = frames.menu
    bayes = [None if design is None else bayes_accuracy(design[a], design[b]) for a, b in pairs]

    t0 = time.perf_counter()
    path3 = None if ckpt is None else ckpt / f"graph_{config.route}_{later_print[:12]}.pt"
    state3 = _load_checkpoint(path3, later_print)
    if state3 is None:
        strength = _graph_strength(z_train, z_val, pairs, config, dev, seed, progress)
        seconds["graph"] = time.perf_counter() - t0
        if path3 is not None:
            save_atomic({"fingerprint": later_print, "strength": torch.as_tensor(strength),
                          "seconds": seconds["graph"]}, path3)
    else:
        strength = state3["strength"].numpy()
        seconds["graph"] = float(state3.get("seconds", time.perf_counter() - t0))
    graph, tau, removed = _graph_from_strength(strength, config.graph_threshold)

    t0 = time.perf_counter()
    path4 = None if ckpt is None else ckpt / f"decoder_{config.route}_{later_print[:12]}.pt"
    state4 = _load_checkpoint(path4, later_print)
    latent_decoder.to(dev)
    if state4 is None:
        _fit_latent_decoder(latent_decoder, z_train, z_val, codes_train, codes_val, config, dev)
        _check_finite(float(sum(p.detach().sum() for p in latent_decoder.parameters())), "the latent decoder")
        seconds["decoder"] = time.perf_counter() - t0
        if path4 is not None:
            save_atomic({"fingerprint": later_print, "decoder": latent_decoder.state_dict(),
                          "seconds": seconds["decoder"]}, path4)
    else:
        latent_decoder.load_state_dict(state4["decoder"])
        seconds["decoder"] = float(state4.get("seconds", time.perf_counter() - t0))
    latent_decoder.eval().requires_grad_(False)

    env_targets = _env_targets(pairs, frames.menu)
    result = ImageCRLResult(ae, readout, latent_decoder, graph, env_targets, pairs, dataclasses.asdict(config))
    decoder_mse = _decoder_error(result, batches, np.concatenate([val_pos[r] for r in used]))
    seconds["total"] = time.perf_counter() - started
    result.diagnostics = {
        "route": config.route, "preset": preset, "device": str(dev), "n": n, "pairs": [list(p) for p in pairs],
        "frames_per_regime": {int(r): int(len(train_rows[r]) + len(val_rows[r])) for r in used},
        "reconstruction_mse": recon, "reconstruction_mse_mean_frame": mean_frame,
        "pair_accuracy": accuracy, "bayes_accuracy": bayes,
        "accuracy_gap": [None if b is None else b - a for a, b in zip(accuracy, bayes, strict=True)],
        "graph_strength": strength.tolist(), "graph_threshold": tau, "graph_removed_weight": removed,
        "decoder_mse": decoder_mse, "pair_search": pair_search,
        "autoencoder_history": history, "readout": readout_diag, "seconds": seconds,
    }
    return result


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _train_autoencoder(ae: ConvAutoencoder, batches: _Batches, train: np.ndarray, val: np.ndarray,
                       config: ImageCRLConfig, device: torch.device, seed: int, path: Path | None,
                       fingerprint: str, progress: bool,
                       callback: Callable[[dict[str, Any]], None] | None) -> list[dict[str, float]]:
    """Stage 1: pixel-wise binary cross-entropy of ``decoder(encoder(x))`` logits against the pixels in
    ``[0, 1]``; held-out pixel MSE after every epoch, then a checkpoint."""
    opt = torch.optim.Adam(ae.parameters(), lr=config.lr)
    history: list[dict[str, float]] = []
    start = 0
    state = _load_checkpoint(path, fingerprint)
    if state is not None:
        ae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history = [dict(h) for h in state["history"]]
        start = int(state["epoch"])
    bar = tqdm(range(start, config.ae_epochs), desc="autoencoder", disable=not progress, initial=start,
               total=config.ae_epochs)
    for epoch in bar:
        epoch_start = time.perf_counter()
        ae.train()
        order = train[np.random.default_rng([seed, 2, epoch]).permutation(len(train))]
        total = torch.zeros((), device=device)
        for s in range(0, len(order), config.batch_size):
            x = batches.get(order[s: s + config.batch_size])
            with _autocast(device, config.amp):
                _, logits = ae(x)
            # cross-entropy on the logits, not MSE on sigmoid pixels: saturated sigmoids on the plain
            # background leave MSE without gradient and the decoder collapses to a constant frame
            loss = F.binary_cross_entropy_with_logits(logits.float(), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(x)
        train_loss = float(total) / len(order)
        _check_finite(train_loss, f"the autoencoder loss (epoch {epoch + 1})")
        ae.eval()
        val_loss, _ = _reconstruction_error(ae, batches, val, None)
        _check_finite(val_loss, f"the autoencoder held-out loss (epoch {epoch + 1})")
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_mse": val_loss,
                        "seconds": time.perf_counter() - epoch_start})
        bar.set_postfix(bce=f"{train_loss:.4f}", val_mse=f"{val_loss:.5f}")
        if path is not None:
            save_atomic({"fingerprint": fingerprint, "epoch": epoch + 1, "model": ae.state_dict(),
                          "optimizer": opt.state_dict(), "history": history}, path)
        if callback is not None:
            callback({"stage": "autoencoder", **history[-1]})
    return history


@torch.no_grad()
def _reconstruction_error(ae: ConvAutoencoder, batches: _Batches, positions: np.ndarray,
                          mean_from: np.ndarray | None) -> tuple[float, float | None]:
    """Pixel MSE at ``positions``, and the MSE of the mean frame of ``mean_from`` (None: skipped)."""
    mean = None
    if mean_from is not None:
        acc = None
        for s in range(0, len(mean_from), 512):
            x = batches.get(mean_from[s: s + 512]).sum(0)
            acc = x if acc is None else acc + x
        mean = acc / len(mean_from)
    err = base = 0.0
    for s in range(0, len(positions), 512):
        x = batches.get(positions[s: s + 512])
        _, logits = ae(x)
        err += float(((torch.sigmoid(logits.float()) - x) ** 2).mean(dim=(1, 2, 3)).sum())
        if mean is not None:
            base += float(((mean - x) ** 2).mean(dim=(1, 2, 3)).sum())
    return err / len(positions), (None if mean is None else base / len(positions))


@torch.no_grad()
def _encode_positions(encoder: nn.Module, batches: _Batches, positions: np.ndarray) -> np.ndarray:
    out = [encoder(batches.get(positions[s: s + 1024])).float().cpu() for s in range(0, len(positions), 1024)]
    return torch.cat(out).numpy().astype(np.float64)


@torch.no_grad()
def _apply(module: nn.Module, values: np.ndarray, device: torch.device) -> np.ndarray:
    x = torch.as_tensor(values, dtype=torch.float32, device=device)
    return torch.cat([module(c) for c in torch.split(x, 65536)]).cpu().numpy().astype(np.float64)


# --- stage 2: read-outs ------------------------------------------------------------------------------
def _fit_readout(readout: nn.Module, config: ImageCRLConfig, codes_train: dict[int, np.ndarray],
                 codes_val: dict[int, np.ndarray], pairs: list[tuple[int, int]], device: torch.device,
                 seed: int, progress: bool) -> dict[str, Any]:
    if isinstance(readout, PairReadout):
        return _fit_pair_readout(readout, config, codes_train, pairs, device, seed, progress)
    if isinstance(readout, MultinomialReadout):
        return _fit_multinomial_readout(readout, config, codes_train, codes_val, pairs, device, seed)
    assert isinstance(readout, StructuredReadout)
    return _fit_structured_readout(readout, config, codes_train, codes_val, pairs, device, seed, progress)


def _fit_pair_readout(readout: PairReadout, config: ImageCRLConfig, codes_train: dict[int, np.ndarray],
                      pairs: list[tuple[int, int]], device: torch.device, seed: int, progress: bool) -> dict[str, Any]:
    """One balanced classifier per pair on the codes; latent ``k`` = logit of ``log p^second / p^first``."""
    regimes = [0] + [r for p in pairs for r in p]
    index = {r: i for i, r in enumerate(regimes)}
    estimator = ClassifierScores(pairs=[(index[b], index[a]) for a, b in pairs], hidden=config.classifier_hidden,
                                 depth=config.classifier_depth, epochs=config.classifier_epochs,
                                 batch_size=config.classifier_batch_size, patience=config.classifier_patience,
                                 seed=seed, device=str(device), progress=progress)
    estimator.fit([codes_train[r] for r in regimes])
    support = estimator.support
    with torch.no_grad():
        readout.center.copy_(torch.as_tensor(support.center, dtype=torch.float32))
        readout.whitening.copy_(torch.as_tensor(support.basis / estimator.scale[None, :], dtype=torch.float32))
        for k, (a, b) in enumerate(pairs):
            readout.heads[k].load_state_dict(estimator.networks[(index[b], index[a])].state_dict())
        raw = _apply(readout.log_ratios, codes_train[0], device)
        _set_standardization(readout.out, raw)
    return {"classifier_epochs": [estimator.train_results[(index[b], index[a])].epochs_run for a, b in pairs]}


def _fit_multinomial_readout(readout: MultinomialReadout, config: ImageCRLConfig, codes_train: dict[int, np.ndarray],
                             codes_val: dict[int, np.ndarray], pairs: list[tuple[int, int]], device: torch.device,
                             seed: int) -> dict[str, Any]:
    """One balanced multinomial classifier over the regimes (observational, then the pairs in order)."""
    regimes = [0] + [r for p in pairs for r in p]
    pooled = np.concatenate([codes_train[r] for r in regimes])
    with torch.no_grad():
        readout.inp.mean.copy_(torch.as_tensor(pooled.mean(axis=0), dtype=torch.float32))
        readout.inp.std.copy_(torch.as_tensor(np.maximum(pooled.std(axis=0), 1e-8), dtype=torch.float32))
    train = [torch.as_tensor(codes_train[r], dtype=torch.float32, device=device) for r in regimes]
    held = [torch.as_tensor(codes_val[r], dtype=torch.float32, device=device) for r in regimes]
    bs = max(1, config.classifier_batch_size // 4)
    labels = torch.arange(len(regimes), device=device).repeat_interleave(bs)
    gen = torch.Generator(device=device).manual_seed(seed + 11)

    def step() -> torch.Tensor:
        batch = torch.cat([t[torch.randint(len(t), (bs,), generator=gen, device=device)] for t in train])
        return F.cross_entropy(readout.regime_logits(batch), labels)

    def val_loss() -> float:
        # mean of the per-regime losses: balanced classes whatever the held-out sizes
        with torch.no_grad():
            return float(sum(F.cross_entropy(readout.regime_logits(v), torch.full((len(v),), m, device=device))
                             for m, v in enumerate(held)) / len(held))

    steps = max(1, max(len(t) for t in train) // bs)
    fit = train_early_stopping(readout, step, val_loss, epochs=config.classifier_epochs, steps_per_epoch=steps,
                               lr=2e-3, patience=config.classifier_patience)
    _check_finite(fit.val_loss[fit.best_epoch], "the multinomial read-out loss")
    readout.eval()
    _set_standardization(readout.out, _apply(readout.log_ratios, codes_train[0], device))
    return {"val_cross_entropy": fit.val_loss[fit.best_epoch], "epochs": fit.epochs_run,
            "best_epoch": fit.best_epoch}


def _set_standardization(out: nn.Module, raw: np.ndarray) -> None:
    std = raw.std(axis=0)
    if np.any(~np.isfinite(raw)) or np.any(std <= 0):
        raise FloatingPointError("a learned latent is constant or not finite on the observational frames; "
                                 "the read-out failed (check the pair classifiers' accuracy)")
    with torch.no_grad():
        out.mean.copy_(torch.as_tensor(raw.mean(axis=0), dtype=torch.float32))
        out.std.copy_(torch.as_tensor(std, dtype=torch.float32))


def _fit_structured_readout(readout: StructuredReadout, config: ImageCRLConfig, codes_train: dict[int, np.ndarray],
                            codes_val: dict[int, np.ndarray], pairs: list[tuple[int, int]], device: torch.device,
                            seed: int, progress: bool) -> dict[str, Any]:
    """Shared MLP ``y -> z`` with 1-d heads per pair plus code reconstruction; best of the restarts."""
    pooled = np.concatenate(list(codes_train.values()))
    mean, std = pooled.mean(axis=0), np.maximum(pooled.std(axis=0), 1e-8)
    tensor = {r: torch.as_tensor(c, dtype=torch.float32, device=device) for r, c in codes_train.items()}
    held = {r: torch.as_tensor(c, dtype=torch.float32, device=device) for r, c in codes_val.items()}
    bs = config.classifier_batch_size
    n = len(pairs)
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    losses = []
    for restart in tqdm(range(config.structured_restarts), desc="structured read-out", disable=not progress):
        candidate = StructuredReadout(readout.inp.mean.numel(), n, config.classifier_hidden, config.classifier_depth,
                                      seed + 101 * restart).to(device)
        with torch.no_grad():
            candidate.inp.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            candidate.inp.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        gen = torch.Generator(device=device).manual_seed(seed + 101 * restart + 1)

        def losses_of(source: dict[int, torch.Tensor], sample: bool, m: StructuredReadout = candidate,
                      g: torch.Generator = gen) -> tuple[torch.Tensor, torch.Tensor]:
            def pick(r: int) -> torch.Tensor:
                c = source[r]
                if not sample:
                    return c
                return c[torch.randint(len(c), (min(bs, len(c)),), generator=g, device=device)]

            classify = torch.zeros((), device=device)
            recon = torch.zeros((), device=device)
            for k, (a, b) in enumerate(pairs):
                ya, yb = pick(a), pick(b)
                za, zb = m.raw(ya), m.raw(yb)
                # label 1 for the second regime: logit ~ log p^second / p^first
                classify = classify + 0.5 * (F.softplus(m.logits(za)[:, k]).mean()
                                             + F.softplus(-m.logits(zb)[:, k]).mean())
                recon = recon + F.mse_loss(m.reconstruct(za), m.inp(ya)) + F.mse_loss(m.reconstruct(zb), m.inp(yb))
            y0 = pick(0)
            recon = recon + F.mse_loss(m.reconstruct(m.raw(y0)), m.inp(y0))
            return classify / n, recon / (2 * n + 1)

        def step() -> torch.Tensor:
            c, r = losses_of(tensor, True)
            return c + config.structured_recon_weight * r

        def val_loss() -> float:
            with torch.no_grad():
                c, r = losses_of(held, False)
                return float(c + config.structured_recon_weight * r)

        steps = max(1, -(-max(len(c) for c in codes_train.values()) // bs))
        train_early_stopping(candidate, step, val_loss, epochs=config.structured_epochs, steps_per_epoch=steps,
                             lr=2e-3, patience=config.classifier_patience * 2)
        with torch.no_grad():
            c_val, _ = losses_of(held, False)
        score = float(c_val)
        losses.append(score)
        if math.isfinite(score) and (best is None or score < best[0]):
            best = (score, {k: v.detach().clone() for k, v in candidate.state_dict().items()})
    if best is None:
        raise FloatingPointError("every restart of the structured read-out diverged (NaN loss)")
    readout.load_state_dict(best[1])
    readout.eval()
    with torch.no_grad():
        raw = _apply(readout.raw, codes_train[0], device)
        # orient every latent so that it increases with its pair's logit
        logit = _apply(readout.log_ratios, codes_train[0], device)
        sign = np.sign([np.corrcoef(raw[:, k], logit[:, k])[0, 1] for k in range(n)])
        _set_standardization(readout.out, raw)
        readout.out.std.mul_(torch.as_tensor(np.where(sign == 0, 1.0, sign), dtype=torch.float32))
    return {"restart_val_classifier_loss": losses, "chosen_restart": int(np.nanargmin(losses))}


@torch.no_grad()
def _pair_accuracy(readout: nn.Module, codes_val: dict[int, np.ndarray], pairs: list[tuple[int, int]],
                   device: torch.device) -> list[float]:
    """Held-out balanced accuracy of every pair classifier (its logit's sign)."""

    def logits(y: np.ndarray) -> np.ndarray:
        return _apply(readout.log_ratios, y, device)

    out = []
    for k, (a, b) in enumerate(pairs):
        out.append(float(0.5 * ((logits(codes_val[a])[:, k] < 0).mean() + (logits(codes_val[b])[:, k] > 0).mean())))
    return out


# --- stage 3: the graph --------------------------------------------------------------------------------
def _graph_strength(z_train: dict[int, np.ndarray], z_val: dict[int, np.ndarray], pairs: list[tuple[int, int]],
                    config: ImageCRLConfig, device: torch.device, seed: int, progress: bool) -> np.ndarray:
    """``M[i, k] = E|dr/dz_i| / E|dr/dz_k|`` for ``r = log p^0 / p^m``, averaged over the two regimes
    ``m`` of pair ``k``, at observational samples (train and held-out); diagonal 0."""
    regimes = [0] + [r for p in pairs for r in p]
    estimator = ClassifierScores(pairs=[(0, j) for j in range(1, len(regimes))], hidden=config.classifier_hidden,
                                 depth=config.classifier_depth, epochs=config.classifier_epochs,
                                 batch_size=config.classifier_batch_size, patience=config.classifier_patience,
                                 seed=seed + 5, device=str(device), progress=progress)
    estimator.fit([z_train[r] for r in regimes])
    points = np.concatenate([z_train[0], z_val[0]])
    n = len(pairs)
    M = np.zeros((n, n))
    for k in range(n):
        for j in (1 + 2 * k, 2 + 2 * k):
            g = np.abs(estimator.pair_difference(points, 0, j)).mean(axis=0)
            M[:, k] += 0.5 * g / max(g[k], 1e-12)
    np.fill_diagonal(M, 0.0)
    return M


def _graph_from_strength(M: np.ndarray, threshold: float | str) -> tuple[np.ndarray, float, float]:
    n = M.shape[0]
    off = M[~np.eye(n, dtype=bool)]
    if threshold == "auto":
        tau = gap_threshold(off, n * (n - 1) // 2) if off.size else 1.0
    else:
        tau = float(threshold)
    W = np.where(M > tau, np.log(np.maximum(M, 1e-300) / tau), 0.0)
    np.fill_diagonal(W, 0.0)
    res = closest_dag(W)
    return res.adjacency.astype(np.int64), float(tau), float(res.removed_weight)


# --- stage 4: decoder ------------------------------------------------------------------------------------
def _fit_latent_decoder(decoder: LatentDecoder, z_train: dict[int, np.ndarray], z_val: dict[int, np.ndarray],
                        codes_train: dict[int, np.ndarray], codes_val: dict[int, np.ndarray],
                        config: ImageCRLConfig, device: torch.device) -> None:
    keys = sorted(z_train)
    zt = torch.as_tensor(np.concatenate([z_train[r] for r in keys]), dtype=torch.float32, device=device)
    yt = torch.as_tensor(np.concatenate([codes_train[r] for r in keys]), dtype=torch.float32, device=device)
    zv = torch.as_tensor(np.concatenate([z_val[r] for r in keys]), dtype=torch.float32, device=device)
    yv = torch.as_tensor(np.concatenate([codes_val[r] for r in keys]), dtype=torch.float32, device=device)
    with torch.no_grad():
        decoder.code.mean.copy_(yt.mean(0))
        decoder.code.std.copy_(yt.std(0).clamp_min(1e-8))
    gen = torch.Generator(device=device).manual_seed(len(zt))
    bs = config.classifier_batch_size

    def step() -> torch.Tensor:
        idx = torch.randint(len(zt), (min(bs, len(zt)),), generator=gen, device=device)
        return F.mse_loss(decoder.net(zt[idx]), decoder.code(yt[idx]))

    def val_loss() -> float:
        with torch.no_grad():
            return float(F.mse_loss(decoder.net(zv), decoder.code(yv)))

    train_early_stopping(decoder, step, val_loss, epochs=config.decoder_epochs,
                         steps_per_epoch=max(1, -(-len(zt) // bs)), lr=2e-3, patience=config.classifier_patience * 2)


@torch.no_grad()
def _decoder_error(result: ImageCRLResult, batches: _Batches, positions: np.ndarray) -> float:
    encoder, decoder = result.encoder_module().eval(), result.decoder_module().eval()
    err = 0.0
    for s in range(0, len(positions), 512):
        x = batches.get(positions[s: s + 512])
        err += float(((decoder(encoder(x)) - x) ** 2).mean(dim=(1, 2, 3)).sum())
    return err / len(positions)


def _env_targets(pairs: list[tuple[int, int]], menu: Sequence[Any] | None) -> dict[int, tuple[int, ...]]:
    out = {r: (k,) for k, p in enumerate(pairs) for r in p}
    if menu is None:
        return out
    node_of_latent = {}
    for k, (a, _) in enumerate(pairs):
        targets = _field(menu[a], "targets") if a < len(menu) and menu[a] is not None else None
        if targets is not None and len(targets) == 1:
            node_of_latent[int(targets[0])] = k
    for r, iv in enumerate(menu):
        if iv is None or r in out:
            continue
        targets = [int(t) for t in _field(iv, "targets")]
        if all(t in node_of_latent for t in targets):
            out[r] = tuple(sorted(node_of_latent[t] for t in targets))
    return dict(sorted(out.items()))


# --- evaluation against ground truth (benchmarks, demo) -------------------------------------------
def evaluate_image_crl(result: ImageCRLResult, frames: np.ndarray, z_true: np.ndarray,
                       true_graph: np.ndarray) -> dict[str, Any]:
    """Score a learned model against the truth on frames ``(N, H, W, 3)`` with latents ``(N, n)``.

    Returns ``causal_wm.crl.metrics.evaluate``'s metrics (MCC Pearson/Spearman, R^2 diag/sep, SHD in
    both conventions after the Pearson-MCC matching, edge precision/recall, latent error) plus the
    Spearman matrix, the learned graph and the ground-truth-free diagnostics of the fit.
    """
    from causal_wm.crl.metrics import evaluate, mcc

    z_hat = result.encode(frames)
    out = evaluate(z_true, z_hat, true_graph=true_graph, learned_graph=result.graph)
    out["spearman_matrix"] = mcc(z_true, z_hat, "spearman").matrix.tolist()
    out["learned_graph"] = result.graph.tolist()
    for key in ("reconstruction_mse", "reconstruction_mse_mean_frame", "pair_accuracy", "bayes_accuracy",
                "graph_strength", "graph_threshold", "decoder_mse", "readout", "seconds"):
        if key in result.diagnostics:
            out[key] = result.diagnostics[key]
    return out


def image_crl_figures(result: ImageCRLResult, metrics: Mapping[str, Any], true_graph: np.ndarray,
                      folder: str | os.PathLike, stem: str, *, names: Sequence[str] | None = None,
                      frames: np.ndarray | None = None) -> dict[str, str]:
    """PNG figures of a scored model (``metrics`` from ``evaluate_image_crl``): the Spearman matrix
    behind MCC, true vs learned graph (learned latents aligned by the MCC matching), latent
    traversals decoded to images, and with ``frames`` reconstructions ``decode(encode(x))`` next to
    the inputs. Returns ``{name: path}``."""
    from causal_wm.viz import image_grid, plot_graphs, plot_matrix

    folder = Path(folder)
    p = np.asarray(metrics["permutation"])
    paths = {"mcc": folder / f"{stem}_mcc.png", "graph": folder / f"{stem}_graph.png",
             "traversals": folder / f"{stem}_traversals.png"}
    plot_matrix(np.asarray(metrics["spearman_matrix"]), row_label="true latent", col_label="learned latent",
                title=f"|Spearman| (MCC {metrics['mcc_spearman']:.3f})", path=paths["mcc"])
    plot_graphs(true_graph, result.graph[np.ix_(p, p)], names=names, path=paths["graph"])
    values = np.linspace(-2.0, 2.0, 7)
    image_grid(result.traversals(values), row_labels=[f"z_hat {k}" for k in range(result.n)],
               title="learned latent k from -2 to +2 (others 0)", path=paths["traversals"])
    if frames is not None:
        x = np.asarray(frames)[:8]
        small = (prepare_images(x, result.image_size).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        paths["reconstructions"] = folder / f"{stem}_reconstructions.png"
        image_grid(np.stack([small, result.decode(result.encode(x))]), row_labels=["input", "decoded"],
                   title="decode(encode(x))", path=paths["reconstructions"])
    return {k: str(v) for k, v in paths.items()}

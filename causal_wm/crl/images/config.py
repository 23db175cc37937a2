"""Settings of the image pipeline: ``ImageCRLConfig`` (one docstring per field) and the presets,
named overrides of its defaults (``debug``: seconds, ``cpu``: minutes on a CPU, ``full``: the published
size on a GPU)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from causal_wm.config import resolve_config

ROUTES = ("parametric", "multinomial", "pairs", "structured")
MECHANISM_CHOICES = ("auto", "linear", "mlp")


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
    ae_regime_weight: float = 0.0
    """weight of a regime classifier on the code in the autoencoder's loss (keeps details that few pixels
    show but the interventions move, e.g. a thin shadow); 0: reconstruction only"""
    route: str = "parametric"
    """read-out route: "parametric" (an MLP y -> z and a latent SCM whose log densities are the logits of
    one classifier over all regimes; gives the graph and the mechanisms), "pairs" (a classifier per pair on
    y), "multinomial" (one classifier over all regimes on y) or "structured" (a shared y -> z MLP with
    one-coordinate heads)"""
    mechanism: str = "auto"
    """mechanisms of the parametric route's latent SCM: "linear" (Gaussian, linear in the parents),
    "mlp" (linear plus a small SiLU network per node) or "auto" (both fitted, the network kept only when
    its held-out regime cross-entropy is lower by more than three standard errors)"""
    mechanism_hidden: int = 16
    """width of every node's network (mechanism "mlp")"""
    scm_l1: float = 1e-3
    """L1 weight on the latent SCM's mechanism weights (group L1 on the networks' inputs), per sample"""
    law_weight: float = 0.0
    """weight of the latent SCM's law mismatch (``LatentSCM.law_mismatch``: the intervened latents and the
    mechanisms' residuals against their Gaussian laws, which the cross-entropy hardly constrains in the
    tails); 0: off"""
    readout_members: int = 1
    """parametric route: independently trained read-out maps whose standardised outputs are averaged (one
    latent SCM fitted on the average): averaging cancels part of every map's estimation error"""
    readout_batch_size: int = 128
    """frames of every regime in one minibatch of the parametric read-out"""
    readout_epochs: int = 150
    """maximum epochs of the parametric read-out (early stopping on held-out regime cross-entropy)"""
    edge_threshold: float | str = "auto"
    """parametric route: edge i -> k when the mechanism strength E|d g_k / d z_i| (standardised latents)
    exceeds this, or "auto" (a gap in the sorted strengths, docs/science.md section 9)"""
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
    """edge threshold on M[i, k] (docs/science.md section 8), or "auto" (a gap in the sorted values)"""
    decoder_epochs: int = 100
    """maximum epochs of the latent decoder z -> y (early stopping)"""
    decoder_max_per_regime: int | None = 5000
    """the latent decoder trains on at most this many frames of every regime (None: all)"""
    e2e_epochs: int = 0
    """parametric route: epochs of the end-to-end stage (CNN encoder, read-out, latent SCM and decoders
    fine-tuned together on frames; 0: off), early-stopped on held-out regime cross-entropy"""
    e2e_max_per_regime: int | None = 4000
    """frames of every regime the end-to-end stage trains on (held in memory; None: all)"""
    e2e_batch_per_regime: int = 16
    """frames of every regime in one minibatch of the end-to-end stage"""
    e2e_recon_weight: float = 1.0
    """weight of the pixel reconstruction through the n-dim latent in the end-to-end loss"""
    e2e_lr: float = 2e-4
    """learning rate (Adam) of the end-to-end stage"""
    amp: bool = True
    """bfloat16 autocast for the autoencoder on CUDA (ignored on CPU)"""
    cache_bytes: int = 4 << 30
    """frames up to this many bytes are read once into (device) memory; more are streamed per batch"""

    def validate(self) -> ImageCRLConfig:
        if self.image_size is not None and (self.image_size < 16 or self.image_size & (self.image_size - 1)):
            raise ValueError(f"image_size must be a power of two >= 16 or None, got {self.image_size!r}")
        if self.max_per_regime is not None and self.max_per_regime < 20:
            raise ValueError(f"max_per_regime must be at least 20 or None, got {self.max_per_regime!r}")
        for name in ("decoder_max_per_regime", "e2e_max_per_regime"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 10):
                raise ValueError(f"{name} must be an int >= 10 or None, got {value!r}")
        for name in ("e2e_recon_weight", "e2e_lr", "law_weight", "ae_regime_weight"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.ae_max_per_regime is not None and self.ae_max_per_regime < 10:
            raise ValueError(f"ae_max_per_regime must be at least 10 or None, got {self.ae_max_per_regime!r}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must lie in (0, 0.5), got {self.val_fraction!r}")
        for name in ("code_dim", "channels", "hidden", "batch_size", "classifier_hidden", "classifier_depth",
                     "classifier_patience", "classifier_batch_size", "multinomial_hidden", "structured_restarts",
                     "mechanism_hidden", "readout_batch_size", "e2e_batch_per_regime", "readout_members"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("ae_epochs", "classifier_epochs", "structured_epochs", "decoder_epochs", "readout_epochs",
                     "e2e_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}, got {self.route!r}")
        for name in ("graph_threshold", "edge_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0) and value != "auto":
                raise ValueError(f"{name} must be a positive number or 'auto', got {value!r}")
        if self.mechanism not in MECHANISM_CHOICES:
            raise ValueError(f"mechanism must be one of {MECHANISM_CHOICES}, got {self.mechanism!r}")
        if not (isinstance(self.scm_l1, int | float) and math.isfinite(self.scm_l1) and self.scm_l1 >= 0):
            raise ValueError(f"scm_l1 must be a number >= 0, got {self.scm_l1!r}")
        if not self.structured_recon_weight >= 0:
            raise ValueError(f"structured_recon_weight must be >= 0, got {self.structured_recon_weight!r}")
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # seconds on one CPU thread: tests and smoke runs
    "debug": dict(image_size=16, max_per_regime=150, code_dim=8, channels=8, hidden=64, ae_epochs=10,
                  batch_size=16, lr=3e-3, classifier_hidden=32, classifier_epochs=30, classifier_batch_size=128,
                  structured_epochs=40, structured_restarts=1, decoder_epochs=30, cache_bytes=1 << 30),
    # about ten minutes on one CPU core: 32 x 32 model resolution; the autoencoder trains on 1,500 frames
    # per regime, the read-out sees 20,000 (its estimation error limits the result), then the end-to-end
    # stage and two averaged read-out maps
    "cpu": dict(image_size=32, max_per_regime=20_000, ae_max_per_regime=1500, code_dim=16, channels=32, hidden=256,
                ae_epochs=12, batch_size=32, lr=2e-3, classifier_batch_size=128, classifier_epochs=300,
                classifier_patience=20, cache_bytes=2 << 30, law_weight=1.0, readout_members=2, e2e_epochs=6,
                decoder_max_per_regime=2000, ae_regime_weight=0.1),
    # for one GPU: 64 x 64, more frames for every stage, a longer end-to-end stage
    "full": dict(image_size=64, max_per_regime=40_000, ae_max_per_regime=10_000, code_dim=16, channels=64,
                 hidden=512, ae_epochs=30, batch_size=128, lr=2e-3, classifier_batch_size=256, classifier_epochs=200,
                 classifier_patience=15, structured_restarts=3, cache_bytes=8 << 30, law_weight=1.0,
                 readout_members=3, readout_batch_size=256, e2e_epochs=20, e2e_max_per_regime=20_000,
                 e2e_batch_per_regime=32, ae_regime_weight=0.1),
}


def make_config(preset: str = "cpu", **overrides: Any) -> ImageCRLConfig:
    """The configuration of ``preset`` with ``overrides`` applied (unknown keys raise ``ValueError``)."""
    return resolve_config(ImageCRLConfig, PRESETS, preset, overrides)

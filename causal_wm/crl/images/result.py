"""``ImageCRLResult``: the fitted encoder, decoder, latent graph and regime targets of the image
pipeline, and its persistence (a ``causal_wm.crl.Representation``)."""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from causal_wm._torch import to_jsonable
from causal_wm.crl.image_models import (
    ConvAutoencoder,
    LatentDecoder,
    MultinomialReadout,
    PairReadout,
    ParametricReadout,
    StructuredReadout,
)
from causal_wm.crl.images.config import ImageCRLConfig, make_config
from causal_wm.crl.latent_scm import LatentSCMParameters, export_parameters
from causal_wm.device import resolve_device
from causal_wm.persistence import Persistent, check_state, state_errors
from causal_wm.pixels import check_frames, check_latents, frames_differ, prepare_images, to_hwc_uint8

FORMAT = "causal_wm.crl.images"
FORMAT_VERSION = 1


class FrameMismatchWarning(UserWarning):
    """Frames given to a model look unlike the frames it was fitted on (another scene or size)."""


# --- the result --------------------------------------------------------------------------------------
@dataclass
class ImageCRLResult(Persistent):
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

    FORMAT: ClassVar[str] = FORMAT
    FORMAT_VERSION: ClassVar[int] = FORMAT_VERSION

    @property
    def n(self) -> int:
        return len(self.pairs)

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    @property
    def device(self) -> torch.device:
        return next(self.autoencoder.parameters()).device

    @property
    def latent_scm(self) -> LatentSCMParameters | None:
        """The latent SCM the parametric route fitted, in the output (standardised) latents: its
        mechanisms (``weight[i, k]``, ``bias``, ``noise_std``, networks) and the intervention laws of the
        pairs' regimes; None for the other routes. ``graph`` is its thresholded mechanism strength."""
        if not isinstance(self.readout, ParametricReadout):
            return None
        regimes = [r for p in self.pairs for r in p]
        return export_parameters(self.readout.scm, regimes, self.readout.out.mean.cpu().numpy(),
                                 self.readout.out.std.cpu().numpy())

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

    frame_check: ClassVar[str] = "warn"
    """what ``encode`` does with frames unlike the training frames (another size, other colours):
    ``"warn"`` (``FrameMismatchWarning``), ``"raise"`` (``ValueError``) or ``"off"``; set per object"""

    def _check(self, images: Any) -> None:
        check_frames(images)
        stats = self.diagnostics.get("frames")
        if self.frame_check == "off" or not stats or isinstance(images, torch.Tensor):
            return
        reason = frames_differ(images, stats)
        if reason is None:
            return
        message = f"these frames do not look like the ones the model was fitted on: {reason}"
        if self.frame_check == "raise":
            raise ValueError(message)
        warnings.warn(message + " (set result.frame_check = 'raise' or 'off')", FrameMismatchWarning, stacklevel=4)

    @torch.no_grad()
    def codes(self, images: Any, batch_size: int = 1024) -> np.ndarray:
        """Stage-1 codes ``y`` ``(N, code_dim)`` of frames (uint8 NHWC or float NCHW)."""
        self._check(images)
        self.autoencoder.eval()
        out = [self.autoencoder.encoder(prepare_images(chunk, self.image_size).to(self.device)).float().cpu()
               for chunk in _chunks(images, batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, int(self.config["code_dim"])), np.float32)

    @torch.no_grad()
    def encode(self, images: Any, batch_size: int = 1024) -> np.ndarray:
        """Learned latents ``(N, n)`` float32 of frames: uint8 ``(N, H, W, 3)`` or float ``(N, 3, H, W)``
        in ``[0, 1]`` (numpy or torch); unit variance on observational frames. Frames of another kind
        (float outside ``[0, 1]``, NaN) raise ``ValueError``; frames unlike the training frames warn
        (see ``frame_check``)."""
        self._check(images)
        module = self.encoder_module().eval()
        out = [module(prepare_images(chunk, self.image_size).to(self.device)).float().cpu()
               for chunk in _chunks(images, batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.n), np.float32)

    @torch.no_grad()
    def decode(self, z: Any, batch_size: int = 1024) -> np.ndarray:
        """Frames uint8 ``(N, S, S, 3)`` (model resolution) of learned latents ``(N, n)``."""
        z = torch.as_tensor(check_latents(z, self.n), dtype=torch.float32)
        module = self.decoder_module().eval()
        out = [module(c.to(self.device)).float().cpu() for c in torch.split(z, batch_size)]
        pixels = torch.cat(out) if out else torch.zeros((0, 3, self.image_size, self.image_size))
        return to_hwc_uint8(pixels)

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
        check_state(state, format=FORMAT, version=FORMAT_VERSION, source=source)
        with state_errors(source, "image CRL model"):
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



def build_readout(config: ImageCRLConfig, n: int, seed: int, *, members: int | None = None,
                  mechanism: str | None = None) -> nn.Module:
    """The read-out module of ``config.route`` (parametric: ``mechanism``, default the config's, "auto"
    meaning linear; ``members``, default ``readout_members``), untrained."""
    if config.route == "parametric":
        mechanism = mechanism or (config.mechanism if config.mechanism != "auto" else "linear")
        return ParametricReadout(config.code_dim, n, config.multinomial_hidden, config.classifier_depth, mechanism,
                                 config.mechanism_hidden, seed,
                                 members=config.readout_members if members is None else members)
    if config.route == "pairs":
        return PairReadout(config.code_dim, n, config.classifier_hidden, config.classifier_depth, seed)
    if config.route == "multinomial":
        return MultinomialReadout(config.code_dim, n, config.multinomial_hidden, config.classifier_depth, seed)
    return StructuredReadout(config.code_dim, n, config.classifier_hidden, config.classifier_depth, seed)


def _build_modules(config: ImageCRLConfig, n: int, seed: int) -> tuple[ConvAutoencoder, nn.Module, LatentDecoder]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ae = ConvAutoencoder(int(config.image_size), config.code_dim, config.channels, config.hidden)
    readout = build_readout(config, n, seed)
    decoder = LatentDecoder(n, config.code_dim, config.classifier_hidden, config.classifier_depth, seed)
    return ae, readout, decoder

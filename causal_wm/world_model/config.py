"""Settings of ``CausalWorldModel.fit``: one dataclass that contains the image CRL stage's, and presets
that are named overrides of its defaults (``causal_wm.config`` explains the layering).

    config = make_config("cpu", {"crl.max_per_regime": 20_000, "mechanism_steps": 800})
    model = CausalWorldModel.fit(dataset, config=config)
    # the same from the shell:
    #   causal-wm fit data.h5 --out m.pt --preset cpu --set crl.max_per_regime=20000 --set mechanism_steps=800
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from causal_wm.config import resolve_config
from causal_wm.crl.images.config import PRESETS as IMAGE_PRESETS
from causal_wm.crl.images.config import ImageCRLConfig

__all__ = ["PRESETS", "WorldModelConfig", "make_config", "preset_name"]


@dataclass
class WorldModelConfig:
    """Settings of ``CausalWorldModel.fit`` (presets in ``PRESETS``; every field can be overridden)."""

    crl: ImageCRLConfig = field(default_factory=ImageCRLConfig)
    """settings of the image CRL stage (``fit_image_crl``); unused for vector data or a given representation"""
    mechanism_steps: int = 600
    """Adam steps of a mechanism MLP (kept only where it predicts far better than the linear mechanism)"""
    mechanism_hidden: int = 32
    """width of a mechanism MLP"""
    mechanisms_from_representation: bool = True
    """start from the latent SCM the representation fitted (the parametric image route): its mechanisms
    (residual distributions refitted) and intervention laws; False: fit the mechanisms anew"""

    def validate(self) -> WorldModelConfig:
        for name in ("mechanism_steps", "mechanism_hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.crl.validate()
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # seconds on one CPU thread: tests and smoke runs
    "debug": {"crl": IMAGE_PRESETS["debug"], "mechanism_steps": 150, "mechanism_hidden": 16},
    # minutes on a CPU
    "cpu": {"crl": IMAGE_PRESETS["cpu"], "mechanism_steps": 600, "mechanism_hidden": 32},
    # the published size, for a GPU
    "full": {"crl": IMAGE_PRESETS["full"], "mechanism_steps": 1500, "mechanism_hidden": 64},
}


def preset_name(preset: str, device_type: str) -> str:
    """``"default"`` is ``"full"`` on CUDA and ``"cpu"`` elsewhere; other names must be presets."""
    if preset == "default":
        return "full" if device_type == "cuda" else "cpu"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose 'default' or one of {sorted(PRESETS)}")
    return preset


def make_config(preset: str = "cpu", overrides: Mapping[str, Any] | None = None) -> WorldModelConfig:
    """The preset's config with ``overrides`` (nested or dotted keys, e.g. ``{"crl.image_size": 32}``)."""
    return resolve_config(WorldModelConfig, PRESETS, preset, overrides).validate()

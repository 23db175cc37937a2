"""Scoring a ``CausalWorldModel`` against a causal scene that knows its ground truth.

    from causal_wm.world_model.scoring import evaluate_world_model, world_model_figures
    metrics = evaluate_world_model(model, env)                   # JSON-able dict
    paths = world_model_figures(model, metrics, env, "out/")     # PNGs

Representation metrics come from ``causal_wm.crl.images.evaluate_image_crl`` (MCC, R^2, SHD after
the MCC matching) on fresh observational frames. Interventional metrics compare, for every entry of
the env's menu (which may hold interventions the data never showed), the latents the model imagines
with the encoded frames of the true SCM under the same intervention: MMD, Gaussian W2, mean error
(``causal_wm.world_model.evaluation``), and the image error of the imagined interventions (MSE
between the mean decoded imagined frame and the mean real frame at the model resolution).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def _scene(env: Any) -> Any:
    scene = getattr(env, "unwrapped", env)
    for name in ("scm", "renderer", "interventions", "graph"):
        if not hasattr(scene, name):
            raise ValueError(f"the env has no {name!r}: scoring needs a causal scene of causal_wm.envs")
    return scene


def _distances(model: Any, imagined: np.ndarray, real: np.ndarray, real_mean: Any, seed: int) -> dict[str, float]:
    """Distances between imagined and real latents, and the mean-frame error of the decoded imagination."""
    from causal_wm.pixels import prepare_images
    from causal_wm.world_model.evaluation import distribution_distances

    out = distribution_distances(imagined, real, seed=seed)
    if real_mean is not None:
        imagined_mean = prepare_images(model.decode(imagined[:256]), model.image_size).mean(0)
        out["image_mse"] = float(((imagined_mean - real_mean) ** 2).mean())
    return out


def intervention_errors(model: Any, env: Any, *, samples: int = 1000, seed: int = 0,
                        actions: list[int] | None = None,
                        others: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Imagined vs real distributions for the env's menu entries ``actions`` (default all).

    The real latents are ``model.encode`` of frames rendered from the true SCM under each entry; the
    image error compares mean frames decoded by ``model``. ``others`` (name -> any model with
    ``sample(num, intervention, seed=...)`` in the same latent space, e.g. a non-causal baseline) are
    scored on the same real samples, under ``row[name]``.
    """
    from causal_wm.pixels import prepare_images

    scene = _scene(env)
    actions = list(range(len(scene.interventions))) if actions is None else list(actions)
    rows = []
    for a in actions:
        iv = scene.interventions[a]
        z_true = scene.scm.sample(samples, iv, seed=seed + 7919 * (a + 1))
        frames = scene.renderer(z_true)
        real = model.encode(frames)
        real_mean = None if model.image_size is None else prepare_images(frames[:256], model.image_size).mean(0)
        row: dict[str, Any] = {"action": a, "intervention": "seeing" if iv is None else iv.label()}
        row.update(_distances(model, model.sample(samples, iv, seed=seed + a), real, real_mean, seed))
        for name, other in (others or {}).items():
            row[name] = _distances(model, other.sample(samples, iv, seed=seed + a), real, real_mean, seed)
        rows.append(row)
    return rows


def evaluate_world_model(model: Any, env: Any, *, frames: int = 2000, samples: int = 1000,
                         seed: int = 0) -> dict[str, Any]:
    """Representation and interventional metrics of ``model`` in the scene ``env`` (see the module)."""
    from causal_wm.crl.images import evaluate_image_crl

    scene = _scene(env)
    if frames < 10 or samples < 10:
        raise ValueError(f"frames and samples must be at least 10, got {frames} and {samples}")
    if scene.n != model.n:
        raise ValueError(f"the scene has {scene.n} latents but the model {model.n}: wrong env or env kwargs")
    z = scene.scm.sample(frames, None, seed=seed)
    x = scene.renderer(z)
    metrics = evaluate_image_crl(model.representation, x, z, np.asarray(scene.graph))
    rows = intervention_errors(model, env, samples=samples, seed=seed)
    metrics["interventions"] = rows
    for key in ("mmd", "gaussian_w2", "mean_error", "image_mse"):
        values = [r[key] for r in rows if r["intervention"] != "seeing" and key in r]
        if values:
            metrics[f"intervention_{key}"] = float(np.mean(values))
    metrics["persistence"] = model.persistence.tolist()
    metrics["calibration"] = {str(k): list(v) for k, v in model.calibration.items()}
    return metrics


def world_model_figures(model: Any, metrics: dict[str, Any], env: Any, folder: str | os.PathLike,
                        stem: str = "world_model", *, max_interventions: int = 6, seed: int = 0,
                        representation_figures: bool = True) -> dict[str, str]:
    """PNGs: the representation figures (MCC matrix, true vs learned graph, traversals,
    reconstructions) and imagined interventions next to real ones (those the data never showed first).
    Returns ``{name: path}``."""
    from causal_wm.crl.images import image_crl_figures
    from causal_wm.pixels import prepare_images, to_hwc_uint8
    from causal_wm.viz import image_grid

    scene = _scene(env)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    if representation_figures:  # False when the caller already drew them for the same representation
        z = scene.scm.sample(8, None, seed=seed + 1)
        paths = image_crl_figures(model.representation, metrics, np.asarray(scene.graph), folder, stem,
                                  names=list(getattr(scene, "node_names", [])) or None, frames=scene.renderer(z))
    entries = [a for a, iv in enumerate(scene.interventions) if iv is not None]
    # interventions the data never showed first: they are what only a causal model can imagine
    seen = set(model.menu or [])
    unseen = [a for a in entries if scene.interventions[a] not in seen]
    rest = [a for a in entries if a not in unseen]

    def spread(items: list[int], k: int) -> list[int]:
        if k <= 0 or not items:
            return []
        positions = np.unique(np.round(np.linspace(0, len(items) - 1, min(k, len(items)))).astype(int))
        return [items[p] for p in positions]

    chosen = spread(unseen, max_interventions)
    chosen += spread(rest, max_interventions - len(chosen))
    rows, labels = [], []
    for a in chosen:
        iv = scene.interventions[a]
        frames = scene.renderer(scene.scm.sample(5, iv, seed=seed + a))
        real = to_hwc_uint8(prepare_images(frames, model.image_size))
        rows.append(np.concatenate([real, model.sample_observations(5, iv, seed=seed + a)]))
        labels.append(iv.label())
    if rows:
        paths["imagined"] = str(folder / f"{stem}_imagined.png")
        image_grid(np.stack(rows), row_labels=labels, split_after=5,
                   col_labels=["real"] * 5 + ["imagined"] * 5,
                   title="real frames under each intervention | frames the model imagines (decoded)",
                   path=paths["imagined"])
    return paths

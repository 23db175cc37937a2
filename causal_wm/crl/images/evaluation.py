"""Scoring an image CRL model against ground truth (benchmarks, demo) and its figures."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from causal_wm.crl.images.result import ImageCRLResult
from causal_wm.pixels import prepare_images, to_hwc_uint8


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


def plain_code_mcc(result: ImageCRLResult, frames: np.ndarray, z_true: np.ndarray) -> dict[str, float]:
    """The baseline without a read-out: the autoencoder's own code reduced to ``n`` principal components,
    scored against the true latents ``(N, n)`` (``mcc_spearman``, ``mcc_pearson``)."""
    from causal_wm.crl.metrics import mcc

    y = result.codes(frames)
    y = y - y.mean(axis=0)
    _, _, vt = np.linalg.svd(y, full_matrices=False)
    pcs = y @ vt[: z_true.shape[1]].T
    return {"mcc_spearman": mcc(z_true, pcs, "spearman").value, "mcc_pearson": mcc(z_true, pcs).value}


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
    true_names = list(names) if names is not None else [f"z{j}" for j in range(len(p))]
    # learned latent p[j] is matched to true latent j
    matched = {int(k): true_names[j] for j, k in enumerate(p)}
    learned_names = [f"z_hat {k} (~{matched[k]})" if k in matched else f"z_hat {k}" for k in range(result.n)]
    plot_matrix(np.asarray(metrics["spearman_matrix"]), row_label="true latent", col_label="learned latent",
                title=f"|Spearman| (MCC {metrics['mcc_spearman']:.3f})", row_names=true_names,
                col_names=learned_names, path=paths["mcc"])
    plot_graphs(true_graph, result.graph[np.ix_(p, p)], names=names, path=paths["graph"])
    values = np.linspace(-2.0, 2.0, 7)
    image_grid(result.traversals(values), row_labels=learned_names, col_labels=[f"{v:+.1f}" for v in values],
               title="each learned latent from -2 to +2, the others at 0, decoded", path=paths["traversals"])
    if frames is not None:
        x = np.asarray(frames)[:8]
        small = to_hwc_uint8(prepare_images(x, result.image_size))
        paths["reconstructions"] = folder / f"{stem}_reconstructions.png"
        image_grid(np.stack([small, result.decode(result.encode(x))]), row_labels=["input", "decoded"],
                   title="decode(encode(x))", path=paths["reconstructions"])
    return {k: str(v) for k, v in paths.items()}

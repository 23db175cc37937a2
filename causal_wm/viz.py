"""Figures people want to look at: causal graphs (true vs learned), correlation matrices and image grids.

All functions draw with matplotlib's Agg backend and either return the figure or save a PNG when
``path`` is given. Graph convention: ``A[i, j] = 1`` iff ``i -> j``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch

from causal_wm.scm.graphs import topological_order, validate_dag


def _finish(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return fig


def graph_layout(adjacency: np.ndarray) -> np.ndarray:
    """Node positions ``(n, 2)``: nodes on a circle in causal order, so edges read clockwise."""
    n = adjacency.shape[0]
    order = topological_order(adjacency)
    angles = np.pi / 2 - 2 * np.pi * np.arange(n) / n
    pos = np.zeros((n, 2))
    pos[order] = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return pos


def draw_graph(adjacency: np.ndarray, ax: plt.Axes, *, names: Sequence[str] | None = None,
               reference: np.ndarray | None = None, pos: np.ndarray | None = None, title: str = "") -> None:
    """Draw a DAG on ``ax``. With ``reference`` (the true graph), edges are coloured: black = correct,
    red = not in the reference (false positive), dashed grey = missing from ``adjacency``."""
    A = validate_dag(adjacency)
    n = A.shape[0]
    names = list(names) if names is not None else [f"z{i}" for i in range(n)]
    pos = graph_layout(reference if reference is not None else A) if pos is None else pos
    edges: list[tuple[int, int, str, str]] = []
    for i, j in zip(*np.nonzero(A), strict=True):
        ok = reference is None or reference[i, j]
        edges.append((int(i), int(j), "black" if ok else "tab:red", "-"))
    if reference is not None:
        for i, j in zip(*np.nonzero(reference), strict=True):
            if not A[i, j]:
                edges.append((int(i), int(j), "0.6", "--"))
    for i, j, color, style in edges:
        ax.add_patch(FancyArrowPatch(pos[i], pos[j], arrowstyle="-|>", mutation_scale=14, color=color,
                                     linestyle=style, lw=1.6, shrinkA=14, shrinkB=14,
                                     connectionstyle="arc3,rad=0.08"))
    ax.scatter(pos[:, 0], pos[:, 1], s=700, c="white", edgecolors="black", zorder=3)
    for k in range(n):
        ax.text(pos[k, 0], pos[k, 1], names[k], ha="center", va="center", fontsize=9, zorder=4)
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.35, 1.35)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title)


def plot_graphs(true_graph: np.ndarray, learned_graph: np.ndarray | None = None, *,
                names: Sequence[str] | None = None, path: str | Path | None = None) -> plt.Figure:
    """True graph, and next to it the learned one coloured against the truth (learned latents must
    already be aligned to the true ones, e.g. by the MCC permutation)."""
    panels = 1 if learned_graph is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4))
    axes = np.atleast_1d(axes)
    pos = graph_layout(true_graph)
    draw_graph(true_graph, axes[0], names=names, pos=pos, title="true graph")
    if learned_graph is not None:
        draw_graph(learned_graph, axes[1], names=names, reference=true_graph, pos=pos,
                   title="learned (red: extra, dashed: missing)")
    return _finish(fig, path)


def plot_matrix(matrix: np.ndarray, *, row_label: str = "true", col_label: str = "learned",
                title: str = "", vmin: float = 0.0, vmax: float = 1.0, path: str | Path | None = None) -> plt.Figure:
    """Heatmap with the value in every cell (e.g. the |correlation| matrix behind MCC)."""
    M = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * M.shape[1], 0.8 + 0.6 * M.shape[0]))
    im = ax.imshow(M, cmap="viridis", vmin=vmin, vmax=vmax)
    for (i, j), v in np.ndenumerate(M):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                color="black" if v > (vmin + vmax) / 2 else "white")
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    ax.set_xticks(range(M.shape[1]))
    ax.set_yticks(range(M.shape[0]))
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _finish(fig, path)


def image_grid(images: np.ndarray, *, rows: int | None = None, row_labels: Sequence[str] | None = None,
               title: str = "", path: str | Path | None = None) -> plt.Figure:
    """Grid of uint8 HWC images ``(R, C, H, W, 3)`` or ``(N, H, W, 3)`` (then ``rows`` splits them)."""
    images = np.asarray(images)
    if images.ndim == 4:
        r = rows or int(np.ceil(np.sqrt(len(images))))
        c = int(np.ceil(len(images) / r))
        pad = np.zeros((r * c - len(images), *images.shape[1:]), dtype=images.dtype)
        images = np.concatenate([images, pad]).reshape(r, c, *images.shape[1:])
    if images.ndim != 5:
        raise ValueError(f"images must be (N, H, W, C) or (R, C, H, W, C), got shape {images.shape}")
    R, C = images.shape[:2]
    fig, axes = plt.subplots(R, C, figsize=(1.1 * C + (1.6 if row_labels else 0.2), 1.1 * R + 0.4), squeeze=False)
    for i in range(R):
        for j in range(C):
            axes[i, j].imshow(images[i, j])
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_curves(curves: dict[str, tuple[Sequence[float], Sequence[float]]], *, xlabel: str, ylabel: str,
                title: str = "", path: str | Path | None = None) -> plt.Figure:
    """Line plot of named ``(x, y)`` curves (learning curves, metric vs sample size)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, (x, y) in curves.items():
        ax.plot(x, y, marker="o", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _finish(fig, path)

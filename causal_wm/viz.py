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
                title: str = "", vmin: float = 0.0, vmax: float = 1.0, row_names: Sequence[str] | None = None,
                col_names: Sequence[str] | None = None, path: str | Path | None = None) -> plt.Figure:
    """Heatmap with the value in every cell (e.g. the |correlation| matrix behind MCC); ``row_names`` and
    ``col_names`` label the ticks (default: indices)."""
    M = np.asarray(matrix, dtype=float)
    wide = max((len(str(c)) for c in col_names), default=0) if col_names is not None else 0
    tall = max((len(str(r)) for r in row_names), default=0) if row_names is not None else 0
    fig, ax = plt.subplots(figsize=(1.4 + 0.07 * tall + 0.65 * M.shape[1], 1.0 + 0.05 * wide + 0.6 * M.shape[0]))
    im = ax.imshow(M, cmap="viridis", vmin=vmin, vmax=vmax)
    for (i, j), v in np.ndenumerate(M):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                color="black" if v > (vmin + vmax) / 2 else "white")
    ax.set_xlabel(col_label)
    ax.set_ylabel(row_label)
    cols = [str(j) for j in range(M.shape[1])] if col_names is None else list(col_names)
    rows = [str(i) for i in range(M.shape[0])] if row_names is None else list(row_names)
    ax.set_xticks(range(M.shape[1]), cols, rotation=0 if wide <= 4 else 45, ha="center" if wide <= 4 else "right",
                  fontsize=8)
    ax.set_yticks(range(M.shape[0]), rows, fontsize=8)
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _finish(fig, path)


def image_grid(images: np.ndarray, *, rows: int | None = None, row_labels: Sequence[str] | None = None,
               col_labels: Sequence[str] | None = None, split_after: int | None = None, title: str = "",
               path: str | Path | None = None) -> plt.Figure:
    """Grid of uint8 HWC images ``(R, C, H, W, 3)`` or ``(N, H, W, 3)`` (then ``rows`` splits them).

    ``col_labels`` title the columns (e.g. the value of a traversal); ``split_after`` leaves a visible
    gap after that many columns (e.g. real frames | imagined frames)."""
    images = np.asarray(images)
    if images.ndim == 4:
        r = rows or int(np.ceil(np.sqrt(len(images))))
        c = int(np.ceil(len(images) / r))
        pad = np.zeros((r * c - len(images), *images.shape[1:]), dtype=images.dtype)
        images = np.concatenate([images, pad]).reshape(r, c, *images.shape[1:])
    if images.ndim != 5:
        raise ValueError(f"images must be (N, H, W, C) or (R, C, H, W, C), got shape {images.shape}")
    R, C = images.shape[:2]
    if col_labels is not None and len(col_labels) != C:
        raise ValueError(f"col_labels needs {C} entries, got {len(col_labels)}")
    if split_after is not None and not 0 < split_after < C:
        raise ValueError(f"split_after must lie in 1..{C - 1}, got {split_after}")
    columns = C + (1 if split_after else 0)
    ratios = [1.0] * columns
    if split_after:
        ratios[split_after] = 0.25
    label_width = 0.0 if not row_labels else 0.3 + 0.07 * max(len(str(s)) for s in row_labels)
    fig, axes = plt.subplots(R, columns, figsize=(1.1 * C + 0.3 + label_width, 1.1 * R + 0.5 + 0.2 * bool(col_labels)),
                             squeeze=False, gridspec_kw={"width_ratios": ratios})
    for i in range(R):
        for col in range(columns):
            ax = axes[i, col]
            if split_after and col == split_after:
                ax.axis("off")
                continue
            j = col - (1 if split_after and col > split_after else 0)
            ax.imshow(images[i, j])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and col_labels is not None:
                ax.set_title(str(col_labels[j]), fontsize=8)
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
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

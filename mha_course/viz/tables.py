"""Pictures of per-head numbers: a layer x head table, a clustered similarity matrix, a 2-D map of
heads, and pruning curves. They take the arrays that `analysis` returns and only draw.

    layer_head_table(result.selectivity, title="selectivity, part of speech")
    layer_head_table(scores, removed=gates == 0)          # pruned heads greyed out
    similarity_matrix(D, order=cluster_order(D), labels=head_labels(6, 12)[0])
    head_map(mds_embedding(D), layers=head_labels(6, 12)[1], labels=head_labels(6, 12)[0])
    pruning_plot(curves)
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from mha_course.viz.heatmap import annotate_cells

__all__ = ["layer_head_table", "probe_panels", "similarity_matrix", "head_map", "pruning_plot"]

REMOVED_COLOUR = "#d9d9d9"


def _table(values, name: str = "table") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty (n_layers, n_heads) array; got shape {arr.shape}")
    return arr


def layer_head_table(table, *, title: str | None = None, ax=None, cmap: str = "viridis",
                     vmin: float | None = None, vmax: float | None = None, annotate: bool = True,
                     fmt: str = ".2f", removed=None, colorbar: bool = True,
                     label: str | None = None) -> Figure:
    """One number per head as a heatmap: rows = layers, columns = heads, value in each cell.

    table (n_layers, n_heads); removed: None or a boolean (n_layers, n_heads), True for heads to
    grey out (e.g. pruned heads); NaN cells are left blank. Returns the Figure.
    """
    T = _table(table)
    n_layers, n_heads = T.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * n_heads + 1.8, 0.5 * n_layers + 1.2),
                             layout="constrained")
    shown = np.ma.masked_invalid(T)
    if removed is not None:
        removed = np.asarray(removed, dtype=bool)
        if removed.shape != T.shape:
            raise ValueError(f"removed must be {T.shape} like the table; got {removed.shape}")
        shown = np.ma.masked_where(removed | ~np.isfinite(T), T)
    colours = plt.get_cmap(cmap).with_extremes(bad=REMOVED_COLOUR if removed is not None else "white")
    image = ax.imshow(shown, cmap=colours, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)])
    ax.set_yticks(range(n_layers), [str(l) for l in range(n_layers)])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if title:
        ax.set_title(title)
    if annotate:
        annotate_cells(ax, image, T, lambda value: format(value, fmt), hide=removed)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label=label)
    return ax.figure


def probe_panels(result, *, suptitle: str | None = None) -> Figure:
    """A `probing.ProbeResult` as three tables side by side: task accuracy, control accuracy
    (both on one 0-1 scale) and selectivity = their difference."""
    fig, axes = plt.subplots(1, 3, figsize=(3 * (0.5 * result.accuracy.shape[1] + 1.8),
                                            0.5 * result.accuracy.shape[0] + 1.5),
                             layout="constrained")
    layer_head_table(result.accuracy, ax=axes[0], vmin=0, vmax=1, title="task accuracy")
    layer_head_table(result.control_accuracy, ax=axes[1], vmin=0, vmax=1,
                     title="control accuracy")
    layer_head_table(result.selectivity, ax=axes[2], cmap="RdBu_r", vmin=-1, vmax=1,
                     title="selectivity")
    fig.suptitle(suptitle or f"probes on each head's output Z_i: {result.task} "
                 f"(chance {result.majority:.2f})")
    return fig


def similarity_matrix(matrix, *, order=None, labels: Sequence[str] | None = None,
                      title: str | None = None, cmap: str = "magma", vmin: float | None = 0.0,
                      vmax: float | None = None, label: str | None = None) -> Figure:
    """A head x head matrix (distance or similarity), rows and columns in `order` (e.g.
    `redundancy.cluster_order`), each tick labelled with its head."""
    M = _table(matrix, "matrix")
    if M.shape[0] != M.shape[1]:
        raise ValueError(f"matrix must be square; got {M.shape}")
    order = np.arange(len(M)) if order is None else np.asarray(order)
    labels = [str(i) for i in range(len(M))] if labels is None else list(labels)
    if len(labels) != len(M) or sorted(order.tolist()) != list(range(len(M))):
        raise ValueError(f"labels ({len(labels)}) and order must cover the {len(M)} heads")
    side = min(12.0, 0.16 * len(M) + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    image = ax.imshow(M[np.ix_(order, order)], cmap=cmap, vmin=vmin, vmax=vmax,
                      interpolation="nearest")
    names = [labels[i] for i in order]
    ax.set_xticks(range(len(M)), names, rotation=90, fontsize=6)
    ax.set_yticks(range(len(M)), names, fontsize=6)
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label=label)
    return fig


def head_map(xy, layers, labels: Sequence[str] | None = None, *, title: str | None = None,
             cmap: str = "viridis") -> Figure:
    """Heads as points on a plane (e.g. `redundancy.mds_embedding`), coloured by layer."""
    xy = np.asarray(xy, dtype=np.float64)
    layers = np.asarray(layers)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(layers) != len(xy):
        raise ValueError(f"xy must be (n_total, 2) with one layer per point; got {xy.shape} "
                         f"and {len(layers)} layers")
    fig, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
    points = ax.scatter(xy[:, 0], xy[:, 1], c=layers, cmap=cmap, s=40, edgecolors="black",
                        linewidths=0.4)
    if labels is not None:
        for (x, y), name in zip(xy, labels):
            ax.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(points, ax=ax, label="layer", ticks=np.unique(layers))
    if title:
        ax.set_title(title)
    return fig


def pruning_plot(curves, *, ax=None, title: str | None = None) -> Figure:
    """A `pruning.PruningCurves`: metric vs share of heads removed, for the importance order,
    the reverse order, and random orders (mean line, +- one standard deviation band)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    x = curves.fraction
    styles = {"importance": ("least important first", "tab:blue", "-"),
              "reverse": ("most important first", "tab:red", "--")}
    for name, (text, colour, line) in styles.items():
        if len(curves.curves.get(name, [])):
            ax.plot(x, curves.mean(name), line, color=colour, marker="o", markersize=3, label=text)
    if len(curves.curves.get("random", [])):
        mean, spread = curves.mean("random"), curves.spread("random")
        ax.plot(x, mean, ":", color="grey", label=f"random order (mean of {len(curves.curves['random'])})")
        ax.fill_between(x, mean - spread, mean + spread, color="grey", alpha=0.25, linewidth=0)
    ax.set_xlabel("share of heads removed")
    ax.set_ylabel(curves.metric)
    ax.set_title(title or f"pruning heads ({curves.ablation} ablation)")
    ax.legend(fontsize=8)
    return ax.figure

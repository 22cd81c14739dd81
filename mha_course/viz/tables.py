"""Pictures of per-head numbers: a layer x head table, a clustered similarity matrix, a 2-D map of
heads, labelled scatters of heads, and pruning curves. They take the arrays that `analysis`
returns and only draw.

    layer_head_table(result.selectivity, title="selectivity, part of speech")
    layer_head_table(scores, removed=gates == 0)          # pruned heads greyed out
    similarity_matrix(D, order=cluster_order(D), labels=head_labels(6, 12)[0])
    head_map(mds_embedding(D), layers=head_labels(6, 12)[1], labels=head_labels(6, 12)[0])
    head_scatter(scores["local"].ravel(), selectivity.ravel(), names, layers=layer_of_head,
                 xlabel="local score", ylabel="selectivity", title="...")
    layer_profile(entropy, ylabel="entropy (nats)", title="...")   # (n_layers, n_heads)
    pruning_plot(curves)

Every scatter has a title and a label on each point, placed so that no two labels overlap
(`labels.place_labels`); layers are told apart by Okabe-Ito colours with a legend.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from matplotlib.lines import Line2D

from mha_course.viz.heatmap import annotate_cells
from mha_course.viz.labels import place_labels
from mha_course.viz.palette import (BLACK, BLUE, DIVERGING_CMAP, GREY, REMOVED, SCORE_CMAP,
                                    SIMILARITY_CMAP, VERMILION, categorical)

__all__ = ["layer_head_table", "probe_panels", "similarity_matrix", "head_map", "head_scatter",
           "layer_profile", "pruning_plot"]

REMOVED_COLOUR = REMOVED


def _table(values, name: str = "table") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty (n_layers, n_heads) array; got shape {arr.shape}")
    return arr


def layer_head_table(table, *, title: str | None = None, ax=None, cmap: str = SCORE_CMAP,
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
    layer_head_table(result.selectivity, ax=axes[2], cmap=DIVERGING_CMAP, vmin=-1, vmax=1,
                     title="selectivity")
    fig.suptitle(suptitle or f"probes on each head's output Z_i: {result.task} "
                 f"(chance {result.majority:.2f})")
    return fig


def similarity_matrix(matrix, *, order=None, labels: Sequence[str] | None = None,
                      title: str | None = None, cmap: str = SIMILARITY_CMAP, vmin: float | None = 0.0,
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


LAYER_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")  # with the colour: never hue alone


def _layer_style(layer: int, n_layers: int) -> tuple[str, str]:
    """(colour, marker) of a layer's points."""
    return categorical(n_layers)[layer], LAYER_MARKERS[layer % len(LAYER_MARKERS)]


def _layer_legend(ax, layers) -> None:
    present = np.unique(layers)
    n_layers = int(present.max()) + 1
    handles = [Line2D([], [], ls="", marker=_layer_style(int(layer), n_layers)[1],
                      color=_layer_style(int(layer), n_layers)[0], markeredgecolor=BLACK,
                      markeredgewidth=0.4, label=f"layer {int(layer)}") for layer in present]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False, handletextpad=0.2)


def head_scatter(x, y, labels: Sequence[str], *, layers=None, title: str,
                 xlabel: str | None = None, ylabel: str | None = None, ax=None,
                 fontsize: float = 7.0, legend: bool = True) -> Figure:
    """Heads as labelled points: head k at (x[k], y[k]), named labels[k], coloured by its layer
    (`layers`, ints; an Okabe-Ito colour and a marker shape per layer, with a legend beside the
    axes). No two labels overlap
    (crowded ones are moved out and joined to their point by a thin grey line). Returns the
    Figure."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    labels = [str(name) for name in labels]
    layers = np.zeros(len(x), dtype=int) if layers is None else np.asarray(layers).ravel()
    if not len(x) == len(y) == len(labels) == len(layers):
        raise ValueError(f"x, y, labels and layers must have one entry per head; got "
                         f"{len(x)}, {len(y)}, {len(labels)} and {len(layers)}")
    if not np.issubdtype(layers.dtype, np.integer):
        raise ValueError(f"layers must be integers (one layer index per head); got {layers.dtype}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 4.5), layout="constrained")
    n_layers = int(layers.max()) + 1 if len(layers) else 0
    for layer in np.unique(layers):
        colour, marker = _layer_style(int(layer), n_layers)
        mine = layers == layer
        ax.scatter(x[mine], y[mine], color=colour, marker=marker, s=36, edgecolors=BLACK,
                   linewidths=0.4, zorder=3)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend and len(np.unique(layers)) > 1:
        _layer_legend(ax, layers)
    ax.margins(0.12)
    place_labels(ax, np.stack([x, y], axis=1), labels, fontsize=fontsize)
    return ax.figure


def head_map(xy, layers, labels: Sequence[str] | None = None, *, title: str | None = None,
             ax=None) -> Figure:
    """Heads as points on a plane (e.g. `redundancy.mds_embedding`): near = similar, coloured by
    layer, each labelled (by default L{layer}H{k}, k counting the heads of that layer in order).
    The axes of an MDS map have no unit, so they carry no ticks."""
    xy = np.asarray(xy, dtype=np.float64)
    layers = np.asarray(layers)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(layers) != len(xy):
        raise ValueError(f"xy must be (n_total, 2) with one layer per point; got {xy.shape} "
                         f"and {len(layers)} layers")
    if labels is None:
        seen: dict[int, int] = {}
        labels = []
        for layer in layers.tolist():
            labels.append(f"L{layer}H{seen.get(layer, 0)}")
            seen[layer] = seen.get(layer, 0) + 1
    fig = head_scatter(xy[:, 0], xy[:, 1], labels, layers=layers, ax=ax, fontsize=6,
                       title=title or "heads on a plane: near = similar attention",
                       xlabel="MDS dimension 1", ylabel="MDS dimension 2")
    fig.axes[0].set_xticks([])
    fig.axes[0].set_yticks([])
    return fig


def layer_profile(table, *, ylabel: str, title: str, ax=None, head_names: bool = True) -> Figure:
    """One number per head, (n_layers, n_heads), as a strip per layer: x = layer (heads spread
    a little sideways), y = the value, each point labelled with its head ("H3"), coloured by
    layer. For trends across layers such as entropy or mean attention distance."""
    T = _table(table)
    n_layers, n_heads = T.shape
    spread = np.linspace(-0.22, 0.22, n_heads) if n_heads > 1 else np.zeros(1)  # (n_heads,)
    x = (np.arange(n_layers)[:, None] + spread[None, :]).ravel()  # (n_layers * n_heads,)
    layers = np.repeat(np.arange(n_layers), n_heads)  # (n_layers * n_heads,)
    names = [f"H{head}" if head_names else "" for _ in range(n_layers) for head in range(n_heads)]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * n_layers + 2.5, 3.6), layout="constrained")
    ax.set_xticks(range(n_layers), [f"layer {layer}" for layer in range(n_layers)])
    return head_scatter(x, T.ravel(), names, layers=layers, ax=ax, ylabel=ylabel, title=title,
                        legend=False)  # the x axis already names the layers


def pruning_plot(curves, *, ax=None, title: str | None = None) -> Figure:
    """A `pruning.PruningCurves`: metric vs share of heads removed, for the importance order,
    the reverse order, and random orders (mean line, +- one standard deviation band)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    x = curves.fraction
    styles = {"importance": ("least important first", BLUE, "-"),  # colour and line style differ
              "reverse": ("most important first", VERMILION, "--")}
    for name, (text, colour, line) in styles.items():
        if len(curves.curves.get(name, [])):
            ax.plot(x, curves.mean(name), line, color=colour, marker="o", markersize=3, label=text)
    if len(curves.curves.get("random", [])):
        mean, spread = curves.mean("random"), curves.spread("random")
        ax.plot(x, mean, ":", color=GREY, label=f"random order (mean of {len(curves.curves['random'])})")
        ax.fill_between(x, mean - spread, mean + spread, color=GREY, alpha=0.25, linewidth=0)
    ax.set_xlabel("share of heads removed")
    ax.set_ylabel(curves.metric)
    ax.set_title(title or f"pruning heads ({curves.ablation} ablation)")
    ax.legend(fontsize=8)
    return ax.figure

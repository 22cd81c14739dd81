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
    head_maps({"[CLS]": mass_cls, "[SEP]": mass_sep}, suptitle="...")  # small maps, one scale
    clark_bars(syntax.clark_rows(report.relations))                     # best head vs position
    layer_trends(real_roles.minilm_layer_profile(cache))              # per-layer means
    selectivity_bars(results, untrained_results)                        # trained vs untrained

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
from mha_course.viz.palette import (
    BLACK,
    BLUE,
    DIVERGING_CMAP,
    GREY,
    LIGHT_GREY,
    MID_GREY,
    ORANGE,
    REMOVED,
    SCORE_CMAP,
    SIMILARITY_CMAP,
    VERMILION,
    categorical,
)

__all__ = ["layer_head_table", "probe_panels", "similarity_matrix", "head_map", "head_scatter",
           "layer_profile", "pruning_plot", "head_maps", "clark_bars", "layer_trends",
           "selectivity_bars"]

REMOVED_COLOUR = REMOVED


def _table(values, name: str = "table") -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty (n_layers, n_heads) array; got shape "
                         f"{arr.shape}")
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
    bad = REMOVED_COLOUR if removed is not None else "white"
    colours = plt.get_cmap(cmap).with_extremes(bad=bad)
    image = ax.imshow(shown, cmap=colours, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(n_heads), [str(h) for h in range(n_heads)])
    ax.set_yticks(range(n_layers), [str(layer) for layer in range(n_layers)])
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
                      title: str | None = None, cmap: str = SIMILARITY_CMAP,
                      vmin: float | None = 0.0, vmax: float | None = None,
                      label: str | None = None) -> Figure:
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
        ax.plot(x, mean, ":", color=GREY,
                label=f"random order (mean of {len(curves.curves['random'])})")
        ax.fill_between(x, mean - spread, mean + spread, color=GREY, alpha=0.25, linewidth=0)
    ax.set_xlabel("share of heads removed")
    ax.set_ylabel(curves.metric)
    ax.set_title(title or f"pruning heads ({curves.ablation} ablation)")
    ax.legend(fontsize=8)
    return ax.figure


def head_maps(maps, *, suptitle: str, label: str = "score", cmap: str = SCORE_CMAP,
              vmin: float = 0.0, vmax: float = 1.0, ncols: int | None = None) -> Figure:
    """Several (n_layers, n_heads) tables as small maps on one colour scale (vmin to vmax), one
    colour bar for all. `maps` is {name: table}; each map's title names its best head and value,
    e.g. "[CLS]: best L1H3 0.93, mean 0.51", or says "no values (NaN)" when the table is all NaN.
    Layers run down (L0 at the top), heads across."""
    maps = {str(name): _table(table, f"maps[{name!r}]") for name, table in maps.items()}
    if not maps:
        raise ValueError("head_maps needs at least one table in maps; got none")
    shapes = {table.shape for table in maps.values()}
    if len(shapes) != 1:
        raise ValueError(f"every table must have the same (n_layers, n_heads) shape; got {shapes}")
    (n_layers, n_heads), = shapes
    ncols = len(maps) if ncols is None else int(ncols)
    nrows = -(-len(maps) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, layout="constrained",
                             figsize=(ncols * (0.28 * n_heads + 1.0),
                                      nrows * (0.3 * n_layers + 1.1)))
    for ax, (name, table) in zip(axes.flat, maps.items()):
        image = ax.imshow(table, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        if np.isnan(table).all():
            ax.set_title(f"{name}: no values (NaN)", fontsize=9, loc="left")
        else:
            layer, head = np.unravel_index(int(np.nanargmax(table)), table.shape)
            ax.set_title(f"{name}: best L{layer}H{head} {table[layer, head]:.2f}, "
                         f"mean {np.nanmean(table):.2f}", fontsize=9, loc="left")
        ax.set_yticks(range(n_layers), [f"L{layer}" for layer in range(n_layers)], fontsize=7)
        ax.set_xticks(range(n_heads), [str(head) for head in range(n_heads)], fontsize=7)
        ax.set(xlabel="head", ylabel="layer")
    for ax in axes.flat[len(maps):]:
        ax.set_axis_off()
    fig.colorbar(image, ax=axes, shrink=0.8, label=label)
    fig.suptitle(suptitle)
    return fig


def clark_bars(rows, *, title: str = "does a head find each arc's other end better than "
               "position alone?") -> Figure:
    """`syntax.clark_rows` as bars, one panel per direction (in the rows' order): for each
    relation, the best head's accuracy (blue, the head named above its bar) next to the best
    fixed offset's (grey). Tick labels read "relation (arcs) / query → / key"."""
    rows = list(rows)
    if not rows:
        raise ValueError("clark_bars needs at least one row of syntax.clark_rows; got none")
    directions = list(dict.fromkeys(row["direction"] for row in rows))
    fig, axes = plt.subplots(len(directions), 1, figsize=(13, 3.3 * len(directions)), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, direction in zip(axes[:, 0], directions):
        these = [row for row in rows if row["direction"] == direction]
        x = np.arange(len(these))
        ax.bar(x - 0.2, [row["accuracy"] for row in these], 0.4, color=BLUE, label="best head")
        ax.bar(x + 0.2, [row["baseline_accuracy"] for row in these], 0.4, color=GREY,
               label="best fixed offset")
        for i, row in enumerate(these):
            ax.text(i - 0.2, row["accuracy"] + 0.02, row["best_head"], ha="center", fontsize=7)
        ax.set_xticks(x, [f"{row['relation']} ({row['n_arcs']})\n{row['query']} →\n{row['key']}"
                          for row in these], fontsize=7)
        ax.set(xlabel="relation (number of arcs): query → key", ylabel="accuracy", ylim=(0, 1.1),
               title=f"{these[0]['direction_words']}: query → key under each bar "
                     "(number of arcs in brackets)")
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    return fig


TREND_PANELS = (("entropy", "entropy (nats)"),
                ("mean_distance", "mean attention distance (pieces)"))


def layer_trends(profile, *, title: str = "layer by layer (mean over the heads)") -> Figure:
    """A layer profile (`real_roles.layer_profile`: each entry (n_layers,)) as three panels:
    the weight on delimiters; entropy and mean attention distance, each with all keys (grey,
    dashed) and over word keys only (blue), so that parked attention can be told apart."""
    needed = ["delimiter"] + [name + suffix for name, _ in TREND_PANELS
                              for suffix in ("", "_words")]
    missing = [name for name in needed if name not in profile]
    if missing:
        raise ValueError(f"profile lacks {missing}; expected the keys of real_roles.layer_profile")
    layers = np.arange(len(profile["delimiter"]))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), layout="constrained")
    axes[0].plot(layers, profile["delimiter"], "o-", color=ORANGE)
    axes[0].set(ylabel="weight on [CLS], [SEP], punctuation", ylim=(0, 1))
    for ax, (name, unit) in zip(axes[1:], TREND_PANELS):
        ax.plot(layers, profile[name], "s--", color=GREY, label="all keys")
        ax.plot(layers, profile[name + "_words"], "o-", color=BLUE, label="word keys only")
        ax.set(ylabel=unit)
        ax.legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(layers, [f"L{layer}" for layer in layers])
        ax.set_xlabel("layer")
    fig.suptitle(title)
    return fig


def selectivity_bars(trained, untrained, *, feature: str = "residual",
                     title: str = "what training adds") -> Figure:
    """Best selectivity per task, trained vs untrained model: for each task of `trained` (a dict
    task -> `probing.ProbeResult`, `untrained` the same for a randomly initialised model), the
    best head's selectivity (plain bars) and the best layer output's (`feature`, hatched)."""
    tasks = list(trained)
    if set(tasks) != set(untrained):
        raise ValueError(f"trained and untrained must probe the same tasks; got {sorted(trained)} "
                         f"and {sorted(untrained)}")
    sources = (("trained", trained), ("untrained", untrained))
    missing = [f"{what} {task!r}" for what, source in sources
               for task in tasks if feature not in source[task].layer_selectivity]
    if missing:
        raise ValueError(f"no layer output {feature!r} was probed for {', '.join(missing)}: probe "
                         f"them with layer_features=({feature!r},)")
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(8, 3.4), layout="constrained")
    for shift, what, source, colour in ((-0.3, "trained", trained, BLUE),
                                        (-0.1, "untrained", untrained, MID_GREY)):
        ax.bar(x + shift, [source[t].selectivity.max() for t in tasks], 0.2, color=colour,
               label=f"best head, {what}")
        ax.bar(x + shift + 0.4, [source[t].layer_selectivity[feature].max() for t in tasks], 0.2,
               color=colour, hatch="//", edgecolor=LIGHT_GREY, label=f"layer output, {what}")
    ax.axhline(0, color=BLACK, lw=0.8)
    ax.set_xticks(x + 0.1, tasks)
    ax.set(xlabel="task", ylabel="selectivity (task − control)",
           ylim=(min(0.0, ax.get_ylim()[0]), 0.8), title=title)
    ax.legend(fontsize=8, ncol=2)
    return fig

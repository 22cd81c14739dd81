"""Interactive panels for the notebooks, built with ipywidgets and inline matplotlib.

Each panel is a small dataclass holding the container (`widget`), its sliders and the `output`
widget that the figure is drawn into; displaying the dataclass displays the container, and tests
drive the sliders directly (`panel.d_k.value = 256`). Every redraw builds a fresh figure and shows
it inside the Output (`interactive_output` clears it first), so the panel works with
`%matplotlib inline` and nothing else. The numbers come from `mha_course.np_attention`; the panels
only sample inputs, call the core and draw.

Every panel has a "Save" button (`viz.panel_tools`) that writes its figure (PNG, SVG) and the
numbers behind it into `exports/` (or the panel's `export_dir`); the head panel also has a
"Text view" that lists each query's strongest keys for screen readers.

The pruning panel of notebook 07 (`pruning_explorer`) draws into an Image widget instead (as the
head explorer does): its curves are measured once, before the panel is built, and a slider move
only renders one figure to PNG.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from mha_course.analysis.heads import row_entropy
from mha_course.np_attention import MHAParams, multi_head_attention, project, softmax
from mha_course.viz.export import save_attention
from mha_course.viz.heatmap import attention_heatmap
from mha_course.viz.palette import BLACK, BLUE, GREY, MID_GREY, VERMILION
from mha_course.viz.panel_tools import (
    SaveButton,
    TextView,
    controls,
    save_button,
    slug,
    text_view,
    write_attention,
    write_figure,
)
from mha_course.viz.projection import projected_tokens
from mha_course.viz.render import figure_png, show_png
from mha_course.viz.tables import layer_head_table, pruning_plot

__all__ = [
    "D_K_CHOICES",
    "ScalingExplorer",
    "scaling_explorer",
    "plot_scaling",
    "scaling_rows",
    "HeadExplorer",
    "head_explorer",
    "head_projections",
    "plot_head",
    "PRUNING_ORDERS",
    "pruned_heads",
    "plot_pruned_heads",
    "PruningExplorer",
    "pruning_explorer",
]

D_K_CHOICES = tuple(2**p for p in range(1, 10))  # 2, 4, ..., 512
_HIST_RANGE = 3.0 * np.sqrt(D_K_CHOICES[-1])  # wide enough for the raw scores at d_k = 512


class _Panel:
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)  # display(panel) shows the container


# ----------------------------------------------------------------------------------------------
# Notebook 01: why divide by sqrt(d_k)


@functools.lru_cache(maxsize=64)  # moving the temperature slider then only redraws
def _random_scores(d_k: int, n_pairs: int, n_keys: int, seed: int):
    """Raw dot products q . k for q, k with independent N(0, 1) entries: n_pairs samples for the
    histogram, and one query against n_keys keys for the softmax row (read-only arrays)."""
    rng = np.random.default_rng([seed, d_k])  # one stream per d_k: same picture every visit
    f32 = np.float32  # half the sampling time of float64, and plenty for a histogram
    q = rng.standard_normal((n_pairs, d_k), dtype=f32)  # (n_pairs, d_k)
    k = rng.standard_normal((n_pairs, d_k), dtype=f32)  # (n_pairs, d_k)
    pairs = np.einsum("pd,pd->p", q, k).astype(np.float64)  # (n_pairs,)
    query = rng.standard_normal(d_k)  # (d_k,)
    keys = rng.standard_normal((n_keys, d_k))  # (n_keys, d_k)
    row = keys @ query  # (n_keys,)
    pairs.flags.writeable = row.flags.writeable = False  # shared through the cache
    return pairs, row


def scaling_rows(d_k: int, temperature: float = 1.0, *, n_pairs: int = 4000, n_keys: int = 10,
                 seed: int = 0) -> np.ndarray:
    """The two softmax rows `plot_scaling` draws, (2, n_keys): softmax(q . k / T) (unscaled)
    and softmax(q . k / (sqrt(d_k) T)) (scaled)."""
    _, row = _random_scores(int(d_k), n_pairs, n_keys, seed)  # (n_keys,)
    return np.stack([softmax(row / temperature),
                     softmax(row / (np.sqrt(d_k) * temperature))])  # (2, n_keys)


def plot_scaling(d_k: int, temperature: float = 1.0, *, n_pairs: int = 4000, n_keys: int = 10,
                 seed: int = 0) -> Figure:
    """Left: histogram of q . k and q . k / sqrt(d_k) for random q, k at this d_k. Right: the
    softmax weights of one query over n_keys keys, softmax(q . k / (sqrt(d_k) T)) next to
    softmax(q . k / T), so the unscaled row can be seen to saturate as d_k grows."""
    pairs, _ = _random_scores(int(d_k), n_pairs, n_keys, seed)  # (n_pairs,)
    scale = np.sqrt(d_k)
    unscaled, scaled = scaling_rows(d_k, temperature, n_pairs=n_pairs, n_keys=n_keys,
                                    seed=seed)  # (n_keys,) each

    fig, (ax_hist, ax_row) = plt.subplots(1, 2, figsize=(10, 3.6))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.14, top=0.9, wspace=0.25)  # fixed
    # spacing: a layout engine (or a tight bounding box) would double the redraw time
    bins = np.linspace(-_HIST_RANGE, _HIST_RANGE, 121)
    # raw: vermilion, hatched; scaled: blue, plain (told apart without colour too)
    ax_hist.hist(pairs, bins=bins, density=True, alpha=0.6, histtype="stepfilled",
                 color=VERMILION, hatch="///", label=f"raw $q\\cdot k$ (var {pairs.var():.1f})")
    ax_hist.hist(pairs / scale, bins=bins, density=True, alpha=0.6,
                 histtype="stepfilled", color=BLUE,
                 label=f"scaled $q\\cdot k/\\sqrt{{d_k}}$ (var {(pairs / scale).var():.2f})")
    ax_hist.set_xlim(-_HIST_RANGE, _HIST_RANGE)
    ax_hist.set_ylim(0, 0.45)  # fixed, so the raw histogram visibly flattens as d_k grows
    ax_hist.set_xlabel("score")
    ax_hist.set_ylabel("density")
    ax_hist.set_title(f"{n_pairs} random pairs $q, k$ at $d_k$ = {d_k}")
    ax_hist.legend(fontsize=8, loc="upper left")

    x = np.arange(n_keys)
    h_unscaled, h_scaled = row_entropy(unscaled), row_entropy(scaled)  # nats
    ax_row.bar(x - 0.2, unscaled, width=0.4, color=VERMILION, hatch="///",
               label=f"unscaled: max {unscaled.max():.2f}, entropy {h_unscaled:.2f}")
    ax_row.bar(x + 0.2, scaled, width=0.4, color=BLUE,
               label=f"scaled: max {scaled.max():.2f}, entropy {h_scaled:.2f}")
    ax_row.axhline(1 / n_keys, color=MID_GREY, lw=0.8, ls=":",
                   label=f"uniform $1/{n_keys}$ (entropy {np.log(n_keys):.2f})")
    ax_row.set_ylim(0, 1.5)  # headroom above weight 1 keeps the legend off the bars
    ax_row.set_yticks(np.linspace(0, 1, 6))
    ax_row.set_xticks(x)
    ax_row.set_xlabel("key $j$")
    ax_row.set_ylabel("weight $a_j$")
    ax_row.set_title(f"one query against {n_keys} keys, temperature $T$ = {temperature:.2g}")
    ax_row.legend(fontsize=8, loc="upper left")
    return fig


@dataclass(eq=False)
class ScalingExplorer(_Panel):
    widget: widgets.VBox
    d_k: widgets.SelectionSlider
    temperature: widgets.FloatLogSlider
    output: widgets.Output
    save: SaveButton


def scaling_explorer(d_k: int = 64, temperature: float = 1.0, *, seed: int = 0,
                     export_dir=None) -> ScalingExplorer:
    """A d_k slider (2 to 512, powers of two) and a temperature slider (0.1 to 10) driving
    `plot_scaling`, and a Save button: the figure, and its two softmax rows as CSV (queries
    "unscaled" and "scaled", keys key0 ...), into `export_dir` (default exports/). Returns the
    panel; display it (last line of a cell) to show it."""
    if d_k not in D_K_CHOICES:
        raise ValueError(f"d_k must be one of {D_K_CHOICES}; got {d_k!r}")
    style = {"description_width": "90px"}
    layout = widgets.Layout(width="420px")
    d_k_slider = widgets.SelectionSlider(options=D_K_CHOICES, value=d_k, description="d_k",
                                         continuous_update=False, style=style, layout=layout)
    temp_slider = widgets.FloatLogSlider(value=temperature, base=10, min=-1, max=1, step=0.05,
                                         description="temperature T", readout_format=".2f",
                                         continuous_update=False, style=style, layout=layout)
    @functools.lru_cache(maxsize=128)  # a slider position seen before comes back at once
    def png(d_k, temperature):
        return figure_png(plot_scaling(d_k, temperature, seed=seed))

    def draw(d_k, temperature):
        show_png(png(d_k, temperature))

    def write(folder):
        d_k, temperature = d_k_slider.value, temp_slider.value
        stem = f"scaling_dk{d_k}_T{temperature:.2f}"
        rows = scaling_rows(d_k, temperature, seed=seed)  # (2, n_keys)
        keys = [f"key{j}" for j in range(rows.shape[1])]
        return [*write_figure(plot_scaling(d_k, temperature, seed=seed), folder, stem),
                save_attention(rows, ["unscaled", "scaled"], folder / f"{stem}.csv",
                               key_tokens=keys)]

    output = widgets.interactive_output(draw, {"d_k": d_k_slider, "temperature": temp_slider})
    save = save_button(write, export_dir)
    box = widgets.VBox([widgets.HBox([d_k_slider, temp_slider]), output, controls(save)])
    return ScalingExplorer(box, d_k_slider, temp_slider, output, save)


# ----------------------------------------------------------------------------------------------
# Notebook 02: one head at a time


def head_projections(X, params: MHAParams) -> tuple[np.ndarray, np.ndarray]:
    """Q_i = X W_i^Q + b_i^Q and K_i = X W_i^K + b_i^K for every head i, from the core's `project`:
    X (n, d_model) -> Q, K (n_heads, n, d_k)."""
    X = np.asarray(X, dtype=np.float64)
    return project(X, params.W_Q, params.b_Q), project(X, params.W_K, params.b_K)


def plot_head(Q_i, K_i, A_i, tokens, head: int, *, vmax: float | None = 1.0) -> Figure:
    """Head i's projected tokens on its principal plane (arrows: each query to its top key)
    next to its heatmap A_i (n, n), coloured from 0 to `vmax` = 1 (vmax=None: to A_i's largest
    weight, and the heatmap's title says "auto-scaled")."""
    fig, (ax_pts, ax_map) = plt.subplots(1, 2, figsize=(10, 4.4),
                                         gridspec_kw={"width_ratios": [1.15, 1]})
    fig.subplots_adjust(left=0.06, right=0.95, bottom=0.17, top=0.92, wspace=0.3)
    projected_tokens(Q_i, K_i, tokens, ax=ax_pts, title=f"head {head}: $Q_{head}$, $K_{head}$",
                     weights=A_i)
    attention_heatmap(A_i, tokens, ax=ax_map, title=f"head {head}: weights $A_{head}$",
                      vmax=vmax, colorbar=True)
    return fig


@dataclass(eq=False)
class HeadExplorer(_Panel):
    widget: widgets.VBox
    head: widgets.IntSlider
    output: widgets.Output
    weights: np.ndarray  # (n_heads, n, n), what the panel shows
    save: SaveButton
    text_view: TextView


def head_explorer(example, params: MHAParams, *, mask=None, head: int = 0,
                  export_dir=None) -> HeadExplorer:
    """A head slider showing head i's queries and keys in 2-D next to its own heatmap, a Save
    button (the figure, and head i's weights as CSV, into `export_dir`, default exports/) and a
    Text view of head i's strongest keys.

    `example` needs `.X` (n, d_model) and `.tokens` (n), as `running_example()` gives. Attention
    runs once here (self-attention, `multi_head_attention`); moving the slider only redraws.
    """
    X = np.asarray(example.X)
    tokens = list(example.tokens)
    weights = multi_head_attention(X, X, params, mask).weights  # (n_heads, n, n)
    Q, K = head_projections(X, params)  # (n_heads, n, d_k) each
    if not 0 <= head < params.n_heads:
        raise ValueError(f"head must lie in [0, {params.n_heads - 1}]; got {head}")
    slider = widgets.IntSlider(value=head, min=0, max=params.n_heads - 1, description="head",
                               continuous_update=False)

    @functools.lru_cache(maxsize=None)  # one picture per head
    def png(head):
        # one colour scale, 0-1, for every head: heads compare
        return figure_png(plot_head(Q[head], K[head], weights[head], tokens, head))

    def draw(head):
        show_png(png(head))

    def write(folder):
        head = slider.value
        stem = f"head{head}_{slug(' '.join(tokens))}"
        return [*write_figure(plot_head(Q[head], K[head], weights[head], tokens, head), folder,
                              stem),
                write_attention(weights[head], tokens, folder, stem)]

    output = widgets.interactive_output(draw, {"head": slider})
    save = save_button(write, export_dir)
    text = text_view(lambda: (weights[slider.value], tokens, f"head {slider.value}"))
    slider.observe(lambda change: text.refresh(), names="value")
    return HeadExplorer(widgets.VBox([slider, output, controls(save, text)]), slider, output,
                        weights, save, text)


# ----------------------------------------------------------------------------------------------
# Notebook 07: remove heads one after another

PRUNING_ORDERS = {"importance": "least important first", "reverse": "most important first",
                  "random": "random order"}


def _step_index(curves, n_removed: int) -> int:
    steps = [int(k) for k in curves.n_removed]
    if n_removed not in steps:
        raise ValueError(f"n_removed must be one of the measured steps {steps}; got {n_removed}")
    return steps.index(n_removed)


def pruned_heads(curves, n_removed: int, shape: tuple[int, int], order: str = "importance",
                 run: int = 0) -> np.ndarray:
    """Boolean `shape` = (n_layers, n_heads): True for the first `n_removed` heads of one removal
    order of a `pruning.PruningCurves` (flat index = layer * n_heads + head); `run` picks one of
    the random orders."""
    if order not in curves.orders:
        raise ValueError(f"order must be one of {sorted(curves.orders)}; got {order!r}")
    flat = np.zeros(curves.n_total, dtype=bool)  # (n_total,)
    flat[np.asarray(curves.orders[order][run])[:n_removed]] = True
    return flat.reshape(shape)  # (n_layers, n_heads)


def plot_pruned_heads(curves, table, n_removed: int, order: str = "importance", *, run: int = 0,
                      label: str = "importance", fmt: str = ".2f") -> Figure:
    """Left: `table` (n_layers, n_heads), one score per head, with the first `n_removed` heads of
    the order greyed out; right: the pruning curves (`viz.tables.pruning_plot`) with the model
    at that point circled. n_removed must be one of curves.n_removed (the measured steps)."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.size != curves.n_total:
        raise ValueError(f"table must be (n_layers, n_heads) with {curves.n_total} heads in all; "
                         f"got shape {table.shape}")
    step = _step_index(curves, n_removed)
    removed = pruned_heads(curves, n_removed, table.shape, order, run)  # (n_layers, n_heads)
    value = float(curves.curves[order][run, step])
    n_layers, n_heads = table.shape
    fig, (ax_table, ax_curve) = plt.subplots(
        1, 2, figsize=(0.5 * n_heads + 7.5, max(3.6, 0.45 * n_layers + 1.6)),
        gridspec_kw={"width_ratios": [0.5 * n_heads + 1.5, 5.0]})
    # a fixed layout instead of a layout engine: it redraws faster, and a slider must feel quick
    fig.subplots_adjust(left=0.06, right=0.97, bottom=0.16, top=0.86, wspace=0.25)
    finite = table[np.isfinite(table)]
    title = f"{n_removed} of {curves.n_total} heads removed ({PRUNING_ORDERS[order]})"
    layer_head_table(table, ax=ax_table, removed=removed, fmt=fmt, label=label, title=title,
                     vmin=float(finite.min()), vmax=float(finite.max()))  # fixed: colours stay put
    pruning_plot(curves, ax=ax_curve)
    if order == "random":  # the one random run whose heads are greyed out, not only the mean
        ax_curve.plot(curves.fraction, curves.curves["random"][run], color=GREY, lw=0.8)
    ax_curve.plot([curves.fraction[step]], [value], "o", ms=12, color=BLACK, mfc="none", mew=1.5)
    ax_curve.set_title(f"{curves.metric} with {n_removed} heads removed: {value:.3f}")
    return fig


@dataclass(eq=False)
class PruningExplorer(_Panel):
    widget: widgets.VBox
    n_removed: widgets.SelectionSlider
    order: widgets.ToggleButtons
    image: widgets.Image  # the rendered figure (PNG)
    curves: object  # pruning.PruningCurves, measured before the panel was built
    table: np.ndarray  # (n_layers, n_heads), the score drawn in each head's cell
    label: str = "importance"
    save: SaveButton | None = None
    _cache: dict = field(default_factory=dict)  # (order, n_removed) -> PNG bytes

    def figure(self) -> Figure:
        """The figure for the current controls (what the Image shows)."""
        return plot_pruned_heads(self.curves, self.table, self.n_removed.value, self.order.value,
                                 label=self.label)

    def redraw(self) -> None:
        key = (self.order.value, self.n_removed.value)
        if key not in self._cache:  # each picture is rendered once; going back is instant
            self._cache[key] = figure_png(self.figure())
        self.image.value = self._cache[key]

    def write(self, folder) -> list[Path]:
        """The figure (PNG, SVG) and an NPZ of what it shows: `table` (n_layers, n_heads),
        `removed` (same shape, bool), `n_removed`, `order` and the metric `value` there."""
        order, n_removed = self.order.value, self.n_removed.value
        stem = f"pruning_{order}_{n_removed}-removed"
        path = Path(folder) / f"{stem}.npz"
        figures = write_figure(self.figure(), folder, stem)  # creates the folder
        value = self.curves.curves[order][0, _step_index(self.curves, n_removed)]
        np.savez(path, table=self.table, order=order, n_removed=n_removed, value=value,
                 removed=pruned_heads(self.curves, n_removed, self.table.shape, order))
        return [*figures, path]


def pruning_explorer(curves, table, *, n_removed: int = 0, order: str = "importance",
                     label: str = "importance", export_dir=None) -> PruningExplorer:
    """A slider over the number of removed heads (the steps at which `curves`, a
    `pruning.PruningCurves`, was measured) and a choice of removal order. Each move redraws
    `plot_pruned_heads`: the heads removed so far greyed out in the layer x head `table`, and
    the metric at that point on the curves. Nothing is measured here; display the panel (last
    line of a cell) to show it. Its Save button writes `PruningExplorer.write` into `export_dir`
    (default exports/)."""
    if order not in PRUNING_ORDERS or len(curves.curves.get(order, [])) == 0:
        raise ValueError(f"order must be one of {list(PRUNING_ORDERS)} with a measured curve; "
                         f"got {order!r}")
    table = np.asarray(table, dtype=np.float64)
    _step_index(curves, n_removed)  # refuses a step that was not measured
    options = [(text, name) for name, text in PRUNING_ORDERS.items()
               if len(curves.curves.get(name, []))]
    panel = PruningExplorer(
        widget=None,
        n_removed=widgets.SelectionSlider(options=[int(k) for k in curves.n_removed],
                                          value=int(n_removed), description="heads removed",
                                          continuous_update=False,
                                          style={"description_width": "100px"},
                                          layout=widgets.Layout(width="460px")),
        order=widgets.ToggleButtons(options=options, value=order, description="order",
                                    tooltips=[f"remove the {text}" for text, _ in options]),
        image=widgets.Image(format="png"),
        curves=curves, table=table, label=label)
    panel.save = save_button(panel.write, export_dir)
    panel.widget = widgets.VBox([widgets.HBox([panel.n_removed, panel.order]), panel.image,
                                 controls(panel.save)])
    for control in (panel.n_removed, panel.order):
        control.observe(lambda change: panel.redraw(), names="value")
    panel.redraw()
    return panel

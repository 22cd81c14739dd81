"""Pictures of a causal model's circuits (notebook 09): the phase change during training
(`phase_change_plot`), a pair of heads on one sequence (`pair_heatmaps`), what removing each
layer-0 head costs (`ablation_bars`), a head's QK and OV circuits as heatmaps
(`circuit_heatmap`, `plot_head_circuits`) and a panel that picks any head (`circuit_explorer`).

Views only draw: they take reports, attention arrays and the weights (`model.weights()`, NumPy)
and never run a model. The circuits are products of weights, computed with
`mha_course.analysis.circuits`. Attention is drawn on the fixed 0-1 scale; circuits are signed
scores, drawn with the diverging map centred on 0 and scaled to the largest |entry| (the title
says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import ipywidgets as widgets
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mha_course.analysis import circuits
from mha_course.viz.heatmap import attention_heatmap
from mha_course.viz.palette import (
    BLUE,
    DIVERGING_CMAP,
    LIGHT_GREY,
    MID_GREY,
    ORANGE,
    SKY_BLUE,
    VERMILION,
)
from mha_course.viz.panel_tools import SaveButton, controls, save_button, write_figure
from mha_course.viz.render import figure_png

__all__ = ["phase_change_plot", "pair_heatmaps", "ablation_bars", "circuit_heatmap",
           "plot_head_circuits", "head_circuits", "CircuitExplorer", "circuit_explorer",
           "CIRCUIT_SCALE"]

CIRCUIT_SCALE = "colour: ± largest |entry|"  # what a circuit's title says about its scale
_RUN_STYLES = ((BLUE, "-", "o"), (ORANGE, "--", "s"), (VERMILION, "-.", "D"))  # one per run
_WEIGHT_NAMES = ("W_E", "W_pos", "W_U", "W_Q", "W_K", "W_V", "W_O")


def _history(report: Mapping, name: str) -> list:
    history = list(report.get("history", []))
    if not history or "best" not in history[0]:
        raise ValueError(f"run {name!r} has no scored history: train it with "
                         "experiments.induction_training.train(..., log_every=25)")
    return history


def phase_change_plot(runs: Mapping[str, Mapping], *, threshold: float = 0.7) -> Figure:
    """Training reports side by side, one line style per run (`runs`: {label: report} as
    `experiments.induction_training.train(..., log_every=N)` returns them): the training loss,
    the best prefix-matching (solid) and previous-token (dotted) scores, and the
    in-context-learning score (late minus early held-out loss), against the training step."""
    if not runs:
        raise ValueError("runs is empty: give {label: report}, e.g. {'2 layers': report}")
    if len(runs) > len(_RUN_STYLES):
        raise ValueError(f"at most {len(_RUN_STYLES)} runs fit one figure; got {len(runs)}")
    fig, (ax_loss, ax_score, ax_icl) = plt.subplots(1, 3, figsize=(14, 3.9), layout="constrained")
    for (name, report), (colour, style, marker) in zip(runs.items(), _RUN_STYLES):
        history = _history(report, name)
        loss = np.asarray(report["loss_history"], dtype=float)  # (n_logged, 2): step, loss
        ax_loss.plot(loss[:, 0], loss[:, 1], color=colour, ls=style, lw=1.2, label=name)
        steps = [h["step"] for h in history]
        for role, dash, text in (("prefix_matching", style, "prefix-matching"),
                                 ("previous_token", ":", "previous-token")):
            ax_score.plot(steps, [h["best"][role]["score"] for h in history], color=colour,
                          ls=dash, marker=marker, ms=3, label=f"{name}: {text}")
        ax_icl.plot(steps, [h["in_context_learning"] for h in history], color=colour, ls=style,
                    marker=marker, ms=3, label=name)
    ax_score.axhline(threshold, color=MID_GREY, ls=":", lw=1)
    ax_icl.axhline(0.0, color=MID_GREY, lw=1)
    ax_loss.set(xlabel="training step", ylabel="training loss (nats)",
                title="next-token loss")
    ax_score.set(xlabel="training step", ylabel="best head's score", ylim=(0, 1.02),
                 title=f"best heads (dotted line: {threshold:g})")
    ax_icl.set(xlabel="training step", ylabel="late - early loss (nats)",
               title="in-context learning (lower = more)")
    for ax in (ax_loss, ax_icl):
        ax.legend(fontsize=8)
    ax_score.legend(fontsize=7, loc="upper left")
    return fig


def pair_heatmaps(attention, tokens: Sequence[str], heads: Sequence[tuple[int, int]], *,
                  titles: Sequence[str] | None = None) -> Figure:
    """The attention of the heads `heads` [(layer, head), ...] on one sequence, side by side,
    on the fixed 0-1 scale. attention (n_layers, n_heads, n, n) as `model.attention(tokens)`."""
    A = np.asarray(attention, dtype=float)
    if A.ndim != 4 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"attention must be (n_layers, n_heads, n, n); got shape {A.shape}")
    heads = [tuple(h) for h in heads]
    bad = [h for h in heads if not (0 <= h[0] < A.shape[0] and 0 <= h[1] < A.shape[1])]
    if not heads or bad:
        raise ValueError(f"heads must be (layer, head) pairs within {A.shape[:2]}; got {heads}")
    titles = titles or [f"L{layer}H{head}" for layer, head in heads]
    if len(titles) != len(heads):
        raise ValueError(f"one title per head: {len(heads)} heads, {len(titles)} titles")
    n = A.shape[-1]
    side = 0.17 * n + 1.5
    fig, axes = plt.subplots(1, len(heads), figsize=(side * len(heads) + 1.0, side + 0.4),
                             layout="constrained", squeeze=False)
    for k, ((layer, head), ax, title) in enumerate(zip(heads, axes[0], titles)):
        attention_heatmap(A[layer, head], tokens, ax=ax, title=title, vmax=1.0,
                          colorbar=k == len(heads) - 1, ylabel="query" if k == 0 else None)
        ax.tick_params(labelsize=6)
    return fig


def ablation_bars(ablation: Mapping) -> Figure:
    """`experiments.induction_training.head_ablation`'s result: the last layer's prefix-matching
    scores (one bar per head) and the in-context-learning score, intact and with each head of
    the ablated layer removed."""
    prefix = np.asarray(ablation["prefix_matching"], dtype=float)  # (1 + n_heads, n_heads)
    icl = np.asarray(ablation["in_context_learning"], dtype=float)  # (1 + n_heads,)
    layer = ablation["layer"]
    labels = ["intact" if r is None else f"L{layer}H{r} removed" for r in ablation["removed"]]
    if prefix.ndim != 2 or prefix.shape[0] != len(labels) or icl.shape != (len(labels),):
        raise ValueError("ablation must hold one row of prefix-matching scores and one "
                         f"in-context-learning score per removal ({len(labels)}); got shapes "
                         f"{prefix.shape}, {icl.shape}")
    x = np.arange(len(labels))  # (1 + n_heads,)
    width = 0.8 / prefix.shape[1]
    fig, (ax_p, ax_i) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    styles = ((BLUE, ""), (SKY_BLUE, "//"), (ORANGE, ".."), (VERMILION, "xx"))
    for h in range(prefix.shape[1]):
        colour, hatch = styles[h % len(styles)]
        ax_p.bar(x + (h - (prefix.shape[1] - 1) / 2) * width, prefix[:, h], width,
                 color=colour, hatch=hatch, label=f"last layer, head {h}")
    ax_i.bar(x, icl, 0.5, color=BLUE)
    ax_i.axhline(0.0, color=MID_GREY, lw=1)
    ax_p.set(ylabel="prefix-matching score", ylim=(0, 1.02),
             title=f"last layer's induction pattern, each layer-{layer} head removed")
    ax_i.set(ylabel="late - early loss (nats)", title="in-context learning (lower = more)")
    for ax in (ax_p, ax_i):
        ax.set_xticks(x, labels)
    ax_p.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def circuit_heatmap(matrix, *, ax: Axes | None = None, title: str = "", xlabel: str = "key",
                    ylabel: str = "query", hide_above_diagonal: bool = False) -> Axes:
    """A circuit (rows, cols) as a heatmap, diverging map centred on 0, scaled to the largest
    |entry| (the title says so); `hide_above_diagonal` greys out the entries a causal mask
    never uses (key after query). Returns the Axes."""
    M = np.asarray(matrix.full() if isinstance(matrix, circuits.FactoredMatrix) else matrix,
                   dtype=float)
    if M.ndim != 2 or M.size == 0 or not np.isfinite(M).all():
        raise ValueError(f"a circuit must be a finite (rows, cols) matrix; got shape {M.shape}")
    if hide_above_diagonal:
        M = np.where(np.triu(np.ones(M.shape, dtype=bool), k=1), np.nan, M)  # (rows, cols)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.4), layout="constrained")
    limit = float(np.nanmax(np.abs(M))) or 1.0
    cmap = matplotlib.colormaps[DIVERGING_CMAP].with_extremes(bad=LIGHT_GREY)
    image = ax.imshow(M, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title}\n({CIRCUIT_SCALE})" if title
           else CIRCUIT_SCALE)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="score")
    return ax


def _check_weights(weights: Mapping) -> tuple[int, int]:
    missing = [k for k in _WEIGHT_NAMES if k not in weights]
    if missing:
        raise ValueError(f"weights lacks {missing}: pass model.weights() of the induction model")
    shape = np.shape(weights["W_Q"])
    if len(shape) != 4:
        raise ValueError(f"weights['W_Q'] must be (n_layers, n_heads, d_model, d_head); got "
                         f"shape {shape}")
    return shape[0], shape[1]


def head_circuits(weights: Mapping, layer: int, head: int) -> dict[str, np.ndarray]:
    """The three circuits `plot_head_circuits` draws, as `analysis.circuits.FactoredMatrix`:
    positional_qk (n_ctx, n_ctx), token_qk (vocab, vocab) and ov (vocab, vocab)."""
    W_Q, W_K = weights["W_Q"][layer, head], weights["W_K"][layer, head]
    return {"positional_qk": circuits.qk_circuit(weights["W_pos"], W_Q, W_K),
            "token_qk": circuits.qk_circuit(weights["W_E"], W_Q, W_K),
            "ov": circuits.ov_circuit(weights["W_E"], weights["W_V"][layer, head],
                                      weights["W_O"][layer, head], weights["W_U"])}


def plot_head_circuits(weights: Mapping, layer: int, head: int,
                       scores: Mapping | None = None) -> Figure:
    """One head's circuits: the positional QK circuit W_pos W_Q W_K^T W_pos^T (query position x
    key position; a previous-token head is bright just below the diagonal), the token QK
    circuit W_E W_Q W_K^T W_E^T and the OV circuit W_E W_V W_O W_U (attended token x raised
    logit; a copying head has a bright diagonal), with the head's OV copying score, its
    diagonal dominance and, from `scores` ({name: (n_layers, n_heads)}), its pattern scores."""
    n_layers, n_heads = _check_weights(weights)
    if not (0 <= layer < n_layers and 0 <= head < n_heads):
        raise ValueError(f"need 0 <= layer < {n_layers} and 0 <= head < {n_heads}; got "
                         f"layer={layer}, head={head}")
    shown = head_circuits(weights, layer, head)
    ov = shown["ov"]  # (vocab, vocab)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.0), layout="constrained")
    circuit_heatmap(shown["positional_qk"], ax=axes[0],
                    title="positional QK circuit", xlabel="key position",
                    ylabel="query position", hide_above_diagonal=True)
    circuit_heatmap(shown["token_qk"], ax=axes[1],
                    title="token QK circuit", xlabel="key token", ylabel="query token")
    circuit_heatmap(ov, ax=axes[2], title="OV circuit", xlabel="logit raised (token)",
                    ylabel="attended token")
    parts = [f"OV copying {circuits.ov_copying_score(ov):.2f}",
             f"diagonal dominance {circuits.diagonal_dominance(ov):.2f}"]
    for name, table in (scores or {}).items():
        parts.append(f"{name.replace('_', '-')} {float(np.asarray(table)[layer, head]):.2f}")
    fig.suptitle(f"L{layer}H{head}: " + " · ".join(parts))
    return fig


class _Panel:
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)  # display(panel) shows the container


@dataclass(eq=False)
class CircuitExplorer(_Panel):
    widget: widgets.VBox
    head: widgets.SelectionSlider  # value (layer, head)
    image: widgets.Image  # the rendered figure (PNG)
    weights: Mapping
    scores: Mapping | None = None
    save: SaveButton | None = None
    _cache: dict = field(default_factory=dict)  # (layer, head) -> PNG bytes

    def figure(self) -> Figure:
        """The figure for the selected head (what the Image shows)."""
        layer, head = self.head.value
        return plot_head_circuits(self.weights, layer, head, self.scores)

    def redraw(self) -> None:
        if self.head.value not in self._cache:  # each head is rendered once
            self._cache[self.head.value] = figure_png(self.figure())
        self.image.value = self._cache[self.head.value]

    def write(self, folder) -> list[Path]:
        """The figure (PNG, SVG) and the head's three circuits (`head_circuits`) as one NPZ."""
        layer, head = self.head.value
        stem = f"circuits_L{layer}H{head}"
        figures = write_figure(self.figure(), folder, stem)  # creates the folder
        path = Path(folder) / f"{stem}.npz"
        np.savez(path, **{name: matrix.full() for name, matrix in
                          head_circuits(self.weights, layer, head).items()})
        return [*figures, path]


def circuit_explorer(weights: Mapping, scores: Mapping | None = None, *, layer: int = 0,
                     head: int = 0, export_dir=None) -> CircuitExplorer:
    """A slider over every head (L0H0, L0H1, ..., by layer) that redraws `plot_head_circuits`
    for the chosen head. weights: `model.weights()`; scores: {name: (n_layers, n_heads)}.
    Nothing runs a model here; display the panel (last line of a cell) to show it. Its Save
    button writes `CircuitExplorer.write` into `export_dir` (default exports/)."""
    n_layers, n_heads = _check_weights(weights)
    options = [(f"L{a}H{b}", (a, b)) for a in range(n_layers) for b in range(n_heads)]
    if (layer, head) not in [value for _, value in options]:
        raise ValueError(f"need 0 <= layer < {n_layers} and 0 <= head < {n_heads}; got "
                         f"layer={layer}, head={head}")
    panel = CircuitExplorer(
        widget=None,
        head=widgets.SelectionSlider(options=options, value=(layer, head), description="head",
                                     continuous_update=False,
                                     layout=widgets.Layout(width="420px")),
        image=widgets.Image(format="png"), weights=weights, scores=scores)
    panel.save = save_button(panel.write, export_dir)
    panel.widget = widgets.VBox([panel.head, panel.image, controls(panel.save)])
    panel.head.observe(lambda change: panel.redraw(), names="value")
    panel.redraw()
    return panel

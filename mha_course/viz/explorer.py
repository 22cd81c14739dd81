"""The head explorer: one panel to look at any head of any model on any sentence.

Layer and head sliders, a sentence drop-down and a text box for your own sentence, a threshold
slider for the head view, and a toggle between three views: one head's heatmap, its head view
(lines between the words) and the grid of every head. The panel is model-agnostic: it takes a
function `attend(text) -> (tokens, weights (n_layers, n_heads, n, n))`, so the toy model and MiniLM
plug into the same panel. Attention runs once per sentence (cached); moving a slider only redraws.

Speed is part of the lesson (a slider that lags is a slider nobody moves): the figure is rendered
once to a PNG at screen resolution and sent as an Image widget, and the grid is the single-image
`head_mosaic` rather than one Axes per head. `bench/explorer.py` measures the redraw time.

Under the figure, a "Save" button writes the view shown (PNG, SVG) and its weights (the selected
head's as CSV; in the grid, every head's as NPZ) into `exports/`, and a "Text view" checkbox
lists each query's three strongest keys of the selected head (`viz.panel_tools`).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from mha_course.viz.head_view import head_view
from mha_course.viz.heatmap import attention_heatmap, head_mosaic, head_mosaic_cells
from mha_course.viz.palette import HIGHLIGHT, VERMILION
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
from mha_course.viz.render import SCREEN_DPI, figure_png, pixels_png
from mha_course.viz.widgets import _Panel

__all__ = ["Explorer", "explore", "VIEWS"]

AttendFn = Callable[[str], tuple[Sequence[str], np.ndarray]]
VIEWS = ("heatmap", "head view", "grid")
_FRAME = (np.array(to_rgba(HIGHLIGHT)) * 255).round().astype(np.uint8)  # the selected head's frame


@dataclass(eq=False)
class Explorer(_Panel):
    widget: widgets.VBox
    sentence: widgets.Dropdown
    text: widgets.Text
    layer: widgets.IntSlider
    head: widgets.IntSlider
    threshold: widgets.FloatSlider
    view: widgets.ToggleButtons
    message: widgets.HTML
    image: widgets.Image  # the rendered figure (PNG)
    attend: AttendFn
    head_labels: np.ndarray | None = None  # (n_layers, n_heads) strings, e.g. "syntactic 0.97"
    tokens: list[str] = field(default_factory=list)
    weights: np.ndarray | None = None  # (n_layers, n_heads, n, n) of the sentence shown
    save: SaveButton | None = None
    text_view: TextView | None = None
    _cache: dict = field(default_factory=dict)
    _quiet: bool = False
    _heatmap: tuple | None = None  # (tokens, figure) kept between redraws: only its image changes
    _mosaic: tuple | None = None  # (weights, rgba pixels, frame boxes) of the grid, drawn once

    def title(self, layer: int, head: int) -> str:
        label = "" if self.head_labels is None else f" {self.head_labels[layer][head]}"
        return f"L{layer}H{head}{label}"

    def show(self, text: str) -> bool:
        """Run the model on `text` (or reuse the cached run) and redraw; False if it was refused."""
        text = text.strip()
        if text not in self._cache:
            try:
                tokens, weights = self.attend(text)
            except ValueError as error:  # e.g. a word outside the toy vocabulary
                self.message.value = (f"<span style='color:{VERMILION}'>"
                                      f"{html.escape(str(error))}</span>")
                return False
            weights = np.asarray(weights)
            if weights.ndim != 4 or weights.shape[2:] != (len(tokens), len(tokens)):
                raise ValueError(f"attend() must return weights (n_layers, n_heads, n, n) for its "
                                 f"{len(tokens)} tokens; got shape {weights.shape}")
            self._cache[text] = (list(tokens), weights)
        self.tokens, self.weights = self._cache[text]
        self.message.value = f"{len(self.tokens)} tokens"
        n_layers, n_heads = self.weights.shape[:2]
        self._quiet = True  # new slider ranges may clamp a value: draw once, after both are set
        try:
            self.layer.max, self.head.max = n_layers - 1, n_heads - 1
        finally:
            self._quiet = False
        self.redraw()
        return True

    def figure(self) -> Figure:
        """The figure for the current controls (what `redraw` shows)."""
        layer, head, A = self.layer.value, self.head.value, self.weights
        if self.view.value == "heatmap":
            if self._heatmap is None or self._heatmap[0] != self.tokens:
                n = len(self.tokens)
                # a Figure outside pyplot: the inline backend would otherwise show the kept
                # figure once more, frozen, under the panel at the end of the cell
                fig = Figure(figsize=(0.32 * n + 2.2, 0.32 * n + 1.6))
                ax = fig.add_subplot()
                fig.subplots_adjust(left=0.2, bottom=0.2, right=0.95, top=0.92)
                attention_heatmap(A[layer, head], self.tokens, ax=ax, vmax=1.0, colorbar=True)
                self._heatmap = (self.tokens, fig)
            fig = self._heatmap[1]
            ax = fig.axes[0]
            ax.images[0].set_data(A[layer, head])  # same tokens: new weights, same axes and labels
            ax.set_title(self.title(layer, head))
            return fig
        if self.view.value == "head view":
            return head_view(A[layer], self.tokens, heads=[head], labels=[self.title(layer, head)],
                             threshold=self.threshold.value)
        return head_mosaic(A, tokens=self.tokens, titles=self._titles(), selected=(layer, head))

    def shown(self) -> tuple[np.ndarray, list[str], str]:
        """The selected head's weights (n, n), the tokens and a caption: the text view's input."""
        layer, head = self.layer.value, self.head.value
        return (self.weights[layer, head], self.tokens,
                f"{self.title(layer, head)} on '{' '.join(self.tokens)}'")

    def write(self, folder) -> list[Path]:
        """The figure shown now (PNG, SVG) and its weights: the selected head's (n, n) as CSV,
        or in the grid every head's (n_layers, n_heads, n, n) as NPZ. Returns the paths."""
        layer, head, view = self.layer.value, self.head.value, self.view.value
        stem = f"L{layer}H{head}_{slug(view)}_{slug(' '.join(self.tokens))}"
        fig = self.figure()
        kept = self._heatmap is not None and fig is self._heatmap[1]  # redrawn in place later
        A = self.weights if view == "grid" else self.weights[layer, head]
        return [*write_figure(fig, folder, stem, close=not kept),
                write_attention(A, self.tokens, folder, stem)]

    def _titles(self) -> list[str]:
        n_layers, n_heads = self.weights.shape[:2]
        return [self.title(layer, h) for layer in range(n_layers) for h in range(n_heads)]

    def _grid_png(self) -> bytes:
        """The grid with the selected head framed. The mosaic (72 titles for MiniLM) is rendered
        once per sentence; a slider move only paints the frame onto a copy of its pixels, which
        is several times faster than drawing the figure again."""
        if self._mosaic is None or self._mosaic[0] is not self.weights:
            fig = head_mosaic(self.weights, tokens=self.tokens, titles=self._titles())
            fig.set_dpi(SCREEN_DPI)
            fig.canvas.draw()
            rgba = np.asarray(fig.canvas.buffer_rgba()).copy()  # (height, width, 4)
            ax, height = fig.axes[0], rgba.shape[0]
            boxes = {}
            for (layer, head), (c, r, n_k, n_q) in head_mosaic_cells(self.weights).items():
                (x0, y0), (x1, y1) = ax.transData.transform([(c - 0.5, r - 0.5),
                                                             (c + n_k - 0.5, r + n_q - 0.5)])
                boxes[layer, head] = (int(round(min(x0, x1))), int(round(height - max(y0, y1))),
                                      int(round(max(x0, x1))), int(round(height - min(y0, y1))))
            plt.close(fig)
            self._mosaic = (self.weights, rgba, boxes)
        _, rgba, boxes = self._mosaic
        x0, y0, x1, y1 = boxes[self.layer.value, self.head.value]
        pixels = rgba.copy()  # (height, width, 4)
        t = 2  # frame thickness in pixels, drawn just outside the tile
        frame = _FRAME.astype(pixels.dtype)
        top, bottom = max(y0 - t, 0), min(y1 + t, pixels.shape[0])
        left, right = max(x0 - t, 0), min(x1 + t, pixels.shape[1])
        pixels[top:y0, left:right] = frame
        pixels[y1:bottom, left:right] = frame
        pixels[top:bottom, left:x0] = frame
        pixels[top:bottom, x1:right] = frame
        return pixels_png(pixels)

    def redraw(self) -> None:
        if self.weights is None or self._quiet:
            return
        self.threshold.disabled = self.view.value != "head view"
        if self.text_view is not None:
            self.text_view.refresh()
        if self.view.value == "grid":
            self.image.value = self._grid_png()
            return
        fig = self.figure()
        kept = self._heatmap is not None and fig is self._heatmap[1]  # redrawn in place next time
        self.image.value = figure_png(fig, close=not kept)


def explore(attend: AttendFn, sentences: Sequence[str], *, head_labels=None, layer: int = 0,
            head: int = 0, threshold: float = 0.1, view: str = "heatmap",
            export_dir=None) -> Explorer:
    """Build the explorer panel; display it (last line of a cell) to show it.

    attend: text -> (tokens, weights (n_layers, n_heads, n, n)); it raises ValueError with a
    message for the reader when it cannot handle a text (the panel shows the message).
    sentences: the drop-down's choices (the first is shown first).
    head_labels: optional (n_layers, n_heads) strings added to each head's title, e.g. its role.
    export_dir: where Save writes (default: exports/ under the working directory at the click).
    """
    if not sentences:
        raise ValueError("explore needs at least one sentence for the drop-down")
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}; got {view!r}")
    slider = dict(continuous_update=False, style={"description_width": "70px"},
                  layout=widgets.Layout(width="300px"))
    panel = Explorer(
        widget=None,
        sentence=widgets.Dropdown(options=list(sentences), value=sentences[0],
                                  description="sentence", layout=widgets.Layout(width="620px"),
                                  style={"description_width": "70px"}),
        text=widgets.Text(placeholder="type your own sentence and press Enter",
                          description="your own", continuous_update=False,
                          layout=widgets.Layout(width="620px"),
                          style={"description_width": "70px"}),
        layer=widgets.IntSlider(value=layer, min=0, max=max(layer, 1), description="layer",
                                **slider),
        head=widgets.IntSlider(value=head, min=0, max=max(head, 1), description="head", **slider),
        threshold=widgets.FloatSlider(value=threshold, min=0.0, max=0.9, step=0.05,
                                      description="threshold", **slider),
        view=widgets.ToggleButtons(options=VIEWS, value=view, description="view",
                                   tooltips=["one head's weights as a heatmap",
                                             "one head's weights as lines between the words",
                                             "every head of every layer, the selected one "
                                             "framed"]),
        message=widgets.HTML(),
        image=widgets.Image(format="png",  # at its natural size
                            layout=widgets.Layout(align_self="flex-start")),
        attend=attend,
        head_labels=None if head_labels is None else np.asarray(head_labels, dtype=object),
    )
    panel.save = save_button(panel.write, export_dir)
    panel.text_view = text_view(panel.shown)
    panel.widget = widgets.VBox([
        panel.sentence, panel.text, widgets.HBox([panel.layer, panel.head]),
        widgets.HBox([panel.threshold, panel.view]), panel.message, panel.image,
        controls(panel.save, panel.text_view),
    ])
    panel.sentence.observe(lambda change: panel.show(change["new"]), names="value")
    panel.text.observe(lambda change: change["new"].strip() and panel.show(change["new"]),
                       names="value")
    for control in (panel.layer, panel.head, panel.threshold, panel.view):
        control.observe(lambda change: panel.redraw(), names="value")
    panel.show(sentences[0])
    return panel

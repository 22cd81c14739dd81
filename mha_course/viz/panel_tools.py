"""What every panel shares: a "Save" button that writes what the panel shows, and a "Text view"
that spells out each query's strongest keys for readers who cannot see the heatmap.

    save = save_button(write, folder=None)      # write(folder) -> the paths it wrote
    text = text_view(lambda: (A, tokens, "L1H3: the fox ..."))   # what is shown now

Save writes into `exports/` under the kernel's working directory (the notebook's folder) unless
the panel was given another folder, and prints the paths in its own Output. The figure goes out
through `viz.export.save` (PNG at print resolution, SVG), one head's weights through
`export.save_attention` (CSV with "position:token" labels); several heads go to one NPZ laid out
as `save_attention` lays out its NPZ, so `export.load_attention` reads both back.

Every control is a standard, focusable widget with a description and a tooltip (keyboard users
tab to it; screen readers read the description): the browser tests find these two by their
descriptions, "Save" and "Text view".
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from mha_course.viz.export import position_labels, save, save_attention

__all__ = ["EXPORT_DIR", "TOP_K", "SaveButton", "save_button", "write_figure", "write_attention",
           "slug", "top_keys", "text_table", "TextView", "text_view", "controls"]

EXPORT_DIR = "exports"  # next to the notebook: the kernel's working directory
TOP_K = 3  # keys listed per query in the text view
_SLUG_LENGTH = 48  # characters of a sentence kept in a file name


def slug(text: str) -> str:
    """A file-name-safe short form: "[CLS] The fox ." -> "cls-the-fox"."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:_SLUG_LENGTH].strip("-")


def write_figure(fig: Figure, folder: Path, stem: str, *, close: bool = True) -> list[Path]:
    """`fig` as folder/stem.png and folder/stem.svg; closed afterwards unless `close` is False
    (a figure the panel keeps and redraws in place)."""
    paths = [save(fig, Path(folder) / f"{stem}.{fmt}") for fmt in ("png", "svg")]
    if close:
        plt.close(fig)
    return paths


def write_attention(A, tokens: Sequence[str], folder: Path, stem: str) -> Path:
    """One head's A (n_q, n_k) as folder/stem.csv; a stack (..., n, n) of several heads or
    layers as folder/stem.npz (both through `export.save_attention`)."""
    suffix = "csv" if np.ndim(A) == 2 else "npz"
    return save_attention(A, tokens, Path(folder) / f"{stem}.{suffix}")


@dataclass(eq=False)
class SaveButton:
    button: widgets.Button
    output: widgets.Output  # the paths written, or why nothing was
    write: Callable[[Path], list[Path]]  # folder -> paths written
    folder: Path | None = None  # None: exports/ under the working directory at the click

    def directory(self) -> Path:
        return Path.cwd() / EXPORT_DIR if self.folder is None else Path(self.folder)

    def save(self) -> list[Path]:
        """Write what the panel shows now; print the paths in the Output and return them."""
        self.output.outputs = ()
        self.output.append_stdout(f"saving into {self.directory()} ...\n")  # a grid takes seconds
        self.button.disabled = True  # one save at a time
        try:
            paths = self.write(self.directory())
        except OSError as error:  # a read-only or missing drive: tell the reader, keep the panel
            self.output.outputs = ()
            self.output.append_stderr(f"nothing saved: {error}\n")
            return []
        finally:
            self.button.disabled = False
        self.output.outputs = ()
        self.output.append_stdout("saved:\n" + "".join(f"  {path}\n" for path in paths))
        return paths


def save_button(write: Callable[[Path], list[Path]], folder=None) -> SaveButton:
    """A "Save" button calling `write(folder)` and printing the paths it returns."""
    button = widgets.Button(description="Save", icon="download",
                            tooltip=f"Save the figure (PNG, SVG) and its data (CSV or NPZ) in "
                                    f"{folder or EXPORT_DIR + '/'}")
    control = SaveButton(button, widgets.Output(), write,
                         None if folder is None else Path(folder))
    button.on_click(lambda _: control.save())
    return control


def top_keys(A, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """Each query's k strongest keys, strongest first (ties: the earlier key): indices and
    weights, each (n_q, min(k, n_k))."""
    A = np.asarray(A, dtype=float)
    if A.ndim != 2:
        raise ValueError(f"attention must be one head's (n_q, n_k) weights; got shape {A.shape}")
    order = np.argsort(-A, axis=-1, kind="stable")[:, :k]  # (n_q, k)
    return order, np.take_along_axis(A, order, axis=-1)  # (n_q, k), (n_q, k)


def text_table(A, tokens: Sequence[str], caption: str, *, k: int = TOP_K) -> str:
    """An HTML table, one row per query: its k strongest keys as "position:token" with their
    weights (3 decimals). Header cells carry scope, the caption says what is shown."""
    keys, weights = top_keys(A, k)  # (n_q, k) each
    labels = position_labels(tokens)
    if len(labels) != np.shape(A)[-1]:
        raise ValueError(f"attention {np.shape(A)} needs {np.shape(A)[-1]} tokens; got "
                         f"{len(labels)}")
    head = "".join(f"<th scope='col'>key {r + 1}</th><th scope='col'>weight {r + 1}</th>"
                   for r in range(keys.shape[1]))
    rows = []
    for query, (row_keys, row_weights) in enumerate(zip(keys, weights)):
        cells = "".join(f"<td>{html.escape(labels[j])}</td><td>{weight:.3f}</td>"
                        for j, weight in zip(row_keys, row_weights))
        rows.append(f"<tr><th scope='row'>{html.escape(labels[query])}</th>{cells}</tr>")
    return (f"<table><caption>{html.escape(caption)}: each query's {keys.shape[1]} strongest "
            f"keys</caption><thead><tr><th scope='col'>query</th>{head}</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


@dataclass(eq=False)
class TextView:
    toggle: widgets.Checkbox
    html: widgets.HTML  # the table while the toggle is on, empty otherwise
    shown: Callable[[], tuple]  # () -> (A (n_q, n_k), tokens, caption) of what is shown now

    def refresh(self) -> None:
        self.html.value = text_table(*self.shown()) if self.toggle.value else ""


def text_view(shown: Callable[[], tuple], *, value: bool = False) -> TextView:
    """A "Text view" checkbox that shows `text_table` of `shown()`; call `refresh` when the
    panel redraws."""
    toggle = widgets.Checkbox(value=value, description="Text view", indent=False,
                              tooltip="Show each query's three strongest keys and their weights "
                                      "as a table")
    view = TextView(toggle, widgets.HTML(), shown)
    toggle.observe(lambda change: view.refresh(), names="value")
    view.refresh()
    return view


def controls(save: SaveButton, text: TextView | None = None) -> widgets.VBox:
    """The Save button (and the Text view toggle) in a row, with their outputs below."""
    row = [save.button] if text is None else [save.button, text.toggle]
    return widgets.VBox([widgets.HBox(row), save.output, *([] if text is None else [text.html])])

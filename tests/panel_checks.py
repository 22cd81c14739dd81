"""Checks shared by the panel tests (tests/test_widgets.py, tests/test_explorer.py,
tests/test_panel_tools.py): what Save wrote reads back, the text view lists the true top keys,
and every control can be reached and used from the keyboard."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import ipywidgets as widgets
import matplotlib.image as mpimg
import numpy as np

# Standard widgets a keyboard reaches with Tab and works with arrows, Enter or Space.
KEYBOARD_CONTROLS = (widgets.IntSlider, widgets.FloatSlider, widgets.FloatLogSlider,
                     widgets.SelectionSlider, widgets.Dropdown, widgets.ToggleButtons,
                     widgets.Checkbox, widgets.Text, widgets.Button)
# Widgets that only show something: nothing to operate.
DISPLAYS = (widgets.Output, widgets.HTML, widgets.Image, widgets.Label)


def descendants(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from descendants(child)


def keyboard_problems(widget) -> list[str]:
    """Every control a standard keyboard-operable widget with a description; empty if so."""
    problems = []
    for item in descendants(widget):
        if isinstance(item, widgets.Box) or isinstance(item, DISPLAYS):
            continue
        name = type(item).__name__
        if not isinstance(item, KEYBOARD_CONTROLS):
            problems.append(f"{name} is not a standard keyboard control")
        elif not (item.description or "").strip():
            problems.append(f"{name} {getattr(item, 'value', '')!r} has no description")
        elif item.disabled and isinstance(item, widgets.Button):
            problems.append(f"button {item.description!r} is disabled")
    return problems


def find(widget, cls, description: str):
    """The one descendant of class `cls` with this description (how the browser tests find it)."""
    found = [item for item in descendants(widget)
             if isinstance(item, cls) and item.description == description]
    assert len(found) == 1, f"expected one {cls.__name__} {description!r}, found {len(found)}"
    return found[0]


def printed(output: widgets.Output) -> str:
    return "".join(o.get("text", "") for o in output.outputs)


def check_saved(paths, folder: Path) -> dict[str, Path]:
    """Each path exists in `folder` and printed; the PNG decodes to a drawn image, the SVG parses
    as an SVG document. Returns the paths by suffix."""
    paths = [Path(p) for p in paths]
    by_suffix = {p.suffix: p for p in paths}
    assert len(by_suffix) == len(paths), f"two files of one kind: {paths}"
    for path in paths:
        assert path.exists() and path.parent == Path(folder), path
    pixels = mpimg.imread(by_suffix[".png"])  # (height, width, 3 or 4)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100
    assert pixels[..., :3].std() > 0.05, "the saved PNG is blank"
    assert ET.parse(by_suffix[".svg"]).getroot().tag.endswith("svg")
    return by_suffix


class _Table(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self._cell)
            self._cell = None


def table_rows(html: str) -> list[list[str]]:
    """The cells of each row of an HTML table, the header row first."""
    parser = _Table()
    parser.feed(html)
    return parser.rows


def check_text_view(html: str, A: np.ndarray, tokens) -> None:
    """One row per query of A (n_q, n_k): "i:token", then its three strongest keys by argsort
    as "j:token" with A[i, j] to 3 decimals."""
    header, *rows = table_rows(html)
    assert header[0] == "query" and len(header) == 1 + 2 * min(3, A.shape[1])
    assert len(rows) == A.shape[0]
    for i, row in enumerate(rows):
        assert row[0] == f"{i}:{tokens[i]}"
        top = np.argsort(A[i])[::-1][:3]  # the oracle: strongest first (no ties in the tests)
        assert row[1::2] == [f"{j}:{tokens[j]}" for j in top], (i, row)
        np.testing.assert_allclose([float(x) for x in row[2::2]], A[i, top], atol=5e-4)
    assert re.search(r"<caption>[^<]+</caption>", html), "the table needs a caption"

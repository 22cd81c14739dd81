"""One PNG renderer for the panels: a figure, or an RGBA pixel array, as PNG bytes at screen
resolution.

The panels (`widgets`, `explorer`) send PNG bytes to an Image widget or an Output instead of
letting the inline backend show the figure: the inline backend re-lays the figure out with a tight
bounding box at a higher dpi, and a slider panel must redraw quickly to be worth moving
(bench/browser.py, bench/explorer.py measure it).
"""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["SCREEN_DPI", "figure_png", "pixels_png", "show_png"]

SCREEN_DPI = 80  # screen resolution of the rendered panels


def figure_png(fig: Figure, *, close: bool = True) -> bytes:
    """The figure as PNG bytes at SCREEN_DPI; closed afterwards unless `close` is False (a figure
    that a panel keeps and redraws)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=SCREEN_DPI)
    if close:
        plt.close(fig)
    return buffer.getvalue()


def pixels_png(pixels: np.ndarray) -> bytes:
    """An image (height, width, 3 or 4), e.g. a rendered canvas's RGBA buffer, as PNG bytes."""
    buffer = io.BytesIO()
    plt.imsave(buffer, pixels, format="png")
    return buffer.getvalue()


def show_png(png: bytes) -> None:
    """Display PNG bytes in the current output (inside a panel: its Output widget)."""
    from IPython.display import Image, display  # only inside a running notebook

    display(Image(data=png, format="png"))

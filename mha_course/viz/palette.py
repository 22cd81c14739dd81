"""The course's colours: one home, colour-blind-safe.

- Categories (heads, roles, orders, models, layers): the Okabe-Ito palette (Okabe & Ito 2008),
  which stays distinguishable under the common colour-vision deficiencies. Never tell two things
  apart by red vs green alone: pair colour with a line style or a marker where it matters.
- Magnitudes (attention weights, scores): sequential maps whose lightness rises evenly from one
  end to the other (`ATTENTION_CMAP`, `SCORE_CMAP`, `SIMILARITY_CMAP`), so that equal steps in
  value look like equal steps in colour; signed quantities (selectivity, differences): a
  diverging map centred on 0 (`DIVERGING_CMAP`), purple to orange, with no red-green axis.
- Attention weights are drawn on a fixed 0-1 scale with a colour bar (`ATTENTION_RANGE`), unless
  the figure's title says that it is auto-scaled (`AUTO_SCALED`).

Every view in `mha_course.viz` takes its colours from here; `tests/test_palette.py` renders each
view and checks that it does.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.colors import ListedColormap

__all__ = ["OKABE_ITO", "BLACK", "GREY", "ORANGE", "SKY_BLUE", "GREEN", "YELLOW", "BLUE",
           "VERMILION", "PURPLE", "ATTENTION_CMAP", "SCORE_CMAP", "DIVERGING_CMAP",
           "SIMILARITY_CMAP", "SEQUENTIAL_CMAPS", "CMAPS", "ATTENTION_RANGE", "AUTO_SCALED",
           "categorical", "HIGHLIGHT", "LIGHT_GREY", "MID_GREY", "DARK_GREY", "REMOVED",
           "lightness"]

# Okabe-Ito, in their published order (black first)
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
GREEN = "#009E73"  # bluish green
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILION = "#D55E00"
PURPLE = "#CC79A7"  # reddish purple
GREY = "#999999"
OKABE_ITO = (ORANGE, SKY_BLUE, GREEN, BLUE, VERMILION, PURPLE, YELLOW, BLACK)

HIGHLIGHT = VERMILION  # a frame around the selected cell or head
LIGHT_GREY = "0.85"  # axis lines through the origin, gaps
MID_GREY = "0.6"  # reference lines, baselines, leader lines from a label to its point
DARK_GREY = "0.35"  # secondary text
REMOVED = LIGHT_GREY  # a pruned head's cell in a layer x head table


def lightness(rgb) -> np.ndarray:
    """CIELAB lightness L* (0 = black, 100 = white) of sRGB colours rgb (..., 3 or 4) in [0, 1]."""
    rgb = np.asarray(rgb, dtype=np.float64)[..., :3]
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    Y = linear @ np.array([0.2126, 0.7152, 0.0722])  # relative luminance, (...,)
    f = np.where(Y > 216 / 24389, np.cbrt(Y), (24389 / 27 * Y + 16) / 116)
    return 116 * f - 16


def _even_lightness(name: str, base: str, n: int = 256) -> ListedColormap:
    """`base` resampled so that its lightness L* falls in equal steps: ColorBrewer's "Blues"
    keeps its white-to-dark-blue hues (white = no weight) but darkens twice as fast at one end
    as at the other; resampled, equal steps in weight look like equal steps in colour."""
    fine = matplotlib.colormaps[base].resampled(4096)  # registered maps have 256 steps only
    t = np.linspace(0.0, 1.0, 4096)
    colours = fine(t)  # (4096, 4)
    L = lightness(colours)  # (4096,) decreasing for "Blues"
    targets = np.linspace(L[0], L[-1], n)  # (n,) equal steps
    where = np.interp(-targets, -L, t)  # L falls monotonically: invert it
    return ListedColormap(fine(where), name=name)


ATTENTION_CMAP = "course_attention"  # attention weights: white (0) to dark blue (1), even L*
if ATTENTION_CMAP not in matplotlib.colormaps:
    matplotlib.colormaps.register(_even_lightness(ATTENTION_CMAP, "Blues"))
SCORE_CMAP = "viridis"  # role scores, accuracies, any magnitude that is not attention
SIMILARITY_CMAP = "cividis"  # distance and similarity matrices
DIVERGING_CMAP = "PuOr_r"  # signed values centred on 0 (no red-green)
SEQUENTIAL_CMAPS = (ATTENTION_CMAP, SCORE_CMAP, SIMILARITY_CMAP)
CMAPS = SEQUENTIAL_CMAPS + (DIVERGING_CMAP,)

ATTENTION_RANGE = (0.0, 1.0)  # the fixed colour scale of attention weights
AUTO_SCALED = "auto-scaled"  # the words a title carries when its colours are not on 0-1


def categorical(n: int) -> list[str]:
    """`n` colour-blind-safe colours for categories, cycling through Okabe-Ito (no black first)."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int; got {n!r}")
    return [OKABE_ITO[i % len(OKABE_ITO)] for i in range(n)]

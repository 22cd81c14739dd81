"""The course's colours: one home, colour-blind-safe.

- Categories (heads, roles, orders, models): the Okabe-Ito palette (Okabe & Ito 2008), which stays
  distinguishable under the common colour-vision deficiencies. Never tell two things apart by red
  vs green alone: pair colour with a line style or a marker where it matters.
- Magnitudes (attention weights, scores): perceptually uniform sequential maps (`ATTENTION_CMAP`,
  `SCORE_CMAP`); signed quantities (selectivity, differences): a diverging map centred on 0
  (`DIVERGING_CMAP`).

Every view in `mha_course.viz` takes its colours from here; a test checks that it does.
"""

from __future__ import annotations

__all__ = ["OKABE_ITO", "BLACK", "GREY", "ORANGE", "SKY_BLUE", "GREEN", "YELLOW", "BLUE",
           "VERMILION", "PURPLE", "ATTENTION_CMAP", "SCORE_CMAP", "DIVERGING_CMAP",
           "SIMILARITY_CMAP", "categorical", "HIGHLIGHT"]

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

ATTENTION_CMAP = "Blues"  # attention weights, on a fixed 0-1 scale unless a title says otherwise
SCORE_CMAP = "viridis"  # role scores, accuracies, any magnitude that is not attention
DIVERGING_CMAP = "PuOr_r"  # signed values centred on 0 (no red-green)
SIMILARITY_CMAP = "cividis"  # distance and similarity matrices


def categorical(n: int) -> list[str]:
    """`n` colour-blind-safe colours for categories, cycling through Okabe-Ito (no black first)."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int; got {n!r}")
    return [OKABE_ITO[i % len(OKABE_ITO)] for i in range(n)]

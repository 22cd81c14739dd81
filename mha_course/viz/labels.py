"""Point labels that do not overlap: a greedy placement for scatter plots.

Each label tries positions around its point, nearest first (eight directions on rings of growing
radius), and takes the first whose box overlaps no label placed before it, no point and does not
leave the axes. Crowded points are placed first, while there is still room around them. A label
pushed beyond the first ring gets a thin grey leader line to its point. If no position is free,
the label takes the one with the least overlap.

Positions are computed in display pixels for the axes as they are laid out when this runs, so
call it once the figure's content (titles, legends, colour bars) is in place.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.text import Annotation, Text

from mha_course.viz.palette import BLACK, MID_GREY

__all__ = ["place_labels"]

_RINGS = (4.0, 9.0, 15.0, 22.0, 30.0, 40.0)  # radii in points, nearest first
_DIRECTIONS = ((1, 0.6), (1, -0.6), (-1, 0.6), (-1, -0.6), (0, 1), (0, -1), (1, 0), (-1, 0))
_PAD = 1.0  # pixels kept free around each label


def _box(anchor, size, direction, pad=_PAD):
    """(x0, y0, x1, y1) of a label of `size` (w, h) whose nearest corner or edge sits at
    `anchor` on the side given by `direction` (dx, dy signs)."""
    (x, y), (w, h), (dx, dy) = anchor, size, direction
    x0 = x if dx > 0 else (x - w if dx < 0 else x - w / 2)
    y0 = y if dy > 0 else (y - h if dy < 0 else y - h / 2)
    return np.array([x0 - pad, y0 - pad, x0 + w + pad, y0 + h + pad])


def _overlap(box, boxes) -> float:
    """Total area of `box` covered by `boxes` (k, 4)."""
    if len(boxes) == 0:
        return 0.0
    boxes = np.asarray(boxes)
    w = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    h = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    return float((np.clip(w, 0, None) * np.clip(h, 0, None)).sum())


def place_labels(ax, xy, texts: Sequence[str], *, colours: Sequence[str] | str = BLACK,
                 fontsize: float = 8.0, marker_size: float = 6.0, obstacles=None
                 ) -> list[Annotation]:
    """Label the points xy (n, 2) (data coordinates) of `ax` with `texts`, without overlaps.

    colours: one colour for all labels or one per label. marker_size: the markers' size in
    points (each point is kept free as a square of that side). obstacles: more points (m, 2) in
    data coordinates to keep free (e.g. a second scatter). Returns the annotations.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)  # (n, 2)
    texts = [str(t) for t in texts]
    if len(texts) != len(xy):
        raise ValueError(f"got {len(texts)} labels for {len(xy)} points")
    colours = [colours] * len(xy) if isinstance(colours, str) else list(colours)
    if len(colours) != len(xy):
        raise ValueError(f"got {len(colours)} colours for {len(xy)} labels")
    fig = ax.figure
    fig.draw_without_rendering()  # lay the figure out: axes positions and limits are final
    ax.set_xlim(ax.get_xlim())  # labels must not move the limits they were placed in
    ax.set_ylim(ax.get_ylim())
    px = fig.dpi / 72.0  # pixels per point
    to_pixels = ax.transData.transform
    points = to_pixels(xy) if len(xy) else np.zeros((0, 2))  # (n, 2)
    others = np.asarray(obstacles, dtype=np.float64).reshape(-1, 2) if obstacles is not None \
        else np.zeros((0, 2))
    free = np.concatenate([points, to_pixels(others) if len(others) else np.zeros((0, 2))])
    half = marker_size * px / 2
    placed = [np.array([x - half, y - half, x + half, y + half]) for x, y in free]
    legend = ax.get_legend()
    if legend is not None:  # keep the legend readable too
        extent = legend.get_window_extent()
        placed.append(np.array([extent.x0, extent.y0, extent.x1, extent.y1]))
    frame = ax.get_window_extent()

    sizes = []
    for text in texts:  # measure each label once, at its font size
        probe = ax.text(0, 0, text, fontsize=fontsize)
        extent = Text.get_window_extent(probe)
        sizes.append((extent.width, extent.height))
        probe.remove()

    crowd = np.array([(np.hypot(*(points - p).T) < 30 * px).sum() for p in points])  # (n,)
    order = np.argsort(-crowd, kind="stable")  # crowded points first
    annotations: list[Annotation | None] = [None] * len(xy)
    for i in order:
        best = None
        for ring, radius in enumerate(_RINGS):
            for dx, dy in _DIRECTIONS:
                norm = np.hypot(dx, dy)
                offset = (radius * dx / norm, radius * dy / norm)  # points
                anchor = points[i] + np.array(offset) * px
                box = _box(anchor, sizes[i], (dx, dy))
                cost = _overlap(box, placed)  # its own point included: it stays visible
                inside = (box[0] >= frame.x0 and box[2] <= frame.x1 and box[1] >= frame.y0
                          and box[3] <= frame.y1)
                cost += 0.0 if inside else 1e6
                if best is None or cost < best[0]:
                    best = (cost, ring, offset, (dx, dy), box)
                if cost == 0:
                    break
            if best[0] == 0:
                break
        _, ring, offset, (dx, dy), box = best
        placed.append(box)
        leader = dict(arrowstyle="-", color=MID_GREY, lw=0.5, shrinkA=0, shrinkB=2) \
            if ring > 1 else None
        annotation = ax.annotate(
            texts[i], xy[i], xytext=offset, textcoords="offset points", fontsize=fontsize,
            color=colours[i], ha="left" if dx > 0 else ("right" if dx < 0 else "center"),
            va="bottom" if dy > 0 else ("top" if dy < 0 else "center"), arrowprops=leader,
            annotation_clip=False)
        annotation.set_in_layout(False)  # a label must not shrink the axes it was placed in
        annotations[i] = annotation
    return annotations

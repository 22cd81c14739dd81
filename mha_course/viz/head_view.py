"""Head view: attention drawn as lines between the words, one colour and line style per head.

Two layouts. "columns" puts the sentence twice, queries on the left and keys on the right, and
draws a line from each query to every key it attends to (the layout of bertviz's head view).
"arcs" puts the sentence on one line and draws an arc above it from each query to its keys, which
is how the course's running example is usually illustrated: a local head gives short arcs between
neighbours, a verb -> subject head one long arc, a punctuation head a fan into the full stop.
An arc is symmetric, so its key end carries a dot, and the legend's title says so.

Line width is proportional to the weight; weights below `threshold` are not drawn. `drawn_arcs`
lists exactly what a call draws, so that a text can quote the figure.

A delimiter head puts nearly all of every word's weight on one token: its fan of thick arcs would
cover every other head. When several heads share the view, heads whose label names a role in
`background_roles` (default: the delimiter) are therefore drawn underneath the others, at half the
line width; the legend marks them "(underneath, thinner)". Pass `background_roles=()` to draw
every head alike, or leave a head out with `heads=` to hide it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import PathPatch
from matplotlib.path import Path

from mha_course.viz import palette
from mha_course.viz.heatmap import _as_weights, _check_tokens

__all__ = ["ROLE_STYLES", "KEY_NOTE", "head_view", "drawn_arcs"]

# One (colour, line style) per head role (analysis.heads.ROLES), Okabe-Ito colours; no two roles
# share a colour or a line style, so the style alone tells them apart in grey print too. The
# running example's illustration: local blue dashed, verb -> subject pink solid, related nouns
# green dotted.
ROLE_STYLES: dict[str, tuple[str, object]] = {
    "local": (palette.BLUE, (0, (5, 3))),  # dashed
    "syntactic": (palette.PURPLE, "-"),  # solid (Okabe-Ito's reddish purple: the pink)
    "coreference": (palette.GREEN, (0, (1, 2))),  # dotted
    "delimiter": (palette.ORANGE, (0, (6, 2, 1, 2))),  # dash-dot
    "rare_word": (palette.VERMILION, (0, (3, 1, 1, 1, 1, 1))),  # dash-dot-dot
    "rare_target": (palette.SKY_BLUE, (0, (9, 3))),  # long dashes
    "identity": (palette.BLACK, (0, (2, 1))),  # short dashes
    "duplicate": (palette.GREY, (0, (4, 1, 1, 1, 1, 1, 1, 1))),  # dash and three dots
}
_FALLBACK = [(palette.VERMILION, "-"), (palette.SKY_BLUE, (0, (5, 3))),
             (palette.BLACK, (0, (1, 2))), (palette.ORANGE, (0, (6, 2, 1, 2)))]
KEY_NOTE = "each line: query → key (dot at the key)"
BACKGROUND_WIDTH = 0.5  # line-width factor of the heads drawn underneath


def _role(label: str) -> str | None:
    """The first role of ROLE_STYLES that the label names ("rare word" and "rare-word" count)."""
    text = label.lower().replace("-", "_").replace(" ", "_")
    return next((r for r in ROLE_STYLES if r in text), None)


def _styles(labels: Sequence[str], styles: Mapping[str, tuple[str, object]] | None):
    """A (colour, linestyle) per head: the given mapping, then the role of the label, then a
    cycle."""
    out = []
    for i, label in enumerate(labels):
        role = _role(label)
        if styles and label in styles:
            out.append(styles[label])
        elif role is not None:
            out.append(ROLE_STYLES[role])
        else:
            out.append(_FALLBACK[i % len(_FALLBACK)])
    return out


def _check_view(weights, tokens, heads, labels, threshold):
    """The validated (A (n_heads, n, n), tokens, heads, labels) of a head view."""
    A = _as_weights(weights, (2, 3), "(n_heads, n, n) or (n, n)")
    A = A[None] if A.ndim == 2 else A  # (n_heads, n, n)
    n_heads, n_q, n_k = A.shape
    if n_q != n_k:
        raise ValueError(f"a head view needs self-attention weights (n, n); got {n_q} x {n_k}")
    tokens = _check_tokens("tokens", tokens, n_q, "positions")
    heads = list(range(n_heads)) if heads is None else [int(h) for h in heads]
    bad = [h for h in heads if not 0 <= h < n_heads]
    if bad:
        raise ValueError(f"heads must lie in [0, {n_heads - 1}]; got {bad}")
    labels = [f"head {h}" for h in heads] if labels is None else [str(s) for s in labels]
    if len(labels) != len(heads):
        raise ValueError(f"got {len(labels)} labels for {len(heads)} heads")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1); got {threshold}")
    return A, tokens, heads, labels


def drawn_arcs(weights, tokens: Sequence[str], *, heads: Sequence[int] | None = None,
               labels: Sequence[str] | None = None, threshold: float = 0.1) -> list[dict]:
    """What `head_view` with the same arguments draws: one dict per line, {"label", "query",
    "key", "query_index", "key_index", "weight"}, head by head, weakest first within a head."""
    A, tokens, heads, labels = _check_view(weights, tokens, heads, labels, threshold)
    return [{"label": label, "query": tokens[q], "key": tokens[k], "query_index": q,
             "key_index": k, "weight": w}
            for h, label in zip(heads, labels) for q, k, w in _pairs(A[h], threshold)]


def head_view(weights, tokens: Sequence[str], *, heads: Sequence[int] | None = None,
              labels: Sequence[str] | None = None, threshold: float = 0.1,
              layout: str = "arcs", styles: Mapping[str, tuple[str, object]] | None = None,
              max_linewidth: float = 4.0, background_roles: Sequence[str] = ("delimiter",),
              title: str | None = None, ax=None) -> Figure:
    """Draw the heads `heads` of `weights` (n_heads, n, n) (or one head (n, n)) as lines.

    labels: one legend entry per drawn head (default "head i"); a label that names a role of
    ROLE_STYLES takes that role's colour and line style unless `styles` maps the label to
    (colour, linestyle). threshold: weights below it are not drawn (`drawn_arcs` lists what is).
    background_roles: with several heads, those whose label names one of these roles go underneath
    the others, at half the line width (see the module). Returns the Figure.
    """
    A, tokens, heads, labels = _check_view(weights, tokens, heads, labels, threshold)
    if layout not in ("arcs", "columns"):
        raise ValueError(f"layout must be 'arcs' or 'columns'; got {layout!r}")
    unknown = [r for r in background_roles if r not in ROLE_STYLES]
    if unknown:
        raise ValueError(f"background_roles must be roles of {tuple(ROLE_STYLES)}; got {unknown}")
    n = len(tokens)

    if ax is None:
        size = (max(6.0, 0.75 * n), 3.6) if layout == "arcs" else (4.5, max(3.0, 0.32 * n))
        fig, ax = plt.subplots(figsize=size)
    else:
        fig = ax.figure
    draw = _draw_arcs if layout == "arcs" else _draw_columns
    # alone, a head covers nothing: it goes underneath only when it shares the axes
    background = [len(heads) > 1 and _role(label) in background_roles for label in labels]
    handles = []
    for h, label, (colour, ls), behind in zip(heads, labels, _styles(labels, styles), background):
        width = max_linewidth * (BACKGROUND_WIDTH if behind else 1.0)
        draw(ax, A[h], threshold, colour, ls, width, zorder=1 if behind else 2)
        handles.append(Line2D([], [], color=colour, linestyle=ls, linewidth=1 if behind else 2,
                              label=f"{label} (underneath, thinner)" if behind else label))
    _label_tokens(ax, tokens, layout)
    if layout == "arcs":  # beside the arcs, so it never covers one
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                  frameon=False, handlelength=3.5, title=KEY_NOTE, title_fontsize=8,
                  alignment="left")
    else:
        ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.02), fontsize=8,
                  frameon=False, handlelength=3.5, ncol=min(3, len(handles)), title=KEY_NOTE,
                  title_fontsize=8)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return fig


def _pairs(A_h: np.ndarray, threshold: float):
    """(query, key, weight) for every weight at or above the threshold, strongest last."""
    q, k = np.nonzero(A_h >= threshold)
    order = np.argsort(A_h[q, k])
    return [(int(q[i]), int(k[i]), float(A_h[q[i], k[i]])) for i in order]


def _draw_arcs(ax, A_h, threshold, colour, ls, max_lw, zorder):
    for q, k, w in _pairs(A_h, threshold):
        if q == k:  # attention to itself: a small loop above the word
            verts = [(q - 0.15, 0.05), (q - 0.3, 0.6), (q + 0.3, 0.6), (q + 0.15, 0.05)]
        else:  # a quadratic Bezier whose height grows with the distance
            height = 0.35 + 0.28 * abs(q - k)
            verts = [(q, 0.05), ((q + k) / 2, 2 * height), (k, 0.05)]
        codes = [Path.MOVETO] + [Path.CURVE4 if len(verts) == 4 else Path.CURVE3] * (len(verts) - 1)
        ax.add_patch(PathPatch(Path(verts, codes), fill=False, edgecolor=colour, linestyle=ls,
                               linewidth=max(0.4, max_lw * w), alpha=0.35 + 0.6 * w,
                               zorder=zorder))
        ax.plot([k], [0.05], "o", color=colour, markersize=2 + 3 * w, alpha=0.8,
                zorder=zorder + 0.5)  # the key end


def _draw_columns(ax, A_h, threshold, colour, ls, max_lw, zorder):
    for q, k, w in _pairs(A_h, threshold):
        ax.plot([0.0, 1.0], [-q, -k], color=colour, linestyle=ls, linewidth=max(0.4, max_lw * w),
                alpha=0.35 + 0.6 * w, solid_capstyle="round", zorder=zorder)
        ax.plot([1.0], [-k], "o", color=colour, markersize=2 + 3 * w, alpha=0.8,
                zorder=zorder + 0.5)  # the key end


def _label_tokens(ax, tokens, layout):
    n = len(tokens)
    if layout == "arcs":
        for i, t in enumerate(tokens):
            ax.text(i, -0.05, t, ha="center", va="top", fontsize=10)
        top = 2 * (0.35 + 0.28 * (n - 1)) / 2 + 0.4  # the highest arc's peak is half its control
        ax.set_xlim(-0.8, n - 0.2)
        ax.set_ylim(-0.45, max(1.2, top))
    else:
        for i, t in enumerate(tokens):
            ax.text(-0.04, -i, t, ha="right", va="center", fontsize=10)
            ax.text(1.04, -i, t, ha="left", va="center", fontsize=10)
        ax.text(0.0, 1.0, "query", ha="center", fontsize=8, color="0.4")
        ax.text(1.0, 1.0, "key", ha="center", fontsize=8, color="0.4")
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylim(-n + 0.4, 1.6)

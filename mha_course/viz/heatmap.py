"""Attention heatmaps: one head (`attention_heatmap`) or every head of every layer (`head_grid`).

Views only draw. They take the attention weights A = softmax(Q K^T / sqrt(d_k)) as NumPy arrays
(rows = queries, columns = keys) and never compute attention themselves, so the same picture serves
the NumPy core, the PyTorch core, a toy model or a pretrained one.

Attention is drawn on one fixed scale, weight 0 (white) to weight 1 (dark blue), with a colour
bar, so that a pale head is a head that spreads its attention and two pictures can be compared.
Scaling the colours to the largest weight instead makes near-uniform random heads look
structured: a view that does it (vmax=None or any scale other than 0-1) says "auto-scaled" in
its title.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mha_course.viz.palette import ATTENTION_CMAP, ATTENTION_RANGE, AUTO_SCALED, HIGHLIGHT

__all__ = ["attention_heatmap", "annotate_cells", "head_grid", "head_mosaic", "head_mosaic_cells",
           "DEFAULT_CMAP", "scale_note"]

DEFAULT_CMAP = ATTENTION_CMAP  # white = no weight, so masked (zero) entries read as empty


def _scale(A: np.ndarray, vmin: float, vmax: float | None) -> tuple[float, float]:
    """The colour scale: (vmin, vmax), vmax=None meaning the largest weight."""
    return float(vmin), float(A.max()) if vmax is None else float(vmax)


def scale_note(vmin: float, vmax: float) -> str:
    """'' on the fixed 0-1 scale, else the words a title must carry: "auto-scaled: 0 to 0.22"."""
    if (vmin, vmax) == ATTENTION_RANGE:
        return ""
    return f"{AUTO_SCALED}: {vmin:.2g} to {vmax:.2g}"


def _with_note(title: str | None, note: str) -> str | None:
    if not note or (title and AUTO_SCALED in title):
        return title
    return f"{title} ({note})" if title else note


def _as_weights(weights, ndims: tuple[int, ...], axes: str) -> np.ndarray:
    """A float NumPy copy of `weights` with one of the allowed ranks, finite everywhere."""
    if hasattr(weights, "detach"):  # a torch tensor, possibly requiring grad
        weights = weights.detach().cpu().numpy()
    arr = np.asarray(weights)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"attention weights must be real numbers; got dtype {arr.dtype}")
    if arr.ndim not in ndims:
        raise ValueError(f"attention weights must have shape {axes}; got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"attention weights are empty (shape {arr.shape}); nothing to draw")
    if not np.isfinite(arr).all():
        raise ValueError("attention weights contain NaN or inf; a heatmap needs finite values")
    return arr.astype(np.float64)


def _check_tokens(name: str, tokens: Sequence[str], n: int, axis: str) -> list[str]:
    if isinstance(tokens, str):
        raise TypeError(f"{name} must be a list of token strings, not one string {tokens!r}")
    tokens = [str(t) for t in tokens]
    if len(tokens) != n:
        raise ValueError(f"{name} has {len(tokens)} tokens but the weights have {n} {axis} "
                         f"(one label per {axis[:-1]})")
    return tokens


def attention_heatmap(weights, tokens_q: Sequence[str], tokens_k: Sequence[str] | None = None,
                      ax: Axes | None = None, title: str | None = None, *,
                      cmap: str = DEFAULT_CMAP, vmin: float = 0.0, vmax: float | None = 1.0,
                      colorbar: bool = True, annotate: bool = False, fmt: str = ".2f",
                      xlabel: str | None = "key", ylabel: str | None = "query",
                      tick_labels: bool = True) -> Axes:
    """Draw one head's weights A (n_q, n_k) with query tokens down the rows, key tokens across.

    Row i shows how query token i spreads its attention over the keys (each row sums to 1 for
    softmax weights). `tokens_k` defaults to `tokens_q` (self-attention). Colours run from
    weight 0 to 1 with a colour bar; `vmax=None` scales them to the largest weight instead, and
    the title then says "auto-scaled". `annotate` writes each weight in its cell (readable up to
    about 12 tokens). Returns the Axes.
    """
    A = _as_weights(weights, (2,), "(n_q, n_k)")
    n_q, n_k = A.shape
    tokens_q = _check_tokens("tokens_q", tokens_q, n_q, "queries (rows)")
    tokens_k = tokens_q if tokens_k is None else tokens_k
    tokens_k = _check_tokens("tokens_k", tokens_k, n_k, "keys (columns)")
    if ax is None:
        side = 0.38 * max(n_q, n_k) + 1.2
        _, ax = plt.subplots(figsize=(side + (0.8 if colorbar else 0), side))

    vmin, vmax = _scale(A, vmin, vmax)
    title = _with_note(title, scale_note(vmin, vmax))
    image = ax.imshow(A, cmap=cmap, vmin=vmin, vmax=vmax, aspect="equal", interpolation="nearest")
    if tick_labels:
        ax.set_xticks(range(n_k), tokens_k, rotation=90)
        ax.set_yticks(range(n_q), tokens_q)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if annotate:
        annotate_cells(ax, image, A, lambda value: format(value, fmt).lstrip("0") or "0")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    return ax


def annotate_cells(ax, image, values: np.ndarray, text, hide: np.ndarray | None = None) -> None:
    """Write text(values[r, c]) on every cell of an imshow `image` of the 2-D `values`, white on
    dark cells and black on light ones (whatever the colour map); cells where `hide` is True or
    the value is not finite stay blank."""
    for (r, c), value in np.ndenumerate(values):
        if not np.isfinite(value) or (hide is not None and hide[r, c]):
            continue
        red, green, blue, _ = image.cmap(image.norm(value))
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5  # perceived brightness
        ax.text(c, r, text(value), ha="center", va="center", fontsize=7,
                color="white" if dark else "black")


def head_grid(weights, tokens: Sequence[str], tokens_k: Sequence[str] | None = None, *,
              titles: Sequence[str] | None = None, cmap: str = DEFAULT_CMAP,
              vmax: float | None = 1.0, cell_size: float = 2.0, colorbar: bool = True,
              tick_labels: bool = True, suptitle: str | None = None) -> Figure:
    """Every head at once: a grid of small heatmaps, rows = layers, columns = heads.

    weights (n_layers, n_heads, n_q, n_k), or (n_heads, n_q, n_k) for a single layer. Panels are
    titled L{layer}H{head} unless `titles` (one per head, layer-major) says otherwise. All panels
    share one colour scale, 0 to `vmax` = 1 by default, so that a darker cell means more weight in
    any panel (vmax=None: the largest weight in the grid, and the figure's title then says
    "auto-scaled"). Token labels sit on the left column (queries)
    and the bottom row (keys). Returns the Figure; its first n_layers * n_heads axes are the
    panels, in layer-major order (a colour bar, if drawn, comes after them).
    """
    A = _as_weights(weights, (3, 4), "(n_layers, n_heads, n_q, n_k) or (n_heads, n_q, n_k)")
    if A.ndim == 3:
        A = A[None]  # (1, n_heads, n_q, n_k)
    n_layers, n_heads, n_q, n_k = A.shape
    tokens_q = _check_tokens("tokens", tokens, n_q, "queries (rows)")
    tokens_k = tokens_q if tokens_k is None else tokens_k
    tokens_k = _check_tokens("tokens_k", tokens_k, n_k, "keys (columns)")
    if titles is None:
        titles = [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
    elif len(titles) != n_layers * n_heads:
        raise ValueError(f"titles has {len(titles)} entries but the grid has "
                         f"{n_layers} layers x {n_heads} heads = {n_layers * n_heads} panels")
    vmin, vmax = _scale(A, 0.0, vmax)
    suptitle = _with_note(suptitle, scale_note(vmin, vmax))

    label_room = 0.075 * max(len(t) for t in tokens_q + tokens_k) + 0.3 if tick_labels else 0
    fig, axes = plt.subplots(
        n_layers, n_heads, squeeze=False, layout="constrained",
        figsize=(n_heads * cell_size + label_room + (0.9 if colorbar else 0),
                 n_layers * (cell_size + 0.3) + label_room + (0.4 if suptitle else 0)),
    )
    for layer in range(n_layers):
        for head in range(n_heads):
            ax = axes[layer, head]
            attention_heatmap(A[layer, head], tokens_q, tokens_k, ax=ax, cmap=cmap, vmin=vmin,
                              vmax=vmax, colorbar=False, xlabel=None, ylabel=None,
                              tick_labels=tick_labels)
            ax.set_title(titles[layer * n_heads + head], fontsize=9)  # the scale: in suptitle
            if tick_labels:
                ax.tick_params(labelsize=7, length=2)
                if head > 0:
                    ax.tick_params(labelleft=False)
                if layer < n_layers - 1:
                    ax.tick_params(labelbottom=False)
    if colorbar:
        fig.colorbar(axes[0, 0].images[0], ax=axes, shrink=min(1.0, 0.6 + 0.1 * n_layers),
                     pad=0.01, aspect=12 + 8 * n_layers, label="attention weight")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def head_mosaic(weights, *, tokens: Sequence[str] | None = None,
                titles: Sequence[str] | None = None, selected: tuple[int, int] | None = None,
                cmap: str = DEFAULT_CMAP, vmax: float | None = 1.0, cell_size: float = 1.1,
                colorbar: bool = True, title: str | None = None) -> Figure:
    """Every head as one tiled image: a fast overview for interactive panels.

    Same layout as `head_grid` (rows = layers, columns = heads) but drawn as a single image with
    gaps between the heads, so it redraws in a few tens of milliseconds. `tokens` (n) label the
    queries left of the first column and the keys under the last row (self-attention; small
    print, readable up to about 15 tokens); `selected` = (layer, head) is framed. Colours run
    from 0 to 1 with a colour bar (vmax=None: to the largest weight, and the title says
    "auto-scaled"). Returns the Figure.
    """
    A = _as_weights(weights, (3, 4), "(n_layers, n_heads, n_q, n_k) or (n_heads, n_q, n_k)")
    if A.ndim == 3:
        A = A[None]  # (1, n_heads, n_q, n_k)
    n_layers, n_heads, n_q, n_k = A.shape
    if titles is not None and len(titles) != n_layers * n_heads:
        raise ValueError(f"titles has {len(titles)} entries but the grid has "
                         f"{n_layers} layers x {n_heads} heads = {n_layers * n_heads} panels")
    if tokens is not None:
        tokens = _check_tokens("tokens", tokens, n_q, "queries (rows)")
        if n_q != n_k:
            raise ValueError(f"token labels need self-attention weights (n, n); got {n_q} x {n_k}")
    vmin, vmax = _scale(A, 0.0, vmax)
    title = _with_note(title, scale_note(vmin, vmax))
    cells = head_mosaic_cells(A)
    gap_q, gap_k = max(1, n_q // 4), max(1, n_k // 6)  # room for the titles between rows
    tiles = np.full((n_layers * (n_q + gap_q), n_heads * (n_k + gap_k)), np.nan)
    for (layer, head), (c, r, _, _) in cells.items():
        tiles[r:r + n_q, c:c + n_k] = A[layer, head]

    fontsize = float(np.clip(0.8 * 72 * cell_size / max(n_q, n_k), 3.5, 7.0))  # one row's height
    label_in = 0.0 if tokens is None else 0.55 * fontsize / 72 * max(map(len, tokens)) + 0.1
    width = n_heads * cell_size * 1.15 + 0.8 + label_in + (0.9 if colorbar else 0)
    height = n_layers * cell_size * 1.25 + 0.3 + label_in + (0.35 if title else 0)
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(left=0.02 + label_in / width, right=1 - (0.02 + (0.75 if colorbar else 0)
                                                                 / width),
                        top=1 - (0.02 + (0.35 if title else 0) / height),
                        bottom=0.02 + label_in / height)
    colours = plt.get_cmap(cmap).with_extremes(bad="white")  # the gaps
    image = ax.imshow(np.ma.masked_invalid(tiles), cmap=colours, vmin=vmin, vmax=vmax,
                      interpolation="nearest")
    for (layer, head), (c, r, _, _) in cells.items():
        name = titles[layer * n_heads + head] if titles is not None else f"L{layer}H{head}"
        ax.text(c, r - 0.8, name, fontsize=7, va="bottom", ha="left")
        if tokens is not None and head == 0:  # queries, down the left edge
            for i, token in enumerate(tokens):
                ax.text(c - 0.8, r + i, token, fontsize=fontsize, ha="right", va="center")
        if tokens is not None and layer == n_layers - 1:  # keys, under the bottom row
            for j, token in enumerate(tokens):
                ax.text(c + j, r + n_q - 0.3, token, fontsize=fontsize, ha="center", va="top",
                        rotation=90)
        if selected == (layer, head):
            ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), n_k, n_q, fill=False,
                                       edgecolor=HIGHLIGHT, linewidth=2.5))
    ax.set_axis_off()
    if colorbar:
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, shrink=0.7, label="attention weight")
    if title:
        fig.suptitle(title)
    return fig


def head_mosaic_cells(weights) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """Where `head_mosaic` puts each head: {(layer, head): (column, row, n_k, n_q)} in the
    mosaic image's data coordinates (the tile's top-left pixel and its size)."""
    A = np.asarray(weights)
    if A.ndim == 3:
        A = A[None]  # (1, n_heads, n_q, n_k)
    n_layers, n_heads, n_q, n_k = A.shape
    gap_q, gap_k = max(1, n_q // 4), max(1, n_k // 6)
    return {(layer, head): (head * (n_k + gap_k), layer * (n_q + gap_q) + gap_q, n_k, n_q)
            for layer in range(n_layers) for head in range(n_heads)}

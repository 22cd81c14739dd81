"""One head's view of the tokens: its queries Q_i and keys K_i drawn in a 2-D plane.

A head with d_k > 2 lives in a d_k-dimensional space, so we show its principal plane: the plane
through the origin that keeps the most of the vectors' squared length (the first two right
singular vectors of the stacked queries and keys, not centred). Through the origin, so that the
attention score q . k can still be read off the picture: a key lying in the direction a query
points, and far from the origin, gets a high score. This is a display transform only; the
projections Q_i = X W_i^Q and K_i = X W_i^K come from the caller.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from mha_course.viz.labels import place_labels
from mha_course.viz.palette import BLUE, LIGHT_GREY, MID_GREY, VERMILION

__all__ = ["principal_plane", "projected_tokens"]

QUERY_COLOUR, KEY_COLOUR = BLUE, VERMILION  # and circles vs triangles: never colour alone


def principal_plane(points) -> tuple[np.ndarray, float]:
    """(coords (n, 2), fraction of the squared length kept): points (n, d) expressed in the
    2-D subspace through the origin that fits them best. Signs are fixed (largest loading
    positive) so the picture is reproducible."""
    P = np.asarray(points, dtype=np.float64)  # (n, d)
    if P.ndim != 2 or P.shape[0] < 1 or P.shape[1] < 1:
        raise ValueError(f"points must have shape (n, d) with n, d >= 1; got {P.shape}")
    _, s, Vt = np.linalg.svd(P, full_matrices=False)  # Vt (min(n, d), d)
    Vt = Vt[:2]
    flip = Vt[np.arange(len(Vt)), np.abs(Vt).argmax(axis=1)] < 0
    Vt = np.where(flip[:, None], -Vt, Vt)
    coords = P @ Vt.T  # (n, <= 2)
    if coords.shape[1] < 2:  # d == 1 (or n == 1): everything lies on a line
        coords = np.concatenate([coords, np.zeros((len(coords), 1))], axis=1)  # (n, 2)
    total = float((s**2).sum())
    kept = float((s[:2] ** 2).sum() / total) if total > 0 else 1.0
    return coords, kept


def projected_tokens(Q, K, tokens: Sequence[str], ax: Axes | None = None,
                     title: str | None = None, *, weights=None) -> Axes:
    """Scatter one head's queries Q (n, d_k) (circles) and keys K (n, d_k) (triangles), labelled
    by token, on the head's principal plane. With `weights` A (n, n), a grey arrow joins each
    query to the key it attends to most. Labels are placed so that none overlaps another
    (`labels.place_labels`); the title says how much of the vectors' length the plane keeps.
    Returns the Axes."""
    Q, K = np.asarray(Q, dtype=np.float64), np.asarray(K, dtype=np.float64)
    if Q.ndim != 2 or K.ndim != 2 or Q.shape[1] != K.shape[1]:
        raise ValueError(f"Q and K must be (n, d_k) with the same d_k; got {Q.shape} and {K.shape}")
    if isinstance(tokens, str):
        raise TypeError(f"tokens must be a list of token strings, not one string {tokens!r}")
    tokens = [str(t) for t in tokens]
    if not len(tokens) == len(Q) == len(K):
        raise ValueError(f"{len(tokens)} tokens for {len(Q)} queries and {len(K)} keys: "
                         "this view needs one query and one key per token")
    n = len(tokens)
    coords, kept = principal_plane(np.concatenate([Q, K]))  # (2n, 2)
    q2, k2 = coords[:n], coords[n:]  # (n, 2) each
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.axhline(0, color=LIGHT_GREY, lw=0.6, zorder=0)
    ax.axvline(0, color=LIGHT_GREY, lw=0.6, zorder=0)
    if weights is not None:
        A = np.asarray(weights, dtype=np.float64)
        if A.shape != (n, n):
            raise ValueError(f"weights must be (n, n) = ({n}, {n}); got {A.shape}")
        for i, j in enumerate(A.argmax(axis=1)):
            ax.annotate("", xy=k2[j], xytext=q2[i], arrowprops=dict(
                arrowstyle="->", color=MID_GREY, lw=0.7, shrinkA=3, shrinkB=3))
    ax.scatter(*q2.T, marker="o", s=28, color=QUERY_COLOUR, label="query $q$", zorder=3)
    ax.scatter(*k2.T, marker="^", s=28, color=KEY_COLOUR, label="key $k$", zorder=3)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.margins(0.2)
    kept_note = f"plane keeps {kept:.0%}"
    ax.set_title(f"{title} ({kept_note})" if title else kept_note, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    place_labels(ax, coords, tokens + tokens, colours=[QUERY_COLOUR] * n + [KEY_COLOUR] * n,
                 fontsize=8)
    return ax

"""Saving what a view shows: the figure as an image or a vector graphic, and the attention
weights behind it as data another tool can read.

    fig = attention_heatmap(A, tokens)
    save(fig, "exports/L1H3.svg")              # or .png / .pdf: the suffix picks the format
    save_attention(A, tokens, "exports/L1H3.csv")   # or .npz

A CSV holds one row per query and one column per key, each labelled "position:token" (tokens
repeat in a sentence, labels must not); an NPZ holds the array and the tokens as they are. Both
read back with `load_attention`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["FIGURE_FORMATS", "DATA_FORMATS", "save", "save_attention", "load_attention",
           "position_labels"]

FIGURE_FORMATS = ("png", "svg", "pdf")
DATA_FORMATS = ("csv", "npz")
PRINT_DPI = 200  # a saved PNG is for slides and papers, sharper than the screen's panels


def _suffix(path: Path, allowed: tuple[str, ...], what: str) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in allowed:
        raise ValueError(f"{what} path must end in one of {', '.join('.' + s for s in allowed)}; "
                         f"got {str(path)!r}")
    return suffix


def save(fig: Figure | Axes, path, *, dpi: int = PRINT_DPI) -> Path:
    """Write `fig` (a Figure, or the Axes a view returns: its whole figure) to `path` as PNG, SVG
    or PDF (from the suffix), creating the folder; the figure stays open. Returns the path."""
    if isinstance(fig, Axes):
        fig = fig.figure
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure or Axes (what a view returns); got "
                        f"{type(fig).__name__}")
    path = Path(path)
    fmt = _suffix(path, FIGURE_FORMATS, "a figure's")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def position_labels(tokens: Sequence[str]) -> list[str]:
    """["the", "dog", "the"] -> ["0:the", "1:dog", "2:the"]: unique column names."""
    return [f"{i}:{t}" for i, t in enumerate(tokens)]


def _check_attention(A, tokens_q, tokens_k, stack: bool = False) -> np.ndarray:
    """A as floats: one head's (n_q, n_k), or with `stack` also several (..., n_q, n_k)."""
    A = np.asarray(A, dtype=float)
    if stack and A.ndim > 2:
        if A.shape[-2:] != (len(tokens_q), len(tokens_k)):
            raise ValueError(f"attention must be (..., n, n) for its {len(tokens_q)} tokens; got "
                             f"shape {A.shape}")
    elif A.ndim != 2:
        raise ValueError(f"attention must be one head's (n_q, n_k) weights; got shape {A.shape}")
    elif (len(tokens_q), len(tokens_k)) != A.shape:
        raise ValueError(f"attention {A.shape} needs {A.shape[0]} query tokens and {A.shape[1]} "
                         f"key tokens; got {len(tokens_q)} and {len(tokens_k)}")
    if not np.isfinite(A).all():
        raise ValueError("attention holds NaN or infinite weights; nothing was written")
    return A


def save_attention(A, tokens: Sequence[str], path, *,
                   key_tokens: Sequence[str] | None = None) -> Path:
    """Write one head's attention A (n_q, n_k) with its token labels to `path`: CSV (a header
    row of keys, a first column of queries, "position:token") or NPZ (arrays `attention`,
    `query_tokens`, `key_tokens`; NPZ also takes a stack (..., n_q, n_k) of several heads or
    layers). `key_tokens` default to `tokens` (self-attention). Returns the path written."""
    path = Path(path)
    fmt = _suffix(path, DATA_FORMATS, "attention data's")
    key_tokens = list(tokens) if key_tokens is None else list(key_tokens)
    A = _check_attention(A, list(tokens), key_tokens, stack=fmt == "npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        np.savez(path, attention=A, query_tokens=np.array(list(tokens), dtype=str),
                 key_tokens=np.array(key_tokens, dtype=str))
        return path
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["query \\ key", *position_labels(key_tokens)])
    for label, row in zip(position_labels(tokens), A):
        writer.writerow([label, *(repr(float(w)) for w in row)])  # exact float round trip
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def _strip(labels: Sequence[str]) -> list[str]:
    return [label.split(":", 1)[1] for label in labels]


def load_attention(path) -> tuple[np.ndarray, list[str], list[str]]:
    """What `save_attention` wrote: (A (n_q, n_k), or (..., n_q, n_k) from an NPZ, query tokens,
    key tokens)."""
    path = Path(path)
    fmt = _suffix(path, DATA_FORMATS, "attention data's")
    if fmt == "npz":
        with np.load(path) as data:
            return (data["attention"], [str(t) for t in data["query_tokens"]],
                    [str(t) for t in data["key_tokens"]])
    with path.open(newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    A = np.array([[float(w) for w in row[1:]] for row in rows])  # (n_q, n_k)
    return A, _strip([row[0] for row in rows]), _strip(header[1:])

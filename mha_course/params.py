"""What both attention cores share, whatever the backend: the per-head weights `MHAParams` and the
one check of head gates' shapes.

Nothing here computes attention, so nothing here depends on NumPy or torch being the backend:
the fields of `MHAParams` may hold NumPy arrays or torch tensors, and `check_head_gates` reads
only shapes (a list, an array or a tensor, with or without a graph).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np

from mha_course import _validate as v

__all__ = ["MHAParams", "check_head_gates"]

Array = Any  # a NumPy array or a torch tensor


@dataclass
class MHAParams:
    """Weights stored per head, as the maths writes them.

    W_Q, W_K (n_heads, d_model, d_k); W_V (n_heads, d_model, d_v); W_O (n_heads * d_v, d_model),
    whose rows i*d_v:(i+1)*d_v belong to head i (the order of the concatenation).
    Optional biases b_Q, b_K (n_heads, d_k), b_V (n_heads, d_v), b_O (d_model,).
    The fields may hold NumPy arrays or torch tensors; only shapes are checked here.
    """

    W_Q: Array
    W_K: Array
    W_V: Array
    W_O: Array
    b_Q: Array | None = None
    b_K: Array | None = None
    b_V: Array | None = None
    b_O: Array | None = None

    def __post_init__(self):
        shape = lambda a: None if a is None else tuple(a.shape)  # noqa: E731  (None stays None)
        v.check_params(
            shape(self.W_Q), shape(self.W_K), shape(self.W_V), shape(self.W_O),
            {b: shape(getattr(self, b)) for b in ("b_Q", "b_K", "b_V", "b_O")},
        )

    n_heads = property(lambda self: self.W_Q.shape[0])
    d_model = property(lambda self: self.W_Q.shape[1])
    d_k = property(lambda self: self.W_Q.shape[2])
    d_v = property(lambda self: self.W_V.shape[2])

    def map(self, fn: Callable) -> "MHAParams":
        """A new MHAParams with fn applied to every array that is present (e.g. a dtype cast)."""
        return MHAParams(**{f.name: None if getattr(self, f.name) is None
                            else fn(getattr(self, f.name)) for f in fields(self)})


def check_head_gates(head_gates, n_layers: int | None, n_heads: int,
                     batch: tuple[int, ...] | None = None) -> None:
    """The one check of head gates' shapes, for one attention layer or a whole model.

    One layer (n_layers None): xi (n_heads,), or (..., n_heads) broadcasting over the inputs'
    batch dimensions. A model (n_layers an int): layer first, (n_layers, n_heads) or
    (n_layers, ..., n_heads), layer l's gates going to layer l's attention.
    batch: the inputs' batch dimensions, e.g. (batch,); the gates' batch axes must broadcast to
    them without adding dimensions in front (batch=() allows none: exactly (n_heads,) or
    (n_layers, n_heads)); None leaves the batch axes to the attention layer.
    head_gates None (every gate 1) passes. Raises ValueError naming the expected and the given
    shape. Reads only the shape: a list, a NumPy array or a torch tensor all work.
    """
    if head_gates is None:
        return
    shape = tuple(int(s) for s in np.shape(head_gates))
    layers = () if n_layers is None else (n_layers,)
    lead = shape[len(layers):-1]  # the gates' batch axes
    ok = (len(shape) >= len(layers) + 1 and shape[:len(layers)] == layers
          and shape[-1] == n_heads)
    if ok and batch is not None:
        ok = len(lead) <= len(batch) and all(
            g in (1, b) for g, b in zip(reversed(lead), reversed(batch)))
    if ok:
        return
    axes = "n_heads" if n_layers is None else "n_layers, n_heads"
    expected = f"head_gates must have shape ({axes}{',' * (n_layers is None)}) = "
    expected += str(layers + (n_heads,))  # (2,) or (6, 12)
    full = "(..., n_heads)" if n_layers is None else "(n_layers, ..., n_heads)"
    if batch is None:
        expected += f", or {full} with the inputs' batch dimensions"
    elif batch:
        expected += (f", or broadcast to {full} = {v.fmt(layers + tuple(batch) + (n_heads,))} "
                     "over the inputs' batch dimensions")
    raise ValueError(f"{expected}; got shape {v.fmt(shape)}")

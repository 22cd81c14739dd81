"""`Cache`: everything one forward pass computed, as named NumPy arrays, returned by `model.run`.

Every model of the course (the toy Transformer, MiniLM, a student's own) answers
`model.run(inputs, head_gates=None) -> Cache`, so that a metric, a probe or an ablation written
once serves them all:

    cache = model.run(["the dog barks .", "a cat sleeps ."])
    cache.attention   (n_layers, batch, n_heads, n, n)   A_i, rows over the keys sum to 1
    cache.z           (n_layers, batch, n_heads, n, d_v) Z_i = A_i V_i, each head's output
    cache.attn_in     (n_layers, batch, n, d_model)      X, what the attention layer read
    cache.attn_out    (n_layers, batch, n, d_model)      Concat(xi_1 Z_1 .. xi_h Z_h) W^O + b^O
    cache.residual    (n_layers + 1, batch, n, d_model)  the residual stream: the embeddings,
                                                         then the output of each layer
    cache.tokens      batch lists of tokens; cache.lengths (batch,); cache.mask (batch, n)

    A, Z = cache.head(1, 3)      # (batch, n, n), (batch, n, d_v): one head, every sequence
    one = cache[0]               # the first sequence alone, a Cache with batch 1, no padding
    cache.attention_of(0)        # (n_layers, n_heads, n_0, n_0): its attention, unpadded

Sequences of different lengths are padded to the longest, n. Positions at or beyond a
sequence's length are padding: every array is 0 there (a padded query computes nothing that
the model uses; keys beyond the length already get weight 0), so sums and means over a
sequence's real positions need no mask, and `mask` says which positions are real.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from mha_course.params import check_head_gates

__all__ = ["Cache", "HeadCache", "concatenate", "zero_padding"]

ARRAYS = ("attention", "z", "attn_in", "attn_out", "residual")


class HeadCache(NamedTuple):
    attention: np.ndarray  # (batch, n, n): A_i of the head
    z: np.ndarray  # (batch, n, d_v): Z_i = A_i V_i of the head


@dataclass
class Cache:
    """What a model computed on a batch of sequences (see the module docstring for the shapes).

    head_gates: the gates the model ran with, (n_layers, n_heads) or (n_layers, batch, n_heads),
    None for all 1; `z` is always the head's output *before* its gate, `attn_out` after.
    inputs: one entry per sequence, what the model read (a toy `Sentence`, a MiniLM `Encoding`
    with the text, offsets and words; None when there is nothing more than the tokens).
    """
    tokens: list[list[str]]
    lengths: np.ndarray
    attention: np.ndarray
    z: np.ndarray
    attn_in: np.ndarray
    attn_out: np.ndarray
    residual: np.ndarray
    head_gates: np.ndarray | None = None
    inputs: list | None = field(default=None, repr=False)

    def __post_init__(self):
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        if self.head_gates is not None:
            self.head_gates = np.asarray(self.head_gates)
        self._check()

    # ------------------------------------------------------------------ sizes
    n_layers = property(lambda self: self.attention.shape[0])
    batch = property(lambda self: self.attention.shape[1])
    n_heads = property(lambda self: self.attention.shape[2])
    n = property(lambda self: self.attention.shape[3])
    d_v = property(lambda self: self.z.shape[-1])
    d_model = property(lambda self: self.residual.shape[-1])

    def __len__(self) -> int:
        return self.batch

    def __repr__(self) -> str:
        return (f"Cache(batch={self.batch}, n_layers={self.n_layers}, n_heads={self.n_heads}, "
                f"n={self.n}, d_v={self.d_v}, d_model={self.d_model}, "
                f"lengths={self.lengths.tolist()})")

    @property
    def mask(self) -> np.ndarray:
        """(batch, n) bool: True at a sequence's real positions, False at padding."""
        return np.arange(self.n) < self.lengths[:, None]  # (batch, n)

    # ------------------------------------------------------------------ slicing
    def head(self, layer: int, head: int) -> HeadCache:
        """One head of one layer, every sequence: (attention (batch, n, n), z (batch, n, d_v))."""
        if not (-self.n_layers <= layer < self.n_layers and -self.n_heads <= head < self.n_heads):
            raise IndexError(f"head (layer={layer}, head={head}) outside this model's "
                             f"{self.n_layers} layers x {self.n_heads} heads")
        return HeadCache(self.attention[layer, :, head], self.z[layer, :, head])

    def attention_of(self, b: int) -> np.ndarray:
        """(n_layers, n_heads, m, m): the attention of sequence b over its m real tokens."""
        m = self.lengths[b]
        return self.attention[:, b, :, :m, :m]  # (n_layers, n_heads, m, m)

    def z_of(self, b: int) -> np.ndarray:
        """(n_layers, n_heads, m, d_v): every head's output on sequence b's m real tokens."""
        return self.z[:, b, :, :self.lengths[b]]  # (n_layers, n_heads, m, d_v)

    def __getitem__(self, index) -> Cache:
        """cache[b] (an int), cache[b0:b1] (a slice) or cache[[b, ...]] (ints, in any order):
        those sequences as a Cache of their own, padded only to their own longest length."""
        if isinstance(index, (int, np.integer)) and not -self.batch <= index < self.batch:
            raise IndexError(f"sequence {index} of a batch of {self.batch}")
        if isinstance(index, (int, np.integer)):
            rows = np.array([int(index) % self.batch])
        elif isinstance(index, slice):
            rows = np.arange(self.batch)[index]
        else:
            rows = np.asarray(index)
            if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
                raise TypeError("index a Cache with an int, a slice or a list of ints; got "
                                f"{type(index).__name__}")
            if rows.size and not ((-self.batch <= rows) & (rows < self.batch)).all():
                raise IndexError(f"sequences {rows.tolist()} of a batch of {self.batch}")
        if rows.size == 0:
            raise IndexError(f"{index} selects no sequence of a batch of {self.batch}")
        m = int(self.lengths[rows].max())
        gates = self.head_gates
        if gates is not None and gates.ndim == 3:
            gates = gates[:, rows]  # (n_layers, batch', n_heads)
        return Cache(
            tokens=[self.tokens[b] for b in rows], lengths=self.lengths[rows],
            attention=self.attention[:, rows, :, :m, :m],  # (n_layers, batch', n_heads, m, m)
            z=self.z[:, rows, :, :m],  # (n_layers, batch', n_heads, m, d_v)
            attn_in=self.attn_in[:, rows, :m],  # (n_layers, batch', m, d_model)
            attn_out=self.attn_out[:, rows, :m],  # (n_layers, batch', m, d_model)
            residual=self.residual[:, rows, :m],  # (n_layers + 1, batch', m, d_model)
            head_gates=gates,
            inputs=None if self.inputs is None else [self.inputs[b] for b in rows])

    # ------------------------------------------------------------------ checks
    def _check(self) -> None:
        """Every array's shape against the attention's (n_layers, batch, n_heads, n, n)."""
        if np.ndim(self.attention) != 5 or self.attention.shape[-1] != self.attention.shape[-2]:
            raise ValueError("attention must be (n_layers, batch, n_heads, n, n); got shape "
                             f"{np.shape(self.attention)}")
        L, B, H, n, _ = self.attention.shape
        d_model = np.shape(self.residual)[-1]
        expected = {"z": (L, B, H, n, np.shape(self.z)[-1]), "attn_in": (L, B, n, d_model),
                    "attn_out": (L, B, n, d_model), "residual": (L + 1, B, n, d_model)}
        for name, shape in expected.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"{name} must be {shape} to match attention "
                                 f"{self.attention.shape}; got {np.shape(getattr(self, name))}")
        if self.lengths.shape != (B,) or (self.lengths < 1).any() or (self.lengths > n).any():
            raise ValueError(f"lengths must be ({B},) ints in 1..{n}; got {self.lengths.tolist()}")
        if len(self.tokens) != B or [len(t) for t in self.tokens] != self.lengths.tolist():
            raise ValueError(f"tokens must be {B} lists with lengths {self.lengths.tolist()}; got "
                             f"{[len(t) for t in self.tokens]}")
        check_head_gates(self.head_gates, L, H, (B,))
        if self.inputs is not None and len(self.inputs) != B:
            raise ValueError(f"inputs must have one entry per sequence ({B}); got "
                             f"{len(self.inputs)}")


def zero_padding(arrays: dict, lengths) -> dict:
    """The same arrays with every padded position set to 0 (see the module docstring).

    arrays: name -> array with the batch on axis 1 ((n_layers, batch, ...)); positions are axis
    -2 for attn_in, attn_out, residual and z, and axes -2 (queries) and -1 (keys) for attention.
    """
    lengths = np.asarray(lengths)
    some = next(iter(arrays.values()))
    n = some.shape[-2]
    real = np.arange(n) < lengths[:, None]  # (batch, n)
    out = {}
    for name, a in arrays.items():
        if name == "attention":
            keep = real[:, None, :, None] & real[:, None, None, :]  # (batch, 1, n, n)
        elif name == "z":
            keep = real[:, None, :, None]  # (batch, 1, n, 1)
        else:
            keep = real[:, :, None]  # (batch, n, 1)
        out[name] = np.where(keep, a, 0).astype(a.dtype, copy=False)
    return out


def _pad_to(a: np.ndarray, n: int, position_axes) -> np.ndarray:
    """a with its position axes padded with zeros to length n."""
    widths = [(0, 0)] * a.ndim
    for axis in position_axes:
        widths[axis] = (0, n - a.shape[axis])
    return np.pad(a, widths)


def concatenate(caches) -> Cache:
    """One Cache from several (e.g. the batches of one run), in order, padded to the longest.

    head_gates: None if every part ran without gates, the common (n_layers, n_heads) if every
    part ran with the same, otherwise (n_layers, batch, n_heads).
    """
    caches = list(caches)
    if not caches:
        raise ValueError("concatenate needs at least one Cache")
    n = max(c.n for c in caches)
    axes = {"attention": (-2, -1), "z": (-2,), "attn_in": (-2,), "attn_out": (-2,),
            "residual": (-2,)}
    arrays = {name: np.concatenate([_pad_to(getattr(c, name), n, axes[name]) for c in caches],
                                   axis=1) for name in ARRAYS}  # batch: axis 1
    gates = [c.head_gates for c in caches]
    if all(g is None for g in gates):
        head_gates = None
    elif all(g is not None and g.ndim == 2 for g in gates) and all(
            np.array_equal(g, gates[0]) for g in gates):
        head_gates = gates[0]
    else:
        per_sequence = []
        for c, g in zip(caches, gates):
            g = np.ones((c.n_layers, c.n_heads)) if g is None else np.asarray(g)
            per_sequence.append(np.broadcast_to(g[:, None] if g.ndim == 2 else g,
                                                (c.n_layers, len(c), c.n_heads)))
        head_gates = np.concatenate(per_sequence, axis=1)  # (n_layers, batch, n_heads)
    inputs = (None if any(c.inputs is None for c in caches)
              else [x for c in caches for x in c.inputs])
    return Cache(tokens=[t for c in caches for t in c.tokens],
                 lengths=np.concatenate([c.lengths for c in caches]), head_gates=head_gates,
                 inputs=inputs, **arrays)

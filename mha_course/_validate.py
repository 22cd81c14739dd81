"""Shape and value checks shared by the NumPy and PyTorch cores.

The checks work on plain shape tuples, so one implementation serves both backends; each message
names what was expected and what was given, because a student's first bug is usually a shape.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Shape = tuple[int, ...]


def fmt(shape: Sequence[int]) -> str:
    """(2, 3) -> '(2, 3)'; a 1-tuple without the trailing comma noise is still a tuple."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def broadcast_shapes(name_a: str, a: Shape, name_b: str, b: Shape) -> Shape:
    """NumPy broadcasting of two shapes, with an error that names both."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x != y and x != 1 and y != 1:
            raise ValueError(
                f"the batch dimensions of {name_a} {fmt(a)} and {name_b} {fmt(b)} do not broadcast"
            )
        out.append(max(x, y) if min(x, y) != 0 else 0)
    return tuple(reversed(out))


def check_rank(name: str, shape: Shape, min_rank: int, axes: str) -> None:
    if len(shape) < min_rank:
        raise ValueError(
            f"{name} must have at least {min_rank} dimensions {axes}; got shape {fmt(shape)}"
        )


def check_qkv(q: Shape, k: Shape, v: Shape) -> Shape:
    """Check Q (..., n_q, d_k), K (..., n_k, d_k), V (..., n_k, d_v); return the scores shape."""
    check_rank("Q", q, 2, "(..., n_q, d_k)")
    check_rank("K", k, 2, "(..., n_k, d_k)")
    check_rank("V", v, 2, "(..., n_k, d_v)")
    if q[-1] != k[-1]:
        raise ValueError(
            f"Q and K must share the last dimension d_k: got Q {fmt(q)} with d_k={q[-1]} "
            f"and K {fmt(k)} with d_k={k[-1]}"
        )
    if k[-2] != v[-2]:
        raise ValueError(
            f"K and V must have the same number of keys n_k: got K {fmt(k)} with n_k={k[-2]} "
            f"and V {fmt(v)} with n_k={v[-2]}"
        )
    batch = broadcast_shapes("Q", q[:-2], "K", k[:-2])
    batch = broadcast_shapes("Q/K", batch, "V", v[:-2])
    return batch + (q[-2], k[-2])


def check_mask(mask_shape: Shape, target: Shape, where: str = "(..., n_q, n_k)") -> None:
    """The mask must broadcast to the scores shape without adding dimensions in front."""
    ok = len(mask_shape) <= len(target) and all(
        m in (1, t) for m, t in zip(reversed(mask_shape), reversed(target))
    )
    if not ok:
        raise ValueError(
            f"mask of shape {fmt(mask_shape)} does not broadcast to {where} = {fmt(target)}"
        )


def check_mask_dtype(is_bool: bool, dtype) -> None:
    if not is_bool:
        raise TypeError(
            f"mask must be boolean (True = may attend, False = blocked); got dtype {dtype}. "
            "Convert with mask.astype(bool), or build it with causal_mask/padding_mask"
        )


def check_float_dtype(name: str, is_float: bool, dtype) -> None:
    if not is_float:
        raise TypeError(
            f"{name} must be a floating-point array; got dtype {dtype}. "
            "Attention needs real numbers: convert with .astype(np.float32) or .float()"
        )


def nonfinite_error(name: str) -> ValueError:
    return ValueError(f"{name} contains NaN or inf; attention needs finite inputs")


def check_params(W_Q: Shape, W_K: Shape, W_V: Shape, W_O: Shape, biases: dict) -> None:
    """Per-head layout: W_Q, W_K (n_heads, d_model, d_k), W_V (n_heads, d_model, d_v),
    W_O (n_heads * d_v, d_model), b_Q, b_K (n_heads, d_k), b_V (n_heads, d_v), b_O (d_model,)."""
    for name, shape, axes in (
        ("W_Q", W_Q, "(n_heads, d_model, d_k)"),
        ("W_K", W_K, "(n_heads, d_model, d_k)"),
        ("W_V", W_V, "(n_heads, d_model, d_v)"),
    ):
        if len(shape) != 3:
            raise ValueError(f"{name} must be 3-D {axes}; got shape {fmt(shape)}")
    n_heads, d_model, d_k = W_Q
    d_v = W_V[2]
    expected = {
        "W_K": (n_heads, d_model, d_k),
        "W_V": (n_heads, d_model, d_v),
        "W_O": (n_heads * d_v, d_model),
        "b_Q": (n_heads, d_k),
        "b_K": (n_heads, d_k),
        "b_V": (n_heads, d_v),
        "b_O": (d_model,),
    }
    given = {"W_K": W_K, "W_V": W_V, "W_O": W_O, **biases}
    for name, shape in given.items():
        if shape is not None and tuple(shape) != expected[name]:
            raise ValueError(
                f"{name} should have shape {fmt(expected[name])} to match W_Q {fmt(W_Q)} "
                f"(n_heads={n_heads}, d_model={d_model}, d_k={d_k}, d_v={d_v}); "
                f"got {fmt(shape)}"
            )


def check_inputs_match_params(name: str, x: Shape, d_model: int) -> None:
    check_rank(name, x, 2, "(..., n, d_model)")
    if x[-1] != d_model:
        raise ValueError(
            f"{name} has d_model={x[-1]} (shape {fmt(x)}) but the parameters expect "
            f"d_model={d_model} (W_Q is (n_heads, d_model, d_k))"
        )


def head_sizes(d_model: int, n_heads: int, d_k: int | None, d_v: int | None) -> tuple[int, int]:
    """d_k and d_v default to d_model // n_heads, which must then divide evenly."""
    for name, value in (("d_model", d_model), ("n_heads", n_heads)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if (d_k is None or d_v is None) and d_model % n_heads:
        raise ValueError(
            f"n_heads={n_heads} does not divide d_model={d_model}, so d_k = d_model / n_heads "
            "is not an integer; pass d_k and d_v explicitly"
        )
    d_k = d_model // n_heads if d_k is None else d_k
    d_v = d_model // n_heads if d_v is None else d_v
    for name, value in (("d_k", d_k), ("d_v", d_v)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return d_k, d_v


def check_length(where: str, n) -> int:
    """A sequence length: a non-negative Python or NumPy integer (not a bool), as an int."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{where} needs a non-negative integer length n; got {n!r}")
    return int(n)


def check_lengths(shape: Shape, is_integer: bool, dtype, lengths: list, n: int) -> None:
    """Padding lengths: (batch,) integers in [0, n]."""
    if len(shape) != 1 or not is_integer:
        raise TypeError(f"lengths must be 1-D integers (batch,); got shape {fmt(shape)} "
                        f"and dtype {dtype}")
    if lengths and (min(lengths) < 0 or max(lengths) > n):
        raise ValueError(f"lengths must lie in [0, n={n}]; got {lengths}")

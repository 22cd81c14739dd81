"""Scaled dot-product and multi-head attention from scratch, in NumPy: forward and backward.

Axis names used everywhere in the course: batch, n_heads, n_q, n_k, d_model, d_k, d_v.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V
    head_i = Attention(X_q W_i^Q, X_kv W_i^K, X_kv W_i^V)
    MultiHead(X_q, X_kv) = Concat(head_1, ..., head_h) W^O
    with head gates xi:  Concat(xi_1 head_1, ..., xi_h head_h) W^O  (xi = 1: the same thing)

`torch_attention` mirrors this module name for name, with the same signatures and docstrings
(tests/test_mirror.py lists where they differ and why); the two are tested equal to 1e-10.
The weights `MHAParams` and the head-gate check live in `params`, shared by both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from mha_course import _validate as v
from mha_course.params import MHAParams, check_head_gates

__all__ = [
    "softmax", "scaled_dot_product_attention", "causal_mask", "padding_mask",
    "MHAParams", "MHAOutput", "init_params", "multi_head_attention", "multi_head_attention_loop",
    "project",
    # NumPy only: the backward pass by hand (tests/test_mirror.py says why)
    "MHAGrads", "softmax_backward", "scaled_dot_product_attention_backward",
    "multi_head_attention_backward",
]


# ----------------------------------------------------------------------------------------------
# Checks (messages live in _validate, shared with the PyTorch core)


def _float_array(name: str, x, *, allow_neg_inf: bool = False) -> np.ndarray:
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    v.check_float_dtype(name, np.issubdtype(arr.dtype, np.floating), arr.dtype)
    if allow_neg_inf:
        bad = np.isnan(arr).any() or np.isposinf(arr).any()
    else:
        bad = not np.isfinite(arr).all()
    if bad:
        raise v.nonfinite_error(name)
    return arr


def _head_gates(head_gates, n_heads: int, batch: tuple[int, ...], dtype) -> np.ndarray | None:
    """The gates as an array of the inputs' dtype (0/1 integers and booleans are accepted)."""
    if head_gates is None:
        return None
    gates = head_gates if isinstance(head_gates, np.ndarray) else np.asarray(head_gates)
    if gates.dtype == np.bool_ or np.issubdtype(gates.dtype, np.integer):
        gates = gates.astype(dtype)
    gates = _float_array("head_gates", gates)
    check_head_gates(gates, None, n_heads, batch)
    return gates.astype(dtype, copy=False)  # float64 gates must not promote float32 inputs


def _bool_mask(mask, target: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = mask if isinstance(mask, np.ndarray) else np.asarray(mask)
    v.check_mask_dtype(mask.dtype == np.bool_, mask.dtype)
    extra = mask.ndim - len(target)
    if extra > 0 and all(s == 1 for s in mask.shape[:extra]):
        mask = mask.reshape(mask.shape[extra:])  # drop leading 1-axes, e.g. causal_mask(n)[None]
    v.check_mask(mask.shape, target)
    return mask


# ----------------------------------------------------------------------------------------------
# Scaled dot-product attention


def softmax(x, axis: int = -1) -> np.ndarray:
    """softmax(x)_j = exp(x_j - m) / sum_k exp(x_k - m), with m = max_k x_k along `axis`.

    Subtracting the row maximum changes nothing mathematically but keeps exp() from overflowing.
    -inf entries (masked keys) get weight 0; a row that is entirely -inf gives zeros, not NaN.
    Half precision (float16; in torch also bfloat16) is computed in float32 and returned in its
    own dtype.
    """
    x = _float_array("x", x, allow_neg_inf=True)
    if x.ndim == 0:
        raise ValueError("softmax needs at least one axis to normalise over; got a 0-d array")
    work = x.astype(np.float32 if x.dtype == np.float16 else x.dtype, copy=True)
    return _softmax_(work, axis).astype(x.dtype, copy=False)


def _softmax_(x: np.ndarray, axis: int) -> np.ndarray:
    """Softmax computed in place in `x` (a scratch array the caller owns)."""
    m = np.fmax.reduce(x, axis=axis, keepdims=True)  # = x.max(...), but about twice as fast here
    m[~np.isfinite(m)] = 0  # an all -inf row: exp(-inf - 0) = 0 instead of exp(nan)
    x -= m
    np.exp(x, out=x)
    s = x.sum(axis=axis, keepdims=True)
    s[s == 0] = 1  # an all -inf row is all zeros after exp: dividing by 1 keeps it so
    x /= s
    return x


def scaled_dot_product_attention(Q, K, V, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Z, A = softmax(Q K^T / sqrt(d_k)) V.

    Q (..., n_q, d_k), K (..., n_k, d_k), V (..., n_k, d_v); mask boolean, broadcastable to
    (..., n_q, n_k), True = may attend. Returns Z (..., n_q, d_v) and A (..., n_q, n_k).
    A query whose keys are all masked gets a zero row in A and in Z.
    """
    Q, K, V = _float_array("Q", Q), _float_array("K", K), _float_array("V", V)
    scores_shape = v.check_qkv(Q.shape, K.shape, V.shape)
    return _sdpa(Q, K, V, _bool_mask(mask, scores_shape))


def _sdpa(Q, K, V, mask):
    scale = np.asarray(1.0 / np.sqrt(Q.shape[-1]), dtype=Q.dtype)  # a NumPy float64 scalar would
    # promote float32 to float64; scaling Q (n_q x d_k numbers) is cheaper than scaling the scores
    scores = (Q * scale) @ K.swapaxes(-1, -2)  # (..., n_q, n_k) = Q K^T / sqrt(d_k)
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)  # (..., n_q, n_k)
    A = _softmax_(scores, axis=-1)  # (..., n_q, n_k)
    Z = A @ V  # (..., n_q, d_v)
    return Z, A


def causal_mask(n: int) -> np.ndarray:
    """(n, n) boolean, True on and below the diagonal: query i may attend to keys 0..i.

    n: a non-negative Python or NumPy integer. torch_attention's also takes `device`.
    """
    n = v.check_length("causal_mask", n)
    return np.tril(np.ones((n, n), dtype=bool))  # (n, n)


def padding_mask(lengths, n: int) -> np.ndarray:
    """(batch, 1, n) boolean, True for key positions < lengths[b]; broadcasts over queries.

    lengths: (batch,) integers in [0, n], a list or an array (in torch also a tensor).
    torch_attention's also takes `device`.
    """
    n = v.check_length("padding_mask", n)
    lengths = np.asarray(lengths)
    v.check_lengths(lengths.shape, np.issubdtype(lengths.dtype, np.integer), lengths.dtype,
                    lengths.tolist(), n)
    return np.arange(n)[None, None, :] < lengths[:, None, None]  # (batch, 1, n)


# ----------------------------------------------------------------------------------------------
# Multi-head attention


class MHAOutput(NamedTuple):
    """What multi-head attention returns: the output, every head's weights A_i, and every head's
    output Z_i = A_i V_i before the gates (what analysis and ablation need)."""

    out: np.ndarray  # (..., n_q, d_model)
    weights: np.ndarray  # (..., n_heads, n_q, n_k)
    heads: np.ndarray  # (..., n_heads, n_q, d_v), the per-head outputs Z_i


def init_params(d_model: int, n_heads: int, *, d_k: int | None = None, d_v: int | None = None,
                bias: bool = False, seed: int = 0, dtype=np.float64) -> MHAParams:
    """Xavier/Glorot-uniform weights, one independent matrix per head; zero biases if `bias`.

    d_k and d_v default to d_model // n_heads, so h heads cost as many parameters as one head
    of size d_model. NumPy's generator seeded with `seed` draws every weight in float64, which is
    then cast to `dtype`: both cores give exactly the same numbers for the same seed and shapes
    (torch_attention's as tensors, on `device`).
    """
    d_k, d_v = v.head_sizes(d_model, n_heads, d_k, d_v)
    rng = np.random.default_rng(seed)

    def xavier(shape, fan_in, fan_out):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-bound, bound, size=shape).astype(dtype)

    zeros = (lambda *s: np.zeros(s, dtype=dtype)) if bias else (lambda *s: None)
    return MHAParams(
        W_Q=xavier((n_heads, d_model, d_k), d_model, d_k),
        W_K=xavier((n_heads, d_model, d_k), d_model, d_k),
        W_V=xavier((n_heads, d_model, d_v), d_model, d_v),
        W_O=xavier((n_heads * d_v, d_model), n_heads * d_v, d_model),
        b_Q=zeros(n_heads, d_k), b_K=zeros(n_heads, d_k), b_V=zeros(n_heads, d_v),
        b_O=zeros(d_model),
    )


def _check_mha_inputs(X_q, X_kv, params: MHAParams, mask, head_gates=None):
    if not isinstance(params, MHAParams):
        raise TypeError(f"params must be an MHAParams; got {type(params).__name__}")
    X_q, X_kv = _float_array("X_q", X_q), _float_array("X_kv", X_kv)
    v.check_inputs_match_params("X_q", X_q.shape, params.d_model)
    v.check_inputs_match_params("X_kv", X_kv.shape, params.d_model)
    batch = v.broadcast_shapes("X_q", X_q.shape[:-2], "X_kv", X_kv.shape[:-2])
    return (X_q, X_kv, _bool_mask(mask, batch + (X_q.shape[-2], X_kv.shape[-2])),
            _head_gates(head_gates, params.n_heads, batch, np.result_type(X_q, X_kv)))


def project(X, W, b=None):
    """Every head's projection at once: X (..., n, d_model), W (n_heads, d_model, d_k),
    b (n_heads, d_k) or None -> X W_i + b_i for each head i, stacked as (..., n_heads, n, d_k).

    One matmul with the heads side by side: the same numbers as `X @ W[i]` head by head.
    """
    n_heads, d_model, d_k = W.shape
    W_all = W.transpose(1, 0, 2).reshape(d_model, n_heads * d_k)  # (d_model, n_heads * d_k)
    P = X.reshape(-1, d_model) @ W_all  # (batch * n, n_heads * d_k): one 2-D matmul
    P = P.reshape(*X.shape[:-1], n_heads, d_k)  # (..., n, n_heads, d_k)
    if b is not None:
        P += b  # b (n_heads, d_k) broadcasts over positions
    return np.moveaxis(P, -2, -3)  # (..., n_heads, n, d_k)


def _mha_forward(X_q, X_kv, p: MHAParams, mask, gates=None):
    """The batched forward pass; returns the output and the intermediates backward needs."""
    Q = project(X_q, p.W_Q, p.b_Q)  # (..., n_heads, n_q, d_k)
    K = project(X_kv, p.W_K, p.b_K)  # (..., n_heads, n_k, d_k)
    V = project(X_kv, p.W_V, p.b_V)  # (..., n_heads, n_k, d_v)
    head_mask = None if mask is None else mask[..., None, :, :]  # (..., 1, n_q, n_k)
    Z, A = _sdpa(Q, K, V, head_mask)  # (..., n_heads, n_q, d_v), (..., n_heads, n_q, n_k)
    gated = Z if gates is None else Z * gates[..., None, None]  # (..., n_heads, n_q, d_v)
    concat = np.moveaxis(gated, -3, -2)  # (..., n_q, n_heads, d_v)
    concat = concat.reshape(*concat.shape[:-2], p.n_heads * p.d_v)  # (..., n_q, n_heads * d_v)
    out = concat.reshape(-1, concat.shape[-1]) @ p.W_O  # (batch * n_q, d_model)
    out = out.reshape(*concat.shape[:-1], p.d_model)  # (..., n_q, d_model)
    if p.b_O is not None:
        out += p.b_O
    return MHAOutput(out, A, Z), (Q, K, V, concat)


def multi_head_attention(X_q, X_kv, params: MHAParams, mask=None, head_gates=None) -> MHAOutput:
    """Batched multi-head attention: all heads in one matmul per projection.

    X_q (..., n_q, d_model), X_kv (..., n_k, d_model) (self-attention: X_kv = X_q);
    mask broadcastable to (..., n_q, n_k), True = may attend, shared by every head.
    head_gates: None (every gate 1), or xi (n_heads,) / broadcastable to (..., n_heads), which
    multiplies each head's output before W^O: out = Concat(xi_1 Z_1, ..., xi_h Z_h) W^O + b^O.
    A gate of 0 removes the head (as if its row block of W^O were zero); 1 leaves it as it is.
    Returns MHAOutput(out (..., n_q, d_model), weights (..., n_heads, n_q, n_k),
    heads (..., n_heads, n_q, d_v)); `heads` are Z_i = A_i V_i before the gates.
    Gradients, dL/dxi included (head importance, Michel et al. 2019): by hand in NumPy with
    `multi_head_attention_backward`; by autograd in torch (gates with requires_grad=True),
    where `params` may also be a `MultiHeadAttention` module.
    """
    X_q, X_kv, mask, gates = _check_mha_inputs(X_q, X_kv, params, mask, head_gates)
    return _mha_forward(X_q, X_kv, params, mask, gates)[0]


def multi_head_attention_loop(X_q, X_kv, params: MHAParams, mask=None,
                              head_gates=None) -> MHAOutput:
    """The same computation, one head at a time, exactly as the equations are written."""
    X_q, X_kv, mask, gates = _check_mha_inputs(X_q, X_kv, params, mask, head_gates)
    p = params
    heads, weights = [], []
    for i in range(p.n_heads):
        Q_i = X_q @ p.W_Q[i]  # (..., n_q, d_k)
        K_i = X_kv @ p.W_K[i]  # (..., n_k, d_k)
        V_i = X_kv @ p.W_V[i]  # (..., n_k, d_v)
        if p.b_Q is not None:
            Q_i = Q_i + p.b_Q[i]
        if p.b_K is not None:
            K_i = K_i + p.b_K[i]
        if p.b_V is not None:
            V_i = V_i + p.b_V[i]
        Z_i, A_i = _sdpa(Q_i, K_i, V_i, mask)  # (..., n_q, d_v), (..., n_q, n_k)
        heads.append(Z_i)
        weights.append(A_i)
    gated = heads if gates is None else [Z_i * gates[..., i, None, None]  # (..., n_q, d_v)
                                         for i, Z_i in enumerate(heads)]
    concat = np.concatenate(gated, axis=-1)  # (..., n_q, n_heads * d_v)
    out = concat @ p.W_O  # (..., n_q, d_model)
    if p.b_O is not None:
        out = out + p.b_O
    return MHAOutput(out, np.stack(weights, axis=-3), np.stack(heads, axis=-3))


# ----------------------------------------------------------------------------------------------
# Backward pass, written out by hand (the tests check it against finite differences and autograd)


def _sum_to_shape(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Undo broadcasting: sum the gradient over the axes that were broadcast to reach `shape`."""
    extra = grad.ndim - len(shape)
    grad = grad.sum(axis=tuple(range(extra))) if extra > 0 else grad
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1)
    return grad.sum(axis=axes, keepdims=True) if axes else grad


def softmax_backward(A, dA, axis: int = -1) -> np.ndarray:
    """dL/dx for A = softmax(x): dx = A * (dA - sum(dA * A, axis)), the Jacobian-vector product."""
    A, dA = np.asarray(A), np.asarray(dA)
    if A.shape != dA.shape:
        raise ValueError(f"A and dA must have the same shape; got {A.shape} and {dA.shape}")
    return A * (dA - (dA * A).sum(axis=axis, keepdims=True))


def _sdpa_backward(dZ, Q, K, V, A):
    scale = 1.0 / np.sqrt(Q.shape[-1])
    dV = A.swapaxes(-1, -2) @ dZ  # (..., n_k, d_v)
    dA = dZ @ V.swapaxes(-1, -2)  # (..., n_q, n_k)
    dS = softmax_backward(A, dA) * scale  # (..., n_q, n_k); masked keys have A = 0, so dS = 0
    dQ = dS @ K  # (..., n_q, d_k)
    dK = dS.swapaxes(-1, -2) @ Q  # (..., n_k, d_k)
    return dQ, dK, dV


def scaled_dot_product_attention_backward(dZ, Q, K, V, mask=None):
    """Gradients (dQ, dK, dV) of a loss L given dZ = dL/dZ for Z = softmax(QK^T/sqrt(d_k)) V."""
    Q, K, V = _float_array("Q", Q), _float_array("K", K), _float_array("V", V)
    scores_shape = v.check_qkv(Q.shape, K.shape, V.shape)
    Z, A = _sdpa(Q, K, V, _bool_mask(mask, scores_shape))
    dZ = _float_array("dZ", dZ)
    if dZ.shape != Z.shape:
        raise ValueError(f"dZ must have the shape of Z {v.fmt(Z.shape)}; got {v.fmt(dZ.shape)}")
    dQ, dK, dV = _sdpa_backward(dZ, Q, K, V, A)
    return _sum_to_shape(dQ, Q.shape), _sum_to_shape(dK, K.shape), _sum_to_shape(dV, V.shape)


@dataclass
class MHAGrads:
    """dL/d(each input and parameter) of multi-head attention; None where a bias is absent."""

    X_q: np.ndarray
    X_kv: np.ndarray
    W_Q: np.ndarray
    W_K: np.ndarray
    W_V: np.ndarray
    W_O: np.ndarray
    b_Q: np.ndarray | None = None
    b_K: np.ndarray | None = None
    b_V: np.ndarray | None = None
    b_O: np.ndarray | None = None
    head_gates: np.ndarray | None = None  # dL/dxi, shaped like the gates given (None: no gates)


def multi_head_attention_backward(d_out, X_q, X_kv, params: MHAParams, mask=None,
                                  head_gates=None) -> MHAGrads:
    """Backpropagate d_out = dL/d(out) through multi-head attention (recomputing the forward).

    For self-attention (X_kv is X_q) the gradient with respect to X is grads.X_q + grads.X_kv.
    With head_gates xi, also dL/dxi_i = sum over queries and d_v of dL/d(xi_i Z_i) * Z_i.
    """
    X_q, X_kv, mask, gates = _check_mha_inputs(X_q, X_kv, params, mask, head_gates)
    p = params
    (out, A, Z), (Q, K, V, concat) = _mha_forward(X_q, X_kv, p, mask, gates)
    d_out = _float_array("d_out", d_out)
    if d_out.shape != out.shape:
        raise ValueError(f"d_out must have the shape of out {v.fmt(out.shape)}; "
                         f"got {v.fmt(d_out.shape)}")
    flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731  (every position as one row)
    dW_O = flat(concat).T @ flat(d_out)  # (n_heads * d_v, d_model)
    db_O = flat(d_out).sum(axis=0) if p.b_O is not None else None  # (d_model,)
    d_concat = d_out @ p.W_O.T  # (..., n_q, n_heads * d_v)
    dZ = d_concat.reshape(*d_concat.shape[:-1], p.n_heads, p.d_v)  # (..., n_q, n_heads, d_v)
    dZ = np.moveaxis(dZ, -2, -3)  # (..., n_heads, n_q, d_v), dL/d(xi_i Z_i)
    d_gates = None
    if gates is not None:
        d_gates = _sum_to_shape((dZ * Z).sum(axis=(-2, -1)), gates.shape)  # shaped like gates
        dZ = dZ * gates[..., None, None]  # (..., n_heads, n_q, d_v)
    dQ, dK, dV = _sdpa_backward(dZ, Q, K, V, A)  # per head, shaped like Q, K, V

    def through_projection(X, dP, W, has_bias):
        """P = X W_i + b_i for every head i: gradients for X, W and b."""
        dP_rows = dP.reshape(-1, *dP.shape[-3:])  # (batch, n_heads, n, d_k), batch dims flattened
        X_rows = np.broadcast_to(X[..., None, :, :], (*dP.shape[:-1], X.shape[-1]))
        X_rows = X_rows.reshape(-1, *X_rows.shape[-3:])  # (batch, n_heads, n, d_model)
        dW = np.einsum("bhnd,bhnk->hdk", X_rows, dP_rows)  # (n_heads, d_model, d_k)
        dX = np.einsum("...hnk,hdk->...nd", dP, W)  # (..., n, d_model)
        db = dP_rows.sum(axis=(0, 2)) if has_bias else None  # (n_heads, d_k)
        return _sum_to_shape(dX, X.shape), dW, db

    dX_q, dW_Q, db_Q = through_projection(X_q, dQ, p.W_Q, p.b_Q is not None)
    dX_k, dW_K, db_K = through_projection(X_kv, dK, p.W_K, p.b_K is not None)
    dX_v, dW_V, db_V = through_projection(X_kv, dV, p.W_V, p.b_V is not None)
    return MHAGrads(X_q=dX_q, X_kv=dX_k + dX_v, W_Q=dW_Q, W_K=dW_K, W_V=dW_V, W_O=dW_O,
                    b_Q=db_Q, b_K=db_K, b_V=db_V, b_O=db_O, head_gates=d_gates)

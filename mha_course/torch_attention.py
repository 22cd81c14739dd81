"""The same attention in PyTorch, name for name with `np_attention` (same signatures, same
docstrings: tests/test_mirror.py); autograd does the backward.

Device-agnostic: every function works on the device and dtype of its inputs (CPU or CUDA).
`MultiHeadAttention` keeps the per-head layout of `MHAParams`; `from_torch_mha` / `to_torch_mha`
convert from and to the fused layout of `torch.nn.MultiheadAttention`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mha_course import _validate as v
from mha_course import np_attention
from mha_course.params import MHAParams, check_head_gates

__all__ = [
    "softmax", "scaled_dot_product_attention", "causal_mask", "padding_mask",
    "MHAParams", "MHAOutput", "init_params", "multi_head_attention", "multi_head_attention_loop",
    "project",
    # torch only (tests/test_mirror.py says why)
    "MultiHeadAttention", "from_torch_mha", "to_torch_mha",
]

_PARAM_NAMES = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")


def _to_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    """A NumPy copy of a tensor, from any device; None stays None."""
    return None if t is None else t.detach().cpu().numpy().copy()


def _float_tensor(name: str, x, *, allow_neg_inf: bool = False) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__} "
                        "(use torch.as_tensor, or mha_course.np_attention for NumPy arrays)")
    v.check_float_dtype(name, x.is_floating_point(), x.dtype)
    if allow_neg_inf:
        bad = torch.isnan(x).any() or torch.isposinf(x).any()
    else:
        bad = not torch.isfinite(x).all()
    if bad:
        raise v.nonfinite_error(name)
    return x


def _bool_mask(mask, target: tuple[int, ...]) -> torch.Tensor | None:
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor of dtype torch.bool; "
                        f"got {type(mask).__name__}")
    v.check_mask_dtype(mask.dtype == torch.bool, mask.dtype)
    extra = mask.ndim - len(target)
    if extra > 0 and all(s == 1 for s in mask.shape[:extra]):
        mask = mask.reshape(mask.shape[extra:])  # drop leading 1-axes, e.g. causal_mask(n)[None]
    v.check_mask(tuple(mask.shape), target)
    return mask


# ----------------------------------------------------------------------------------------------
# Scaled dot-product attention


def softmax(x, axis: int = -1) -> torch.Tensor:
    """softmax(x)_j = exp(x_j - m) / sum_k exp(x_k - m), with m = max_k x_k along `axis`.

    Subtracting the row maximum changes nothing mathematically but keeps exp() from overflowing.
    -inf entries (masked keys) get weight 0; a row that is entirely -inf gives zeros, not NaN.
    Half precision (float16; in torch also bfloat16) is computed in float32 and returned in its
    own dtype.
    """
    x = _float_tensor("x", x, allow_neg_inf=True)
    if x.ndim == 0:
        raise ValueError("softmax needs at least one axis to normalise over; got a 0-d tensor")
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return _softmax(work, axis).to(x.dtype)


def _softmax(x: torch.Tensor, axis: int) -> torch.Tensor:
    m = x.amax(dim=axis, keepdim=True).detach()
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # an all -inf row: exp(-inf) = 0
    e = torch.exp(x - m)
    s = e.sum(dim=axis, keepdim=True)
    return e / torch.where(s > 0, s, torch.ones_like(s))  # rows with s == 0 stay all zero


def scaled_dot_product_attention(Q, K, V, mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Z, A = softmax(Q K^T / sqrt(d_k)) V.

    Q (..., n_q, d_k), K (..., n_k, d_k), V (..., n_k, d_v); mask boolean, broadcastable to
    (..., n_q, n_k), True = may attend. Returns Z (..., n_q, d_v) and A (..., n_q, n_k).
    A query whose keys are all masked gets a zero row in A and in Z.
    """
    Q, K, V = _float_tensor("Q", Q), _float_tensor("K", K), _float_tensor("V", V)
    scores_shape = v.check_qkv(tuple(Q.shape), tuple(K.shape), tuple(V.shape))
    return _sdpa(Q, K, V, _bool_mask(mask, scores_shape))


def _sdpa(Q, K, V, mask):
    scale = 1.0 / math.sqrt(Q.shape[-1])  # scaling Q (n_q x d_k numbers) is cheaper than the scores
    scores = (Q * scale) @ K.transpose(-1, -2)  # (..., n_q, n_k) = Q K^T / sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))  # (..., n_q, n_k)
    A = _softmax(scores, axis=-1)  # (..., n_q, n_k)
    Z = A @ V  # (..., n_q, d_v)
    return Z, A


def causal_mask(n: int, device=None) -> torch.Tensor:
    """(n, n) boolean, True on and below the diagonal: query i may attend to keys 0..i.

    n: a non-negative Python or NumPy integer. torch_attention's also takes `device`.
    """
    n = v.check_length("causal_mask", n)
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()  # (n, n)


def padding_mask(lengths, n: int, device=None) -> torch.Tensor:
    """(batch, 1, n) boolean, True for key positions < lengths[b]; broadcasts over queries.

    lengths: (batch,) integers in [0, n], a list or an array (in torch also a tensor).
    torch_attention's also takes `device`.
    """
    n = v.check_length("padding_mask", n)
    lengths = torch.as_tensor(lengths, device=device)
    is_integer = lengths.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)
    v.check_lengths(tuple(lengths.shape), is_integer, lengths.dtype, lengths.tolist(), n)
    positions = torch.arange(n, device=lengths.device)  # (n,)
    return positions[None, None, :] < lengths[:, None, None]  # (batch, 1, n)


# ----------------------------------------------------------------------------------------------
# Multi-head attention


class MHAOutput(NamedTuple):
    """What multi-head attention returns: the output, every head's weights A_i, and every head's
    output Z_i = A_i V_i before the gates (what analysis and ablation need)."""

    out: torch.Tensor  # (..., n_q, d_model)
    weights: torch.Tensor  # (..., n_heads, n_q, n_k)
    heads: torch.Tensor  # (..., n_heads, n_q, d_v), the per-head outputs Z_i


def init_params(d_model: int, n_heads: int, *, d_k: int | None = None, d_v: int | None = None,
                bias: bool = False, seed: int = 0, dtype=torch.float64,
                device=None) -> MHAParams:
    """Xavier/Glorot-uniform weights, one independent matrix per head; zero biases if `bias`.

    d_k and d_v default to d_model // n_heads, so h heads cost as many parameters as one head
    of size d_model. NumPy's generator seeded with `seed` draws every weight in float64, which is
    then cast to `dtype`: both cores give exactly the same numbers for the same seed and shapes
    (torch_attention's as tensors, on `device`).
    """
    drawn = np_attention.init_params(d_model, n_heads, d_k=d_k, d_v=d_v, bias=bias, seed=seed)
    if not isinstance(dtype, torch.dtype):  # a NumPy dtype such as np.float32
        dtype = torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
    # float64 -> dtype rounds to nearest, as NumPy's astype does: the same numbers
    return drawn.map(lambda a: torch.from_numpy(a).to(device=device, dtype=dtype))


def _param_tensors(params, like: torch.Tensor) -> dict:
    """W_Q ... b_O of an MHAParams (arrays or tensors) or a MultiHeadAttention, as tensors."""
    if not isinstance(params, (MHAParams, MultiHeadAttention)):
        raise TypeError(f"params must be an MHAParams or a MultiHeadAttention; "
                        f"got {type(params).__name__}")
    out = {}
    for name in _PARAM_NAMES:
        p = getattr(params, name)
        if p is not None and not isinstance(p, torch.Tensor):
            p = torch.as_tensor(np.asarray(p), dtype=like.dtype, device=like.device)
        out[name] = p
    return out


def _head_gates(head_gates, n_heads: int, batch: tuple[int, ...], like: torch.Tensor):
    """The gates as a tensor on the inputs' device and dtype (arrays, lists, 0/1 accepted);
    a tensor that requires grad keeps its graph, so dL/dxi comes out of autograd."""
    if head_gates is None:
        return None
    gates = head_gates
    if not isinstance(gates, torch.Tensor):
        gates = torch.as_tensor(np.asarray(gates), device=like.device)
    if not gates.is_floating_point():
        gates = gates.to(like.dtype)
    gates = _float_tensor("head_gates", gates)
    check_head_gates(gates, None, n_heads, batch)
    return gates.to(device=like.device, dtype=like.dtype)


def _check_mha_inputs(X_q, X_kv, params, mask, head_gates=None):
    X_q, X_kv = _float_tensor("X_q", X_q), _float_tensor("X_kv", X_kv)
    p = _param_tensors(params, X_q)
    d_model = p["W_Q"].shape[1]
    v.check_inputs_match_params("X_q", tuple(X_q.shape), d_model)
    v.check_inputs_match_params("X_kv", tuple(X_kv.shape), d_model)
    batch = v.broadcast_shapes("X_q", tuple(X_q.shape[:-2]), "X_kv", tuple(X_kv.shape[:-2]))
    return (X_q, X_kv, p, _bool_mask(mask, batch + (X_q.shape[-2], X_kv.shape[-2])),
            _head_gates(head_gates, p["W_Q"].shape[0], batch, X_q))


def project(X, W, b=None):
    """Every head's projection at once: X (..., n, d_model), W (n_heads, d_model, d_k),
    b (n_heads, d_k) or None -> X W_i + b_i for each head i, stacked as (..., n_heads, n, d_k).

    One matmul with the heads side by side: the same numbers as `X @ W[i]` head by head.
    """
    n_heads, d_model, d_k = W.shape
    W_all = W.permute(1, 0, 2).reshape(d_model, n_heads * d_k)  # (d_model, n_heads * d_k)
    P = X.reshape(-1, d_model) @ W_all  # (batch * n, n_heads * d_k): one 2-D matmul
    P = P.reshape(*X.shape[:-1], n_heads, d_k)  # (..., n, n_heads, d_k)
    if b is not None:
        P = P + b  # b (n_heads, d_k) broadcasts over positions
    return P.movedim(-2, -3)  # (..., n_heads, n, d_k)


def multi_head_attention(X_q, X_kv, params, mask=None, head_gates=None) -> MHAOutput:
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
    X_q, X_kv, p, mask, gates = _check_mha_inputs(X_q, X_kv, params, mask, head_gates)
    n_heads, d_v = p["W_V"].shape[0], p["W_V"].shape[2]
    Q = project(X_q, p["W_Q"], p["b_Q"])  # (..., n_heads, n_q, d_k)
    K = project(X_kv, p["W_K"], p["b_K"])  # (..., n_heads, n_k, d_k)
    V = project(X_kv, p["W_V"], p["b_V"])  # (..., n_heads, n_k, d_v)
    head_mask = None if mask is None else mask[..., None, :, :]  # (..., 1, n_q, n_k)
    Z, A = _sdpa(Q, K, V, head_mask)  # (..., n_heads, n_q, d_v), (..., n_heads, n_q, n_k)
    gated = Z if gates is None else Z * gates[..., None, None]  # (..., n_heads, n_q, d_v)
    concat = gated.movedim(-3, -2)  # (..., n_q, n_heads, d_v)
    concat = concat.reshape(*concat.shape[:-2], n_heads * d_v)  # (..., n_q, n_heads * d_v)
    out = concat @ p["W_O"]  # (..., n_q, d_model)
    if p["b_O"] is not None:
        out = out + p["b_O"]
    return MHAOutput(out, A, Z)


def multi_head_attention_loop(X_q, X_kv, params, mask=None, head_gates=None) -> MHAOutput:
    """The same computation, one head at a time, exactly as the equations are written."""
    X_q, X_kv, p, mask, gates = _check_mha_inputs(X_q, X_kv, params, mask, head_gates)
    heads, weights = [], []
    for i in range(p["W_Q"].shape[0]):
        Q_i = X_q @ p["W_Q"][i]  # (..., n_q, d_k)
        K_i = X_kv @ p["W_K"][i]  # (..., n_k, d_k)
        V_i = X_kv @ p["W_V"][i]  # (..., n_k, d_v)
        if p["b_Q"] is not None:
            Q_i = Q_i + p["b_Q"][i]
        if p["b_K"] is not None:
            K_i = K_i + p["b_K"][i]
        if p["b_V"] is not None:
            V_i = V_i + p["b_V"][i]
        Z_i, A_i = _sdpa(Q_i, K_i, V_i, mask)  # (..., n_q, d_v), (..., n_q, n_k)
        heads.append(Z_i)
        weights.append(A_i)
    gated = heads if gates is None else [Z_i * gates[..., i, None, None]  # (..., n_q, d_v)
                                         for i, Z_i in enumerate(heads)]
    concat = torch.cat(gated, dim=-1)  # (..., n_q, n_heads * d_v)
    out = concat @ p["W_O"]  # (..., n_q, d_model)
    if p["b_O"] is not None:
        out = out + p["b_O"]
    return MHAOutput(out, torch.stack(weights, dim=-3), torch.stack(heads, dim=-3))


class MultiHeadAttention(nn.Module):
    """Multi-head attention with per-head parameters W_Q, W_K, W_V (n_heads, d_model, d_k|d_v),
    W_O (n_heads * d_v, d_model) and optional biases, named and laid out as in MHAParams."""

    def __init__(self, d_model: int, n_heads: int, *, d_k: int | None = None,
                 d_v: int | None = None, bias: bool = False, device=None, dtype=None):
        super().__init__()
        d_k, d_v = v.head_sizes(d_model, n_heads, d_k, d_v)
        kw = {"device": device, "dtype": dtype}
        self.W_Q = nn.Parameter(torch.empty(n_heads, d_model, d_k, **kw))
        self.W_K = nn.Parameter(torch.empty(n_heads, d_model, d_k, **kw))
        self.W_V = nn.Parameter(torch.empty(n_heads, d_model, d_v, **kw))
        self.W_O = nn.Parameter(torch.empty(n_heads * d_v, d_model, **kw))
        shapes = {"b_Q": (n_heads, d_k), "b_K": (n_heads, d_k), "b_V": (n_heads, d_v),
                  "b_O": (d_model,)}
        for name, shape in shapes.items():
            self.register_parameter(name, nn.Parameter(torch.zeros(shape, **kw)) if bias else None)
        self.reset_parameters()

    n_heads = property(lambda self: self.W_Q.shape[0])
    d_model = property(lambda self: self.W_Q.shape[1])
    d_k = property(lambda self: self.W_Q.shape[2])
    d_v = property(lambda self: self.W_V.shape[2])

    def reset_parameters(self) -> None:
        """Xavier/Glorot uniform per head matrix (as np_attention.init_params), zero biases."""
        with torch.no_grad():
            for W in (self.W_Q, self.W_K, self.W_V):
                bound = math.sqrt(6.0 / (W.shape[1] + W.shape[2]))
                W.uniform_(-bound, bound)
            nn.init.xavier_uniform_(self.W_O)
            for b in (self.b_Q, self.b_K, self.b_V, self.b_O):
                if b is not None:
                    b.zero_()

    def forward(self, x_q, x_kv=None, mask=None, head_gates=None) -> MHAOutput:
        """Self-attention when x_kv is None; head_gates as in `multi_head_attention`."""
        return multi_head_attention(x_q, x_q if x_kv is None else x_kv, self, mask, head_gates)

    @classmethod
    def from_params(cls, params: MHAParams, device=None, dtype=None) -> "MultiHeadAttention":
        """A module holding a copy of `params` (NumPy arrays or tensors)."""
        has_bias = [getattr(params, b) is not None for b in ("b_Q", "b_K", "b_V", "b_O")]
        if any(has_bias) and not all(has_bias):
            raise ValueError("from_params needs all four biases or none; got "
                             f"{dict(zip(('b_Q', 'b_K', 'b_V', 'b_O'), has_bias))}")
        src = params.map(lambda a: a if isinstance(a, torch.Tensor)
                         else torch.as_tensor(np.asarray(a)))
        m = cls(params.d_model, params.n_heads, d_k=params.d_k, d_v=params.d_v,
                bias=all(has_bias), device=device, dtype=src.W_Q.dtype if dtype is None else dtype)
        with torch.no_grad():
            for name in _PARAM_NAMES:
                if getattr(src, name) is not None:
                    getattr(m, name).copy_(getattr(src, name))
        return m

    def to_params(self) -> MHAParams:
        """A copy of the parameters as NumPy arrays."""
        return MHAParams(**{name: _to_numpy(getattr(self, name)) for name in _PARAM_NAMES})

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_heads={self.n_heads}, d_k={self.d_k}, d_v={self.d_v}, "
                f"bias={self.b_Q is not None}")


# ----------------------------------------------------------------------------------------------
# Converters to and from torch.nn.MultiheadAttention's fused layout


def from_torch_mha(m: nn.MultiheadAttention) -> MHAParams:
    """Per-head MHAParams (NumPy) from nn.MultiheadAttention.

    torch stores in_proj_weight (3 * d_model, d_model) and computes q = x @ W^T; head i uses the
    output rows i*d_k:(i+1)*d_k, so W_Q[i] = W_q[i*d_k:(i+1)*d_k].T;
    out = concat @ out_proj.weight.T.
    """
    if not isinstance(m, nn.MultiheadAttention):
        raise TypeError(f"expected torch.nn.MultiheadAttention; got {type(m).__name__}")
    if m.bias_k is not None or m.add_zero_attn:
        raise ValueError("add_bias_kv and add_zero_attn have no counterpart in MHAParams")
    if not m._qkv_same_embed_dim:
        raise ValueError(f"kdim={m.kdim} and vdim={m.vdim} must equal embed_dim={m.embed_dim}: "
                         "MHAParams projects queries, keys and values from the same d_model")
    d_model, n_heads = m.embed_dim, m.num_heads
    d_k = d_model // n_heads
    W = _to_numpy(m.in_proj_weight)  # (3 * d_model, d_model): q, k, v rows stacked
    W = W.reshape(3, n_heads, d_k, d_model).transpose(0, 1, 3, 2)  # (qkv, n_heads, d_model, d_k)
    b = ([None] * 3 if m.in_proj_bias is None
         else _to_numpy(m.in_proj_bias).reshape(3, n_heads, d_k))  # (qkv, n_heads, d_k)
    W_O = _to_numpy(m.out_proj.weight).T  # (n_heads * d_k, d_model)
    return MHAParams(W_Q=W[0], W_K=W[1], W_V=W[2], W_O=W_O, b_Q=b[0], b_K=b[1], b_V=b[2],
                     b_O=_to_numpy(m.out_proj.bias))


def to_torch_mha(params: MHAParams, batch_first: bool = True) -> nn.MultiheadAttention:
    """nn.MultiheadAttention with the same weights (it needs d_k = d_v = d_model / n_heads)."""
    n_heads, d_model, d_k, d_v = params.n_heads, params.d_model, params.d_k, params.d_v
    if d_k != d_v or n_heads * d_k != d_model:
        raise ValueError(f"torch.nn.MultiheadAttention needs d_k = d_v = d_model / n_heads; "
                         f"got d_k={d_k}, d_v={d_v}, d_model={d_model}, n_heads={n_heads}")
    p = params.map(lambda a: torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor)
                   else a.detach().cpu())
    has_bias = p.b_Q is not None or p.b_O is not None
    m = nn.MultiheadAttention(d_model, n_heads, bias=has_bias, batch_first=batch_first,
                              dtype=p.W_Q.dtype)

    def fused(W):  # (n_heads, d_model, d_k) -> (n_heads * d_k, d_model), torch's rows
        return W.permute(0, 2, 1).reshape(n_heads * d_k, d_model)

    def zeros(*shape):
        return torch.zeros(shape, dtype=p.W_Q.dtype)

    with torch.no_grad():
        m.in_proj_weight.copy_(torch.cat([fused(p.W_Q), fused(p.W_K), fused(p.W_V)]))
        m.out_proj.weight.copy_(p.W_O.T)
        if has_bias:
            parts = [zeros(n_heads, d_k) if b is None else b for b in (p.b_Q, p.b_K, p.b_V)]
            m.in_proj_bias.copy_(torch.cat([b.reshape(-1) for b in parts]))
            m.out_proj.bias.copy_(zeros(d_model) if p.b_O is None else p.b_O)
    return m

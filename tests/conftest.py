"""Shared helpers for the attention-core tests.

Everything here is written independently of ``mha_course`` (plain NumPy / torch),
so that it can serve as a reference and not merely echo the implementation.
"""

from __future__ import annotations

import os

import numpy as np

# Notebook kernels started by the tests (nbval, nbclient) inherit this environment. With
# MPLBACKEND=Agg (common in CI) a notebook without `%matplotlib inline` draws its widgets' figures
# into nothing and still passes; unset it so that kernels always draw inline.
os.environ.pop("MPLBACKEND", None)

try:  # torch is a hard dependency of the course, but keep NumPy tests importable without it
    import torch
except ImportError:  # pragma: no cover
    torch = None

BIAS_NAMES = ("b_Q", "b_K", "b_V", "b_O")
WEIGHT_NAMES = ("W_Q", "W_K", "W_V", "W_O")
PARAM_NAMES = WEIGHT_NAMES + BIAS_NAMES


# --------------------------------------------------------------------------- arrays
def to_numpy(x):
    """A NumPy array from a NumPy array or a (possibly grad-requiring, possibly CUDA) tensor."""
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def max_abs_diff(a, b) -> float:
    a, b = to_numpy(a), to_numpy(b)
    assert a.shape == b.shape, f"shape mismatch: {a.shape} vs {b.shape}"
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def assert_close(actual, expected, atol, what=""):
    """max |actual - expected| <= atol (NaN anywhere fails)."""
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    assert np.all(np.isfinite(a)), f"{what}: non-finite values in result"
    d = max_abs_diff(a, e)
    assert d <= atol, f"{what}: max abs diff {d:.3e} > {atol:.1e}"


def rel_error(a, b) -> float:
    """||a - b|| / max(||a||, ||b||, tiny): the usual gradient-check relative error."""
    a = to_numpy(a).astype(np.float64).ravel()
    b = to_numpy(b).astype(np.float64).ravel()
    den = max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)
    return float(np.linalg.norm(a - b) / den)


# --------------------------------------------------------------------------- params
def random_params(
    d_model=8, n_heads=2, d_k=None, d_v=None, *, bias=False, seed=0, dtype=np.float64
):
    """An MHAParams with random (normal, ~unit-variance outputs) weights and random,
    *non-zero* biases -- independent of ``init_params``."""
    from mha_course.np_attention import MHAParams

    d_k = d_model // n_heads if d_k is None else d_k
    d_v = d_model // n_heads if d_v is None else d_v
    rng = np.random.default_rng(seed)

    def w(*shape, fan_in):
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(dtype)

    kw = dict(
        W_Q=w(n_heads, d_model, d_k, fan_in=d_model),
        W_K=w(n_heads, d_model, d_k, fan_in=d_model),
        W_V=w(n_heads, d_model, d_v, fan_in=d_model),
        W_O=w(n_heads * d_v, d_model, fan_in=n_heads * d_v),
        b_Q=None,
        b_K=None,
        b_V=None,
        b_O=None,
    )
    if bias:
        kw.update(
            b_Q=(0.5 * rng.standard_normal((n_heads, d_k))).astype(dtype),
            b_K=(0.5 * rng.standard_normal((n_heads, d_k))).astype(dtype),
            b_V=(0.5 * rng.standard_normal((n_heads, d_v))).astype(dtype),
            b_O=(0.5 * rng.standard_normal((d_model,))).astype(dtype),
        )
    return MHAParams(**kw)


def params_dict(params) -> dict:
    return {name: getattr(params, name) for name in PARAM_NAMES}


def torch_params(params, *, requires_grad=False, device="cpu", dtype=None):
    """An MHAParams of torch tensors built from one of NumPy arrays."""
    from mha_course.np_attention import MHAParams

    out = {}
    for name, v in params_dict(params).items():
        if v is None:
            out[name] = None
            continue
        t = torch.as_tensor(np.array(v), device=device)
        if dtype is not None:
            t = t.to(dtype)
        out[name] = t.requires_grad_(requires_grad)
    return MHAParams(**out)


# --------------------------------------------------------------------------- references
def ref_softmax(x, axis=-1):
    """Textbook softmax in float64 with fully -inf rows mapped to 0."""
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(x - m)
    s = np.sum(e, axis=axis, keepdims=True)
    return np.divide(e, s, out=np.zeros_like(e), where=s > 0)


def ref_sdpa(Q, K, V, mask=None):
    """Reference attention, one query row at a time (float64)."""
    Q, K, V = (np.asarray(a, dtype=np.float64) for a in (Q, K, V))
    d_k = Q.shape[-1]
    S = np.einsum("...qd,...kd->...qk", Q, K) / np.sqrt(d_k)
    if mask is not None:
        mask = np.broadcast_to(mask, S.shape)
        S = np.where(mask, S, -np.inf)
    A = ref_softmax(S, axis=-1)
    Z = np.einsum("...qk,...kv->...qv", A, V)
    return Z, A


def ref_mha(X_q, X_kv, params, mask=None):
    """Reference multi-head attention with an explicit head loop, float64.

    Returns (out, weights (..., h, n_q, n_k), heads (..., h, n_q, d_v))."""
    p = {k: (None if v is None else np.asarray(to_numpy(v), dtype=np.float64))
         for k, v in params_dict(params).items()}
    X_q = np.asarray(X_q, dtype=np.float64)
    X_kv = np.asarray(X_kv, dtype=np.float64)
    n_heads = p["W_Q"].shape[0]
    d_v = p["W_V"].shape[-1]
    Ws, Zs = [], []
    for i in range(n_heads):
        Q = X_q @ p["W_Q"][i] + (0 if p["b_Q"] is None else p["b_Q"][i])
        K = X_kv @ p["W_K"][i] + (0 if p["b_K"] is None else p["b_K"][i])
        V = X_kv @ p["W_V"][i] + (0 if p["b_V"] is None else p["b_V"][i])
        Z, A = ref_sdpa(Q, K, V, mask)
        Ws.append(A)
        Zs.append(Z)
    out = sum(Zs[i] @ p["W_O"][i * d_v:(i + 1) * d_v] for i in range(n_heads))
    if p["b_O"] is not None:
        out = out + p["b_O"]
    return out, np.stack(Ws, axis=-3), np.stack(Zs, axis=-3)


def ref_causal(n):
    return np.tril(np.ones((n, n), dtype=bool))


def ref_padding(lengths, n):
    lengths = np.asarray(lengths)
    return (np.arange(n)[None, :] < lengths[:, None])[:, None, :]


# --------------------------------------------------------------------------- numerical grads
def numerical_grad(f, x, h=1e-6):
    """Central differences of the scalar f() w.r.t. the float64 array x (perturbed in place)."""
    g = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + h
        fp = f()
        x[idx] = old - h
        fm = f()
        x[idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g

"""Property-based tests (hypothesis) for the NumPy backend, plus one NumPy-vs-torch sweep."""

from __future__ import annotations

import numpy as np
import torch
from conftest import assert_close, random_params, ref_mha, torch_params
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mha_course import np_attention as npa
from mha_course import torch_attention as tta

SETTINGS = settings(max_examples=50, deadline=None)
FLOATS = st.floats(-3, 3, allow_nan=False, allow_infinity=False, width=64)
BATCH = hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)


def arrays(shape, elements=FLOATS):
    return hnp.arrays(np.float64, shape, elements=elements)


@st.composite
def sdpa_inputs(draw):
    batch = draw(BATCH)
    n_q, n_k = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    d_k, d_v = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    Q = draw(arrays(batch + (n_q, d_k)))
    K = draw(arrays(batch + (n_k, d_k)))
    V = draw(arrays(batch + (n_k, d_v)))
    mask = draw(st.none() | hnp.arrays(np.bool_, batch + (n_q, n_k)))
    return Q, K, V, mask


@st.composite
def mha_setup(draw, square=False):
    """(X_q, X_kv, params, mask) with small random sizes; params have random values."""
    batch = draw(BATCH)
    n_heads = draw(st.integers(1, 3))
    d_model = draw(st.integers(1, 5))
    d_k, d_v = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    bias = draw(st.booleans())
    p = random_params(d_model, n_heads, d_k, d_v, bias=bias, seed=draw(st.integers(0, 2**16)))
    n_q = draw(st.integers(1, 5))
    n_k = n_q if square else draw(st.integers(1, 5))
    X_q = draw(arrays(batch + (n_q, d_model)))
    X_kv = draw(arrays(batch + (n_k, d_model)))
    mask = draw(st.none() | hnp.arrays(np.bool_, batch + (n_q, n_k)))
    return X_q, X_kv, p, mask


# --------------------------------------------------------------------------- attention weights
@SETTINGS
@given(sdpa_inputs())
def test_attention_rows_sum_to_one_and_masked_keys_zero(inp):
    Q, K, V, mask = inp
    Z, A = npa.scaled_dot_product_attention(Q, K, V, mask)
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(Z))
    assert np.all(A >= 0)
    sums = A.sum(-1)
    if mask is None:
        np.testing.assert_allclose(sums, 1.0, rtol=0, atol=1e-12)
        return
    has_key = mask.any(-1)
    np.testing.assert_allclose(sums[has_key], 1.0, rtol=0, atol=1e-12)
    # masked keys get exactly zero weight
    assert np.all(A[~mask] == 0.0)
    # fully-masked query rows: zeros, not NaN, in both A and Z
    assert np.all(A[~has_key] == 0.0)
    assert np.all(Z[~has_key] == 0.0)


@SETTINGS
@given(mha_setup())
def test_mha_fully_masked_rows_zero_and_weights_normalised(setup):
    X_q, X_kv, p, mask = setup
    res = npa.multi_head_attention(X_q, X_kv, p, mask)
    assert np.all(np.isfinite(res.out))
    if mask is None:
        np.testing.assert_allclose(res.weights.sum(-1), 1.0, rtol=0, atol=1e-12)
        return
    m = np.expand_dims(mask, -3)  # same mask for every head
    m = np.broadcast_to(m, res.weights.shape)
    assert np.all(res.weights[~m] == 0.0)
    empty = ~mask.any(-1)  # (..., n_q)
    e = np.broadcast_to(np.expand_dims(empty, -2), res.weights.shape[:-1])
    assert np.all(res.heads[e] == 0.0)
    np.testing.assert_allclose(res.weights.sum(-1)[~e], 1.0, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- softmax
@SETTINGS
@given(
    x=arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
             elements=st.floats(-50, 50, allow_nan=False, allow_infinity=False)),
    data=st.data(),
)
def test_softmax_shift_invariant(x, data):
    c = data.draw(arrays(x.shape[:-1] + (1,), elements=st.floats(-100, 100)))
    masked = data.draw(hnp.arrays(np.bool_, x.shape))
    x = np.where(masked, -np.inf, x)
    y = npa.softmax(x)
    ys = npa.softmax(x + c)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(ys, y, rtol=0, atol=1e-12)
    live = ~masked.all(-1)
    np.testing.assert_allclose(y.sum(-1)[live], 1.0, rtol=0, atol=1e-12)
    assert np.all(y[masked] == 0.0)


# --------------------------------------------------------------------------- symmetries
@SETTINGS
@given(mha_setup(square=True), st.data())
def test_self_attention_permutation_equivariance(setup, data):
    X, _, p, mask = setup
    n = X.shape[-2]
    perm = np.array(data.draw(st.permutations(range(n))))
    res = npa.multi_head_attention(X, X, p, mask)
    Xp = X[..., perm, :]
    mask_p = None if mask is None else mask[..., perm, :][..., perm]
    res_p = npa.multi_head_attention(Xp, Xp, p, mask_p)
    assert_close(res_p.out, res.out[..., perm, :], 1e-10, "out")
    assert_close(res_p.heads, res.heads[..., perm, :], 1e-10, "heads")
    assert_close(res_p.weights, res.weights[..., perm, :][..., perm], 1e-10, "weights")


@SETTINGS
@given(mha_setup(), st.data())
def test_head_permutation_invariance(setup, data):
    X_q, X_kv, p, mask = setup
    h, d_v, d_model = p.n_heads, p.d_v, p.d_model
    hp = np.array(data.draw(st.permutations(range(h))))
    perm_p = npa.MHAParams(
        W_Q=p.W_Q[hp],
        W_K=p.W_K[hp],
        W_V=p.W_V[hp],
        W_O=p.W_O.reshape(h, d_v, d_model)[hp].reshape(h * d_v, d_model),
        b_Q=None if p.b_Q is None else p.b_Q[hp],
        b_K=None if p.b_K is None else p.b_K[hp],
        b_V=None if p.b_V is None else p.b_V[hp],
        b_O=p.b_O,
    )
    res = npa.multi_head_attention(X_q, X_kv, p, mask)
    res_p = npa.multi_head_attention(X_q, X_kv, perm_p, mask)
    assert_close(res_p.out, res.out, 1e-10, "out")
    assert_close(res_p.weights, res.weights[..., hp, :, :], 1e-10, "weights")
    assert_close(res_p.heads, res.heads[..., hp, :, :], 1e-10, "heads")


# --------------------------------------------------------------------------- loop == batched
@SETTINGS
@given(mha_setup())
def test_loop_equals_batched(setup):
    X_q, X_kv, p, mask = setup
    a = npa.multi_head_attention(X_q, X_kv, p, mask)
    b = npa.multi_head_attention_loop(X_q, X_kv, p, mask)
    out_r, w_r, h_r = ref_mha(X_q, X_kv, p, mask)
    for f, r in zip(("out", "weights", "heads"), (out_r, w_r, h_r)):
        assert_close(getattr(b, f), getattr(a, f), 1e-12, f"loop vs batched: {f}")
        assert_close(getattr(a, f), r, 1e-12, f"batched vs reference: {f}")


@settings(max_examples=30, deadline=None)
@given(mha_setup())
def test_torch_matches_numpy_random_shapes(setup):
    X_q, X_kv, p, mask = setup
    ref = npa.multi_head_attention(X_q, X_kv, p, mask)
    tm = None if mask is None else torch.from_numpy(mask)
    xq, xkv = torch.from_numpy(X_q), torch.from_numpy(X_kv)
    for fn in (tta.multi_head_attention, tta.multi_head_attention_loop):
        res = fn(xq, xkv, torch_params(p), tm)
        for f in ("out", "weights", "heads"):
            assert_close(getattr(res, f), getattr(ref, f), 1e-10, f"{fn.__name__}: {f}")

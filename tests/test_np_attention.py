"""NumPy backend: forward pass against independent references, masks, params, init."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import (
    PARAM_NAMES,
    assert_close,
    params_dict,
    random_params,
    ref_causal,
    ref_mha,
    ref_padding,
    ref_sdpa,
    ref_softmax,
)

from mha_course import np_attention as npa

TOL = 1e-12


# --------------------------------------------------------------------------- softmax
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax_matches_reference(axis):
    x = np.random.default_rng(0).standard_normal((3, 4, 5)) * 3
    y = npa.softmax(x, axis=axis)
    assert y.shape == x.shape
    assert_close(y, ref_softmax(x, axis=axis), TOL, "softmax")
    assert_close(y.sum(axis=axis), np.ones(np.delete(x.shape, axis)), TOL, "row sums")


def test_softmax_default_axis_is_last():
    x = np.random.default_rng(1).standard_normal((4, 6))
    assert_close(npa.softmax(x), ref_softmax(x, axis=-1), TOL)


def test_softmax_does_not_modify_input():
    x = np.random.default_rng(2).standard_normal((3, 5))
    x[0, 1] = -np.inf
    before = x.copy()
    npa.softmax(x)
    np.testing.assert_array_equal(x, before)


def test_softmax_neg_inf_entries_get_zero_weight():
    x = np.array([[0.3, -np.inf, 1.2, -np.inf], [-np.inf, -np.inf, -np.inf, -np.inf]])
    y = npa.softmax(x)
    assert not np.any(np.isnan(y))
    assert y[0, 1] == 0.0 and y[0, 3] == 0.0
    e = np.exp([0.3, 1.2])
    assert_close(y[0, [0, 2]], e / e.sum(), TOL, "unmasked entries")
    np.testing.assert_array_equal(y[1], np.zeros(4))  # fully masked row: zeros, not NaN


# --------------------------------------------------------------------------- SDPA
SDPA_SHAPES = [
    # (batch dims, n_q, n_k, d_k, d_v)
    ((), 4, 4, 3, 3),
    ((), 3, 5, 4, 2),
    ((2,), 4, 6, 3, 5),
    ((2, 3), 2, 5, 4, 4),
]


@pytest.mark.parametrize("batch,n_q,n_k,d_k,d_v", SDPA_SHAPES)
@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_matches_reference(batch, n_q, n_k, d_k, d_v, masked):
    rng = np.random.default_rng(3)
    Q = rng.standard_normal(batch + (n_q, d_k))
    K = rng.standard_normal(batch + (n_k, d_k))
    V = rng.standard_normal(batch + (n_k, d_v))
    mask = None
    if masked:
        mask = rng.random(batch + (n_q, n_k)) < 0.6
        mask[..., 0] = True  # no fully-masked rows here
    Z, A = npa.scaled_dot_product_attention(Q, K, V, mask)
    Zr, Ar = ref_sdpa(Q, K, V, mask)
    assert Z.shape == batch + (n_q, d_v)
    assert A.shape == batch + (n_q, n_k)
    assert_close(A, Ar, TOL, "A")
    assert_close(Z, Zr, TOL, "Z")
    if masked:
        assert np.all(A[~mask] == 0.0)


def test_sdpa_scaling_uses_sqrt_dk():
    # Two keys; the score gap is (q.k1 - q.k2)/sqrt(d_k). Check the exact logistic value.
    d_k = 9
    q = np.zeros((1, d_k))
    q[0, 0] = 1.0
    K = np.zeros((2, d_k))
    K[0, 0] = 6.0  # score 6/3 = 2
    V = np.array([[1.0], [0.0]])
    Z, A = npa.scaled_dot_product_attention(q, K, V)
    p = 1 / (1 + np.exp(-2.0))
    assert_close(A, np.array([[p, 1 - p]]), TOL)
    assert_close(Z, np.array([[p]]), TOL)


def test_sdpa_mask_broadcasts_over_batch():
    rng = np.random.default_rng(4)
    Q, K, V = (rng.standard_normal((2, 3, 4, 5)) for _ in range(3))
    mask = ref_causal(4)
    Z, A = npa.scaled_dot_product_attention(Q, K, V, mask)
    Zr, Ar = ref_sdpa(Q, K, V, np.broadcast_to(mask, (2, 3, 4, 4)))
    assert_close(A, Ar, TOL)
    assert_close(Z, Zr, TOL)
    assert np.all(A[..., ~mask] == 0.0)


def test_sdpa_fully_masked_rows_are_zero():
    rng = np.random.default_rng(5)
    Q, K, V = rng.standard_normal((3, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 2))
    mask = rng.random((3, 5)) < 0.5
    mask[0] = False
    mask[1:, 2] = True
    Z, A = npa.scaled_dot_product_attention(Q, K, V, mask)
    assert np.all(np.isfinite(A)) and np.all(np.isfinite(Z))
    np.testing.assert_array_equal(A[0], 0.0)
    np.testing.assert_array_equal(Z[0], 0.0)
    Zr, Ar = ref_sdpa(Q, K, V, mask)
    assert_close(A, Ar, TOL)
    assert_close(Z, Zr, TOL)


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("n", [1, 2, 5])
def test_causal_mask(n):
    m = npa.causal_mask(n)
    assert m.dtype == np.bool_
    assert m.shape == (n, n)
    np.testing.assert_array_equal(m, ref_causal(n))
    # row i may attend to keys 0..i
    for i in range(n):
        assert m[i, : i + 1].all() and not m[i, i + 1 :].any()


def test_padding_mask():
    lengths = np.array([3, 1, 5, 0])
    m = npa.padding_mask(lengths, 5)
    assert m.dtype == np.bool_
    assert m.shape == (4, 1, 5)
    np.testing.assert_array_equal(m, ref_padding(lengths, 5))
    np.testing.assert_array_equal(m[0, 0], [True, True, True, False, False])
    np.testing.assert_array_equal(m[3, 0], [False] * 5)
    # accepts a plain list too
    np.testing.assert_array_equal(npa.padding_mask([3, 1, 5, 0], 5), m)


def test_padding_mask_in_sdpa_zeroes_padded_keys():
    rng = np.random.default_rng(6)
    b, n, d = 3, 6, 4
    lengths = [6, 2, 4]
    Q, K, V = (rng.standard_normal((b, n, d)) for _ in range(3))
    mask = npa.padding_mask(lengths, n)
    Z, A = npa.scaled_dot_product_attention(Q, K, V, mask)
    for i, L in enumerate(lengths):
        assert np.all(A[i, :, L:] == 0.0)
        # result equals attention over the unpadded keys only
        Zr, Ar = ref_sdpa(Q[i], K[i, :L], V[i, :L])
        assert_close(A[i, :, :L], Ar, TOL)
        assert_close(Z[i], Zr, TOL)


def test_causal_and_padding_combine():
    rng = np.random.default_rng(7)
    b, n, d = 2, 5, 4
    Q, K, V = (rng.standard_normal((b, n, d)) for _ in range(3))
    mask = npa.causal_mask(n) & npa.padding_mask([5, 3], n)
    assert mask.shape == (b, n, n)
    Z, A = npa.scaled_dot_product_attention(Q, K, V, mask)
    Zr, Ar = ref_sdpa(Q, K, V, mask)
    assert_close(A, Ar, TOL)
    assert_close(Z, Zr, TOL)


# --------------------------------------------------------------------------- MHAParams
def test_mhaparams_properties():
    p = random_params(d_model=12, n_heads=3, d_k=5, d_v=7, bias=True)
    assert (p.n_heads, p.d_model, p.d_k, p.d_v) == (3, 12, 5, 7)
    assert p.W_O.shape == (21, 12)
    assert dataclasses.is_dataclass(p)


def _good_param_arrays(bias=True):
    return params_dict(random_params(d_model=6, n_heads=2, d_k=4, d_v=5, bias=bias))


@pytest.mark.parametrize(
    "name,shape",
    [
        ("W_Q", (2, 6, 3)),  # d_k disagrees with W_K
        ("W_K", (2, 6, 3)),
        ("W_K", (3, 6, 4)),  # n_heads disagrees
        ("W_V", (3, 6, 5)),
        ("W_V", (2, 7, 5)),  # d_model disagrees
        ("W_O", (9, 6)),  # must be n_heads*d_v = 10 rows
        ("W_O", (10, 7)),  # must map back to d_model = 6
        ("W_Q", (6, 4)),  # wrong rank
        ("b_Q", (2, 3)),
        ("b_K", (4,)),
        ("b_V", (2, 4)),
        ("b_O", (5,)),
    ],
)
def test_mhaparams_inconsistent_shapes_raise(name, shape):
    kw = _good_param_arrays()
    npa.MHAParams(**kw)  # the consistent set constructs fine
    kw[name] = np.zeros(shape)
    with pytest.raises(ValueError):
        npa.MHAParams(**kw)


# --------------------------------------------------------------------------- init_params
def test_init_params_shapes_and_biases():
    p = npa.init_params(12, 3)
    assert (p.n_heads, p.d_model, p.d_k, p.d_v) == (3, 12, 4, 4)
    assert p.W_Q.shape == (3, 12, 4)
    assert p.W_K.shape == (3, 12, 4)
    assert p.W_V.shape == (3, 12, 4)
    assert p.W_O.shape == (12, 12)
    assert all(getattr(p, b) is None for b in ("b_Q", "b_K", "b_V", "b_O"))

    pb = npa.init_params(12, 3, bias=True)
    assert pb.b_Q.shape == (3, 4) and pb.b_K.shape == (3, 4)
    assert pb.b_V.shape == (3, 4) and pb.b_O.shape == (12,)
    for b in ("b_Q", "b_K", "b_V", "b_O"):
        np.testing.assert_array_equal(getattr(pb, b), 0.0)


def test_init_params_d_k_d_v_overrides():
    p = npa.init_params(12, 3, d_k=5, d_v=7)
    assert (p.d_k, p.d_v) == (5, 7)
    assert p.W_Q.shape == (3, 12, 5) and p.W_K.shape == (3, 12, 5)
    assert p.W_V.shape == (3, 12, 7) and p.W_O.shape == (21, 12)
    pb = npa.init_params(12, 3, d_k=5, d_v=7, bias=True)
    assert pb.b_Q.shape == (3, 5) and pb.b_V.shape == (3, 7) and pb.b_O.shape == (12,)
    # with explicit head sizes, n_heads need not divide d_model
    q = npa.init_params(10, 3, d_k=4, d_v=4)
    assert (q.n_heads, q.d_model, q.d_k, q.d_v) == (3, 10, 4, 4)


def test_init_params_non_divisible_raises():
    with pytest.raises(ValueError, match=r"(?s)^(?=.*\b10\b)(?=.*\b3\b)"):
        npa.init_params(10, 3)


def test_init_params_seeded_determinism():
    a = npa.init_params(8, 2, seed=123, bias=True)
    b = npa.init_params(8, 2, seed=123, bias=True)
    c = npa.init_params(8, 2, seed=124, bias=True)
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("W_Q", "W_K", "W_V", "W_O"):
        assert not np.array_equal(getattr(a, name), getattr(c, name))
    # the four projections are not all the same draw
    assert not np.array_equal(a.W_Q, a.W_K)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_params_dtype(dtype):
    p = npa.init_params(8, 2, bias=True, dtype=dtype)
    for name in PARAM_NAMES:
        assert getattr(p, name).dtype == dtype, name


@pytest.mark.parametrize("d_model,n_heads,d_k,d_v", [(16, 4, None, None), (32, 2, 8, 12)])
def test_init_params_xavier_uniform_bound(d_model, n_heads, d_k, d_v):
    p = npa.init_params(d_model, n_heads, d_k=d_k, d_v=d_v, seed=0)
    d_k, d_v = p.d_k, p.d_v

    def check(W, fan_a, fan_b_head, fan_b_all):
        # Glorot-uniform bound sqrt(6/(fan_in+fan_out)); the fans may be taken per head or
        # over all heads, so accept anything within the larger bound, and require the
        # samples to spread out to a good part of the smaller one (not e.g. ~0 or normal).
        hi = np.sqrt(6.0 / (fan_a + fan_b_head))
        lo = np.sqrt(6.0 / (fan_a + fan_b_all))
        a = np.abs(W)
        assert a.max() <= hi + 1e-12, f"{a.max()} exceeds Xavier bound {hi}"
        assert a.max() >= 0.5 * lo, f"{a.max()} far below Xavier bound {lo}"
        assert abs(W.mean()) < 0.25 * hi
        # uniform, not concentrated: a sizeable fraction of samples in the outer half
        assert np.mean(a > 0.5 * lo) > 0.2

    check(p.W_Q, d_model, d_k, n_heads * d_k)
    check(p.W_K, d_model, d_k, n_heads * d_k)
    check(p.W_V, d_model, d_v, n_heads * d_v)
    check(p.W_O, d_model, d_v, n_heads * d_v)


# --------------------------------------------------------------------------- MHA forward
MHA_CASES = [
    # (batch dims, n_q, n_k, d_model, n_heads, d_k, d_v)
    ((), 4, 4, 8, 2, None, None),
    ((), 3, 5, 6, 3, 4, 5),
    ((2,), 5, 5, 8, 4, None, None),
    ((2,), 3, 6, 8, 2, 3, 5),
    ((2, 2), 4, 3, 6, 1, None, None),
]


@pytest.mark.parametrize("batch,n_q,n_k,d_model,n_heads,d_k,d_v", MHA_CASES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("mask_kind", [None, "random"])
def test_mha_matches_reference(batch, n_q, n_k, d_model, n_heads, d_k, d_v, bias, mask_kind):
    rng = np.random.default_rng(8)
    p = random_params(d_model, n_heads, d_k, d_v, bias=bias, seed=9)
    X_q = rng.standard_normal(batch + (n_q, d_model))
    X_kv = rng.standard_normal(batch + (n_k, d_model))
    mask = None
    if mask_kind == "random":
        mask = rng.random(batch + (n_q, n_k)) < 0.6
        mask[..., -1] = True
    inputs = [X_q.copy(), X_kv.copy()]
    res = npa.multi_head_attention(X_q, X_kv, p, mask)
    out_r, w_r, heads_r = ref_mha(X_q, X_kv, p, mask)

    assert isinstance(res, npa.MHAOutput) and isinstance(res, tuple)
    assert npa.MHAOutput._fields == ("out", "weights", "heads")
    assert res.out.shape == batch + (n_q, d_model)
    assert res.weights.shape == batch + (p.n_heads, n_q, n_k)
    assert res.heads.shape == batch + (p.n_heads, n_q, p.d_v)
    assert_close(res.out, out_r, TOL, "out")
    assert_close(res.weights, w_r, TOL, "weights")
    assert_close(res.heads, heads_r, TOL, "heads")
    # the inputs are left alone
    np.testing.assert_array_equal(X_q, inputs[0])
    np.testing.assert_array_equal(X_kv, inputs[1])

    loop = npa.multi_head_attention_loop(X_q, X_kv, p, mask)
    assert isinstance(loop, npa.MHAOutput)
    for f in npa.MHAOutput._fields:
        assert_close(getattr(loop, f), getattr(res, f), TOL, f"loop vs batched: {f}")


def test_mha_out_is_concat_heads_times_W_O():
    rng = np.random.default_rng(10)
    p = random_params(12, 3, 4, 6, bias=True, seed=11)
    X = rng.standard_normal((2, 5, 12))
    res = npa.multi_head_attention(X, X, p)
    concat = np.concatenate([res.heads[:, i] for i in range(3)], axis=-1)  # (2, 5, 18)
    assert_close(res.out, concat @ p.W_O + p.b_O, TOL)
    assert_close(res.weights.sum(-1), np.ones((2, 3, 5)), TOL, "rows of A sum to 1")


def test_mha_mask_same_for_every_head():
    rng = np.random.default_rng(12)
    p = random_params(8, 4, seed=13)
    X = rng.standard_normal((2, 5, 8))
    mask = npa.causal_mask(5)
    res = npa.multi_head_attention(X, X, p, mask)
    for h in range(4):
        assert np.all(res.weights[:, h][..., ~mask] == 0.0)
    # a padding mask of shape (batch, 1, n_k) also works
    pm = npa.padding_mask([5, 2], 5)
    res = npa.multi_head_attention(X, X, p, pm)
    assert np.all(res.weights[1, :, :, 2:] == 0.0)
    out_r, w_r, _ = ref_mha(X, X, p, pm)
    assert_close(res.out, out_r, TOL)


def test_mha_self_attention_single_head_reduces_to_sdpa():
    rng = np.random.default_rng(14)
    d = 4
    eye = np.eye(d)[None]
    p = npa.MHAParams(W_Q=eye, W_K=eye, W_V=eye, W_O=np.eye(d))  # no biases
    X = rng.standard_normal((3, d))
    res = npa.multi_head_attention(X, X, p)
    Zr, Ar = ref_sdpa(X, X, X)
    assert_close(res.out, Zr, TOL)
    assert_close(res.weights[0], Ar, TOL)


def test_mha_fully_masked_query_rows_are_zero():
    rng = np.random.default_rng(15)
    p = random_params(6, 2, bias=True, seed=16)
    X_q, X_kv = rng.standard_normal((4, 6)), rng.standard_normal((3, 6))
    mask = np.ones((4, 3), dtype=bool)
    mask[2] = False
    res = npa.multi_head_attention(X_q, X_kv, p, mask)
    assert np.all(np.isfinite(res.out))
    np.testing.assert_array_equal(res.weights[:, 2], 0.0)
    np.testing.assert_array_equal(res.heads[:, 2], 0.0)
    # with all heads zero, the output row is just the output bias
    assert_close(res.out[2], p.b_O, TOL)


def test_mha_with_init_params_is_finite():
    p = npa.init_params(16, 4, bias=True, seed=3)
    X = np.random.default_rng(0).standard_normal((2, 7, 16))
    res = npa.multi_head_attention(X, X, p, npa.causal_mask(7))
    assert np.all(np.isfinite(res.out))
    out_r, _, _ = ref_mha(X, X, p, npa.causal_mask(7))
    assert_close(res.out, out_r, TOL)

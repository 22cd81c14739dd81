"""PyTorch backend: agreement with NumPy, with torch.nn.MultiheadAttention and with
torch.nn.functional.scaled_dot_product_attention; the nn.Module; device handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import (
    PARAM_NAMES,
    assert_close,
    max_abs_diff,
    random_params,
    ref_causal,
    ref_mha,
    ref_padding,
    ref_sdpa,
    to_numpy,
    torch_params,
)

from mha_course import np_attention as npa
from mha_course import torch_attention as tta

TOL64 = 1e-10
TOL32 = 1e-5
TOL = {torch.float32: TOL32, torch.float64: TOL64}
NP_DTYPE = {torch.float32: np.float32, torch.float64: np.float64}


def T(a):
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def make_mask(kind, batch, n_q, n_k, rng):
    if kind is None:
        return None
    if kind == "causal":
        assert n_q == n_k
        return ref_causal(n_q)
    if kind == "padding":
        b = batch[0] if batch else 1
        lengths = rng.integers(1, n_k + 1, size=b)
        lengths[0] = max(1, n_k - 2)
        m = ref_padding(lengths, n_k)
        return m if batch else m[0]
    if kind == "random":
        m = rng.random(batch + (n_q, n_k)) < 0.6
        m[..., 0] = True
        return m
    raise AssertionError(kind)


# ------------------------------------------------------------------- NumPy vs torch, float64
def test_softmax_numpy_vs_torch():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)) * 4
    x[0, 0, 1] = -np.inf
    x[1, 2, :] = -np.inf
    for axis in (-1, 0, 1):
        y = tta.softmax(T(x), axis=axis)
        assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
        assert_close(y, npa.softmax(x, axis=axis), TOL64, f"softmax axis={axis}")
    assert torch.all(tta.softmax(T(x))[1, 2] == 0)


@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_numpy_vs_torch(batch, masked):
    rng = np.random.default_rng(1)
    Q = rng.standard_normal(batch + (4, 3))
    K = rng.standard_normal(batch + (5, 3))
    V = rng.standard_normal(batch + (5, 6))
    mask = None
    if masked:
        mask = rng.random(batch + (4, 5)) < 0.5
        mask[..., 0, :] = False  # a fully-masked row: both backends give zeros
    Zn, An = npa.scaled_dot_product_attention(Q, K, V, mask)
    Zt, At = tta.scaled_dot_product_attention(T(Q), T(K), T(V), T(mask))
    assert Zt.dtype == torch.float64 and At.dtype == torch.float64
    assert_close(Zt, Zn, TOL64, "Z")
    assert_close(At, An, TOL64, "A")
    Zr, Ar = ref_sdpa(Q, K, V, mask)
    assert_close(Zt, Zr, TOL64, "Z vs reference")


def test_masks_numpy_vs_torch():
    for n in (1, 4):
        m = tta.causal_mask(n)
        assert isinstance(m, torch.Tensor) and m.dtype == torch.bool and m.device.type == "cpu"
        np.testing.assert_array_equal(m.numpy(), npa.causal_mask(n))
    for lengths in ([3, 1, 4], torch.tensor([3, 1, 4])):
        pm = tta.padding_mask(lengths, 4)
        assert isinstance(pm, torch.Tensor) and pm.dtype == torch.bool
        assert tuple(pm.shape) == (3, 1, 4)
        np.testing.assert_array_equal(pm.numpy(), ref_padding([3, 1, 4], 4))


MHA_SHAPES = [
    # (batch dims, n_q, n_k, d_model, n_heads, d_k, d_v)
    ((), 5, 5, 8, 2, None, None),
    ((2,), 5, 5, 8, 4, None, None),
    ((2,), 3, 6, 6, 3, 4, 5),
    ((2, 2), 4, 4, 6, 2, None, None),
]


def _mask_applies(kind, batch, n_q, n_k):
    """causal needs n_q == n_k; a padding mask (batch, 1, n) needs at most one batch dim."""
    return not ((kind == "causal" and n_q != n_k) or (kind == "padding" and len(batch) > 1))


MHA_MASK_CASES = [
    shape + (kind,)
    for shape in MHA_SHAPES
    for kind in (None, "causal", "padding", "random")
    if _mask_applies(kind, shape[0], shape[1], shape[2])
]


@pytest.mark.parametrize("batch,n_q,n_k,d_model,n_heads,d_k,d_v,mask_kind", MHA_MASK_CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_mha_numpy_vs_torch_float64(batch, n_q, n_k, d_model, n_heads, d_k, d_v, bias, mask_kind):
    rng = np.random.default_rng(2)
    p = random_params(d_model, n_heads, d_k, d_v, bias=bias, seed=3)
    X_q = rng.standard_normal(batch + (n_q, d_model))
    X_kv = X_q if n_q == n_k else rng.standard_normal(batch + (n_k, d_model))
    mask = make_mask(mask_kind, batch, n_q, n_k, rng)

    ref = npa.multi_head_attention(X_q, X_kv, p, mask)
    for label, params in [
        ("tensor params", torch_params(p)),
        ("numpy params", p),
        ("module", tta.MultiHeadAttention.from_params(p, dtype=torch.float64)),
    ]:
        res = tta.multi_head_attention(T(X_q), T(X_kv), params, T(mask))
        assert isinstance(res, tta.MHAOutput)
        for f in ("out", "weights", "heads"):
            v = getattr(res, f)
            assert isinstance(v, torch.Tensor) and v.dtype == torch.float64, (label, f)
            assert_close(v, getattr(ref, f), TOL64, f"{label}: {f}")

    loop = tta.multi_head_attention_loop(T(X_q), T(X_kv), torch_params(p), T(mask))
    for f in ("out", "weights", "heads"):
        assert_close(getattr(loop, f), getattr(ref, f), TOL64, f"torch loop: {f}")


# --------------------------------------------------------------------------- the nn.Module
def test_module_parameters_layout():
    m = tta.MultiHeadAttention(12, 3, dtype=torch.float64)
    assert isinstance(m, torch.nn.Module)
    names = {n for n, _ in m.named_parameters()}
    assert names == {"W_Q", "W_K", "W_V", "W_O"}
    assert m.b_Q is None and m.b_K is None and m.b_V is None and m.b_O is None
    shapes = [tuple(w.shape) for w in (m.W_Q, m.W_V, m.W_O)]
    assert shapes == [(3, 12, 4), (3, 12, 4), (12, 12)]
    assert all(isinstance(getattr(m, n), torch.nn.Parameter) for n in names)
    assert m.W_Q.dtype == torch.float64

    mb = tta.MultiHeadAttention(12, 3, d_k=5, d_v=7, bias=True)
    names = {n for n, _ in mb.named_parameters()}
    assert names == set(PARAM_NAMES)
    shapes = [tuple(w.shape) for w in (mb.W_Q, mb.W_K, mb.W_V, mb.W_O, mb.b_Q, mb.b_V, mb.b_O)]
    assert shapes == [(3, 12, 5), (3, 12, 5), (3, 12, 7), (21, 12), (3, 5), (3, 7), (12,)]
    assert mb.W_Q.abs().max() > 0 and torch.all(torch.isfinite(mb.W_O))  # initialised


@pytest.mark.parametrize("bias", [False, True])
def test_module_forward_and_param_roundtrip(bias):
    rng = np.random.default_rng(4)
    p = random_params(8, 2, 3, 5, bias=bias, seed=5)
    m = tta.MultiHeadAttention.from_params(p, dtype=torch.float64)
    assert isinstance(m, tta.MultiHeadAttention)
    back = m.to_params()
    assert isinstance(back, npa.MHAParams)
    for name in PARAM_NAMES:
        a, b = getattr(p, name), getattr(back, name)
        assert (a is None) == (b is None) and (a is None or isinstance(b, np.ndarray)), name
        if a is not None:
            np.testing.assert_array_equal(b, a)

    X = rng.standard_normal((2, 4, 8))
    Y = rng.standard_normal((2, 6, 8))
    mask = ref_causal(4)
    self_att = m(T(X), mask=T(mask))  # x_kv=None: self-attention
    out_r, w_r, h_r = ref_mha(X, X, p, mask)
    assert_close(self_att.out, out_r, TOL64, "self-attention out")
    assert_close(self_att.weights, w_r, TOL64, "self-attention weights")
    assert_close(self_att.heads, h_r, TOL64, "self-attention heads")
    cross = m(T(X), T(Y))
    out_r, w_r, _ = ref_mha(X, Y, p)
    assert_close(cross.out, out_r, TOL64, "cross-attention out")
    assert tuple(cross.weights.shape) == (2, 2, 4, 6)
    # the module is itself accepted as params
    via_fn = tta.multi_head_attention(T(X), T(Y), m)
    assert_close(via_fn.out, out_r, TOL64, "module as params")


def test_module_from_params_dtype_and_trainable():
    p = random_params(8, 2, bias=True, seed=6)
    m = tta.MultiHeadAttention.from_params(p, dtype=torch.float32)
    assert m.W_Q.dtype == torch.float32 and m.b_O.dtype == torch.float32
    assert all(q.requires_grad for q in m.parameters())
    out = m(torch.randn(3, 8, generator=torch.Generator().manual_seed(0))).out
    out.sum().backward()
    assert m.W_Q.grad is not None and m.b_O.grad is not None


# ------------------------------------------------------------------- vs nn.MultiheadAttention
def _random_torch_mha(d_model, n_heads, bias, dtype, seed):
    m = torch.nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True, dtype=dtype)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, prm in m.named_parameters():
            scale = 0.5 if "bias" in name else 1.0 / np.sqrt(d_model)
            prm.copy_(torch.from_numpy(rng.standard_normal(tuple(prm.shape)) * scale))
    return m


def _torch_mha_masks(mask_kind, b, n_q, n_k, rng):
    """(our mask, attn_mask, key_padding_mask) for nn.MultiheadAttention."""
    causal = ref_causal(n_q) if mask_kind in ("causal", "causal+padding") else None
    pad = None
    if mask_kind in ("padding", "causal+padding"):
        lengths = rng.integers(1, n_k + 1, size=b)
        lengths[0] = n_k - 1
        pad = ref_padding(lengths, n_k)  # (b, 1, n_k)
    if mask_kind == "random":
        causal = rng.random((n_q, n_k)) < 0.5
        causal[:, 0] = True
    ours = None
    if causal is not None and pad is not None:
        ours = causal & pad
    elif causal is not None:
        ours = causal
    elif pad is not None:
        ours = pad
    attn_mask = None if causal is None else torch.from_numpy(~causal)
    kpm = None if pad is None else torch.from_numpy(~pad[:, 0, :])
    return ours, attn_mask, kpm


def _run_torch_mha(m, X_q, X_kv, attn_mask, kpm):
    q, kv = torch.from_numpy(X_q), torch.from_numpy(X_kv)
    out, w = m(q, kv, kv, attn_mask=attn_mask, key_padding_mask=kpm,
               need_weights=True, average_attn_weights=False)
    return out, w


MASK_KINDS = [None, "causal", "padding", "causal+padding", "random"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(
    "mask_kind,cross",
    [(k, False) for k in MASK_KINDS] + [(k, True) for k in MASK_KINDS if "causal" not in str(k)],
)
def test_vs_torch_multiheadattention(dtype, bias, mask_kind, cross):
    tol = TOL[dtype]
    npdt = NP_DTYPE[dtype]
    d_model, n_heads, b, n_q = 8, 2, 3, 5
    n_k = 6 if cross else n_q
    rng = np.random.default_rng(7)
    X_q = rng.standard_normal((b, n_q, d_model)).astype(npdt)
    X_kv = rng.standard_normal((b, n_k, d_model)).astype(npdt) if cross else X_q
    ours_mask, attn_mask, kpm = _torch_mha_masks(mask_kind, b, n_q, n_k, rng)

    # direction 1: torch module -> MHAParams
    tm = _random_torch_mha(d_model, n_heads, bias, dtype, seed=8)
    ref_out, ref_w = _run_torch_mha(tm, X_q, X_kv, attn_mask, kpm)
    assert torch.all(torch.isfinite(ref_out))
    p = tta.from_torch_mha(tm)
    assert isinstance(p, npa.MHAParams)
    assert isinstance(p.W_Q, np.ndarray)
    assert (p.n_heads, p.d_model, p.d_k, p.d_v) == (n_heads, d_model, 4, 4)
    assert (p.b_Q is None) == (not bias) and (p.b_O is None) == (not bias)
    res_np = npa.multi_head_attention(X_q, X_kv, p, ours_mask)
    res_t = tta.multi_head_attention(T(X_q), T(X_kv), p, T(ours_mask))
    for label, res in (("numpy", res_np), ("torch", res_t)):
        assert_close(res.out, ref_out, tol, f"from_torch_mha/{label}: out")
        assert_close(res.weights, ref_w, tol, f"from_torch_mha/{label}: weights")

    # direction 2: MHAParams -> torch module
    p2 = random_params(d_model, n_heads, bias=bias, seed=9, dtype=npdt)
    tm2 = tta.to_torch_mha(p2)
    assert isinstance(tm2, torch.nn.MultiheadAttention)
    assert tm2.batch_first
    assert tm2.in_proj_weight.dtype == dtype, "to_torch_mha must keep the params' dtype"
    ref_out2, ref_w2 = _run_torch_mha(tm2, X_q, X_kv, attn_mask, kpm)
    res_np2 = npa.multi_head_attention(X_q, X_kv, p2, ours_mask)
    res_t2 = tta.multi_head_attention(T(X_q), T(X_kv), torch_params(p2), T(ours_mask))
    for label, res in (("numpy", res_np2), ("torch", res_t2)):
        assert_close(res.out, ref_out2, tol, f"to_torch_mha/{label}: out")
        assert_close(res.weights, ref_w2, tol, f"to_torch_mha/{label}: weights")


@pytest.mark.parametrize("bias", [False, True])
def test_torch_mha_roundtrips(bias):
    p = random_params(12, 3, bias=bias, seed=10)
    back = tta.from_torch_mha(tta.to_torch_mha(p))
    for name in PARAM_NAMES:
        a, b = getattr(p, name), getattr(back, name)
        if a is None:
            assert b is None, name
        else:
            assert isinstance(b, np.ndarray) and b.shape == a.shape, name
            np.testing.assert_array_equal(b, a, err_msg=name)

    tm = _random_torch_mha(12, 3, bias, torch.float64, seed=11)
    tm_back = tta.to_torch_mha(tta.from_torch_mha(tm))
    sd, sd_back = tm.state_dict(), tm_back.state_dict()
    assert set(sd) == set(sd_back)
    for k in sd:
        assert torch.equal(sd[k], sd_back[k]), k


def test_to_torch_mha_batch_first_false():
    rng = np.random.default_rng(12)
    p = random_params(8, 4, bias=True, seed=13)
    tm = tta.to_torch_mha(p, batch_first=False)
    assert not tm.batch_first
    X = rng.standard_normal((2, 5, 8))
    xs = torch.from_numpy(X).transpose(0, 1)  # (seq, batch, d)
    out, w = tm(xs, xs, xs, need_weights=True, average_attn_weights=False)
    ref = npa.multi_head_attention(X, X, p)
    assert_close(out.transpose(0, 1), ref.out, TOL64)
    assert_close(w, ref.weights, TOL64)


@pytest.mark.parametrize(
    "d_model,n_heads,d_k,d_v",
    [(8, 2, 4, 3), (8, 2, 3, 3), (8, 2, 5, 5)],
)
def test_to_torch_mha_rejects_inexpressible(d_model, n_heads, d_k, d_v):
    p = random_params(d_model, n_heads, d_k, d_v, seed=14)
    with pytest.raises(ValueError):
        tta.to_torch_mha(p)


# ------------------------------------------------------------------- vs F.scaled_dot_product_att.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [(), (2,), (2, 3)])
@pytest.mark.parametrize("mask_kind", [None, "causal", "random"])
def test_sdpa_vs_torch_functional(dtype, batch, mask_kind):
    tol = TOL[dtype]
    npdt = NP_DTYPE[dtype]
    rng = np.random.default_rng(15)
    n_q = 5
    n_k = 5 if mask_kind == "causal" else 7
    Q = rng.standard_normal(batch + (n_q, 4)).astype(npdt)
    K = rng.standard_normal(batch + (n_k, 4)).astype(npdt)
    V = rng.standard_normal(batch + (n_k, 3)).astype(npdt)
    mask = make_mask(mask_kind, batch, n_q, n_k, rng)
    if mask is not None:
        assert np.all(np.broadcast_to(mask, batch + (n_q, n_k)).any(-1)), "no fully-masked rows"
    ref = F.scaled_dot_product_attention(T(Q), T(K), T(V), attn_mask=T(mask))
    Zn, An = npa.scaled_dot_product_attention(Q, K, V, mask)
    Zt, At = tta.scaled_dot_product_attention(T(Q), T(K), T(V), T(mask))
    assert Zt.dtype == dtype
    assert_close(Zn, ref, tol, "numpy Z vs F.sdpa")
    assert_close(Zt, ref, tol, "torch Z vs F.sdpa")
    assert_close(An.sum(-1), np.ones(batch + (n_q,)), tol, "rows of A sum to 1")


# --------------------------------------------------------------------------- devices
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(16)
    p = random_params(16, 4, bias=True, seed=17)
    X = rng.standard_normal((2, 6, 16))
    dev = torch.device("cuda")
    cm = tta.causal_mask(6, device=dev)
    assert cm.device.type == "cuda" and cm.dtype == torch.bool
    pm = tta.padding_mask(torch.tensor([6, 3]), 6, device=dev)
    assert pm.device.type == "cuda"
    mask = cm & pm

    results = {}
    for d in ("cpu", "cuda"):
        m = tta.MultiHeadAttention.from_params(p, device=d, dtype=torch.float64)
        assert m.W_Q.device.type == d
        x = torch.tensor(X, device=d, requires_grad=True)
        res = m(x, mask=mask.to(d))
        assert res.out.device.type == d and res.weights.device.type == d
        res.out.pow(2).sum().backward()
        Z, A = tta.scaled_dot_product_attention(x.detach(), x.detach(), x.detach(), mask.to(d))
        assert Z.device.type == d
        fn = tta.multi_head_attention(x.detach(), x.detach(), torch_params(p, device=d), mask.to(d))
        results[d] = dict(out=res.out, weights=res.weights, heads=res.heads, Z=Z, A=A,
                          fn_out=fn.out, dX=x.grad, dWQ=m.W_Q.grad, dbO=m.b_O.grad)
    for k in results["cpu"]:
        d = max_abs_diff(results["cuda"][k], results["cpu"][k])
        assert d <= 1e-10, f"{k}: cuda vs cpu {d:.2e}"
    ref = npa.multi_head_attention(X, X, p, to_numpy(mask))
    assert_close(results["cuda"]["out"], ref.out, 1e-10)
    # float32 on the GPU (TF32 may be active, so the tolerance is looser)
    m32 = tta.MultiHeadAttention.from_params(p, device=dev, dtype=torch.float32)
    out32 = m32(torch.tensor(X, device=dev, dtype=torch.float32), mask=mask).out
    assert_close(out32, ref.out, 5e-3)

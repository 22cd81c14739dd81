"""The from-scratch NumPy backward: against central differences and against torch autograd."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from conftest import (
    PARAM_NAMES,
    assert_close,
    numerical_grad,
    params_dict,
    random_params,
    ref_causal,
    ref_mha,
    ref_padding,
    ref_sdpa,
    ref_softmax,
    rel_error,
    torch_params,
)

from mha_course import np_attention as npa
from mha_course import torch_attention as tta

REL_TOL = 1e-6  # analytic vs central differences
AUTOGRAD_TOL = 1e-10  # analytic vs torch autograd, float64
H = 1e-5


def check_numeric(analytic, numeric, what):
    analytic = np.asarray(analytic)
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} != {numeric.shape}"
    assert np.all(np.isfinite(analytic)), f"{what}: non-finite gradient"
    scale = max(np.linalg.norm(analytic), np.linalg.norm(numeric))
    if scale < 1e-7:  # the true gradient is zero: compare absolutely
        assert np.max(np.abs(analytic - numeric)) < 1e-8, what
    else:
        err = rel_error(analytic, numeric)
        assert err <= REL_TOL, f"{what}: relative error {err:.2e} > {REL_TOL:.0e}"


# --------------------------------------------------------------------------- softmax
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_backward_numeric(axis):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 5)) * 2
    x[1, 3] = -np.inf  # a masked entry
    x[2, :] = -np.inf  # a fully-masked row (axis=-1) / lots of masked entries (axis=0)
    G = rng.standard_normal(x.shape)
    A = npa.softmax(x, axis=axis)
    dX = npa.softmax_backward(A, G, axis=axis)
    num = numerical_grad(lambda: float(np.sum(ref_softmax(x, axis=axis) * G)), x, h=H)
    check_numeric(dX, num, f"softmax_backward axis={axis}")


def test_softmax_backward_vs_autograd():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6)) * 3
    G = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    torch.softmax(xt, dim=1).backward(torch.from_numpy(G))
    dX = npa.softmax_backward(npa.softmax(x, axis=1), G, axis=1)
    assert_close(dX, xt.grad, AUTOGRAD_TOL, "softmax_backward vs autograd")


# --------------------------------------------------------------------------- SDPA
@pytest.mark.parametrize("batch", [(), (2,)])
def test_sdpa_backward_numeric_with_mask(batch):
    rng = np.random.default_rng(2)
    n_q, n_k, d_k, d_v = 4, 5, 3, 2
    Q = rng.standard_normal(batch + (n_q, d_k))
    K = rng.standard_normal(batch + (n_k, d_k))
    V = rng.standard_normal(batch + (n_k, d_v))
    mask = rng.random(batch + (n_q, n_k)) < 0.6
    mask[..., 0] = True
    mask[..., 1, :] = False  # one fully-masked query row: its gradients are 0
    dZ = rng.standard_normal(batch + (n_q, d_v))
    dQ, dK, dV = npa.scaled_dot_product_attention_backward(dZ, Q, K, V, mask)

    def loss():
        return float(np.sum(ref_sdpa(Q, K, V, mask)[0] * dZ))

    for name, arr, g in (("Q", Q, dQ), ("K", K, dK), ("V", V, dV)):
        check_numeric(g, numerical_grad(loss, arr, h=H), f"d{name}")
    np.testing.assert_array_equal(dQ[..., 1, :], 0.0)


@pytest.mark.parametrize("batch", [(), (2, 2)])
@pytest.mark.parametrize("mask_kind", [None, "causal", "fully-masked-row"])
def test_sdpa_backward_vs_autograd(batch, mask_kind):
    rng = np.random.default_rng(3)
    n, d_k, d_v = 5, 4, 3
    Q = rng.standard_normal(batch + (n, d_k))
    K = rng.standard_normal(batch + (n, d_k))
    V = rng.standard_normal(batch + (n, d_v))
    mask = None
    if mask_kind == "causal":
        mask = ref_causal(n)
    elif mask_kind == "fully-masked-row":
        mask = ref_causal(n)
        mask[2] = False
    dZ = rng.standard_normal(batch + (n, d_v))
    dQ, dK, dV = npa.scaled_dot_product_attention_backward(dZ, Q, K, V, mask)
    Qt, Kt, Vt = (torch.tensor(a, requires_grad=True) for a in (Q, K, V))
    mask_t = None if mask is None else torch.from_numpy(mask)
    Z, _ = tta.scaled_dot_product_attention(Qt, Kt, Vt, mask_t)
    Z.backward(torch.from_numpy(dZ))
    assert_close(dQ, Qt.grad, AUTOGRAD_TOL, "dQ")
    assert_close(dK, Kt.grad, AUTOGRAD_TOL, "dK")
    assert_close(dV, Vt.grad, AUTOGRAD_TOL, "dV")


# --------------------------------------------------------------------------- MHA
def _mha_numeric_grads(X_q, X_kv, params, mask, d_out):
    arrs = {k: (None if v is None else np.array(v, dtype=np.float64))
            for k, v in params_dict(params).items()}
    X_q, X_kv = X_q.copy(), X_kv.copy()

    def loss():
        p = types.SimpleNamespace(**arrs)
        return float(np.sum(ref_mha(X_q, X_kv, p, mask)[0] * d_out))

    grads = {k: numerical_grad(loss, a, h=H) for k, a in arrs.items() if a is not None}
    grads["X_q"] = numerical_grad(loss, X_q, h=H)
    grads["X_kv"] = numerical_grad(loss, X_kv, h=H)
    return grads


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch,mask_kind", [((2,), "random"), ((), None), ((2,), "padding")])
def test_mha_backward_numeric(bias, batch, mask_kind):
    rng = np.random.default_rng(4)
    n_q, n_k, d_model = 3, 4, 4
    p = random_params(d_model, 2, 3, 2, bias=bias, seed=5)
    X_q = rng.standard_normal(batch + (n_q, d_model))
    X_kv = rng.standard_normal(batch + (n_k, d_model))
    mask = None
    if mask_kind == "random":
        mask = rng.random(batch + (n_q, n_k)) < 0.6
        mask[..., 0] = True
        mask[0, 1, :] = False  # a fully-masked query row
    elif mask_kind == "padding":
        mask = ref_padding([4, 2], n_k)
    d_out = rng.standard_normal(batch + (n_q, d_model))

    g = npa.multi_head_attention_backward(d_out, X_q, X_kv, p, mask)
    assert isinstance(g, npa.MHAGrads)
    num = _mha_numeric_grads(X_q, X_kv, p, mask, d_out)
    for name in ("X_q", "X_kv") + PARAM_NAMES:
        if name not in num:  # a bias the params do not have
            assert getattr(g, name) is None, f"{name} grad must be None without bias"
        else:
            check_numeric(getattr(g, name), num[name], name)
    if bias:
        # shifting every key by the same vector cannot change a softmax row
        assert np.max(np.abs(g.b_K)) < 1e-10


def test_mha_backward_self_attention_sum_of_input_grads():
    rng = np.random.default_rng(6)
    p = random_params(6, 3, bias=True, seed=7)
    X = rng.standard_normal((2, 4, 6))
    mask = ref_causal(4)
    d_out = rng.standard_normal((2, 4, 6))
    g = npa.multi_head_attention_backward(d_out, X, X, p, mask)
    Xw = X.copy()
    num = numerical_grad(lambda: float(np.sum(ref_mha(Xw, Xw, p, mask)[0] * d_out)), Xw, h=H)
    check_numeric(g.X_q + g.X_kv, num, "self-attention dX")


MHA_GRAD_CASES = [
    # (batch, n_q, n_k, d_model, n_heads, d_k, d_v)
    ((), 4, 4, 6, 2, None, None),
    ((2,), 4, 4, 8, 4, None, None),
    ((2,), 3, 5, 6, 3, 4, 5),
    ((2, 2), 3, 3, 4, 2, 3, 2),
]


MHA_GRAD_MASK_CASES = [
    shape + (kind,)
    for shape in MHA_GRAD_CASES
    for kind in (None, "causal", "padding", "random")
    # causal needs n_q == n_k; the padding mask here is (2, 1, n_k), so exactly one batch dim of 2
    if not (kind == "causal" and shape[1] != shape[2])
    and not (kind == "padding" and shape[0] != (2,))
]


@pytest.mark.parametrize("batch,n_q,n_k,d_model,n_heads,d_k,d_v,mask_kind", MHA_GRAD_MASK_CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_mha_backward_vs_autograd(batch, n_q, n_k, d_model, n_heads, d_k, d_v, bias, mask_kind):
    rng = np.random.default_rng(8)
    p = random_params(d_model, n_heads, d_k, d_v, bias=bias, seed=9)
    X_q = rng.standard_normal(batch + (n_q, d_model))
    X_kv = rng.standard_normal(batch + (n_k, d_model))
    mask = None
    if mask_kind == "causal":
        mask = ref_causal(n_q)
    elif mask_kind == "padding":
        mask = ref_padding([n_k, 2], n_k)
    elif mask_kind == "random":
        mask = rng.random(batch + (n_q, n_k)) < 0.6
        mask[..., 0] = True
    d_out = rng.standard_normal(batch + (n_q, d_model))

    g = npa.multi_head_attention_backward(d_out, X_q, X_kv, p, mask)

    tp = torch_params(p, requires_grad=True)
    xq = torch.tensor(X_q, requires_grad=True)
    xkv = torch.tensor(X_kv, requires_grad=True)
    res = tta.multi_head_attention(xq, xkv, tp, None if mask is None else torch.from_numpy(mask))
    res.out.backward(torch.from_numpy(d_out))

    assert_close(g.X_q, xq.grad, AUTOGRAD_TOL, "X_q")
    assert_close(g.X_kv, xkv.grad, AUTOGRAD_TOL, "X_kv")
    for name in PARAM_NAMES:
        t = getattr(tp, name)
        if t is None:
            assert getattr(g, name) is None, f"{name} grad must be None without bias"
        else:
            assert_close(getattr(g, name), t.grad, AUTOGRAD_TOL, name)


@pytest.mark.parametrize("bias", [False, True])
def test_mha_backward_vs_module_autograd_self_attention(bias):
    rng = np.random.default_rng(10)
    p = random_params(8, 2, bias=bias, seed=11)
    X = rng.standard_normal((3, 5, 8))
    d_out = rng.standard_normal((3, 5, 8))
    mask = ref_causal(5)
    m = tta.MultiHeadAttention.from_params(p, dtype=torch.float64)
    x = torch.tensor(X, requires_grad=True)
    m(x, mask=torch.from_numpy(mask)).out.backward(torch.from_numpy(d_out))
    g = npa.multi_head_attention_backward(d_out, X, X, p, mask)
    assert_close(g.X_q + g.X_kv, x.grad, AUTOGRAD_TOL, "dX (self-attention)")
    for name, prm in m.named_parameters():
        assert_close(getattr(g, name), prm.grad, AUTOGRAD_TOL, name)


def test_torch_autograd_finite_with_fully_masked_rows():
    """Fully-masked query rows give zeros in the forward pass; autograd through them must
    give finite (zero) gradients too, not NaN (the classic masked-softmax pitfall)."""
    rng = np.random.default_rng(12)
    p = random_params(6, 2, bias=True, seed=13)
    X = rng.standard_normal((2, 4, 6))
    mask = ref_causal(4)
    mask[1] = False
    d_out = rng.standard_normal((2, 4, 6))
    tp = torch_params(p, requires_grad=True)
    x = torch.tensor(X, requires_grad=True)
    res = tta.multi_head_attention(x, x, tp, torch.from_numpy(mask))
    assert torch.all(torch.isfinite(res.out))
    res.out.backward(torch.from_numpy(d_out))
    assert torch.all(torch.isfinite(x.grad)), "NaN/inf in dX"
    for name in PARAM_NAMES:
        assert torch.all(torch.isfinite(getattr(tp, name).grad)), f"NaN/inf in d{name}"
    g = npa.multi_head_attention_backward(d_out, X, X, p, mask)
    assert_close(g.X_q + g.X_kv, x.grad, AUTOGRAD_TOL, "dX")
    assert_close(g.W_Q, tp.W_Q.grad, AUTOGRAD_TOL, "W_Q")

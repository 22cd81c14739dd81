"""Bad input gets a clear error (one parametrized test per backend), and softmax survives
extreme logits in every float dtype without warnings."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from conftest import random_params, torch_params

from mha_course import np_attention as npa
from mha_course import torch_attention as tta
from mha_course.params import check_head_gates


# --------------------------------------------------------------------------- backends
@dataclass(frozen=True)
class Backend:
    name: str
    mod: object
    arr: Callable  # NumPy array -> backend array
    params: Callable  # NumPy MHAParams -> what the backend's functions take


NUMPY = Backend("numpy", npa, lambda a: a, lambda p: p)
TORCH = Backend("torch", tta, lambda a: torch.from_numpy(np.ascontiguousarray(a)), torch_params)


def rnd(*shape, dtype=np.float64):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


def with_value(a, value, idx=(0,)):
    a = a.copy()
    a.flat[idx[0]] = value
    return a


def names(*tokens):
    """A regex (for pytest.raises(match=...)) requiring every token somewhere in the message.
    Numbers must appear as whole numbers; anything else is a regex as is."""
    parts = []
    for t in tokens:
        if isinstance(t, int):
            parts.append(rf"(?=.*(?<![\d.]){t}(?!\.?\d))")
        else:
            parts.append(f"(?=.*(?:{t}))")
    return "(?si)^" + "".join(parts)


NAN = r"nan|finite"
INF = r"inf|finite"
INT = r"int"
BOOL_AND_FLOAT = (r"bool", r"float")
RANK1_Q = r"\(5,?\)|\[5\]|\b1\b"  # names the actual shape (5,) or the actual rank 1
RANK1_X = r"\(8,?\)|\[8\]|\b1\b"


# Each case: id -> (call(backend), exception type, tokens the message must contain).
# Shapes are chosen so that the relevant numbers are distinctive.
def _sdpa(B, Q, K, V, mask=None):
    return B.mod.scaled_dot_product_attention(
        B.arr(Q), B.arr(K), B.arr(V), None if mask is None else B.arr(mask)
    )


P8 = random_params(8, 2, seed=0)  # d_model = 8, n_heads = 2, d_k = d_v = 4


def _mha(B, X_q, X_kv, mask=None, fn="multi_head_attention"):
    return getattr(B.mod, fn)(
        B.arr(X_q), B.arr(X_kv), B.params(P8), None if mask is None else B.arr(mask)
    )


COMMON_CASES = {
    # ---- scaled_dot_product_attention
    "sdpa d_k of Q vs K": (
        lambda B: _sdpa(B, rnd(2, 3, 7), rnd(2, 4, 5), rnd(2, 4, 6)), ValueError, (7, 5)),
    "sdpa n_k of K vs V": (
        lambda B: _sdpa(B, rnd(2, 3, 5), rnd(2, 4, 5), rnd(2, 6, 3)), ValueError, (4, 6)),
    "sdpa mask does not broadcast": (
        lambda B: _sdpa(B, rnd(2, 3, 5), rnd(2, 4, 5), rnd(2, 4, 8), np.ones((5, 7), bool)),
        ValueError, (5, 7, 3, 4)),
    "sdpa float mask": (
        lambda B: _sdpa(B, rnd(3, 5), rnd(4, 5), rnd(4, 6), np.ones((3, 4))),
        TypeError, BOOL_AND_FLOAT),
    "sdpa int mask": (
        lambda B: _sdpa(B, rnd(3, 5), rnd(4, 5), rnd(4, 6), np.ones((3, 4), np.int64)),
        TypeError, ("bool", INT)),
    "sdpa NaN in Q": (
        lambda B: _sdpa(B, with_value(rnd(3, 5), np.nan), rnd(4, 5), rnd(4, 6)),
        ValueError, (NAN,)),
    "sdpa inf in K": (
        lambda B: _sdpa(B, rnd(3, 5), with_value(rnd(4, 5), np.inf), rnd(4, 6)),
        ValueError, (INF,)),
    "sdpa -inf in V": (
        lambda B: _sdpa(B, rnd(3, 5), rnd(4, 5), with_value(rnd(4, 6), -np.inf)),
        ValueError, (INF,)),
    "sdpa integer Q": (
        lambda B: _sdpa(B, np.ones((3, 5), np.int64), rnd(4, 5), rnd(4, 6)), TypeError, (INT,)),
    "sdpa 1-D Q": (
        lambda B: _sdpa(B, rnd(5), rnd(4, 5), rnd(4, 6)), ValueError, (RANK1_Q,)),
    # ---- softmax
    "softmax NaN": (
        lambda B: B.mod.softmax(B.arr(with_value(rnd(3, 4), np.nan))), ValueError, (NAN,)),
    "softmax +inf": (
        lambda B: B.mod.softmax(B.arr(with_value(rnd(3, 4), np.inf))), ValueError, (INF,)),
    "softmax integer": (
        lambda B: B.mod.softmax(B.arr(np.arange(6).reshape(2, 3))), TypeError, (INT,)),
    # ---- multi_head_attention (params: d_model = 8)
    "mha X_q d_model vs W_Q": (
        lambda B: _mha(B, rnd(2, 3, 5), rnd(2, 4, 8)), ValueError, (5, 8)),
    "mha X_kv d_model vs W_K": (
        lambda B: _mha(B, rnd(2, 3, 8), rnd(2, 4, 5)), ValueError, (5, 8)),
    "mha_loop X_q d_model vs W_Q": (
        lambda B: _mha(B, rnd(2, 3, 5), rnd(2, 4, 8), fn="multi_head_attention_loop"),
        ValueError, (5, 8)),
    "mha mask does not broadcast": (
        lambda B: _mha(B, rnd(2, 3, 8), rnd(2, 4, 8), np.ones((5, 7), bool)),
        ValueError, (5, 7, 3, 4)),
    "mha float mask": (
        lambda B: _mha(B, rnd(2, 3, 8), rnd(2, 4, 8), np.ones((3, 4))), TypeError, BOOL_AND_FLOAT),
    "mha NaN in X_q": (
        lambda B: _mha(B, with_value(rnd(2, 3, 8), np.nan), rnd(2, 4, 8)), ValueError, (NAN,)),
    "mha inf in X_kv": (
        lambda B: _mha(B, rnd(2, 3, 8), with_value(rnd(2, 4, 8), np.inf)), ValueError, (INF,)),
    "mha integer X_q": (
        lambda B: _mha(B, np.ones((2, 3, 8), np.int64), rnd(2, 4, 8)), TypeError, (INT,)),
    "mha 1-D X_q": (
        lambda B: _mha(B, rnd(8), rnd(4, 8)), ValueError, (RANK1_X,)),
    # ---- init_params, masks
    "init_params n_heads does not divide d_model": (
        lambda B: B.mod.init_params(10, 3), ValueError, (10, 3)),
    "causal_mask negative length": (
        lambda B: B.mod.causal_mask(-2), ValueError, ("causal_mask", "non-negative", -2)),
    "padding_mask length beyond n": (
        lambda B: B.mod.padding_mask([2, 7], 5), ValueError, (r"\[0, n=5\]", 7)),
}

NUMPY_ONLY_CASES = {
    "sdpa_backward d_k of Q vs K": (
        lambda B: npa.scaled_dot_product_attention_backward(
            rnd(3, 6), rnd(3, 7), rnd(4, 5), rnd(4, 6)),
        ValueError, (7, 5)),
    "mha_backward X_q d_model vs W_Q": (
        lambda B: npa.multi_head_attention_backward(rnd(2, 3, 8), rnd(2, 3, 5), rnd(2, 4, 8), P8),
        ValueError, (5, 8)),
    "mha_backward float mask": (
        lambda B: npa.multi_head_attention_backward(
            rnd(2, 3, 8), rnd(2, 3, 8), rnd(2, 4, 8), P8, np.ones((3, 4))),
        TypeError, BOOL_AND_FLOAT),
}

TORCH_ONLY_CASES = {
    "MultiHeadAttention n_heads does not divide d_model": (
        lambda B: tta.MultiHeadAttention(10, 3), ValueError, (10, 3)),
    "MultiHeadAttention.forward d_model": (
        lambda B: tta.MultiHeadAttention.from_params(P8, dtype=torch.float64)(
            torch.zeros(2, 3, 5, dtype=torch.float64)),
        ValueError, (5, 8)),
    "MultiHeadAttention.forward float mask": (
        lambda B: tta.MultiHeadAttention.from_params(P8, dtype=torch.float64)(
            torch.zeros(2, 3, 8, dtype=torch.float64), mask=torch.ones(3, 3)),
        TypeError, BOOL_AND_FLOAT),
}


def _check(backend, case):
    call, exc, tokens = case
    pattern = names(*tokens)
    re.compile(pattern)
    with pytest.raises(exc, match=pattern):
        call(backend)


@pytest.mark.parametrize("case", list(COMMON_CASES) + list(NUMPY_ONLY_CASES))
def test_numpy_bad_input(case):
    _check(NUMPY, {**COMMON_CASES, **NUMPY_ONLY_CASES}[case])


@pytest.mark.parametrize("case", list(COMMON_CASES) + list(TORCH_ONLY_CASES))
def test_torch_bad_input(case):
    _check(TORCH, {**COMMON_CASES, **TORCH_ONLY_CASES}[case])


def test_names_helper():
    # the message matcher itself: whole numbers only, every token required
    assert re.search(names(7, 5), "expected d_k 7, got 5")
    assert re.search(names(7, 5), "Q has shape (2, 3, 7) but K has shape torch.Size([2, 4, 5])")
    assert not re.search(names(7, 5), "expected d_k 17, got 5")
    assert not re.search(names(7, 5), "shape mismatch")
    assert not re.search(names(NAN), "bad value")


def test_valid_inputs_do_not_raise():
    """The error checks must not reject good input: -inf logits (masks) are allowed, and so
    are float32 inputs and boolean masks that broadcast."""
    x = with_value(rnd(3, 4), -np.inf)
    npa.softmax(x)
    tta.softmax(torch.from_numpy(x))
    mask = np.ones((3, 4), bool)
    npa.scaled_dot_product_attention(rnd(2, 3, 5), rnd(2, 4, 5), rnd(2, 4, 6), mask)
    Q, K, V = (torch.from_numpy(a) for a in (rnd(3, 5), rnd(4, 5), rnd(4, 6)))
    tta.scaled_dot_product_attention(Q, K, V, torch.from_numpy(mask))
    p32 = random_params(8, 2, seed=1, dtype=np.float32)
    npa.multi_head_attention(rnd(3, 8, dtype=np.float32), rnd(4, 8, dtype=np.float32), p32, mask)


# --------------------------------------------------------------------------- the gate check
@pytest.mark.parametrize("shape, n_layers, batch", [
    ((4,), None, (3,)), ((3, 4), None, (3,)), ((1, 4), None, (2, 3)), ((2, 1, 4), None, (2, 3)),
    ((4,), None, None), ((5, 6, 4), None, None), ((4,), None, ()),
    ((2, 4), 2, (3,)), ((2, 3, 4), 2, (3,)), ((2, 7, 4), 2, None), ((2, 4), 2, ()),
])
def test_check_head_gates_accepts(shape, n_layers, batch):
    for gates in (np.ones(shape), torch.ones(shape, requires_grad=True), np.ones(shape).tolist()):
        assert check_head_gates(gates, n_layers, 4, batch) is None
    assert check_head_gates(None, n_layers, 4, batch) is None


@pytest.mark.parametrize("shape, n_layers, batch, tokens", [
    ((5,), None, (3,), (r"\(n_heads,\) = \(4,\)", r"\(\.\.\., n_heads\) = \(3, 4\)",
                        r"got shape \(5\)")),
    ((2, 4), None, (3,), (r"\(3, 4\)", r"got shape \(2, 4\)")),
    ((1, 3, 4), None, (3,), (r"got shape \(1, 3, 4\)",)),  # no dimension added in front
    ((), None, None, (r"\(n_heads,\) = \(4,\)", r"got shape \(\)")),
    ((3, 4), None, (), (r"must have shape \(n_heads,\) = \(4,\); got shape \(3, 4\)",)),
    ((4,), 2, None, (r"\(n_layers, n_heads\) = \(2, 4\)", r"\(n_layers, \.\.\., n_heads\)")),
    ((3, 4), 2, (3,), (r"\(n_layers, \.\.\., n_heads\) = \(2, 3, 4\)", r"got shape \(3, 4\)")),
    ((2, 5), 2, None, (r"= \(2, 4\)", r"got shape \(2, 5\)")),
    ((2, 3, 4), 2, (), (r"must have shape \(n_layers, n_heads\) = \(2, 4\); got shape",)),
])
def test_check_head_gates_refuses_with_the_shapes(shape, n_layers, batch, tokens):
    for gates in (np.ones(shape), torch.ones(shape)):
        with pytest.raises(ValueError, match=names("head_gates must have shape", *tokens)):
            check_head_gates(gates, n_layers, 4, batch)


# --------------------------------------------------------------------------- extreme logits
EXTREME = np.array(
    [
        [1e4, -1e4, 0.0],
        [-1e4, -1e4, -1e4],
        [1e4, 1e4, -1e4],
        [1e4, -np.inf, -1e4],
        [-np.inf, -np.inf, -np.inf],  # fully masked
        [-1e4, 0.0, 1e4],
    ]
)
EXPECTED = np.array(
    [
        [1.0, 0.0, 0.0],
        [1 / 3, 1 / 3, 1 / 3],
        [0.5, 0.5, 0.0],
        [1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
        [0.0, 0.0, 1.0],
    ]
)
SUM_TOL = {np.float16: 2e-3, np.float32: 1e-6, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_numpy_softmax_extreme_logits(dtype):
    x = EXTREME.astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Overflow / invalid / divide-by-zero must not happen. (Underflow of exp(-2e4) to 0 is
        # the exact answer and NumPy ignores it by default, so it is not made an error.)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = npa.softmax(x)
            y0 = npa.softmax(x, axis=0)
    assert y.dtype == dtype and y0.dtype == dtype
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(y0))
    tol = SUM_TOL[dtype]
    live = np.array([True, True, True, True, False, True])
    np.testing.assert_allclose(y.sum(-1)[live].astype(np.float64), 1.0, rtol=0, atol=tol)
    np.testing.assert_allclose(y.astype(np.float64), EXPECTED, rtol=0, atol=tol)
    np.testing.assert_allclose(y0.sum(0).astype(np.float64), 1.0, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_torch_softmax_extreme_logits(dtype):
    x = torch.from_numpy(EXTREME).to(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = tta.softmax(x)
    assert y.dtype == dtype
    assert torch.all(torch.isfinite(y))
    as_numpy = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}
    tol = SUM_TOL[as_numpy[dtype]]
    np.testing.assert_allclose(y.double().numpy(), EXPECTED, rtol=0, atol=tol)

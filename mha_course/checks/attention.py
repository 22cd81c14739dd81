"""Checks for exercises 1-5 (ex01, ex02): softmax, scaled dot-product attention, splitting and
merging heads, multi-head attention as a loop and batched."""

from __future__ import annotations

import numpy as np

from mha_course import np_attention as npa
from mha_course.checks._framework import (
    Exercise,
    close,
    first_match,
    max_diff,
    pair,
    run_public,
    shape_problem,
)

__all__ = [
    "check_softmax",
    "check_scaled_dot_product_attention",
    "check_split_merge",
    "check_multi_head_attention_loop",
    "check_multi_head_attention",
    "EXERCISES",
]


# ----------------------------------------------------------------------------------------------
# 1. softmax


def _softmax_cases(rng, hidden):
    if not hidden:
        masked = np.array([[0.0, -np.inf, 1.0, 2.0], [-np.inf, -np.inf, -np.inf, -np.inf]])
        return [
            {"x": np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]), "axis": -1,
             "about": "x = [[1, 2, 3], [1, 1, 1]], axis=-1"},
            {"x": np.array([[1000.0, 1001.0, 1002.0]]), "axis": -1,
             "about": "x = [[1000, 1001, 1002]] (exp(1000) overflows)"},
            {"x": masked, "axis": -1,
             "about": "masked scores (-inf) and a row whose scores are all -inf"},
            {"x": rng.standard_normal((3, 4)), "axis": 0, "about": "a 3 x 4 array, axis=0"},
        ]
    x_mask = 3 * rng.standard_normal((2, 3, 6))
    x_mask[rng.random(x_mask.shape) < 0.3] = -np.inf
    x_mask[1, 2] = -np.inf
    return [
        {"x": 3 * rng.standard_normal((2, 4, 5)), "axis": -1, "about": "hidden: shape (2, 4, 5)"},
        {"x": rng.standard_normal((4, 6)), "axis": 0, "about": "hidden: shape (4, 6), axis=0"},
        {"x": rng.standard_normal((3, 7)) + rng.choice([-800.0, 700.0], size=(3, 1)), "axis": -1,
         "about": "hidden: scores of size 700 to 800"},
        {"x": x_mask, "axis": -1, "about": "hidden: masked scores, one fully masked row"},
        {"x": rng.standard_normal((5, 5)).astype(np.float32), "axis": -1,
         "about": "hidden: float32 input"},
        {"x": rng.standard_normal(9), "axis": 0, "about": "hidden: a vector"},
        {"x": rng.standard_normal((2, 3, 4)), "axis": 1,
         "about": "hidden: shape (2, 3, 4), axis=1"},
    ]


def _diagnose_softmax(case, got, expected):
    x, axis = case["x"], case["axis"]
    problem = shape_problem(got, expected.shape, "your output")
    if problem:
        return problem + " (softmax does not change the shape)"
    tol = 1e-5 if x.dtype == np.float32 else 1e-8
    if not np.isfinite(got).all():
        if np.abs(x[np.isfinite(x)]).max(initial=0) > 100:
            return ("NaN or inf for large scores: exp(1000) overflows. Subtract the maximum along "
                    "the axis before exp (softmax does not change when every score moves by the "
                    "same amount)")
        if np.isneginf(x).all(axis=axis).any():
            return ("a slice whose scores are all -inf (every key masked) gave NaN: return zeros "
                    "there (use 0 instead of a -inf maximum, and divide by 1 where the sum is 0)")
        return "your output contains NaN or inf"
    if (got[np.isneginf(x)] > 1e-12).any():
        return "masked entries (-inf) got weight: exp(-inf) = 0, so their weight must be exactly 0"
    if close(got, expected, tol):
        return None
    for other in range(x.ndim):
        if other != axis % x.ndim and close(got, npa.softmax(x, axis=other), tol):
            return (f"the slices along axis={axis} do not sum to 1: did you normalise over "
                    f"axis {other}? Use the `axis` argument for max and sum")
    if close(got, np.exp(x) / np.exp(x).sum(), tol):
        return "you divided by the sum of the whole array: sum along `axis` only (keepdims=True)"
    return f"values differ from the reference by up to {max_diff(got, expected):.2e}"


def check_softmax(softmax) -> None:
    """softmax(x, axis=-1): stable, -inf entries get 0, an all -inf slice gives zeros."""
    run_public(_BY_ID["softmax"], [softmax])


# ----------------------------------------------------------------------------------------------
# 2. scaled dot-product attention


def _sdpa_case(rng, batch, n_q, n_k, d_k, d_v, mask_kind, about):
    Q = rng.standard_normal((*batch, n_q, d_k))
    K = rng.standard_normal((*batch, n_k, d_k))
    V = rng.standard_normal((*batch, n_k, d_v))
    mask = None
    if mask_kind == "causal":
        mask = npa.causal_mask(n_q)
    elif mask_kind == "padding":
        lengths = np.array([n_k, max(1, n_k // 2)][:batch[0]])  # (batch,)
        mask = npa.padding_mask(lengths, n_k)  # (batch, 1, n_k)
    elif mask_kind == "random":
        mask = rng.random((*batch, n_q, n_k)) < 0.6
        mask[..., 0] = True  # every query keeps at least one key
    return {"Q": Q, "K": K, "V": V, "mask": mask, "about": about}


def sdpa_cases(rng, hidden):
    if not hidden:
        return [
            _sdpa_case(rng, (), 3, 4, 16, 5, None,
                       "unbatched: n_q=3, n_k=4, d_k=16, d_v=5, no mask"),
            _sdpa_case(rng, (), 5, 5, 8, 8, "causal", "a causal mask, n=5, d_k=8"),
            _sdpa_case(rng, (2,), 4, 4, 8, 3, "padding",
                       "batch of 2, padding mask of shape (2, 1, 4), lengths [4, 2]"),
        ]
    return [
        _sdpa_case(rng, (), 6, 3, 32, 4, None, "hidden: n_q=6, n_k=3, d_k=32"),
        _sdpa_case(rng, (2, 3), 4, 5, 8, 6, "random", "hidden: batch (2, 3), a random mask"),
        _sdpa_case(rng, (2,), 7, 7, 4, 2, "causal", "hidden: batch 2, causal mask"),
        _sdpa_case(rng, (2,), 3, 6, 16, 16, "padding", "hidden: padding mask"),
    ]


def _call_sdpa(fns, case):
    args = (case["Q"].copy(), case["K"].copy(), case["V"].copy())
    return fns[0](*args) if case["mask"] is None else fns[0](*args, case["mask"].copy())


def _expected_sdpa(case):
    return list(npa.scaled_dot_product_attention(case["Q"], case["K"], case["V"], case["mask"]))


def _masked_softmax(S, mask, axis=-1):
    return npa.softmax(S if mask is None else np.where(mask, S, -np.inf), axis=axis)


def _diagnose_sdpa(case, got, expected):
    problem = pair(got, 2, "Z, A")
    if problem:
        return problem
    (Z, A), (Zx, Ax) = got, expected
    if isinstance(Z, np.ndarray) and isinstance(A, np.ndarray) and Zx.shape != Ax.shape \
            and Z.shape == Ax.shape and A.shape == Zx.shape:
        return "you returned (A, Z); return (Z, A): the output first, then the weights"
    if isinstance(A, np.ndarray) and A.shape == Ax.shape[:-2] + Ax.shape[:-3:-1] != Ax.shape:
        return f"A has shape {A.shape}: rows should be queries and columns keys, (..., n_q, n_k)"
    problem = shape_problem(A, Ax.shape, "A") or shape_problem(Z, Zx.shape, "Z")
    if problem:
        return problem
    Q, K, _V, mask = case["Q"], case["K"], case["V"], case["mask"]
    d_k = Q.shape[-1]
    S = Q @ K.swapaxes(-1, -2)  # (..., n_q, n_k)
    if not close(A, Ax):
        if np.isnan(A).any():
            return "A contains NaN"
        found = first_match(A, {
            "you forgot to divide by sqrt(d_k): your weights are too peaked":
                lambda: _masked_softmax(S, mask),
            "you divided by d_k instead of sqrt(d_k): your weights are too flat":
                lambda: _masked_softmax(S / d_k, mask),
            "softmax over the query axis: each row of A (one query) must sum to 1 over the keys":
                lambda: _masked_softmax(S / np.sqrt(d_k), mask, axis=-2),
            "masked keys got weight: you ignored the mask (set the scores of masked keys to -inf "
            "before the softmax)": lambda: _masked_softmax(S / np.sqrt(d_k), None),
            "you masked the wrong entries: True in the mask means 'may attend'":
                lambda: _masked_softmax(S / np.sqrt(d_k), ~np.broadcast_to(mask, S.shape)),
        })
        if found:
            return found
        if mask is not None and (A[~np.broadcast_to(mask, A.shape)] > 1e-12).any():
            return "masked keys got weight: where the mask is False, A must be exactly 0"
        if not np.allclose(A.sum(-1), 1):
            return "the rows of A (one per query) do not sum to 1"
        return f"A differs from softmax(Q K^T / sqrt(d_k)) by up to {max_diff(A, Ax):.2e}"
    if not close(Z, Zx):
        return "A is right but Z is not: Z = A @ V, the weighted sum of the values"
    return None


def check_scaled_dot_product_attention(scaled_dot_product_attention) -> None:
    """scaled_dot_product_attention(Q, K, V, mask=None) -> (Z, A)."""
    run_public(_BY_ID["sdpa"], [scaled_dot_product_attention])

# ----------------------------------------------------------------------------------------------
# 3. split and merge heads


def _split_merge_case(rng, batch, n, n_heads, d, about):
    return {"X": rng.standard_normal((*batch, n, n_heads * d)), "n_heads": n_heads,
            "Z": rng.standard_normal((*batch, n_heads, n, d)), "about": about}


def _split_merge_cases(rng, hidden):
    if not hidden:
        return [_split_merge_case(rng, (), 5, 3, 4, "X (5, 12) into 3 heads"),
                _split_merge_case(rng, (2,), 4, 2, 4, "X (2, 4, 8) into 2 heads")]
    return [_split_merge_case(rng, (3,), 7, 4, 6, "hidden: X (3, 7, 24), 4 heads"),
            _split_merge_case(rng, (2, 2), 5, 3, 2, "hidden: X (2, 2, 5, 6), 3 heads"),
            _split_merge_case(rng, (), 6, 8, 2, "hidden: X (6, 16), 8 heads"),
            _split_merge_case(rng, (), 4, 1, 5, "hidden: one head")]


def _call_split_merge(fns, case):
    split_heads, merge_heads = fns
    return [split_heads(case["X"].copy(), case["n_heads"]), merge_heads(case["Z"].copy())]


def _expected_split_merge(case):
    X, h, Z = case["X"], case["n_heads"], case["Z"]
    # head i = columns i*d:(i+1)*d
    split = np.stack(np.split(X, h, axis=-1), axis=-3)  # (..., n_heads, n, d)
    merged = np.concatenate([Z[..., i, :, :] for i in range(h)], axis=-1)  # (..., n, n_heads * d)
    return [split, merged]


def _diagnose_split_merge(case, got, expected):
    problem = pair(got, 2, "split_heads(X, n_heads), merge_heads(Z)")
    if problem:
        return problem
    (split, merged), (split_x, merged_x) = got, expected
    X, h, Z = case["X"], case["n_heads"], case["Z"]
    *batch, n, d_model = X.shape
    d = d_model // h
    if isinstance(split, np.ndarray) and split.shape == (*batch, n, h, d) != split_x.shape:
        return ("split_heads returned (..., n, n_heads, d): move the heads axis in front of the "
                "positions, to (..., n_heads, n, d)")
    problem = shape_problem(split, split_x.shape, "split_heads(X, n_heads)")
    if problem:
        return problem
    if not close(split, split_x):
        plain = X.reshape(*batch, h, n, d)  # (..., n_heads, n, d), positions mixed into heads
        if close(split, plain):
            return ("split_heads reshaped (n, n_heads * d) straight to (n_heads, n, d), which "
                    "mixes positions: reshape to (..., n, n_heads, d) first, then swap the "
                    "last-but-one two axes")
        return "split_heads: head i must hold the columns i*d:(i+1)*d of every position of X"
    problem = shape_problem(merged, merged_x.shape, "merge_heads(Z)")
    if problem:
        return problem
    if not close(merged, merged_x):
        plain = Z.reshape(merged_x.shape)  # (..., n, n_heads * d), heads mixed into positions
        if close(merged, plain):
            return ("merge_heads reshaped (n_heads, n, d) straight to (n, n_heads * d), which "
                    "mixes positions: swap the heads axis back behind the positions first")
        return ("merge_heads must undo split_heads: position t of the result is "
                "Concat(Z[0, t], ..., Z[h-1, t])")
    return None


def check_split_merge(split_heads, merge_heads) -> None:
    """split_heads(X, n_heads) (..., n, d_model) -> (..., n_heads, n, d); merge_heads: the
    inverse."""
    run_public(_BY_ID["split_merge"], [split_heads, merge_heads])


# ----------------------------------------------------------------------------------------------
# 4-5. multi-head attention, per-head loop and batched


def _random_params(rng, d_model, n_heads, d_k, d_v, bias) -> npa.MHAParams:
    def w(*shape):
        return rng.standard_normal(shape) / np.sqrt(shape[-2])

    def b(*shape):
        return 0.5 * rng.standard_normal(shape) if bias else None

    return npa.MHAParams(W_Q=w(n_heads, d_model, d_k), W_K=w(n_heads, d_model, d_k),
                         W_V=w(n_heads, d_model, d_v), W_O=w(n_heads * d_v, d_model),
                         b_Q=b(n_heads, d_k), b_K=b(n_heads, d_k), b_V=b(n_heads, d_v),
                         b_O=b(d_model))


def _mha_case(rng, batch, n_q, n_k, d_model, n_heads, d_k, d_v, bias, mask_kind, about):
    X_q = rng.standard_normal((*batch, n_q, d_model))
    X_kv = X_q if n_k is None else rng.standard_normal((*batch, n_k, d_model))
    mask = None
    if mask_kind == "causal":
        mask = npa.causal_mask(n_q)
    elif mask_kind == "random":
        mask = rng.random((*batch, n_q, X_kv.shape[-2])) < 0.6
        mask[..., 0] = True
    return {"X_q": X_q, "X_kv": X_kv, "mask": mask, "about": about,
            "params": _random_params(rng, d_model, n_heads, d_k, d_v, bias)}


def _mha_cases(rng, hidden):
    if not hidden:
        return [
            _mha_case(rng, (), 6, None, 8, 2, 4, 4, False, None,
                      "self-attention, n=6, d_model=8, 2 heads of size 4, no biases"),
            _mha_case(rng, (), 3, 5, 12, 3, 4, 2, True, None,
                      "cross-attention n_q=3, n_k=5, 3 heads, d_k=4, d_v=2, with biases"),
            _mha_case(rng, (), 5, None, 8, 4, 2, 3, True, "causal", "a causal mask, 4 heads"),
        ]
    return [
        _mha_case(rng, (), 7, None, 16, 4, 4, 4, True, None, "hidden: 4 heads, biases"),
        _mha_case(rng, (), 4, 6, 10, 5, 3, 2, False, "random", "hidden: cross-attention, mask"),
        _mha_case(rng, (2,), 5, None, 12, 3, 4, 5, True, "causal", "hidden: batch 2, causal"),
        _mha_case(rng, (3,), 4, 3, 6, 1, 6, 6, True, None, "hidden: one head, batch 3"),
    ]


def _call_mha(fns, case):
    args = (case["X_q"].copy(), case["X_kv"].copy(), case["params"])
    return fns[0](*args) if case["mask"] is None else fns[0](*args, case["mask"].copy())


def _expected_mha(case):
    return list(npa.multi_head_attention(case["X_q"], case["X_kv"], case["params"], case["mask"]))


def _without(params: npa.MHAParams, *names) -> npa.MHAParams:
    return npa.MHAParams(**{f: None if f in names else getattr(params, f)
                            for f in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O")})


def _diagnose_mha(case, got, expected):
    problem = pair(got, 3, "out, weights, heads")
    if problem:
        return problem
    (out, A, Z), (out_x, A_x, Z_x) = got, expected
    p, X_q, X_kv, mask = case["params"], case["X_q"], case["X_kv"], case["mask"]
    problem = (shape_problem(A, A_x.shape, "weights (..., n_heads, n_q, n_k)")
               or shape_problem(Z, Z_x.shape, "heads (..., n_heads, n_q, d_v)")
               or shape_problem(out, out_x.shape, "out (..., n_q, d_model)"))
    if problem:
        return problem

    def mha(params, m=mask):
        return npa.multi_head_attention(X_q, X_kv, params, m)

    if not close(A, A_x):
        return first_match(A, {
            "you ignored the biases b_Q and b_K (add b_Q[i] and b_K[i] when they are not None)":
                lambda: mha(_without(p, "b_Q", "b_K")).weights,
            "you ignored the mask (pass it to every head's attention)":
                lambda: mha(p, None).weights,
            "every head used the weights of head 0: head i must use W_Q[i] and W_K[i]":
                lambda: np.broadcast_to(A_x[..., :1, :, :], A_x.shape),
        }) or "the attention weights differ: head i attends with X_q W_Q[i] (+ b_Q[i]) and " \
              "X_kv W_K[i] (+ b_K[i])"
    if not close(Z, Z_x):
        return first_match(Z, {
            "you ignored the bias b_V (add b_V[i] to head i's values)":
                lambda: mha(_without(p, "b_V")).heads,
        }) or "the weights are right but the heads are not: Z_i = A_i (X_kv W_V[i] + b_V[i])"
    if not close(out, out_x):
        h, _d_v = p.n_heads, p.d_v
        heads = [Z_x[..., i, :, :] for i in range(h)]  # h x (..., n_q, d_v)
        concat = np.concatenate(heads, axis=-1)  # (..., n_q, h * d_v)
        b_O = 0 if p.b_O is None else p.b_O
        return first_match(out, {
            "out equals Concat(Z_1, ..., Z_h): multiply by W_O (and add b_O)": lambda: concat,
            "you forgot the output bias b_O": lambda: concat @ p.W_O if p.b_O is not None else None,
            "the heads are concatenated in the wrong order: head 0 first, head h-1 last":
                lambda: np.concatenate([Z_x[..., i, :, :] for i in reversed(range(h))], -1)
                @ p.W_O + b_O,  # (..., n_q, d_model)
            "you reshaped (..., n_heads, n_q, d_v) straight to (..., n_q, n_heads * d_v), which "
            "mixes positions: move the heads axis behind the positions first":
                lambda: Z_x.reshape(concat.shape) @ p.W_O + b_O,  # (..., n_q, d_model)
        }) or f"weights and heads are right but out differs by up to {max_diff(out, out_x):.2e}: " \
              f"out = Concat(Z_1, ..., Z_h) W_O + b_O"
    return None


def check_multi_head_attention_loop(multi_head_attention_loop) -> None:
    """multi_head_attention_loop(X_q, X_kv, params, mask=None) -> (out, weights, heads)."""
    run_public(_BY_ID["mha_loop"], [multi_head_attention_loop])


def check_multi_head_attention(multi_head_attention) -> None:
    """multi_head_attention(X_q, X_kv, params, mask=None) -> (out, weights, heads), no head loop."""
    run_public(_BY_ID["mha_batched"], [multi_head_attention])

EXERCISES: list[Exercise] = [
    Exercise("softmax", "softmax", ("softmax",), _softmax_cases,
             lambda fns, c: fns[0](c["x"].copy(), axis=c["axis"]),
             lambda c: npa.softmax(c["x"], axis=c["axis"]), _diagnose_softmax),
    Exercise("sdpa", "scaled_dot_product_attention", ("scaled_dot_product_attention",),
             sdpa_cases, _call_sdpa, _expected_sdpa, _diagnose_sdpa),
    Exercise("split_merge", "split_heads / merge_heads", ("split_heads", "merge_heads"),
             _split_merge_cases, _call_split_merge, _expected_split_merge, _diagnose_split_merge),
    Exercise("mha_loop", "multi_head_attention_loop", ("multi_head_attention_loop",),
             _mha_cases, _call_mha, _expected_mha, _diagnose_mha),
    Exercise("mha_batched", "multi_head_attention", ("multi_head_attention",),
             _mha_cases, _call_mha, _expected_mha, _diagnose_mha),
]
_BY_ID = {ex.id: ex for ex in EXERCISES}

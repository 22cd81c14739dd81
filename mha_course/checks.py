"""Self-checks for the exercises: each takes *your* function, runs it on cases with known answers
and says what is most likely wrong.

    from mha_course.checks import check_softmax
    check_softmax(softmax)      # prints "softmax: public checks passed (4 cases) ..." or raises CheckFailed

A passing self-check means "public checks passed": the grader runs the same exercise on hidden
inputs, which may still fail. Every exercise is an `Exercise` in `EXERCISES`, keyed by the
`grade_id` of its graded cell in the notebooks. The same object serves three places:

- the student's notebook: `check_*` runs the public cases and the diagnosis in one process;
- the grader (`mha_course.grading`): `Exercise.run` calls the student's function in the student's
  process on hidden cases, and `Exercise.judge` compares in the grader's own process;
- the tests, which feed it the package's reference and typical mistakes.

References come from the package (`np_attention`, `analysis.heads`) or, where the package has no
such function yet (probe, ablation), from an independent computation written here.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from mha_course import np_attention as npa
from mha_course.analysis import heads as head_metrics

__all__ = [
    "CheckFailed", "Exercise", "EXERCISES", "to_plain",
    "check_softmax", "check_scaled_dot_product_attention", "check_split_merge",
    "check_multi_head_attention_loop", "check_multi_head_attention", "check_softmax_backward",
    "check_sdpa_backward", "check_attention_entropy", "check_mean_attention_distance",
    "check_dependency_accuracy", "check_classify_head", "check_probe", "check_head_importance",
]


class CheckFailed(AssertionError):
    """A self-check found a mistake; the message says which and, where it can, why."""


@dataclass(frozen=True)
class Exercise:
    """One graded exercise.

    id: the `grade_id` of its graded cell; functions: the names the student defines;
    make_cases(rng, hidden) -> list of case dicts (inputs, plus "about": a one-line description);
    call(functions, case) -> the student's outputs (runs wherever the student's code runs);
    expected(case) -> the reference outputs; diagnose(case, got, expected) -> None or a message.
    """

    id: str
    title: str
    functions: tuple[str, ...]
    make_cases: Callable[[np.random.Generator, bool], list[dict]]
    call: Callable[[Sequence[Callable], dict], Any]
    expected: Callable[[dict], Any]
    diagnose: Callable[[dict, Any, Any], str | None]

    def cases(self, hidden: bool = False, seed: int = 0) -> list[dict]:
        """Public cases (always the same) or hidden ones (seeded by the grader)."""
        salt = zlib.crc32(self.id.encode())
        return self.make_cases(np.random.default_rng([seed, salt, int(hidden)]), hidden)

    def run(self, functions: Sequence[Callable], case: dict) -> Any:
        """The student's outputs for one case, as plain data (see `to_plain`)."""
        return to_plain(self.call(functions, case))

    def judge(self, case: dict, got: Any, expected: Any = None) -> str | None:
        """None when `got` is right, else what is wrong. Never raises on odd outputs."""
        expected = self.expected(case) if expected is None else expected
        try:
            return self.diagnose(case, got, expected)
        except Exception as error:  # an output of an unexpected form that slipped past the checks
            return f"your output has an unexpected form ({type(error).__name__}: {error})"


def to_plain(value: Any, _depth: int = 0) -> Any:
    """A return value as plain data: NumPy arrays of numbers, lists (from lists and tuples), dicts
    with str keys, str, int, float, bool, None. Torch tensors become arrays. Anything else raises
    TypeError, since the grader must carry the value out of the student's process."""
    if _depth > 6:
        raise TypeError("the output is nested too deeply")
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"an array of dtype {value.dtype}; expected numbers")
        return value.item() if value.ndim == 0 else value  # a 0-d array is a number
    if isinstance(value, np.generic):
        return to_plain(value.item(), _depth + 1)
    if type(value).__module__ == "torch" and hasattr(value, "detach"):  # a tensor
        return to_plain(value.detach().cpu().numpy(), _depth + 1)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [to_plain(v, _depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v, _depth + 1) for k, v in value.items()}
    raise TypeError(f"a {type(value).__name__}; expected arrays, numbers or strings")


def _run_public(exercise_id: str, functions: Sequence[Callable]) -> None:
    ex = EXERCISES[exercise_id]
    for name, fn in zip(ex.functions, functions):
        if not callable(fn):
            raise CheckFailed(f"{ex.title}: {name} must be a function; got {type(fn).__name__}")
    cases = ex.cases(hidden=False)
    for case in cases:
        try:
            got = ex.run(functions, case)
        except NotImplementedError:
            raise  # the stub: its message is the hint
        except Exception as error:
            raise CheckFailed(f"{ex.title}: your code raised {type(error).__name__}: {error}\n"
                              f"  case: {case['about']}") from error
        message = ex.judge(case, got)
        if message:
            raise CheckFailed(f"{ex.title}: {message}\n  case: {case['about']}")
    count = f"{len(cases)} case" + ("s" if len(cases) != 1 else "")
    print(f"{ex.title}: public checks passed ({count}). Hidden checks may still fail.")


# ----------------------------------------------------------------------------------------------
# Comparing outputs


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, list):
        return f"a sequence of {len(value)} items"
    return f"a {type(value).__name__}"


def _shape_problem(got, shape: tuple, what: str) -> str | None:
    if not isinstance(got, np.ndarray):
        return f"{what} should be an array of shape {shape}; got {_describe(got)}"
    if got.shape != tuple(shape):
        return f"{what} has shape {got.shape}; expected {tuple(shape)}"
    return None


def _close(a, b, tol: float = 1e-6) -> bool:
    return (isinstance(a, np.ndarray) and np.shape(a) == np.shape(b)
            and bool(np.allclose(a, b, rtol=tol, atol=tol)))


def _max_diff(a, b) -> float:
    d = np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
    return float(np.nanmax(d)) if np.isfinite(d).any() else float("inf")


def _first_match(got, variants: dict[str, Callable[[], Any]], tol: float = 1e-6) -> str | None:
    """The message of the first typical mistake whose output `got` reproduces."""
    for message, make in variants.items():
        try:
            candidate = make()
        except Exception:  # a variant that does not apply to this case
            continue
        if _close(got, candidate, tol):
            return message
    return None


def _pair(got, n: int, names: str) -> str | None:
    if not isinstance(got, list) or len(got) != n:
        return f"return the tuple ({names}); got {_describe(got)}"
    return None


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
        {"x": rng.standard_normal((2, 3, 4)), "axis": 1, "about": "hidden: shape (2, 3, 4), axis=1"},
    ]


def _diagnose_softmax(case, got, expected):
    x, axis = case["x"], case["axis"]
    problem = _shape_problem(got, expected.shape, "your output")
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
    if _close(got, expected, tol):
        return None
    for other in range(x.ndim):
        if other != axis % x.ndim and _close(got, npa.softmax(x, axis=other), tol):
            return (f"the slices along axis={axis} do not sum to 1: did you normalise over "
                    f"axis {other}? Use the `axis` argument for max and sum")
    if _close(got, np.exp(x) / np.exp(x).sum(), tol):
        return "you divided by the sum of the whole array: sum along `axis` only (keepdims=True)"
    return f"values differ from the reference by up to {_max_diff(got, expected):.2e}"


def check_softmax(softmax) -> None:
    """softmax(x, axis=-1): stable, -inf entries get 0, an all -inf slice gives zeros."""
    _run_public("softmax", [softmax])


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
        mask = npa.padding_mask(np.array([n_k, max(1, n_k // 2)][:batch[0]]), n_k)  # (batch, 1, n_k)
    elif mask_kind == "random":
        mask = rng.random((*batch, n_q, n_k)) < 0.6
        mask[..., 0] = True  # every query keeps at least one key
    return {"Q": Q, "K": K, "V": V, "mask": mask, "about": about}


def _sdpa_cases(rng, hidden):
    if not hidden:
        return [
            _sdpa_case(rng, (), 3, 4, 16, 5, None, "unbatched: n_q=3, n_k=4, d_k=16, d_v=5, no mask"),
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
    problem = _pair(got, 2, "Z, A")
    if problem:
        return problem
    (Z, A), (Zx, Ax) = got, expected
    if isinstance(Z, np.ndarray) and isinstance(A, np.ndarray) and Zx.shape != Ax.shape \
            and Z.shape == Ax.shape and A.shape == Zx.shape:
        return "you returned (A, Z); return (Z, A): the output first, then the weights"
    if isinstance(A, np.ndarray) and A.shape == Ax.shape[:-2] + Ax.shape[:-3:-1] != Ax.shape:
        return f"A has shape {A.shape}: rows should be queries and columns keys, (..., n_q, n_k)"
    problem = _shape_problem(A, Ax.shape, "A") or _shape_problem(Z, Zx.shape, "Z")
    if problem:
        return problem
    Q, K, V, mask = case["Q"], case["K"], case["V"], case["mask"]
    d_k = Q.shape[-1]
    S = Q @ K.swapaxes(-1, -2)  # (..., n_q, n_k)
    if not _close(A, Ax):
        if np.isnan(A).any():
            return "A contains NaN"
        found = _first_match(A, {
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
        return f"A differs from softmax(Q K^T / sqrt(d_k)) by up to {_max_diff(A, Ax):.2e}"
    if not _close(Z, Zx):
        return "A is right but Z is not: Z = A @ V, the weighted sum of the values"
    return None


def check_scaled_dot_product_attention(scaled_dot_product_attention) -> None:
    """scaled_dot_product_attention(Q, K, V, mask=None) -> (Z, A)."""
    _run_public("sdpa", [scaled_dot_product_attention])


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
    split = np.stack(np.split(X, h, axis=-1), axis=-3)  # (..., n_heads, n, d): head i = columns i*d:(i+1)*d
    merged = np.concatenate([Z[..., i, :, :] for i in range(h)], axis=-1)  # (..., n, n_heads * d)
    return [split, merged]


def _diagnose_split_merge(case, got, expected):
    problem = _pair(got, 2, "split_heads(X, n_heads), merge_heads(Z)")
    if problem:
        return problem
    (split, merged), (split_x, merged_x) = got, expected
    X, h, Z = case["X"], case["n_heads"], case["Z"]
    *batch, n, d_model = X.shape
    d = d_model // h
    if isinstance(split, np.ndarray) and split.shape == (*batch, n, h, d) != split_x.shape:
        return ("split_heads returned (..., n, n_heads, d): move the heads axis in front of the "
                "positions, to (..., n_heads, n, d)")
    problem = _shape_problem(split, split_x.shape, "split_heads(X, n_heads)")
    if problem:
        return problem
    if not _close(split, split_x):
        plain = X.reshape(*batch, h, n, d)  # (..., n_heads, n, d), positions mixed into heads
        if _close(split, plain):
            return ("split_heads reshaped (n, n_heads * d) straight to (n_heads, n, d), which mixes "
                    "positions: reshape to (..., n, n_heads, d) first, then swap the last-but-one "
                    "two axes")
        return "split_heads: head i must hold the columns i*d:(i+1)*d of every position of X"
    problem = _shape_problem(merged, merged_x.shape, "merge_heads(Z)")
    if problem:
        return problem
    if not _close(merged, merged_x):
        plain = Z.reshape(merged_x.shape)  # (..., n, n_heads * d), heads mixed into positions
        if _close(merged, plain):
            return ("merge_heads reshaped (n_heads, n, d) straight to (n, n_heads * d), which mixes "
                    "positions: swap the heads axis back behind the positions first")
        return ("merge_heads must undo split_heads: position t of the result is "
                "Concat(Z[0, t], ..., Z[h-1, t])")
    return None


def check_split_merge(split_heads, merge_heads) -> None:
    """split_heads(X, n_heads) (..., n, d_model) -> (..., n_heads, n, d); merge_heads: the inverse."""
    _run_public("split_merge", [split_heads, merge_heads])


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
    problem = _pair(got, 3, "out, weights, heads")
    if problem:
        return problem
    (out, A, Z), (out_x, A_x, Z_x) = got, expected
    p, X_q, X_kv, mask = case["params"], case["X_q"], case["X_kv"], case["mask"]
    problem = (_shape_problem(A, A_x.shape, "weights (..., n_heads, n_q, n_k)")
               or _shape_problem(Z, Z_x.shape, "heads (..., n_heads, n_q, d_v)")
               or _shape_problem(out, out_x.shape, "out (..., n_q, d_model)"))
    if problem:
        return problem
    mha = lambda params, m=mask: npa.multi_head_attention(X_q, X_kv, params, m)  # noqa: E731
    if not _close(A, A_x):
        return _first_match(A, {
            "you ignored the biases b_Q and b_K (add b_Q[i] and b_K[i] when they are not None)":
                lambda: mha(_without(p, "b_Q", "b_K")).weights,
            "you ignored the mask (pass it to every head's attention)":
                lambda: mha(p, None).weights,
            "every head used the weights of head 0: head i must use W_Q[i] and W_K[i]":
                lambda: np.broadcast_to(A_x[..., :1, :, :], A_x.shape),
        }) or "the attention weights differ: head i attends with X_q W_Q[i] (+ b_Q[i]) and " \
              "X_kv W_K[i] (+ b_K[i])"
    if not _close(Z, Z_x):
        return _first_match(Z, {
            "you ignored the bias b_V (add b_V[i] to head i's values)":
                lambda: mha(_without(p, "b_V")).heads,
        }) or "the weights are right but the heads are not: Z_i = A_i (X_kv W_V[i] + b_V[i])"
    if not _close(out, out_x):
        h, d_v = p.n_heads, p.d_v
        concat = np.concatenate([Z_x[..., i, :, :] for i in range(h)], axis=-1)  # (..., n_q, h * d_v)
        b_O = 0 if p.b_O is None else p.b_O
        return _first_match(out, {
            "out equals Concat(Z_1, ..., Z_h): multiply by W_O (and add b_O)": lambda: concat,
            "you forgot the output bias b_O": lambda: concat @ p.W_O if p.b_O is not None else None,
            "the heads are concatenated in the wrong order: head 0 first, head h-1 last":
                lambda: np.concatenate([Z_x[..., i, :, :] for i in reversed(range(h))], -1)
                @ p.W_O + b_O,  # (..., n_q, d_model)
            "you reshaped (..., n_heads, n_q, d_v) straight to (..., n_q, n_heads * d_v), which "
            "mixes positions: move the heads axis behind the positions first":
                lambda: Z_x.reshape(concat.shape) @ p.W_O + b_O,  # (..., n_q, d_model)
        }) or f"weights and heads are right but out differs by up to {_max_diff(out, out_x):.2e}: " \
              f"out = Concat(Z_1, ..., Z_h) W_O + b_O"
    return None


def check_multi_head_attention_loop(multi_head_attention_loop) -> None:
    """multi_head_attention_loop(X_q, X_kv, params, mask=None) -> (out, weights, heads)."""
    _run_public("mha_loop", [multi_head_attention_loop])


def check_multi_head_attention(multi_head_attention) -> None:
    """multi_head_attention(X_q, X_kv, params, mask=None) -> (out, weights, heads), no head loop."""
    _run_public("mha_batched", [multi_head_attention])


# ----------------------------------------------------------------------------------------------
# 6-7. backward


def _softmax_backward_cases(rng, hidden):
    shapes = [((4, 5), -1), ((2, 3, 6), -1), ((5, 4), 0)] if not hidden else \
        [((3, 7), -1), ((2, 4, 4), 1), ((6,), 0), ((2, 2, 5), -1)]
    cases = []
    for shape, axis in shapes:
        A = npa.softmax(2 * rng.standard_normal(shape), axis=axis)
        cases.append({"A": A, "dA": rng.standard_normal(shape), "axis": axis,
                      "about": f"{'hidden: ' if hidden else ''}A of shape {shape}, axis={axis}"})
    return cases


def _diagnose_softmax_backward(case, got, expected):
    problem = _shape_problem(got, expected.shape, "dx")
    if problem:
        return problem
    if _close(got, expected):
        return None
    A, dA, axis = case["A"], case["dA"], case["axis"]
    s = (A * dA).sum(axis=axis, keepdims=True)
    variants = {
        "you kept only the diagonal of the Jacobian (A * dA): subtract A * sum(A * dA) as well":
            lambda: A * dA,
        "the sign is flipped: dx = A * (dA - sum(A * dA, axis))": lambda: -expected,
        "multiply by A: dx = A * (dA - sum(A * dA, axis))": lambda: dA - s,
        "the sum is over A * dA, not over dA alone": lambda: A * (dA - dA.sum(axis, keepdims=True)),
    }
    for other in range(A.ndim):
        if other != axis % A.ndim:
            variants[f"you summed over axis {other}; sum over the softmax axis ({axis})"] = \
                (lambda o=other: A * (dA - (A * dA).sum(o, keepdims=True)))
    return _first_match(got, variants) or \
        f"dx differs from A * (dA - sum(A * dA)) by up to {_max_diff(got, expected):.2e}"


def check_softmax_backward(softmax_backward) -> None:
    """softmax_backward(A, dA, axis=-1) -> dx, for A = softmax(x, axis)."""
    _run_public("softmax_backward", [softmax_backward])


def _sdpa_backward_cases(rng, hidden):
    cases = _sdpa_cases(rng, hidden)
    for c in cases:
        c["dZ"] = rng.standard_normal((*c["Q"].shape[:-1], c["V"].shape[-1]))
    return cases


def _call_sdpa_backward(fns, case):
    args = (case["dZ"].copy(), case["Q"].copy(), case["K"].copy(), case["V"].copy())
    return fns[0](*args) if case["mask"] is None else fns[0](*args, case["mask"].copy())


def _expected_sdpa_backward(case):
    return list(npa.scaled_dot_product_attention_backward(case["dZ"], case["Q"], case["K"],
                                                          case["V"], case["mask"]))


def _diagnose_sdpa_backward(case, got, expected):
    problem = _pair(got, 3, "dQ, dK, dV")
    if problem:
        return problem
    (dQ, dK, dV), (dQ_x, dK_x, dV_x) = got, expected
    Q, K, V, dZ = case["Q"], case["K"], case["V"], case["dZ"]
    A = npa.scaled_dot_product_attention(Q, K, V, case["mask"])[1]  # (..., n_q, n_k)
    for name, g, x in (("dV", dV, dV_x), ("dK", dK, dK_x), ("dQ", dQ, dQ_x)):
        if isinstance(g, np.ndarray) and g.shape != x.shape and g.shape[-2:] == x.shape[-2:][::-1]:
            return f"{name} has shape {g.shape}: it must have the shape of {name[1]}, {x.shape}"
        problem = _shape_problem(g, x.shape, name)
        if problem:
            return problem
    if not _close(dV, dV_x):
        return "dV is wrong: Z = A V, so dV = A^T dZ"
    root = np.sqrt(Q.shape[-1])
    for name, g, x in (("dQ", dQ, dQ_x), ("dK", dK, dK_x)):
        if _close(g, x):
            continue
        found = _first_match(g, {
            f"{name} is too large by sqrt(d_k): the scores are Q K^T / sqrt(d_k), so their gradient "
            f"is scaled by 1 / sqrt(d_k) too": lambda: x * root,
            f"{name} is too small by sqrt(d_k): apply the factor 1 / sqrt(d_k) once":
                lambda: x / root,
            f"{name} has the wrong sign": lambda: -x,
        })
        if found:
            return found
        dA = dZ @ V.swapaxes(-1, -2)  # (..., n_q, n_k)
        dS_diagonal = A * dA / root  # (..., n_q, n_k): the diagonal of the Jacobian only
        diagonal = {"dQ": dS_diagonal @ K,  # (..., n_q, d_k)
                    "dK": dS_diagonal.swapaxes(-1, -2) @ Q}[name]  # (..., n_k, d_k)
        if _close(g, diagonal):
            return (f"{name}: backpropagate through the softmax with the full Jacobian, "
                    "dS = A * (dA - sum(A * dA, -1)), not A * dA")
        return {"dQ": "dQ is wrong: dQ = dS K with dS the gradient of the scaled scores",
                "dK": "dK is wrong: dK = dS^T Q (keys are the columns of the scores)"}[name]
    return None


def check_sdpa_backward(sdpa_backward) -> None:
    """sdpa_backward(dZ, Q, K, V, mask=None) -> (dQ, dK, dV)."""
    _run_public("sdpa_backward", [sdpa_backward])


# ----------------------------------------------------------------------------------------------
# 8-10. head metrics on (n_layers, n_heads, n, n) attention and annotated sentences


def _sentences(n: int, seed: int):
    from mha_course import toy_language

    return toy_language.generate(n, seed=seed)


def _random_attention(rng, sentences, n_layers, n_heads, zeros=0.3, peaks=False) -> list:
    """Row-stochastic attention (n_layers, n_heads, n, n) per sentence, with exact zeros; with
    `peaks`, each head sends some queries to their gold head and some to a delimiter."""
    out = []
    for s in sentences:
        n = len(s.tokens)
        A = rng.dirichlet(np.full(n, 0.5), size=(n_layers, n_heads, n))  # (n_layers, n_heads, n, n)
        drop = rng.random(A.shape) < zeros
        keep = rng.integers(n, size=(n_layers, n_heads, n, 1))
        np.put_along_axis(drop, keep, False, axis=-1)
        A = np.where(drop, 0.0, A)
        if peaks:
            delims = np.flatnonzero(s.is_delimiter)
            p_gold = rng.uniform(0.2, 0.9, size=(n_layers, n_heads, 1))
            roll = rng.random((n_layers, n_heads, n))  # (n_layers, n_heads, n)
            for q in range(n):
                gold = roll[..., q] < p_gold[..., 0]
                if s.head[q] >= 0:
                    A[gold, q, s.head[q]] += 4.0
                A[roll[..., q] > 0.75, q, delims[rng.integers(len(delims))]] += 8.0
        out.append(A / A.sum(axis=-1, keepdims=True))
    return out


def _metric_cases(rng, hidden, peaks=False):
    if not hidden:
        one = _sentences(1, seed=7)
        n = len(one[0].tokens)
        uniform = [np.full((1, 2, n, n), 1.0 / n)]
        onehot = [np.broadcast_to(np.eye(n)[np.r_[1:n, 0]], (1, 1, n, n)).copy()]
        three = _sentences(3, seed=11)
        cases = [
            {"attentions": uniform, "sentences": one,
             "about": f"uniform attention over n={n} tokens, 1 layer x 2 heads"},
            {"attentions": onehot, "sentences": one,
             "about": "one-hot attention (each query on the next token; zeros elsewhere)"},
            {"attentions": _random_attention(rng, three, 2, 3, peaks=peaks), "sentences": three,
             "about": "random attention with zeros, 3 sentences of different lengths, 2 x 3 heads"},
        ]
        # a query whose only weight sits on a delimiter has no most-attended word: leave that
        # corner out of the dependency cases, which compare argmaxes
        return [c for c in cases if not (peaks and c["attentions"] is onehot)]
    cases = []
    for k, (n_sent, L, H) in enumerate([(6, 2, 4), (12, 1, 3), (4, 3, 2)]):
        sents = _sentences(n_sent, seed=int(rng.integers(1 << 30)))
        cases.append({"attentions": _random_attention(rng, sents, L, H, peaks=peaks),
                      "sentences": sents,
                      "about": f"hidden: {n_sent} toy sentences, {L} x {H} heads"})
    return cases


def _call_metric(fns, case):
    return fns[0]([A.copy() for A in case["attentions"]], case["sentences"])


def _words(s) -> np.ndarray:
    return ~np.asarray(s.is_delimiter, dtype=bool)


def _pooled(values, queries="words"):
    """Mean over word queries pooled over sentences, or over all queries, or per sentence."""
    if queries == "per_sentence":
        return np.mean([v[..., m].mean(axis=-1) for v, m in values], axis=0)
    if queries == "all":
        return np.concatenate([v for v, _ in values], axis=-1).mean(axis=-1)  # (n_layers, n_heads)
    return np.concatenate([v[..., m] for v, m in values], axis=-1).mean(axis=-1)  # (n_layers, n_heads)


def _metric_problem(got, expected, name):
    problem = _shape_problem(got, expected.shape, name + " (n_layers, n_heads)")
    if problem:
        return problem
    if not np.isfinite(got).all() and np.isfinite(expected).all():
        return f"{name} contains NaN or inf"
    return None


def _diagnose_entropy(case, got, expected):
    problem = _metric_problem(got, expected, "the entropy")
    if problem:
        return (problem + ": 0 * log 0 gives NaN; count it as 0 (clip A to 1e-12 before the log)"
                if "NaN" in problem else problem)
    if _close(got, expected):
        return None
    per = [(-(A * np.log(np.clip(A, 1e-12, None))).sum(-1), _words(s))  # (n_layers, n_heads, n)
           for A, s in zip(case["attentions"], case["sentences"])]
    return _first_match(got, {
        "the entropy is -sum(A log A): you lost the minus sign": lambda: -expected,
        "you used log base 2 (bits); the course measures entropy in nats (np.log)":
            lambda: expected / np.log(2),
        "average over word queries only: skip the delimiter queries ([CLS], [SEP], punctuation)":
            lambda: _pooled(per, "all"),
        "pool every word query of every sentence into one mean; a mean of per-sentence means "
        "weighs short sentences more": lambda: _pooled(per, "per_sentence"),
    }) or f"differs from the reference by up to {_max_diff(got, expected):.2e}"


def _diagnose_distance(case, got, expected):
    problem = _metric_problem(got, expected, "the mean distance")
    if problem:
        return problem
    if _close(got, expected):
        return None

    def per(kind):
        rows = []
        for A, s in zip(case["attentions"], case["sentences"]):
            i = np.arange(len(s.tokens))
            if kind == "signed":
                d = (A * (i[None, :] - i[:, None])).sum(-1)  # (n_layers, n_heads, n)
            elif kind == "top":
                d = np.abs(A.argmax(-1) - i).astype(float)  # (n_layers, n_heads, n)
            else:
                d = (A * np.abs(i[:, None] - i[None, :])).sum(-1)  # (n_layers, n_heads, n)
            rows.append((d, _words(s)))
        return rows

    return _first_match(got, {
        "use the absolute distance |i - j|, not the signed j - i":
            lambda: _pooled(per("signed")),
        "use the expected distance sum_j A[i, j] |i - j|, not the distance to the most-attended key":
            lambda: _pooled(per("top")),
        "average over word queries only: skip the delimiter queries ([CLS], [SEP], punctuation)":
            lambda: _pooled(per("abs"), "all"),
        "pool every word query of every sentence into one mean; a mean of per-sentence means "
        "weighs short sentences more": lambda: _pooled(per("abs"), "per_sentence"),
    }) or f"differs from the reference by up to {_max_diff(got, expected):.2e}"


def _diagnose_dependency(case, got, expected):
    problem = _metric_problem(got, expected, "the accuracy")
    if problem:
        return problem
    if _close(got, expected):
        return None
    if np.nanmax(got) > 1.0 + 1e-9:
        return "an accuracy is a fraction between 0 and 1"

    def per(skip_delimiters=True, axis=-1, all_words=False):
        rows = []
        for A, s in zip(case["attentions"], case["sentences"]):
            scores = np.swapaxes(A, -1, -2) if axis == -2 else A  # (n_layers, n_heads, n, n)
            if skip_delimiters:
                scores = np.where(np.asarray(s.is_delimiter), -np.inf, scores)
            top = scores.argmax(-1)  # (n_layers, n_heads, n)
            head = np.asarray(s.head)
            hit = (top == head).astype(float)  # (n_layers, n_heads, n)
            rows.append((hit, _words(s) if all_words else head >= 0))
        return rows

    return _first_match(got, {
        "the most-attended key must skip delimiter keys ([CLS], [SEP], punctuation): heads park "
        "unused attention there": lambda: _pooled(per(skip_delimiters=False)),
        "take the most-attended key along the last axis (keys), not over the queries":
            lambda: _pooled(per(axis=-2)),
        "count only tokens that have a gold head (s.head[i] >= 0)":
            lambda: _pooled(per(all_words=True)),
        "pool every token with a gold head over all sentences into one fraction, not a mean of "
        "per-sentence fractions": lambda: np.mean(
            [h[..., m].mean(-1) for h, m in per() if m.any()], axis=0),
    }) or f"differs from the reference by up to {_max_diff(got, expected):.2e}"


def check_attention_entropy(attention_entropy) -> None:
    """attention_entropy(attentions, sentences) -> (n_layers, n_heads), in nats."""
    _run_public("entropy", [attention_entropy])


def check_mean_attention_distance(mean_attention_distance) -> None:
    """mean_attention_distance(attentions, sentences) -> (n_layers, n_heads), in tokens."""
    _run_public("distance", [mean_attention_distance])


def check_dependency_accuracy(dependency_accuracy) -> None:
    """dependency_accuracy(attentions, sentences) -> (n_layers, n_heads), fractions."""
    _run_public("dependency_accuracy", [dependency_accuracy])


# ----------------------------------------------------------------------------------------------
# 11. classify a head


def _classify_cases(rng, hidden):
    if not hidden:
        quiet = {"rare_word": 0.1, "rare_target": 0.1, "duplicate": 0.05}
        heads = [
            {"local": 0.92, "syntactic": 0.3, "delimiter": 0.1, "coreference": 0.2,
             "identity": 0.05, **quiet},
            {"local": 0.55, "syntactic": 0.7, "delimiter": 0.1, "coreference": 0.2,
             "identity": 0.05, **quiet},
            {"local": 0.3, "syntactic": 0.95, "delimiter": 0.1, "coreference": 0.2,
             "identity": 0.05, **quiet},
            {"local": 0.2, "syntactic": 0.3, "delimiter": 0.4, "coreference": 0.1,
             "identity": 0.05, **quiet},
            {"local": 0.2, "syntactic": 0.3, "delimiter": 0.1, "coreference": float("nan"),
             "rare_word": float("nan"), "rare_target": 0.1, "identity": 0.05, "duplicate": 0.81},
            {"local": 0.2, "syntactic": 0.1, "delimiter": 0.3, "coreference": 0.1,
             "identity": 0.62, **quiet},
        ]
        return [{"scores": heads, "baseline": 0.6, "min_score": 0.5, "min_margin": 0.2,
                 "about": "six heads (local; syntactic below the baseline + margin; syntactic; "
                          "all low; NaN scores and a duplicate-token head; an identity head), "
                          "baseline 0.6"},
                {"scores": heads[1:3], "baseline": None, "min_score": 0.5, "min_margin": 0.2,
                 "about": "no baseline given"}]
    cases = []
    for k in range(3):
        heads = []
        for _ in range(25):
            s = {r: float(v) for r, v in zip(head_metrics.ROLES,
                                                rng.uniform(0, 1, len(head_metrics.ROLES)) ** 1.5)}
            for r in rng.choice(head_metrics.ROLES, size=rng.integers(0, 3), replace=False):
                s[str(r)] = float("nan")
            heads.append(s)
        cases.append({"scores": heads, "baseline": [0.5, None, 0.3][k],
                      "min_score": [0.5, 0.4, 0.6][k], "min_margin": [0.2, 0.2, 0.1][k],
                      "about": f"hidden: 25 random heads (some NaN scores), set {k}"})
    return cases


def _call_classify(fns, case):
    return [fns[0](dict(s), case["baseline"], min_score=case["min_score"],
                   min_margin=case["min_margin"]) for s in case["scores"]]


def _expected_classify(case):
    out = []
    for s in case["scores"]:
        table = head_metrics.classify_heads({r: np.array([[s[r]]]) for r in head_metrics.ROLES},
                                            syntactic_baseline=case["baseline"],
                                            min_score=case["min_score"],
                                            min_margin=case["min_margin"])
        out.append(table[0]["role"])
    return out


def _diagnose_classify(case, got, expected):
    if not isinstance(got, list) or len(got) != len(expected):
        return f"return one role (a str) per head; got {_describe(got)}"
    for k, (g, x) in enumerate(zip(got, expected)):
        if g == x:
            continue
        s = case["scores"][k]
        shown = ", ".join(f"{r} {v:.2f}" for r, v in s.items())
        finite = {r: v for r, v in s.items() if np.isfinite(v)}
        best = max(finite.values()) if finite else float("nan")
        if not isinstance(g, str):
            return f"head {k}: return the role as a str; got {_describe(g)}"
        if g == "syntactic" and case["baseline"] is not None:
            return (f"head {k} ({shown}): syntactic {s['syntactic']:.2f} does not beat the baseline "
                    f"{case['baseline']:.2f} by min_margin {case['min_margin']}, so it is not "
                    f"syntactic (expected {x!r})")
        if x == "none":
            return (f"head {k} ({shown}): its best eligible score is below min_score "
                    f"{case['min_score']}, so its role is 'none' (you said {g!r})")
        if len(finite) < len(s):
            return (f"head {k} ({shown}): skip NaN scores (a role that could not be measured); "
                    f"expected {x!r}, you said {g!r}")
        return (f"head {k} ({shown}, best {best:.2f}): expected {x!r}, you said {g!r}")
    return None


def check_classify_head(classify_head) -> None:
    """classify_head(scores, syntactic_baseline=None, min_score=0.5, min_margin=0.2) -> role."""
    _run_public("classify_head", [classify_head])


# ----------------------------------------------------------------------------------------------
# 12. a linear probe with a control task


def _probe_case(rng, n_tokens, n_types, n_labels, d, about):
    type_label = rng.integers(n_labels, size=n_types)  # each word type has one label
    freq = 1.0 / np.arange(1, n_types + 1)  # Zipf: a few frequent types, a long tail
    word_ids = rng.choice(n_types, size=n_tokens, p=freq / freq.sum()) + 100
    labels = type_label[word_ids - 100]
    centres = rng.standard_normal((n_labels, d))
    scale = np.exp(rng.uniform(-3, 3, size=d))  # dimensions on very different scales
    features = (centres[labels] + 1.2 * rng.standard_normal((n_tokens, d))) * scale
    train = rng.random(n_tokens) < 0.7
    return {"features": features, "labels": labels, "word_ids": word_ids, "train": train,
            "test": ~train, "seeds": [int(s) for s in rng.integers(1000, size=2)] if
            about.startswith("hidden") else [0, 1], "about": about}


def _probe_cases(rng, hidden):
    if not hidden:
        return [_probe_case(rng, 400, 30, 4, 6, "400 tokens, 30 word types, 4 labels, d=6")]
    return [_probe_case(rng, 600, 60, 5, 8, "hidden: 600 tokens, 60 types, 5 labels, d=8"),
            _probe_case(rng, 300, 25, 3, 4, "hidden: 300 tokens, 25 types, 3 labels, d=4")]


def _call_probe(fns, case):
    control_labels, probe_accuracy = fns
    a, b = case["seeds"]
    w, y = case["word_ids"], case["labels"]
    return [control_labels(w.copy(), y.copy(), seed=a), control_labels(w.copy(), y.copy(), seed=a),
            control_labels(w.copy(), y.copy(), seed=b),
            probe_accuracy(case["features"].copy(), y.copy(), case["train"].copy(),
                           case["test"].copy())]


def _probe_reference(features, labels, train, test, scale=True) -> float:
    """An independent probe: standardise with the train split's statistics (by hand), then
    scikit-learn's logistic regression; the fraction of test tokens predicted right."""
    from sklearn.linear_model import LogisticRegression

    F = features
    if scale:
        mean, std = F[train].mean(axis=0), F[train].std(axis=0)
        F = (F - mean) / np.where(std > 0, std, 1.0)  # (n_tokens, d)
    model = LogisticRegression(max_iter=1000).fit(F[train], labels[train])
    return float((model.predict(F[test]) == labels[test]).mean())


def _expected_probe(case):
    return [None, None, None,
            _probe_reference(case["features"], case["labels"], case["train"], case["test"])]


def _diagnose_probe(case, got, expected):
    problem = _pair(got, 4, "control_labels (3 calls), probe_accuracy")
    if problem:
        return problem
    c1, c1_again, c2, accuracy = got
    w, y = case["word_ids"], case["labels"]
    for c in (c1, c1_again, c2):
        problem = _shape_problem(c, y.shape, "control_labels(word_ids, labels, seed)")
        if problem:
            return problem
    for t in np.unique(w):
        if len(np.unique(c1[w == t])) > 1:
            return ("tokens of the same word type got different control labels: draw one label "
                    "per word type (np.unique(word_ids)), then give it to every token of that type")
    if not np.isin(c1, y).all():
        return "control labels must be drawn from the real labels (np.random.Generator.choice(labels))"
    if not np.array_equal(c1, c1_again):
        return "the same seed gave different control labels: use np.random.default_rng(seed)"
    if np.array_equal(c1, c2):
        return "two different seeds gave the same control labels: draw them with the seed's rng"
    if (c1 == y).mean() > 0.95:
        return "your control labels are the real labels: each word type gets a *random* label"
    if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool):
        return f"probe_accuracy must return a float; got {_describe(accuracy)}"
    if accuracy > 1:
        return f"probe_accuracy returned {accuracy}: return a fraction between 0 and 1"
    X, train, test = case["features"], case["train"], case["test"]
    if abs(accuracy - expected[3]) <= 0.02:
        return None
    if abs(accuracy - _probe_reference(X, y, train, train)) <= 0.005:
        return "you scored the probe on the training tokens: fit on `train`, score on `test`"
    if abs(accuracy - _probe_reference(X, y, train, test, scale=False)) <= 0.005:
        return ("standardise the features first (StandardScaler fitted on the train split): "
                "without it the features' scales decide what the probe learns")
    return (f"probe_accuracy returned {accuracy:.3f}; a standardised logistic-regression probe "
            f"(max_iter=1000) fitted on train gets {expected[3]:.3f} on test")


def check_probe(control_labels, probe_accuracy) -> None:
    """control_labels(word_ids, labels, seed=0) and probe_accuracy(features, labels, train, test)."""
    _run_public("probe", [control_labels, probe_accuracy])


# ----------------------------------------------------------------------------------------------
# 13. head ablation importance


def _ablation_cases(rng, hidden):
    n, seed = (16, 5) if not hidden else (30, int(rng.integers(1 << 30)))
    task = "agreement" if not hidden else ["agreement", "coreference"][int(rng.integers(2))]
    return [{"n_sentences": n, "seed": seed, "subtask": task,
             "about": f"{'hidden: ' if hidden else ''}the shipped toy model, {n} sentences of the "
                      f"'{task}' sub-task"}]


def _ablation_batch(case):
    from mha_course import toy_language

    sentences = toy_language.generate(case["n_sentences"], seed=case["seed"])
    return toy_language.subtask_batch(sentences, case["subtask"],
                                      np.random.default_rng(case["seed"]))


def _parameters_digest(model) -> list[float]:
    return [float(p.detach().double().sum()) for p in model.parameters()]


def _call_ablation(fns, case):
    from mha_course import toy_model

    model = toy_model.load()
    before = _parameters_digest(model)
    importance = fns[0](model, *(a.copy() for a in _ablation_batch(case)))
    return [importance, before == _parameters_digest(model)]


def _ablation_losses(case, zero: str = "values", cumulative: bool = False):
    """Loss increase when each head is removed, computed here independently: by zeroing the head's
    value projection (Z_i = A_i V_i = 0), not its rows of W_O. `zero="columns"` and `cumulative`
    reproduce two typical mistakes."""
    import torch
    from torch.nn import functional as F

    from mha_course import toy_model

    model = toy_model.load()
    inputs, targets, at, lengths = (torch.from_numpy(a) for a in _ablation_batch(case))

    @torch.no_grad()
    def loss():
        logits = model(inputs, lengths).logits  # (batch, n, vocab)
        return float(F.cross_entropy(logits[at], targets[at]))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is much faster than several that compete
    try:
        return _remove_each_head(model, loss, zero, cumulative)
    finally:
        torch.set_num_threads(threads)


def _remove_each_head(model, loss, zero: str, cumulative: bool) -> np.ndarray:
    base = loss()
    n_layers, n_heads = model.config.n_layers, model.config.n_heads
    out = np.zeros((n_layers, n_heads))
    for layer, block in enumerate(model.blocks):
        attn = block.attn
        for head in range(n_heads):
            if zero == "values":
                saved = attn.W_V.data[head].clone(), attn.b_V.data[head].clone()
                attn.W_V.data[head] = 0
                attn.b_V.data[head] = 0
            else:  # the columns head*d_v:(head+1)*d_v of W_O, which are not head `head`'s block
                cols = slice(head * attn.d_v, (head + 1) * attn.d_v)
                saved = attn.W_O.data[:, cols].clone()
                attn.W_O.data[:, cols] = 0
            out[layer, head] = loss() - base
            if not cumulative:
                if zero == "values":
                    attn.W_V.data[head], attn.b_V.data[head] = saved
                else:
                    attn.W_O.data[:, cols] = saved
    return out


def _expected_ablation(case):
    return [_ablation_losses(case), True]


def _diagnose_ablation(case, got, expected):
    problem = _pair(got, 2, "importance")
    if problem:
        return problem
    importance, unchanged = got
    expected_importance = expected[0]
    problem = _shape_problem(importance, expected_importance.shape, "importance (n_layers, n_heads)")
    if problem:
        return problem
    tol = 2e-4
    if not unchanged:
        return ("your function left the model changed: restore each head's rows of W_O after "
                "measuring it (the model is shared with the rest of the notebook)")
    if np.allclose(importance, expected_importance, atol=tol, rtol=1e-3):
        return None
    if np.allclose(importance, -expected_importance, atol=tol, rtol=1e-3):
        return ("the sign is flipped: importance = loss without the head - loss with every head "
                "(positive when the head helps)")
    if np.abs(importance).max() < tol:
        return ("every importance is ~0: zero the rows of the model's own W_O in place (under "
                "torch.no_grad()), not a copy of it")
    found = _first_match(importance, {
        "you zeroed columns of W_O; head i's block is the rows i*d_v:(i+1)*d_v (W_O is "
        "(n_heads * d_v, d_model))": lambda: _ablation_losses(case, zero="columns"),
        "restore each head before removing the next: your importances add up the heads removed "
        "so far": lambda: _ablation_losses(case, cumulative=True),
    }, tol=1e-3)
    return found or (f"differs from the loss increases measured by removing each head, by up to "
                     f"{_max_diff(importance, expected_importance):.2e}")


def check_head_importance(head_importance) -> None:
    """head_importance(model, inputs, targets, at, lengths) -> (n_layers, n_heads) loss increases."""
    _run_public("ablation", [head_importance])


# ----------------------------------------------------------------------------------------------
# The registry: grade_id -> Exercise


EXERCISES: dict[str, Exercise] = {ex.id: ex for ex in [
    Exercise("softmax", "softmax", ("softmax",), _softmax_cases,
             lambda fns, c: fns[0](c["x"].copy(), axis=c["axis"]),
             lambda c: npa.softmax(c["x"], axis=c["axis"]), _diagnose_softmax),
    Exercise("sdpa", "scaled_dot_product_attention", ("scaled_dot_product_attention",),
             _sdpa_cases, _call_sdpa, _expected_sdpa, _diagnose_sdpa),
    Exercise("split_merge", "split_heads / merge_heads", ("split_heads", "merge_heads"),
             _split_merge_cases, _call_split_merge, _expected_split_merge, _diagnose_split_merge),
    Exercise("mha_loop", "multi_head_attention_loop", ("multi_head_attention_loop",),
             _mha_cases, _call_mha, _expected_mha, _diagnose_mha),
    Exercise("mha_batched", "multi_head_attention", ("multi_head_attention",),
             _mha_cases, _call_mha, _expected_mha, _diagnose_mha),
    Exercise("softmax_backward", "softmax_backward", ("softmax_backward",),
             _softmax_backward_cases,
             lambda fns, c: fns[0](c["A"].copy(), c["dA"].copy(), axis=c["axis"]),
             lambda c: npa.softmax_backward(c["A"], c["dA"], axis=c["axis"]),
             _diagnose_softmax_backward),
    Exercise("sdpa_backward", "sdpa_backward", ("sdpa_backward",), _sdpa_backward_cases,
             _call_sdpa_backward, _expected_sdpa_backward, _diagnose_sdpa_backward),
    Exercise("entropy", "attention_entropy", ("attention_entropy",), _metric_cases, _call_metric,
             lambda c: head_metrics.attention_entropy(c["attentions"], c["sentences"]),
             _diagnose_entropy),
    Exercise("distance", "mean_attention_distance", ("mean_attention_distance",), _metric_cases,
             _call_metric,
             lambda c: head_metrics.mean_attention_distance(c["attentions"], c["sentences"]),
             _diagnose_distance),
    Exercise("dependency_accuracy", "dependency_accuracy", ("dependency_accuracy",),
             lambda rng, hidden: _metric_cases(rng, hidden, peaks=True), _call_metric,
             lambda c: head_metrics.syntactic_score(c["attentions"], c["sentences"]),
             _diagnose_dependency),
    Exercise("classify_head", "classify_head", ("classify_head",), _classify_cases,
             _call_classify, _expected_classify, _diagnose_classify),
    Exercise("probe", "control_labels / probe_accuracy", ("control_labels", "probe_accuracy"),
             _probe_cases, _call_probe, _expected_probe, _diagnose_probe),
    Exercise("ablation", "head_importance", ("head_importance",), _ablation_cases,
             _call_ablation, _expected_ablation, _diagnose_ablation),
]}

"""Checks for exercises 6-7 (ex03): the backward passes of softmax and of attention."""

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
from mha_course.checks.attention import sdpa_cases

__all__ = ["check_softmax_backward", "check_scaled_dot_product_attention_backward", "EXERCISES"]


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
    problem = shape_problem(got, expected.shape, "dx")
    if problem:
        return problem
    if close(got, expected):
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
    return first_match(got, variants) or \
        f"dx differs from A * (dA - sum(A * dA)) by up to {max_diff(got, expected):.2e}"


def check_softmax_backward(softmax_backward) -> None:
    """softmax_backward(A, dA, axis=-1) -> dx, for A = softmax(x, axis)."""
    run_public(_BY_ID["softmax_backward"], [softmax_backward])


def _sdpa_backward_cases(rng, hidden):
    cases = sdpa_cases(rng, hidden)
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
    problem = pair(got, 3, "dQ, dK, dV")
    if problem:
        return problem
    (dQ, dK, dV), (dQ_x, dK_x, dV_x) = got, expected
    Q, K, V, dZ = case["Q"], case["K"], case["V"], case["dZ"]
    A = npa.scaled_dot_product_attention(Q, K, V, case["mask"])[1]  # (..., n_q, n_k)
    for name, g, x in (("dV", dV, dV_x), ("dK", dK, dK_x), ("dQ", dQ, dQ_x)):
        if isinstance(g, np.ndarray) and g.shape != x.shape and g.shape[-2:] == x.shape[-2:][::-1]:
            return f"{name} has shape {g.shape}: it must have the shape of {name[1]}, {x.shape}"
        problem = shape_problem(g, x.shape, name)
        if problem:
            return problem
    if not close(dV, dV_x):
        return "dV is wrong: Z = A V, so dV = A^T dZ"
    root = np.sqrt(Q.shape[-1])
    for name, g, x in (("dQ", dQ, dQ_x), ("dK", dK, dK_x)):
        if close(g, x):
            continue
        found = first_match(g, {
            f"{name} is too large by sqrt(d_k): the scores are Q K^T / sqrt(d_k), so their "
            f"gradient is scaled by 1 / sqrt(d_k) too": lambda: x * root,
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
        if close(g, diagonal):
            return (f"{name}: backpropagate through the softmax with the full Jacobian, "
                    "dS = A * (dA - sum(A * dA, -1)), not A * dA")
        return {"dQ": "dQ is wrong: dQ = dS K with dS the gradient of the scaled scores",
                "dK": "dK is wrong: dK = dS^T Q (keys are the columns of the scores)"}[name]
    return None


def check_scaled_dot_product_attention_backward(scaled_dot_product_attention_backward) -> None:
    """scaled_dot_product_attention_backward(dZ, Q, K, V, mask=None) -> (dQ, dK, dV), as
    `mha_course.np_attention.scaled_dot_product_attention_backward`."""
    run_public(_BY_ID["sdpa_backward"], [scaled_dot_product_attention_backward])

EXERCISES: list[Exercise] = [
    Exercise("softmax_backward", "softmax_backward", ("softmax_backward",),
             _softmax_backward_cases,
             lambda fns, c: fns[0](c["A"].copy(), c["dA"].copy(), axis=c["axis"]),
             lambda c: npa.softmax_backward(c["A"], c["dA"], axis=c["axis"]),
             _diagnose_softmax_backward),
    # the grade_id "sdpa_backward" names a gradebook column: it stays when the function is renamed
    Exercise("sdpa_backward", "scaled_dot_product_attention_backward",
             ("scaled_dot_product_attention_backward",), _sdpa_backward_cases,
             _call_sdpa_backward, _expected_sdpa_backward, _diagnose_sdpa_backward),
]
_BY_ID = {ex.id: ex for ex in EXERCISES}

"""Checks for exercise 17 (ex09): the layer output as a sum of per-head contributions Z_i W^O_i.
The reference is the package's `analysis.contributions.head_contributions`."""

from __future__ import annotations

import numpy as np

from mha_course.analysis import contributions
from mha_course.checks._framework import (
    Exercise,
    close,
    first_match,
    max_diff,
    run_public,
    shape_problem,
)

__all__ = ["EXERCISES", "check_head_contributions"]


# ----------------------------------------------------------------------------------------------
# 17. head contributions


def _case(rng, lead, n_heads, n, d_v, d_model, gates, about):
    heads = rng.standard_normal((*lead, n_heads, n, d_v))  # (..., n_heads, n, d_v)
    W_O = rng.standard_normal((n_heads * d_v, d_model)) / np.sqrt(n_heads * d_v)
    head_gates = None
    if gates == "per head":
        head_gates = rng.choice([0.0, 0.5, 1.0], size=n_heads)  # (n_heads,)
    elif gates == "per item":
        head_gates = rng.choice([0.0, 1.0], size=(*lead, n_heads))  # (..., n_heads)
    return {"heads": heads, "W_O": W_O, "head_gates": head_gates, "about": about}


def _cases(rng, hidden):
    if not hidden:
        return [
            _case(rng, (), 2, 3, 4, 8, None, "2 heads, n=3, d_v=4, d_model=8, no gates"),
            _case(rng, (), 4, 5, 4, 16, "per head", "4 heads, d_v=4, d_model=16, head_gates "
                                                   "(n_heads,)"),
            _case(rng, (2,), 3, 4, 2, 5, "per item", "a batch of 2, 3 heads, head_gates "
                                                     "(batch, n_heads)"),
        ]
    return [
        _case(rng, (), 12, 6, 32, 384, None, "hidden: MiniLM's shapes, 12 heads, d_v=32"),
        _case(rng, (2, 3), 4, 5, 3, 7, "per item", "hidden: leading axes (2, 3), gates per item"),
        _case(rng, (), 8, 7, 16, 64, "per head", "hidden: 8 heads, gates per head"),
        _case(rng, (3,), 1, 4, 5, 6, None, "hidden: one head"),
    ]


def _call(fns, case):
    gates = case["head_gates"]
    args = (case["heads"].copy(), case["W_O"].copy())
    return fns[0](*args) if gates is None else fns[0](*args, gates.copy())


def _expected(case):
    return contributions.head_contributions(case["heads"], case["W_O"], case["head_gates"])


def _gated(parts, gates):
    return parts if gates is None else parts * gates[..., None, None]  # (..., n_heads, n, d_model)


def _diagnose(case, got, expected):
    heads, W_O, gates = case["heads"], case["W_O"], case["head_gates"]
    n_heads, d_v = heads.shape[-3], heads.shape[-1]
    if isinstance(got, np.ndarray) and got.shape == expected.shape[:-3] + expected.shape[-2:]:
        return ("you returned one array (..., n, d_model): that is the layer's output, the SUM of "
                "the contributions. Return one contribution per head, (..., n_heads, n, d_model)")
    problem = shape_problem(got, expected.shape, "your output (..., n_heads, n, d_model)")
    if problem:
        return problem
    if close(got, expected):
        return None
    # every h-th row: the blocks of a W^O read as if its rows were interleaved
    strided = W_O.reshape(d_v, n_heads, -1).swapaxes(0, 1)  # (n_heads, d_v, d_model)
    plain = contributions.head_contributions(heads, W_O)  # (..., n_heads, n, d_model)
    found = first_match(got, {
        "head i's block of W^O is the d_v consecutive rows i*d_v to (i+1)*d_v; you took every "
        "n_heads-th row instead (in a reshape, which axis varies fastest?)":
            lambda: _gated(heads @ strided, gates),
        "you ignored head_gates: multiply head i's contribution by its gate xi_i":
            lambda: plain if gates is not None else None,
        "each head's contribution is Z_i W^O_i, not divided by the number of heads (the sum over "
        "heads is the layer output)": lambda: expected / n_heads,
    })
    if found:
        return found
    return (f"values differ from Z_i W^O_i (times the gate xi_i) by up to "
            f"{max_diff(got, expected):.2e}")


def check_head_contributions(head_contributions) -> None:
    """head_contributions(heads, W_O, head_gates=None) -> (..., n_heads, n, d_model)."""
    run_public(_BY_ID["head_contributions"], [head_contributions])


EXERCISES: list[Exercise] = [
    Exercise("head_contributions", "head_contributions", ("head_contributions",), _cases, _call,
             _expected, _diagnose),
]
_BY_ID = {ex.id: ex for ex in EXERCISES}

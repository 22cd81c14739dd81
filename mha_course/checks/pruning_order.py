"""Checks for exercise 16 (ex08): the order in which to prune heads, once from a table of
importances and greedily with re-scoring. References: the package's `analysis.pruning.prune_order`
and `iterative_order`.

The cases for `iterative_order` score heads with a made-up model of interacting heads,
score(gates) = base + M (1 - gates): removing head k shifts every other head's score by a column
of M, so that re-scoring after each removal gives another order than scoring once.
"""

from __future__ import annotations

import numpy as np

from mha_course.analysis import pruning
from mha_course.checks._framework import Exercise, describe, pair, run_public

__all__ = ["EXERCISES", "check_pruning_order", "interacting_scores"]


def interacting_scores(base, interaction):
    """score_fn(gates) -> (n_layers, n_heads) = base + (M @ (1 - gates.ravel())) reshaped:
    base (n_layers, n_heads), M (n_total, n_total). Checks the gates' shape."""
    base = np.asarray(base, dtype=np.float64)  # (n_layers, n_heads)
    interaction = np.asarray(interaction, dtype=np.float64)  # (n_total, n_total)

    def score_fn(gates):
        gates = np.asarray(gates, dtype=np.float64)
        if gates.shape != base.shape:
            raise ValueError(f"score_fn takes gates of shape (n_layers, n_heads) = {base.shape}; "
                             f"got shape {gates.shape}")
        shift = interaction @ (1.0 - gates.ravel())  # (n_total,)
        return base + shift.reshape(base.shape)  # (n_layers, n_heads)

    return score_fn


# ----------------------------------------------------------------------------------------------
# 16. prune_order / iterative_order


def _case(rng, n_layers, n_heads, ties, about):
    n_total = n_layers * n_heads
    importance = rng.random((n_layers, n_heads))
    if ties:  # many heads that cost nothing, as in a real ablation table
        importance[rng.random((n_layers, n_heads)) < 0.5] = 0.0
    interaction = 0.5 * rng.standard_normal((n_total, n_total)) / np.sqrt(n_total)
    np.fill_diagonal(interaction, 0.0)
    return {"importance": importance, "n_layers": n_layers, "n_heads": n_heads,
            "base": rng.random((n_layers, n_heads)), "interaction": interaction, "about": about}


def _cases(rng, hidden):
    if not hidden:
        return [_case(rng, 2, 4, False, "2 layers x 4 heads"),
                _case(rng, 3, 4, True, "3 layers x 4 heads, half the importances 0 (ties)")]
    return [_case(rng, 6, 12, False, "hidden: 6 layers x 12 heads"),
            _case(rng, 2, 8, True, "hidden: 2 layers x 8 heads, ties"),
            _case(rng, 1, 5, False, "hidden: one layer of 5 heads"),
            _case(rng, 4, 3, True, "hidden: 4 layers x 3 heads, ties")]


def _call(fns, case):
    prune_order, iterative_order = fns
    score_fn = interacting_scores(case["base"], case["interaction"])
    calls = [0]

    def counted(gates):
        calls[0] += 1
        return score_fn(gates)

    first = prune_order(case["importance"].copy())
    greedy = iterative_order(counted, case["n_layers"], case["n_heads"])
    return [first, greedy, calls[0]]


def _expected(case):
    score_fn = interacting_scores(case["base"], case["interaction"])
    n_layers, n_heads = case["n_layers"], case["n_heads"]
    return [pruning.prune_order(case["importance"]),
            pruning.iterative_order(score_fn, n_layers, n_heads), n_layers * n_heads]


def _as_order(got, n_layers, n_heads, name) -> tuple[np.ndarray | None, str | None]:
    """The output as an int array of flat indices, or a message saying why it is not one."""
    n_total = n_layers * n_heads
    order = np.asarray(got) if isinstance(got, (list, np.ndarray)) else None
    if order is None or order.dtype.kind not in "biuf":
        return None, f"{name} should return an array of flat head indices; got {describe(got)}"
    if order.shape == (n_layers, n_heads) and n_layers > 1:
        return None, (f"{name} returned an array of shape {order.shape}: return one flat index per "
                      f"head, (n_layers * n_heads,) = ({n_total},), least important first")
    if order.shape == (n_total, 2):
        return None, (f"{name} returned (layer, head) pairs: return flat indices, "
                      f"layer * n_heads + head")
    if order.shape != (n_total,):
        return None, (f"{name} returned shape {order.shape}; expected ({n_total},), one index "
                      "per head")
    if order.dtype.kind == "f" and not np.array_equal(order, np.round(order)):
        return None, f"{name} returned fractions: return integer indices into importance.ravel()"
    order = order.astype(np.int64)
    if order.min() < 0 or order.max() >= n_total:
        return None, f"{name} returned indices outside 0..{n_total - 1}"
    values, counts = np.unique(order, return_counts=True)
    if (counts > 1).any():
        twice = int(values[counts > 1][0])
        return None, (f"{name}: head {twice} (flat index) appears more than once: every head is "
                      f"removed exactly once" + (", so skip the heads already removed when you "
                                                 "pick the next" if name == "iterative_order"
                                                 else ""))
    return order, None


def _diagnose_prune_order(case, got):
    importance = case["importance"]
    n_layers, n_heads = importance.shape
    order, problem = _as_order(got, n_layers, n_heads, "prune_order")
    if problem:
        return problem
    ranked = importance.ravel()[order]  # (n_total,)
    if np.all(np.diff(ranked) >= 0):
        return None
    if np.all(np.diff(ranked) <= 0):
        return "prune_order starts with the MOST important head: the least important goes first"
    if np.all(np.diff(importance.T.ravel()[order]) >= 0):
        return ("prune_order numbers the heads column by column (head * n_layers + layer): the "
                "flat index is layer * n_heads + head, the order of importance.ravel()")
    k = int(np.flatnonzero(np.diff(ranked) < 0)[0])
    return (f"prune_order removes a head of importance {ranked[k]:.3f} before one of "
            f"{ranked[k + 1]:.3f}: sort from the least important to the most")


def _diagnose_iterative(case, got, calls, expected):
    n_layers, n_heads = case["n_layers"], case["n_heads"]
    order, problem = _as_order(got, n_layers, n_heads, "iterative_order")
    if problem:
        return problem
    if np.array_equal(order, expected):
        return None
    score_fn = interacting_scores(case["base"], case["interaction"])
    if np.array_equal(order, pruning.prune_order(score_fn(np.ones((n_layers, n_heads))))):
        return (f"iterative_order gives the order of the first scores (score_fn was called "
                f"{calls} time(s)): after each removal, set that head's gate to 0 and score the "
                f"heads again with the new gates")
    if np.array_equal(order, pruning.iterative_order(lambda g: -score_fn(g), n_layers, n_heads)):
        return "iterative_order removes the MOST important head first: take the least important"
    k = int(np.flatnonzero(order != expected)[0])
    return (f"iterative_order agrees with greedy pruning for {k} step(s), then removes head "
            f"{int(order[k])} where the least important head still in place (scored with the "
            f"gates of the {k} removed heads at 0, the rest at 1) is {int(expected[k])}")


def _diagnose(case, got, expected):
    problem = pair(got, 3, "prune_order(importance), iterative_order(score_fn, ...)")
    if problem:
        return problem
    first, greedy, calls = got
    return (_diagnose_prune_order(case, first)
            or _diagnose_iterative(case, greedy, calls, np.asarray(expected[1])))


def check_pruning_order(prune_order, iterative_order) -> None:
    """prune_order(importance) and iterative_order(score_fn, n_layers, n_heads): flat head
    indices (layer * n_heads + head), least important first."""
    run_public(_BY_ID["pruning_order"], [prune_order, iterative_order])


EXERCISES: list[Exercise] = [
    Exercise("pruning_order", "prune_order / iterative_order", ("prune_order", "iterative_order"),
             _cases, _call, _expected, _diagnose),
]
_BY_ID = {ex.id: ex for ex in EXERCISES}

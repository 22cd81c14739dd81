"""Checks for exercises 18 and 19 (ex10): the prefix-matching (induction) score of attention
patterns and the OV copying score of a head's OV circuit. The references are the package's
`analysis.circuits.prefix_matching_score` and `analysis.circuits.ov_copying_score`.

Both exercises ask for a ValueError where the score is undefined (no query has a target; every
eigenvalue is 0), as the package raises. The student's process turns a ValueError, and a
complex score, into plain markers (`_caught`), so the judge can say what happened.
"""

from __future__ import annotations

import numpy as np

from mha_course.analysis import circuits
from mha_course.checks._framework import (
    Exercise,
    close,
    describe,
    first_match,
    max_diff,
    run_public,
    shape_problem,
)

__all__ = ["EXERCISES", "check_prefix_matching_score", "check_ov_copying_score", "targets_table"]

RAISED, COMPLEX = "raised", "complex"  # the markers' keys


def _caught(fn, *args):
    """fn(*args), with a ValueError as {"raised": message} and a complex number as
    {"complex": [real, imag]} (plain data that the grader can carry)."""
    try:
        out = fn(*args)
    except ValueError as error:
        return {RAISED: str(error) or "ValueError"}
    if isinstance(out, (complex, np.complexfloating)):
        return {COMPLEX: [float(out.real), float(out.imag)]}
    if isinstance(out, np.ndarray) and np.iscomplexobj(out):
        return {COMPLEX: list(out.shape)}
    return out


def _marker(value, key):
    return isinstance(value, dict) and key in value


def _raise_expected(got, what: str) -> str | None:
    """The message for an output where a ValueError was expected (None: it raised)."""
    if _marker(got, RAISED):
        return None
    if isinstance(got, (float, np.ndarray)) and not np.all(np.isfinite(got)):
        return f"{what}: your score is 0/0 (NaN); raise ValueError instead of returning NaN"
    return f"{what}: raise ValueError; you returned {describe(got)}"


# ----------------------------------------------------------------------------------------------
# 18. prefix_matching_score


def targets_table(tokens, offset: int = 1, which: str = "every", before_query: bool = True):
    """targets[i, k] (n, n) bool: key k = j + offset for an earlier occurrence j < i of token i
    (`which`: "every", "latest" or "first" of them), with k < i when `before_query`. The
    default is the exercise's definition; the keywords make the typical mistakes."""
    t = np.asarray(tokens)
    n = t.shape[0]
    same = (t[:, None] == t[None, :]) & np.tri(n, k=-1, dtype=bool)  # (n, n): t_j = t_i, j < i
    if which != "every":
        keep = np.zeros_like(same)  # (n, n)
        rows = np.flatnonzero(same.any(axis=1))  # (n_rows,): queries with an earlier occurrence
        cols = [np.flatnonzero(same[i])[-1 if which == "latest" else 0] for i in rows]
        keep[rows, cols] = True
        same = keep
    out = np.zeros_like(same)  # (n, n)
    for j in range(n):
        if 0 <= j + offset < n:
            out[:, j + offset] |= same[:, j]
    if before_query:
        out &= np.tri(n, k=-1, dtype=bool)  # (n, n): k < i
    return out


def _pattern_score(A, targets, over="targets", reduce="sum"):
    """The mean over queries of each query's weight on its targets: A (L, H, n, n) -> (L, H).
    over: "targets" (queries with a target), "all" (every query) or "pairs" ((query, target)
    pairs); reduce: "sum" or "mean" of a query's target weights."""
    queries = targets.any(axis=1)  # (n,)
    mass = (A * targets).sum(axis=-1)  # (L, H, n)
    if reduce == "mean":
        mass = mass / np.maximum(targets.sum(axis=1), 1)  # (L, H, n)
    if over == "all":
        return mass.mean(axis=-1)  # (L, H)
    if over == "pairs":
        return (A * targets).sum(axis=(-2, -1)) / targets.sum()  # (L, H)
    return mass[..., queries].mean(axis=-1)  # (L, H)


def _causal_attention(rng, n_layers, n_heads, n, peak=0.4):
    """Random causal softmax weights (n_layers, n_heads, n, n): row i spreads over keys 0..i."""
    A = rng.gamma(peak, size=(n_layers, n_heads, n, n)) + 1e-3  # (L, H, n, n)
    A *= np.tri(n)  # (L, H, n, n): keys after the query get 0
    return A / A.sum(axis=-1, keepdims=True)  # (L, H, n, n)


def _planted(rng, tokens):
    """One layer of four heads on `tokens`: induction (on the targets, else on key 0),
    previous-token, duplicate-token (on the earlier occurrences, else on the query itself) and
    random causal attention (which tells the typical mistakes apart)."""
    n = len(tokens)
    A = np.zeros((1, 4, n, n))  # (1, 4, n, n)
    A[0, 0] = targets_table(tokens)
    A[0, 0, ~A[0, 0].any(axis=1), 0] = 1.0
    A[0, 1, np.arange(1, n), np.arange(n - 1)] = 1.0
    A[0, 1, 0, 0] = 1.0
    A[0, 2] = targets_table(tokens, offset=0)
    A[0, 2, np.arange(n), np.arange(n)] += ~A[0, 2].any(axis=1)
    A[0, 3] = _causal_attention(rng, 1, 1, n)[0, 0]
    return A / A.sum(axis=-1, keepdims=True)  # (1, 4, n, n)


def _prefix_case(rng, tokens, about, n_layers=None, n_heads=None):
    tokens = np.asarray(tokens, dtype=np.int64)  # (n,)
    if n_layers is None:
        attention = _planted(rng, tokens)
    else:
        attention = _causal_attention(rng, n_layers, n_heads, len(tokens))
    return {"attention": attention, "tokens": tokens, "about": about}


def _doubled(rng, n, vocab):
    half = rng.permutation(np.arange(1, vocab))[: n // 2]  # (n // 2,): distinct tokens
    return np.concatenate([[0], half, half])[:n]  # (n,): BOS, a half, the half again


def _prefix_cases(rng, hidden):
    if not hidden:
        return [
            _prefix_case(rng, [0, 1, 2, 3, 0, 1, 2, 3], "tokens [A B C D A B C D], 1 layer: "
                         "induction, previous-token, duplicate-token and random heads"),
            _prefix_case(rng, [2, 0, 1, 2, 2, 4, 0, 1, 2, 3, 0, 0], "tokens [2 0 1 2 2 4 0 1 2 3 "
                         "0 0] (tokens recur several times, twice right after themselves), "
                         "2 layers x 2 heads of random causal attention", 2, 2),
            _prefix_case(rng, [5, 1, 2, 7, 3], "tokens [5 1 2 7 3]: no token repeats", 1, 2),
        ]
    return [
        _prefix_case(rng, _doubled(rng, 32, 64), "hidden: BOS, 16 distinct tokens, then the first "
                     "15 of them again (n=32), 2 layers x 2 heads", 2, 2),
        _prefix_case(rng, rng.integers(0, 3, size=16), "hidden: 16 tokens from a vocabulary of "
                     "3, 1 layer x 4 heads", 1, 4),
        _prefix_case(rng, [4, 1, 1, 3, 0, 2, 0, 5, 6, 1], "hidden: a repeat right after itself "
                     "and two after a gap, 3 layers x 1 head", 3, 1),
        _prefix_case(rng, _doubled(rng, 12, 20), "hidden: planted heads on a doubled sequence"),
        _prefix_case(rng, [3, 8, 8, 1, 6], "hidden: the only repeat is right after itself "
                     "(j = i - 1)", 2, 3),
    ]


def _prefix_call(fns, case):
    return _caught(fns[0], case["attention"].copy(), case["tokens"].copy())


def _prefix_expected(case):
    return _caught(circuits.prefix_matching_score, case["attention"], case["tokens"])


def _queries_and_targets(tokens, limit: int = 6) -> str:
    table = targets_table(tokens)
    pairs = [f"{i} -> {np.flatnonzero(table[i]).tolist()}" for i in np.flatnonzero(table.any(1))]
    more = f", ... ({len(pairs)} queries in all)" if len(pairs) > limit else ""
    return ", ".join(pairs[:limit]) + more


def _prefix_diagnose(case, got, expected):
    A, tokens = case["attention"], case["tokens"]
    if _marker(expected, RAISED):
        return _raise_expected(got, "no query has a target here (no token recurs with a key "
                                    "between its earlier occurrence and the query)")
    if _marker(got, RAISED):
        return (f"your function raised ValueError ({got[RAISED]}), but these queries have "
                f"targets (query -> keys): {_queries_and_targets(tokens)}")
    n_layers, n_heads, n = A.shape[:3]
    if isinstance(got, np.ndarray) and got.shape == (n_layers, n_heads, n):
        return ("you returned one number per query, (n_layers, n_heads, n): average the "
                "queries' weights on their targets into one score per head, (n_layers, n_heads)")
    problem = shape_problem(got, expected.shape, "your score (n_layers, n_heads)")
    if problem:
        return problem
    if close(got, expected):
        return None
    qualifying = targets_table(tokens).any(axis=1).sum()
    found = first_match(got, {
        "you measured the weight on the earlier occurrence j itself (that is the "
        "duplicate-token score); an induction head attends to the token AFTER it, key j + 1":
            lambda: _pattern_score(A, targets_table(tokens, offset=0)),
        "off by one: you took key j + 2; the target is key j + 1, the token right after the "
        "earlier occurrence j": lambda: _pattern_score(A, targets_table(tokens, offset=2)),
        "off by one: you took key j - 1, the token BEFORE the earlier occurrence j; the target "
        "is key j + 1, the token after it": lambda: _pattern_score(A, targets_table(tokens, -1)),
        "when a token repeats right after itself (j = i - 1), key j + 1 is the query itself: "
        "count only targets k < i":
            lambda: _pattern_score(A, targets_table(tokens, before_query=False)),
        "you used only the most recent earlier occurrence of the query's token; count the key "
        "after EVERY earlier occurrence":
            lambda: _pattern_score(A, targets_table(tokens, which="latest")),
        "you used only the first earlier occurrence of the query's token; count the key after "
        "EVERY earlier occurrence": lambda: _pattern_score(A, targets_table(tokens, which="first")),
        f"you averaged over every query (all {n}); average only over the queries that have a "
        f"target (here {qualifying}: {_queries_and_targets(tokens)})":
            lambda: _pattern_score(A, targets_table(tokens), over="all"),
        "you averaged over (query, target) pairs; take each query's total weight on its targets, "
        "then average over the queries":
            lambda: _pattern_score(A, targets_table(tokens), over="pairs"),
        "a query with several targets: add its weights on them (the attention mass on the "
        "targets), do not average them":
            lambda: _pattern_score(A, targets_table(tokens), reduce="mean"),
        "you read the attention transposed: rows are queries, columns keys (A[..., i, k] is "
        "query i's weight on key k)":
            lambda: _pattern_score(np.swapaxes(A, -1, -2), targets_table(tokens)),
        "your table is transposed: one row per layer, one column per head, (n_layers, n_heads)":
            lambda: expected.T,
    })
    if found:
        return found
    return (f"values differ from the reference by up to {max_diff(got, expected):.2e}; the "
            f"queries with targets here (query -> keys): {_queries_and_targets(tokens)}")


def check_prefix_matching_score(prefix_matching_score) -> None:
    """prefix_matching_score(attention (n_layers, n_heads, n, n), tokens (n,)) ->
    (n_layers, n_heads)."""
    run_public(_BY_ID["prefix_matching_score"], [prefix_matching_score])


# ----------------------------------------------------------------------------------------------
# 19. ov_copying_score


def _ov_case(ov, about):
    return {"ov": np.asarray(ov, dtype=np.float64), "about": about}  # (vocab, vocab)


def _circuit(rng, vocab, d_model, d_head, copy=0.0, tied=False):
    """W_E W_V W_O W_U of a random head, (vocab, vocab), rank <= d_head; `copy` > 0 adds
    W_O = copy * W_V^T (the head writes back what it read); `tied`: W_U = W_E^T."""
    W_E = rng.standard_normal((vocab, d_model)) / np.sqrt(d_model)
    W_V = rng.standard_normal((d_model, d_head)) / np.sqrt(d_model)
    W_O = rng.standard_normal((d_head, d_model)) / np.sqrt(d_head) + copy * W_V.T
    W_U = W_E.T if tied else rng.standard_normal((d_model, vocab)) / np.sqrt(d_model)
    return circuits.ov_circuit(W_E, W_V, W_O, W_U).full()  # (vocab, vocab)


def _copier(rng, vocab, d_model, d_head):
    """A pure copier: W_E P W_E^T with P the projection on d_head directions (all eigenvalues
    >= 0)."""
    W_E = rng.standard_normal((vocab, d_model))  # (vocab, d_model)
    basis, _ = np.linalg.qr(rng.standard_normal((d_model, d_head)))  # (d_model, d_head)
    return W_E @ basis @ basis.T @ W_E.T  # (vocab, vocab)


def _rotation(vocab):
    """A 90-degree turn in the plane of tokens 0 and 1 (eigenvalues +i and -i), nothing else."""
    ov = np.zeros((vocab, vocab))
    ov[0, 1], ov[1, 0] = -1.0, 1.0
    return ov


def _ov_cases(rng, hidden):
    if not hidden:
        copier = _copier(rng, 6, 4, 2)
        return [
            _ov_case(copier, "a pure copier: W_E P W_E^T, P a projection (vocab 6, d_head 2)"),
            _ov_case(-copier, "an anti-copier: minus the copier"),
            _ov_case([[1.0, 3.0], [3.0, 1.0]], "[[1, 3], [3, 1]]: attending to a token raises the "
                     "other token's logit more than its own"),
            _ov_case(_circuit(rng, 8, 6, 3), "a random head (vocab 8, d_model 6, d_head 3)"),
            _ov_case(_rotation(4), "a rotation in the plane of tokens 0 and 1 (vocab 4)"),
            _ov_case(np.zeros((3, 3)), "the zero matrix"),
        ]
    turned = _rotation(10) * 2.0
    turned[2:, 2:] = 0.5 * _copier(rng, 8, 5, 2)
    return [  # the random head first: most mistakes give distinct values on it
        _ov_case(_circuit(rng, 50, 32, 8), "hidden: a random head (vocab 50, d_head 8)"),
        _ov_case(_circuit(rng, 64, 64, 16, copy=2.0, tied=True), "hidden: a copying head of "
                 "the induction model's shape (vocab 64, d_model 64, d_head 16)"),
        _ov_case(_circuit(rng, 20, 12, 5, copy=-1.0, tied=True), "hidden: a mostly anti-copying "
                 "head, W_U = W_E^T (vocab 20, d_head 5)"),
        _ov_case(turned, "hidden: a rotation of tokens 0 and 1 beside a copier of the others"),
        _ov_case(np.zeros((7, 7)), "hidden: the zero matrix, 7 x 7"),
    ]


def _ov_call(fns, case):
    return _caught(fns[0], case["ov"].copy())


def _ov_expected(case):
    ov = case["ov"]
    return _caught(circuits.ov_copying_score,
                   circuits.FactoredMatrix(ov, np.eye(ov.shape[1])))  # the full matrix, factored


def _ratio(top, bottom):
    return float(top / bottom) if bottom != 0 else float("nan")


def _ov_diagnose(case, got, expected):
    ov = case["ov"]
    if _marker(expected, RAISED):
        return _raise_expected(got, "every eigenvalue of this matrix is 0, so the score is 0/0")
    if _marker(got, RAISED):
        return (f"your function raised ValueError ({got[RAISED]}) on a matrix with nonzero "
                "eigenvalues")
    if _marker(got, COMPLEX):
        return ("you returned a complex number: the sum of a real matrix's eigenvalues is real, "
                "but NumPy keeps the complex type; return the real part, as a float")
    if isinstance(got, np.ndarray):
        what = "the eigenvalues themselves" if got.shape == (len(ov),) else describe(got)
        return f"return one number, the score; you returned {what}"
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        return f"return one number (a float); you returned {describe(got)}"
    if np.isnan(got) or np.isinf(got):
        return ("your score is not finite (a division by 0?): the denominator sum |lambda| is 0 "
                "only when every eigenvalue is 0, and |lambda| of a complex eigenvalue is its "
                "modulus sqrt(re^2 + im^2), not |re|")
    value = np.asarray(float(got))
    if close(value, np.asarray(expected)):
        return None
    lam = np.linalg.eigvals(ov)  # (vocab,)
    diagonal = np.diagonal(ov)  # (vocab,)
    nonzero = np.abs(lam) > 1e-9 * max(np.abs(lam).max(), 1e-300)  # (vocab,)
    sym = (ov + ov.T) / 2  # (vocab, vocab)
    found = first_match(value, {
        "you used the diagonal entries ov[a, a]; the score uses the eigenvalues (their sum is the "
        "trace, the same, but sum |ov[a, a]| is not sum |lambda|)":
            lambda: _ratio(diagonal.sum(), np.abs(diagonal).sum()),
        "you took the absolute value in the numerator too: sum |lambda| / sum |lambda| is 1 for "
        "every head. The numerator keeps the signs: sum lambda": lambda: 1.0,
        "your score has the opposite sign: sum lambda / sum |lambda| is positive for a copier":
            lambda: -float(expected),
        "your ratio is upside down: the score is sum lambda / sum |lambda| (between -1 and 1)":
            lambda: _ratio(np.abs(lam).sum(), lam.sum().real),
        "you counted the positive eigenvalues; the score weighs each by its size, "
        "sum lambda / sum |lambda|": lambda: (lam.real[nonzero] > 0).mean(),
        "you counted the positive eigenvalues among all of them; the score weighs each by its "
        "size, sum lambda / sum |lambda|": lambda: (lam.real > 1e-12).mean(),
        "that is the diagonal dominance (the share of rows whose largest entry is on the "
        "diagonal), another copying measure; this exercise asks for the eigenvalue score":
            lambda: circuits.diagonal_dominance(circuits.FactoredMatrix(ov, np.eye(len(ov)))),
        "|lambda| of a complex eigenvalue is its modulus sqrt(re^2 + im^2), not |re|":
            lambda: _ratio(lam.real.sum(), np.abs(lam.real).sum()),
        "you divided by the singular values (sum sigma, the nuclear norm); the denominator is "
        "sum |lambda| over the eigenvalues, which differ for a matrix that is not symmetric":
            lambda: _ratio(lam.sum().real, np.linalg.svd(ov, compute_uv=False).sum()),
        "eigvalsh / eigh assume a symmetric matrix and read one triangle only; the OV circuit "
        "is not symmetric: use np.linalg.eigvals":
            lambda: _ratio(np.linalg.eigvalsh(ov).sum(), np.abs(np.linalg.eigvalsh(ov)).sum()),
        "you took the eigenvalues of the symmetric part (ov + ov^T) / 2; use those of the OV "
        "circuit itself":
            lambda: _ratio(np.linalg.eigvalsh(sym).sum(), np.abs(np.linalg.eigvalsh(sym)).sum()),
    })
    if found:
        return found
    return (f"your score {float(got):.6g} differs from sum lambda / sum |lambda| = "
            f"{float(expected):.6g} (over the eigenvalues of the OV circuit)")


def check_ov_copying_score(ov_copying_score) -> None:
    """ov_copying_score(ov (vocab, vocab)) -> float."""
    run_public(_BY_ID["ov_copying_score"], [ov_copying_score])


EXERCISES: list[Exercise] = [
    Exercise("prefix_matching_score", "prefix_matching_score", ("prefix_matching_score",),
             _prefix_cases, _prefix_call, _prefix_expected, _prefix_diagnose),
    Exercise("ov_copying_score", "ov_copying_score", ("ov_copying_score",), _ov_cases, _ov_call,
             _ov_expected, _ov_diagnose),
]
_BY_ID = {ex.id: ex for ex in EXERCISES}

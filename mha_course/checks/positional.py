"""Checks for exercise 14 (ex06): a previous-token head designed by hand.

The student returns the query and key matrices (W_Q, W_K) of a head whose input is
X = [token embedding (d_token) | one-hot position (n_positions)]. The check builds such X from
embeddings it chooses (hidden ones for the grader), runs the head through the package's
`scaled_dot_product_attention` and asks, for every query i >= 1, at least `MIN_WEIGHT` of the
weight on key i - 1; query 0 has no previous token and must put at least `MIN_WEIGHT` on itself.
No reference matrices are compared: any head that attends that way is right.
"""

from __future__ import annotations

import numpy as np

from mha_course import np_attention as npa
from mha_course.checks._framework import Exercise, describe, pair, run_public

__all__ = [
    "EXERCISES",
    "MIN_WEIGHT",
    "check_previous_token_head",
    "positional_inputs",
    "previous_token_weights",
]

MIN_WEIGHT = 0.9  # the least weight every query must put on its target key


def positional_inputs(embeddings, n_positions: int) -> np.ndarray:
    """X = [embeddings | one-hot positions]: embeddings (n, d_token) with n <= n_positions ->
    (n, d_token + n_positions), row t ending in the one-hot vector of position t."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2 or embeddings.shape[0] > n_positions:
        raise ValueError(f"embeddings must be (n, d_token) with n <= n_positions = {n_positions}; "
                         f"got shape {embeddings.shape}")
    positions = np.eye(n_positions)[: embeddings.shape[0]]  # (n, n_positions)
    return np.concatenate([embeddings, positions], axis=1)  # (n, d_token + n_positions)


def previous_token_weights(W_Q, W_K, embeddings, n_positions: int) -> np.ndarray:
    """The head's attention weights (n, n) on X = positional_inputs(embeddings, n_positions),
    computed with the package's scaled_dot_product_attention (V = X: only the weights matter)."""
    X = positional_inputs(embeddings, n_positions)  # (n, d_model)
    _, A = npa.scaled_dot_product_attention(X @ np.asarray(W_Q, dtype=np.float64),
                                            X @ np.asarray(W_K, dtype=np.float64), X)  # A (n, n)
    return A


def target_weights(A) -> np.ndarray:
    """(n,): the weight each query puts on its target, key i - 1 (key 0 for query 0)."""
    n = A.shape[-1]
    target = np.maximum(np.arange(n) - 1, 0)  # (n,)
    return A[np.arange(n), target]  # (n,)


# ----------------------------------------------------------------------------------------------
# 14. a previous-token head


def _case(rng, d_token, n_positions, n, scale, about):
    return {"d_token": d_token, "n_positions": n_positions, "about": about,
            "embeddings": scale * rng.standard_normal((n, d_token))}


def _cases(rng, hidden):
    if not hidden:
        return [
            _case(rng, 4, 6, 6, 1.0, "d_token=4, n_positions=6, a sequence of 6 tokens"),
            _case(rng, 8, 12, 5, 1.0, "d_token=8, n_positions=12, a sequence of 5 tokens"),
            _case(rng, 8, 32, 32, 3.0, "d_token=8, n_positions=32, 32 tokens, embeddings of "
                                       "size ~3"),
        ]
    big = int(rng.integers(40, 65))
    return [
        _case(rng, int(rng.integers(2, 20)), big, big, 3.0,
              f"hidden: n_positions={big}, a full-length sequence"),
        _case(rng, 16, 20, int(rng.integers(2, 8)), 5.0,
              "hidden: a short sequence, large embeddings"),
        _case(rng, 1, 9, 9, 1.0, "hidden: d_token=1, n_positions=9"),
        _case(rng, 32, 48, 30, 2.0, "hidden: d_token=32, n_positions=48, 30 tokens"),
    ]


def _call(fns, case):
    return list(fns[0](case["d_token"], case["n_positions"]))


def _reference(d_token, n_positions):
    """A previous-token head, written here independently of the solution notebook: key j sits in
    slot j + 1 (key 0 also in slot 0), query i looks for slot i, with a score gap that leaves
    1 % of the weight to the other keys."""
    d_model = d_token + n_positions
    gap = np.log(99 * max(n_positions - 1, 1))
    W_Q = np.zeros((d_model, n_positions + 1))  # (d_model, d_k)
    W_K = np.zeros((d_model, n_positions + 1))  # (d_model, d_k)
    W_Q[d_token:, :n_positions] = np.eye(n_positions) * gap * np.sqrt(n_positions + 1)
    W_K[d_token:, 1:] = np.eye(n_positions)
    W_K[d_token, 0] = 1.0
    return W_Q, W_K


def _expected(case):
    return list(_reference(case["d_token"], case["n_positions"]))


def _diagnose(case, got, expected):
    problem = pair(got, 2, "W_Q, W_K")
    if problem:
        return problem
    W_Q, W_K = got
    d_token, n_positions, E = case["d_token"], case["n_positions"], case["embeddings"]
    d_model = d_token + n_positions
    for name, W in (("W_Q", W_Q), ("W_K", W_K)):
        if not isinstance(W, np.ndarray) or W.ndim != 2:
            return f"{name} should be a matrix (d_model, d_k); got {describe(W)}"
        if W.shape[0] != d_model:
            return (f"{name} has {W.shape[0]} rows; X = [token embedding | one-hot position] has "
                    f"d_token + n_positions = {d_token} + {n_positions} = {d_model} columns, so "
                    f"{name} needs {d_model} rows")
        if not np.isfinite(W).all():
            return f"{name} contains NaN or inf: use large finite numbers"
    if W_Q.shape[1] != W_K.shape[1]:
        return (f"W_Q is {W_Q.shape} and W_K is {W_K.shape}: queries and keys need the same "
                f"width d_k, since the score is their dot product")
    A = previous_token_weights(W_Q, W_K, E, n_positions)  # (n, n)
    if not np.isfinite(A).all():
        return "the weights contain NaN: are your scores finite?"
    n = len(E)
    on_target = target_weights(A)  # (n,)
    if (on_target >= MIN_WEIGHT).all():
        return None
    top = A.argmax(axis=-1)  # (n,): each query's most-attended key
    if n > 2 and np.all(top[1:n - 1] == np.arange(2, n)):
        return ("your head attends to the NEXT token (i + 1): the query of position i must match "
                "the key of position i - 1, not i + 1")
    if n > 1 and np.all(top[1:] == np.arange(1, n)):
        return ("your head attends to the token itself (the diagonal): the query of position i "
                "must match the key of position i - 1")
    plain = previous_token_weights(W_Q, W_K, np.zeros_like(E), n_positions)  # (n, n)
    if (target_weights(plain) >= MIN_WEIGHT).all():
        return ("your head reads the token embeddings: with these embeddings its scores change. "
                "A positional head should read only the one-hot part of X (the last n_positions "
                "columns)")
    later = on_target[1:]
    if n > 1 and (later < MIN_WEIGHT).any():
        i = 1 + int(np.argmin(later))
        if np.all(top[1:] == np.arange(n - 1)):
            return (f"every query's largest weight is on the previous token, but query {i} puts "
                    f"only {on_target[i]:.2f} there ({n} keys). The softmax is too flat: with a "
                    f"score gap g between key i - 1 and the others, the weight is "
                    f"e^g / (e^g + n - 1). Make the scores larger (remember the division by "
                    f"sqrt(d_k)), enough for the longest sequence, n = n_positions")
        return (f"query {i} puts {on_target[i]:.2f} on key {i - 1} (its largest weight is on key "
                f"{int(top[i])}): the query of position i must match the key of position "
                f"i - 1 and no other")
    return (f"query 0 puts only {on_target[0]:.2f} on itself: it has no previous token, and its "
            f"weights must still sum to 1; send them to key 0 (position 0's key must also match "
            f"position 0's query)")


def check_previous_token_head(previous_token_head) -> None:
    """previous_token_head(d_token, n_positions) -> (W_Q, W_K), each
    (d_token + n_positions, d_k)."""
    run_public(_BY_ID["previous_token_head"], [previous_token_head])


EXERCISES: list[Exercise] = [
    Exercise("previous_token_head", "previous_token_head", ("previous_token_head",), _cases,
             _call, _expected, _diagnose),
]
_BY_ID = {ex.id: ex for ex in EXERCISES}

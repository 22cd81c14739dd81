"""The self-checks of exercises 14-17 (ex06-ex09): right answers pass public and hidden cases,
each typical mistake gets the message that names it, and odd outputs never crash the judge.

The "students" are written here, independently of the check modules' references, or are the
package's own functions where the exercise has the same name and signature.
"""

from __future__ import annotations

import numpy as np
import pytest
from judging import first_problem, judge_all

from mha_course import checks
from mha_course.analysis import contributions, pruning
from mha_course.analysis.alignment import word_attention as package_word_attention
from mha_course.checks import EXERCISES, CheckFailed
from mha_course.checks.positional import previous_token_weights, target_weights
from mha_course.checks.pruning_order import interacting_scores

NEW = ("previous_token_head", "word_attention", "pruning_order", "head_contributions")


# ----------------------------------------------------------------------------------------------
# Independent students: right answers


def previous_token_head(d_token, n_positions, *, gap=None, shift=-1, slot_zero=True,
                        token_weight=0.0, swap=False, rows=None):
    """A previous-token head with d_k = n_positions: query i looks in slot i, key j sits in slot
    j - shift (key 0 also in slot 0 when `slot_zero`). The keywords make typical mistakes."""
    d_model = d_token + n_positions if rows is None else rows
    gap = np.log(20 * n_positions) if gap is None else gap
    W_Q = np.zeros((d_model, n_positions))
    W_K = np.zeros((d_model, n_positions))
    for i in range(n_positions):
        W_Q[d_model - n_positions + i, i] = gap * np.sqrt(n_positions)
        if 0 <= i - shift < n_positions:
            W_K[d_model - n_positions + i, i - shift] = 1.0
    if slot_zero:
        W_K[d_model - n_positions, 0] = 1.0
    if token_weight:
        rng = np.random.default_rng(0)
        W_Q[:d_token] = token_weight * rng.standard_normal((d_token, n_positions))
        W_K[:d_token] = token_weight * rng.standard_normal((d_token, n_positions))
    return (W_K, W_Q) if swap else (W_Q, W_K)


def word_attention_loop(attentions, word_index, *, to="sum", from_="mean"):
    """Clark et al.'s word attention, word by word; `to` and `from_` make typical mistakes."""
    A = np.asarray(attentions, dtype=np.float64)
    n_words = int(np.max(word_index)) + 1
    pieces = [np.flatnonzero(np.asarray(word_index) == w) for w in range(n_words)]
    cols = np.stack([getattr(A[..., p], to)(axis=-1) for p in pieces], axis=-1)
    rows = [cols[..., p[:1] if from_ == "first" else p, :] for p in pieces]
    pooled = [r[..., 0, :] if from_ == "first" else getattr(r, from_)(axis=-2) for r in rows]
    return np.stack(pooled, axis=-2)


def prune_order_sorted(importance):
    flat = np.asarray(importance).ravel().tolist()
    return sorted(range(len(flat)), key=lambda k: flat[k])


def iterative_order_loop(score_fn, n_layers, n_heads, *, rescore=True, exclude=True, sign=1.0):
    gates = np.ones((n_layers, n_heads))
    order = []
    scores = None
    for _ in range(n_layers * n_heads):
        if rescore or scores is None:
            scores = sign * np.asarray(score_fn(gates.copy()), dtype=float)
        candidates = [k for k in range(n_layers * n_heads) if not exclude or k not in order]
        head = min(candidates, key=lambda k: scores.flat[k])
        order.append(head)
        gates[head // n_heads, head % n_heads] = 0.0
    return order


def head_contributions_loop(heads, W_O, head_gates=None, *, blocks="rows", scale=1.0):
    n_heads, d_v = heads.shape[-3], heads.shape[-1]
    out = []
    for i in range(n_heads):
        rows = slice(i * d_v, (i + 1) * d_v) if blocks == "rows" else slice(i, None, n_heads)
        part = heads[..., i, :, :] @ W_O[rows] * scale
        if head_gates is not None:
            part = part * np.asarray(head_gates)[..., i, None, None]
        out.append(part)
    return np.stack(out, axis=-3)


REFERENCE = {
    "previous_token_head": [[previous_token_head]],
    "word_attention": [[package_word_attention], [word_attention_loop]],
    "pruning_order": [[pruning.prune_order, pruning.iterative_order],
                      [prune_order_sorted, iterative_order_loop]],
    "head_contributions": [[contributions.head_contributions], [head_contributions_loop]],
}


def test_the_new_exercises_are_registered():
    assert set(NEW) <= set(EXERCISES) and sorted(REFERENCE) == sorted(NEW)
    for name in ("check_previous_token_head", "check_word_attention", "check_pruning_order",
                 "check_head_contributions"):
        assert callable(getattr(checks, name))


@pytest.mark.parametrize("exercise_id", NEW)
def test_right_answers_pass_public_and_hidden_cases(exercise_id):
    for functions in REFERENCE[exercise_id]:
        assert judge_all(exercise_id, functions, hidden=False) == []
        assert judge_all(exercise_id, functions, hidden=True, seed=1) == []
        assert judge_all(exercise_id, functions, hidden=True, seed=2024) == []


@pytest.mark.parametrize("exercise_id", NEW)
def test_hidden_cases_are_seeded_and_differ_from_the_public_ones(exercise_id):
    ex = EXERCISES[exercise_id]
    a, b = ex.cases(True, seed=3), ex.cases(True, seed=3)
    assert [c["about"] for c in a] == [c["about"] for c in b]
    public = ex.cases(hidden=False)
    assert {case["about"] for case in public}.isdisjoint(case["about"] for case in a)
    assert len(a) >= 3


def test_the_reference_head_is_sharp_on_every_case_and_a_flat_one_is_not():
    ex = EXERCISES["previous_token_head"]
    for case in ex.cases(hidden=True, seed=9):
        n_positions = case["n_positions"]
        W_Q, W_K = previous_token_head(case["d_token"], n_positions)
        A = previous_token_weights(W_Q, W_K, case["embeddings"], n_positions)
        assert np.allclose(A.sum(-1), 1) and target_weights(A).min() >= 0.9
        n = len(A)  # an independent reading of "the previous token": the subdiagonal
        assert np.all(A[np.arange(1, n), np.arange(n - 1)] >= 0.9) and A[0, 0] >= 0.9
        W_Q, W_K = previous_token_head(case["d_token"], n_positions, gap=1.0)
        assert target_weights(previous_token_weights(W_Q, W_K, case["embeddings"],
                                                     n_positions)).min() < 0.9


def test_the_iterative_cases_tell_rescoring_from_scoring_once():
    for hidden, seed in ((False, 0), (True, 1), (True, 2024)):
        for case in EXERCISES["pruning_order"].cases(hidden, seed):
            score_fn = interacting_scores(case["base"], case["interaction"])
            n_layers, n_heads = case["n_layers"], case["n_heads"]
            once = pruning.prune_order(score_fn(np.ones((n_layers, n_heads))))
            assert not np.array_equal(once, pruning.iterative_order(score_fn, n_layers, n_heads))


def test_ties_may_come_in_any_order():
    case = EXERCISES["pruning_order"].cases(hidden=False)[1]
    assert (case["importance"] == 0).sum() > 1  # the public case has ties
    def backwards(imp):  # ties in the reverse of the package's (stable) order
        return [int(k) for k in np.lexsort((-np.arange(imp.size), imp.ravel()))]

    assert judge_all("pruning_order", [backwards, pruning.iterative_order], hidden=False) == []


# ----------------------------------------------------------------------------------------------
# Typical mistakes and their messages


def pair_stub(first=pruning.prune_order, second=pruning.iterative_order):
    return [first, second]


MISTAKES = [
    ("previous_token_head", [lambda d, n: previous_token_head(d, n, swap=True)],
     "attends to the NEXT token"),
    ("previous_token_head", [lambda d, n: previous_token_head(d, n, shift=0, slot_zero=False)],
     "attends to the token itself"),
    ("previous_token_head", [lambda d, n: previous_token_head(d, n, gap=1.0)],
     "The softmax is too flat"),
    ("previous_token_head", [lambda d, n: previous_token_head(d, n, token_weight=2.0)],
     "your head reads the token embeddings"),
    ("previous_token_head", [lambda d, n: previous_token_head(d, n, slot_zero=False)],
     "query 0 puts only"),
    ("previous_token_head", [lambda d, n: previous_token_head(d, n, rows=n)],
     "needs"),
    ("previous_token_head", [lambda d, n: (np.zeros((d + n, 3)), np.zeros((d + n, 4)))],
     "queries and keys need the same width d_k"),
    ("word_attention", [lambda A, w: word_attention_loop(A, w, to="mean")],
     "you averaged the attention TO a word's pieces"),
    ("word_attention", [lambda A, w: word_attention_loop(A, w, from_="sum")],
     "you summed the rows of the pieces attending FROM a word"),
    ("word_attention", [lambda A, w: word_attention_loop(A, w, to="mean", from_="sum")],
     "you did the opposite"),
    ("word_attention", [lambda A, w: word_attention_loop(A, w, from_="first")],
     "only the first piece's row"),
    ("word_attention", [lambda A, w: np.swapaxes(package_word_attention(A, w), -1, -2)],
     "your result is transposed"),
    ("word_attention", [lambda A, w: A], "has shape"),
    ("pruning_order", pair_stub(lambda imp: pruning.prune_order(-np.asarray(imp))),
     "starts with the MOST important head"),
    ("pruning_order", pair_stub(lambda imp: pruning.prune_order(np.asarray(imp).T)),
     "numbers the heads column by column"),
    ("pruning_order", pair_stub(lambda imp: np.argsort(imp, axis=-1)), "one flat index per head"),
    ("pruning_order", pair_stub(lambda imp: np.argwhere(np.ones_like(imp))), "(layer, head) pairs"),
    ("pruning_order",
     pair_stub(second=lambda f, L, H: iterative_order_loop(f, L, H, rescore=False)),
     "gives the order of the first scores"),
    ("pruning_order",
     pair_stub(second=lambda f, L, H: iterative_order_loop(f, L, H, exclude=False)),
     "skip the heads already removed"),
    ("pruning_order",
     pair_stub(second=lambda f, L, H: iterative_order_loop(f, L, H, sign=-1.0)),
     "removes the MOST important head first"),
    ("head_contributions",
     [lambda Z, W, g=None: head_contributions_loop(Z, W, g, blocks="strided")],
     "you took every n_heads-th row"),
    ("head_contributions", [lambda Z, W, g=None: contributions.head_contributions(Z, W)],
     "you ignored head_gates"),
    ("head_contributions", [lambda Z, W, g=None: contributions.head_contributions(Z, W, g).sum(-3)],
     "the SUM of the contributions"),
    ("head_contributions",
     [lambda Z, W, g=None: head_contributions_loop(Z, W, g, scale=1.0 / Z.shape[-3])],
     "not divided by the number of heads"),
]


@pytest.mark.parametrize("exercise_id, functions, expected", MISTAKES,
                         ids=[f"{m[0]}-{m[2][:30]}" for m in MISTAKES])
def test_typical_mistakes_get_specific_feedback(exercise_id, functions, expected):
    assert expected in first_problem(exercise_id, functions)


def test_a_head_with_too_few_rows_is_told_how_many():
    message = first_problem("previous_token_head", [lambda d, n: previous_token_head(d, n, rows=n)])
    assert "d_token + n_positions = 4 + 6 = 10 columns" in message


def test_a_flat_head_is_told_the_weight_formula():
    message = first_problem("previous_token_head",
                            [lambda d, n: previous_token_head(d, n, gap=1.0)])
    assert "e^g / (e^g + n - 1)" in message and "sqrt(d_k)" in message


def test_iterative_order_names_the_step_where_it_goes_wrong():
    def late(score_fn, n_layers, n_heads):  # right for two steps, then swaps two heads
        order = list(pruning.iterative_order(score_fn, n_layers, n_heads))
        order[2], order[3] = order[3], order[2]
        return order

    message = first_problem("pruning_order", pair_stub(second=late))
    assert "agrees with greedy pruning for 2 step(s)" in message


# ----------------------------------------------------------------------------------------------
# The check functions as students call them


def test_checks_print_public_checks_passed(capsys):
    checks.check_previous_token_head(previous_token_head)
    checks.check_word_attention(package_word_attention)
    checks.check_pruning_order(pruning.prune_order, pruning.iterative_order)
    checks.check_head_contributions(contributions.head_contributions)
    out = capsys.readouterr().out
    assert out.count("public checks passed") == 4 and "Hidden checks may still fail." in out
    assert "previous_token_head: public checks passed (3 cases)" in out


def test_check_raises_with_the_reason_and_the_case():
    with pytest.raises(CheckFailed) as info:
        checks.check_previous_token_head(lambda d, n: previous_token_head(d, n, gap=1.0))
    assert "too flat" in str(info.value) and "case: d_token=4, n_positions=6" in str(info.value)


def test_score_fn_rejects_gates_of_the_wrong_shape():
    def wrong_shape(score_fn, n_layers, n_heads):
        score_fn(np.ones(n_layers * n_heads))
        return pruning.iterative_order(score_fn, n_layers, n_heads)

    with pytest.raises(CheckFailed, match=r"score_fn takes gates of shape \(n_layers, n_heads\)"):
        checks.check_pruning_order(pruning.prune_order, wrong_shape)


@pytest.mark.parametrize("got", [None, "text", [1, 2], {"a": 1}, np.zeros((2, 2)),
                                 [np.zeros(1)] * 5, [np.zeros(1)] * 3, float("nan"),
                                 [[0.5, 1.5], [0.0], 2]])
@pytest.mark.parametrize("exercise_id", NEW)
def test_odd_outputs_never_crash_the_judge(exercise_id, got):
    ex = EXERCISES[exercise_id]
    for case in ex.cases(hidden=False):
        message = ex.judge(case, got)
        assert isinstance(message, str) and message

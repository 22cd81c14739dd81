"""The self-checks of exercises 18-19 (ex10, topic "induction"): right answers pass the public and
hidden cases, each typical mistake gets the message that names it, undefined scores must raise
ValueError, and odd outputs never crash the judge.

The "students" are written here with loops, independently of the check module's tables and of
the package's vectorised references.
"""

from __future__ import annotations

import numpy as np
import pytest
from judging import first_problem, judge_all

from mha_course import checks
from mha_course.analysis import circuits
from mha_course.checks import EXERCISES, TOPICS, CheckFailed

IDS = ("prefix_matching_score", "ov_copying_score")


# ----------------------------------------------------------------------------------------------
# Independent students


def prefix_loop(attention, tokens, *, offset=1, which="every", allow_self=False, over="queries",
                reduce="sum", transpose=False, per_query=False, nan=False):
    """Query by query: the weight on key j + offset after the earlier occurrences j of its token.
    The keywords make typical mistakes."""
    A = np.asarray(attention, dtype=float)
    if transpose:
        A = np.swapaxes(A, -1, -2)
    t = list(tokens)
    n = len(t)
    scores, n_pairs = [], 0
    for i in range(n):
        earlier = [j for j in range(i) if t[j] == t[i]]
        if which == "latest":
            earlier = earlier[-1:]
        elif which == "first":
            earlier = earlier[:1]
        keys = [j + offset for j in earlier if 0 <= j + offset and (j + offset < i or
                                                                   allow_self and j + offset == i)]
        if not keys:
            scores.append(np.zeros(A.shape[:2]) if over == "all" else None)
            continue
        n_pairs += len(keys)
        mass = sum(A[:, :, i, k] for k in keys)
        scores.append(mass / len(keys) if reduce == "mean" else mass)
    kept = [s for s in scores if s is not None]
    if per_query:
        return np.stack([s if s is not None else np.zeros(A.shape[:2]) for s in scores], axis=-1)
    if not kept:
        if nan:
            return np.full(A.shape[:2], np.nan)
        raise ValueError("no query has a target")
    if over == "pairs":
        return sum(kept) / n_pairs
    return sum(kept) / len(kept)


def ov_loop(ov, *, kind="eig"):
    """sum(lambda) / sum(|lambda|) with np.linalg.eig; `kind` makes typical mistakes."""
    ov = np.asarray(ov, dtype=float)
    lam = np.linalg.eig(ov)[0]
    if kind == "diag":
        lam = np.diagonal(ov)
    elif kind == "eigvalsh":
        lam = np.linalg.eigvalsh(ov)
    elif kind == "real":  # |Re lambda|: 0/0 on a rotation
        size = sum(abs(x.real) for x in lam)
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(np.float64(sum(lam).real) / size)
    top, size = sum(lam), sum(abs(x) for x in lam)
    if size == 0:
        raise ValueError("all eigenvalues are 0")
    if kind == "svd":
        size = np.linalg.svd(ov, compute_uv=False).sum()
    if kind == "complex":
        return top / size
    if kind == "abs":
        return float(size / size)
    if kind == "count":
        return float(np.mean([x.real > 0 for x in lam if abs(x) > 1e-9]))
    sign = -1.0 if kind == "negative" else 1.0
    return sign * float(top.real / size)


def ov_package(ov):
    return circuits.ov_copying_score(circuits.FactoredMatrix(ov, np.eye(len(ov))))


REFERENCE = {
    "prefix_matching_score": [[circuits.prefix_matching_score], [prefix_loop]],
    "ov_copying_score": [[ov_package], [ov_loop]],
}


def test_the_exercises_are_registered():
    assert [ex.id for ex in TOPICS["induction"].EXERCISES] == list(IDS)
    assert set(IDS) <= set(EXERCISES)
    assert callable(checks.check_prefix_matching_score)
    assert callable(checks.check_ov_copying_score)


@pytest.mark.parametrize("exercise_id", IDS)
def test_right_answers_pass_public_and_hidden_cases(exercise_id):
    for functions in REFERENCE[exercise_id]:
        assert judge_all(exercise_id, functions, hidden=False) == []
        assert judge_all(exercise_id, functions, hidden=True, seed=1) == []
        assert judge_all(exercise_id, functions, hidden=True, seed=2024) == []


@pytest.mark.parametrize("exercise_id", IDS)
def test_hidden_cases_are_seeded_and_differ_from_the_public_ones(exercise_id):
    ex = EXERCISES[exercise_id]
    a, b = ex.cases(True, seed=3), ex.cases(True, seed=3)
    assert [c["about"] for c in a] == [c["about"] for c in b]
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    assert not np.array_equal(a[0][IDS_INPUT[exercise_id]],
                              ex.cases(True, seed=4)[0][IDS_INPUT[exercise_id]])
    assert {c["about"] for c in ex.cases(hidden=False)}.isdisjoint(c["about"] for c in a)
    assert len(a) >= 3


IDS_INPUT = {"prefix_matching_score": "attention", "ov_copying_score": "ov"}


def test_the_cases_hold_what_they_say():
    """Every case list has an undefined score (ValueError), the public prefix cases repeat a
    token right after itself and several times, and the OV cases span copier to anti-copier."""
    for hidden, seed in ((False, 0), (True, 1), (True, 2024)):
        prefix = EXERCISES["prefix_matching_score"].cases(hidden, seed)
        raised = 0
        for case in prefix:
            A = case["attention"]
            assert np.allclose(A.sum(-1), 1) and np.allclose(np.triu(A, 1), 0)  # causal rows
            try:
                circuits.prefix_matching_score(A, case["tokens"])
            except ValueError:
                raised += 1
        assert raised == 1
        scores = []
        for case in EXERCISES["ov_copying_score"].cases(hidden, seed):
            try:
                scores.append(ov_package(case["ov"]))
            except ValueError:
                scores.append(None)
        assert scores.count(None) == 1
        assert max(s for s in scores if s is not None) > 0.9
        assert min(s for s in scores if s is not None) < -0.7
    t = list(EXERCISES["prefix_matching_score"].cases(False)[1]["tokens"])
    assert any(a == b for a, b in zip(t, t[1:])) and max(t.count(x) for x in t) >= 3


def test_planted_heads_score_as_their_names_say():
    case = EXERCISES["prefix_matching_score"].cases(False)[0]
    assert list(case["tokens"]) == [0, 1, 2, 3, 0, 1, 2, 3]
    np.testing.assert_allclose(prefix_loop(case["attention"], case["tokens"])[0, :3], [1, 0, 0])
    previous = circuits.previous_token_score(case["attention"])[0]  # (3,)
    assert previous[1] == 1 and previous[2] == 0 and previous[0] < 0.2  # query 1: key 0
    np.testing.assert_allclose(
        circuits.duplicate_token_score(case["attention"], case["tokens"])[0, :3], [0, 0, 1])


# ----------------------------------------------------------------------------------------------
# Typical mistakes and their messages


def prefix(**mistake):
    return [lambda A, t: prefix_loop(A, t, **mistake)]


def ov(kind):
    return [lambda m: ov_loop(m, kind=kind)]


def zero_when_undefined(A, t):
    try:
        return prefix_loop(A, t)
    except ValueError:
        return np.zeros(np.shape(A)[:2])


MISTAKES = [
    ("prefix_matching_score", prefix(offset=0), "that is the duplicate-token score"),
    ("prefix_matching_score", prefix(offset=2), "you took key j + 2"),
    ("prefix_matching_score", prefix(offset=-1), "you took key j - 1"),
    ("prefix_matching_score", prefix(allow_self=True), "key j + 1 is the query itself"),
    ("prefix_matching_score", prefix(which="latest"), "only the most recent earlier occurrence"),
    ("prefix_matching_score", prefix(which="first"), "only the first earlier occurrence"),
    ("prefix_matching_score", prefix(over="all"), "you averaged over every query (all 8)"),
    ("prefix_matching_score", prefix(over="pairs"), "you averaged over (query, target) pairs"),
    ("prefix_matching_score", prefix(reduce="mean"), "add its weights on them"),
    ("prefix_matching_score", prefix(transpose=True), "you read the attention transposed"),
    ("prefix_matching_score", prefix(per_query=True), "you returned one number per query"),
    ("prefix_matching_score", prefix(nan=True), "your score is 0/0 (NaN); raise ValueError"),
    ("prefix_matching_score", [lambda A, t: zero_when_undefined(A, t)], "raise ValueError; "
     "you returned an array"),
    ("prefix_matching_score", [lambda A, t: prefix_loop(A, t).T], "has shape (4, 1)"),
    ("prefix_matching_score", [lambda A, t: prefix_loop(A, t) * 0.9],
     "the queries with targets here (query -> keys): 4 -> [1], 5 -> [2]"),
    ("ov_copying_score", ov("diag"), "you used the diagonal entries"),
    ("ov_copying_score", ov("real"), "is its modulus sqrt(re^2 + im^2)"),
    ("ov_copying_score", ov("svd"), "you divided by the singular values"),
    ("ov_copying_score", ov("eigvalsh"), "eigvalsh / eigh assume a symmetric matrix"),
    ("ov_copying_score", ov("complex"), "you returned a complex number"),
    ("ov_copying_score", ov("abs"), "absolute value in the numerator"),
    ("ov_copying_score", ov("count"), "you counted the positive eigenvalues"),
    ("ov_copying_score", ov("negative"), "the opposite sign"),
    ("ov_copying_score", [lambda m: np.linalg.eigvals(m).real], "the eigenvalues themselves"),
    ("ov_copying_score", [lambda m: circuits.diagonal_dominance(
        circuits.FactoredMatrix(m, np.eye(len(m))))], "that is the diagonal dominance"),
    ("ov_copying_score", [lambda m: 0.9 * ov_loop(m)], "differs from sum lambda / sum |lambda|"),
]


@pytest.mark.parametrize("exercise_id, functions, expected", MISTAKES,
                         ids=[f"{m[0][:6]}-{m[2][:30]}" for m in MISTAKES])
def test_typical_mistakes_get_specific_feedback(exercise_id, functions, expected):
    assert expected in first_problem(exercise_id, functions)


CASE_SPECIFIC = ("(all 8)", "(3, 1)", "4 -> [1]", "has shape (4, 1)")


@pytest.mark.parametrize("exercise_id, functions, expected",
                         [m for m in MISTAKES if not any(c in m[2] for c in CASE_SPECIFIC)],
                         ids=lambda m: m if isinstance(m, str) and len(m) < 25 else None)
def test_the_grader_names_the_same_mistake_on_hidden_cases(exercise_id, functions, expected):
    for seed in (1, 2024):
        assert expected in judge_all(exercise_id, functions, hidden=True, seed=seed)[0]


def test_a_layer_by_head_table_read_the_other_way_is_named():
    message = judge_all("prefix_matching_score", [lambda A, t: prefix_loop(A, t).T])[0]
    assert "your table is transposed" in message


def test_a_value_error_on_a_defined_score_names_the_queries():
    def wrong(A, t):
        raise ValueError("operands could not be broadcast")

    message = first_problem("prefix_matching_score", [wrong])
    assert "raised ValueError (operands could not be broadcast)" in message
    assert "4 -> [1]" in message


def test_every_undefined_case_wants_a_value_error():
    for exercise_id, returns in (("prefix_matching_score", lambda *a: 0.0),
                                 ("ov_copying_score", lambda m: float("nan"))):
        ex = EXERCISES[exercise_id]
        for hidden in (False, True):
            undefined = [c for c in ex.cases(hidden) if isinstance(ex.expected(c), dict)]
            assert len(undefined) == 1
            assert "raise ValueError" in ex.judge(undefined[0], ex.run([returns], undefined[0]))


# ----------------------------------------------------------------------------------------------
# The check functions as students call them


def test_checks_print_public_checks_passed(capsys):
    checks.check_prefix_matching_score(circuits.prefix_matching_score)
    checks.check_ov_copying_score(ov_loop)
    out = capsys.readouterr().out
    assert "prefix_matching_score: public checks passed (3 cases)" in out
    assert "ov_copying_score: public checks passed (6 cases)" in out


def test_check_raises_with_the_reason_and_the_case():
    with pytest.raises(CheckFailed) as info:
        checks.check_prefix_matching_score(lambda A, t: prefix_loop(A, t, offset=0))
    assert "duplicate-token score" in str(info.value)
    assert "case: tokens [A B C D A B C D]" in str(info.value)


def test_the_stub_passes_through():
    def stub(ov):
        raise NotImplementedError("a hint")

    with pytest.raises(NotImplementedError, match="a hint"):
        checks.check_ov_copying_score(stub)


@pytest.mark.parametrize("got", [None, "text", [1, 2], {"a": 1}, {"raised": "x"},
                                 {"complex": [1.0, 2.0]}, np.zeros((2, 2)), float("nan"), 0.5,
                                 True, [[0.5, 1.5], [0.0], 2]])
@pytest.mark.parametrize("exercise_id", IDS)
def test_odd_outputs_never_crash_the_judge(exercise_id, got):
    ex = EXERCISES[exercise_id]
    for case in ex.cases(hidden=False):
        message = ex.judge(case, got)
        assert message is None or isinstance(message, str) and message

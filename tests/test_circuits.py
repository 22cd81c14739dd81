"""`analysis.circuits`: pattern scores on planted attention, circuits of hand-built weights with
known answers, and `FactoredMatrix` against the materialised product (np.linalg)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mha_course.analysis import circuits as c

REPEATED = np.array([[0, 1, 2, 3, 0, 1, 2, 3]])  # [A B C D A B C D], (1, 8)


def one_hot_rows(targets, n):
    """(n, n) attention whose row i puts all its weight on key targets[i]."""
    A = np.zeros((n, n))
    A[np.arange(n), targets] = 1.0
    return A


def causal_uniform(n):
    return np.tril(np.ones((n, n))) / np.arange(1, n + 1)[:, None]  # (n, n)


def stack(*heads):
    """Heads (n, n) -> attention (1 layer, 1 sequence, n_heads, n, n)."""
    return np.stack(heads)[None, None]  # (1, 1, n_heads, n, n)


def softmax_causal(scores):
    n = scores.shape[-1]
    scores = np.where(np.tril(np.ones((n, n), dtype=bool)), scores, -np.inf)  # (n, n)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------- patterns
def test_previous_token_score_planted_and_uniform():
    n = 6
    previous = one_hot_rows(np.maximum(np.arange(n) - 1, 0), n)
    score = c.previous_token_score(stack(previous, causal_uniform(n), np.eye(n)))
    expected_uniform = np.mean([1 / (i + 1) for i in range(1, n)])
    np.testing.assert_allclose(score, [[1.0, expected_uniform, 0.0]])


def test_previous_token_score_averages_layers_and_sequences_separately():
    rng = np.random.default_rng(0)
    A = rng.random((2, 3, 4, 5, 5))  # (n_layers, batch, n_heads, n, n)
    expected = np.array([[np.mean([A[layer, b, h, i, i - 1] for b in range(3) for i in range(1, 5)])
                          for h in range(4)] for layer in range(2)])
    np.testing.assert_allclose(c.previous_token_score(A), expected)


def test_prefix_matching_planted_induction_head_scores_one():
    n = REPEATED.shape[1]
    induction = one_hot_rows([0, 0, 0, 0, 1, 2, 3, 4], n)  # the second A -> the first B, ...
    previous = one_hot_rows(np.maximum(np.arange(n) - 1, 0), n)
    duplicate = one_hot_rows([0, 0, 0, 0, 0, 1, 2, 3], n)
    A = stack(induction, previous, duplicate)
    np.testing.assert_allclose(c.prefix_matching_score(A, REPEATED), [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(c.duplicate_token_score(A, REPEATED), [[0.0, 0.0, 1.0]])
    np.testing.assert_allclose(c.previous_token_score(A)[0, 1], 1.0)


def naive_scores(A, tokens):
    """Loop oracle: (prefix, duplicate), each (n_layers, n_heads), straight from the definitions."""
    prefix, duplicate = [], []
    for b, seq in enumerate(tokens):
        for i, t in enumerate(seq):
            earlier = [j for j in range(i) if seq[j] == t]
            targets = sorted({j + 1 for j in earlier if j + 1 < i})
            if targets:
                prefix.append(A[:, b, :, i][..., targets].sum(axis=-1))  # (n_layers, n_heads)
            if earlier:
                duplicate.append(A[:, b, :, i][..., earlier].sum(axis=-1))
    return np.mean(prefix, axis=0), np.mean(duplicate, axis=0)


@pytest.mark.parametrize("seed", range(4))
def test_prefix_and_duplicate_match_a_loop_over_queries(seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 4, size=(3, 9))  # a small vocabulary: many repeats, some at once
    A = np.stack([softmax_causal(s) for s in rng.normal(size=(2 * 3 * 2, 9, 9))])
    A = A.reshape(2, 3, 2, 9, 9)  # (n_layers, batch, n_heads, n, n)
    prefix, duplicate = naive_scores(A, tokens)
    np.testing.assert_allclose(c.prefix_matching_score(A, tokens), prefix)
    np.testing.assert_allclose(c.duplicate_token_score(A, tokens), duplicate)


def test_one_sequence_layout_equals_a_batch_of_one():
    rng = np.random.default_rng(1)
    A = rng.random((2, 3, 8, 8))  # (n_layers, n_heads, n, n)
    for score in (c.prefix_matching_score, c.duplicate_token_score):
        np.testing.assert_allclose(score(A, REPEATED[0]), score(A[:, None], REPEATED))
    np.testing.assert_allclose(c.previous_token_score(A), c.previous_token_score(A[:, None]))


def test_a_token_repeated_at_once_is_not_its_own_induction_target():
    A = stack(np.eye(3))
    with pytest.raises(ValueError, match="prefix-matching"):
        c.prefix_matching_score(A, np.array([[5, 5, 7]]))  # target j + 1 = 1 is the query itself
    np.testing.assert_allclose(c.duplicate_token_score(A, np.array([[5, 5, 7]])), [[0.0]])


def test_pattern_scores_reject_bad_input():
    with pytest.raises(ValueError, match="duplicate-token"):
        c.duplicate_token_score(stack(np.eye(4)), np.array([[0, 1, 2, 3]]))
    with pytest.raises(ValueError, match=r"\(n_layers, batch, n_heads, n, n\).*got shape \(4, 4\)"):
        c.previous_token_score(np.eye(4))
    with pytest.raises(ValueError, match=r"\(1, 8\).*of shape \(1, 7\)"):
        c.prefix_matching_score(stack(np.eye(8)), REPEATED[:, :7])
    with pytest.raises(ValueError, match="integer ids"):
        c.prefix_matching_score(stack(np.eye(8)), REPEATED.astype(float))
    with pytest.raises(ValueError, match="n >= 2"):
        c.previous_token_score(stack(np.eye(1)))


def test_in_context_learning_score_default_windows():
    losses = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0])  # n = 8: early {1}, late {6, 7}
    assert c.in_context_learning_score(losses) == pytest.approx(2.5 - 8.0)
    over_training = np.stack([np.full(16, 3.0), np.linspace(4.0, 1.0, 16)])  # (steps, n)
    early, late = over_training[:, 1:4].mean(axis=1), over_training[:, 12:].mean(axis=1)
    np.testing.assert_allclose(c.in_context_learning_score(over_training), late - early)
    assert c.in_context_learning_score(over_training)[0] == 0.0


def test_in_context_learning_score_given_windows_and_errors():
    losses = np.arange(10.0)
    assert c.in_context_learning_score(losses, early=2, late=-1) == 7.0
    assert c.in_context_learning_score(losses, early=slice(0, 2), late=[8, 9]) == 8.0
    assert c.in_context_learning_score(losses[:3], early=0, late=2) == 2.0
    with pytest.raises(ValueError, match="n >= 4"):
        c.in_context_learning_score(losses[:3])
    with pytest.raises(ValueError, match="late window .* picks no position"):
        c.in_context_learning_score(losses, late=slice(10, 12))
    with pytest.raises(ValueError, match="early window 12 is outside"):
        c.in_context_learning_score(losses, early=12)


# ---------------------------------------------------------------------------------- factored
def match_multisets(ours, theirs, atol=1e-6):
    """Each of `ours` pairs with a distinct, close value of `theirs`; the rest of `theirs` ~ 0."""
    theirs = list(theirs)
    for value in ours:
        k = int(np.argmin([abs(value - t) for t in theirs]))
        assert abs(value - theirs.pop(k)) < atol, (ours, theirs)
    assert all(abs(t) < atol for t in theirs), theirs


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 7), r=st.integers(1, 4), k=st.integers(1, 7),
       seed=st.integers(0, 2**32 - 1))
def test_factored_matrix_agrees_with_its_product(m, r, k, seed):
    rng = np.random.default_rng(seed)
    F = c.FactoredMatrix(rng.normal(size=(m, r)), rng.normal(size=(r, k)))
    full = F.left @ F.right  # (m, k)
    assert F.shape == full.shape
    np.testing.assert_allclose(F.full(), full)
    np.testing.assert_allclose(F.T.full(), full.T)
    assert F.frobenius() == pytest.approx(np.linalg.norm(full), rel=1e-9, abs=1e-12)
    G = c.FactoredMatrix(rng.normal(size=(k, 2)), rng.normal(size=(2, 3)))
    np.testing.assert_allclose((F @ G).full(), full @ G.full(), atol=1e-9)
    square = c.FactoredMatrix(F.left, rng.normal(size=(r, m)))
    eig = square.eigenvalues()
    assert eig.shape == (r,)
    ours, theirs = list(eig), list(np.linalg.eigvals(square.full()))
    if r > m:  # right @ left has r - m more zeros than left @ right has eigenvalues
        ours, theirs = theirs, ours
    match_multisets(ours, theirs)


def test_factored_matrix_errors():
    with pytest.raises(ValueError, match=r"share r; got left \(3, 2\) and right \(3, 4\)"):
        c.FactoredMatrix(np.ones((3, 2)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="left must be a matrix"):
        c.FactoredMatrix(np.ones(3), np.ones((1, 4)))
    with pytest.raises(ValueError, match="square"):
        c.FactoredMatrix(np.ones((3, 2)), np.ones((2, 4))).eigenvalues()
    with pytest.raises(ValueError, match="cannot multiply"):
        c.FactoredMatrix(np.ones((3, 2)), np.ones((2, 4))) @ c.FactoredMatrix(np.ones((3, 1)),
                                                                              np.ones((1, 3)))
    with pytest.raises(TypeError, match="FactoredMatrix"):
        c.FactoredMatrix(np.ones((3, 2)), np.ones((2, 4))) @ np.ones((4, 4))

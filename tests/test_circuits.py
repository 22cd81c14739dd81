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


# ---------------------------------------------------------------------------------- circuits
def test_qk_and_ov_circuits_are_the_products_of_the_weights():
    rng = np.random.default_rng(2)
    vocab, n_ctx, d_model, d_head = 7, 5, 6, 2
    W_E, W_pos = rng.normal(size=(vocab, d_model)), rng.normal(size=(n_ctx, d_model))
    W_Q, W_K, W_V = rng.normal(size=(3, d_model, d_head))
    W_O, W_U = rng.normal(size=(d_head, d_model)), rng.normal(size=(d_model, vocab))
    qk = c.qk_circuit(W_E, W_Q, W_K)
    assert qk.shape == (vocab, vocab) and qk.rank_bound == d_head
    np.testing.assert_allclose(qk.full(), W_E @ W_Q @ W_K.T @ W_E.T)
    np.testing.assert_allclose(c.qk_circuit(W_pos, W_Q, W_K, W_E).full(),
                               W_pos @ W_Q @ W_K.T @ W_E.T)  # (n_ctx, vocab)
    ov = c.ov_circuit(W_E, W_V, W_O, W_U)
    assert ov.shape == (vocab, vocab) and ov.rank_bound == d_head
    np.testing.assert_allclose(ov.full(), W_E @ W_V @ W_O @ W_U)
    np.testing.assert_allclose(c.qk_matrix(W_Q, W_K).full(), W_Q @ W_K.T)
    np.testing.assert_allclose(c.ov_matrix(W_V, W_O).full(), W_V @ W_O)


def test_planted_previous_token_qk_gives_previous_token_score_one():
    n_ctx = d_model = 8
    W_pos = np.eye(n_ctx)  # position p writes direction p
    shift = np.eye(d_model, k=-1)  # shift[p, p - 1] = 1: a query at p reads the key at p - 1
    W_Q, W_K = 30.0 * shift, np.eye(d_model)
    qk = c.qk_circuit(W_pos, W_Q, W_K)
    np.testing.assert_allclose(qk.full(), 30.0 * shift)
    A = softmax_causal(qk.full() / np.sqrt(d_model))  # (n, n)
    assert c.previous_token_score(stack(A))[0, 0] == pytest.approx(1.0, abs=1e-4)
    assert c.previous_token_score(stack(softmax_causal(qk.T.full())))[0, 0] < 0.3


def test_copying_score_of_identity_minus_identity_and_mixtures():
    eye = np.eye(4)
    assert c.ov_copying_score(c.ov_circuit(eye, eye, eye, eye)) == pytest.approx(1.0)
    assert c.ov_copying_score(c.ov_circuit(eye, eye, -eye, eye)) == pytest.approx(-1.0)
    assert c.ov_copying_score(c.FactoredMatrix(eye[:, :2], eye[:2])) == pytest.approx(1.0)
    mixed = c.FactoredMatrix(np.diag([2.0, -1.0, 0.0, 0.0]), eye)
    assert c.ov_copying_score(mixed) == pytest.approx(1 / 3)
    rotation = c.FactoredMatrix(np.array([[0.0, 1.0], [-1.0, 0.0]]), np.eye(2))  # eigen +-i
    assert c.ov_copying_score(rotation) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(3)
    ov = c.FactoredMatrix(rng.normal(size=(9, 3)), rng.normal(size=(3, 9)))
    lam = np.linalg.eigvals(ov.full())
    assert c.ov_copying_score(ov) == pytest.approx(lam.sum().real / np.abs(lam).sum())
    with pytest.raises(ValueError, match="no nonzero eigenvalue"):
        c.ov_copying_score(c.FactoredMatrix(np.zeros((3, 1)), np.zeros((1, 3))))
    with pytest.raises(TypeError, match="FactoredMatrix"):
        c.ov_copying_score(eye)


def test_diagonal_dominance_counts_rows_won_by_the_diagonal():
    eye = np.eye(4)
    assert c.diagonal_dominance(c.FactoredMatrix(eye, eye)) == 1.0
    assert c.diagonal_dominance(c.FactoredMatrix(-eye, eye)) == 0.0
    assert c.diagonal_dominance(c.FactoredMatrix(np.zeros((4, 1)), np.zeros((1, 4)))) == 0.0
    half = np.eye(4)
    half[2, 3] = half[3, 0] = 2.0  # rows 2 and 3 peak off the diagonal
    assert c.diagonal_dominance(c.FactoredMatrix(half, eye)) == 0.5
    rng = np.random.default_rng(4)  # more rows than one block: the blocks must line up
    ov = c.FactoredMatrix(rng.normal(size=(1100, 3)), rng.normal(size=(3, 1100)))
    full = ov.full()
    off = full - np.diag(np.full(1100, np.inf))
    assert c.diagonal_dominance(ov) == np.mean(np.diag(full) > off.max(axis=1))
    with pytest.raises(ValueError, match="square"):
        c.diagonal_dominance(c.FactoredMatrix(eye[:, :2], np.ones((2, 3))))


def unit(i, d=4):
    return np.eye(d)[:, [i]]  # (d, 1): a one-dimensional head reading or writing e_i


def test_k_composition_reads_the_key_side():
    W_QK = c.qk_matrix(unit(0), unit(1))  # e0 e1^T: queries read e0, keys read e1
    into_keys = c.ov_matrix(unit(2), unit(1).T)  # reads e2, writes e1: where keys read
    into_queries = c.ov_matrix(unit(2), unit(0).T)  # writes e0: where queries read
    elsewhere = c.ov_matrix(unit(2), unit(3).T)  # writes e3: read by nobody
    assert c.k_composition_score(W_QK, into_keys) == pytest.approx(1.0)
    assert c.k_composition_score(W_QK, into_queries) == 0.0
    assert c.k_composition_score(W_QK, elsewhere) == 0.0
    assert c.q_composition_score(W_QK, into_queries) == pytest.approx(1.0)
    assert c.q_composition_score(W_QK, into_keys) == 0.0
    reads_e1 = c.ov_matrix(unit(1), unit(3).T)
    assert c.v_composition_score(reads_e1, into_keys) == pytest.approx(1.0)
    assert c.v_composition_score(reads_e1, into_queries) == 0.0


def test_k_composition_exact_value_and_full_matrix_formula():
    plane = c.qk_matrix(np.eye(4)[:, :2], np.eye(4)[:, :2])  # W_QK = diag(1, 1, 0, 0), norm sqrt 2
    one_direction = c.ov_matrix(unit(0), unit(0).T)  # e0 e0^T
    assert c.k_composition_score(plane, one_direction) == pytest.approx(1 / np.sqrt(2))
    rng = np.random.default_rng(5)
    W_QK = c.qk_matrix(*rng.normal(size=(2, 8, 3)))
    W_OV = c.ov_matrix(rng.normal(size=(8, 3)), rng.normal(size=(3, 8)))
    qk, ov = W_QK.full(), W_OV.full()
    norm = np.linalg.norm
    assert c.k_composition_score(W_QK, W_OV) == pytest.approx(
        norm(qk @ ov.T) / (norm(qk) * norm(ov)))
    assert c.q_composition_score(W_QK, W_OV) == pytest.approx(
        norm(ov @ qk) / (norm(qk) * norm(ov)))


def test_composition_scores_over_a_weights_dict():
    rng = np.random.default_rng(6)
    n_layers, n_heads, d_model, d_head = 2, 3, 8, 2
    weights = {name: rng.normal(size=(n_layers, n_heads, d_model, d_head))
               for name in ("W_Q", "W_K", "W_V")}
    weights["W_O"] = rng.normal(size=(n_layers, n_heads, d_head, d_model))
    k = c.composition_scores(weights)
    assert k.shape == (n_heads, n_heads)
    for h0 in range(n_heads):
        W_OV = c.ov_matrix(weights["W_V"][0, h0], weights["W_O"][0, h0])
        for h1 in range(n_heads):
            W_QK = c.qk_matrix(weights["W_Q"][1, h1], weights["W_K"][1, h1])
            assert k[h0, h1] == pytest.approx(c.k_composition_score(W_QK, W_OV))
    v = c.composition_scores(weights, kind="v")
    later = c.ov_matrix(weights["W_V"][1, 2], weights["W_O"][1, 2])
    earlier = c.ov_matrix(weights["W_V"][0, 1], weights["W_O"][0, 1])
    assert v[1, 2] == pytest.approx(c.v_composition_score(later, earlier))
    with pytest.raises(ValueError, match="kind must be one of"):
        c.composition_scores(weights, kind="x")
    with pytest.raises(ValueError, match="earlier_layer < later_layer"):
        c.composition_scores(weights, earlier_layer=1, later_layer=1)


def test_circuit_functions_reject_bad_shapes():
    W = np.ones((6, 2))
    with pytest.raises(ValueError, match=r"W_Q must be a matrix .*W\[layer, head\]"):
        c.qk_matrix(np.ones((3, 6, 2)), W)
    with pytest.raises(ValueError, match=r"W_Q and W_K .*got \(6, 2\) and \(6, 3\)"):
        c.qk_matrix(W, np.ones((6, 3)))
    with pytest.raises(ValueError, match=r"W_O \(d_head, d_model\).*W_O \(6, 2\)"):
        c.ov_matrix(W, W)
    with pytest.raises(ValueError, match=r"E_k must be \(rows, d_model\) with d_model = 6"):
        c.qk_circuit(np.ones((5, 6)), W, W, np.ones((5, 4)))
    with pytest.raises(ValueError, match=r"W_U must be \(d_model, vocab\) with d_model = 6"):
        c.ov_circuit(np.ones((5, 6)), W, W.T, np.ones((5, 6)))
    with pytest.raises(ValueError, match=r"W_OV_earlier must be a \(6, 6\)"):
        c.k_composition_score(c.qk_matrix(W, W), c.ov_matrix(np.ones((4, 2)), np.ones((2, 4))))
    with pytest.raises(ValueError, match="two nonzero"):
        c.k_composition_score(c.qk_matrix(W, W), c.ov_matrix(0 * W, W.T))

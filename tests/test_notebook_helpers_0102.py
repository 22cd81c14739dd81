"""The helpers notebook 01 calls: a shorter sentence, a padded batch, softmax saturation."""

from __future__ import annotations

import numpy as np
import pytest

from mha_course.analysis.saturation import softmax_saturation
from mha_course.examples import pad_batch, running_example, sinusoidal_positions, sub_sentence
from mha_course.np_attention import padding_mask, scaled_dot_product_attention


@pytest.fixture(scope="module")
def ex():
    return running_example()


def test_sub_sentence_keeps_word_features_and_renumbers_positions(ex):
    tokens = ["The", "dog", "jumps", "."]
    X = sub_sentence(ex, tokens)
    n_features = len(ex.feature_names)
    assert X.shape == (4, ex.X.shape[1])
    for t, token in enumerate(tokens):
        assert np.array_equal(X[t, :n_features], ex.X[ex.tokens.index(token), :n_features])
    # positions 0..3, not the positions the words had in the long sentence ("dog" was at 8)
    assert np.allclose(X[:, n_features:], sinusoidal_positions(4, ex.X.shape[1] - n_features))
    assert not np.allclose(X[1, n_features:], ex.X[ex.tokens.index("dog"), n_features:])


def test_sub_sentence_names_an_unknown_token(ex):
    with pytest.raises(ValueError, match="cat"):
        sub_sentence(ex, ["The", "cat"])


def test_pad_batch_pads_with_zeros_and_reports_lengths(ex):
    short = sub_sentence(ex, ["The", "dog", "."])
    X_batch, lengths = pad_batch([ex.X, short])
    assert X_batch.shape == (2, ex.n, ex.X.shape[1])
    assert lengths.tolist() == [ex.n, 3]
    assert np.array_equal(X_batch[0], ex.X) and np.array_equal(X_batch[1, :3], short)
    assert not X_batch[1, 3:].any()
    assert pad_batch([short], n=7)[0].shape == (1, 7, ex.X.shape[1])


def test_pad_batch_padding_does_not_change_attention(ex):
    """Masking the padded keys gives the short sentence the weights it has alone."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((3, ex.X.shape[1], 4))  # (3, d_model, d_k): W_Q, W_K, W_V
    short = sub_sentence(ex, ["The", "lazy", "dog", "."])
    X_batch, lengths = pad_batch([ex.X, short])
    _, A = scaled_dot_product_attention(*(X_batch @ W[i] for i in range(3)),
                                        mask=padding_mask(lengths, ex.n))
    _, A_alone = scaled_dot_product_attention(*(short @ W[i] for i in range(3)))
    assert np.allclose(A[1, :4, :4], A_alone) and not A[1, :, 4:].any()


@pytest.mark.parametrize("bad, what", [([], "at least one"), ([np.zeros((3, 4)), np.zeros((3, 5))],
                                                               "one d_model")])
def test_pad_batch_rejects_bad_input(bad, what):
    with pytest.raises(ValueError, match=what):
        pad_batch(bad)


def test_pad_batch_rejects_a_sentence_longer_than_n(ex):
    with pytest.raises(ValueError, match="does not fit"):
        pad_batch([ex.X], n=ex.n - 1)


def test_softmax_saturation_properties():
    d_ks = [2, 64, 512]
    n_keys = 10
    m = softmax_saturation(d_ks, n_queries=500, n_keys=n_keys, seed=5)
    assert set(m) == {(d, name) for d in d_ks for name in ("unscaled", "scaled")}
    for (max_weight, entropy, grad) in m.values():
        assert 1 / n_keys <= max_weight <= 1 and 0 <= entropy <= np.log(n_keys) + 1e-12
        assert grad >= 0
    unscaled_max = [m[d, "unscaled"][0] for d in d_ks]
    assert unscaled_max == sorted(unscaled_max) and unscaled_max[-1] > 0.9  # saturates with d_k
    assert m[512, "unscaled"][2] < m[2, "unscaled"][2] / 3  # and its gradient shrinks
    assert all(m[d, "scaled"][0] < 0.4 for d in d_ks)  # scaled: never close to one-hot


def test_softmax_saturation_entropy_matches_an_independent_computation():
    """With one key per query the softmax is 1 everywhere: entropy and gradient are exactly 0."""
    m = softmax_saturation([4], n_queries=50, n_keys=1, seed=0)
    assert m[4, "scaled"] == (1.0, 0.0, 0.0) and m[4, "unscaled"] == (1.0, 0.0, 0.0)

"""Your own sentence in the toy world: tokenize, the explorer adapter and the shipped report."""

from __future__ import annotations

import numpy as np
import pytest

from mha_course.analysis import heads
from mha_course.models import toy_language, toy_model


def test_tokenize_the_running_example():
    assert toy_language.tokenize("The quick brown fox jumps over the lazy dog.") == [
        "[CLS]", "the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", ".",
        "[SEP]"]
    # a question is written in Title Case, whatever was typed
    assert toy_language.tokenize("[CLS] the fox runs ? [SEP]")[-3:] == ["Runs", "?", "[SEP]"]


@pytest.mark.parametrize("text, error, match", [
    ("the quick brown cat runs.", ValueError, "not in the toy vocabulary: cat"),
    ("   ", ValueError, "empty"),
    (["the", "fox"], TypeError, "needs a str; got list"),
])
def test_tokenize_refuses_with_a_message(text, error, match):
    with pytest.raises(error, match=match):
        toy_language.tokenize(text)


def test_attend_text_gives_tokens_and_every_heads_weights():
    model = toy_model.load()
    tokens, A = toy_model.attend_text(model)("the quick fox runs .")
    n = len(tokens)
    assert A.shape == (model.config.n_layers, model.config.n_heads, n, n)
    np.testing.assert_allclose(A.sum(-1), 1.0, atol=1e-5)


def test_shipped_report_names_a_best_head_per_role_within_the_model():
    report, config = toy_model.load_report(), toy_model.load().config
    assert set(report["best"]) == set(heads.ROLES)
    for best in report["best"].values():
        assert 0 <= best["layer"] < config.n_layers and 0 <= best["head"] < config.n_heads
    assert len(report["heads"]) == config.n_layers * config.n_heads

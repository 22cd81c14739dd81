"""Checks for exercise 15 (ex07): attention between words from attention between word pieces,
as Clark et al. (2019) do it. The reference is the package's `analysis.alignment.word_attention`."""

from __future__ import annotations

import numpy as np

from mha_course.analysis.alignment import word_attention as reference_word_attention
from mha_course.checks._framework import (
    Exercise,
    close,
    first_match,
    max_diff,
    run_public,
    shape_problem,
)
from mha_course.np_attention import softmax

__all__ = ["EXERCISES", "check_word_attention"]


# ----------------------------------------------------------------------------------------------
# 15. word attention


def _case(rng, lead, pieces_per_word, about, dtype=np.float64):
    word_index = np.repeat(np.arange(len(pieces_per_word)), pieces_per_word)  # (n,)
    n = len(word_index)
    scores = 3 * rng.standard_normal((*lead, n, n))  # (..., n, n): peaked rows, like trained heads
    return {"attentions": softmax(scores, axis=-1).astype(dtype), "word_index": word_index,
            "about": about}


def _cases(rng, hidden):
    if not hidden:
        return [
            _case(rng, (), [1, 2, 1, 3], "one head, 7 pieces in 4 words: [1, 2, 1, 3] pieces"),
            _case(rng, (2,), [1, 1, 4, 1, 1],
                  "2 heads, a word of 4 pieces between one-piece words"),
            _case(rng, (2, 3), [1, 1, 1], "2 layers x 3 heads, every word one piece (nothing to "
                                          "merge)"),
        ]
    lengths = rng.integers(1, 5, size=int(rng.integers(5, 12)))
    return [
        _case(rng, (3, 4), lengths, f"hidden: 3 layers x 4 heads, {len(lengths)} words"),
        _case(rng, (), [1, 3, 2, 2, 1, 5, 1], "hidden: one head, several multi-piece words"),
        _case(rng, (2,), [4, 1], "hidden: the first word has 4 pieces", dtype=np.float32),
        _case(rng, (6, 12), [1, 2, 1, 1, 3, 1], "hidden: MiniLM's shape, 6 layers x 12 heads"),
    ]


def _call(fns, case):
    return fns[0](case["attentions"].copy(), case["word_index"].copy())


def _expected(case):
    return reference_word_attention(case["attentions"], case["word_index"])


def _variant(A, word_index, to: str, from_: str) -> np.ndarray:
    """Word attention with another pooling: to in {"sum", "mean"} over attended pieces, from_ in
    {"mean", "sum", "first"} over attending pieces."""
    n_words = int(word_index.max()) + 1
    member = np.zeros((len(word_index), n_words))  # (n, n_words) one-hot
    member[np.arange(len(word_index)), word_index] = 1
    counts = member.sum(axis=0)  # (n_words,)
    to_words = A @ (member if to == "sum" else member / counts)  # (..., n, n_words)
    if from_ == "first":
        first = np.array([np.flatnonzero(word_index == w)[0] for w in range(n_words)])
        return to_words[..., first, :]  # (..., n_words, n_words)
    pool = member.T if from_ == "sum" else member.T / counts[:, None]  # (n_words, n)
    return pool @ to_words  # (..., n_words, n_words)


def _diagnose(case, got, expected):
    A, word_index = case["attentions"], case["word_index"]
    problem = shape_problem(got, expected.shape, "your output (..., n_words, n_words)")
    if problem:
        return problem
    tol = 1e-5 if A.dtype == np.float32 else 1e-8
    if not np.isfinite(got).all():
        return "your output contains NaN or inf"
    if close(got, expected, tol):
        return None
    found = first_match(got, {
        "the attention TO a word is the SUM over its pieces (a probability mass: the word gets "
        "everything its pieces got), and the attention FROM a word the MEAN of its pieces' rows; "
        "you did the opposite": lambda: _variant(A, word_index, "mean", "sum"),
        "you averaged the attention TO a word's pieces: sum it instead (a word receives all the "
        "weight its pieces receive), or the rows no longer sum to 1":
            lambda: _variant(A, word_index, "mean", "mean"),
        "you summed the rows of the pieces attending FROM a word: average them instead (each row "
        "is a distribution), or the row of a word of k pieces sums to k":
            lambda: _variant(A, word_index, "sum", "sum"),
        "you took only the first piece's row for the attention FROM a word: Clark et al. average "
        "the rows of all its pieces": lambda: _variant(A, word_index, "sum", "first"),
        "your result is transposed: rows are the attending words (queries), columns the attended "
        "ones (keys)": lambda: np.swapaxes(expected, -1, -2),
    }, tol)
    if found:
        return found
    if not np.allclose(got.sum(axis=-1), 1, atol=1e-4):
        return ("the rows of your word attention do not sum to 1: each is still one word's "
                "distribution over the words")
    return f"values differ from the reference by up to {max_diff(got, expected):.2e}"


def check_word_attention(word_attention) -> None:
    """word_attention(attentions, word_index): (..., n, n) over pieces ->
    (..., n_words, n_words)."""
    run_public(_BY_ID["word_attention"], [word_attention])


EXERCISES: list[Exercise] = [
    Exercise("word_attention", "word_attention", ("word_attention",), _cases, _call, _expected,
             _diagnose),
]
_BY_ID = {ex.id: ex for ex in EXERCISES}

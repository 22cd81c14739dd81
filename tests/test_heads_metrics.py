"""Head-role metrics on hand-built attention matrices whose answer we know."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from mha_course.analysis import heads as H
from mha_course.models import toy_language as lang


def one_hot_rows(targets, n):
    """(n, n) attention where query i puts all its weight on key targets[i]."""
    A = np.zeros((n, n))
    A[np.arange(n), targets] = 1.0
    return A


def as_model(*heads):
    """Stack (n, n) matrices into one layer: (1, n_heads, n, n)."""
    return np.stack(heads)[None]


@pytest.fixture(scope="module")
def corpus():
    return lang.generate(300, seed=123)


def build(corpus, rule):
    """One (1, 1, n, n) array per sentence from rule(sentence) -> (n, n)."""
    return [rule(s)[None, None] for s in corpus]


def previous_token(s):
    n = len(s.tokens)
    return one_hot_rows([max(i - 1, 0) for i in range(n)], n)


def to_gold(attr):
    def rule(s):
        n = len(s.tokens)
        gold = getattr(s, attr)
        sep = n - 1  # queries without a target park on [SEP]
        return one_hot_rows([g if g >= 0 else sep for g in gold], n)
    return rule


def uniform(s):
    n = len(s.tokens)
    return np.full((n, n), 1.0 / n)


def test_previous_token_head_is_local(corpus):
    assert H.local_score(build(corpus, previous_token), corpus)[0, 0] == pytest.approx(1.0)
    distance = H.mean_attention_distance(build(corpus, previous_token), corpus)
    assert distance[0, 0] == pytest.approx(1.0)


def test_gold_head_attention_is_syntactic_and_beats_the_offset_baseline(corpus):
    assert H.syntactic_score(build(corpus, to_gold("head")), corpus)[0, 0] == pytest.approx(1.0)
    offset, baseline = H.fixed_offset_baseline(corpus)
    assert baseline < 0.5, "distractors should keep any fixed offset well below 1"
    # A previous-token head is exactly as good as the offset -1 rule.
    prev = H.syntactic_score(build(corpus, previous_token), corpus)[0, 0]
    gold = [(i, h) for s in corpus for i, h in enumerate(s.head) if h >= 0]
    assert prev == pytest.approx(np.mean([h == i - 1 for i, h in gold]))


def test_coreference_and_duplicate_heads(corpus):
    assert H.coreference_score(build(corpus, to_gold("coref")), corpus)[0, 0] == pytest.approx(1.0)
    copy = build(corpus, to_gold("repeat_of"))
    assert H.duplicate_score(copy, corpus)[0, 0] == pytest.approx(1.0)
    # a copy head looks at another position: only its [CLS]/[SEP]-parked queries could be on
    # themselves, and those are not word queries, so it is no identity head at all
    assert H.identity_score(copy, corpus)[0, 0] == pytest.approx(0.0)


def test_a_head_on_its_own_position_is_identity_not_duplicate(corpus):
    diag = build(corpus, lambda s: np.eye(len(s.tokens)))
    assert H.self_attention_mass(diag, corpus)[0, 0] == pytest.approx(1.0)
    assert H.identity_score(diag, corpus)[0, 0] == pytest.approx(1.0)
    assert H.duplicate_score(diag, corpus)[0, 0] == 0.0
    assert H.attention_entropy(diag, corpus)[0, 0] == pytest.approx(0.0, abs=1e-9)


def test_identity_is_the_mean_mass_on_the_diagonal():
    s = SimpleNamespace(tokens=["[CLS]", "a", "b", "c", "[SEP]"],
                        is_delimiter=[True, False, False, False, True])
    A = np.full((5, 5), 0.1)
    np.fill_diagonal(A, [0.6, 0.6, 0.3, 0.2, 0.6])  # rows need not sum to 1 for this check
    # word queries only: (0.6 + 0.3 + 0.2) / 3
    assert H.identity_score([A[None, None]], [s])[0, 0] == pytest.approx(1.1 / 3)


def test_delimiter_head(corpus):
    to_sep = build(corpus,
                   lambda s: one_hot_rows([len(s.tokens) - 1] * len(s.tokens), len(s.tokens)))
    assert H.delimiter_score(to_sep, corpus)[0, 0] == pytest.approx(1.0)
    assert H.local_score(to_sep, corpus)[0, 0] < 0.2


def to_first_rare(s):
    """Every query -> the sentence's first rare word (or [SEP] if it has none)."""
    n = len(s.tokens)
    rare = [i for i, r in enumerate(s.is_rare) if r]
    return one_hot_rows([rare[0] if rare else n - 1] * n, n)


def test_rare_target_head_attends_to_rare_words(corpus):
    assert H.rare_target_score(build(corpus, to_first_rare), corpus)[0, 0] == pytest.approx(1.0)


# A sentence with a rare word (position 2) whose context word is a common noun (position 4).
RARE = SimpleNamespace(tokens=["[CLS]", "the", "Balo", "fox", "sailor", "[SEP]"],
                       is_delimiter=[True, False, False, False, False, True],
                       is_rare=[False, False, True, False, False, False],
                       rare_context=[-1, -1, 4, -1, -1, -1])


def test_rare_word_and_rare_target_read_opposite_directions():
    from_rare = one_hot_rows([0, 1, 4, 3, 4, 5], 6)  # the rare word -> its context word
    to_rare = one_hot_rows([0, 2, 2, 2, 2, 5], 6)  # every word -> the rare word
    # from_rare: the one annotated rare query hits its context word, and no query looks at the
    # rare word; to_rare: every word query looks at the rare word, which looks at itself
    assert H.rare_word_score([from_rare[None, None]], [RARE])[0, 0] == 1.0
    assert H.rare_target_score([from_rare[None, None]], [RARE])[0, 0] == 0.0
    assert H.rare_word_score([to_rare[None, None]], [RARE])[0, 0] == 0.0
    assert H.rare_target_score([to_rare[None, None]], [RARE])[0, 0] == 1.0


def test_rare_word_counts_only_rare_queries_with_a_context_and_is_nan_without_one(corpus):
    wrong = SimpleNamespace(**{**vars(RARE), "is_rare": [False] * 6})  # annotated, but not rare
    A = one_hot_rows([0, 1, 4, 3, 4, 5], 6)[None, None]
    assert np.isnan(H.rare_word_score([A], [wrong])[0, 0])
    bare = SimpleNamespace(**{k: v for k, v in vars(RARE).items() if k != "rare_context"})
    assert np.isnan(H.rare_word_score([A], [bare])[0, 0])
    assert H.fixed_offset_baseline([RARE, RARE], attr="rare_context") == (2, 1.0)
    with pytest.raises(ValueError, match="rare_context"):
        H.fixed_offset_baseline([bare], attr="rare_context")


def test_fixed_offset_ties_go_to_the_nearer_then_the_earlier_token():
    assert H.best_offset({-3: 0.4, 2: 0.4, 5: 0.2}) == (2, 0.4)
    assert H.best_offset({1: 0.5, -1: 0.5}) == (-1, 0.5)
    k, fraction = H.best_offset({})
    assert k == 0 and np.isnan(fraction)
    assert H.offset_fractions([2, -1, 2, 2]) == {-1: 0.25, 2: 0.75}
    # a tie in the data: one sentence's target is 2 before, the other's 1 after; either order
    first = SimpleNamespace(tokens=["a", "b", "c"], head=[-1, -1, 0])
    second = SimpleNamespace(tokens=["a", "b", "c"], head=[1, -1, -1])
    assert H.fixed_offset_baseline([first, second]) == (1, 0.5)
    assert H.fixed_offset_baseline([second, first]) == (1, 0.5)


def test_row_entropy_is_the_entropy_of_each_row_in_nats():
    rng = np.random.default_rng(3)
    A = rng.dirichlet(np.full(6, 0.3), size=(2, 3, 4))  # (2, 3, 4, 6)
    A[0, 0, 0] = np.eye(6)[2]  # a one-hot row: exact zeros count as 0 log 0 = 0
    expected = np.array([[[-sum(p * np.log(p) for p in row if p > 0) for row in head]
                          for head in layer] for layer in A])  # (2, 3, 4)
    np.testing.assert_allclose(H.row_entropy(A), expected, atol=1e-9)
    assert H.row_entropy(np.full(5, 0.2)) == pytest.approx(np.log(5))


def test_uniform_attention_scores_low(corpus):
    A = build(corpus, uniform)
    n_mean = np.mean([len(s.tokens) for s in corpus])
    assert H.local_score(A, corpus)[0, 0] < 0.2
    assert H.self_attention_mass(A, corpus)[0, 0] < 0.1
    assert H.delimiter_score(A, corpus)[0, 0] == pytest.approx(
        np.mean([sum(s.is_delimiter) / len(s.tokens) for s in corpus for d in s.is_delimiter
                 if not d]))
    assert H.attention_entropy(A, corpus)[0, 0] == pytest.approx(
        np.mean([np.log(len(s.tokens)) for s in corpus for d in s.is_delimiter if not d]))
    assert n_mean > 10


def test_random_attention_scores_low_on_argmax_roles(corpus):
    rng = np.random.default_rng(0)
    A = [rng.dirichlet(np.ones(len(s.tokens)), size=(1, 1, len(s.tokens))) for s in corpus]
    for metric in (H.syntactic_score, H.coreference_score, H.rare_target_score, H.duplicate_score):
        assert metric(A, corpus)[0, 0] < 0.3, metric.__name__


def test_most_attended_key_ignores_delimiters():
    s = SimpleNamespace(tokens=["[CLS]", "a", "b", "c", "[SEP]"], head=[-1, -1, 1, -1, -1],
                        coref=[-1] * 5, is_rare=[False] * 5,
                        is_delimiter=[True, False, False, False, True])
    A = np.zeros((5, 5))
    A[:, 4] = 0.9  # mostly parked on [SEP]
    A[:, 1] = 0.1  # what is left goes to "a", the head of "b"
    assert H.syntactic_score([A[None, None]], [s])[0, 0] == 1.0
    assert H.delimiter_score([A[None, None]], [s])[0, 0] == pytest.approx(0.9)


def test_duplicate_score_reads_repeats_from_the_tokens():
    s = SimpleNamespace(tokens=["[CLS]", "Alvo", "sees", "Alvo", "[SEP]"],
                        is_delimiter=[True, False, False, False, True])
    A = one_hot_rows([0, 1, 1, 1, 4], 5)  # the second "Alvo" looks at the first
    assert H.duplicate_score([A[None, None]], [s])[0, 0] == 1.0
    A = one_hot_rows([0, 1, 1, 3, 4], 5)  # looking at itself is not a copy of an earlier token
    assert H.duplicate_score([A[None, None]], [s])[0, 0] == 0.0
    no_repeat = SimpleNamespace(tokens=["[CLS]", "a", "[SEP]"], is_delimiter=[True, False, True])
    assert np.isnan(H.duplicate_score([np.eye(3)[None, None]], [no_repeat])[0, 0])


def to_context(s):
    """A rare word -> its context word; every other query -> [SEP]."""
    n = len(s.tokens)
    return one_hot_rows([c if c >= 0 else n - 1 for c in s.rare_context], n)


def with_some_context(s):
    """The sentence with every rare word's context set to the last common noun (whatever the
    grammar annotates): the metrics need some annotation, not the grammar's."""
    nouns = [i for i, p in enumerate(s.pos) if p == "NOUN"]
    context = [nouns[-1] if rare and nouns else -1 for rare in s.is_rare]
    return dataclasses.replace(s, rare_context=context)


def test_classify_heads_names_each_planted_head(corpus):
    def to_delim(s):
        return one_hot_rows([len(s.tokens) - 1] * len(s.tokens), len(s.tokens))

    rules = {"local": previous_token, "syntactic": to_gold("head"), "delimiter": to_delim,
             "coreference": to_gold("coref"), "rare_word": to_context,
             "rare_target": to_first_rare, "identity": lambda s: np.eye(len(s.tokens)),
             "duplicate": to_gold("repeat_of")}
    assert tuple(rules) == H.ROLES
    sentences = [with_some_context(s) for s in corpus]
    attentions = [as_model(*(rule(s) for rule in rules.values())) for s in sentences]
    scores = H.head_scores(attentions, sentences)
    assert all(scores[k].shape == (1, len(rules)) for k in scores)
    _, baseline = H.fixed_offset_baseline(sentences)
    table = H.classify_heads(scores, syntactic_baseline=baseline)
    assert [row["role"] for row in table] == list(rules)
    for i, role in enumerate(rules):
        assert scores[role][0, i] == pytest.approx(1.0), role
    # A head can play two roles: the rare-target head (here: always the sentence's first name)
    # also looks from a repeated name back to its earlier occurrence whenever the first name is
    # the one repeated, so it almost ties with the duplicate head.
    assert scores["duplicate"][0, 5] > 0.9
    # the duplicate head and the identity head are apart: each scores ~0 on the other's role
    assert scores["identity"][0, 7] < 0.05 and scores["duplicate"][0, 6] == 0.0
    assert all(H.best_heads(scores)[r]["score"] == pytest.approx(1.0) for r in H.ROLES)
    with pytest.raises(ValueError, match="missing: duplicate"):
        H.best_heads({r: v for r, v in scores.items() if r != "duplicate"})


def test_shape_errors_name_the_problem(corpus):
    with pytest.raises(ValueError, match="one attention array per sentence"):
        H.local_score([np.zeros((1, 1, 3, 3))], corpus[:2])
    with pytest.raises(ValueError, match=r"\(n_layers, n_heads, n, n\)"):
        H.local_score([np.zeros((1, 3, 3))], corpus[:1])


@pytest.mark.parametrize("scores, baseline, expected", [
    ({"local": 0.9, "syntactic": 0.3, "delimiter": 0.1}, None, "local"),
    # syntactic 0.7 is the best score but does not beat the baseline 0.6 by 0.2: the next best
    # counts
    ({"local": 0.55, "syntactic": 0.7, "delimiter": 0.1}, 0.6, "local"),
    ({"local": 0.55, "syntactic": 0.7, "delimiter": 0.1}, None, "syntactic"),
    ({"local": 0.3, "syntactic": 0.95}, 0.6, "syntactic"),
    ({"local": 0.2, "syntactic": 0.3, "delimiter": 0.4}, None, "none"),  # all below min_score
    ({"local": 0.2, "coreference": float("nan"), "duplicate": 0.81}, None, "duplicate"),
    ({"local": float("nan"), "syntactic": float("nan")}, 0.6, "none"),  # nothing measurable
    ({}, None, "none"),
])
def test_classify_head_rule(scores, baseline, expected):
    assert H.classify_head(scores, baseline, min_score=0.5, min_margin=0.2) == expected


def test_classify_head_thresholds_are_inclusive_and_named():
    scores = {"local": 0.5, "syntactic": 0.8}
    assert H.classify_head(scores, 0.6, min_score=0.5, min_margin=0.2) == "syntactic"  # 0.8 >= 0.8
    assert H.classify_head(scores, 0.61, min_score=0.5, min_margin=0.2) == "local"
    assert H.classify_head(scores, 0.61, min_score=0.51, min_margin=0.2) == "none"
    with pytest.raises(TypeError, match="dict role -> score"):
        H.classify_head([0.5, 0.8])


def test_classify_heads_applies_classify_head_to_every_head():
    rng = np.random.default_rng(3)
    scores = {r: rng.uniform(0, 1, (2, 3)) ** 1.5 for r in H.ROLES}
    scores["coreference"][0, 1] = np.nan
    table = H.classify_heads(scores, syntactic_baseline=0.4, min_score=0.45, min_margin=0.1)
    assert [(row["layer"], row["head"]) for row in table] == \
        [(layer, h) for layer in range(2) for h in range(3)]
    for row in table:
        one = {r: scores[r][row["layer"], row["head"]] for r in H.ROLES}
        assert row["role"] == H.classify_head(one, 0.4, min_score=0.45, min_margin=0.1)
        finite = {r: v for r, v in one.items()
                  if np.isfinite(v) and not (r == "syntactic" and v < 0.5)}
        assert row["score"] == pytest.approx(max(finite.values()))  # the best eligible score

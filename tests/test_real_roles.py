"""The specialization lab's role metrics on word pieces (analysis.real_roles): known answers on
hand-made attention, then what MiniLM's heads actually do on the course corpus."""

from __future__ import annotations

import collections
import math
from types import SimpleNamespace

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mha_course.analysis import heads as H
from mha_course.analysis.alignment import load_corpus
from mha_course.analysis.real_roles import (
    is_punctuation,
    layer_profile,
    minilm_layer_profile,
    minilm_role_scores,
    piece_sentence,
    piece_sentences,
    rare_to_frequent_mass,
    rare_to_frequent_uniform,
    rare_word_chance,
    with_syntax,
    word_counts,
    words_only,
)
from mha_course.models.cache import Cache
from mha_course.models.minilm import load_minilm

# A hand-made result: "The cat saw the aardvark." in word pieces, with its words.
TOKENS = ["[CLS]", "the", "cat", "saw", "the", "aard", "##vark", ".", "[SEP]"]
WORDS = ["[CLS]", "The", "cat", "saw", "the", "aardvark", ".", "[SEP]"]
WORD_INDEX = np.array([0, 1, 2, 3, 4, 5, 5, 6, 7])
N = len(TOKENS)
WORD_QUERIES = np.arange(1, 7)  # the, cat, saw, the, aard, ##vark
# "the" is frequent, "cat" seen 3 times, "saw" once; "aardvark" never (counts 0): saw and
# aardvark are rare with the default threshold (seen at most once).
COUNTS = {"the": 50, "cat": 3, "saw": 1}


def one_hot(targets) -> np.ndarray:
    """(N, N): query i puts all its weight on key targets[i]."""
    A = np.zeros((N, N))
    A[np.arange(N), targets] = 1.0
    return A


PREVIOUS = one_hot([0] + list(range(N - 1)))  # each piece looks at the one before
ON_CLS = one_hot([0] * N)
UNIFORM = np.full((N, N), 1.0 / N)
ON_SELF = one_hot(range(N))
COPY = one_hot([0, 0, 0, 0, 1, 0, 0, 0, 0])  # the second "the" looks at the first; rest: [CLS]
ON_RARE = one_hot([5] * N)  # everything looks at "aard"


def result(*heads_of_layers) -> SimpleNamespace:
    """An Encoding-like object (tokens, words, word_index) with attentions that stack the given
    layers of (N, N) heads."""
    A = np.stack([np.stack(layer) for layer in heads_of_layers])  # (n_layers, n_heads, N, N)
    return SimpleNamespace(text="The cat saw the aardvark.", tokens=list(TOKENS),
                           words=list(WORDS), word_index=WORD_INDEX.copy(), attentions=A)


def cache_of(*heads_of_layers, inputs="same") -> Cache:
    """A one-text Cache whose attention stacks the given layers of (N, N) heads (the other
    arrays are zeros: the role metrics read only the attention)."""
    r = result(*heads_of_layers)
    A = r.attentions[:, None]  # (n_layers, 1, n_heads, N, N)
    L, _, n_heads = A.shape[:3]
    return Cache(tokens=[list(TOKENS)], lengths=[N], attention=A,
                 z=np.zeros((L, 1, n_heads, N, 2)), attn_in=np.zeros((L, 1, N, 4)),
                 attn_out=np.zeros((L, 1, N, 4)), residual=np.zeros((L + 1, 1, N, 4)),
                 inputs=[r] if inputs == "same" else inputs)


# --------------------------------------------------------------------------- the annotations
@pytest.mark.parametrize("piece, expected", [
    (".", True), (",", True), ("'", True), ("-", True), ("?!", True), ("\u2019", True),
    ("a", False), ("##s", False), ("3", False), ("don", False), ("[CLS]", False), ("[SEP]", False)])
def test_punctuation_is_a_piece_without_letters_or_digits(piece, expected):
    assert is_punctuation(piece) is expected


def test_piece_sentence_marks_specials_punctuation_and_every_piece_of_a_rare_word():
    s = piece_sentence(result([UNIFORM]), COUNTS)
    assert s.tokens == TOKENS
    assert np.flatnonzero(s.is_delimiter).tolist() == [0, 7, 8]  # [CLS], ".", [SEP]
    assert np.flatnonzero(s.is_rare).tolist() == [3, 5, 6]  # saw, aard, ##vark
    assert (s.head == -1).all() and (s.coref == -1).all() and len(s.head) == N
    strict = piece_sentence(result([UNIFORM]), COUNTS, rare_max_count=0)
    assert np.flatnonzero(strict.is_rare).tolist() == [5, 6]  # only the unseen word
    loose = piece_sentence(result([UNIFORM]), COUNTS, rare_max_count=3)
    assert np.flatnonzero(loose.is_rare).tolist() == [2, 3, 5, 6]


def test_punctuation_inside_a_rare_word_is_a_delimiter_not_rare():
    r = SimpleNamespace(tokens=["[CLS]", "don", "'", "t", "go", "[SEP]"],
                        words=["[CLS]", "Don't", "go", "[SEP]"],
                        word_index=np.array([0, 1, 1, 1, 2, 3]))
    s = piece_sentence(r, {"go": 9})  # "don't" never seen: rare
    assert s.is_delimiter.tolist() == [True, False, True, False, False, True]
    assert s.is_rare.tolist() == [False, True, False, True, False, False]


def test_word_counts_are_lower_cased_and_leave_out_specials_and_punctuation():
    a = SimpleNamespace(words=["[CLS]", "The", "dog", ".", "[SEP]"])
    b = SimpleNamespace(words=["[CLS]", "the", "Dog's", "bone", "?", "[SEP]"])
    assert word_counts([a, b]) == collections.Counter({"the": 2, "dog": 1, "dog's": 1, "bone": 1})


# --------------------------------------------------------------------------- known answers
def test_planted_heads_score_what_they_were_built_to_do():
    scores = minilm_role_scores(cache_of([PREVIOUS, ON_CLS, UNIFORM, ON_SELF, COPY, ON_RARE]),
                                COUNTS)
    local, delimiter = scores["local"][0], scores["delimiter"][0]
    assert local[0] == 1.0  # previous token, [CLS] counting as the first word's neighbour
    assert delimiter[1] == 1.0  # everything on [CLS]
    assert local[1] == pytest.approx(1 / 6)  # of the 6 word queries only "the" has [CLS] next to it
    assert scores["sink_cls"][0, 1] == 1.0 and scores["sink_sep"][0, 1] == 0.0
    # uniform: each word query has 2 neighbours among 9 keys, 3 delimiter keys, itself once
    assert local[2] == pytest.approx(2 / N) and delimiter[2] == pytest.approx(3 / N)
    assert scores["identity"][0, 2] == pytest.approx(1 / N)
    assert scores["entropy"][0, 2] == pytest.approx(math.log(N))
    distance = np.abs(np.arange(N)[:, None] - np.arange(N)[None, :]).mean(axis=1)  # (N,)
    assert scores["mean_distance"][0, 2] == pytest.approx(distance[WORD_QUERIES].mean())
    assert scores["identity"][0, 3] == 1.0 and scores["duplicate"][0, 3] == 0.0
    # the copy head: the only repeated piece finds its earlier occurrence; no self-attention
    assert scores["duplicate"][0, 4] == 1.0 and scores["identity"][0, 4] == 0.0
    assert scores["rare_target"][0, 5] == 1.0 and scores["rare_target"][0, 1] == 0.0
    # no annotation says which word tells what a rare word is: the subject's rare_word is NaN
    assert np.isnan(scores["rare_word"]).all()
    assert set(H.ROLES) - set(scores) == {"syntactic", "coreference"}
    assert scores["entropy"][0, 0] == pytest.approx(0.0, abs=1e-9)
    assert "syntactic" not in scores and "coreference" not in scores


def test_rare_to_frequent_mass_reads_from_rare_queries_onto_frequent_keys():
    # rare pieces: saw (3), aard (5), ##vark (6); frequent keys: the (1), cat (2), the (4)
    r = result([PREVIOUS, ON_CLS, UNIFORM, ON_RARE])
    sentences = piece_sentences([r], COUNTS)
    mass = rare_to_frequent_mass([r.attentions], sentences)
    # previous piece: saw -> cat, aard -> the (frequent), ##vark -> aard (rare): 2 of 3
    np.testing.assert_allclose(mass, [[2 / 3, 0.0, 3 / N, 0.0]])
    assert rare_to_frequent_uniform(sentences) == pytest.approx(3 / N)
    none_rare = piece_sentences([r], {"the": 5, "cat": 5, "saw": 5, "aardvark": 5})
    assert np.isnan(rare_to_frequent_mass([r.attentions], none_rare)).all()
    assert math.isnan(rare_to_frequent_uniform(none_rare))
    with pytest.raises(ValueError, match="one attention array per sentence"):
        rare_to_frequent_mass([r.attentions, r.attentions], sentences)


def test_rare_word_chance_counts_rare_word_keys_in_sentences_that_have_one():
    with_rare = piece_sentence(result([UNIFORM]), COUNTS)
    assert rare_word_chance([with_rare]) == pytest.approx(3 / 6)  # saw, aard, ##vark of 6 words
    none_rare = piece_sentence(result([UNIFORM]), {"the": 5, "cat": 5, "saw": 5, "aardvark": 5})
    assert rare_word_chance([with_rare, none_rare]) == pytest.approx(0.5)
    assert math.isnan(rare_word_chance([none_rare]))


def test_words_only_renormalises_over_word_keys():
    s = piece_sentence(result([UNIFORM]), COUNTS)
    mixed = 0.5 * ON_CLS + 0.5 * one_hot([2] * N)  # half parked on [CLS], half on "cat"
    (A,) = words_only([np.stack([UNIFORM, ON_CLS, mixed])[None]], [s])  # (1, 3, N, N)
    words = ~s.is_delimiter
    np.testing.assert_allclose(A[0, 0][:, words], 1 / 6)
    assert (A[0, 0][:, ~words] == 0).all()
    assert (A[0, 1] == 0).all()  # no weight on words at all: the rows stay zero
    np.testing.assert_allclose(A[0, 2], one_hot([2] * N))


def test_layer_profile_of_a_local_layer_and_a_uniform_layer():
    s = piece_sentence(result([UNIFORM]), COUNTS)
    A = np.stack([np.stack([PREVIOUS, PREVIOUS]), np.stack([UNIFORM, UNIFORM])])  # (2, 2, N, N)
    profile = layer_profile([A], [s])
    assert set(profile) == {"entropy", "mean_distance", "entropy_words", "mean_distance_words",
                            "delimiter"}
    assert all(v.shape == (2,) for v in profile.values())
    np.testing.assert_allclose(profile["entropy"], [0.0, math.log(N)], atol=1e-9)
    np.testing.assert_allclose(profile["entropy_words"], [0.0, math.log(6)], atol=1e-9)
    np.testing.assert_allclose(profile["delimiter"], [1 / 6, 3 / N])
    distance = np.abs(np.arange(N)[:, None] - np.arange(N)[None, :])  # (N, N)
    words = ~s.is_delimiter
    uniform_words = (distance[:, words].mean(axis=1))[WORD_QUERIES].mean()
    # previous-token layer: distance 1 everywhere; words only, the first word's row (on [CLS])
    # becomes zero and adds distance 0, the other five add 1
    uniform_all = distance.mean(axis=1)[WORD_QUERIES].mean()
    np.testing.assert_allclose(profile["mean_distance"], [1.0, uniform_all])
    np.testing.assert_allclose(profile["mean_distance_words"], [5 / 6, uniform_words])
    same = minilm_layer_profile(cache_of([PREVIOUS, PREVIOUS], [UNIFORM, UNIFORM]))
    assert all(np.allclose(same[k], profile[k]) for k in profile)


def test_with_syntax_adds_the_word_level_roles_so_every_role_has_a_best_head():
    scores = minilm_role_scores(cache_of([PREVIOUS, ON_CLS, ON_SELF]), COUNTS)  # (1, 3) each
    syntactic, coreference = np.array([[0.2, 0.9, 0.1]]), np.array([[0.7, 0.0, 0.3]])
    report = SimpleNamespace(relations={"all": SimpleNamespace(dep_to_head=SimpleNamespace(
        accuracy=syntactic))}, coreference=SimpleNamespace(accuracy=coreference))
    every = with_syntax(scores, report)
    assert set(H.ROLES) <= set(every)
    best = H.best_heads(every)
    assert (best["syntactic"]["head"], best["coreference"]["head"]) == (1, 0)
    assert (best["local"]["head"], best["identity"]["head"]) == (0, 2)
    assert np.isnan(with_syntax(scores, SimpleNamespace(relations=report.relations,
                                                        coreference=None))["coreference"]).all()
    wrong = SimpleNamespace(relations={"all": SimpleNamespace(dep_to_head=SimpleNamespace(
        accuracy=np.zeros((6, 12))))}, coreference=None)
    with pytest.raises(ValueError, match=r"\(6, 12\) heads.*\(1, 3\)"):
        with_syntax(scores, wrong)


def test_bad_input_is_refused_with_a_message():
    good = result([UNIFORM])
    with pytest.raises(TypeError, match="takes the Cache of model.run"):
        minilm_role_scores([good], COUNTS)
    with pytest.raises(ValueError, match="needs cache.inputs"):
        minilm_layer_profile(cache_of([UNIFORM], inputs=None))
    other = SimpleNamespace(tokens=TOKENS[:-2] + ["!", "[SEP]"], words=WORDS[:-2] + ["!", "[SEP]"],
                            word_index=WORD_INDEX.copy())
    with pytest.raises(ValueError, match=r"cache.inputs\[0\] has other tokens"):
        minilm_role_scores(cache_of([UNIFORM], inputs=[other]), COUNTS)
    with pytest.raises(ValueError, match=r"start with \[CLS\] and end with \[SEP\]"):
        piece_sentence(SimpleNamespace(tokens=TOKENS[1:], words=WORDS[1:],
                                       word_index=WORD_INDEX[1:] - 1), COUNTS)
    with pytest.raises(ValueError, match=r"word_index must be \(9,\)"):
        piece_sentence(SimpleNamespace(tokens=TOKENS, words=WORDS, word_index=WORD_INDEX[:-1]),
                       COUNTS)
    with pytest.raises(ValueError, match="rare_max_count must be an int >= 0"):
        piece_sentence(good, COUNTS, rare_max_count=-1)


# --------------------------------------------------------------------------- MiniLM
@pytest.fixture(scope="module")
def minilm():
    """The model, the first 40 corpus sentences through it (one Cache), and word counts of the
    whole corpus (from the tokenizer alone: counting needs words, not a forward pass)."""
    with threadpool_limits(limits=1, user_api="blas"):  # shared cores: see test_pretrained.py
        model = load_minilm("numpy", "float32")
        corpus = load_corpus()
        cache = model.run(corpus[:40])
        counts = word_counts(model.encode(text) for text in corpus)
        yield model, cache, counts


def test_attend_is_what_the_explorer_needs(minilm):
    model, cache, _ = minilm
    tokens, weights = model.attend(load_corpus()[0])
    assert tokens == cache.tokens[0]
    np.testing.assert_allclose(weights, cache.attention_of(0), atol=1e-5)  # batch: other rounding
    with pytest.raises(ValueError, match="at least one word"):
        model.attend("   ")


def test_counting_the_cache_inputs_or_the_corpus_gives_the_same_words(minilm):
    model, cache, counts = minilm
    assert [enc.text for enc in cache.inputs] == load_corpus()[:40]  # the texts, in order
    assert word_counts(cache.inputs) == word_counts(model.encode(t) for t in load_corpus()[:40])
    assert counts["the"] > 300 and sum(c == 1 for c in counts.values()) > len(counts) / 2


# The thresholds below were measured on MiniLM over the whole corpus (299 sentences) and over
# four 40-sentence slices of it (0-20, 0-40, 100-140, 200-240); each is set with room to spare.
def test_minilm_layer_0_head_2_is_a_previous_token_head(minilm):
    _, cache, counts = minilm
    scores = minilm_role_scores(cache, counts)
    # measured local 0.9995-0.9998 on every slice (the next best head, L1H8, about 0.64)
    assert scores["local"][0, 2] >= 0.99
    assert np.unravel_index(scores["local"].argmax(), scores["local"].shape) == (0, 2)
    previous = [np.diagonal(cache.attention_of(b)[0, 2], offset=-1).min()
                for b in range(len(cache))]
    assert min(previous) > 0.95  # every piece, in every sentence, on the piece before it


def test_minilm_has_a_duplicate_head_but_no_identity_head(minilm):
    _, cache, counts = minilm
    scores = minilm_role_scores(cache, counts)
    # measured: L0H8 duplicate 0.84-0.88, while no head puts more than 0.18 on the piece itself
    assert np.unravel_index(scores["duplicate"].argmax(), (6, 12)) == (0, 8)
    assert scores["duplicate"][0, 8] >= 0.7
    assert scores["identity"].max() < 0.3


def test_minilm_rare_target_head_sits_in_the_last_layer_and_beats_chance(minilm):
    _, cache, counts = minilm
    scores = minilm_role_scores(cache, counts)
    chance = rare_word_chance(piece_sentences(cache.inputs, counts))
    layer, head = np.unravel_index(np.nanargmax(scores["rare_target"]), (6, 12))
    # measured: best 0.66-0.75 (L5H4, L5H7 or L5H11) against a chance level of 0.29-0.32
    assert layer == 5
    assert scores["rare_target"][layer, head] >= chance + 0.25


def test_minilm_layers_park_on_delimiters_in_the_middle_and_look_widest_at_the_top(minilm):
    _, cache, _ = minilm
    profile = minilm_layer_profile(cache)
    # measured: delimiter mass 0.30 (layer 0), 0.56-0.66 (layers 1-4), 0.42 (layer 5)
    assert (profile["delimiter"][1:5] > 0.5).all() and (profile["delimiter"][[0, 5]] < 0.47).all()
    # measured, words only: 3.4-3.9, 2.6-2.9, 2.8-3.1, 3.5-3.9, 3.3-3.7, 3.8-4.4 pieces
    words = profile["mean_distance_words"]
    assert words.argmin() == 1 and words[5] > words[1] + 1.0
    # [CLS] sits at distance i from piece i: parking makes every layer look farther than it reads
    assert (profile["mean_distance"] > words).all()

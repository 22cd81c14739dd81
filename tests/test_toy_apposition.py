"""The naming relation of the toy language (issue 15): "alongside NAME DET ADJ* NOUN", where the
person noun is the name's only witness; its corruption (`name_swap`) and sub-task ("naming")."""

from __future__ import annotations

import numpy as np
import pytest

from mha_course.analysis import heads
from mha_course.models import toy_language as lang

LEX = lang.LEXICON
PARTNER = lang.NAME_PARTNER_IDS


@pytest.fixture(scope="module")
def corpus():
    return lang.generate(2000, seed=0)


def _appositions(s) -> list[tuple[int, int]]:
    """(name position, noun position) of each annotated rare word."""
    return [(i, c) for i, c in enumerate(s.rare_context) if c >= 0]


def test_rare_context_points_from_the_apposition_name_to_its_person_noun(corpus):
    n_found = 0
    for s in corpus:
        for i, c in _appositions(s):
            name, noun = LEX[s.tokens[i]], LEX[s.tokens[c]]
            assert name.pos == "NAME" and noun.pos == "NOUN" and noun.number == "sg"
            assert noun.gender in ("m", "f") and noun.gender == name.gender
            assert name.world == noun.world == s.world
            assert 2 <= c - i <= 5
            assert LEX[s.tokens[i - 1]].concept == "alongside"
            assert all(LEX[t].pos in ("DET", "ADJ") for t in s.tokens[i + 1:c])
            n_found += 1
        # "alongside" appears only right before an apposition's name, once at most
        at = [k for k, t in enumerate(s.tokens) if LEX[t].concept == "alongside"]
        assert [k + 1 for k in at] == [i for i, _ in _appositions(s)]
        assert len(at) <= 1
    assert n_found > 500


def test_nothing_else_refers_to_the_apposition_name(corpus):
    for s in corpus:
        names = {i for i, _ in _appositions(s)}
        assert not names & {c for c in s.coref if c >= 0}
        assert not names & {r for r in s.repeat_of if r >= 0}
        assert not names & {h for h in s.head if h >= 0}
        for i in names:  # the name is not named a second time either
            assert s.tokens.count(s.tokens[i]) == 1


def test_apposition_prob_sets_how_often_an_apposition_occurs(corpus):
    share = np.mean([bool(_appositions(s)) for s in corpus])
    # about 0.5 (none when clause 1 used every person noun; draws over max_len are drawn again)
    assert 0.42 < share < 0.58
    never = lang.generate(500, seed=0, grammar=lang.Grammar(apposition_prob=0.0))
    assert all(c == -1 for s in never for c in s.rare_context)
    assert not any(LEX[t].concept == "alongside" for s in never for t in s.tokens)
    always = lang.generate(500, seed=0, grammar=lang.Grammar(apposition_prob=1.0))
    assert np.mean([bool(_appositions(s)) for s in always]) > 0.85
    adjectives = lang.generate(300, seed=0, grammar=lang.Grammar(
        apposition_prob=1.0, apposition_adjectives=(0.0, 0.0, 0.0, 1.0)))
    gaps = [c - i for s in adjectives for i, c in _appositions(s)]
    assert gaps and np.mean(np.array(gaps) == 5) > 0.9  # DET + 3 ADJ unless they ran out


def test_max_len_rejects_longer_draws():
    assert max(len(s) for s in lang.generate(300, seed=0, grammar=lang.Grammar(max_len=20))) <= 20
    assert max(len(s) for s in lang.generate(300, seed=0)) <= lang.Grammar().max_len
    with pytest.raises(ValueError, match="max_len=12 is too short"):
        lang.generate(5, seed=0, grammar=lang.Grammar(max_len=12, second_clause=1.0,
                                                      adjective_counts=(0.0, 0.0, 1.0)))


@pytest.mark.parametrize("change, match", [
    ({"apposition_prob": 1.5}, "apposition_prob"),
    ({"apposition_prob": -0.1}, "apposition_prob"),
    ({"apposition_adjectives": (0.5, 0.2)}, "apposition_adjectives"),
    ({"apposition_adjectives": ()}, "apposition_adjectives"),
    ({"max_len": 3}, "max_len"),
    ({"max_len": 32.5}, "max_len"),
])
def test_grammar_refuses_bad_apposition_settings(change, match):
    with pytest.raises(ValueError, match=match):
        lang.Grammar(**change)


def test_name_partners_are_an_involution_within_world_across_gender():
    ids = np.arange(len(lang.VOCAB))
    assert (PARTNER[PARTNER] == ids).all()
    for i, t in enumerate(lang.VOCAB):
        w = LEX[t]
        if w.pos == "NAME":
            p = LEX[lang.VOCAB[PARTNER[i]]]
            assert p.pos == "NAME" and p.world == w.world and p.gender != w.gender
        else:
            assert PARTNER[i] == i
    assert "alongside" in LEX and LEX["alongside"].pos == "PREP"


def test_naming_subtask_changes_exactly_the_apposition_names_into_their_partners(corpus):
    inputs, targets, at, _ = lang.subtask_batch(corpus[:300], "naming", np.random.default_rng(0))
    expected = np.zeros_like(at)
    for b, s in enumerate(corpus[:300]):
        for i, _ in _appositions(s):
            expected[b, i] = True
    assert expected.sum() > 100 and (at == expected).all()
    assert ((inputs != targets) == at).all()
    assert (inputs[at] == PARTNER[targets[at]]).all()


def test_name_swap_turns_apposition_names_into_their_partners(corpus):
    batch = corpus[:300]
    named = np.zeros((len(batch), max(len(s) for s in batch)), dtype=bool)
    for b, s in enumerate(batch):
        for i, _ in _appositions(s):
            named[b, i] = True
    rng = np.random.default_rng(0)
    # names are first mentions: no word-level corruption touches them, so without transpositions
    # every apposition name is its partner, whatever the rate
    inputs, targets, _, _ = lang.corrupt_batch(batch, rng, rate=0.5, transpose=0.0,
                                               relation_swap=0.3, name_swap=1.0)
    assert (inputs[named] == PARTNER[targets[named]]).all()
    assert (inputs[named] != targets[named]).all()
    kept, targets, _, _ = lang.corrupt_batch(batch, rng, rate=0.5, transpose=0.0, name_swap=0.0)
    assert (kept[named] == targets[named]).all()
    half, targets, _, _ = lang.corrupt_batch(batch, rng, transpose=0.0, name_swap=0.5)
    assert 0.35 < np.mean(half[named] != targets[named]) < 0.65
    # transpositions afterwards may move the partner (one place each, and they can chain),
    # never lose it
    moved, targets, _, _ = lang.corrupt_batch(batch, rng, transpose=1.5, name_swap=1.0)
    for b, i in zip(*np.nonzero(named)):
        assert PARTNER[targets[b, i]] in moved[b]


def test_rare_word_metrics_are_finite_on_generated_sentences(corpus):
    sentences = corpus[:200]
    k, fraction = heads.fixed_offset_baseline(sentences, attr="rare_context")
    offsets = [c - i for s in sentences for i, c in _appositions(s)]
    assert 2 <= k <= 5 and np.isfinite(fraction)
    assert fraction == pytest.approx(np.mean(np.array(offsets) == k))
    attentions = []
    for s in sentences:  # head 0 attends from each token to its rare context (or [CLS]), head 1
        n = len(s)  # to itself
        A = np.zeros((1, 2, n, n))  # (n_layers, n_heads, n, n)
        A[0, 0, np.arange(n), [c if c >= 0 else 0 for c in s.rare_context]] = 1.0
        A[0, 1] = np.eye(n)
        attentions.append(A)
    score = heads.rare_word_score(attentions, sentences)  # (n_layers, n_heads)
    assert np.isfinite(score).all()
    assert score[0, 0] == 1.0 and score[0, 1] == 0.0


def test_the_pronoun_refers_to_a_name_among_other_names(corpus):
    # object_always_named: every antecedent is a name, and in about half the sentences another
    # name (a modifier's or the apposition's) comes before the pronoun, so "look at a name" is
    # not enough. With it off, nouns are the antecedent in a few percent of sentences only.
    pairs = [(s, i, a) for s in corpus for i, a in enumerate(s.coref) if a >= 0]
    assert all(LEX[s.tokens[a]].pos == "NAME" for s, _, a in pairs)
    others = [sum(p == "NAME" for p in s.pos[:i]) > 1 for s, i, _ in pairs]
    assert 0.3 < np.mean(others) < 0.8, np.mean(others)
    old = lang.generate(2000, seed=0, grammar=lang.Grammar(object_always_named=False))
    kinds = [LEX[s.tokens[a]].pos for s in old for a in s.coref if a >= 0]
    assert 0.0 < kinds.count("NOUN") / len(kinds) < 0.15

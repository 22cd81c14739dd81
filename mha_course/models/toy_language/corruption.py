"""Corrupting toy sentences: the denoising objective the toy model trains on (`corrupt_batch`)
and the seven held-out sub-tasks that each corrupt what one relation alone can restore
(`subtask_batch`, `SUBTASKS`). The naming relation has both: `corrupt_batch(name_swap=...)` and
the "naming" sub-task turn the name of an apposition ("alongside Tila the old queen") into its
partner of the other gender in the same world (`NAME_PARTNER_IDS`), which only the apposition's
noun can undo. Why the objective is what it is: docs/design/toy_language.md.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mha_course.models.toy_language.grammar import Sentence, _other
from mha_course.models.toy_language.lexicon import (
    CASE_INDEX,
    CASES,
    FEATURES,
    FLIP_WORLD,
    LEXICON,
    MASK,
    NAME_PARTNER_IDS,
    TO_CASE,
    TOKEN_TO_ID,
    VOCAB,
    WORD_IDS,
    WORLDS,
    counterpart,
    form_of,
)
from mha_course.models.toy_language.text import pad_batch

__all__ = ["corrupt_batch", "subtask_batch", "SUBTASKS"]


def _one_feature_swaps(token: str, features=FEATURES) -> list[str]:
    """Forms of the same word (same concept) that differ in exactly one of `features`: each looks
    fine on its own and is only wrong relative to whatever governs it."""
    info = LEXICON[token]
    out = []
    for other, w in LEXICON.items():
        if w.pos != info.pos or other == token:
            continue
        if info.pos == "NAME":  # a name of the same world, other gender: the pronoun stops fitting
            if w.world == info.world and w.gender != info.gender:
                out.append(other)
        elif info.pos == "PRON":  # another pronoun (gender and number count as one feature)
            if w.case == info.case or ("case" in features and
                                         (w.number, w.gender) == (info.number, info.gender)):
                out.append(other)
        elif w.concept == info.concept:
            differ = [f for f in FEATURES if getattr(w, f) != getattr(info, f)]
            if len(differ) == 1 and differ[0] in features:
                out.append(other)
    return out


# Word-level swaps touch the features that a *relation* governs (agreement, coreference, the
# question form); capitals and world are corrupted sentence-wide instead (see corrupt_batch).
_WORD_LEVEL_FEATURES = ("number", "gender", "verb_form")


def _swap_table(features) -> dict[int, np.ndarray]:
    """word id -> ids of its one-feature swaps (over `features`)."""
    return {TOKEN_TO_ID[t]: np.array([TOKEN_TO_ID[s] for s in _one_feature_swaps(t, features)],
                                     dtype=np.int64)
            for t in VOCAB if LEXICON[t].pos not in ("SPECIAL", "PUNCT")}


_SWAP_IDS = _swap_table(_WORD_LEVEL_FEATURES)
# ... and with the case as well: a single word in the wrong case, which only the closer can judge
_SWAP_IDS_WITH_CASE = _swap_table(_WORD_LEVEL_FEATURES + ("case",))
_NUMBER_SWAP = np.arange(len(VOCAB))  # verb id -> the same verb, other number
_PRONOUN_SWAPS: dict[int, np.ndarray] = {}  # pronoun id -> the other pronouns, same case
for _t, _w in LEXICON.items():
    if _w.pos == "VERB":
        _NUMBER_SWAP[TOKEN_TO_ID[_t]] = next(
            TOKEN_TO_ID[o] for o, v in LEXICON.items()
            if v == replace(_w, number="pl" if _w.number == "sg" else "sg"))
    elif _w.pos == "PRON":
        _PRONOUN_SWAPS[TOKEN_TO_ID[_t]] = np.array(
            [TOKEN_TO_ID[o] for o, v in LEXICON.items()
             if v.pos == "PRON" and v.case == _w.case and o != _t])



def _corruptible(sentences: list[Sentence], n: int) -> np.ndarray:
    """(batch, n): word positions, less the first mention of each name."""
    out = np.zeros((len(sentences), n), dtype=bool)
    for b, s in enumerate(sentences):
        for i, (delim, rare, rep) in enumerate(zip(s.is_delimiter, s.is_rare, s.repeat_of)):
            out[b, i] = not delim and (not rare or rep >= 0)
    return out


def corrupt_batch(sentences: list[Sentence], rng: np.random.Generator, rate: float = 0.3,
                  kinds: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3),
                  sentence_flip: float = 0.2, transpose: float = 0.5,
                  relation_swap: float = 0.0, protect_governors: bool = False,
                  case_flip: float | None = None, swap_case: bool = False,
                  case_flip_share: float = 1.0, name_swap: float = 0.5,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The denoising objective: (inputs, targets, loss_mask, lengths), all (batch, n) but lengths.

    Sentence-wide: with probability `sentence_flip` every word changes case (to the next case in
    CASES with probability 2/3, the one after with 1/3), and independently with the same
    probability every noun, verb and adjective moves to the other world. Then the neighbours all
    agree with each other and are all wrong: only the closing delimiter (for case) and the names
    (for world) still tell the truth.
    Word order: with probability `transpose` a sentence has two neighbouring words swapped.
    Word-wide: each corruptible word is corrupted with probability `rate`, as [MASK], as a
    one-feature swap (wrong number, gender or question form) or as a random word, in the
    proportions `kinds`. `targets` are the clean ids; `loss_mask` covers every word position.

    Relations, in the direction the head metrics read them: with probability `relation_swap`
    each dependent (a verb, a pronoun) takes the wrong number / the wrong pronoun, so it must
    look up its governor (subject, antecedent). With `protect_governors` the governors are never
    one-feature swapped (they are [MASK]ed instead), so the arrow of evidence points one way.
    `case_flip` (default: `sentence_flip`) sets the sentence-wide case flip on its own;
    `swap_case` lets the one-feature swaps change a single word's case too; `case_flip_share` < 1
    flips only that share of the words of a flipped sentence, so that the neighbours' case is no
    guide and every word must consult the closer itself.
    `name_swap`: each name in apposition ("alongside Tila the old queen") becomes its partner of
    the other gender (`NAME_PARTNER_IDS`) with this probability: only the apposition's noun can
    tell which of the two it was. (Such a name is a first mention, so no word-level corruption
    touches it; a transposition afterwards may move the partner one place.)
    `transpose` is the expected number of neighbour swaps per sentence (may exceed 1).
    """
    clean, lengths = pad_batch(sentences)
    words = np.isin(clean, WORD_IDS)  # (batch, n)
    inputs = clean.copy()
    case_flip = sentence_flip if case_flip is None else case_flip
    flip_case = rng.random(len(sentences)) < case_flip  # (batch,)
    flip_case = np.repeat(flip_case[:, None], clean.shape[1], axis=1)  # (batch, n)
    if case_flip_share < 1:
        flip_case &= rng.random(clean.shape) < case_flip_share
    # each flipped sentence moves to another case: a draw over all three, moved on to the next
    # case when it hits the sentence's own (names and delimiters stay as they are)
    drawn = rng.integers(len(CASES), size=(len(sentences), 1))  # (batch, 1)
    case_now = CASE_INDEX[clean]  # (batch, n)
    new_case = np.where(drawn == case_now, (case_now + 1) % len(CASES), drawn)  # (batch, n)
    inputs[flip_case] = TO_CASE[new_case[flip_case], inputs[flip_case]]
    flip_world = rng.random(len(sentences)) < sentence_flip  # (batch,)
    inputs[flip_world] = FLIP_WORLD[inputs[flip_world]]
    corrupt = _corruptible(sentences, clean.shape[1]) & (rng.random(clean.shape) < rate)
    kind = rng.choice(3, size=clean.shape, p=kinds)  # 0 mask, 1 one-feature swap, 2 random word
    if protect_governors:
        governed = _governors(sentences, clean.shape[1])  # (batch, n)
        kind[governed & (kind == 1)] = 0
    inputs[corrupt & (kind == 0)] = TOKEN_TO_ID[MASK]
    for b, i in zip(*np.nonzero(corrupt & (kind == 1))):
        options = (_SWAP_IDS_WITH_CASE if swap_case else _SWAP_IDS)[int(inputs[b, i])]
        if len(options) == 0:  # a word with no alternative form: replace it at random
            options = WORD_IDS
        inputs[b, i] = options[rng.integers(len(options))]
    random_at = corrupt & (kind == 2)
    inputs[random_at] = WORD_IDS[rng.integers(len(WORD_IDS), size=int(random_at.sum()))]
    if relation_swap > 0:
        _swap_dependents(sentences, inputs, corrupt, rng, relation_swap)
    if name_swap > 0:
        named = _named(sentences, clean.shape[1]) & (rng.random(clean.shape) < name_swap)
        inputs[named] = NAME_PARTNER_IDS[inputs[named]]  # (batch, n) positions, in place
    n_swaps = int(transpose) + (rng.random(len(sentences)) < transpose % 1)  # (batch,)
    for k in range(int(np.ceil(transpose))):
        _transpose(sentences, inputs, np.zeros_like(words), rng, n_swaps > k)
    return inputs, clean, words, lengths


def _named(sentences, n: int) -> np.ndarray:
    """(batch, n): names with an annotated context word (the name of an apposition)."""
    out = np.zeros((len(sentences), n), dtype=bool)
    for b, s in enumerate(sentences):
        out[b, :len(s)] = (np.asarray(s.rare_context) >= 0) & np.asarray(s.is_rare, dtype=bool)
    return out


def _governors(sentences, n: int) -> np.ndarray:
    """(batch, n): positions that some token depends on (a subject, an antecedent)."""
    out = np.zeros((len(sentences), n), dtype=bool)
    for b, s in enumerate(sentences):
        for h in s.head + s.coref:
            if h >= 0:
                out[b, h] = True
    return out


def _swap_dependents(sentences, inputs, already, rng, p: float) -> None:
    """In place: each verb with a subject takes the other number, each pronoun with an
    antecedent becomes another pronoun, with probability p (skipping corrupted positions)."""
    for b, s in enumerate(sentences):
        for i in range(len(s)):
            if already[b, i] or (s.head[i] < 0 and s.coref[i] < 0) or rng.random() >= p:
                continue
            token = VOCAB[inputs[b, i]]
            info = LEXICON[token]
            if info.pos == "VERB":
                inputs[b, i] = _NUMBER_SWAP[inputs[b, i]]
            elif info.pos == "PRON":
                options = _PRONOUN_SWAPS[inputs[b, i]]
                inputs[b, i] = options[rng.integers(len(options))]


def _transpose(sentences, inputs, at, rng, which) -> None:
    """In each sentence b with which[b], swap one random pair of neighbouring words of different
    parts of speech (so that the swap breaks the word order), in place; mark both in `at`."""
    for b in np.nonzero(which)[0]:
        s = sentences[b]
        pairs = [i for i in range(1, len(s) - 2) if not s.is_delimiter[i]
                 and not s.is_delimiter[i + 1] and s.pos[i] != s.pos[i + 1]]
        if pairs:
            i = pairs[rng.integers(len(pairs))]
            inputs[b, i], inputs[b, i + 1] = inputs[b, i + 1], inputs[b, i]
            at[b, i] = at[b, i + 1] = True


# Each sub-task corrupts tokens that depend on one relation, in a way only that relation can
# undo; its accuracy is the fraction of those tokens restored exactly.
SUBTASKS = ("order", "agreement", "coreference", "copy", "register", "world", "naming")


def subtask_batch(sentences: list[Sentence], subtask: str, rng: np.random.Generator,
                  rate: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, targets, eval_mask, lengths) for one sub-task.

    order: one pair of neighbouring words of different parts of speech trades places (both
    count); agreement: one verb per sentence gets the other number (the other verbs stay right,
    so they cannot outvote the subject); coreference: the pronoun becomes another pronoun;
    copy: the repeated name becomes [MASK]; register: a fraction `rate` of the words (names
    excepted) change case; world: a fraction `rate` of the nouns, verbs and adjectives move to
    the other world; naming: the name of each apposition becomes its partner of the other gender
    in the same world (only the apposition's noun can tell).
    """
    if subtask not in SUBTASKS:
        raise ValueError(f"unknown sub-task {subtask!r}; choose one of {SUBTASKS}")
    clean, lengths = pad_batch(sentences)
    inputs = clean.copy()
    at = np.zeros(clean.shape, dtype=bool)  # (batch, n)
    if subtask == "order":
        _transpose(sentences, inputs, at, rng, np.ones(len(sentences), dtype=bool))
        return inputs, clean, at, lengths
    for b, s in enumerate(sentences):
        other_world = WORLDS[1 - WORLDS.index(s.world)]
        verbs = [i for i, r in enumerate(s.rel) if r == "nsubj"]
        one_verb = verbs[rng.integers(len(verbs))] if verbs else -1
        for i, tok in enumerate(s.tokens):
            w = LEXICON[tok]
            new = None
            if subtask == "agreement" and i == one_verb:
                new = form_of(tok, number=_other(w.number))
            elif subtask == "coreference" and s.coref[i] >= 0:
                options = [p for p in _one_feature_swaps(tok) if LEXICON[p].case == w.case]
                new = options[rng.integers(len(options))]
            elif subtask == "copy" and s.repeat_of[i] >= 0:
                new = MASK
            elif subtask == "naming" and s.rare_context[i] >= 0 and w.pos == "NAME":
                new = VOCAB[NAME_PARTNER_IDS[TOKEN_TO_ID[tok]]]
            elif subtask == "register" and w.pos not in ("NAME", "SPECIAL", "PUNCT") \
                    and rng.random() < rate:
                new = form_of(tok, case=CASES[(CASES.index(w.case) + rng.integers(1, len(CASES)))
                                            % len(CASES)])
            elif subtask == "world" and w.world and w.pos != "NAME" and rng.random() < rate:
                new = counterpart(tok, other_world)
            if new is not None:
                inputs[b, i] = TOKEN_TO_ID[new]
                at[b, i] = True
    return inputs, clean, at, lengths

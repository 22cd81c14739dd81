"""Text in and out of the toy language: your own sentence as the model's tokens (`tokenize`),
tokens to ids and back (`encode`, `decode`), and a batch of sentences as a padded id array
(`pad_batch`)."""

from __future__ import annotations

import numpy as np

from mha_course.models.toy_language.grammar import Sentence
from mha_course.models.toy_language.lexicon import (
    CASES,
    CLOSERS,
    CLS,
    LEXICON,
    REGISTER_CASE,
    SEP,
    TO_CASE,
    TOKEN_TO_ID,
    VOCAB,
)

__all__ = ["tokenize", "encode", "decode", "pad_batch"]


def tokenize(text: str) -> list[str]:
    """Your own sentence as the model's tokens: words split on spaces, the closing '.', '?' or '!'
    split off, [CLS] and [SEP] added, and every word but the names written in the case that the
    sentence's (last) closer asks for: lower case for '.' (and for no closer), capitals for '!',
    Title Case for '?'. So you need not type the toy language's conventions yourself.

    "The quick brown fox jumps over the lazy dog." -> [CLS] the quick ... dog . [SEP]
    "does-chase my fox Balo?" -> [CLS] Does-Chase My Fox Balo ? [SEP]
    Raises ValueError naming every word outside the toy vocabulary.
    (To give the model a word in the wrong case on purpose, pass a token list to
    `toy_model.ToyTransformer.attention` instead.)
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize needs a str; got {type(text).__name__}")
    words = [w for w in text.replace("[CLS]", " ").replace("[SEP]", " ").split()]
    tokens = []
    for word in words:
        closer = word[-1] if len(word) > 1 and word[-1] in CLOSERS else None
        word = word[:-1] if closer else word
        if word.lower() in TOKEN_TO_ID and LEXICON[word.lower()].pos not in ("NAME", "SPECIAL"):
            word = word.lower()  # written in the closer's case below
        tokens.append(word)
        if closer:
            tokens.append(closer)
    if not tokens:
        raise ValueError("the sentence is empty: type a few words, e.g. 'the quick fox runs .'")
    unknown = [t for t in tokens if t not in TOKEN_TO_ID]
    if unknown:
        nouns = sorted(t for t, w in LEXICON.items() if w.pos == "NOUN" and w.case == "lower")[:8]
        raise ValueError(f"not in the toy vocabulary: {', '.join(unknown)}. The toy language has "
                         f"{len(VOCAB)} tokens, e.g. the nouns {', '.join(nouns)}; "
                         "see mha_course.models.toy_language.VOCAB")
    closers = [t for t in tokens if t in CLOSERS]
    case = CASES.index(REGISTER_CASE[closers[-1] if closers else "."])
    return [CLS, *(VOCAB[TO_CASE[case, TOKEN_TO_ID[t]]] for t in tokens), SEP]


def encode(tokens: list[str]) -> list[int]:
    """Token strings to ids; an unknown token raises a KeyError that names it."""
    unknown = [t for t in tokens if t not in TOKEN_TO_ID]
    if unknown:
        raise KeyError(f"not in the toy vocabulary: {unknown} "
                       "(see mha_course.models.toy_language.VOCAB)")
    return [TOKEN_TO_ID[t] for t in tokens]


def decode(ids) -> list[str]:
    return [VOCAB[int(i)] for i in ids]


def pad_batch(sentences: list[Sentence]) -> tuple[np.ndarray, np.ndarray]:
    """ids (batch, n) padded with [PAD] = 0, and lengths (batch,)."""
    lengths = np.array([len(s) for s in sentences])
    ids = np.zeros((len(sentences), lengths.max()), dtype=np.int64)  # (batch, n)
    for b, s in enumerate(sentences):
        ids[b, :len(s)] = encode(s.tokens)
    return ids, lengths


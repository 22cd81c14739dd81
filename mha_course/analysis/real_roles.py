"""The specialization lab's role metrics (`analysis.heads`) on a real model's word pieces.

`analysis.heads` scores heads from attention arrays (n_layers, n_heads, n, n) and sentence
annotations: `tokens`, `is_delimiter`, `is_rare`, `head`, `coref`, `rare_context`. The toy
language ships those annotations; for MiniLM this module builds them from the model's `Cache`
(its `inputs` are the texts' `Encoding`s: pieces, words, word_index), at the level of word
pieces, which is where the attention lives:

- delimiter: [CLS], [SEP] and every punctuation piece (a piece with no letter or digit: "." ","
  "?" and also the "'" of "don ' t" and the "-" of "well - known", which WordPiece splits off);
- rare: every non-punctuation piece of a word seen at most `rare_max_count` times (default 1) in
  a reference corpus, usually the course's 299 sentences (`alignment.load_corpus()`). Words are
  the model's own words (`Encoding.words`, lower-cased): "don't" is one word, not "don" "'"
  "t". A word seen once is a hapax legomenon, the tail of the Zipf curve: in the course corpus
  67% of the 1,444 word types but 26% of the 3,761 running words. A word the corpus never saw
  counts 0 and is rare. Corpus frequency, not "continues a word (##)": a word split into pieces
  is rare for the tokenizer's vocabulary, not for the text, and Voita et al. (2019) define the
  rare-word head by the frequency of the words it looks at. On 299 sentences frequency is crude,
  and rare words are mostly content words (function words are all frequent), so a head drawn to
  nouns also scores here: compare with `rare_word_chance`, and read the score with that in mind;
- head and coref: -1 everywhere. Syntax and coreference are scored at the level of words, where
  Clark et al. (2019) score them, by `analysis.syntax` (spaCy's parse aligned with the pieces,
  attention summed over a word's pieces); mapping them onto single pieces would score a head
  wrong for looking at the second piece of "nut ##me ##g". `with_syntax` adds those two word-level
  tables to the piece-level ones, so that `heads.best_heads` and `heads.classify_heads` see every
  role of `heads.ROLES`.

    cache = model.run(texts)                           # a Cache; cache.inputs: the Encodings
    counts = word_counts(model.encode(t) for t in corpus)   # or word_counts(cache.inputs)
    scores = minilm_role_scores(cache, counts)         # {"local": (n_layers, n_heads), ...}
    profile = minilm_layer_profile(cache)              # {"entropy": (n_layers,), ...}
    sentences = piece_sentences(cache.inputs, counts)
    on_cls = mass_on_tokens(cache.attention_of(0), cache.tokens[0])["[CLS]"]  # (L, H)
    mass = rare_to_frequent_mass(attentions, sentences)  # (n_layers, n_heads)
    uniform = rare_to_frequent_uniform(sentences)      # the same for an even spread

Heads park attention on [CLS] (the attention sink), which makes a broad-looking row out of a
head that is idle. `words_only` renormalises each row over the word keys, so that entropy and
mean distance can also be read for the attention a head gives to words.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mha_course.analysis import heads
from mha_course.analysis.syntax import attention_sink
from mha_course.models.cache import Cache

__all__ = ["SPECIAL_PIECES", "RARE_MAX_COUNT", "PieceSentence", "is_punctuation", "word_counts",
           "piece_sentence", "piece_sentences", "minilm_role_scores", "rare_word_chance",
           "rare_to_frequent_mass", "rare_to_frequent_uniform",
           "words_only", "layer_profile", "minilm_layer_profile", "with_syntax",
           "mass_on_tokens"]

SPECIAL_PIECES = ("[CLS]", "[SEP]")
RARE_MAX_COUNT = 1  # hapax legomena: words seen at most once in the reference corpus


@dataclass
class PieceSentence:
    """One text at the level of its n word pieces, annotated for `analysis.heads`.

    tokens: the pieces ([CLS] first, [SEP] last); is_delimiter, is_rare (n,) bool;
    head, coref (n,) int, all -1 (scored at word level by `analysis.syntax`, see the module);
    rare_context (n,) int, all -1 (free text does not say which word tells what a rare word is).
    """
    tokens: list[str]
    is_delimiter: np.ndarray
    is_rare: np.ndarray
    head: np.ndarray
    coref: np.ndarray
    rare_context: np.ndarray


def is_punctuation(piece: str) -> bool:
    """True for a piece with no letter or digit ("." "," "'" "-" "?!"); False for [CLS]/[SEP]."""
    return piece not in SPECIAL_PIECES and bool(piece) and not any(c.isalnum() for c in piece)


def _inner_words(encoding) -> list[str]:
    """The text's words without [CLS] and [SEP], lower-cased (MiniLM is uncased)."""
    return [w.lower() for w in encoding.words[1:-1]]


def word_counts(encodings) -> collections.Counter:
    """How often each word occurs in `encodings` (anything with `words`: MiniLM's `Encoding`s,
    e.g. `cache.inputs`), lower-cased, [CLS], [SEP] and punctuation words left out."""
    counts = collections.Counter()
    for enc in encodings:
        counts.update(w for w in _inner_words(enc) if not is_punctuation(w))
    return counts


def _check_encoding(encoding, where: str) -> int:
    tokens = list(encoding.tokens)
    n = len(tokens)
    if n < 3 or tokens[0] != "[CLS]" or tokens[-1] != "[SEP]":
        raise ValueError(f"{where}: tokens must start with [CLS] and end with [SEP] around at "
                         f"least one piece; got {tokens[:3]}...{tokens[-2:]}")
    word_index = np.asarray(encoding.word_index)
    if word_index.shape != (n,) or word_index[0] != 0 or word_index[-1] != len(encoding.words) - 1:
        raise ValueError(f"{where}: word_index must be ({n},), 0 for [CLS] and "
                         f"{len(encoding.words) - 1} (the last word) for [SEP]; got shape "
                         f"{word_index.shape}")
    return n


def piece_sentence(encoding, counts: Mapping[str, int],
                   rare_max_count: int = RARE_MAX_COUNT) -> PieceSentence:
    """The `PieceSentence` of one text's `Encoding` (tokens, words, word_index), rare words
    looked up in `counts` (e.g. `word_counts` of the corpus; a word missing from it counts 0)."""
    n = _check_encoding(encoding, "encoding")
    if not isinstance(rare_max_count, (int, np.integer)) or rare_max_count < 0:
        raise ValueError(f"rare_max_count must be an int >= 0 (a word seen at most that often is "
                         f"rare); got {rare_max_count!r}")
    tokens = list(encoding.tokens)
    is_delimiter = np.array([t in SPECIAL_PIECES or is_punctuation(t) for t in tokens])  # (n,)
    words = [""] + _inner_words(encoding) + [""]  # (n_words,), the specials as ""
    word_of_piece = np.asarray(encoding.word_index)  # (n,)
    rare_word = np.array([bool(w) and counts.get(w, 0) <= rare_max_count for w in words])
    is_rare = rare_word[word_of_piece] & ~is_delimiter  # (n,)
    none = np.full(n, -1, dtype=np.int64)  # (n,)
    return PieceSentence(tokens, is_delimiter, is_rare, none, none.copy(), none.copy())


def piece_sentences(encodings, counts: Mapping[str, int],
                    rare_max_count: int = RARE_MAX_COUNT) -> list[PieceSentence]:
    """`piece_sentence` for each encoding (e.g. `cache.inputs`)."""
    return [piece_sentence(enc, counts, rare_max_count) for enc in encodings]


def _cache_sentences(cache: Cache, counts, rare_max_count, what: str):
    """(one (n_layers, n_heads, n, n) per text, one PieceSentence per text) of a MiniLM Cache."""
    if not isinstance(cache, Cache):
        raise TypeError(f"{what} takes the Cache of model.run(texts); got "
                        f"{type(cache).__name__}")
    if cache.inputs is None:
        raise ValueError(f"{what} needs cache.inputs, the texts' Encodings (words, word_index)")
    sentences = piece_sentences(cache.inputs, counts, rare_max_count)
    for b, s in enumerate(sentences):
        if list(s.tokens) != list(cache.tokens[b]):
            raise ValueError(f"cache.inputs[{b}] has other tokens than cache.tokens[{b}]")
    return [cache.attention_of(b) for b in range(len(cache))], sentences


def minilm_role_scores(cache: Cache, counts: Mapping[str, int],
                       rare_max_count: int = RARE_MAX_COUNT) -> dict[str, np.ndarray]:
    """Every piece-level role score of `analysis.heads`, pooled over the texts of `cache` (what
    `MiniLM.run(texts)` returned); each value is (n_layers, n_heads):

    local, delimiter, rare_target (Voita's: any piece TO a rare piece), identity (the mass on
    the piece's own position), duplicate (a repeated piece TO its earlier occurrence), entropy
    (nats), mean_distance (pieces), as defined in `analysis.heads`; rare_word (the subject's,
    FROM a rare word TO its informative context word): NaN, nothing annotates that word here
    (see `rare_to_frequent_mass`); sink_cls, sink_sep: the mass the pieces put on [CLS] and on
    [SEP] (`analysis.syntax.attention_sink`). syntactic and coreference are not here: see
    `with_syntax`.
    """
    attentions, sentences = _cache_sentences(cache, counts, rare_max_count, "minilm_role_scores")
    scores = heads.head_scores(attentions, sentences)
    for role in ("syntactic", "coreference"):  # no piece-level gold: NaN tables, left out
        del scores[role]
    sink = attention_sink(attentions)
    scores["sink_cls"], scores["sink_sep"] = sink["[CLS]"], sink["[SEP]"]
    return scores


def rare_word_chance(sentences) -> float:
    """The rare-word score of a head whose most-attended word key is drawn at random: over word
    queries of the sentences that contain a rare piece (pooled as in `heads.rare_target_score`),
    the mean fraction of word keys that are rare. NaN if no sentence has a rare piece."""
    fractions = []
    for s in sentences:
        rare = np.asarray(s.is_rare, dtype=bool)  # (n,)
        words = ~np.asarray(s.is_delimiter, dtype=bool)  # (n,)
        if rare.any():
            fractions.append(np.full(int(words.sum()), rare[words].mean()))
    return float(np.concatenate(fractions).mean()) if fractions else float("nan")


def _frequent_keys(s) -> np.ndarray:
    """(n,) bool: pieces of frequent words (not rare, not [CLS]/[SEP] or punctuation)."""
    return ~np.asarray(s.is_rare, dtype=bool) & ~np.asarray(s.is_delimiter, dtype=bool)


def rare_to_frequent_mass(attentions, sentences) -> np.ndarray:
    """The subject's rare-word direction without an annotation: the mean attention mass that
    rare-piece queries put on the pieces of frequent words, sum_j A[i, j] [j frequent], averaged
    over every rare query i of every sentence (pooled). (n_layers, n_heads); NaN if no sentence
    has a rare piece. Compare with `rare_to_frequent_uniform`: the frequent words take part of
    any spread, so the mass means something only above that."""
    attentions = [np.asarray(A) for A in attentions]
    heads._check(attentions, sentences)
    per = []
    for A, s in zip(attentions, sentences):
        rare = np.asarray(s.is_rare, dtype=bool)  # (n,)
        mass = A[..., _frequent_keys(s)].sum(axis=-1)  # (n_layers, n_heads, n)
        per.append(mass[..., rare])  # (n_layers, n_heads, n_rare)
    return heads._pooled_mean(per)


def rare_to_frequent_uniform(sentences) -> float:
    """`rare_to_frequent_mass` of a uniform head (each rare query spreads 1/n over its n keys):
    the mean, over the rare queries, of the share of a sentence's pieces that belong to frequent
    words. NaN if no sentence has a rare piece."""
    shares = [np.full(int(np.sum(s.is_rare)), _frequent_keys(s).mean()) for s in sentences]
    shares = [x for x in shares if x.size]
    return float(np.concatenate(shares).mean()) if shares else float("nan")


def words_only(attentions, sentences) -> list[np.ndarray]:
    """Each attention array with the delimiter keys removed and every row renormalised over the
    word keys: A'_ij = A_ij [j is a word] / sum_k A_ik [k is a word], same shape
    (n_layers, n_heads, n, n). What a head does with the attention it does not park. A row with
    no weight at all on words stays zero (softmax weights are positive, so this needs underflow)."""
    out = []
    for A, s in zip(attentions, sentences):
        words = ~np.asarray(s.is_delimiter, dtype=bool)  # (n,)
        kept = np.where(words, np.asarray(A), 0.0)  # (n_layers, n_heads, n, n)
        total = kept.sum(axis=-1, keepdims=True)  # (n_layers, n_heads, n, 1)
        out.append(np.divide(kept, total, out=np.zeros_like(kept), where=total > 0))
    return out


def layer_profile(attentions, sentences) -> dict[str, np.ndarray]:
    """Per-layer means over the heads, each (n_layers,):

    entropy, mean_distance: of the attention rows as they are (word queries, `analysis.heads`);
    entropy_words, mean_distance_words: the same after `words_only` (delimiters removed);
    delimiter: the mass on delimiter keys, which is what separates the two.
    """
    attentions = [np.asarray(A) for A in attentions]
    per_head = {  # the metrics check the shapes, so the raw ones come first
        "entropy": heads.attention_entropy(attentions, sentences),
        "mean_distance": heads.mean_attention_distance(attentions, sentences),
        "delimiter": heads.delimiter_score(attentions, sentences),
    }  # each (n_layers, n_heads)
    renormalised = words_only(attentions, sentences)
    per_head["entropy_words"] = heads.attention_entropy(renormalised, sentences)
    per_head["mean_distance_words"] = heads.mean_attention_distance(renormalised, sentences)
    return {name: table.mean(axis=1) for name, table in per_head.items()}  # each (n_layers,)


def minilm_layer_profile(cache: Cache) -> dict[str, np.ndarray]:
    """`layer_profile` of MiniLM's Cache (rare words play no part, so no corpus counts)."""
    attentions, sentences = _cache_sentences(cache, {}, RARE_MAX_COUNT, "minilm_layer_profile")
    return layer_profile(attentions, sentences)


def with_syntax(scores: Mapping[str, np.ndarray], report) -> dict[str, np.ndarray]:
    """`scores` plus the two word-level roles from an `analysis.syntax.SyntaxReport`:
    syntactic = the Clark accuracy over all arcs, dependent -> head; coreference = the pronoun ->
    antecedent accuracy (NaN everywhere if the report has no coreference). Both (n_layers,
    n_heads) and "most-attended word" based, like the piece-level roles, but over words, with only
    [CLS] and [SEP] left out of the candidates (punctuation words stay in)."""
    shape = np.shape(scores["local"])
    syntactic = np.asarray(report.relations["all"].dep_to_head.accuracy)
    if syntactic.shape != shape:
        raise ValueError(f"the syntax report is for {syntactic.shape} heads and the scores for "
                         f"{shape}: were they measured on the same model?")
    coreference = (np.full(shape, np.nan) if report.coreference is None
                   else np.asarray(report.coreference.accuracy))
    return {**scores, "syntactic": syntactic, "coreference": coreference}


def mass_on_tokens(attentions, tokens, targets=("[CLS]", "[SEP]", ".")) -> dict[str, np.ndarray]:
    """How much weight each head sends to each target piece, on average over the queries between
    [CLS] and [SEP]: {target: (n_layers, n_heads)}, mass[l, h] = mean_i A[l, h, i, key] over
    i = 1 .. n-2, key the target's first position in `tokens`. Attention parked on [CLS] shows
    up here as a mass near 1."""
    A = np.asarray(attentions, dtype=np.float64)  # (n_layers, n_heads, n, n)
    tokens = list(tokens)
    n = len(tokens)
    if A.ndim != 4 or A.shape[-2:] != (n, n) or n < 3:
        raise ValueError(f"attentions must be (n_layers, n_heads, n, n) with n = {n} tokens "
                         f"(at least [CLS], one piece, [SEP]); got shape {A.shape}")
    missing = [t for t in targets if t not in tokens]
    if missing:
        raise ValueError(f"targets {missing} are not among the tokens {tokens}")
    inner = slice(1, n - 1)  # the queries between [CLS] and [SEP]
    return {t: A[:, :, inner, tokens.index(t)].mean(axis=-1) for t in targets}  # (L, H) each

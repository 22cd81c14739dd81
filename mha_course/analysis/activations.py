"""What every head outputs, token by token: the material that probing, redundancy and the W^O
analysis read, built from a model's `Cache` (the model itself runs elsewhere:
`experiments.activations.collect_toy` / `collect_minilm` run it and call `from_cache`).

    acts = from_cache(cache, params, annotations=sentences)          # one row per token
    acts = from_cache(cache, params, annotations=aligned, pooling="mean")   # one row per word
    acts.heads       (n_layers, n_heads, n_tokens, d_v)   Z_i = A_i V_i of every head
    acts.attn_out    (n_layers, n_tokens, d_model)        Concat(Z_1..Z_h) W^O + b^O
    acts.attn_in     (n_layers, n_tokens, d_model)        X, the input the attention projected
    acts.residual    (n_layers, n_tokens, d_model)        the layer's output (the residual stream)
    acts.attentions  one (n_layers, n_heads, n, n) per sentence

Sentences are concatenated along the token axis; `sentence` and `position` say where each row
came from, `tokens` what it was (the word type, for the control task of probing).

MiniLM works on word pieces, parsers on words. With `pooling` and one `AlignedSentence` per
sentence (`alignment.align`), pieces become words: a word's vector is the *mean* of its pieces'
vectors (pooling="mean": every piece of "un-believ-ably" carries part of the word) or its first
piece's (pooling="first", what many probing papers use); the attention between words is
`alignment.word_attention` (sum over attended pieces, mean over attending ones). Pooling is an
average, so it commutes with the affine map Concat(Z) W^O + b^O: the pooled attn_out is still
the pooled heads through W^O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mha_course.analysis.alignment import word_attention
from mha_course.models.cache import Cache

__all__ = ["Activations", "from_cache", "POOLINGS"]

POOLINGS = ("mean", "first", None)


@dataclass
class Activations:
    """Per-token internals of a model on a corpus (NumPy float32, sentences concatenated).

    heads (n_layers, n_heads, n_tokens, d_v): Z_i; attn_out, attn_in, residual
    (n_layers, n_tokens, d_model); sentence, position (n_tokens,) ints; tokens: n_tokens word
    types; attentions: one (n_layers, n_heads, n_s, n_s) per sentence, over the same rows;
    annotations: one per sentence (a toy `Sentence`, an `AlignedSentence`, or None);
    params: one per layer, the attention's per-head MHAParams (NumPy), for W^O and W^V.
    """
    heads: np.ndarray
    attn_out: np.ndarray
    attn_in: np.ndarray
    residual: np.ndarray
    sentence: np.ndarray
    position: np.ndarray
    tokens: list[str]
    attentions: list[np.ndarray]
    annotations: list
    params: list

    n_layers = property(lambda self: self.heads.shape[0])
    n_heads = property(lambda self: self.heads.shape[1])
    n_tokens = property(lambda self: self.heads.shape[2])
    n_sentences = property(lambda self: len(self.attentions))

    def head_outputs(self, layer: int, head: int) -> np.ndarray:
        """(n_tokens, d_v): Z_i of one head, every token of the corpus."""
        return self.heads[layer, head]


def _pool_matrix(word_index: np.ndarray, pooling: str) -> np.ndarray:
    """(n_words, n): row w averages (mean) or picks the first of (first) the pieces of word w."""
    n = len(word_index)
    n_words = int(word_index.max()) + 1
    P = np.zeros((n_words, n), dtype=np.float32)  # (n_words, n)
    if pooling == "mean":
        P[word_index, np.arange(n)] = 1.0
        P /= P.sum(axis=1, keepdims=True)
    else:
        first = np.array([np.flatnonzero(word_index == w)[0] for w in range(n_words)])
        P[np.arange(n_words), first] = 1.0
    return P


def from_cache(cache: Cache, params, annotations=None, pooling: str | None = None) -> Activations:
    """Every token's (or word's) Z_i, attention input and output and layer output, as rows.

    cache: what `model.run` returned; params: one per layer, that layer's attention MHAParams
    as NumPy arrays (kept for W^O and W^V); annotations: one per sequence of the cache (a toy
    `Sentence`, an `AlignedSentence`) or None. pooling None: one row per token; "mean" or
    "first": one row per word, grouped by `annotations[b].word_index` (n_b,), with the words
    (`annotations[b].words`) as tokens. Arrays are float32.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
    if annotations is not None and len(annotations) != len(cache):
        raise ValueError(f"one annotation per sequence: got {len(annotations)} for a cache of "
                         f"{len(cache)}")
    if pooling is not None and annotations is None:
        raise ValueError(f"pooling={pooling!r} groups pieces into words: it needs annotations "
                         "with word_index and words (alignment.AlignedSentence)")
    if len(params) != cache.n_layers:
        raise ValueError(f"params must have one entry per layer ({cache.n_layers}); got "
                         f"{len(params)}")
    heads, attn_in, attn_out, residual, attentions, tokens = [], [], [], [], [], []
    for b in range(len(cache)):
        m = cache.lengths[b]
        if pooling is None:
            P = np.eye(m, dtype=np.float32)  # (m, m): tokens stay tokens
            attentions.append(cache.attention_of(b))  # (n_layers, n_heads, m, m)
            tokens += cache.tokens[b]
        else:
            word_index = np.asarray(annotations[b].word_index)
            if word_index.shape != (m,):
                raise ValueError(f"annotations[{b}].word_index must be ({m},), one word per "
                                 f"token; got {word_index.shape}")
            P = _pool_matrix(word_index, pooling)  # (n_words, m)
            attentions.append(word_attention(cache.attention_of(b), word_index))
            tokens += list(annotations[b].words)
        # float32 whatever the model's dtype: rows of a whole corpus add up
        heads.append(P @ cache.z_of(b).astype(np.float32))  # (n_layers, n_heads, n_words, d_v)
        for rows, layers in ((attn_in, cache.attn_in), (attn_out, cache.attn_out),
                             (residual, cache.residual[1:])):  # the output of each layer
            rows.append(P @ layers[:, b, :m].astype(np.float32))  # (n_layers, n_words, d_model)
    sizes = [h.shape[2] for h in heads]
    return Activations(
        heads=np.concatenate(heads, axis=2),  # (n_layers, n_heads, n_tokens, d_v)
        attn_out=np.concatenate(attn_out, axis=1),  # (n_layers, n_tokens, d_model)
        attn_in=np.concatenate(attn_in, axis=1),  # (n_layers, n_tokens, d_model)
        residual=np.concatenate(residual, axis=1),  # (n_layers, n_tokens, d_model)
        sentence=np.repeat(np.arange(len(sizes)), sizes),
        position=np.concatenate([np.arange(m) for m in sizes]),
        tokens=tokens, attentions=attentions,
        annotations=[None] * len(cache) if annotations is None else list(annotations),
        params=list(params))

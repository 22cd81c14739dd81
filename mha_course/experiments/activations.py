"""Run a model on a corpus and keep every head's output, token by token (or word by word): the
`analysis.activations.Activations` that probing, redundancy and the W^O analysis read.

    acts = collect_toy(model, sentences)        # the toy Transformer, one row per token
    acts = collect_minilm(minilm, texts)        # MiniLM, one row per spaCy word (mean of pieces)

Both are `model.run(...)` (a `Cache`) followed by `analysis.activations.from_cache`.
"""

from __future__ import annotations

import numpy as np

from mha_course.analysis import alignment
from mha_course.analysis.activations import POOLINGS, Activations, from_cache

__all__ = ["collect_toy", "collect_minilm"]


def _check_sentences(sentences, what: str) -> None:
    if isinstance(sentences, str) or not isinstance(sentences, (list, tuple)) or not sentences:
        raise TypeError(f"{what} must be a non-empty list; got {type(sentences).__name__}")


def _numpy(a) -> np.ndarray:
    """A weight as a NumPy array (torch parameters and tensors are detached and copied)."""
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def collect_toy(model, sentences, head_gates=None, batch_size: int = 256) -> Activations:
    """The toy Transformer on `sentences` (toy_language.Sentence): every token's Z_i, attention
    input and output and residual stream. Specials and punctuation are rows too: filter with
    labels. head_gates: None or (n_layers, n_heads), passed to the model (e.g. a pruned model)."""
    _check_sentences(sentences, "sentences")
    cache = model.run(list(sentences), head_gates=head_gates, batch_size=batch_size)
    params = [block.attn.to_params() for block in model.blocks]  # NumPy copies
    return from_cache(cache, params, annotations=list(sentences))


def collect_minilm(model, texts, parses=None, pooling: str | None = "mean",
                   batch_size: int = 16) -> Activations:
    """MiniLM on `texts`: every word's (or piece's) Z_i, attention input and output and layer
    output, with spaCy's parse aligned to the words.

    parses: one list of `alignment.ParserToken` per text (None: parse them now with spaCy);
    pooling: "mean" or "first" piece per word, or None for piece-level rows (no parse).
    annotations are `AlignedSentence`s (None per sentence with pooling=None); the words, as
    tokens, are lower-cased (MiniLM is uncased: one type per spelling).
    """
    _check_sentences(texts, "texts")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
    if pooling is not None and parses is None:
        parses = alignment.parse(list(texts))
    if parses is not None and len(parses) != len(texts):
        raise ValueError(f"one parse per text: got {len(parses)} parses and {len(texts)} texts")
    cache = model.run(list(texts), batch_size=batch_size)
    params = [layer.attention.map(_numpy) for layer in model.params.layers]
    if pooling is None:
        return from_cache(cache, params)
    aligned = [alignment.align(enc.text, enc.offsets, parse)
               for enc, parse in zip(cache.inputs, parses)]
    acts = from_cache(cache, params, annotations=aligned, pooling=pooling)
    acts.tokens = [t.lower() for t in acts.tokens]
    return acts

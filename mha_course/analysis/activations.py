"""What every head outputs, token by token: the material that probing, redundancy and the W^O
analysis read.

    acts = collect_toy(model, sentences)            # the toy Transformer, one row per token
    acts = collect_minilm(minilm, texts)            # MiniLM, one row per spaCy word (mean of pieces)
    acts.heads       (n_layers, n_heads, n_tokens, d_v)   Z_i = A_i V_i of every head
    acts.attn_out    (n_layers, n_tokens, d_model)        Concat(Z_1..Z_h) W^O + b^O: the layer's heads combined
    acts.attn_in     (n_layers, n_tokens, d_model)        X, the input the attention projected
    acts.residual    (n_layers, n_tokens, d_model)        the layer's output (the residual stream)
    acts.attentions  one (n_layers, n_heads, n, n) per sentence

Sentences are concatenated along the token axis; `sentence` and `position` say where each row
came from, `tokens` what it was (the word type, for the control task of probing).

MiniLM works on word pieces, parsers on words. `collect_minilm` aligns spaCy's parse with the
pieces (`alignment.align_result`) and turns pieces into words: a word's vector is the *mean* of
its pieces' vectors (pooling="mean", the default: every piece of "un-believ-ably" carries part of
the word) or its first piece's (pooling="first", what many probing papers use); the attention
between words is `word_attention` (sum over attended pieces, mean over attending ones). With
pooling=None the rows are the pieces themselves and no parse is made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mha_course.analysis import alignment
from mha_course.analysis.alignment import word_attention

__all__ = ["Activations", "collect_toy", "collect_minilm", "POOLINGS"]

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


def _check_sentences(sentences, what: str) -> None:
    if isinstance(sentences, str) or not isinstance(sentences, (list, tuple)) or not sentences:
        raise TypeError(f"{what} must be a non-empty list; got {type(sentences).__name__}")


# --------------------------------------------------------------------------- the toy model
def collect_toy(model, sentences, head_gates=None, batch_size: int = 256) -> Activations:
    """Run the toy Transformer on `sentences` (toy_language.Sentence) and keep every token's
    Z_i, attention input and output and residual stream (read with forward hooks, so the model's
    own forward runs unchanged). Specials and punctuation are rows too: filter with labels.

    head_gates: None or (n_layers, n_heads), passed to the model (e.g. a pruned model).
    """
    import torch

    from mha_course.models import toy_language as lang

    _check_sentences(sentences, "sentences")
    n_layers = len(model.blocks)
    batch_state = {}  # filled by the hooks during one forward: (what, layer) -> tensor

    def keep_attention(layer):
        def hook(module, args, out):  # args[0]: the attention's input (x; LN(x) if pre-LN)
            batch_state["in", layer], batch_state["out", layer] = args[0], out.out
        return hook

    def keep_block(layer):
        def hook(module, args, out):  # out = (x after the layer, weights, heads)
            batch_state["res", layer] = out[0]
        return hook

    hooks = [h for layer, block in enumerate(model.blocks)
             for h in (block.attn.register_forward_hook(keep_attention(layer)),
                       block.register_forward_hook(keep_block(layer)))]
    gates = None if head_gates is None else torch.as_tensor(np.asarray(head_gates),
                                                           dtype=torch.float32)
    was_training = model.training
    model.eval()
    Z, attn_in, attn_out, residual, attentions = [], [], [], [], []
    try:
        with torch.no_grad():
            for start in range(0, len(sentences), batch_size):
                ids, lengths = lang.pad_batch(sentences[start:start + batch_size])
                out = model(torch.from_numpy(ids), torch.from_numpy(lengths), gates)
                layers = {what: torch.stack([batch_state[what, l] for l in range(n_layers)]).numpy()
                          for what in ("in", "out", "res")}  # each (n_layers, batch, n, d_model)
                heads, weights = out.heads.numpy(), out.weights.numpy()
                for b, n in enumerate(lengths):  # keep each sentence's n real positions
                    Z.append(heads[:, b, :, :n])  # (n_layers, n_heads, n, d_v)
                    attentions.append(weights[:, b, :, :n, :n])  # (n_layers, n_heads, n, n)
                    attn_in.append(layers["in"][:, b, :n])  # (n_layers, n, d_model)
                    attn_out.append(layers["out"][:, b, :n])  # (n_layers, n, d_model)
                    residual.append(layers["res"][:, b, :n])  # (n_layers, n, d_model)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return Activations(
        heads=np.concatenate(Z, axis=2),  # (n_layers, n_heads, n_tokens, d_v)
        attn_out=np.concatenate(attn_out, axis=1),  # (n_layers, n_tokens, d_model)
        attn_in=np.concatenate(attn_in, axis=1),  # (n_layers, n_tokens, d_model)
        residual=np.concatenate(residual, axis=1),  # (n_layers, n_tokens, d_model)
        sentence=np.concatenate([np.full(len(s), k) for k, s in enumerate(sentences)]),
        position=np.concatenate([np.arange(len(s)) for s in sentences]),
        tokens=[t for s in sentences for t in s.tokens], attentions=attentions,
        annotations=list(sentences),
        params=[block.attn.to_params() for block in model.blocks])


# --------------------------------------------------------------------------- MiniLM
def _numpy_params(model) -> list:
    """Each layer's attention MHAParams as NumPy arrays (the torch backend holds tensors)."""
    def to_numpy(a):
        return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)
    return [layer.attention.map(to_numpy) for layer in model.params.layers]


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


def collect_minilm(model, texts, parses=None, pooling: str | None = "mean",
                   batch_size: int = 16) -> Activations:
    """Run MiniLM on `texts` and keep every word's (or piece's) Z_i, attention input and output
    and layer output, with spaCy's parse aligned to the words.

    parses: one list of `alignment.ParserToken` per text (None: parse them now with spaCy);
    pooling: "mean" or "first" piece per word, or None for piece-level rows (no parse).
    annotations are `AlignedSentence`s (None per sentence with pooling=None).
    """
    _check_sentences(texts, "texts")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")
    if pooling is not None and parses is None:
        parses = alignment.parse(list(texts))
    if parses is not None and len(parses) != len(texts):
        raise ValueError(f"one parse per text: got {len(parses)} parses and {len(texts)} texts")
    params = _numpy_params(model)
    results = []
    for start in range(0, len(texts), batch_size):
        results += model.run_many(list(texts[start:start + batch_size]))
    heads, attn_in, residual, attentions, annotations, tokens = [], [], [], [], [], []
    for k, r in enumerate(results):
        if pooling is None:
            aligned, P = None, np.eye(r.n, dtype=np.float32)  # (n, n): pieces stay pieces
            attentions.append(r.attentions)  # (n_layers, n_heads, n, n)
            tokens += r.tokens
        else:
            aligned = alignment.align_result(r, parses[k])
            P = _pool_matrix(aligned.word_index, pooling)  # (n_words, n)
            attentions.append(word_attention(r.attentions, aligned.word_index))
            tokens += [w.lower() for w in aligned.words]  # MiniLM is uncased: one type per spelling
        annotations.append(aligned)
        heads.append(P @ r.heads.astype(np.float32))  # (n_layers, n_heads, n_words, d_v)
        attn_in.append(P @ r.hidden_states[:-1].astype(np.float32))  # (n_layers, n_words, d_model)
        residual.append(P @ r.hidden_states[1:].astype(np.float32))  # (n_layers, n_words, d_model)
    Z = np.concatenate(heads, axis=2)  # (n_layers, n_heads, n_tokens, d_v)
    concat = Z.transpose(0, 2, 1, 3).reshape(Z.shape[0], Z.shape[2], -1)  # (n_layers, n_tokens, n_heads * d_v)
    # pooling is an average, so it commutes with the affine map Concat(Z) W^O + b^O
    attn_out = np.stack([concat[l] @ p.W_O.astype(np.float32) + p.b_O.astype(np.float32)
                         for l, p in enumerate(params)])  # (n_layers, n_tokens, d_model)
    sizes = [h.shape[2] for h in heads]
    return Activations(
        heads=Z, attn_out=attn_out, attn_in=np.concatenate(attn_in, axis=1),
        residual=np.concatenate(residual, axis=1),
        sentence=np.repeat(np.arange(len(sizes)), sizes),
        position=np.concatenate([np.arange(m) for m in sizes]),
        tokens=tokens, attentions=attentions, annotations=annotations, params=params)

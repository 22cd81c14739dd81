"""`load_bert(path)`: any BERT checkpoint folder on disk, run through the course's own attention.

    model = load_bert("path/to/bert-base-uncased")   # NumPy backend, float32; backend="torch"
    cache = model.run("The quick brown fox jumps over the lazy dog.")   # or a list of texts
    cache.attention (n_layers, batch, n_heads, n, n), cache.z (n_layers, batch, n_heads, n, d_v),
    cache.residual (n_layers + 1, batch, n, d_model), cache.tokens[b]: see `models.cache.Cache`
    cache.inputs[b]: the text's `Encoding` (text, offsets, words, word_index)
    (pieces -> words: `mha_course.analysis.alignment.word_attention(A, encoding.word_index)`)

The folder is Hugging Face's layout (`folder.inspect_folder` says what it needs): BERT-base,
BERT-large, MiniLM (`models.minilm.load_minilm` is this loader on its bundled folder), a
fine-tuned BERT. Both backends take and return the same things; results are always NumPy arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mha_course.models.bert import np_bert, torch_bert
from mha_course.models.bert.folder import inspect_folder
from mha_course.models.bert.tokenize import Encoding, encode, load_tokenizer
from mha_course.models.bert.weights import BertConfig, load_params
from mha_course.models.cache import Cache, concatenate, zero_padding
from mha_course.np_attention import padding_mask
from mha_course.params import check_head_gates

__all__ = ["Bert", "load_bert", "BACKENDS", "DTYPES"]

BACKENDS = ("numpy", "torch")
DTYPES = ("float32", "float64")


class Bert:
    """A BERT encoder (any number of layers and heads) on the course's attention.

    Build it with `load_bert`. `run(text or texts)` -> `Cache`; `forward(ids)` for ids.
    `path`: the folder it was read from (None when built otherwise).
    """

    def __init__(self, config: BertConfig, params, tokenizer, backend: str, dtype: str,
                 path: Path | None = None):
        self.config, self.params, self.tokenizer = config, params, tokenizer
        self.backend, self.dtype, self.path = backend, dtype, path

    @classmethod
    def from_folder(cls, path, backend: str = "numpy", dtype="float32", *, device=None):
        """The model in the BERT folder `path` (see `load_bert`), as an instance of `cls`."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
        if backend == "numpy" and device not in (None, "cpu"):
            raise ValueError(f"the numpy backend runs on the CPU; got device={device!r}")
        dtype = _dtype_name(dtype)
        folder = inspect_folder(path)
        config, params = load_params(folder.path, dtype=np.dtype(dtype))
        if backend == "torch":
            params = params.map(lambda a: torch.as_tensor(a, device=device))
        return cls(config, params, load_tokenizer(folder), backend, dtype, folder.path)

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(backend={self.backend!r}, dtype={self.dtype!r}, "
                f"n_layers={c.n_layers}, n_heads={c.n_heads}, d_model={c.d_model})")

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
        device = self.params.word_embeddings.device

        def as_tensor(a):
            return None if a is None else torch.as_tensor(a, device=device)

        # NumPy out: no graph to keep (torch_bert.encode itself is differentiable)
        with torch.inference_mode():
            out = torch_bert.encode(self.params, as_tensor(input_ids), as_tensor(token_type_ids),
                                    eps, as_tensor(mask), as_tensor(head_gates))
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

    def run(self, texts, head_gates=None, batch_size: int = 32) -> Cache:
        """One text or a list of texts through the model -> `Cache` (NumPy, the model's dtype).

        Texts of similar length run `batch_size` at a time; keys beyond a text's length are
        masked out, and the Cache, padded to the longest text, is 0 at the padded positions.
        cache.inputs[b] is text b's `Encoding` (its text, offsets, words and word_index).
        head_gates: None, (n_layers, n_heads) or (n_layers, batch, n_heads), as in `forward`.
        In BERT (post-LN) the attention of layer l reads the residual stream itself:
        attn_in[l] = residual[l].
        """
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, (list, tuple)) or not texts:
            raise TypeError(f"texts must be a str or a non-empty list of str; got "
                            f"{type(texts).__name__}{' (empty)' if texts == [] else ''}")
        encs = [self.encode(t, where=f"texts[{i}]") for i, t in enumerate(texts)]
        batch, c = len(encs), self.config
        check_head_gates(head_gates, c.n_layers, c.n_heads, (batch,))
        gates = None if head_gates is None else np.asarray(head_gates)
        lengths = np.array([len(e.tokens) for e in encs])  # (batch,)
        n = int(lengths.max())
        ids = np.zeros((batch, n), dtype=np.int64)  # (batch, n), 0 = [PAD]
        types = np.zeros((batch, n), dtype=np.int64)  # (batch, n)
        for b, e in enumerate(encs):
            ids[b, :lengths[b]], types[b, :lengths[b]] = e.input_ids, e.token_type_ids
        order = np.argsort(lengths, kind="stable")  # similar lengths share a batch: less padding
        chunks = []
        for start in range(0, batch, batch_size):
            rows = order[start:start + batch_size]
            m = int(lengths[rows].max())
            g = gates if gates is None or gates.ndim == 2 else gates[:, rows]  # batch on axis 1
            out = self.forward(ids[rows, :m], types[rows, :m], padding_mask(lengths[rows], m), g)
            arrays = {"attention": out.attentions,  # (n_layers, chunk, n_heads, m, m)
                      "z": out.heads,  # (n_layers, chunk, n_heads, m, d_v)
                      "attn_in": out.hidden_states[:-1],  # (n_layers, chunk, m, d_model)
                      "attn_out": self._attn_out(out.heads, g),  # (n_layers, chunk, m, d_model)
                      "residual": out.hidden_states}  # (n_layers + 1, chunk, m, d_model)
            chunks.append(Cache(tokens=[encs[b].tokens for b in rows], lengths=lengths[rows],
                                head_gates=g, inputs=[encs[b] for b in rows],
                                **zero_padding(arrays, lengths[rows])))
        return concatenate(chunks)[np.argsort(order)]  # back in the order of the texts

    def _attn_out(self, z, gates) -> np.ndarray:
        """(n_layers, batch, n, d_model): Concat(xi_1 Z_1 .. xi_h Z_h) W^O + b^O of every layer,
        from the heads' outputs z (n_layers, batch, n_heads, n, d_v)."""
        if gates is not None:
            g = gates if gates.ndim == 3 else gates[:, None]  # (n_layers, batch or 1, n_heads)
            z = z * g[..., None, None].astype(z.dtype)  # (n_layers, batch, n_heads, n, d_v)
        L, batch, n_heads, n, d_v = z.shape
        concat = z.transpose(0, 1, 3, 2, 4).reshape(L, batch, n, n_heads * d_v)
        # concat: (n_layers, batch, n, n_heads * d_v)
        out = []
        for layer, params in enumerate(self.params.layers):
            W_O, b_O = (_to_numpy(a) for a in (params.attention.W_O, params.attention.b_O))
            out.append(concat[layer] @ W_O + b_O)  # (batch, n, d_model)
        return np.stack(out)  # (n_layers, batch, n, d_model)

    def attend(self, text: str) -> tuple[list[str], np.ndarray]:
        """(tokens, attentions (n_layers, n_heads, n, n)) of `text`: the interface of the head
        explorer (`viz.explorer.explore(model.attend, sentences)`). A text the model refuses
        (blank, longer than 512 pieces) raises ValueError, which the explorer shows as a message."""
        cache = self.run(text)
        return cache.tokens[0], cache.attention[:, 0]  # (n_layers, n_heads, n, n)


def _to_numpy(a) -> np.ndarray:
    """A weight as a NumPy array (the torch backend holds tensors, maybe on a GPU)."""
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


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


def load_bert(path, backend: str = "numpy", dtype="float32", *, device=None) -> Bert:
    """The BERT checkpoint in the folder `path`, offline, on the course's attention.

    path: a Hugging Face folder (config.json with model_type "bert"; model.safetensors or
    pytorch_model.bin; tokenizer.json or vocab.txt, cased or uncased per tokenizer_config.json);
    backend: "numpy" (np_attention) or "torch" (torch_attention; `device` e.g. "cuda");
    dtype: float32 (as most checkpoints are stored) or float64 (for exact comparisons).
    A folder of another kind (RoBERTa, GPT-2 ...) or without weights or tokenizer is refused with
    an error naming what is missing or unsupported.
    """
    return Bert.from_folder(path, backend, dtype, device=device)


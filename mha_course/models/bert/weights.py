"""A BERT checkpoint's weights, read with `safetensors` (or torch's safe loader for
pytorch_model.bin) and laid out per head as the course writes them.

The checkpoint stores Hugging Face's fused `nn.Linear` weights, W (d_out, d_in), applied as
y = x W^T + b. The course computes y = x W + b with W (d_in, d_out), and keeps attention per head:

    W_Q[i] = W_q[i*d_k:(i+1)*d_k, :]^T   (d_model, d_k): head i owns output rows i*d_k:(i+1)*d_k
    b_Q[i] = b_q[i*d_k:(i+1)*d_k]         (d_k,)
    W_O    = W_o^T                        (n_heads * d_v, d_model): rows i*d_v:(i+1)*d_v read head i

Tensor names are BertModel's; those of a BertFor... head model ("bert." first) and the old
LayerNorm names (gamma, beta) are read too. The pooler and any task head are left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file

from mha_course.models.bert.folder import BertFolder, inspect_folder
from mha_course.params import MHAParams

__all__ = ["BertConfig", "LayerParams", "BertParams", "load_config", "load_state_dict",
           "load_params", "per_head_attention"]

SUPPORTED_ACTIVATIONS = ("gelu",)  # BERT's exact GELU (erf); "gelu_new" etc. are another function


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
    def from_dict(cls, c: dict, where: str = "config.json") -> "BertConfig":
        """The numbers of a config.json dict; ValueError naming what is unsupported or missing."""
        unsupported = {key: c.get(key, default) for key, default, ok in (
            ("hidden_act", "gelu", SUPPORTED_ACTIVATIONS),
            ("position_embedding_type", "absolute", ("absolute",)),
            ("is_decoder", False, (False,)),
            ("add_cross_attention", False, (False,))) if c.get(key, default) not in ok}
        if unsupported:
            raise ValueError(f"{where}: only an encoder with the exact GELU and absolute "
                             f"positions (BERT's) is supported; got {unsupported}")
        names = {"vocab_size": "vocab_size", "d_model": "hidden_size",
                 "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
                 "d_ff": "intermediate_size", "max_positions": "max_position_embeddings",
                 "n_token_types": "type_vocab_size", "layer_norm_eps": "layer_norm_eps"}
        missing = [key for key in names.values() if key not in c]
        if missing:
            raise ValueError(f"{where} lacks {missing}, which a BERT config has")
        config = cls(**{field: c[key] for field, key in names.items()})
        if config.d_model % config.n_heads:
            raise ValueError(f"{where}: hidden_size {config.d_model} must be a multiple of "
                             f"num_attention_heads {config.n_heads}")
        return replace(config, layer_norm_eps=float(config.layer_norm_eps))

    @classmethod
    def from_json(cls, path: Path) -> "BertConfig":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), str(path))


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


def load_config(path) -> BertConfig:
    """The BertConfig of the BERT folder `path` (checked by `folder.inspect_folder`)."""
    folder = inspect_folder(path)
    return BertConfig.from_dict(folder.config, str(folder.path / "config.json"))


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


def _read(file: Path) -> dict:
    """One weights file as {name: tensor}: safetensors, or torch's weights-only unpickler."""
    try:
        if file.suffix == ".safetensors":
            return load_file(str(file))
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors and torch raise many kinds: say which file failed
        raise ValueError(f"{file} could not be read as "
                         f"{'safetensors' if file.suffix == '.safetensors' else 'a state dict'} "
                         f"(torch.load(..., weights_only=True) for .bin): {type(e).__name__}: "
                         f"{e}") from e
    if not isinstance(state, dict):
        raise ValueError(f"{file} must hold a state dict (name -> tensor); "
                         f"got {type(state).__name__}")
    return state


def _canonical(name: str) -> str:
    """BertModel's name of a tensor: no "bert." prefix (BertFor... models), LayerNorm.weight and
    .bias for the old .gamma and .beta."""
    name = name.removeprefix("bert.")
    if ".LayerNorm." in name:
        name = name.replace(".LayerNorm.gamma", ".LayerNorm.weight").replace(
            ".LayerNorm.beta", ".LayerNorm.bias")
    return name


def load_state_dict(folder: BertFolder) -> dict:
    """{BertModel tensor name: float NumPy array} from the folder's weights (shards included)."""
    files = [folder.weights]
    if folder.weights.name.endswith(".index.json"):
        weight_map = json.loads(folder.weights.read_text(encoding="utf-8")).get("weight_map", {})
        files = [folder.path / f for f in dict.fromkeys(weight_map.values())]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{folder.weights} lists shards that are missing: {missing}")
    out = {}
    for file in files:
        for name, tensor in _read(file).items():
            if tensor.is_floating_point():  # leaves out integer buffers (position_ids)
                out[_canonical(name)] = tensor.detach().to(torch.float32 if tensor.dtype in (
                    torch.float16, torch.bfloat16) else tensor.dtype).numpy()
    return out


def _check_tensors(t: dict, config: BertConfig, where: Path) -> None:
    """Every tensor the forward pass reads is there, with the config's shapes."""
    c = config
    wanted = {"embeddings.word_embeddings.weight": (c.vocab_size, c.d_model),
              "embeddings.position_embeddings.weight": (c.max_positions, c.d_model),
              "embeddings.token_type_embeddings.weight": (c.n_token_types, c.d_model)}
    for i in range(c.n_layers):
        wanted[f"encoder.layer.{i}.attention.self.query.weight"] = (c.d_model, c.d_model)
        wanted[f"encoder.layer.{i}.intermediate.dense.weight"] = (c.d_ff, c.d_model)
        wanted[f"encoder.layer.{i}.output.dense.weight"] = (c.d_model, c.d_ff)
    missing = [name for name in wanted if name not in t]
    if missing:
        sample = sorted(t)[:4]
        raise ValueError(f"{where} lacks {len(missing)} BERT tensors, e.g. {missing[:3]} (it holds "
                         f"{len(t)} tensors such as {sample}): is it a BERT checkpoint?")
    wrong = {name: (t[name].shape, shape) for name, shape in wanted.items()
             if t[name].shape != shape}
    if wrong:
        raise ValueError(f"{where}: tensor shapes do not match config.json (found, expected): "
                         f"{dict(list(wrong.items())[:3])}")


def load_params(path, dtype=np.float32) -> tuple[BertConfig, BertParams]:
    """Config and per-head NumPy weights of the BERT folder `path`, cast to `dtype`.
    The pooler (unused by sentence embeddings and by this course) is left out."""
    folder = inspect_folder(path)
    config = BertConfig.from_dict(folder.config, str(folder.path / "config.json"))
    t = load_state_dict(folder)
    _check_tensors(t, config, folder.weights)
    params = BertParams(
        word_embeddings=t["embeddings.word_embeddings.weight"],
        position_embeddings=t["embeddings.position_embeddings.weight"],
        token_type_embeddings=t["embeddings.token_type_embeddings.weight"],
        ln_emb_gamma=t["embeddings.LayerNorm.weight"], ln_emb_beta=t["embeddings.LayerNorm.bias"],
        layers=[_layer(t, i, config.n_heads) for i in range(config.n_layers)],
    )
    # a contiguous copy in the requested dtype: transposed views would slow every matmul down
    return config, params.map(lambda a: np.ascontiguousarray(a, dtype=dtype))

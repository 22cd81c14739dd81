"""A BERT encoder forward pass in NumPy, built on the course's `np_attention.multi_head_attention`.

    x_0 = LN(E_word[ids] + E_pos[0..n-1] + E_type[type_ids])
    for each layer (post-LN, as in BERT):
        a = MultiHead(x, x)                       (12 heads, biases, weights and Z_i kept)
        x = LN(x + a)
        x = LN(x + GELU(x W_in + b_in) W_out + b_out)

`torch_bert` mirrors this module name for name. The arrays keep the dtype of the weights
(float32 or float64): every constant below is a Python float, which NumPy does not promote.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy.special import erf

from mha_course.models.bert.weights import BertParams, LayerParams
from mha_course.np_attention import multi_head_attention
from mha_course.params import check_head_gates

__all__ = ["EncoderOutput", "layer_norm", "gelu", "embed", "encoder_layer", "encode"]


class EncoderOutput(NamedTuple):
    """What the encoder returns, every layer stacked along a first axis: hidden_states, the
    embeddings then each layer's output; attentions, each layer's A_i; heads, each layer's Z_i."""

    hidden_states: np.ndarray  # (n_layers + 1, ..., n, d_model): the embeddings, then each layer
    attentions: np.ndarray  # (n_layers, ..., n_heads, n, n)
    heads: np.ndarray  # (n_layers, ..., n_heads, n, d_v): the per-head outputs Z_i


def layer_norm(x, gamma, beta, eps: float) -> np.ndarray:
    """LN(x) = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis (biased variance)."""
    centred = x - x.mean(axis=-1, keepdims=True)  # (..., d_model)
    var = (centred * centred).mean(axis=-1, keepdims=True)  # (..., 1)
    return centred / np.sqrt(var + eps) * gamma + beta


def gelu(x) -> np.ndarray:
    """The exact GELU of BERT: x Phi(x) = x/2 (1 + erf(x / sqrt 2)), not the tanh approximation."""
    return 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))


def embed(p: BertParams, input_ids, token_type_ids, eps: float) -> np.ndarray:
    """x_0 = LN(word + position + token type embeddings): ids (..., n) -> (..., n, d_model)."""
    n = input_ids.shape[-1]
    x = p.word_embeddings[input_ids] + p.token_type_embeddings[token_type_ids]  # (..., n, d_model)
    x += p.position_embeddings[:n]  # (n, d_model) broadcasts over the batch
    return layer_norm(x, p.ln_emb_gamma, p.ln_emb_beta, eps)


def encoder_layer(x, p: LayerParams, mask, eps: float, head_gates=None):
    """One post-LN layer: x (..., n, d_model) -> (x', MHAOutput of its attention);
    head_gates (n_heads,) or (..., n_heads) scale each head's Z_i before W^O (None: all 1)."""
    att = multi_head_attention(x, x, p.attention, mask, head_gates)  # out (..., n, d_model)
    x = layer_norm(x + att.out, p.ln_attn_gamma, p.ln_attn_beta, eps)
    hidden = gelu(x @ p.W_in + p.b_in)  # (..., n, d_ff)
    x = layer_norm(x + hidden @ p.W_out + p.b_out, p.ln_ffn_gamma, p.ln_ffn_beta, eps)
    return x, att


def encode(p: BertParams, input_ids, token_type_ids, eps: float, mask=None,
           head_gates=None) -> EncoderOutput:
    """The whole encoder on input_ids, token_type_ids (..., n) (integers; int64 tensors in
    torch); mask None or boolean, broadcastable to (..., n, n), True = may attend (a padding
    mask for a batch); head_gates None or (n_layers, n_heads) / (n_layers, ..., n_heads): layer
    l's gates go to its attention (see multi_head_attention). Differentiable in torch too: gates
    with requires_grad=True give dL/dxi by autograd (wrap a call in torch.no_grad() to skip it)."""
    check_head_gates(head_gates, len(p.layers), p.layers[0].attention.n_heads,
                     tuple(input_ids.shape[:-1]))
    x = embed(p, input_ids, token_type_ids, eps)  # (..., n, d_model)
    hidden, weights, heads = [x], [], []
    for index, layer in enumerate(p.layers):
        gates = None if head_gates is None else head_gates[index]  # (n_heads,) or (..., n_heads)
        x, att = encoder_layer(x, layer, mask, eps, gates)
        hidden.append(x)
        weights.append(att.weights)
        heads.append(att.heads)
    return EncoderOutput(np.stack(hidden), np.stack(weights), np.stack(heads))

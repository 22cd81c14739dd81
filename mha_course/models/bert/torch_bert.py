"""The BERT encoder forward pass in PyTorch, name for name with `np_bert` (same signatures, same
docstrings; tests/test_mirror.py holds them to it), on the course's
`torch_attention.multi_head_attention`. Runs on the device and dtype of the weights, and is
differentiable: nothing here switches autograd off, so gates or weights that require grad get
gradients (wrap inference in torch.no_grad())."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from mha_course.models.bert.weights import BertParams, LayerParams
from mha_course.params import check_head_gates
from mha_course.torch_attention import multi_head_attention

__all__ = ["EncoderOutput", "layer_norm", "gelu", "embed", "encoder_layer", "encode"]


class EncoderOutput(NamedTuple):
    """What the encoder returns, every layer stacked along a first axis: hidden_states, the
    embeddings then each layer's output; attentions, each layer's A_i; heads, each layer's Z_i."""

    hidden_states: torch.Tensor  # (n_layers + 1, ..., n, d_model): the embeddings, then each layer
    attentions: torch.Tensor  # (n_layers, ..., n_heads, n, n)
    heads: torch.Tensor  # (n_layers, ..., n_heads, n, d_v): the per-head outputs Z_i


def layer_norm(x, gamma, beta, eps: float) -> torch.Tensor:
    """LN(x) = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis (biased variance)."""
    centred = x - x.mean(dim=-1, keepdim=True)  # (..., d_model)
    var = (centred * centred).mean(dim=-1, keepdim=True)  # (..., 1)
    return centred / torch.sqrt(var + eps) * gamma + beta


def gelu(x) -> torch.Tensor:
    """The exact GELU of BERT: x Phi(x) = x/2 (1 + erf(x / sqrt 2)), not the tanh approximation."""
    return 0.5 * x * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))


def embed(p: BertParams, input_ids, token_type_ids, eps: float) -> torch.Tensor:
    """x_0 = LN(word + position + token type embeddings): ids (..., n) -> (..., n, d_model)."""
    n = input_ids.shape[-1]
    x = p.word_embeddings[input_ids] + p.token_type_embeddings[token_type_ids]  # (..., n, d_model)
    x = x + p.position_embeddings[:n]  # (n, d_model) broadcasts over the batch
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
    return EncoderOutput(torch.stack(hidden), torch.stack(weights), torch.stack(heads))

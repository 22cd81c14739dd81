"""The toy Transformer: a small encoder that learns to denoise the toy language.

The attention in every layer is the course's own `torch_attention.MultiHeadAttention`, so the
weights W_Q[i], W_K[i], W_V[i] of head i are the ones the earlier notebooks built by hand.

What it is trained to predict: the clean sentence from a corrupted one (denoising, the main loss),
plus two small read-outs from the last layer, added so that two of the literature's heads have a
reason to exist in a model this small: every word names its left neighbour's lemma
(`neighbour_loss`, a reason for a local head) and its sentence's closing delimiter
(`closer_loss`, a reason for a delimiter head). They are output objectives: no loss ever looks
at an attention weight, and no mask goes beyond padding. The roles that the heads take on are
measured afterwards, on clean sentences, by `mha_course.analysis.heads`;
`python -m mha_course train-toy-ablation` trains the recipe without the read-outs (notebook 04
shows what changes).

    x_0 = E[token] + P[position]
    x <- LN(x + MHA(x))          (post-LN block, once per layer, as in BERT)
    x <- LN(x + FFN(x))
    logits = LN(x) E^T           (output embedding tied to the input embedding)

`ToyConfig(post_ln=False)` gives the pre-LN block, x <- x + MHA(LN(x)), x <- x + FFN(LN(x)).
In research/toy_lab_log.md (session 4), with pre-LN and neither the three registers nor the
closer read-out, the best delimiter head stayed below 0.7 in 20 of 21 runs (0.23-0.68; the
exception, 3 layers x 4 heads, reached 0.73 in one seed). Each of the three
changes alone gives a delimiter head >= 0.7 in some seeds only (post-LN 3 of 5, the closer
read-out 2 of 5, three registers 2 of 5); together, with the lemma neighbour target, it reaches
0.85-1.00 in all five seeds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mha_course.models import toy_language as lang
from mha_course.models.toy_model.config import ToyConfig
from mha_course.torch_attention import MultiHeadAttention, padding_mask

__all__ = ["ToyOutput", "ToyTransformer", "Block"]


class ToyOutput(NamedTuple):
    logits: torch.Tensor  # (batch, n, vocab_size)
    weights: torch.Tensor  # (n_layers, batch, n_heads, n, n)
    heads: torch.Tensor  # (n_layers, batch, n_heads, n, d_v), each head's output Z_i
    final: torch.Tensor  # (batch, n, d_model), LN of the last residual stream


class Block(nn.Module):
    """One encoder layer. Post-LN: LN(x + MHA(x)), then LN(x + FFN(x)); pre-LN: x + MHA(LN(x)),
    then x + FFN(LN(x))."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.attn = MultiHeadAttention(config.d_model, config.n_heads, d_k=config.d_k,
                                       d_v=config.d_k, bias=True)
        self.ln_ffn = nn.LayerNorm(config.d_model)
        self.ffn = nn.Sequential(nn.Linear(config.d_model, config.d_ff), nn.GELU(),
                                 nn.Linear(config.d_ff, config.d_model))
        self.post_ln = config.post_ln

    def forward(self, x, mask, head_gates=None):
        """head_gates: None, or xi (n_heads,) / (batch, n_heads) scaling each Z_i before W^O."""
        if self.post_ln:
            a = self.attn(x, mask=mask, head_gates=head_gates)  # out (batch, n, d_model)
            x = self.ln_attn(x + a.out)
            x = self.ln_ffn(x + self.ffn(x))
        else:
            a = self.attn(self.ln_attn(x), mask=mask, head_gates=head_gates)  # out (batch, n, d_model)
            x = x + a.out
            x = x + self.ffn(self.ln_ffn(x))
        return x, a.weights, a.heads


class ToyTransformer(nn.Module):
    """Token + learned position embeddings, n_layers post-LN (or pre-LN) blocks, tied output embedding."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_out = nn.LayerNorm(config.d_model)
        if config.neighbour_loss > 0:  # a second read-out: what stands to my left?
            n_out = len(lang.POS_TAGS) if config.neighbour_target == "pos" else config.d_model
            self.neighbour_out = nn.Linear(config.d_model, n_out)
        if config.closer_loss > 0:  # a third read-out: how does my sentence end ('.', '?', '!')?
            self.closer_out = nn.Linear(config.d_model, len(lang.CLOSERS))
        for emb in (self.tok_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None,
                head_gates=None) -> ToyOutput:
        """ids (batch, n); lengths (batch,) masks the padding keys (None: no padding);
        head_gates: None (all 1), or xi (n_layers, n_heads) / (n_layers, batch, n_heads), one
        multiplicative gate per head on Z_i before W^O (0 removes the head; a tensor that
        requires grad gives dL/dxi)."""
        batch, n = ids.shape
        if n > self.config.max_len:
            raise ValueError(f"sequence of {n} tokens is longer than max_len={self.config.max_len}")
        gate_shape = None if head_gates is None else tuple(np.shape(head_gates))
        if gate_shape is not None and (len(gate_shape) < 2 or gate_shape[0] != self.config.n_layers):
            raise ValueError(f"head_gates must be (n_layers, n_heads) = ({self.config.n_layers}, "
                             f"{self.config.n_heads}) or (n_layers, batch, n_heads); got shape "
                             f"{gate_shape}")
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(n, device=ids.device))  # (batch, n, d_model)
        mask = None if lengths is None else padding_mask(lengths, n, device=ids.device)  # (batch, 1, n)
        weights, heads = [], []
        for layer, block in enumerate(self.blocks):
            gates = None if head_gates is None else head_gates[layer]  # (n_heads,) or (batch, n_heads)
            x, A, Z = block(x, mask, gates)  # A (batch, n_heads, n, n), Z (batch, n_heads, n, d_v)
            weights.append(A)
            heads.append(Z)
        final = self.ln_out(x)  # (batch, n, d_model)
        logits = final @ self.tok_emb.weight.T  # (batch, n, vocab_size)
        return ToyOutput(logits, torch.stack(weights), torch.stack(heads), final)

    @torch.no_grad()
    def attention(self, sentence) -> np.ndarray:
        """Attention weights over sentence.tokens (a Sentence or a token list):
        (n_layers, n_heads, n, n)."""
        tokens = sentence.tokens if hasattr(sentence, "tokens") else list(sentence)
        ids = torch.tensor([lang.encode(tokens)])  # (1, n)
        return self(ids).weights[:, 0].numpy()  # (n_layers, n_heads, n, n)

    @torch.no_grad()
    def attentions(self, sentences, batch_size: int = 256) -> list[np.ndarray]:
        """attention() for many sentences at once, each (n_layers, n_heads, n_s, n_s)."""
        out = []
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start:start + batch_size]
            ids, lengths = lang.pad_batch(chunk)
            W = self(torch.from_numpy(ids), torch.from_numpy(lengths)).weights.numpy()
            out += [W[:, b, :, :n, :n] for b, n in enumerate(lengths)]
        return out

"""A causal attention-only Transformer, the smallest model in which induction heads form.

    x_0 = W_E[token] + W_pos[position]                     (batch, n, d_model)
    x_l+1 = x_l + MHA_l(x_l, causal mask)                  per layer, no LayerNorm
    (x_l+1 = x_l+1 + MLP(x_l+1)  only with config.mlp)
    logits = x_L W_U                                       (batch, n, vocab_size)

The attention in every layer is the course's `torch_attention.MultiHeadAttention` with
`torch_attention.causal_mask`: query i sees keys 0 .. i. With no LayerNorm and no MLP every
head's circuits are plain matrix products that `analysis.circuits` reads from `weights()`:
QK = W_E W_Q W_K^T W_E^T, OV = W_E W_V W_O W_U (Elhage et al. 2021). Without LayerNorm the
recipe trains as well (docs/design/induction.md), so the circuits stay exact.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mha_course.models.cache import Cache
from mha_course.models.induction.config import InductionConfig
from mha_course.params import check_head_gates
from mha_course.torch_attention import MultiHeadAttention, causal_mask

__all__ = ["AttnOnlyTransformer", "InductionOutput"]


class InductionOutput(NamedTuple):
    logits: torch.Tensor  # (batch, n, vocab_size)
    weights: torch.Tensor  # (n_layers, batch, n_heads, n, n)
    heads: torch.Tensor  # (n_layers, batch, n_heads, n, d_head), each head's output Z_i
    attn_in: torch.Tensor  # (n_layers, batch, n, d_model), what each attention layer read
    attn_out: torch.Tensor  # (n_layers, batch, n, d_model), what it added (gates applied)
    residual: torch.Tensor  # (n_layers + 1, batch, n, d_model): embeddings, each layer's output


class AttnOnlyTransformer(nn.Module):
    """Token + learned positional embeddings, n_layers causal attention layers added to the
    residual stream (an MLP after each with config.mlp), unembedding W_U. `forward` for training
    (tensors), `run` for analysis (a `Cache`), `weights` for the circuits (NumPy arrays)."""

    def __init__(self, config: InductionConfig):
        super().__init__()
        if not isinstance(config, InductionConfig):
            raise TypeError(f"config must be an InductionConfig; got {type(config).__name__}")
        self.config = config
        d = config.d_model
        self.W_E = nn.Parameter(torch.randn(config.vocab_size, d) / np.sqrt(d))
        self.W_pos = nn.Parameter(torch.randn(config.n_ctx, d) / np.sqrt(d))
        self.attn = nn.ModuleList(
            MultiHeadAttention(d, config.n_heads, d_k=config.d_head, d_v=config.d_head)
            for _ in range(config.n_layers))
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(d, config.d_mlp), nn.GELU(), nn.Linear(config.d_mlp, d))
            for _ in range(config.n_layers if config.mlp else 0))
        self.W_U = nn.Parameter(torch.randn(d, config.vocab_size) / np.sqrt(d))

    def forward(self, ids: torch.Tensor, head_gates=None) -> InductionOutput:
        """ids (batch, n) token ids, n <= n_ctx; head_gates: None (all 1), or xi
        (n_layers, n_heads) / (n_layers, batch, n_heads), one gate per head on Z_i before W^O
        (0 removes the head)."""
        if ids.ndim != 2 or ids.dtype != torch.int64:
            raise ValueError(f"ids must be (batch, n) int64; got {tuple(ids.shape)} {ids.dtype}")
        batch, n = ids.shape
        if not 1 <= n <= self.config.n_ctx:
            raise ValueError(f"sequences must have 1..n_ctx={self.config.n_ctx} tokens; got {n}")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ValueError(f"token ids must be in 0..{self.config.vocab_size - 1}; got "
                             f"{int(ids.min())}..{int(ids.max())}")
        check_head_gates(head_gates, self.config.n_layers, self.config.n_heads, (batch,))
        mask = causal_mask(n, device=ids.device)  # (n, n): query i sees keys 0..i
        x = self.W_E[ids] + self.W_pos[:n]  # (batch, n, d_model)
        residual, weights, heads, attn_in, attn_out = [x], [], [], [], []
        for layer, attn in enumerate(self.attn):
            gates = None if head_gates is None else head_gates[layer]  # (n_heads,) or (batch, h)
            a = attn(x, mask=mask, head_gates=gates)  # out (batch, n, d_model)
            attn_in.append(x)
            x = x + a.out  # (batch, n, d_model)
            if self.config.mlp:
                x = x + self.mlps[layer](x)  # (batch, n, d_model)
            residual.append(x)
            weights.append(a.weights)
            heads.append(a.heads)
            attn_out.append(a.out)
        logits = x @ self.W_U  # (batch, n, vocab_size)
        return InductionOutput(logits, torch.stack(weights), torch.stack(heads),
                               torch.stack(attn_in), torch.stack(attn_out), torch.stack(residual))

    @torch.no_grad()
    def run(self, tokens, head_gates=None) -> Cache:
        """The model on a batch of sequences -> `Cache` (NumPy float32; see models/cache.py).

        tokens: (batch, n) token ids (an array, a tensor or a list of equal-length lists);
        head_gates as in `forward`. Runs in eval mode; the Cache's tokens are the ids as
        strings ("0" is BOS), every sequence is n long (no padding)."""
        ids = _ids(tokens)  # (batch, n)
        gates = None if head_gates is None else torch.as_tensor(np.asarray(head_gates),
                                                                dtype=torch.float32)
        was_training = self.training
        self.eval()
        try:
            out = self(ids, gates)
        finally:
            self.train(was_training)
        batch, n = ids.shape
        return Cache(tokens=[[str(t) for t in row] for row in ids.tolist()],
                     lengths=np.full(batch, n), attention=out.weights.numpy(),
                     z=out.heads.numpy(), attn_in=out.attn_in.numpy(),
                     attn_out=out.attn_out.numpy(), residual=out.residual.numpy(),
                     head_gates=None if gates is None else gates.numpy())

    def attention(self, tokens) -> np.ndarray:
        """(n_layers, n_heads, n, n): the attention weights on one sequence of n token ids."""
        row = np.asarray(tokens)
        if row.ndim != 1:
            raise ValueError(f"attention takes one sequence (n,) of token ids; got shape "
                             f"{row.shape} (use run() for a batch)")
        return self.run(row[None]).attention[:, 0]  # (n_layers, n_heads, n, n)

    def weights(self) -> dict:
        """The weights as NumPy float32 arrays, in the shapes `analysis.circuits` takes:
        W_E (vocab_size, d_model), W_pos (n_ctx, d_model), W_U (d_model, vocab_size), and per
        layer and head W_Q, W_K, W_V (n_layers, n_heads, d_model, d_head) and
        W_O (n_layers, n_heads, d_head, d_model): head i's rows W^O[i*d_head:(i+1)*d_head]."""
        c = self.config

        def stacked(name):
            return np.stack([getattr(a, name).detach().cpu().numpy() for a in self.attn])

        W_O = stacked("W_O")  # (n_layers, n_heads * d_head, d_model)
        return {"W_E": self.W_E.detach().cpu().numpy().copy(),
                "W_pos": self.W_pos.detach().cpu().numpy().copy(),
                "W_U": self.W_U.detach().cpu().numpy().copy(),
                "W_Q": stacked("W_Q"), "W_K": stacked("W_K"),
                "W_V": stacked("W_V"),  # each (n_layers, n_heads, d_model, d_head)
                "W_O": W_O.reshape(c.n_layers, c.n_heads, c.d_head, c.d_model)}


def _ids(tokens) -> torch.Tensor:
    """(batch, n) int64 tensor of token ids from an array, a tensor or a list of lists."""
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.detach().cpu().numpy()
    try:
        array = np.asarray(tokens)
    except ValueError as error:  # ragged lists
        raise ValueError(f"tokens must be (batch, n) token ids, every sequence as long; "
                         f"{error}") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"tokens must be (batch, n) integer token ids; got shape {array.shape}, "
                         f"dtype {array.dtype} (one sequence: tokens[None], or attention())")
    return torch.from_numpy(array.astype(np.int64))

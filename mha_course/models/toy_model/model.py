"""The toy Transformer: a small encoder that learns to denoise the toy language.

The attention in every layer is the course's own `torch_attention.MultiHeadAttention`, so the
weights W_Q[i], W_K[i], W_V[i] of head i are the ones the earlier notebooks built by hand.

What it is trained to predict: the clean sentence from a corrupted one (denoising, the main loss),
plus four small read-outs from the last layer, added so that the literature's heads have a
reason to exist in a model this small: every word names its left neighbour's lemma
(`neighbour_loss`, a reason for a local head), its sentence's closing delimiter (`closer_loss`,
a reason for a delimiter head) and its sentence's world (`world_loss`: after a sentence-wide
world flip only the names tell it, a reason to look at rare words), and every verb names its
subject's lemma (`subject_loss`, a reason for a verb -> subject head that no shortcut through a
neighbour can replace). They are output objectives: no loss ever looks at an attention weight,
and no mask goes beyond padding (training packs sentences several to a row, each masked to
itself). The roles that the heads take on are
measured afterwards, on clean sentences, by `mha_course.analysis.heads`;
`python -m mha_course train-toy-ablation` trains the recipe without the read-outs (notebook 04
shows what changes).

    x_0 = E[token] + P[position]
    x <- LN(x + MHA(x))          (post-LN block, once per layer, as in BERT)
    x <- LN(x + FFN(x))
    logits = LN(x) E^T           (output embedding tied to the input embedding)

`ToyConfig(post_ln=False)` gives the pre-LN block, x <- x + MHA(LN(x)), x <- x + FFN(LN(x)).
Why post-LN (with three registers and the closer read-out: the delimiter head), measured over
seeds, with the command that trains each table again: docs/design/toy_language.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mha_course.models import toy_language as lang
from mha_course.models.cache import Cache, concatenate, zero_padding
from mha_course.models.toy_model.config import ToyConfig
from mha_course.params import check_head_gates
from mha_course.torch_attention import MultiHeadAttention, padding_mask

__all__ = ["ToyOutput", "ToyTransformer", "Block", "BlockOutput"]


class ToyOutput(NamedTuple):
    logits: torch.Tensor  # (batch, n, vocab_size)
    weights: torch.Tensor  # (n_layers, batch, n_heads, n, n)
    heads: torch.Tensor  # (n_layers, batch, n_heads, n, d_v), each head's output Z_i
    final: torch.Tensor  # (batch, n, d_model), LN of the last residual stream
    attn_in: torch.Tensor  # (n_layers, batch, n, d_model), what each attention layer read
    attn_out: torch.Tensor  # (n_layers, batch, n, d_model), what it added (gates applied)
    residual: torch.Tensor  # (n_layers + 1, batch, n, d_model): embeddings, each block's output


class BlockOutput(NamedTuple):
    x: torch.Tensor  # (batch, n, d_model): the residual stream after the block
    weights: torch.Tensor  # (batch, n_heads, n, n)
    heads: torch.Tensor  # (batch, n_heads, n, d_v): Z_i, before the gates
    attn_in: torch.Tensor  # (batch, n, d_model): the attention's input (x; LN(x) if pre-LN)
    attn_out: torch.Tensor  # (batch, n, d_model): Concat(xi_i Z_i) W^O + b^O


class Block(nn.Module):
    """One encoder layer. Post-LN: LN(x + MHA(x)), then LN(x + FFN(x)); pre-LN: x + MHA(LN(x)),
    then x + FFN(LN(x))."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        d_v = config.d_k if config.d_v is None else config.d_v  # None: as wide as Q and K
        self.attn = MultiHeadAttention(config.d_model, config.n_heads, d_k=config.d_k, d_v=d_v,
                                       bias=True)
        self.ln_ffn = nn.LayerNorm(config.d_model)
        self.ffn = nn.Sequential(nn.Linear(config.d_model, config.d_ff), nn.GELU(),
                                 nn.Linear(config.d_ff, config.d_model))
        self.post_ln = config.post_ln

    def forward(self, x, mask, head_gates=None) -> BlockOutput:
        """x (batch, n, d_model) -> BlockOutput: the new stream, the attention weights and Z_i,
        and the attention layer's input and output. head_gates: None, or xi (n_heads,) /
        (batch, n_heads) scaling each Z_i before W^O."""
        attn_in = self.ln_attn(x) if not self.post_ln else x  # (batch, n, d_model)
        a = self.attn(attn_in, mask=mask, head_gates=head_gates)  # out (batch, n, d_model)
        if self.post_ln:
            x = self.ln_attn(x + a.out)
            x = self.ln_ffn(x + self.ffn(x))
        else:
            x = x + a.out
            x = x + self.ffn(self.ln_ffn(x))
        return BlockOutput(x, a.weights, a.heads, attn_in, a.out)


class ToyTransformer(nn.Module):
    """Token + learned position embeddings, n_layers post-LN (or pre-LN) blocks, tied output
    embedding. `forward` for training (tensors), `run` for analysis (a `Cache` of arrays)."""

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
        if config.world_loss > 0:  # a fourth: does my sentence happen on land or at sea?
            self.world_out = nn.Linear(config.d_model, len(lang.WORLDS))
        if config.subject_loss > 0:  # a fifth, at verbs: what is my subject (its lemma)?
            self.subject_out = nn.Linear(config.d_model, config.d_model)
        if config.early_neighbour > 0:  # the same questions, asked after the first layer
            self.early_neighbour_out = nn.Linear(config.d_model, config.d_model)
        if config.early_closer > 0:
            self.early_closer_out = nn.Linear(config.d_model, len(lang.CLOSERS))
        if config.right_neighbour > 0:  # and what stands to my right?
            self.right_neighbour_out = nn.Linear(config.d_model, config.d_model)
        for emb in (self.tok_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None,
                head_gates=None) -> ToyOutput:
        """ids (batch, n); lengths (batch,) masks the padding keys (None: no padding);
        head_gates: None (all 1), or xi (n_layers, n_heads) / (n_layers, batch, n_heads), one
        multiplicative gate per head on Z_i before W^O (0 removes the head; a tensor that
        requires grad gives dL/dxi)."""
        outs, residual = self._blocks(ids, lengths, head_gates)
        final = self.ln_out(residual[-1])  # (batch, n, d_model)
        logits = final @ self.tok_emb.weight.T  # (batch, n, vocab_size)
        per_layer = {name: torch.stack([getattr(o, name) for o in outs])  # (n_layers, batch, ...)
                     for name in ("weights", "heads", "attn_in", "attn_out")}
        return ToyOutput(logits, per_layer["weights"], per_layer["heads"], final,
                         per_layer["attn_in"], per_layer["attn_out"], torch.stack(residual))

    def hidden(self, ids: torch.Tensor, lengths: torch.Tensor | None = None,
               positions: torch.Tensor | None = None,
               mask: torch.Tensor | None = None, head_gates=None) -> torch.Tensor:
        """The final stream LN(x) only, (batch, n, d_model): what training reads out. The same
        numbers as `forward(ids, lengths, head_gates=...).final`, without the logits and
        per-layer arrays.

        Training packs several sentences into one row (`training.pack`): then `positions`
        (batch, n) restarts at 0 for each sentence and `mask` (batch, n, n), True = may attend,
        keeps each sentence to itself; `lengths` must then be None. `head_gates` as `forward`
        (training drops heads through it, `ToyConfig.head_dropout`)."""
        return self.streams(ids, lengths, positions, mask, head_gates)[-1]

    def streams(self, ids: torch.Tensor, lengths: torch.Tensor | None = None,
                positions: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                head_gates=None) -> list[torch.Tensor]:
        """The stream after each block, the last one through the final LN: n_layers tensors
        (batch, n, d_model); arguments as `hidden`. `ToyConfig.early_neighbour` and
        `early_closer` read the first."""
        return self.streams_and_weights(ids, lengths, positions, mask, head_gates)[0]

    def streams_and_weights(self, ids: torch.Tensor, lengths: torch.Tensor | None = None,
                            positions: torch.Tensor | None = None,
                            mask: torch.Tensor | None = None,
                            head_gates=None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """`streams`, and each layer's attention weights: n_layers x (batch, n_heads, n, n)
        (`ToyConfig.head_overlap` reads them)."""
        outs, residual = self._blocks(ids, lengths, head_gates, positions, mask)
        streams = [*residual[1:-1], self.ln_out(residual[-1])]  # n_layers x (batch, n, d_model)
        return streams, [o.weights for o in outs]

    def _blocks(self, ids, lengths, head_gates, positions=None,
                mask=None) -> tuple[list[BlockOutput], list[torch.Tensor]]:
        """Embeddings, then every block: (each block's output, the residual stream before the
        first block and after each)."""
        batch, n = ids.shape
        if n > self.config.max_len:
            raise ValueError(f"sequence of {n} tokens is longer than max_len={self.config.max_len}")
        check_head_gates(head_gates, self.config.n_layers, self.config.n_heads, (batch,))
        if mask is not None and lengths is not None:
            raise ValueError("give lengths (padding) or a packed mask (batch, n, n), not both")
        if positions is None:
            positions = torch.arange(n, device=ids.device)  # (n,)
        x = self.tok_emb(ids) + self.pos_emb(positions)  # (batch, n, d_model)
        if mask is None and lengths is not None:
            mask = padding_mask(lengths, n, device=ids.device)  # (batch, 1, n): a real key
        outs = []
        residual = [x]
        for layer, block in enumerate(self.blocks):
            gates = None if head_gates is None else head_gates[layer]  # (n_heads,) or (batch, h)
            outs.append(block(x, mask, gates))
            x = outs[-1].x  # (batch, n, d_model)
            residual.append(x)
        return outs, residual

    @torch.no_grad()
    def run(self, inputs, head_gates=None, batch_size: int = 256) -> Cache:
        """The model on one or many sequences -> `Cache` (NumPy float32; see models/cache.py).

        inputs: a text ("the dog barks ." goes through `toy_language.tokenize`), a list of texts,
        a `toy_language.Sentence`, a list of Sentences, or a list of token lists (each with
        [CLS] and [SEP]). head_gates: None (all 1), (n_layers, n_heads) or
        (n_layers, batch, n_heads), as in `forward`. Runs in eval mode, `batch_size` sequences
        of similar length per forward pass; the Cache is padded to the longest sequence.
        """
        token_lists, sources = _token_lists(inputs)
        batch = len(token_lists)
        check_head_gates(head_gates, self.config.n_layers, self.config.n_heads, (batch,))
        gates = None if head_gates is None else torch.as_tensor(np.asarray(head_gates),
                                                                dtype=torch.float32)
        lengths = np.array([len(t) for t in token_lists])  # (batch,)
        ids = np.zeros((batch, lengths.max()), dtype=np.int64)  # (batch, n), 0 = [PAD]
        for b, tokens in enumerate(token_lists):
            ids[b, :lengths[b]] = lang.encode(tokens)
        order = np.argsort(lengths, kind="stable")  # similar lengths share a batch: less padding
        chunks = []
        was_training = self.training
        self.eval()
        try:
            for start in range(0, batch, batch_size):
                rows = order[start:start + batch_size]
                m = int(lengths[rows].max())
                g = gates if gates is None or gates.ndim == 2 else gates[:, rows]
                out = self(torch.from_numpy(ids[rows, :m]), torch.from_numpy(lengths[rows]), g)
                arrays = {"attention": out.weights, "z": out.heads, "attn_in": out.attn_in,
                          "attn_out": out.attn_out, "residual": out.residual}
                chunks.append(Cache(
                    tokens=[list(token_lists[b]) for b in rows], lengths=lengths[rows],
                    inputs=[sources[b] for b in rows], head_gates=None if g is None else g.numpy(),
                    **zero_padding({k: v.numpy() for k, v in arrays.items()}, lengths[rows])))
        finally:
            self.train(was_training)
        return concatenate(chunks)[np.argsort(order)]  # back in the order of the inputs

    def attention(self, sentence) -> np.ndarray:
        """Attention weights over sentence.tokens (a Sentence or a token list):
        (n_layers, n_heads, n, n)."""
        tokens = sentence.tokens if hasattr(sentence, "tokens") else list(sentence)
        return self.run([tokens]).attention[:, 0]  # (n_layers, n_heads, n, n)

    def attentions(self, sentences, batch_size: int = 256) -> list[np.ndarray]:
        """attention() for many sentences at once, each (n_layers, n_heads, n_s, n_s)."""
        cache = self.run(list(sentences), batch_size=batch_size)
        return [cache.attention_of(b) for b in range(len(cache))]


def _token_lists(inputs) -> tuple[list[list[str]], list]:
    """(token lists, what each came from) for `ToyTransformer.run`'s inputs."""
    if isinstance(inputs, str):
        inputs = [inputs]
    elif hasattr(inputs, "tokens"):  # one Sentence
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)) or len(inputs) == 0:
        raise TypeError("inputs must be a text, a Sentence, or a non-empty list of texts, "
                        f"Sentences or token lists; got {type(inputs).__name__}")
    if all(isinstance(x, str) for x in inputs) and inputs[0] == lang.CLS:
        raise TypeError(f"inputs look like one token list ({inputs[:3]}...): pass a list of "
                        "token lists, run([tokens])")
    token_lists = []
    for k, x in enumerate(inputs):
        if isinstance(x, str):
            token_lists.append(lang.tokenize(x))
        elif hasattr(x, "tokens"):
            token_lists.append(list(x.tokens))
        elif isinstance(x, (list, tuple)) and x and all(isinstance(t, str) for t in x):
            token_lists.append(list(x))
        else:
            raise TypeError(f"inputs[{k}] must be a text, a Sentence or a non-empty token list; "
                            f"got {type(x).__name__}")
    return token_lists, list(inputs)

"""The conflict task and its model: one softmax distribution cannot serve two places at once.

The task ("left neighbour and partner"): a sequence of n = 2 P tokens. Each token carries a tag
and a symbol. The tags come in P matched pairs (A/a, B/b, ...): every tag occurs once, so each
token has exactly one **partner**, the token with the matching tag, at least `min_distance`
positions away. Every token must name two symbols:

- the symbol of its **left neighbour** (position i - 1; the first token has none), and
- the symbol of its **partner**.

    tokens     A3  c5  b1  C0  a7  B2          (tag letter, then symbol)
    left        -   3   5   1   0   7
    partner     7   0   2   5   3   1

The model has no way around attention: embeddings, one multi-head attention layer (the course's
own `torch_attention.MultiHeadAttention`), and two linear read-outs of its output, with no
residual connection and no feed-forward block:

    x = E_tag[tag] + E_sym[symbol] + P[position]        (batch, n, d_model)
    z = MHA(x)                                          (batch, n, d_model)
    left logits = z U_left,  partner logits = z U_partner   (batch, n, n_symbols)

With h heads of size d_k = d_v = d_model / h the model has the same number of parameters for
every h (checked, not assumed). One head computes one distribution per token, so its output is
alpha * v(left) + (1 - alpha) * v(partner) + ...: the same value map applied to both places.

`experiments.several_heads` trains the model with several head counts and compares them.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mha_course.torch_attention import MultiHeadAttention

__all__ = ["IGNORE", "ConflictTask", "ConflictBatch", "make_batch", "token_labels",
           "ConflictOutput", "ConflictModel", "n_parameters"]

IGNORE = -100  # the target where there is nothing to name (the first token's left neighbour)


# ----------------------------------------------------------------------------------------------
# The data


@dataclass(frozen=True)
class ConflictTask:
    """The sequences: n_pairs tag pairs, so n = 2 * n_pairs tokens; symbols 0 .. n_symbols - 1;
    a token and its partner are at least `min_distance` positions apart (2: never neighbours)."""
    n_pairs: int = 6
    n_symbols: int = 8
    min_distance: int = 2

    def __post_init__(self):
        if not (isinstance(self.n_pairs, int) and 2 <= self.n_pairs <= 13):
            raise ValueError(f"n_pairs must be an int from 2 to 13 (one letter per pair); "
                             f"got {self.n_pairs!r}")
        if not (isinstance(self.n_symbols, int) and 2 <= self.n_symbols <= 10):
            raise ValueError(f"n_symbols must be an int from 2 to 10 (one digit per symbol); "
                             f"got {self.n_symbols!r}")
        if not (isinstance(self.min_distance, int) and 1 <= self.min_distance <= self.n_pairs):
            raise ValueError(f"min_distance must be an int from 1 to n_pairs = {self.n_pairs}; "
                             f"got {self.min_distance!r}")

    @property
    def length(self) -> int:
        return 2 * self.n_pairs



# ----------------------------------------------------------------------------------------------
# The data


class ConflictBatch(NamedTuple):
    tags: np.ndarray  # (batch, n) tag ids: 2k and 2k + 1 are the pair k (upper and lower case)
    symbols: np.ndarray  # (batch, n) symbol ids
    partner: np.ndarray  # (batch, n) position of each token's partner
    left_target: np.ndarray  # (batch, n) the left neighbour's symbol, IGNORE at position 0
    partner_target: np.ndarray  # (batch, n) the partner's symbol


def make_batch(task: ConflictTask, batch: int, rng: np.random.Generator) -> ConflictBatch:
    """`batch` random sequences: a random pairing of the positions (partners at least
    task.min_distance apart), tag pair k on pair k of the pairing, uniform random symbols."""
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int; got {batch!r}")
    n = task.length
    kept, have = [], 0
    while have < batch:  # rejection sampling: draw pairings, keep those with no close partners
        perm = rng.permuted(np.tile(np.arange(n), (4 * batch, 1)), axis=1)  # (4 batch, n)
        far = (np.abs(perm[:, 0::2] - perm[:, 1::2]) >= task.min_distance).all(axis=1)
        kept.append(perm[far])
        have += int(far.sum())
    perm = np.concatenate(kept)[:batch]  # (batch, n): positions perm[2k], perm[2k+1] are pair k
    rows = np.arange(batch)[:, None]  # (batch, 1)
    tags = np.empty((batch, n), dtype=np.int64)  # (batch, n)
    partner = np.empty((batch, n), dtype=np.int64)  # (batch, n)
    tags[rows, perm[:, 0::2]] = np.arange(0, n, 2)  # upper case: A, B, ...
    tags[rows, perm[:, 1::2]] = np.arange(1, n, 2)  # lower case: a, b, ...
    partner[rows, perm[:, 0::2]] = perm[:, 1::2]
    partner[rows, perm[:, 1::2]] = perm[:, 0::2]
    symbols = rng.integers(0, task.n_symbols, size=(batch, n))  # (batch, n)
    left = np.full((batch, n), IGNORE, dtype=np.int64)  # (batch, n)
    left[:, 1:] = symbols[:, :-1]
    return ConflictBatch(tags, symbols, partner, left, np.take_along_axis(symbols, partner, axis=1))


def token_labels(data: ConflictBatch, index: int = 0) -> list[str]:
    """Sequence `index` as strings: the tag's letter (A/a for pair 0, ...) and the symbol, "A3"."""
    letters = [string.ascii_uppercase[t // 2] if t % 2 == 0 else string.ascii_lowercase[t // 2]
               for t in data.tags[index]]
    return [f"{letter}{symbol}" for letter, symbol in zip(letters, data.symbols[index])]


# ----------------------------------------------------------------------------------------------
# The model


class ConflictOutput(NamedTuple):
    left_logits: torch.Tensor  # (batch, n, n_symbols)
    partner_logits: torch.Tensor  # (batch, n, n_symbols)
    weights: torch.Tensor  # (batch, n_heads, n, n)


class ConflictModel(nn.Module):
    """Embeddings, one multi-head attention layer, two linear read-outs; nothing else."""

    def __init__(self, task: ConflictTask, d_model: int, n_heads: int):
        super().__init__()
        self.task = task
        self.tag_embedding = nn.Embedding(task.length, d_model)  # 2 * n_pairs tags: A, a, B, b, ...
        self.symbol_embedding = nn.Embedding(task.n_symbols, d_model)
        self.position_embedding = nn.Embedding(task.length, d_model)
        self.attention = MultiHeadAttention(d_model, n_heads)  # d_k = d_v = d_model / n_heads
        self.read_left = nn.Linear(d_model, task.n_symbols)
        self.read_partner = nn.Linear(d_model, task.n_symbols)

    @property
    def n_heads(self) -> int:
        return self.attention.n_heads

    def forward(self, tags: torch.Tensor, symbols: torch.Tensor) -> ConflictOutput:
        positions = torch.arange(tags.shape[-1], device=tags.device)  # (n,)
        x = (self.tag_embedding(tags) + self.symbol_embedding(symbols)
             + self.position_embedding(positions))  # (batch, n, d_model)
        attended = self.attention(x)  # out (batch, n, d_model), weights (batch, n_heads, n, n)
        return ConflictOutput(self.read_left(attended.out), self.read_partner(attended.out),
                              attended.weights)

    def run(self, data: ConflictBatch) -> ConflictOutput:
        """The model on a ConflictBatch (NumPy arrays), without gradients."""
        self.eval()
        with torch.no_grad():
            return self(torch.from_numpy(data.tags), torch.from_numpy(data.symbols))


def n_parameters(model: nn.Module) -> int:
    """The number of trained numbers in `model`."""
    return sum(p.numel() for p in model.parameters())

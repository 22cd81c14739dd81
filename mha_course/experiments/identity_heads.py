"""An identity head on demand: a model that has to attend to the token's own position.

An identity head puts its weight on the query's own position. Trained Transformers rarely grow
one, because the residual stream x <- x + MHA(x) already carries every token's own embedding to the
layers above: a head that brought the token to itself would add nothing. Take the residual away
and attention becomes the only road from the input to the output; then, on a task whose answer at
position i needs token i itself, some head has to fetch it.

The task, "name yourself and your left neighbour": a sequence [BOS] x_1 ... x_m [EOS] of random
symbols; at every symbol i, two read-outs name x_i and x_{i-1} ("edge" for the first symbol).

The model: one layer of the course's own attention (`torch_attention.MultiHeadAttention`), a
feed-forward block and the read-outs:

    x = E[token] + P[position]                          (batch, n, d_model)
    q_in = P[position] (positional_queries) or x        (batch, n, d_model)
    a = MHA(queries from q_in, keys and values from x)  (batch, n, d_model)
    h = a            (residual=False)   or   h = x + a  (residual=True)
    h <- h + FFN(LN(h));  logits = W_out LN(h)          (batch, n, n_offsets, n_classes)

Queries from the position alone close a second road: when a query is built from the token, the
token decides where its row of attention looks, and so the weights themselves can carry the token's
identity to the output without any weight on the diagonal. `compare` trains the variants of
`VARIANTS` for several seeds and measures each head's identity score
(`analysis.heads.identity_score`: mean attention on the query's own position).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mha_course.analysis import heads as head_metrics
from mha_course.torch_attention import MultiHeadAttention
from mha_course.viz import palette

__all__ = ["NeighbourConfig", "NeighbourBatch", "make_batch", "NeighbourModel", "train",
           "identity_scores", "VARIANTS", "Run", "compare", "format_runs", "example", "plot_runs"]

IGNORE = -100  # target at [BOS] and [EOS]: no answer there


@dataclass(frozen=True)
class NeighbourConfig:
    """The task's size, the model's shape and the training settings."""
    symbols: int = 16  # V: symbols 0 .. V-1
    length: int = 8  # symbols per sequence, between [BOS] and [EOS]
    offsets: tuple = (0, -1)  # name the symbols at i + offset: 0 = itself, -1 = left neighbour
    residual: bool = False  # the residual connection around attention
    positional_queries: bool = True  # queries from the position alone, keys and values from both
    d_model: int = 32
    n_heads: int = 4
    d_k: int = 8
    d_ff: int = 64
    steps: int = 100
    batch_size: int = 128
    lr: float = 1e-2
    threads: int = 1  # a model this small trains fastest on one thread
    n_eval: int = 512  # held-out sequences for the accuracy and the attention

    def __post_init__(self):
        if self.symbols < 2 or self.length < 2:
            raise ValueError(f"need at least 2 symbols and a length of at least 2; got "
                             f"symbols={self.symbols}, length={self.length}")
        if not self.offsets or any(o not in (-1, 0, 1) for o in self.offsets):
            raise ValueError(f"offsets must be a non-empty tuple of -1 (left), 0 (itself) and 1 "
                             f"(right); got {self.offsets!r}")

    @property
    def n_classes(self) -> int:
        return self.symbols + 1  # the symbols and "edge" (a neighbour beyond the sequence)

    @property
    def vocab(self) -> int:
        return self.symbols + 2  # the symbols, [BOS] and [EOS]


class NeighbourBatch(NamedTuple):
    ids: torch.Tensor  # (batch, n) with n = length + 2: [BOS] x_1 ... x_m [EOS]
    targets: torch.Tensor  # (batch, n, n_offsets), IGNORE at [BOS] and [EOS]


def make_batch(config: NeighbourConfig, batch: int, generator: torch.Generator) -> NeighbourBatch:
    """Random sequences and, at every symbol i, the symbols at i + offset (V = "edge" outside)."""
    V, m = config.symbols, config.length
    symbols = torch.randint(V, (batch, m), generator=generator)  # (batch, m)
    edged = F.pad(symbols, (1, 1), value=V)  # (batch, m + 2): "edge" beyond both ends
    targets = torch.full((batch, m + 2, len(config.offsets)), IGNORE)  # (batch, n, n_offsets)
    for k, offset in enumerate(config.offsets):
        targets[:, 1:-1, k] = edged[:, 1 + offset:m + 1 + offset]  # (batch, m)
    bos, eos = torch.full((batch, 1), V), torch.full((batch, 1), V + 1)
    return NeighbourBatch(torch.cat([bos, symbols, eos], dim=1), targets)  # ids (batch, n)


def tokens(config: NeighbourConfig, ids) -> list[str]:
    """The readable tokens of one sequence of ids."""
    names = {config.symbols: "[BOS]", config.symbols + 1: "[EOS]"}
    return [names.get(int(i), str(int(i))) for i in ids]


class NeighbourModel(nn.Module):
    """Embeddings, one multi-head attention (with or without the residual), FFN, read-outs."""

    def __init__(self, config: NeighbourConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab, config.d_model)
        self.pos_emb = nn.Embedding(config.length + 2, config.d_model)
        self.attn = MultiHeadAttention(config.d_model, config.n_heads, d_k=config.d_k, bias=True)
        self.ln_ffn = nn.LayerNorm(config.d_model)
        self.ffn = nn.Sequential(nn.Linear(config.d_model, config.d_ff), nn.GELU(),
                                 nn.Linear(config.d_ff, config.d_model))
        self.ln_out = nn.LayerNorm(config.d_model)
        self.out = nn.Linear(config.d_model, len(config.offsets) * config.n_classes)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (batch, n) -> logits (batch, n, n_offsets, n_classes) and the attention weights
        (batch, n_heads, n, n)."""
        batch, n = ids.shape
        position = self.pos_emb(torch.arange(n, device=ids.device))  # (n, d_model)
        position = position.expand(batch, n, -1)  # (batch, n, d_model)
        x = self.tok_emb(ids) + position  # (batch, n, d_model)
        queries = position if self.config.positional_queries else x  # (batch, n, d_model)
        a = self.attn(queries, x)  # out (batch, n, d_model)
        h = x + a.out if self.config.residual else a.out  # (batch, n, d_model)
        h = h + self.ffn(self.ln_ffn(h))  # (batch, n, d_model)
        logits = self.out(self.ln_out(h))  # (batch, n, n_offsets * n_classes)
        return logits.view(batch, n, len(self.config.offsets), -1), a.weights


def train(config: NeighbourConfig, seed: int = 0) -> tuple[NeighbourModel, dict]:
    """Train from scratch (Adam, fresh random sequences every step, the rate decaying linearly
    to 0); return the model and a report: held-out accuracy, identity score per head, seconds."""
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = NeighbourModel(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                                     lambda step: 1 - step / config.steps)
        model.train()
        for _ in range(config.steps):
            ids, targets = make_batch(config, config.batch_size, generator)
            logits, _ = model(ids)  # (batch, n, n_offsets, n_classes)
            loss = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        held_out = make_batch(config, config.n_eval, torch.Generator().manual_seed(10_000 + seed))
        scores, accuracy = identity_scores(model, held_out)
    finally:
        torch.set_num_threads(threads)
    return model, {"accuracy": accuracy, "identity": scores,
                   "seconds": time.perf_counter() - start}


class _Sequence(NamedTuple):
    """What the head metrics read from a sentence: its tokens and which are delimiters."""
    tokens: list
    is_delimiter: list


@torch.no_grad()
def identity_scores(model: NeighbourModel, batch: NeighbourBatch) -> tuple[np.ndarray, float]:
    """Each head's identity score (n_heads,), the mean attention on the query's own position over
    the symbol queries ([BOS] and [EOS] count as delimiters), and the share of answers right."""
    model.eval()
    logits, weights = model(batch.ids)  # (batch, n, n_offsets, n_classes), (batch, n_heads, n, n)
    answered = batch.targets != IGNORE  # (batch, n, n_offsets)
    accuracy = float((logits.argmax(-1)[answered] == batch.targets[answered]).float().mean())
    n = batch.ids.shape[1]
    attentions = [w[None].numpy() for w in weights]  # one (1, n_heads, n, n) per sequence
    sequences = [_Sequence(tokens(model.config, ids), [True] + [False] * (n - 2) + [True])
                 for ids in batch.ids]
    return head_metrics.identity_score(attentions, sequences)[0], accuracy  # (n_heads,)


# The variants `compare` trains: the same model and task, one change at a time.
VARIANTS = {
    "with residual": {"residual": True},
    "no residual": {"residual": False},
    "no residual, queries from tokens": {"residual": False, "positional_queries": False},
}


class Run(NamedTuple):
    variant: str
    seed: int
    model: NeighbourModel
    accuracy: float  # share of held-out answers right (both read-outs)
    identity: np.ndarray  # (n_heads,) each head's identity score
    seconds: float

    @property
    def best_head(self) -> int:
        return int(np.argmax(self.identity))

    @property
    def best_identity(self) -> float:
        return float(np.max(self.identity))


def compare(seeds=(0, 1, 2), variants=tuple(VARIANTS), config: NeighbourConfig | None = None
            ) -> list[Run]:
    """Train every variant (names of `VARIANTS`) for every seed; one Run each."""
    config = config or NeighbourConfig()
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    runs = []
    for seed in seeds:
        for name in variants:
            model, report = train(replace(config, **VARIANTS[name]), seed)
            runs.append(Run(name, seed, model, report["accuracy"], report["identity"],
                            report["seconds"]))
    return runs


def format_runs(runs: list[Run]) -> str:
    """A table: one row per variant, the best head's identity score (and accuracy) per seed."""
    seeds = sorted({r.seed for r in runs})
    variants = list(dict.fromkeys(r.variant for r in runs))
    width = max(len(v) for v in variants) + 2
    lines = [f"{'best head identity score (accuracy)':<{width}}"
             + "".join(f"{'seed ' + str(s):>15}" for s in seeds)]
    for variant in variants:
        cells = {r.seed: f"{r.best_identity:.2f} ({r.accuracy:.2f})" for r in runs
                 if r.variant == variant}
        lines.append(f"{variant:<{width}}" + "".join(f"{cells.get(s, '-'):>15}" for s in seeds))
    return "\n".join(lines)


@torch.no_grad()
def example(run: Run, seed: int = 1) -> tuple[list[str], np.ndarray]:
    """One held-out sequence's tokens and the attention of the run's best identity head (n, n)."""
    batch = make_batch(run.model.config, 1, torch.Generator().manual_seed(seed))
    run.model.eval()
    _, weights = run.model(batch.ids)  # (1, n_heads, n, n)
    return tokens(run.model.config, batch.ids[0]), weights[0, run.best_head].numpy()  # (n, n)


def plot_runs(runs: list[Run], reference: float | None = None, ax=None):
    """Each variant's best identity score, one dot per seed; `reference` (e.g. a trained model's
    best identity score) as a dashed line. Returns the Axes."""
    variants = list(dict.fromkeys(r.variant for r in runs))
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    for k, (variant, colour) in enumerate(zip(variants, palette.categorical(len(variants)))):
        values = [r.best_identity for r in runs if r.variant == variant]
        ax.scatter([k] * len(values), values, color=colour, s=40, zorder=3,
                   edgecolors=palette.BLACK, linewidths=0.4)
    if reference is not None:
        ax.axhline(reference, color=palette.MID_GREY, ls="--", lw=1)
        ax.text(len(variants) - 0.6, reference + 0.02, "toy model's best head", ha="right",
                fontsize=8, color=palette.DARK_GREY)
    ax.set_xticks(range(len(variants)), [v.replace(", ", ",\n") for v in variants], fontsize=8)
    ax.set(xlim=(-0.5, len(variants) - 0.5), ylim=(0, 1.05), ylabel="best head's identity score",
           title="a head looks at itself only when it must (one dot per seed)")
    return ax

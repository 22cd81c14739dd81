"""Several heads or one? A task where one softmax distribution cannot serve two places at once.

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
A linear read-out of such a blend cannot name both symbols (it cannot tell which one came from
where); with two heads or more, one head can take the left neighbour and another the partner.

    config = SeveralHeadsConfig()
    result = compare_on_conflict_task(config, seeds=(0, 1, 2))
    result.accuracy["both"]          # (n_configs, n_seeds): both symbols right
    shown = attention_to_show(result, seed=0)   # one sequence, every model's attention
"""

from __future__ import annotations

import argparse
import string
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import nn
from torch.nn import functional as F

from mha_course.torch_attention import MultiHeadAttention
from mha_course.viz import palette
from mha_course.viz.heatmap import attention_heatmap

__all__ = ["ConflictTask", "SeveralHeadsConfig", "ConflictBatch", "make_batch", "token_labels",
           "ConflictModel", "ConflictOutput", "n_parameters", "train", "evaluate", "attention_mass",
           "SeveralHeadsResult", "compare_on_conflict_task", "ShownAttention",
           "attention_to_show", "plot_attention", "main"]

IGNORE = -100  # the target where there is nothing to name (the first token's left neighbour)
TARGETS = ("left", "partner", "both")  # what the accuracies count: each read-out, and both right
LEFT_STYLE = {"marker": "s", "color": palette.ORANGE}  # markers on the heatmaps: the two places
PARTNER_STYLE = {"marker": "o", "color": palette.PURPLE}


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


@dataclass(frozen=True)
class SeveralHeadsConfig:
    """The task, the models' width, the head counts to compare and the training settings.
    Every head count h must divide d_model (d_k = d_v = d_model / h)."""
    task: ConflictTask = field(default_factory=ConflictTask)
    d_model: int = 32
    head_counts: tuple[int, ...] = (1, 4)
    steps: int = 150
    batch_size: int = 32
    lr: float = 1e-2
    n_eval: int = 500  # held-out sequences, the same for every model
    eval_seed: int = 999_999  # their seed: no training seed reaches it

    def __post_init__(self):
        counts = tuple(self.head_counts)
        if not counts or any(not isinstance(h, int) or h < 1 or self.d_model % h for h in counts):
            raise ValueError(f"head_counts must be positive ints that divide d_model = "
                             f"{self.d_model}; got {self.head_counts!r}")
        if len(set(counts)) != len(counts):
            raise ValueError(f"head_counts must not repeat; got {self.head_counts!r}")
        for name in ("steps", "batch_size", "n_eval"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        object.__setattr__(self, "head_counts", counts)


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


def _loss(output: ConflictOutput, data: ConflictBatch) -> torch.Tensor:
    n_symbols = output.left_logits.shape[-1]
    left = F.cross_entropy(output.left_logits.reshape(-1, n_symbols),  # (batch * n, n_symbols)
                           torch.from_numpy(data.left_target).reshape(-1), ignore_index=IGNORE)
    partner = F.cross_entropy(output.partner_logits.reshape(-1, n_symbols),
                              torch.from_numpy(data.partner_target).reshape(-1))
    return left + partner


def train(config: SeveralHeadsConfig, n_heads: int, seed: int) -> tuple[ConflictModel, float]:
    """Train one model with `n_heads` heads; return it and the training time in seconds.

    The seed fixes the initialisation and the training data: two head counts trained with the
    same seed see the same sequences in the same order. Adam at a constant learning rate."""
    if not isinstance(n_heads, int) or n_heads < 1 or config.d_model % n_heads:
        raise ValueError(f"n_heads must be a positive int that divides d_model = "
                         f"{config.d_model}; got {n_heads!r}")
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = ConflictModel(config.task, config.d_model, n_heads)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    for _ in range(config.steps):
        data = make_batch(config.task, config.batch_size, rng)
        loss = _loss(model(torch.from_numpy(data.tags), torch.from_numpy(data.symbols)), data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, time.perf_counter() - start


# ----------------------------------------------------------------------------------------------
# Measuring


def attention_mass(weights, data: ConflictBatch) -> np.ndarray:
    """(n_heads, 2): the mean weight each head puts on the query's left neighbour (over queries
    1 .. n-1) and on its partner (over every query). weights: (batch, n_heads, n, n)."""
    A = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    batch, _, n, _ = A.shape
    if data.tags.shape != (batch, n):
        raise ValueError(f"weights {A.shape} do not match the batch's tags {data.tags.shape}")
    rows = np.arange(batch)[:, None]  # (batch, 1)
    queries = np.arange(n)[None, :]  # (1, n)
    on_left = A[rows, :, queries[:, 1:], queries[:, 1:] - 1]  # (batch, n - 1, n_heads)
    on_partner = A[rows, :, queries, data.partner]  # (batch, n, n_heads)
    return np.stack([on_left.mean(axis=(0, 1)), on_partner.mean(axis=(0, 1))], axis=1)


def evaluate(model: ConflictModel, data: ConflictBatch) -> dict[str, float]:
    """Accuracy of each read-out and of both at once (queries 1 .. n-1, where both exist)."""
    output = model.run(data)
    left_ok = output.left_logits.argmax(-1).numpy() == data.left_target  # (batch, n)
    partner_ok = output.partner_logits.argmax(-1).numpy() == data.partner_target  # (batch, n)
    return {"left": float(left_ok[:, 1:].mean()), "partner": float(partner_ok.mean()),
            "both": float((left_ok & partner_ok)[:, 1:].mean())}


@dataclass
class SeveralHeadsResult:
    """accuracy: "left" | "partner" | "both" -> (n_configs, n_seeds) held-out accuracy;
    mass: head count -> (n_seeds, h, 2), each head's mean weight on the left neighbour and on
    the partner; n_params (n_configs,), equal; seconds (n_configs, n_seeds): training time.
    models: (head count, seed) -> the trained model (for `attention_to_show`)."""
    config: SeveralHeadsConfig
    seeds: tuple[int, ...]
    accuracy: dict[str, np.ndarray]
    mass: dict[int, np.ndarray]
    n_params: np.ndarray
    seconds: np.ndarray
    models: dict[tuple[int, int], ConflictModel] = field(repr=False, default_factory=dict)

    @property
    def head_counts(self) -> tuple[int, ...]:
        return self.config.head_counts

    def mean(self, target: str = "both") -> dict[int, float]:
        """Mean accuracy over seeds, per head count."""
        return {h: float(self.accuracy[target][i].mean()) for i, h in enumerate(self.head_counts)}

    def rows(self) -> list[dict]:
        """One row per head count and seed: d_k, the three accuracies, and which place each head
        takes ("left" or "partner" where it puts more than half its weight there, else "-")."""
        out = []
        for i, h in enumerate(self.head_counts):
            for j, seed in enumerate(self.seeds):
                roles = [("left" if m[0] > 0.5 else "partner" if m[1] > 0.5 else "-")
                         for m in self.mass[h][j]]
                out.append({"n_heads": h, "d_k": self.config.d_model // h, "seed": seed,
                            **{t: float(self.accuracy[t][i, j]) for t in TARGETS},
                            "heads": roles, "seconds": float(self.seconds[i, j])})
        return out


def compare_on_conflict_task(config: SeveralHeadsConfig | None = None,
                             seeds=(0, 1, 2)) -> SeveralHeadsResult:
    """Train one model per head count in config.head_counts and seed, measure each on the same
    held-out sequences, and check that all head counts have the same number of parameters."""
    config = SeveralHeadsConfig() if config is None else config
    seeds = tuple(seeds)
    if not seeds or any(not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of non-negative ints; got {seeds!r}")
    seeds = tuple(int(s) for s in seeds)
    held_out = make_batch(config.task, config.n_eval, np.random.default_rng(config.eval_seed))
    shape = (len(config.head_counts), len(seeds))
    accuracy = {t: np.zeros(shape) for t in TARGETS}
    seconds = np.zeros(shape)
    n_params = np.zeros(len(config.head_counts), dtype=np.int64)
    mass, models = {}, {}
    for i, h in enumerate(config.head_counts):
        mass[h] = np.zeros((len(seeds), h, 2))
        for j, seed in enumerate(seeds):
            model, seconds[i, j] = train(config, h, seed)
            n_params[i] = n_parameters(model)
            for target, value in evaluate(model, held_out).items():
                accuracy[target][i, j] = value
            mass[h][j] = attention_mass(model.run(held_out).weights, held_out)
            models[h, seed] = model
    if len(set(n_params.tolist())) != 1:
        raise RuntimeError(f"the head counts {config.head_counts} should give equal parameter "
                           f"counts (d_k = d_model / h); got {n_params.tolist()}")
    return SeveralHeadsResult(config, seeds, accuracy, mass, n_params, seconds, models)


# ----------------------------------------------------------------------------------------------
# The attention to show


@dataclass
class ShownAttention:
    """One held-out sequence through each model of one seed. weights: head count -> (h, n, n);
    mass: head count -> (h, 2) on the held-out set (left neighbour, partner)."""
    seed: int
    d_model: int
    tokens: list[str]
    partner: np.ndarray  # (n,)
    weights: dict[int, np.ndarray]
    mass: dict[int, np.ndarray]


def attention_to_show(result: SeveralHeadsResult, seed: int | None = None,
                      example_seed: int = 7) -> ShownAttention:
    """The attention of every head count's model for `seed` (default: the first seed) on one
    fresh sequence (drawn with `example_seed`)."""
    seed = result.seeds[0] if seed is None else seed
    if seed not in result.seeds:
        raise ValueError(f"seed {seed!r} was not trained; the result has seeds {result.seeds}")
    example = make_batch(result.config.task, 1, np.random.default_rng(example_seed))
    j = result.seeds.index(seed)
    weights = {h: result.models[h, seed].run(example).weights[0].numpy()  # (h, n, n)
               for h in result.head_counts}
    return ShownAttention(seed, result.config.d_model, token_labels(example), example.partner[0],
                          weights, {h: result.mass[h][j] for h in result.head_counts})


def _head_title(h: int, head: int, mass: np.ndarray, d_model: int) -> str:
    name = "1 head" if h == 1 else f"{h} heads, head {head}"
    return (f"{name} (d_k {d_model // h})\nleft {mass[head, 0]:.2f}, partner {mass[head, 1]:.2f}")


def plot_attention(shown: ShownAttention) -> Figure:
    """Every head of every model side by side on a fixed 0-1 scale, with the two places each
    query needs marked: its left neighbour (square) and its partner (circle). Panel titles give
    the head's mean weight on each place over the held-out set."""
    counts = sorted(shown.weights)
    panels = [(h, head) for h in counts for head in range(len(shown.weights[h]))]
    n = len(shown.tokens)
    fig, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels) + 1.2, 3.9),
                             layout="constrained", squeeze=False)
    queries = np.arange(n)
    for ax, (h, head) in zip(axes[0], panels):
        attention_heatmap(shown.weights[h][head], shown.tokens, ax=ax, vmin=0.0, vmax=1.0,
                          cmap=palette.ATTENTION_CMAP, colorbar=False,
                          ylabel="query" if ax is axes[0, 0] else None,
                          title=_head_title(h, head, shown.mass[h], shown.d_model))
        ax.title.set_fontsize(9)
        ax.tick_params(labelsize=7, length=2)
        ax.scatter(queries[1:] - 1, queries[1:], s=42, facecolors="none", linewidths=1.6,
                   edgecolors=LEFT_STYLE["color"], marker=LEFT_STYLE["marker"])
        ax.scatter(shown.partner, queries, s=42, facecolors="none", linewidths=1.6,
                   edgecolors=PARTNER_STYLE["color"], marker=PARTNER_STYLE["marker"])
    fig.colorbar(axes[0, 0].images[0], ax=axes[0].tolist(), shrink=0.8,
                 label="attention weight (0-1)")
    handles = [Line2D([], [], ls="", markerfacecolor="none", markeredgecolor=style["color"],
                      marker=style["marker"], label=label)
               for style, label in ((LEFT_STYLE, "left neighbour"), (PARTNER_STYLE, "partner"))]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle("Where each token looks (fixed 0-1 scale): one head takes one place; "
                 "several heads take both")
    return fig


# ----------------------------------------------------------------------------------------------
# Command line: python -m mha_course several-heads --seeds 100 101 ...


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    defaults = SeveralHeadsConfig()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds (default: 0 1 2)")
    parser.add_argument("--head-counts", type=int, nargs="+", default=list(defaults.head_counts),
                        help=f"head counts to compare (default: {list(defaults.head_counts)})")
    parser.add_argument("--steps", type=int, default=defaults.steps,
                        help=f"training steps per model (default: {defaults.steps})")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the fastest for these small models)")
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Train and print one line per head count and seed, then the means."""
    torch.set_num_threads(args.threads)
    try:
        config = SeveralHeadsConfig(head_counts=tuple(args.head_counts), steps=args.steps)
        result = compare_on_conflict_task(config, seeds=args.seeds)
    except ValueError as error:
        print(f"error: {error}")
        return 2
    print(f"parameters per model: {result.n_params.tolist()} (equal); d_model {config.d_model}, "
          f"{config.steps} steps, {config.n_eval} held-out sequences")
    print(f"{'heads':>5} {'d_k':>4} {'seed':>5} {'left':>6} {'partner':>8} {'both':>6} "
          f"{'seconds':>8}  place each head takes")
    for row in result.rows():
        print(f"{row['n_heads']:5d} {row['d_k']:4d} {row['seed']:5d} {row['left']:6.3f} "
              f"{row['partner']:8.3f} {row['both']:6.3f} {row['seconds']:8.1f}  "
              f"{' '.join(row['heads'])}")
    for i, h in enumerate(result.head_counts):
        both = result.accuracy["both"][i]
        print(f"{h} head(s): both right {both.mean():.3f} (min {both.min():.3f}, "
              f"max {both.max():.3f}) over {len(result.seeds)} seeds")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mha_course.experiments.several_heads",
        description="Train one head and several heads (same parameters) on the left-neighbour-"
                    "and-partner task and print their held-out accuracy per seed.")
    return run_cli(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

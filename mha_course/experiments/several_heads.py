"""Several heads or one? The conflict task (`experiments.conflict_task`): every token must name
the symbol of its left neighbour and of its partner, a token elsewhere in the sequence, and the
model has one attention layer and two linear read-outs, nothing else.

With h heads of size d_k = d_v = d_model / h the model has the same number of parameters for
every h (checked, not assumed). One head computes one distribution per token, so its output is
alpha * v(left) + (1 - alpha) * v(partner) + ...: the same value map applied to both places.
A linear read-out of such a blend cannot name both symbols (it cannot tell which one came from
where); with two heads or more, one head can take the left neighbour and another the partner.

    config = SeveralHeadsConfig()
    result = compare_on_conflict_task(config, seeds=(0, 1, 2))
    result.accuracy["both"]          # (n_configs, n_seeds): both symbols right
    shown = attention_to_show(result, seed=0)   # one sequence, every model's attention

The task's names (`ConflictTask`, `make_batch`, `ConflictModel`, ...) are re-exported here.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch.nn import functional as F

from mha_course.experiments.conflict_task import (
    IGNORE,
    ConflictBatch,
    ConflictModel,
    ConflictOutput,
    ConflictTask,
    make_batch,
    n_parameters,
    token_labels,
)
from mha_course.viz import palette
from mha_course.viz.heatmap import attention_heatmap

__all__ = ["IGNORE", "ConflictTask", "SeveralHeadsConfig", "ConflictBatch", "make_batch",
           "token_labels", "ConflictModel", "ConflictOutput", "n_parameters", "train", "evaluate",
           "attention_mass", "SeveralHeadsResult", "compare_on_conflict_task", "ShownAttention",
           "attention_to_show", "plot_attention", "main"]

TARGETS = ("left", "partner", "both")  # what the accuracies count: each read-out, and both right
LEFT_STYLE = {"marker": "s", "color": palette.ORANGE}  # markers on the heatmaps: the two places
PARTNER_STYLE = {"marker": "o", "color": palette.PURPLE}


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
# Training


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

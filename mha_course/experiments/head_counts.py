"""Do h heads of size d_model/h beat one head of size d_model on the toy language? Train both.

With d_k = d_v = d_model / h, the projections of h heads hold exactly the numbers of one head of
size d_model: W_Q, W_K, W_V (h, d_model, d_model/h) and W_O (d_model, d_model) either way, so the
comparison is at the same parameter count (checked, not assumed). What differs is that h heads
compute h separate softmax distributions, so each token can look at h different places at once.

    result = compare_head_counts(head_counts=(4, 1), seeds=(0, 1), steps=300)
    result.accuracy["agreement"]      # (n_counts, n_seeds), one sub-task of the toy language
    result.rows()                     # mean and spread per head count and sub-task

The toy model needs hundreds of steps per model before the sub-tasks separate the two, too long
for a notebook: run it as a command and read the table it prints,

    python -m mha_course compare-heads --steps 800 --seeds 0 1 2

(`python -m mha_course compare-heads ...` once the course's command line lists it). The
notebooks' demonstration of several heads uses a task built for it (`several_heads`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mha_course.models import toy_language as lang
from mha_course.models import toy_model

__all__ = ["HeadCountComparison", "compare_head_counts", "comparison_config", "format_table",
           "add_arguments", "run_comparison_cli", "main"]

EVAL_SEED = 777_777  # the held-out sentences: no training seed draws them


def comparison_config(d_model: int = 64, n_layers: int = 2, **changes) -> toy_model.ToyConfig:
    """A `ToyConfig` for quick comparisons: the shipped shape's width, batches of 32 (half the
    shipped 64), a smaller training pool (4000 sentences instead of 20000, which take seconds to
    generate) and fewer eval sentences. n_heads, d_k and d_v (= d_k) are set per run by
    `compare_head_counts`."""
    base = {"d_model": d_model, "n_layers": n_layers, "batch_size": 32, "n_train_sentences": 4000,
            "n_eval_sentences": 200}
    return toy_model.ToyConfig(**{**base, **changes})


@dataclass
class HeadCountComparison:
    """accuracy: sub-task -> (n_counts, n_seeds) held-out accuracy; mean_accuracy (n_counts,
    n_seeds): mean over sub-tasks; n_params (n_counts,): parameters of each model (equal by
    construction); seconds (n_counts, n_seeds): training time; steps: training steps."""
    head_counts: tuple[int, ...]
    seeds: tuple[int, ...]
    steps: int
    d_model: int
    accuracy: dict[str, np.ndarray]
    mean_accuracy: np.ndarray
    n_params: np.ndarray
    seconds: np.ndarray

    def rows(self) -> list[dict]:
        """One row per head count and sub-task (and "mean"): mean and std over seeds."""
        tables = {**self.accuracy, "mean": self.mean_accuracy}
        return [{"n_heads": h, "d_k": self.d_model // h, "task": task,
                 "mean": float(table[i].mean()), "std": float(table[i].std()),
                 "runs": [round(float(x), 4) for x in table[i]]}
                for task, table in tables.items() for i, h in enumerate(self.head_counts)]


def compare_head_counts(head_counts=(4, 1), seeds=(0, 1), steps: int = 300, config=None,
                        eval_sentences=None, n_eval: int = 300) -> HeadCountComparison:
    """Train the toy Transformer once per head count h (d_k = d_v = d_model / h, same steps,
    same data for a seed) and seed; measure every sub-task on held-out sentences
    (`toy_model.evaluate`). config: a ToyConfig (default `comparison_config()`); its n_heads and
    d_k are replaced. eval_sentences: default `n_eval` fresh sentences (seed EVAL_SEED)."""
    config = comparison_config() if config is None else config
    head_counts, seeds = tuple(int(h) for h in head_counts), tuple(int(s) for s in seeds)
    bad = [h for h in head_counts if h < 1 or config.d_model % h]
    if bad or not head_counts or not seeds:
        raise ValueError(f"head_counts must divide d_model = {config.d_model} (and seeds be "
                         f"non-empty); got head_counts={head_counts}, seeds={seeds}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}")
    sentences = lang.generate(n_eval, seed=EVAL_SEED) if eval_sentences is None else eval_sentences
    accuracy = {t: np.zeros((len(head_counts), len(seeds))) for t in lang.SUBTASKS}
    seconds = np.zeros((len(head_counts), len(seeds)))
    n_params = np.zeros(len(head_counts), dtype=np.int64)
    for i, h in enumerate(head_counts):
        cfg = replace(config, n_heads=h, d_k=config.d_model // h, d_v=None)  # d_v = d_k
        for j, seed in enumerate(seeds):
            start = time.perf_counter()
            model, _ = toy_model.train(cfg, seed=seed, steps=steps, progress=False)
            seconds[i, j] = time.perf_counter() - start
            n_params[i] = sum(p.numel() for p in model.parameters())
            for task, acc in toy_model.evaluate(model, sentences, seed=seed).items():
                accuracy[task][i, j] = acc
    if len(set(n_params.tolist())) != 1:
        raise RuntimeError(f"parameter counts differ across head counts: {n_params.tolist()}")
    mean = np.nanmean(np.stack(list(accuracy.values())), axis=0)  # (n_counts, n_seeds)
    return HeadCountComparison(head_counts=head_counts, seeds=seeds, steps=steps,
                               d_model=config.d_model, accuracy=accuracy, mean_accuracy=mean,
                               n_params=n_params, seconds=seconds)


def format_table(result: HeadCountComparison) -> str:
    """The comparison as text: one line per sub-task, mean ± std over seeds per head count."""
    rows = result.rows()
    counts = result.head_counts
    names = [f"{h} head{'s' if h > 1 else ''} of {result.d_model // h}" for h in counts]
    lines = [f"{result.steps} steps, seeds {list(result.seeds)}, parameters per model "
             f"{result.n_params.tolist()} (equal), training {result.seconds.sum():.0f} s in all",
             f"{'sub-task':<12}" + "".join(f"{name:>18}" for name in names)]
    for task in list(result.accuracy) + ["mean"]:
        cells = []
        for h in counts:
            row = next(r for r in rows if r["task"] == task and r["n_heads"] == h)
            cells.append(f"{row['mean']:11.3f} ± {row['std']:.3f}")
        lines.append(f"{task:<12}" + "".join(f"{cell:>18}" for cell in cells))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The comparison's options on `parser` (for `python -m mha_course compare-heads`)."""
    parser.add_argument("--steps", type=int, default=800,
                        help="training steps per model (default 800; the shipped model: 2200)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds (default: 0 1 2)")
    parser.add_argument("--head-counts", type=int, nargs="+", default=[4, 1],
                        help="head counts to compare; each must divide d_model = 64 (default: 4 1)")
    parser.add_argument("--train-sentences", type=int, default=4000,
                        help="sentences in the training pool (default 4000)")
    parser.add_argument("--eval-sentences", type=int, default=300,
                        help="held-out sentences to score (default 300)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the rows (mean, std, runs per sub-task) to this file")
    return parser


def run_comparison_cli(args: argparse.Namespace) -> int:
    """Run the comparison that `args` describes and print its table; 2 on bad arguments."""
    torch.set_num_threads(args.threads)
    try:
        config = comparison_config(n_train_sentences=args.train_sentences)
        result = compare_head_counts(head_counts=args.head_counts, seeds=args.seeds,
                                     steps=args.steps, config=config, n_eval=args.eval_sentences)
    except ValueError as error:
        print(f"error: {error}")
        return 2
    print(format_table(result))
    if args.json is not None:
        args.json.write_text(json.dumps({"steps": result.steps, "seeds": list(result.seeds),
                                         "n_params": result.n_params.tolist(),
                                         "rows": result.rows()}, indent=1))
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mha_course.experiments.head_counts",
        description="Train the toy Transformer with several heads and with one head at the same "
                    "parameter count and print held-out accuracy per sub-task.")
    return run_comparison_cli(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())

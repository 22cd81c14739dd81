"""Seed sweeps of the toy recipe: train named variants of `ToyConfig` for several seeds and write
one JSON line per run (its best head per role, the untrained control, the sub-task accuracies,
whether it passes), then a table of the distribution over seeds. The tables of
docs/design/toy_language.md come from here:

    python -m mha_course sweep-toy --variants default pre_ln --seeds 0 1 2 3 4 --out sweep.jsonl
    python -m mha_course sweep-toy --summarize sweep.jsonl      # the table of a finished sweep

A variant is a set of changes to the shipped recipe (`VARIANTS`); `grammar` changes are the
fields of `toy_language.Grammar`. A run is deterministic for its seed, steps and torch thread
count (the thread count changes float sums), so each run trains in a process of its own with
`threads` threads, `workers` at a time.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import datetime
import json
import math
import multiprocessing
import statistics
import sys
from dataclasses import fields, replace
from pathlib import Path

import torch

from mha_course.experiments import toy_training
from mha_course.models import toy_language as lang
from mha_course.models.toy_model import ToyConfig

__all__ = ["VARIANTS", "GROWN_ROLES", "ROLE_MIN", "SYNTACTIC_MARGIN", "ACCURACY_MIN",
           "variant_config", "parse_settings", "passes", "run_one", "sweep", "read_jsonl",
           "summarize", "format_summary", "format_run", "add_arguments", "run_cli"]

# Changes to the shipped recipe (`ToyConfig()`), by name. "grammar" maps to Grammar fields.
VARIANTS: dict[str, dict] = {
    "default": {},  # the shipped recipe
    "pre_ln": {"post_ln": False},  # LN before each sub-layer instead of after each residual sum
    "no_closer": {"closer_loss": 0.0},  # without the "name your closer" read-out
    "closer1": {"closer_loss": 1.0},  # that read-out at weight 1 instead of 0.25
    "token_target": {"neighbour_target": "token"},  # name the left neighbour with its number
    "no_readouts": {"neighbour_loss": 0.0, "closer_loss": 0.0},  # denoising alone
    "rs5": {"relation_swap": 0.5},  # verbs and pronouns take the wrong number/pronoun more often
    # the recipe before the lemma target and the closer read-out (post-LN, three registers) ...
    "token_no_closer": {"neighbour_target": "token", "closer_loss": 0.0},
    # ... and the same with pre-LN blocks
    "pre_ln_token_no_closer": {"post_ln": False, "neighbour_target": "token",
                               "closer_loss": 0.0},
    "name_subjects": {"grammar": {"subject_name_prob": 0.7}},  # most singular subjects are names
    "name_in_modifier": {"grammar": {"name_in_modifier": True}},  # the name sits in the modifier
}

# A run passes when every role the recipe grows has a head >= ROLE_MIN, the verb -> subject head
# beats the best fixed offset by SYNTACTIC_MARGIN, and every sub-task is restored >= ACCURACY_MIN.
GROWN_ROLES = ("local", "syntactic", "delimiter", "coreference", "rare_target", "duplicate")
ROLE_MIN = 0.7
SYNTACTIC_MARGIN = 0.2
ACCURACY_MIN = 0.95


def variant_config(changes: dict, base: ToyConfig | None = None,
                   steps: int | None = None) -> ToyConfig:
    """`base` (default: the shipped recipe) with `changes` applied; `changes["grammar"]` is a
    dict of `Grammar` fields. Unknown names raise a ValueError naming the known ones."""
    base = base or ToyConfig()
    changes = dict(changes)
    grammar = changes.pop("grammar", {})
    known = {f.name for f in fields(ToyConfig)} - {"grammar"}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown ToyConfig fields {unknown}; expected some of {sorted(known)}")
    grammar_fields = {f.name for f in fields(lang.Grammar)}
    if set(grammar) - grammar_fields:
        raise ValueError(f"unknown Grammar fields {sorted(set(grammar) - grammar_fields)}; "
                         f"expected some of {sorted(grammar_fields)}")
    grammar = {k: tuple(v) if isinstance(v, list) else v for k, v in grammar.items()}
    config = replace(base, **changes, grammar=replace(base.grammar, **grammar))
    return config if steps is None else replace(config, steps=steps)


def parse_settings(settings) -> dict:
    """["closer_loss=0.5", "grammar.repeat_prob=0.3"] -> {"closer_loss": 0.5, "grammar":
    {"repeat_prob": 0.3}}; values are Python literals (0.5, True, None, 'token')."""
    changes: dict = {}
    for setting in settings:
        key, sep, text = setting.partition("=")
        if not sep or not key:
            raise ValueError(f"a setting is KEY=VALUE (e.g. closer_loss=0.5); got {setting!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word: a string such as token
        if key.startswith("grammar."):
            changes.setdefault("grammar", {})[key.removeprefix("grammar.")] = value
        else:
            changes[key] = value
    return changes


def passes(run: dict) -> bool:
    """The acceptance of the toy recipe (see ROLE_MIN, SYNTACTIC_MARGIN, ACCURACY_MIN)."""
    best, accuracy = run["best"], run["accuracy"]
    return (all(best[r] is not None and best[r] >= ROLE_MIN for r in GROWN_ROLES)
            and best["syntactic"] >= run["syntactic_baseline"] + SYNTACTIC_MARGIN
            and all(a is not None and a >= ACCURACY_MIN for a in accuracy.values()))


def _number(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), 4)  # JSON has no NaN


def run_one(variant: str, changes: dict, seed: int, steps: int | None = None,
            threads: int = 1, base: ToyConfig | None = None) -> dict:
    """Train one variant for one seed with `threads` torch threads (restored afterwards) and
    return its JSON line: best head per role (score and place), control, baseline, accuracies."""
    config = variant_config(changes, base, steps)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _, report = toy_training.train(config, seed=seed, progress=False)
    finally:
        torch.set_num_threads(before)
    best = report["best"]
    run = {"variant": variant, "changes": changes, "seed": seed, "steps": report["steps"],
           "seconds": report["seconds"], "threads": threads,
           "best": {r: _number(b["score"]) for r, b in best.items()},
           "where": {r: f"L{b['layer']}H{b['head']}" for r, b in best.items()},
           "syntactic_baseline": _number(report["syntactic_baseline"]["score"]),
           "accuracy": {k: _number(v) for k, v in report["accuracy"].items()},
           "control": {k: _number(v) for k, v in report["control"].items()},
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
           "torch": torch.__version__}
    run["pass"] = passes(run)
    return run


def sweep(variants, seeds, steps: int | None = None, workers: int = 1, threads: int = 1,
          out=None, base: ToyConfig | None = None, on_run=None) -> list[dict]:
    """`run_one` for every (variant, seed), variant by variant; `variants` are names in VARIANTS
    or a {name: changes} dict. With `out`, each run is appended to that JSONL file as it ends;
    `on_run(run)` is called too. `workers` > 1 trains that many runs at once, each in a fresh
    process (spawned, so that no torch thread pool is forked). Returns the runs in grid order."""
    table = variants if isinstance(variants, dict) else {name: _named(name) for name in variants}
    for changes in table.values():
        variant_config(changes, base)  # refuse a bad variant before training anything
    jobs = [(name, changes, seed, steps, threads, base) for name, changes in table.items()
            for seed in seeds]
    path = None if out is None else Path(out)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    runs: list = [None] * len(jobs)

    def finish(k: int, run: dict) -> None:
        runs[k] = run
        if path is not None:
            with path.open("a") as f:
                f.write(json.dumps(run) + "\n")
        if on_run is not None:
            on_run(run)

    if workers <= 1:
        for k, job in enumerate(jobs):
            finish(k, run_one(*job))
        return runs
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {pool.submit(run_one, *job): k for k, job in enumerate(jobs)}
        for future in concurrent.futures.as_completed(futures):
            finish(futures[future], future.result())
    return runs


def _named(name: str) -> dict:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return VARIANTS[name]


def read_jsonl(path) -> list[dict]:
    """The runs of a sweep file, in the order they were written."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def summarize(runs, roles=GROWN_ROLES) -> dict:
    """{variant: {"seeds": [...], "passed": k, "roles": {role: (min, median, max)}, "accuracy":
    {task: (min, median, max)}, "control": max, "seconds": (min, max)}} over each variant's runs."""
    by_variant: dict = {}
    for run in runs:
        by_variant.setdefault(run["variant"], []).append(run)

    def spread(values):
        values = [v for v in values if v is not None]
        if not values:
            return (None, None, None)
        return (min(values), statistics.median(values), max(values))

    summary = {}
    for variant, group in by_variant.items():
        summary[variant] = {
            "seeds": [r["seed"] for r in group], "steps": sorted({r["steps"] for r in group}),
            "passed": sum(r["pass"] for r in group),
            "roles": {role: spread([r["best"][role] for r in group]) for role in roles},
            "accuracy": {task: spread([r["accuracy"][task] for r in group])
                         for task in group[0]["accuracy"]},
            "control": max(v for r in group for v in r["control"].values() if v is not None),
            "seconds": (min(r["seconds"] for r in group), max(r["seconds"] for r in group))}
    return summary


def _range(triple) -> str:
    low, median, high = triple
    return "n/a" if low is None else f"{low:.2f} / {median:.2f} / {high:.2f}"


def format_summary(runs, roles=GROWN_ROLES) -> str:
    """A Markdown table, one row per variant: seeds, passes, each role's best head and the lowest
    sub-task accuracy as min / median / max over the seeds, the highest control score."""
    summary = summarize(runs, roles)
    head = ["variant", "seeds", "pass", *roles, "lowest accuracy", "control (max)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, s in summary.items():
        lowest = _lowest_accuracy_spread([r for r in runs if r["variant"] == variant])
        cells = [variant, " ".join(str(x) for x in s["seeds"]), f"{s['passed']}/{len(s['seeds'])}",
                 *(_range(s["roles"][role]) for role in roles), _range(lowest),
                 f"{s['control']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _lowest_accuracy_spread(runs) -> tuple:
    """(min, median, max) over runs of each run's lowest sub-task accuracy."""
    lowest = [min(v for v in r["accuracy"].values() if v is not None) for r in runs]
    return (min(lowest), statistics.median(lowest), max(lowest))


def format_run(run: dict, roles=GROWN_ROLES) -> str:
    """One compact line per run: variant, seed, seconds, best head per role, accuracies."""
    scores = " ".join(f"{r[:4]}={run['best'][r]:.2f}" if run["best"][r] is not None
                      else f"{r[:4]}=n/a" for r in roles)
    accuracy = " ".join(f"{v:.2f}" for v in run["accuracy"].values())
    return (f"{run['variant']:<24} s{run['seed']} {run['seconds']:6.1f}s  {scores} | {accuracy}"
            f" | control {max(v for v in run['control'].values() if v is not None):.2f}"
            f"{'  PASS' if run['pass'] else ''}")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `python -m mha_course sweep-toy`."""
    parser.add_argument("--variants", nargs="+", default=["default"], choices=list(VARIANTS),
                        metavar="VARIANT", help="variants of the shipped recipe (default: default):"
                        f" {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="seeds (default: 0 1 2 3 4)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: ToyConfig)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="changes applied to every variant, e.g. closer_loss=0.5 "
                             "grammar.repeat_prob=0.3")
    parser.add_argument("--workers", type=int, default=1,
                        help="runs trained at once, each in its own process (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per run (default 1; the scores depend on it)")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSONL file to append one line per run to")
    parser.add_argument("--summarize", type=Path, default=None, metavar="JSONL",
                        help="train nothing: print the table of a finished sweep file")
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """`python -m mha_course sweep-toy`: print one line per run, then the table."""
    if args.summarize is not None:
        print(format_summary(read_jsonl(args.summarize)))
        return 0
    try:
        extra = parse_settings(args.set)
        table = {}
        for name in args.variants:
            changes = {**VARIANTS[name], **{k: v for k, v in extra.items() if k != "grammar"}}
            grammar = {**VARIANTS[name].get("grammar", {}), **extra.get("grammar", {})}
            if grammar:
                changes["grammar"] = grammar
            table[name if not args.set else f"{name}+{'+'.join(args.set)}"] = changes
        for changes in table.values():
            variant_config(changes)
    except (ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(table) * len(args.seeds)} runs, {args.workers} at a time, {args.threads} "
          f"thread(s) each", flush=True)
    runs = sweep(table, args.seeds, steps=args.steps, workers=args.workers, threads=args.threads,
                 out=args.out, on_run=lambda run: print(format_run(run), flush=True))
    print(format_summary(runs))
    return 0

"""Seed sweeps of the toy recipe: train named variants of `ToyConfig` for several seeds and write
one JSON line per run (its best head per role, the untrained control, the sub-task accuracies,
whether it passes), then a table of the distribution over seeds. The tables of
docs/design/toy_language.md come from here:

    python -m mha_course sweep-toy --variants default pre_ln --seeds 0 1 2 3 4 --out sweep.jsonl
    python -m mha_course sweep-toy --summarize sweep.jsonl      # the table of a finished sweep

Seeds are words such as `0-19`, `3` or `0-4 10-14`. Notebook 04 reads the shipped sweep
(`load_sweep`) and prints its `sweep_command`; a test trains one of its rows again (`rerun`).

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
import itertools
import json
import math
import multiprocessing
import re
import shlex
import statistics
import sys
from dataclasses import fields, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mha_course.experiments import toy_training
from mha_course.models import toy_language as lang
from mha_course.models.toy_model import ToyConfig

__all__ = ["VARIANTS", "GROWN_ROLES", "ROLE_MIN", "SYNTACTIC_MARGIN", "ACCURACY_MIN",
           "variant_config", "parse_settings", "passes", "run_one", "sweep", "read_jsonl",
           "summarize", "format_summary", "format_run", "add_arguments", "run_cli", "parse_seeds",
           "SHIPPED_SWEEP", "SWEEP_COMMAND", "load_sweep", "rerun", "sweep_command"]

# Changes to the shipped recipe (`ToyConfig()`), by name. "grammar" maps to Grammar fields.
VARIANTS: dict[str, dict] = {
    "default": {},  # the shipped recipe
    "pre_ln": {"post_ln": False},  # LN before each sub-layer instead of after each residual sum
    "no_closer": {"closer_loss": 0.0},  # without the "name your closer" read-out
    "closer_half": {"closer_loss": 0.5},  # that read-out at weight 0.5 (1.0 since issue 15)
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
# and the rare-word head (rare word -> the noun that tells what it is) each beat the best fixed
# offset for their relation by SYNTACTIC_MARGIN, and every sub-task is restored >= ACCURACY_MIN.
GROWN_ROLES = ("local", "syntactic", "delimiter", "coreference", "rare_word", "rare_target",
               "duplicate")
ROLE_MIN = 0.7
SYNTACTIC_MARGIN = 0.2
ACCURACY_MIN = 0.95

# The sweep notebook 04 reads; the command (from the repository's root) that writes it afresh.
SHIPPED_SWEEP = Path(__file__).parents[1] / "data" / "toy_sweep" / "seeds.jsonl"
SWEEP_COMMAND = ("python -m mha_course sweep-toy --seeds 0-19 --out "
                 + SHIPPED_SWEEP.relative_to(Path(__file__).parents[2]).as_posix())


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
    baselines = {"syntactic": run["syntactic_baseline"],
                 "rare_word": run.get("rare_word_baseline")}
    return (all(best[r] is not None and best[r] >= ROLE_MIN for r in GROWN_ROLES)
            and all(b is not None and best[r] >= b + SYNTACTIC_MARGIN
                    for r, b in baselines.items())
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
           "rare_word_baseline": _number(report["rare_word_baseline"]["score"]),
           "accuracy": {k: _number(v) for k, v in report["accuracy"].items()},
           "control": {k: _number(v) for k, v in report["control"].items()},
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
           "torch": torch.__version__}
    run["pass"] = passes(run)
    return run


def rerun(run: dict) -> dict:
    """A row of a sweep file trained again (its variant, changes, seed, steps, threads)."""
    return run_one(run["variant"], run["changes"], run["seed"], steps=run["steps"],
                   threads=run["threads"])


def sweep(variants, seeds, steps: int | None = None, workers: int = 1, threads: int = 1,
          out=None, base: ToyConfig | None = None, on_run=None,
          progress: bool = False) -> list[dict]:
    """`run_one` for every (variant, seed), variant by variant; `variants` are names in VARIANTS
    or a {name: changes} dict. With `out`, each run is appended to that JSONL file as it ends;
    `on_run(run)` is called too; with `progress`, a bar over the runs stays below what it prints.
    `workers` > 1 trains that many runs at once, each in a fresh (spawned) process. Returns the
    runs in grid order."""
    table = variants if isinstance(variants, dict) else {name: _named(name) for name in variants}
    for changes in table.values():
        variant_config(changes, base)  # refuse a bad variant before training anything
    jobs = [(name, changes, seed, steps, threads, base) for name, changes in table.items()
            for seed in seeds]
    path = None if out is None else Path(out)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    runs: list = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress)

    def finish(k: int, run: dict) -> None:
        runs[k] = run
        if path is not None:
            with path.open("a") as f:
                f.write(json.dumps(run) + "\n")
        if on_run is not None:
            with tqdm.external_write_mode():  # what on_run prints goes above the bar
                on_run(run)
        bar.update()

    with bar:
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


def load_sweep(path=None) -> list[dict]:
    """The runs of a sweep file (None: `SHIPPED_SWEEP`). A FileNotFoundError names the command
    that writes it; a ValueError, a (variant, seed) found twice (`--out` appends)."""
    path = SHIPPED_SWEEP if path is None else Path(path)
    if not path.is_file():
        command = SWEEP_COMMAND if path == SHIPPED_SWEEP else "python -m mha_course sweep-toy"
        raise FileNotFoundError(f"no sweep file at {path}; write it with: {command}")
    runs = read_jsonl(path)
    if twice := _twice([(r["variant"], r["seed"]) for r in runs]):
        raise ValueError(f"{path} holds these (variant, seed) more than once: {twice}; --out "
                         "appends, so delete the file before running a sweep again")
    return runs


def _twice(items: list) -> list:
    return sorted({item for item in items if items.count(item) > 1})


def parse_seeds(words) -> list[int]:
    """Seeds from words such as "0-19" and "7" (["0-4", "10-14"]: 0 to 4 and 10 to 14), in the
    order given; a ValueError for a word that is neither a seed nor a rising range, or a repeat."""
    seeds: list[int] = []
    for word in words:
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", str(word), re.ASCII)  # "7" or "0-19"
        if match is None or int(match[2] or match[1]) < int(match[1]):
            raise ValueError(f"a seed is a non-negative integer or a rising range such as 0-19;"
                             f" got {word!r}")
        seeds.extend(range(int(match[1]), int(match[2] or match[1]) + 1))
    if not seeds or _twice(seeds):
        raise ValueError(f"expected seeds, each once; got {list(words)} (twice: {_twice(seeds)})")
    return seeds


def _seed_words(seeds) -> list[str]:
    """[0, 1, 2, 3, 7, 9, 10] -> ["0-3", "7", "9-10"]: the shortest words for parse_seeds."""
    steps = itertools.groupby(enumerate(sorted(seeds)), key=lambda ks: ks[1] - ks[0])
    groups = [[s for _, s in group] for _, group in steps]  # runs of consecutive seeds
    return [str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups]


def sweep_command(runs, out=None) -> str:
    """The `python -m mha_course sweep-toy` line that trains `runs` (rows of one sweep file)
    again: variants, seeds as ranges, `--set` (variants named "name+KEY=VALUE+..."), steps,
    threads, `--out out` if given. A ValueError when the rows are not one grid of that kind."""
    runs = list(runs)
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    names = [v.split("+")[0] for v in variants]
    settings = {tuple(v.split("+")[1:]) for v in variants}
    seeds = [sorted(r["seed"] for r in runs if r["variant"] == v) for v in variants]
    steps, threads = {r["steps"] for r in runs}, {r["threads"] for r in runs}
    if {len(settings), len({tuple(s) for s in seeds}), len(steps), len(threads)} != {1}:
        raise ValueError(f"expected the rows of one sweep (variants x seeds, one --set, steps, "
                         f"threads); got {variants}, seeds {seeds}, {steps=}, {threads=}")
    settings = list(settings.pop())
    table = _cli_table(names, settings)
    if any(r["changes"] != table[r["variant"]] for r in runs):
        raise ValueError(f"the rows' changes are not those of variants {names} with --set "
                         f"{settings}: they were not written by sweep-toy's command line")
    words = (["python", "-m", "mha_course", "sweep-toy"]
             + ([] if names == ["default"] else ["--variants", *names])
             + ["--seeds", *_seed_words(seeds[0])] + (["--set", *settings] if settings else [])
             + ["--steps", str(steps.pop()), "--threads", str(threads.pop())]
             + ([] if out is None else ["--out", str(out)]))
    return shlex.join(words)


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
    parser.add_argument("--seeds", nargs="+", default=["0-4"], metavar="SEEDS",
                        help="seeds and ranges: 0-19, 0 1 2, 0-4 10-14 (default: 0-4)")
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
        seeds = parse_seeds(args.seeds)
        table = _cli_table(args.variants, args.set)
    except (ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(table) * len(seeds)} runs, {args.workers} at a time, {args.threads} "
          f"thread(s) each", flush=True)
    runs = sweep(table, seeds, steps=args.steps, workers=args.workers, threads=args.threads,
                 out=args.out, on_run=lambda run: print(format_run(run), flush=True),
                 progress=True)
    print(format_summary(runs))
    return 0


def _cli_table(variants, settings) -> dict:
    """{"variant+KEY=VALUE+...": changes} of the command line; ValueError/TypeError if bad."""
    extra, table = parse_settings(settings), {}
    for name in variants:
        changes = {**_named(name), **{k: v for k, v in extra.items() if k != "grammar"}}
        grammar = {**VARIANTS[name].get("grammar", {}), **extra.get("grammar", {})}
        if grammar:
            changes["grammar"] = grammar
        table[name if not settings else f"{name}+{'+'.join(settings)}"] = changes
        variant_config(changes)  # refuse a bad name or value before training anything
    return table

"""Seed sweeps of the toy recipe (`experiments.toy_sweep`, `python -m mha_course sweep-toy`)."""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import statistics
from pathlib import Path

import pytest

from mha_course.experiments import toy_sweep
from mha_course.models import toy_language as lang
from mha_course.models import toy_model

TINY = toy_model.ToyConfig(n_layers=1, n_heads=2, d_model=16, d_k=8, d_v=8, d_ff=32,
                           n_train_sentences=120, n_eval_sentences=30, batch_size=8)


def test_variant_config_applies_model_and_grammar_changes():
    config = toy_sweep.variant_config({"post_ln": False, "grammar": {"repeat_prob": 0.25}},
                                      steps=7)
    assert config.post_ln is False and config.steps == 7
    assert config.grammar == lang.Grammar(repeat_prob=0.25)
    assert toy_sweep.variant_config({}) == toy_model.ToyConfig()
    assert toy_sweep.variant_config(toy_sweep.VARIANTS["name_in_modifier"]).grammar.name_in_modifier
    with pytest.raises(ValueError, match="closer_weight"):
        toy_sweep.variant_config({"closer_weight": 1.0})
    with pytest.raises(ValueError, match="shout_span"):
        toy_sweep.variant_config({"grammar": {"shout_span": "first_half"}})


def test_every_named_variant_is_a_valid_config():
    for name, changes in toy_sweep.VARIANTS.items():
        config = toy_sweep.variant_config(changes)
        assert (config == toy_model.ToyConfig()) == (name == "default"), name


def test_parse_settings_reads_literals_and_grammar_fields():
    assert toy_sweep.parse_settings(["closer_loss=0.5", "neighbour_target=token",
                                     "grammar.name_in_modifier=True", "d_k=None"]) == {
        "closer_loss": 0.5, "neighbour_target": "token", "d_k": None,
        "grammar": {"name_in_modifier": True}}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        toy_sweep.parse_settings(["closer_loss"])


def _run(**change):
    run = {"best": {r: 0.9 for r in toy_sweep.GROWN_ROLES}, "syntactic_baseline": None,
           "rare_word_baseline": 0.3, "accuracy": {t: 0.99 for t in lang.SUBTASKS}}
    for key, value in change.items():
        section, name = key.split("__")
        run[section][name] = value
    return run


@pytest.mark.parametrize("change, passed", [
    ({}, True), ({"best__delimiter": 0.69}, False), ({"best__rare_target": None}, False),
    ({"best__syntactic": 0.79}, False), ({"best__syntactic": 0.85}, True),
    ({"accuracy__copy": 0.949}, False)])
def test_passes_needs_every_role_the_margin_and_every_accuracy(change, passed):
    run = _run(**change)
    run["syntactic_baseline"] = 0.6  # the verb -> subject head must reach 0.8
    assert toy_sweep.passes(run) is passed


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "runs.jsonl"
    seen = []
    runs = toy_sweep.sweep({"a": {}, "b": {"closer_loss": 0.0, "grammar": {"repeat_prob": 0.0}}},
                           seeds=[0, 1], steps=3, base=TINY, out=out, on_run=seen.append)
    return runs, out, seen


@pytest.mark.slow  # trains models (a few steps each)
def test_sweep_writes_one_line_per_run_in_grid_order(tiny_sweep):
    runs, out, seen = tiny_sweep
    assert [(r["variant"], r["seed"]) for r in runs] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert toy_sweep.read_jsonl(out) == runs == seen
    for run in runs:
        assert run["steps"] == 3 and run["threads"] == 1
        assert set(run["accuracy"]) == set(lang.SUBTASKS)
        assert set(run["best"]) >= set(toy_sweep.GROWN_ROLES)
        assert run["pass"] == toy_sweep.passes(run)
        json.dumps(run, allow_nan=False)  # NaN (a role the grammar cannot measure) is null
    assert runs[2]["changes"] == {"closer_loss": 0.0, "grammar": {"repeat_prob": 0.0}}


def test_a_run_is_deterministic_for_its_seed(tiny_sweep):
    runs, _, _ = tiny_sweep
    again = toy_sweep.run_one("a", {}, seed=1, steps=3, base=TINY)
    assert again["best"] == runs[1]["best"] and again["accuracy"] == runs[1]["accuracy"]
    assert runs[0]["best"] != runs[1]["best"]


def test_summary_gives_min_median_max_over_seeds(tiny_sweep):
    runs, _, _ = tiny_sweep
    summary = toy_sweep.summarize(runs)
    assert summary["a"]["seeds"] == [0, 1] and summary["b"]["steps"] == [3]
    local = [r["best"]["local"] for r in runs if r["variant"] == "b"]
    assert summary["b"]["roles"]["local"] == (min(local), statistics.median(local), max(local))
    table = toy_sweep.format_summary(runs).splitlines()
    assert len(table) == 2 + 2 and table[2].startswith("| a | 0 1 |")
    assert f"{min(local):.2f} / {statistics.median(local):.2f} / {max(local):.2f}" in table[3]


@pytest.mark.slow  # spawns two fresh Python processes (~30 s on 2 busy cores)
def test_parallel_workers_give_the_same_runs_as_one_process(tiny_sweep):
    runs, _, _ = tiny_sweep
    parallel = toy_sweep.sweep({"a": {}}, seeds=[0, 1], steps=3, base=TINY, workers=2)
    for serial, other in zip(runs[:2], parallel):
        assert (other["seed"], other["best"], other["accuracy"]) == (
            serial["seed"], serial["best"], serial["accuracy"])


def test_an_unknown_variant_is_refused_before_training():
    with pytest.raises(ValueError, match="unknown variant 'postln'"):
        toy_sweep.sweep(["postln"], seeds=[0])


# ------------------------------------------------------------------ seeds, command, shipped file
@pytest.mark.parametrize("words, seeds", [
    (["0-19"], list(range(20))), (["0", "1", "2"], [0, 1, 2]),
    (["0-4", "10-14"], [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]), (["7", "3-4"], [7, 3, 4]),
    ([5, 6], [5, 6]), (["2-2"], [2])])
def test_seeds_are_numbers_and_rising_ranges(words, seeds):
    assert toy_sweep.parse_seeds(words) == seeds


@pytest.mark.parametrize("words, message", [
    (["5-2"], "rising range.*'5-2'"), (["x"], "'x'"), (["1-"], "'1-'"), (["-1"], "'-1'"),
    (["0-3", "2"], r"twice: \[2\]"), ([], "expected seeds"), (["1.5"], "'1.5'")])
def test_bad_seeds_are_refused_by_name(words, message):
    with pytest.raises(ValueError, match=message):
        toy_sweep.parse_seeds(words)


def _parser():
    return toy_sweep.add_arguments(argparse.ArgumentParser())


def test_the_command_line_refuses_bad_seeds_before_training(capsys):
    args = _parser().parse_args(["--seeds", "0-4", "5-2"])
    assert toy_sweep.run_cli(args) == 2
    assert "'5-2'" in capsys.readouterr().err
    assert toy_sweep.parse_seeds(_parser().parse_args([]).seeds) == [0, 1, 2, 3, 4]


def _row(variant="default", changes=None, seed=0, steps=40, threads=1, **scores):
    best = {r: 0.9 for r in toy_sweep.GROWN_ROLES} | scores
    return {"variant": variant, "changes": {} if changes is None else changes, "seed": seed,
            "steps": steps, "threads": threads, "best": best,
            "where": {r: "L1H0" for r in best}, "control": {r: 0.1 for r in best},
            "accuracy": {t: 0.99 for t in lang.SUBTASKS}, "date": "2026-12-05"}


@pytest.mark.parametrize("variants, settings, seeds, steps, threads", [
    ({"default": {}}, [], list(range(20)), 600, 1),
    ({"pre_ln": {"post_ln": False}, "name_in_modifier": {"grammar": {"name_in_modifier": True}}},
     [], [0, 1, 2, 3, 7, 9, 10], 40, 2),
    ({"default": {"closer_loss": 0.5, "grammar": {"repeat_prob": 0.3}},
      "pre_ln": {"post_ln": False, "closer_loss": 0.5, "grammar": {"repeat_prob": 0.3}}},
     ["closer_loss=0.5", "grammar.repeat_prob=0.3"], [4], 7, 1)])
def test_the_sweep_command_reads_back_as_the_grid_of_its_rows(variants, settings, seeds, steps,
                                                              threads):
    names = [v if not settings else f"{v}+{'+'.join(settings)}" for v in variants]
    runs = [_row(name, changes, seed, steps, threads)
            for name, changes in zip(names, variants.values()) for seed in seeds]
    command = toy_sweep.sweep_command(runs, out="out dir/sweep.jsonl")
    words = shlex.split(command)
    assert words[:4] == ["python", "-m", "mha_course", "sweep-toy"]
    args = _parser().parse_args(words[4:])
    assert args.variants == list(variants) and args.set == settings
    assert toy_sweep.parse_seeds(args.seeds) == seeds
    assert (args.steps, args.threads, args.out) == (steps, threads, Path("out dir/sweep.jsonl"))
    assert len(args.seeds) == len(toy_sweep._seed_words(seeds)) <= len(seeds)  # ranges, not lists
    table = toy_sweep._cli_table(args.variants, args.set)  # what the command would train
    assert [(r["variant"], r["changes"]) for r in runs] == [
        (name, table[name]) for name in names for _ in seeds]


@pytest.mark.parametrize("runs, message", [
    ([_row(seed=0), _row(seed=1), _row("pre_ln", {"post_ln": False}, seed=0)], "one sweep"),
    ([_row(seed=0, steps=40), _row(seed=1, steps=50)], "one sweep"),
    ([_row(seed=0, threads=1), _row(seed=1, threads=2)], "one sweep"),
    ([_row("pre_ln", {})], "not those of variants"), ([], "one sweep")])
def test_the_sweep_command_refuses_rows_that_no_command_wrote(runs, message):
    with pytest.raises(ValueError, match=message):
        toy_sweep.sweep_command(runs)


def test_the_shipped_sweep_lives_in_the_package_data_and_its_command_writes_it():
    package = Path(toy_sweep.__file__).parents[1]
    assert toy_sweep.SHIPPED_SWEEP.relative_to(package).match("data/*/*")  # pyproject's glob
    args = _parser().parse_args(shlex.split(toy_sweep.SWEEP_COMMAND)[4:])
    assert toy_sweep.parse_seeds(args.seeds) == list(range(20))
    assert (package.parent / args.out).resolve() == toy_sweep.SHIPPED_SWEEP.resolve()


def test_load_sweep_names_the_command_of_a_missing_file_and_refuses_repeats(tmp_path,
                                                                           monkeypatch):
    with pytest.raises(FileNotFoundError, match="no sweep file at .*sweep-toy"):
        toy_sweep.load_sweep(tmp_path / "none.jsonl")
    monkeypatch.setattr(toy_sweep, "SHIPPED_SWEEP", tmp_path / "shipped.jsonl")
    with pytest.raises(FileNotFoundError, match=re.escape(toy_sweep.SWEEP_COMMAND)):
        toy_sweep.load_sweep()
    rows = [_row(seed=0), _row(seed=1)]
    (tmp_path / "shipped.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert toy_sweep.load_sweep() == rows
    (tmp_path / "twice.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 2))
    with pytest.raises(ValueError, match=r"more than once: \[\('default', 0\)"):
        toy_sweep.load_sweep(tmp_path / "twice.jsonl")


def test_the_progress_bar_counts_runs_below_one_printed_line_per_run(monkeypatch, capsys):
    monkeypatch.setattr(toy_sweep, "run_one", lambda variant, changes, seed, *rest: _row(
        variant, changes, seed))
    runs = toy_sweep.sweep(["default"], seeds=[0, 1, 2], progress=True,
                           on_run=lambda run: print(f"seed {run['seed']} done"))
    out, err = capsys.readouterr()
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert out.splitlines() == ["seed 0 done", "seed 1 done", "seed 2 done"]
    assert "runs" in err and "3/3" in err
    toy_sweep.sweep(["default"], seeds=[0])
    assert capsys.readouterr().err == ""  # no bar unless asked


# A tiny recipe as a variant's changes, so that `rerun` (which starts from the shipped recipe)
# trains the same tiny model as `run_one`.
TINY_CHANGES = {"n_layers": 1, "n_heads": 2, "d_model": 16, "d_k": 8, "d_v": 8, "d_ff": 32,
                "n_train_sentences": 120, "n_eval_sentences": 30, "batch_size": 8}


def test_rerun_trains_a_row_again_and_gets_the_same_row():
    row = json.loads(json.dumps(toy_sweep.run_one("tiny", TINY_CHANGES, seed=2, steps=3)))
    again = toy_sweep.rerun(row)
    assert {k: again[k] for k in ("variant", "changes", "seed", "steps", "threads")} == {
        "variant": "tiny", "changes": TINY_CHANGES, "seed": 2, "steps": 3, "threads": 1}
    for key in ("best", "where", "accuracy", "control", "pass"):
        assert again[key] == row[key], key


# --------------------------------------------------------------------- the shipped 20-seed sweep
ROLE_TOLERANCE, ACCURACY_TOLERANCE = 0.1, 0.03  # how far a rerun may drift on another CPU


def robustness(run: dict) -> float:
    """The smallest distance of the run from a pass threshold, in units of the rerun's tolerance:
    above 1, no drift within the tolerances can flip whether it passes."""
    best, margin = run["best"], toy_sweep.SYNTACTIC_MARGIN
    gaps = [(best[r] - toy_sweep.ROLE_MIN) / ROLE_TOLERANCE if best[r] is not None
            else -math.inf for r in toy_sweep.GROWN_ROLES]
    for role, key in (("syntactic", "syntactic_baseline"), ("rare_word", "rare_word_baseline")):
        if run.get(key) is not None and best.get(role) is not None:
            gaps.append((best[role] - run[key] - margin) / ROLE_TOLERANCE)
    gaps += [(a - toy_sweep.ACCURACY_MIN) / ACCURACY_TOLERANCE if a is not None else -math.inf
             for a in run["accuracy"].values()]
    return min(gaps)


def test_robustness_is_the_nearest_threshold_in_tolerances():
    assert robustness(_row()) == pytest.approx(min(0.2 / 0.1, 0.04 / 0.03))
    assert robustness(_row(local=0.75)) == pytest.approx(0.5)
    assert robustness(_row(delimiter=0.6)) == pytest.approx(-1.0)
    assert robustness(_row(coreference=None)) == -math.inf
    assert robustness(_row(syntactic=0.85) | {"syntactic_baseline": 0.6}) == pytest.approx(0.5)


def check_rerun(runs) -> dict:
    """Retrain the most robust row of `runs` and compare: every role score within
    ROLE_TOLERANCE, every sub-task accuracy within ACCURACY_TOLERANCE, and the same pass when
    the row sits at least one tolerance from every threshold (nearer, another CPU's float sums
    may legitimately flip it while every number stays within tolerance). Returns the row."""
    row = max(runs, key=robustness)
    again = toy_sweep.rerun(row)
    if robustness(row) >= 1:
        assert again["pass"] == row["pass"], f"seed {row['seed']}: pass {again['pass']} vs {row}"
    for key, tolerance in (("best", ROLE_TOLERANCE), ("accuracy", ACCURACY_TOLERANCE)):
        for name, value in row[key].items():
            new = again[key][name]
            assert (new is None) == (value is None), f"seed {row['seed']} {key} {name}: {new}"
            assert value is None or abs(new - value) <= tolerance, (
                f"seed {row['seed']}: {key} {name} is {new} now, {value} in the file")
    return row


@pytest.mark.slow  # trains the shipped recipe once, for its full number of steps
def test_the_shipped_sweep_reproduces_its_most_robust_row():
    # fails (not skips), naming the command that writes it, while the sweep is not shipped
    check_rerun(toy_sweep.load_sweep())

"""Seed sweeps of the toy recipe (`experiments.toy_sweep`, `python -m mha_course sweep-toy`)."""

from __future__ import annotations

import json
import statistics

import pytest

from mha_course.experiments import toy_sweep
from mha_course.models import toy_language as lang
from mha_course.models import toy_model

TINY = toy_model.ToyConfig(n_layers=1, n_heads=2, d_model=16, d_k=8, d_ff=32,
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
           "accuracy": {t: 0.99 for t in lang.SUBTASKS}}
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

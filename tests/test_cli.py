"""The command line: `python -m mha_course train-toy` writes a loadable checkpoint with its head
report; the experiment commands run, refuse bad input, and `sweep-toy` writes its JSONL."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from mha_course.models import toy_language, toy_model


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mha_course", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "train-toy" in result.stdout


def test_train_toy_writes_checkpoint_config_and_heads(tmp_path):
    out = tmp_path / "run"
    result = run_cli("train-toy", "--seed", "3", "--out", str(out), "--steps", "30", "--quiet")
    assert result.returncode == 0, result.stderr
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "heads.json"}
    summary = json.loads(result.stdout)
    assert summary["steps"] == 30
    heads = json.loads((out / "heads.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert len(heads["heads"]) == config["n_layers"] * config["n_heads"]
    assert set(heads["best"]) == {"local", "syntactic", "delimiter", "coreference", "rare_word",
                                  "rare_target", "identity", "duplicate"}

    model = toy_model.load(out)
    sentence = toy_language.generate(1, seed=5)[0]
    A = model.attention(sentence)  # (n_layers, n_heads, n, n)
    assert A.shape == (config["n_layers"], config["n_heads"], len(sentence.tokens),
                       len(sentence.tokens))
    np.testing.assert_allclose(A.sum(-1), 1.0, atol=1e-5)


def test_train_toy_needs_an_output_folder():
    result = run_cli("train-toy", "--seed", "0")
    assert result.returncode == 2
    assert "--out" in result.stderr


def test_several_heads_command_prints_equal_parameters_per_head_count():
    result = run_cli("several-heads", "--seeds", "0", "--steps", "3", "--head-counts", "1", "4")
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    counts = json.loads(first.split("parameters per model: ")[1].split(" (equal)")[0])
    assert len(counts) == 2 and counts[0] == counts[1]
    assert "1 head(s): both right" in result.stdout and "4 head(s): both right" in result.stdout


def test_compare_heads_command_refuses_a_head_count_that_does_not_divide_d_model():
    result = run_cli("compare-heads", "--head-counts", "3", "--steps", "1", "--seeds", "0")
    assert result.returncode == 2
    assert "3" in result.stdout + result.stderr


def test_help_lists_the_experiment_commands():
    result = run_cli("--help")
    assert "compare-heads" in result.stdout and "several-heads" in result.stdout
    assert "sweep-toy" in result.stdout


def test_train_toy_ablation_is_listed_and_needs_an_output_file():
    assert "train-toy-ablation" in run_cli("--help").stdout
    result = run_cli("train-toy-ablation", "--seeds", "0")
    assert result.returncode == 2 and "--out" in result.stderr


def test_sweep_toy_trains_a_grid_writes_jsonl_and_summarizes_it(tmp_path):
    out = tmp_path / "sweep.jsonl"
    tiny = ["n_layers=1", "n_heads=2", "d_model=16", "d_k=8", "d_ff=32", "batch_size=8",
            "n_train_sentences=100", "n_eval_sentences=20", "grammar.repeat_prob=0.3"]
    result = run_cli("sweep-toy", "--variants", "default", "no_closer", "--seeds", "0", "--steps",
                     "2", "--set", *tiny, "--out", str(out))
    assert result.returncode == 0, result.stderr
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["variant"].split("+")[0] for r in runs] == ["default", "no_closer"]
    assert runs[1]["changes"]["closer_loss"] == 0.0
    assert runs[0]["changes"]["grammar"] == {"repeat_prob": 0.3}
    assert all(r["steps"] == 2 and r["seed"] == 0 for r in runs)
    table = run_cli("sweep-toy", "--summarize", str(out))
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].startswith("| variant | seeds | pass |")
    assert len(table.stdout.splitlines()) == 4


def test_sweep_toy_refuses_unknown_variants_and_settings():
    result = run_cli("sweep-toy", "--variants", "postln")
    assert result.returncode == 2 and "postln" in result.stderr
    result = run_cli("sweep-toy", "--set", "closer_weight=1")
    assert result.returncode == 2 and "closer_weight" in result.stderr


def test_prune_toy_prints_the_table_and_writes_curves(tmp_path):
    out = tmp_path / "curves.json"
    result = run_cli("prune-toy", "--sentences", "4", "--n-random", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "importance" in result.stdout and "reverse" in result.stdout
    data = json.loads(out.read_text())
    n_total = data["n_total"]
    assert n_total == 16 and data["n_removed"] == list(range(n_total + 1))
    assert np.shape(data["importance"]) == (2, 8)
    for name, runs in data["curves"].items():  # every order starts at the full model's accuracy
        assert np.shape(runs) == ((1, n_total + 1)), name
        assert runs[0][0] == data["curves"]["importance"][0][0]
    # removing every head leaves the same model whatever the order
    assert len({runs[0][-1] for runs in data["curves"].values()}) == 1
    assert sorted(data["orders"]["importance"][0]) == list(range(n_total))
    refused = run_cli("prune-toy", "--sentences", "0")
    assert refused.returncode == 2 and "n_sentences must be >= 1; got 0" in refused.stderr

"""`python -m mha_course train-toy` writes a loadable checkpoint with its head report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np


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

    from mha_course.models import toy_language, toy_model

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


def test_train_toy_ablation_is_listed_and_needs_an_output_file():
    assert "train-toy-ablation" in run_cli("--help").stdout
    result = run_cli("train-toy-ablation", "--seeds", "0")
    assert result.returncode == 2 and "--out" in result.stderr

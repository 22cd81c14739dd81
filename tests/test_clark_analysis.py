"""Notebook 05's any-folder cell: `experiments.clark.analyse_model_dir` on random BERT folders
(built as in test_load_bert.py), and the published Clark et al. numbers beside a measured table.

Oracles: the attention parked on [CLS] and [SEP] recomputed from `model.run` directly; the
fixed-offset baselines, which depend on the parses and the tokenizer's words, not on the weights:
equal for two models that share a tokenizer, while their heads' accuracies differ.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_load_bert import SHAPES, make_folder

from mha_course.analysis import alignment, syntax
from mha_course.analysis.published import (
    CLARK_2019_TABLE1,
    clark_comparison,
    clark_comparison_lines,
    paper_head,
)
from mha_course.experiments.clark import analyse_model_dir, model_dir
from mha_course.models.bert import load_bert

TEXTS = alignment.load_corpus()[:40]  # sentences 6, 7, 10 ... carry coreference annotations


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    name = "3x4_uncased_vocab_safetensors"
    folders = {key: make_folder(tmp_path_factory.mktemp(key), name, SHAPES[name], seed)[0]
               for key, seed in (("seed 0", 0), ("seed 1", 1))}
    parses = alignment.parse(TEXTS)
    results = {name: analyse_model_dir(str(folder), texts=TEXTS, parses=parses, environ={})
               for name, folder in folders.items()}
    return folders, results


def test_model_dir_comes_from_the_argument_or_the_environment(tmp_path):
    assert model_dir(None, environ={}) is None and model_dir("  ", environ={}) is None
    assert model_dir(None, environ={"MODEL_DIR": str(tmp_path)}) == tmp_path
    assert model_dir(tmp_path, environ={"MODEL_DIR": "/elsewhere"}) == tmp_path
    assert analyse_model_dir(environ={}) is None  # nothing named: the notebook prints a message
    with pytest.raises(TypeError, match="MODEL_DIR must be a str or Path"):
        model_dir(3)


def test_the_analysis_of_a_random_bert(setup):
    folders, results = setup
    name = "3x4_uncased_vocab_safetensors"
    result = results["seed 0"]
    assert (result.n_layers, result.n_heads, result.n_texts) == (3, 4, len(TEXTS))
    assert result.name.startswith(f"{name} (Bert(backend='numpy'")
    assert {r["relation"] for r in result.rows} == set(syntax.RELATIONS)
    assert result.report.coreference is not None and result.report.coreference.n_links > 0
    assert all(result.scores[role].shape == (3, 4) for role in ("local", "syntactic", "duplicate"))
    assert all(v.shape == (3,) for v in result.profile.values())
    # parking, recomputed from the model's own attention
    cache = load_bert(folders["seed 0"]).run(TEXTS)
    for token, column in (("[CLS]", lambda A, n: A[..., 1:n - 1, 0]),
                          ("[SEP]", lambda A, n: A[..., 1:n - 1, n - 1])):
        rows = np.concatenate([column(cache.attention_of(b), n).transpose(2, 0, 1)
                               for b, n in enumerate(cache.lengths)])  # (queries, L, H)
        np.testing.assert_allclose(result.sink_by_layer[token], rows.mean(axis=(0, 2)), atol=1e-6)
    lines = result.summary_lines()
    assert any("coreference: pronoun → antecedent" in line for line in lines)
    assert "beside the published BERT-base numbers (percent):" in lines


def test_baselines_do_not_depend_on_the_weights(setup):
    _, results = setup
    a, b = results.values()
    assert [r["baseline_accuracy"] for r in a.rows] == [r["baseline_accuracy"] for r in b.rows]
    assert [r["accuracy"] for r in a.rows] != [r["accuracy"] for r in b.rows]


def test_an_unsupported_folder_is_named(setup, tmp_path):
    folder = setup[0]["seed 0"]
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(ValueError, match="model_type='roberta'"):
        analyse_model_dir(tmp_path, environ={})
    with pytest.raises(FileNotFoundError, match="no config.json"):
        analyse_model_dir(folder.parent, environ={})


def test_comparison_takes_the_papers_direction_and_labels_the_paper():
    rows = [{"relation": rel, "direction": d, "direction_words": d, "best_head": name,
             "accuracy": acc, "baseline_accuracy": 0.5, "n_arcs": 10}
            for rel, d, name, acc in (("det", "dep_to_head", "L1H2", 0.9),
                                      ("det", "head_to_dep", "L0H0", 0.95),
                                      ("pobj", "dep_to_head", "L0H1", 0.8),
                                      ("pobj", "head_to_dep", "L2H2", 0.7),
                                      ("conj", "dep_to_head", "L0H0", 0.5))]  # conj: not in it
    pobj, det = clark_comparison(rows)  # in the paper's table's order
    assert (det["relation"], det["best_head"], det["accuracy"]) == ("det", "L1H2", 0.9)
    assert (pobj["relation"], pobj["best_head"], pobj["accuracy"]) == ("pobj", "L2H2", 0.7)
    (layer, head), _, accuracy, baseline = CLARK_2019_TABLE1["det"]
    assert (det["paper_head"], det["paper_accuracy"]) == (f"L{layer}H{head}", accuracy)
    assert paper_head(7, 10) == "8-11" and det["paper_label"] == paper_head(layer, head)
    lines = clark_comparison_lines([det])
    assert "BERT-base (paper: Clark et al. 2019, Table 1)" in lines[0]
    assert "MiniLM (measured)" in lines[0]
    assert lines[2].split() == ["det", "dep", "→", "head", "|", "L1H2", "90.0", "50.0", "|",
                                f"L{layer}H{head}", f"({paper_head(layer, head)})",
                                f"{accuracy:.1f}", f"{baseline:.1f}"]
    with pytest.raises(TypeError, match="clark_rows"):
        clark_comparison("det")

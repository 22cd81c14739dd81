"""Multi- vs single-head on the toy language at the same parameter count: the comparison trains
what it says, and its command prints the table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mha_course.experiments import head_counts as M
from mha_course.models import toy_language as lang

TINY = dict(d_model=16, n_layers=1, d_ff=32, n_train_sentences=60, n_eval_sentences=10,
            batch_size=8)


@pytest.mark.slow  # trains a model per head count
def test_compare_head_counts_on_tiny_models():
    config = M.comparison_config(**TINY, d_v=12)  # each head count sets d_k = d_v itself
    sentences = lang.generate(12, seed=5)
    result = M.compare_head_counts(head_counts=(4, 1), seeds=(0, 1), steps=2, config=config,
                                   eval_sentences=sentences)
    assert result.head_counts == (4, 1) and result.steps == 2
    assert result.n_params[0] == result.n_params[1] > 0  # same parameter count, by construction
    assert set(result.accuracy) == set(lang.SUBTASKS)
    for table in result.accuracy.values():
        assert table.shape == (2, 2)
    np.testing.assert_allclose(result.mean_accuracy,
                               np.nanmean(np.stack(list(result.accuracy.values())), axis=0))
    assert (result.seconds > 0).all()
    rows = result.rows()
    assert len(rows) == 2 * (len(lang.SUBTASKS) + 1)
    first = rows[0]
    assert (first["n_heads"], first["d_k"]) == (4, 4) and len(first["runs"]) == 2
    assert first["mean"] == pytest.approx(np.mean(first["runs"]), abs=1e-4)
    # the same seed and head count train the same model: the comparison is reproducible
    again = M.compare_head_counts(head_counts=(4,), seeds=(0,), steps=2, config=config,
                                  eval_sentences=sentences)
    for task in lang.SUBTASKS:  # NaN (no position of that sub-task) equals NaN here
        np.testing.assert_array_equal(again.accuracy[task][0], result.accuracy[task][0, :1])
    # the printed table carries one line per sub-task plus the mean, with each head count's mean
    table = M.format_table(result).splitlines()
    assert len(table) == 2 + len(lang.SUBTASKS) + 1
    mean_line = table[-1].split()
    assert mean_line[0] == "mean"
    assert float(mean_line[1]) == pytest.approx(result.mean_accuracy[0].mean(), abs=5e-4)
    assert float(mean_line[4]) == pytest.approx(result.mean_accuracy[1].mean(), abs=5e-4)


def test_compare_head_counts_refuses_heads_that_do_not_divide_d_model():
    with pytest.raises(ValueError, match="head_counts must divide d_model = 64"):
        M.compare_head_counts(head_counts=(3, 1))
    with pytest.raises(ValueError, match="seeds be non-empty"):
        M.compare_head_counts(seeds=())
    with pytest.raises(ValueError, match="steps must be a positive int"):
        M.compare_head_counts(steps=0)


@pytest.mark.slow  # trains two toy models end to end: about 7 s on 2 busy cores
def test_command_prints_the_table_and_writes_json(capsys, tmp_path):
    out = tmp_path / "table.json"
    code = M.main(["--steps", "1", "--seeds", "0", "--head-counts", "4", "1",
                   "--train-sentences", "40", "--eval-sentences", "8", "--threads", "1",
                   "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "4 heads of 16" in printed and "1 head of 64" in printed
    assert all(task in printed for task in lang.SUBTASKS)
    written = json.loads(out.read_text())
    assert written["steps"] == 1 and written["seeds"] == [0]
    assert written["n_params"][0] == written["n_params"][1]


def test_command_reports_bad_head_counts(capsys):
    assert M.main(["--head-counts", "3", "--steps", "1"]) == 2
    assert "head_counts must divide d_model = 64" in capsys.readouterr().out

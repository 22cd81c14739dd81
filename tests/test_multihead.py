"""Multi- vs single-head at the same parameter count: the comparison trains what it says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mha_course import toy_language as lang
from mha_course.analysis import multihead as M

torch.set_num_threads(1)


def test_compare_head_counts_on_tiny_models():
    config = M.comparison_config(d_model=16, n_layers=1, d_ff=32, n_train_sentences=60,
                                 n_eval_sentences=10, batch_size=8)
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


def test_compare_head_counts_refuses_heads_that_do_not_divide_d_model():
    with pytest.raises(ValueError, match="head_counts must divide d_model = 64"):
        M.compare_head_counts(head_counts=(3, 1))
    with pytest.raises(ValueError, match="seeds be non-empty"):
        M.compare_head_counts(seeds=())

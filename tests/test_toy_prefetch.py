"""Training batches made ahead in a background thread: the same batches in the same order, errors
raised where the batch is asked for, and a thread that stops when told."""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch

from mha_course.models import toy_language as lang
from mha_course.models import toy_model
from mha_course.models.toy_model import training as toy_train
from mha_course.models.toy_model.prefetch import prefetch

TINY = toy_model.ToyConfig(n_layers=1, n_heads=2, d_model=16, d_k=8, d_ff=32,
                           n_train_sentences=50, n_eval_sentences=10, batch_size=6)


def test_prefetch_yields_every_item_in_order_then_stops():
    items = prefetch(iter(range(100)), ahead=3)
    assert list(items) == list(range(100))
    with pytest.raises(StopIteration):
        next(items)
    items.close()


def test_an_error_in_the_producer_is_raised_by_next():
    def broken():
        yield 1
        raise ValueError("batch 2 is bad")

    items = prefetch(broken())
    assert next(items) == 1
    for _ in range(2):  # and again on every later call
        with pytest.raises(ValueError, match="batch 2 is bad"):
            next(items)
    items.close()


def test_close_stops_a_producer_waiting_on_a_full_queue():
    items = prefetch(itertools.count(), ahead=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()  # the endless producer is blocked on the full queue: it must still end
    assert not items._thread.is_alive()


def test_training_batches_are_fixed_by_the_seed_and_packed():
    pool = lang.generate(TINY.n_train_sentences, seed=0)
    first = toy_train.training_batches(TINY, pool, np.random.default_rng(5))
    again = prefetch(toy_train.training_batches(TINY, pool, np.random.default_rng(5)))
    other = toy_train.training_batches(TINY, pool, np.random.default_rng(6))
    for _ in range(3):
        a, b, c = next(first), next(again), next(other)
        assert isinstance(a, toy_train.Packed)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert not torch.equal(a.ids, c.ids) or not torch.equal(a.targets, c.targets)
        assert a.ids.shape[1] == TINY.max_len  # rows of max_len tokens
        # every sentence of the batch is packed: as many [CLS] tokens as sentences
        assert int((a.targets == lang.TOKEN_TO_ID[lang.CLS]).sum()) == TINY.batch_size
    again.close()


@pytest.mark.slow  # trains a tiny model twice
def test_a_seconds_budget_ends_training_and_its_producer():
    before = threading.active_count()
    _, report = toy_model.train(replace(TINY, steps=10_000), seed=0, seconds=1.0,
                                progress=False)
    assert 0 < report["steps"] < 10_000
    assert threading.active_count() == before  # the batch producer ended with the run

"""The training batches of a run: fixed by the seed, packed, every sentence in them."""

from __future__ import annotations

import numpy as np
import torch

from mha_course.models import toy_language as lang
from mha_course.models import toy_model
from mha_course.models.toy_model import training as toy_train

TINY = toy_model.ToyConfig(n_layers=1, n_heads=2, d_model=16, d_k=8, d_v=8, d_ff=32,
                           n_train_sentences=50, n_eval_sentences=10, batch_size=6)


def test_training_batches_are_fixed_by_the_seed_and_packed():
    pool = lang.generate(TINY.n_train_sentences, seed=0)
    first = toy_train.training_batches(TINY, pool, np.random.default_rng(5))
    again = toy_train.training_batches(TINY, pool, np.random.default_rng(5))
    other = toy_train.training_batches(TINY, pool, np.random.default_rng(6))
    for _ in range(3):
        a, b, c = next(first), next(again), next(other)
        assert isinstance(a, toy_train.Packed)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert not torch.equal(a.ids, c.ids) or not torch.equal(a.targets, c.targets)
        assert a.ids.shape[1] == TINY.max_len  # rows of max_len tokens
        # every sentence of the batch is packed: as many [CLS] tokens as sentences
        assert int((a.targets == lang.TOKEN_TO_ID[lang.CLS]).sum()) == TINY.batch_size


def test_draw_batch_gives_the_sentences_and_their_corrupted_arrays():
    pool = lang.generate(TINY.n_train_sentences, seed=0)
    batch, (inputs, targets, loss_mask, lengths) = toy_train.draw_batch(
        TINY, pool, np.random.default_rng(5))
    assert len(batch) == TINY.batch_size and all(s in pool for s in batch)
    assert inputs.shape == targets.shape == loss_mask.shape == (TINY.batch_size, lengths.max())
    assert lengths.tolist() == [len(s) for s in batch]
    # the targets are the clean sentences, padded
    assert all(targets[b, :len(s)].tolist() == lang.encode(s.tokens) for b, s in enumerate(batch))

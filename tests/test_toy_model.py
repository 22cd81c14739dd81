"""The toy Transformer: shapes, attention rows, determinism, saving, and the heads it learns."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from mha_course import toy_language as lang
from mha_course import toy_model
from mha_course.analysis import heads as H

TINY = toy_model.ToyConfig(n_layers=2, n_heads=2, d_model=16, d_k=8, d_ff=32,
                           n_train_sentences=200, n_eval_sentences=40, batch_size=8)


@pytest.fixture(scope="module")
def fresh_corpus():
    """Sentences that no checkpoint saw during training (training uses seeds < 10 000 + 100)."""
    return lang.generate(400, seed=424_242)


@pytest.fixture(scope="module")
def shipped():
    return toy_model.load(None)


def test_forward_shapes():
    torch.manual_seed(0)
    model = toy_model.ToyTransformer(TINY)
    ids, lengths = lang.pad_batch(lang.generate(3, seed=0))
    out = model(torch.from_numpy(ids), torch.from_numpy(lengths))
    batch, n = ids.shape
    assert out.logits.shape == (batch, n, TINY.vocab_size)
    assert out.weights.shape == (TINY.n_layers, batch, TINY.n_heads, n, n)
    assert out.heads.shape == (TINY.n_layers, batch, TINY.n_heads, n, TINY.d_k)
    # padding keys get no weight
    for b, length in enumerate(lengths):
        assert torch.all(out.weights[:, b, :, :, length:] == 0)


def test_attention_of_a_sentence_is_row_stochastic(shipped):
    sentence = lang.generate(1, seed=5)[0]
    A = shipped.attention(sentence)
    n = len(sentence)
    assert A.shape == (shipped.config.n_layers, shipped.config.n_heads, n, n)
    np.testing.assert_allclose(A.sum(-1), 1.0, atol=1e-5)
    assert (A >= 0).all()
    # a plain token list works too, and an unknown word is named in the error
    np.testing.assert_allclose(shipped.attention(sentence.tokens), A)
    with pytest.raises(KeyError, match="zebra"):
        shipped.attention(["[CLS]", "zebra", "[SEP]"])


def test_training_is_deterministic_for_a_seed():
    _, rep_a = toy_model.train(TINY, seed=3, steps=5, progress=False)
    model_a, _ = toy_model.train(TINY, seed=3, steps=5, progress=False)
    model_b, _ = toy_model.train(TINY, seed=3, steps=5, progress=False)
    model_c, _ = toy_model.train(TINY, seed=4, steps=5, progress=False)
    for (name, a), b, c in zip(model_a.state_dict().items(), model_b.state_dict().values(),
                               model_c.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between two runs with the same seed"
    assert any(not torch.equal(a, c) for a, c in zip(model_a.state_dict().values(),
                                                     model_c.state_dict().values()))
    assert rep_a["steps"] == 5


def test_save_load_round_trip(tmp_path):
    model, report = toy_model.train(TINY, seed=0, steps=3, progress=False, out_dir=tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"model.safetensors", "config.json", "heads.json"}
    again = toy_model.load(tmp_path)
    assert again.config == model.config
    sentence = lang.generate(1, seed=1)[0]
    np.testing.assert_array_equal(again.attention(sentence), model.eval().attention(sentence))
    heads = json.loads((tmp_path / "heads.json").read_text())
    assert len(heads["heads"]) == TINY.n_layers * TINY.n_heads
    assert set(heads["best"]) == set(H.ROLES) and set(heads["control"]) == set(H.ROLES)
    assert set(heads["accuracy"]) == set(lang.SUBTASKS)
    assert heads["training_steps"] == 3 and heads["training_seconds"] > 0
    assert "offset" in heads["syntactic_baseline"] and "score" in heads["syntactic_baseline"]


def test_shipped_checkpoint_is_small_and_documented():
    from importlib import resources
    folder = resources.files("mha_course") / "data" / toy_model.DEFAULT_CHECKPOINT
    assert len((folder / "model.safetensors").read_bytes()) <= 2 * 1024 * 1024
    heads = json.loads((folder / "heads.json").read_text())
    assert set(heads["best"]) == set(H.ROLES)
    assert heads["training_seconds"] > 0


@pytest.fixture(scope="module")
def shipped_scores(shipped, fresh_corpus):
    scores = H.head_scores(shipped.attentions(fresh_corpus), fresh_corpus)
    best = {role: float(np.nanmax(scores[role])) for role in H.ROLES}
    return scores, best


# The delimiter role does not reach 0.7 yet (research/toy_lab_log.md, round 2): strict, so that
# this marker must go when it does.
_NOT_YET = pytest.mark.xfail(strict=True, reason="no delimiter head >= 0.7 yet (issue 3)")


@pytest.mark.parametrize("role", [pytest.param(r, marks=_NOT_YET) if r == "delimiter" else r
                                  for r in H.ROLES])
def test_shipped_checkpoint_has_a_head_for_every_role(shipped_scores, role):
    _, best = shipped_scores
    assert best[role] >= 0.7, f"best {role} head scores {best[role]:.2f} on fresh sentences"


def test_shipped_syntactic_head_beats_the_offset_baseline(shipped_scores, fresh_corpus):
    _, best = shipped_scores
    _, baseline = H.fixed_offset_baseline(fresh_corpus)
    assert best["syntactic"] >= baseline + 0.2, (best["syntactic"], baseline)


@pytest.mark.parametrize("task", lang.SUBTASKS)
def test_shipped_checkpoint_solves_every_subtask(shipped, fresh_corpus, task):
    accuracy = toy_model.evaluate(shipped, fresh_corpus, seed=1)[task]
    assert accuracy >= 0.95, f"{task}: {accuracy:.3f}"


def test_random_init_control_scores_low(shipped, fresh_corpus):
    control = toy_model.random_init_control(shipped.config, fresh_corpus, seed=0)
    assert all(v < 0.3 for v in control.values()), control


@pytest.mark.slow
def test_a_short_fresh_run_shows_the_first_roles(fresh_corpus):
    """600 steps (~25 s on 2 cores): the name heads (coreference, rare word, copy) come first;
    the local head is on its way (0.59 here), verb->subject forms later (1000-1500 steps).
    Measured for seed 1: coreference 0.94, identity 0.99, rare word 0.81, local 0.59."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model, report = toy_model.train(seed=1, steps=600, progress=False)
    sentences = fresh_corpus[:200]
    scores = H.head_scores(model.attentions(sentences), sentences)
    best = {role: float(np.nanmax(scores[role])) for role in H.ROLES}
    assert best["coreference"] >= 0.7 and best["identity"] >= 0.7, best
    assert best["rare_word"] >= 0.6, best
    assert best["local"] >= 0.4, best  # random init: ~0.13
    assert all(v < 0.3 for v in report["control"].values()), report["control"]

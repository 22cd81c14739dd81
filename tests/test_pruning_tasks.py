"""The models' tasks for head importance (`models.toy_model.task.ToyTask`,
`models.minilm.task.MiniLMTask`) and the gates they rely on in each model: gates against zeroed
W^O blocks, the toy task against `toy_model.evaluate` and a forward hook, gate gradients against
finite differences, MiniLM's proxy against the model's own sentence embeddings."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import assert_close, numerical_grad
from torch.nn import functional as F

from mha_course.experiments import pruning as E
from mha_course.models import toy_language as lang
from mha_course.models import toy_model
from mha_course.models.minilm.task import MiniLMTask
from mha_course.models.toy_model.task import ToyTask
from mha_course.np_attention import padding_mask


def without_head(params, head):
    """params with head `head`'s row block of W^O set to zero: the head can no longer write."""
    W_O = np.array(params.W_O, copy=True)
    W_O[head * params.d_v:(head + 1) * params.d_v] = 0
    return replace(params, W_O=W_O)


# --------------------------------------------------------------------------- gates in the models
@pytest.fixture(scope="module")
def sentences():
    return lang.generate(40, seed=515_151)


@pytest.mark.slow  # the toy model, gated head by head
def test_toy_model_gates(shipped, sentences):
    ids, lengths = (torch.from_numpy(a) for a in lang.pad_batch(sentences[:8]))
    cfg = shipped.config
    with torch.no_grad():
        plain = shipped(ids, lengths)
        ones = shipped(ids, lengths, torch.ones(cfg.n_layers, cfg.n_heads))
        assert torch.equal(plain.logits, ones.logits) and torch.equal(plain.heads, ones.heads)
        gates = torch.ones(cfg.n_layers, cfg.n_heads)
        gates[1, 3] = 0.0
        gated = shipped(ids, lengths, gates)
        cut = copy.deepcopy(shipped)
        d_v = cut.blocks[1].attn.d_v
        cut.blocks[1].attn.W_O[3 * d_v:4 * d_v] = 0.0
        assert_close(gated.logits, cut(ids, lengths).logits, 1e-5, "zero gate vs zeroed W_O block")
        per_example = torch.ones(cfg.n_layers, len(ids), cfg.n_heads)  # (n_layers, batch, n_heads)
        per_example[1, 0, 3] = 0.0
        both = shipped(ids, lengths, per_example).logits
        assert_close(both[0], gated.logits[0], 1e-5, "example 0 gated")
        assert_close(both[1:], plain.logits[1:], 1e-5, "other examples untouched")
    with pytest.raises(ValueError, match=r"head_gates must .*\(n_layers, n_heads\) = \(2, 8\)"):
        shipped(ids, lengths, torch.ones(8))
    with pytest.raises(ValueError, match="head_gates must have shape"):
        shipped(ids, lengths, torch.ones(2, 7))


def test_minilm_gates(minilm_backends):
    texts = ["The dog barks.", "A quick brown fox jumps over the lazy dog."]
    encs = [minilm_backends["numpy"].encode(t) for t in texts]
    lengths = np.array([len(e.tokens) for e in encs])
    ids = np.zeros((2, lengths.max()), dtype=np.int64)
    for b, e in enumerate(encs):
        ids[b, :lengths[b]] = e.input_ids
    mask = padding_mask(lengths, ids.shape[1])
    n_layers, n_heads = 6, 12
    gates = np.ones((n_layers, n_heads))
    gates[2, 5] = 0.0
    numpy_model = minilm_backends["numpy"]
    cut_params = copy.copy(numpy_model.params)
    cut_params.layers = list(cut_params.layers)
    layer = cut_params.layers[2]
    cut_params.layers[2] = replace(layer, attention=without_head(layer.attention, 5))
    cut = type(numpy_model)(numpy_model.config, cut_params, numpy_model.tokenizer, "numpy",
                            "float32")
    expected = cut.forward(ids, mask=mask).hidden_states
    for backend, model in minilm_backends.items():
        plain = model.forward(ids, mask=mask)
        ones = model.forward(ids, mask=mask, head_gates=np.ones((n_layers, n_heads)))
        np.testing.assert_array_equal(plain.hidden_states, ones.hidden_states)
        gated = model.forward(ids, mask=mask, head_gates=gates)
        assert_close(gated.hidden_states, expected, 2e-4,
                     f"{backend}: zero gate vs zeroed W_O block")
        assert np.abs(gated.hidden_states[-1] - plain.hidden_states[-1]).max() > 1e-3
        with pytest.raises(ValueError,
                           match=r"head_gates must have shape \(n_layers, n_heads\) = \(6, 12\)"):
            model.forward(ids, mask=mask, head_gates=np.ones(n_heads))


# --------------------------------------------------------------------------- the toy task
@pytest.fixture(scope="module")
def toy_task(shipped, sentences):
    return ToyTask(shipped, sentences, seed=3)


@pytest.mark.slow  # every sub-task on 200 corrupted sentences
def test_toy_task_with_every_gate_open_is_toy_model_evaluate(toy_task, shipped, sentences):
    full = toy_task.evaluate()
    reference = toy_model.evaluate(shipped, sentences, seed=3)  # the same batches, drawn alike
    for task, accuracy in reference.items():
        assert full[task] == pytest.approx(accuracy, abs=1e-12), task
    assert full["accuracy"] == pytest.approx(np.nanmean(list(reference.values())))
    assert toy_task.evaluate(np.ones((2, 8)), "mean") == full


@pytest.mark.slow  # every head ablated, every sub-task
def test_toy_mean_ablation_replaces_the_head_by_its_mean(toy_task, shipped):
    """Reference: a forward hook that swaps Z_h W^O_h for mu_h W^O_h in the attention output."""
    layer, head = 0, 5
    mu = toy_task.head_means()[layer, head]  # (d_v,)
    attn = shipped.blocks[layer].attn
    d_v = attn.d_v
    W_h = attn.W_O[head * d_v:(head + 1) * d_v].detach()  # (d_v, d_model)

    def hook(module, args, out):
        change = (torch.as_tensor(mu) - out.heads[:, head]) @ W_h  # (batch, n, d_model)
        return out._replace(out=out.out + change)

    gates = np.ones((2, 8))
    gates[layer, head] = 0.0
    ours = toy_task.evaluate(gates, "mean")
    handle = attn.register_forward_hook(hook)
    try:
        reference = toy_task.evaluate(None)
    finally:
        handle.remove()
    for metric, value in reference.items():
        assert ours[metric] == pytest.approx(value, abs=1e-6), metric
    assert toy_task.evaluate() != ours  # the head matters, and the model is restored after
    # head means are the mean of Z over every real position
    Z = shipped(toy_task.inputs, toy_task.lengths).heads.detach()
    # Z: (n_layers, batch, n_heads, n, d_v)
    real = torch.arange(Z.shape[3])[None] < toy_task.lengths[:, None]
    np.testing.assert_allclose(toy_task.head_means()[layer, head],
                               Z[layer, :, head][real].mean(0).numpy(), atol=1e-5)


@pytest.mark.slow  # finite differences: two forward passes per gate
def test_gate_gradients_match_finite_differences(shipped, sentences):
    model = copy.deepcopy(shipped).double()
    task = ToyTask(model, sentences[:6], seed=4)
    grads = task.gate_gradients()  # (n_items, n_layers, n_heads)
    assert grads.shape == (len(task.lengths), 2, 8)
    def item_loss(item, gates):
        with torch.no_grad():
            logits = model(task.inputs[item:item + 1], task.lengths[item:item + 1],
                           torch.as_tensor(gates)).logits[0]
        at = task.at[item]
        return float(F.cross_entropy(logits[at], task.targets[item][at]))

    items = [i for i in np.flatnonzero(task.has_positions())[:4]]
    for item in items:
        gates = np.ones((2, 8))
        numeric = numerical_grad(lambda: item_loss(item, gates), gates, h=1e-5)
        assert_close(grads[item], numeric, 1e-6, f"item {item}")
    assert np.abs(grads[~task.has_positions()]).max(initial=0) == 0


@pytest.mark.slow  # a backward pass per sub-task
def test_gradient_importance_is_the_mean_absolute_gradient_per_layer(toy_task):
    raw = E.gradient_importance(toy_task, normalise=False)
    grads = toy_task.gate_gradients()[toy_task.has_positions()]
    np.testing.assert_allclose(raw, np.abs(grads).mean(0), rtol=1e-6)
    scores = E.gradient_importance(toy_task)
    np.testing.assert_allclose(np.linalg.norm(scores, axis=1), 1.0)
    np.testing.assert_allclose(scores, raw / np.linalg.norm(raw, axis=1, keepdims=True))
    with pytest.raises(TypeError, match="no gate_gradients"):
        E.gradient_importance(object())


def test_task_input_errors(toy_task):
    with pytest.raises(ValueError, match="ablation must be one of"):
        toy_task.evaluate(None, "random")
    with pytest.raises(ValueError,
                       match=r"head_gates must have shape \(n_layers, n_heads\) = \(2, 8\)"):
        toy_task.evaluate(np.ones(8))
    with pytest.raises(ValueError, match="metric must be one of"):
        E.pruning_curves(toy_task, np.zeros((2, 8)), "f1")


# --------------------------------------------------------------------------- MiniLM's proxy
def test_minilm_task(minilm_backends):
    texts = ["The dog barks.", "Birds sing in the morning.", "She reads a long book."]
    model = minilm_backends["numpy"]
    task = MiniLMTask(model, texts, batch_size=2)
    assert task.evaluate()["similarity"] == pytest.approx(1.0, abs=1e-6)
    # the embeddings are the model's own sentence embeddings: each text alone, no padding, the
    # mean of the last hidden states over its pieces, unit length
    alone = {t: model.forward(model.encode(t).input_ids) for t in texts}
    shortest_first = sorted(texts, key=lambda t: len(model.encode(t).tokens))
    means = np.stack([alone[t].hidden_states[-1].mean(axis=0) for t in shortest_first])
    reference = means / np.linalg.norm(means, axis=-1, keepdims=True)  # (n_texts, d_model)
    np.testing.assert_allclose(task.embeddings(), reference, atol=1e-5)
    gates = np.ones((6, 12))
    gates[0] = 0.0
    zero, mean = task.evaluate(gates), task.evaluate(gates, "mean")
    assert zero["similarity"] < 0.999 and mean["similarity"] < 0.999
    assert zero["loss"] == pytest.approx(1 - zero["similarity"])
    # head means: the mean of Z over every piece of every text
    Z = np.concatenate([out.heads for out in alone.values()], axis=2)  # (n_layers, n_heads, n, d_v)
    np.testing.assert_allclose(task.head_means(), Z.mean(axis=2), atol=1e-5)
    # the torch backend gives the same numbers
    task_t = MiniLMTask(minilm_backends["torch"], texts)
    torch_mean = task_t.evaluate(gates, "mean")["similarity"]
    assert torch_mean == pytest.approx(mean["similarity"], abs=1e-5)
    with pytest.raises(TypeError, match="no gate_gradients"):
        E.gradient_importance(task)

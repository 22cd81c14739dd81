"""Helpers that keep notebooks 07 and 08 short and within their time: the pruning table, ablation
of chosen layers only, pruning curves that measure each set of removed heads once, MiniLM's task
starting at the first gated layer, the close pairs of heads, and the text on sharp-but-small heads.
Each is checked against an independent computation (a brute-force loop or the model's full forward
pass), not against itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from mha_course.analysis import contributions, pruning, redundancy
from mha_course.experiments.pruning import ablation_effects, pruning_curves
from mha_course.models import toy_language, toy_model
from mha_course.models.minilm.task import MiniLMTask, length_batches
from mha_course.models.toy_model.task import ToyTask


class CountingTask:
    """2 layers x 3 heads; the score is (sum of weight * gate)^2, so that removing heads together
    differs from the sum of removing each; every call is recorded."""

    n_layers, n_heads = 2, 3
    metrics = ("score", "loss")

    def __init__(self):
        self.weight = np.arange(1, 7).reshape(2, 3) / 21.0  # (n_layers, n_heads), sums to 1
        self.calls = []

    def evaluate(self, head_gates=None, ablation="zero"):
        gates = np.ones((2, 3)) if head_gates is None else np.asarray(head_gates, dtype=float)
        self.calls.append(gates.copy())
        score = float((self.weight * gates).sum()) ** 2
        return {"score": score, "loss": 1.0 - score}


# --------------------------------------------------------------------------- ablation_effects
def test_ablation_of_chosen_layers_matches_the_full_table_and_leaves_the_rest_nan():
    every = ablation_effects(CountingTask(), ("zero",))["zero"]["score"]  # (2, 3)
    task = CountingTask()
    some = ablation_effects(task, ("zero",), layers=[1])["zero"]["score"]
    np.testing.assert_array_equal(some[1], every[1])
    assert np.isnan(some[0]).all()
    assert len(task.calls) == 1 + 3  # the full model, then the 3 heads of layer 1
    # by hand: removing head (1, h) leaves (1 - w)^2, the full model scores 1
    np.testing.assert_allclose(some[1], (1 - task.weight[1]) ** 2 - 1.0)
    with pytest.raises(ValueError, match=r"layers must be in \[0, 1\]; got \[2\]"):
        ablation_effects(task, ("zero",), layers=[2])


# --------------------------------------------------------------------------- pruning curves
def test_pruning_curves_measure_each_set_of_removed_heads_once():
    task = CountingTask()
    importance = task.weight  # least important: head (0, 0)
    curves = pruning_curves(task, importance, "score", n_random=3, seed=1)
    # the same numbers as evaluating every step of every order directly
    for name, runs in curves.orders.items():
        for run, curve in zip(runs, curves.curves[name]):
            direct = [(task.weight.ravel()[run[k:]].sum()) ** 2 for k in curves.n_removed]
            np.testing.assert_allclose(curve, direct)
    removed_sets = {frozenset(run[:k].tolist()) for runs in curves.orders.values()
                    for run in runs for k in curves.n_removed}
    assert len(task.calls) == len(removed_sets) < 5 * 7  # k = 0 and k = 6 once, not once per order


def test_curve_table_rows_are_the_curves_at_the_step():
    task = CountingTask()
    curves = pruning_curves(task, task.weight, "score", n_random=2, seed=0,
                                    steps=[0, 2, 4, 6])
    lines = pruning.curve_table(curves, at=2).splitlines()
    assert lines[0].split() == ["order", "within", "0.01", "within", "0.05", "score,", "2",
                                "removed"]
    for line, name in zip(lines[1:], ("importance", "random", "reverse")):
        words = line.split()
        assert words[0] == name
        assert float(words[1]) == pytest.approx(curves.removable_fraction(name, 0.01), abs=0.005)
        assert float(words[2]) == pytest.approx(curves.removable_fraction(name, 0.05), abs=0.005)
        assert float(words[3]) == pytest.approx(curves.mean(name)[1], abs=5e-4)
    assert float(lines[1].split()[3]) > float(lines[3].split()[3])  # importance beats reverse
    with pytest.raises(ValueError,
                       match=r"at must be one of the measured steps \[0, 2, 4, 6\]; got 3"):
        pruning.curve_table(curves, at=3)


# --------------------------------------------------------------------------- MiniLM from a layer
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_minilm_task_starting_at_the_first_gated_layer_is_the_full_forward(minilm_backends,
                                                                           backend):
    model = minilm_backends[backend]
    task = MiniLMTask(model, ["The dog barks.", "Birds sing in the morning light."])
    for removed in ([40], [3, 70], [65, 71], []):
        gates = pruning.gates_without(removed, 6, 12)  # (6, 12)
        for ablation in ("zero", "mean"):
            runs = task._params_with_bias_shift(gates) if ablation == "mean" else model
            expected = []
            for ids, lengths, mask in task.batches:  # the model's own forward pass, every layer
                hidden = runs.forward(ids, mask=mask, head_gates=gates).hidden_states[-1]
                # hidden: (batch, n, d_model)
                real = np.arange(ids.shape[1])[None] < lengths[:, None]  # (batch, n)
                real = real[..., None]  # (batch, n, 1)
                mean = (hidden * real).sum(1) / lengths[:, None]  # (batch, d_model)
                expected.append(mean / np.linalg.norm(mean, axis=-1, keepdims=True))
            np.testing.assert_allclose(task.embeddings(gates, ablation), np.concatenate(expected),
                                       rtol=1e-5, atol=1e-6)  # float32 rounding across threads


# --------------------------------------------------------------------------- close pairs
def test_close_pairs_are_every_pair_below_the_threshold_closest_first():
    rng = np.random.default_rng(0)
    A = rng.random((7, 7))
    D = (A + A.T) / 2
    np.fill_diagonal(D, 0.0)
    pairs = redundancy.close_pairs(D, 0.4)  # (n_pairs, 2)
    brute = sorted(((D[i, j], i, j) for i in range(7) for j in range(i + 1, 7) if D[i, j] < 0.4))
    assert pairs.tolist() == [[i, j] for _, i, j in brute]
    assert pairs.shape == (len(brute), 2) and len(brute) > 2
    assert redundancy.close_pairs(D, 0.0).shape == (0, 2)
    with pytest.raises(ValueError, match="square"):
        redundancy.close_pairs(np.zeros((2, 3)), 0.5)


# --------------------------------------------------------------------------- sharp but small
def test_describe_sharp_heads_counts_and_ranks_like_sharp_but_small():
    summary = {"sharpness": np.array([[0.9, 0.6, 0.2, 0.8], [0.55, 0.95, 0.1, 0.3]]),
               "contribution_share": np.array([[0.05, 0.30, 0.25, 0.40], [0.10, 0.40, 0.25, 0.25]]),
               "contribution": np.ones((2, 4)),
               "top_key_norm": np.array([[0.1, 1.0, 1.0, 0.9], [0.5, 1.2, 1.0, 1.0]])}
    text = contributions.describe_sharp_heads(summary, top=2)
    lines = text.splitlines()
    # sharp (>= 0.5) and at most half an equal share (0.5 / 4 = 0.125): L0H0 and L1H0
    assert lines[0].startswith("2 head(s) with sharpness >= 0.5 and share <= 0.125;")
    assert "(equal share 0.250)" in lines[0]
    # ranked by sharpness / share: L0H0 18, L1H0 5.5, L1H1 2.4, L0H1 2, L0H3 2
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["L0H0", "L1H0"]
    assert "sharpness 0.90, share 0.050, value norm at its favourite key 0.10" in lines[1]
    with pytest.raises(ValueError, match="top must be at least 1"):
        contributions.describe_sharp_heads(summary, top=0)


# --------------------------------------------------------------------------- the toy from a layer
@pytest.mark.slow  # every sub-task, from every layer
def test_toy_task_starting_at_the_first_gated_layer_is_the_full_forward():
    """The model's own forward pass, read at the evaluated positions, whichever layer the
    evaluation starts from: equal to float32 rounding (bit for bit when run alone; in a full test
    session the thread count can differ between the cached lower layers and this forward, and
    with it the order of the sums)."""
    model = toy_model.load()
    task = ToyTask(model, toy_language.generate(6, seed=3), seed=0, batch_size=16)
    assert len(task._block_inputs) > 1  # several chunks, each with its own cached inputs
    for removed in ([9], [8, 15], [2, 12], []):  # layer 1 only (the shortcut), then both layers
        gates = pruning.gates_without(removed, 2, 8)  # (2, 8)
        g = torch.as_tensor(gates, dtype=torch.float32)
        for index, rows in enumerate(task._chunks()):
            at = task.at[rows]  # (batch, n): the evaluated positions, where the logits are read
            with torch.no_grad():
                expected = model(task.inputs[rows], task.lengths[rows], g).logits[at]  # every layer
                torch.testing.assert_close(task._forward(index, rows, gates, "zero"), expected,
                                           rtol=1e-5, atol=1e-5)
                shifts = task._bias_shifts(gates)
                saved = [block.attn.b_O.clone() for block in model.blocks]
                for block, shift in zip(model.blocks, shifts):
                    block.attn.b_O += shift
                expected = model(task.inputs[rows], task.lengths[rows], g).logits[at]
                for block, b in zip(model.blocks, saved):
                    block.attn.b_O.copy_(b)
                torch.testing.assert_close(task._forward(index, rows, gates, "mean"), expected,
                                           rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- JS distance
def test_js_distance_matrix_is_scipys_jensen_shannon_averaged_over_rows():
    rng = np.random.default_rng(1)
    attentions = []
    for n in (4, 7):
        A = rng.random((2, 3, n, n)) ** 3  # (n_layers, n_heads, n, n)
        A[..., 0, 1:] = 0.0  # a row with all its weight on one key
        attentions.append(A / A.sum(-1, keepdims=True))
    D = redundancy.js_distance_matrix(attentions)  # (6, 6)
    P = [A.reshape(6, A.shape[2], A.shape[3]) for A in attentions]
    rows = sum(p.shape[1] for p in P)
    brute = np.array([[sum(jensenshannon(p[i, r], p[j, r], base=2)
                           for p in P for r in range(p.shape[1])) / rows
                       for j in range(6)] for i in range(6)])
    np.fill_diagonal(brute, 0.0)
    np.testing.assert_allclose(D, brute, atol=1e-7)
    np.testing.assert_array_equal(D, D.T)


# --------------------------------------------------------------------------- batches by length
@pytest.mark.parametrize("max_padding", [0.0, 0.25, 1.0])
def test_length_batches_cut_where_the_padding_would_grow_too_much(max_padding):
    rng = np.random.default_rng(2)
    lengths = np.sort(rng.integers(3, 40, size=30)).tolist()
    batches = length_batches(lengths, 6, max_padding)
    assert [i for b in batches for i in b] == list(range(30))  # every sequence once, in order
    for b, following in zip(batches, batches[1:] + [None]):
        size = [lengths[i] for i in b]
        assert len(b) <= 6 and len(b) * max(size) <= (1 + max_padding) * sum(size)
        if following is not None and len(b) < 6:  # the next one would have broken the rule
            n = lengths[following[0]]
            assert (len(b) + 1) * n > (1 + max_padding) * (sum(size) + n)
    assert length_batches([15, 15, 16, 17, 17, 18, 18, 30], 32, 0.25) == \
        [[0, 1, 2, 3, 4, 5, 6], [7]]
    with pytest.raises(ValueError, match="sorted"):
        length_batches([5, 3], 4, 0.25)


def test_minilm_task_embeddings_do_not_depend_on_the_batches(minilm_backends):
    texts = ["The dog barks.", "Birds sing.", "She reads a long book about the history of the sea."]
    one_batch = MiniLMTask(minilm_backends["torch"], texts, max_padding=10.0)
    by_length = MiniLMTask(minilm_backends["torch"], texts, max_padding=0.0)
    assert len(one_batch.batches) == 1 and len(by_length.batches) > 1
    gates = pruning.gates_without([30, 31], 6, 12)  # (6, 12)
    for g in (None, gates):
        np.testing.assert_allclose(one_batch.embeddings(g), by_length.embeddings(g), atol=1e-6)

"""Head gates and head importance on arrays: the gates in both cores (against
torch.nn.MultiheadAttention with W^O blocks zeroed); ablation, pruning orders and pruning curves
(`experiments.pruning`, `analysis.pruning`) on a planted head whose effect is computed here.
The models' own tasks (toy model, MiniLM) are tests/test_pruning_tasks.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import assert_close, numerical_grad, random_params, ref_mha, torch_params

from mha_course import np_attention as npa
from mha_course import torch_attention as tta
from mha_course.analysis import pruning as P
from mha_course.experiments import pruning as E


def T(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def without_head(params, head):
    """params with head `head`'s row block of W^O set to zero: the head can no longer write."""
    W_O = np.array(params.W_O, copy=True)
    W_O[head * params.d_v:(head + 1) * params.d_v] = 0
    return replace(params, W_O=W_O)


# --------------------------------------------------------------------------- gates in the cores
@pytest.mark.parametrize("fn", ["multi_head_attention", "multi_head_attention_loop"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [False, True])
def test_gates_of_ones_change_nothing(fn, dtype, bias):
    rng = np.random.default_rng(0)
    p = random_params(12, 3, bias=bias, seed=1, dtype=dtype)
    X = rng.standard_normal((2, 5, 12)).astype(dtype)
    mask = rng.random((2, 5, 5)) < 0.7
    mask[..., 0] = True
    ones = np.ones(3, dtype=dtype)
    plain, gated = getattr(npa, fn)(X, X, p, mask), getattr(npa, fn)(X, X, p, mask, head_gates=ones)
    for a, b in zip(plain, gated):
        np.testing.assert_array_equal(a, b)
    assert gated.out.dtype == dtype
    tp = torch_params(p)
    plain_t = getattr(tta, fn)(T(X), T(X), tp, T(mask))
    ones_t = torch.ones(3, dtype=torch.float64)
    gated_t = getattr(tta, fn)(T(X), T(X), tp, T(mask), head_gates=ones_t)
    for a, b in zip(plain_t, gated_t):
        assert torch.equal(a, b)
    assert gated_t.out.dtype == plain_t.out.dtype


@pytest.mark.parametrize("head", [0, 2])
def test_a_zero_gate_removes_the_heads_block_of_W_O(head):
    rng = np.random.default_rng(2)
    p = random_params(12, 3, bias=True, seed=3)
    X, Y = rng.standard_normal((2, 4, 12)), rng.standard_normal((2, 6, 12))
    gates = np.ones(3)
    gates[head] = 0.0
    expected = ref_mha(X, Y, without_head(p, head))[0]
    for fn in ("multi_head_attention", "multi_head_attention_loop"):
        out = getattr(npa, fn)(X, Y, p, head_gates=gates).out
        assert_close(out, expected, 1e-12, f"numpy {fn}")
        out_t = getattr(tta, fn)(T(X), T(Y), torch_params(p), head_gates=T(gates)).out
        assert_close(out_t, expected, 1e-12, f"torch {fn}")
    # the heads themselves (Z_i = A_i V_i, before the gate) are untouched
    np.testing.assert_array_equal(npa.multi_head_attention(X, Y, p, head_gates=gates).heads,
                                  npa.multi_head_attention(X, Y, p).heads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gates_against_torch_multiheadattention(dtype):
    """The oracle: nn.MultiheadAttention with the out_proj columns of a gated-off head zeroed."""
    npdt = np.float32 if dtype == torch.float32 else np.float64
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    rng = np.random.default_rng(4)
    p = random_params(8, 2, bias=True, seed=5, dtype=npdt)
    X = rng.standard_normal((3, 5, 8)).astype(npdt)
    for gates in (np.ones(2, dtype=npdt), np.array([1, 0], dtype=npdt)):
        oracle = tta.to_torch_mha(p)
        # out = concat @ out_proj.weight.T: head i owns columns i*d_v:(i+1)*d_v
        with torch.no_grad():
            for i, g in enumerate(gates):
                oracle.out_proj.weight[:, i * 4:(i + 1) * 4] *= float(g)
        expected, _ = oracle(T(X), T(X), T(X), need_weights=False)
        out = npa.multi_head_attention(X, X, p, head_gates=gates).out
        assert_close(out, expected, tol, "numpy")
        ours = tta.multi_head_attention(T(X), T(X), torch_params(p), head_gates=T(gates)).out
        assert_close(ours, expected, tol, "torch")


def test_per_example_gates_equal_one_run_per_example():
    rng = np.random.default_rng(6)
    p = random_params(8, 2, bias=True, seed=7)
    X = rng.standard_normal((3, 4, 8))
    gates = np.array([[1.0, 0.0], [0.3, 1.0], [0.0, 0.0]])  # (batch, n_heads)
    out = npa.multi_head_attention(X, X, p, head_gates=gates).out
    out_t = tta.multi_head_attention(T(X), T(X), torch_params(p), head_gates=T(gates)).out
    for b in range(3):
        alone = npa.multi_head_attention(X[b], X[b], p, head_gates=gates[b]).out
        assert_close(out[b], alone, 1e-12, f"numpy example {b}")
        assert_close(out_t[b], alone, 1e-12, f"torch example {b}")


def test_gate_gradient_numpy_vs_autograd_vs_finite_differences():
    rng = np.random.default_rng(8)
    p = random_params(8, 2, bias=True, seed=9)
    X = rng.standard_normal((2, 4, 8))
    d_out = rng.standard_normal((2, 4, 8))  # L = sum(d_out * out)
    for gates in (np.array([0.7, 1.3]), np.array([[1.0, 0.5], [0.0, 2.0]])):
        g = npa.multi_head_attention_backward(d_out, X, X, p, head_gates=gates)
        assert g.head_gates.shape == gates.shape
        work = gates.copy()
        numeric = numerical_grad(
            lambda: float((d_out * npa.multi_head_attention(X, X, p, head_gates=work).out).sum()),
            work)
        assert_close(g.head_gates, numeric, 1e-6, "numpy backward vs finite differences")
        xi = T(gates).requires_grad_(True)
        out_t = tta.multi_head_attention(T(X), T(X), torch_params(p), head_gates=xi).out
        loss = (T(d_out) * out_t).sum()
        loss.backward()
        assert_close(g.head_gates, xi.grad, 1e-10, "numpy backward vs torch autograd")
        # the other gradients still match the ungated ones when the gates are 1
    ones = npa.multi_head_attention_backward(d_out, X, X, p, head_gates=np.ones(2))
    plain = npa.multi_head_attention_backward(d_out, X, X, p)
    assert plain.head_gates is None
    for name in ("X_q", "X_kv", "W_Q", "W_K", "W_V", "W_O", "b_O"):
        np.testing.assert_allclose(getattr(ones, name), getattr(plain, name), atol=1e-12)


@pytest.mark.parametrize("bad, error, match", [
    (np.ones(3), ValueError, r"head_gates must have shape \(n_heads,\) = \(2,\).*got shape \(3\)"),
    (np.ones((4, 2)), ValueError, r"broadcast to \(\.\.\., n_heads\) = \(3, 2\)"),
    (np.ones((1, 3, 2)), ValueError, "head_gates must have shape"),
    (np.array([1.0, np.nan]), ValueError, "head_gates contains NaN"),
    (np.array(["a", "b"]), TypeError, "head_gates must be a floating-point array"),
])
def test_bad_gates_are_refused_with_a_clear_message(bad, error, match):
    p = random_params(8, 2, seed=0)
    X = np.zeros((3, 4, 8))
    with pytest.raises(error, match=match):
        npa.multi_head_attention(X, X, p, head_gates=bad)
    if bad.dtype.kind == "f":
        with pytest.raises(error, match=match):
            tta.multi_head_attention(T(X), T(X), torch_params(p), head_gates=T(bad))


def test_integer_and_boolean_gates_are_accepted():
    p = random_params(8, 2, seed=0, dtype=np.float32)
    X = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    ref = npa.multi_head_attention(X, X, p, head_gates=np.array([1.0, 0.0], dtype=np.float32)).out
    for gates in ([1, 0], np.array([True, False])):
        out = npa.multi_head_attention(X, X, p, head_gates=gates).out
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, ref)




# --------------------------------------------------------------------------- a planted head
class PlantedTask:
    """Two attention layers side by side (out = layer 0's output + layer 1's) in which head
    `planted` = (layer, head) writes ten times more than the others; the metric is the cosine
    similarity between the gated and the full outputs. Zero and mean ablation are computed here
    from the per-head outputs, independently of the library."""

    metrics = ("similarity", "loss")

    def __init__(self, n_heads=4, planted=(1, 2), seed=0):
        rng = np.random.default_rng(seed)
        self.n_layers, self.n_heads = 2, n_heads
        self.X = rng.standard_normal((20, 6, 16))
        self.params, self.Z, self.mu = [], [], []
        for layer in range(2):
            p = random_params(16, n_heads, bias=True, seed=seed + layer)
            if layer == planted[0]:
                W_O = p.W_O.copy()
                W_O[planted[1] * p.d_v:(planted[1] + 1) * p.d_v] *= 10.0
                p = replace(p, W_O=W_O)
            Z = npa.multi_head_attention(self.X, self.X, p).heads  # (20, n_heads, 6, d_v)
            self.params.append(p)
            self.Z.append(Z)
            self.mu.append(Z.mean(axis=(0, 2)))  # (n_heads, d_v)
        self.full = self._output(np.ones((2, n_heads)), "zero")

    def _output(self, gates, ablation):
        out = 0.0
        for p, Z, mu, g in zip(self.params, self.Z, self.mu, gates):
            g = g[:, None, None]  # (n_heads, 1, 1)
            Z = Z * g + (mu[:, None, :] * (1 - g) if ablation == "mean" else 0)
            out = out + sum(Z[:, i] @ p.W_O[i * p.d_v:(i + 1) * p.d_v]
                            for i in range(self.n_heads)) + p.b_O
        return out

    def evaluate(self, head_gates=None, ablation="zero"):
        gates = np.ones((2, self.n_heads)) if head_gates is None else np.asarray(head_gates)
        out = self._output(gates, ablation)
        cos = ((out * self.full).sum(-1) / np.linalg.norm(out, axis=-1)
               / np.linalg.norm(self.full, axis=-1))
        return {"similarity": float(cos.mean()), "loss": float(1 - cos.mean())}


def test_the_planted_head_hurts_most_when_ablated():
    task = PlantedTask(planted=(1, 2))
    effects = E.ablation_effects(task)
    for ablation in ("zero", "mean"):
        sim = effects[ablation]["similarity"]  # (2, 4)
        assert np.unravel_index(np.argmin(sim), sim.shape) == (1, 2), (ablation, sim)
        assert sim[1, 2] < 0 and (sim <= 1e-12).all()
        np.testing.assert_allclose(effects[ablation]["loss"], -effects[ablation]["similarity"])


def test_pruning_curves_by_importance_reverse_and_random():
    task = PlantedTask(n_heads=3, planted=(0, 1), seed=3)
    importance = -E.ablation_effects(task, ("zero",))["zero"]["similarity"]  # (2, 3)
    curves = E.pruning_curves(task, importance, "similarity", n_random=4, seed=0)
    assert curves.n_removed.tolist() == list(range(7))
    assert curves.curves["importance"].shape == (1, 7) and curves.curves["random"].shape == (4, 7)
    # the planted head (flat index 0 * 3 + 1) is the last to go by importance, the first in reverse
    assert curves.orders["importance"][0, -1] == 1 and curves.orders["reverse"][0, 0] == 1
    imp, rev, rnd = curves.mean("importance"), curves.mean("reverse"), curves.mean("random")
    assert imp[0] == rev[0] == pytest.approx(1.0)
    assert (imp[1:-1] > rev[1:-1]).all()
    assert (imp[1:-1] >= rnd[1:-1] - 1e-9).all() and (rnd[1:-1] >= rev[1:-1] - 1e-9).all()
    assert imp[-1] == pytest.approx(rev[-1])  # everything removed, whatever the order
    assert curves.spread("importance").max() == 0 and curves.spread("random")[1:-1].max() > 0
    # five of six heads are minor: removing them keeps most of the output
    assert curves.removable_fraction("importance", tolerance=0.2) >= 0.5
    assert curves.removable_fraction("reverse", tolerance=0.2) == 0.0
    again = E.pruning_curves(task, importance, "similarity", n_random=4, seed=0)
    np.testing.assert_array_equal(again.curves["random"], curves.curves["random"])
    steps = E.pruning_curves(task, importance, "similarity", n_random=0, steps=[0, 3, 6])
    np.testing.assert_allclose(steps.mean("importance"), imp[[0, 3, 6]])
    assert steps.curves["random"].shape == (0, 3)


def test_orders_and_removal_steps():
    importance = np.array([[0.5, 0.1, 0.9], [0.2, 0.7, 0.0]])
    order = P.prune_order(importance)
    assert order.tolist() == [5, 1, 3, 0, 4, 2]
    step = P.removal_step(order, 2, 3)
    assert step.tolist() == [[3, 1, 5], [2, 4, 0]]
    np.testing.assert_array_equal(P.gates_without([5, 1], 2, 3), [[1, 0, 1], [1, 1, 0]])
    # greedy re-scoring with a score that ignores the gates gives the static order ...
    assert P.iterative_order(lambda g: importance, 2, 3).tolist() == order.tolist()
    np.testing.assert_array_equal(importance, [[0.5, 0.1, 0.9], [0.2, 0.7, 0.0]])  # not edited
    # ... and with one that does not, follows the score of the heads still in place
    def score(gates):  # head 3 becomes important once head 5 is gone (it takes over its job)
        return importance + np.array([[0, 0, 0], [1.0 - gates[1, 2], 0, 0]])
    assert P.iterative_order(score, 2, 3).tolist() == [5, 1, 0, 4, 2, 3]


def test_pruning_input_errors():
    task = PlantedTask()
    with pytest.raises(ValueError, match="metric must be one of"):
        E.pruning_curves(task, np.zeros((2, 4)), "f1")
    with pytest.raises(ValueError, match=r"importance must be \(n_layers, n_heads\) = \(2, 4\)"):
        E.pruning_curves(task, np.zeros(8), "similarity")
    with pytest.raises(ValueError, match="permutation"):
        E.pruning_curves(task, np.zeros((2, 4)), "similarity", order=[0] * 8)
    with pytest.raises(ValueError, match="ablation must be one of"):
        E.pruning_curves(task, np.zeros((2, 4)), "similarity", ablation="random")
    with pytest.raises(ValueError, match=r"layers must be in \[0, 1\]"):
        E.ablation_effects(task, layers=[2])


def test_importance_from_gradients_is_the_mean_absolute_gradient_per_layer():
    grads = np.random.default_rng(0).standard_normal((5, 2, 3))  # (n_items, n_layers, n_heads)
    raw = P.importance_from_gradients(grads, normalise=False)
    by_hand = [[np.mean([abs(grads[i, layer, head]) for i in range(5)]) for head in range(3)]
               for layer in range(2)]
    np.testing.assert_allclose(raw, by_hand)
    scores = P.importance_from_gradients(grads)
    np.testing.assert_allclose(np.linalg.norm(scores, axis=1), 1.0)
    np.testing.assert_allclose(scores[1] * np.linalg.norm(raw[1]), raw[1])
    with pytest.raises(ValueError, match=r"gate_gradients must be \(n_items, n_layers, n_heads\)"):
        P.importance_from_gradients(np.zeros((2, 3)))

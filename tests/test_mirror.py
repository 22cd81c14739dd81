"""The NumPy and PyTorch cores mirror each other name for name: the same public names, the same
`inspect.signature`s and the same docstrings, in np_attention / torch_attention and in
np_bert / torch_bert. Where a backend genuinely differs, the difference is listed below with its
reason; an entry that is no longer needed fails too, so the lists cannot rot.

Also: torch's `init_params` draws NumPy's weights for the same seed, the masks take the same
lengths in both, and torch_bert is differentiable (not inference-only) and equals np_bert."""

from __future__ import annotations

import inspect
from typing import ForwardRef

import numpy as np
import pytest
import torch

from mha_course import np_attention as npa
from mha_course import torch_attention as tta
from mha_course.models.minilm import np_bert, torch_bert
from mha_course.models.minilm.weights import BertParams, LayerParams
from mha_course.params import MHAParams

BACKWARD = "the NumPy core writes the backward pass by hand; torch gets it from autograd"

# Public names only one backend has, and why.
NUMPY_ONLY = {
    "MHAGrads": BACKWARD,
    "softmax_backward": BACKWARD,
    "scaled_dot_product_attention_backward": BACKWARD,
    "multi_head_attention_backward": BACKWARD,
}
TORCH_ONLY = {
    "MultiHeadAttention": "an nn.Module whose trainable parameters are MHAParams' weights",
    "from_torch_mha": "reads torch.nn.MultiheadAttention's fused layout (a torch class)",
    "to_torch_mha": "builds a torch.nn.MultiheadAttention (a torch class)",
}
# Parameters only torch has (last, with a default), and why.
TORCH_EXTRA_PARAMETERS = {
    ("causal_mask", "device"): "a tensor is created on a device; a NumPy array has none",
    ("padding_mask", "device"): "a tensor is created on a device; a NumPy array has none",
    ("init_params", "device"): "a tensor is created on a device; a NumPy array has none",
}
# Parameters whose annotations differ, and why.
ANNOTATION_DIFFERENCES = {
    ("multi_head_attention", "params"): "torch also takes a MultiHeadAttention module",
    ("multi_head_attention_loop", "params"): "torch also takes a MultiHeadAttention module",
}
# Each backend's spelling of the same thing, compared as one word.
SAME_THING = {"np.ndarray": "Array", "torch.Tensor": "Array"}
SAME_DEFAULT = {np.float64: "float64", torch.float64: "float64"}

PAIRS = {"attention": (npa, tta), "bert": (np_bert, torch_bert)}


def _annotation(ann) -> str:
    text = ann.__forward_arg__ if isinstance(ann, ForwardRef) else str(ann)
    for spelling, word in SAME_THING.items():
        text = text.replace(spelling, word)
    return text


def _default(value):
    try:
        return SAME_DEFAULT.get(value, value)
    except TypeError:  # an unhashable default
        return value


def _parameters(fn, name: str, backend: str) -> list[tuple]:
    """(name, kind, default, annotation) per parameter, backend spellings made one word."""
    out = []
    for p in inspect.signature(fn).parameters.values():
        if backend == "torch" and (name, p.name) in TORCH_EXTRA_PARAMETERS:
            continue
        ann = "(allowlisted)" if (name, p.name) in ANNOTATION_DIFFERENCES else _annotation(
            p.annotation)
        out.append((p.name, p.kind, _default(p.default), ann))
    return out


def _shared(pair: str) -> list[str]:
    np_mod, torch_mod = PAIRS[pair]
    return sorted(set(np_mod.__all__) & set(torch_mod.__all__))


@pytest.mark.parametrize("pair", PAIRS)
def test_the_same_public_names(pair):
    np_mod, torch_mod = PAIRS[pair]
    for mod in (np_mod, torch_mod):
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, f"{mod.__name__}.__all__ names what it lacks: {missing}"
        public = {n for n, obj in vars(mod).items() if not n.startswith("_")
                  and getattr(obj, "__module__", None) == mod.__name__}
        assert public <= set(mod.__all__), (
            f"{mod.__name__} defines public names outside __all__: {public - set(mod.__all__)}")
    only_np = set(np_mod.__all__) - set(torch_mod.__all__)
    only_torch = set(torch_mod.__all__) - set(np_mod.__all__)
    expected_np = set(NUMPY_ONLY) if pair == "attention" else set()
    expected_torch = set(TORCH_ONLY) if pair == "attention" else set()
    assert only_np == expected_np, f"only in {np_mod.__name__}: {only_np ^ expected_np}"
    assert only_torch == expected_torch, (
        f"only in {torch_mod.__name__}: {only_torch ^ expected_torch}")


@pytest.mark.parametrize("pair", PAIRS)
def test_the_same_signatures(pair):
    np_mod, torch_mod = PAIRS[pair]
    for name in _shared(pair):
        a, b = getattr(np_mod, name), getattr(torch_mod, name)
        if a is b:  # e.g. MHAParams: one class, imported by both
            continue
        np_sig = _parameters(a, name, "numpy")
        torch_sig = _parameters(b, name, "torch")
        assert np_sig == torch_sig, f"{name}: {np_sig}\n  != {torch_sig}"
        returns = [_annotation(inspect.signature(f).return_annotation) for f in (a, b)]
        assert returns[0] == returns[1], f"{name} returns {returns[0]} vs {returns[1]}"


@pytest.mark.parametrize("pair", PAIRS)
def test_the_same_docstrings(pair):
    np_mod, torch_mod = PAIRS[pair]
    for name in _shared(pair):
        a, b = getattr(np_mod, name), getattr(torch_mod, name)
        assert a.__doc__ and a.__doc__.strip(), f"{np_mod.__name__}.{name} has no docstring"
        assert a.__doc__ == b.__doc__, f"{name}:\n{a.__doc__}\n  !=\n{b.__doc__}"


def test_every_allowlisted_difference_is_still_there():
    for name in NUMPY_ONLY:
        assert name in npa.__all__ and name not in tta.__all__, name
    for name in TORCH_ONLY:
        assert name in tta.__all__ and name not in npa.__all__, name
    for name, param in TORCH_EXTRA_PARAMETERS:
        assert param in inspect.signature(getattr(tta, name)).parameters, (name, param)
        assert param not in inspect.signature(getattr(npa, name)).parameters, (name, param)
    for name, param in ANNOTATION_DIFFERENCES:
        anns = [_annotation(inspect.signature(getattr(m, name)).parameters[param].annotation)
                for m in (npa, tta)]
        assert anns[0] != anns[1], (name, param)
    assert tta.MHAParams is npa.MHAParams is MHAParams


# --------------------------------------------------------------------------- init_params
@pytest.mark.parametrize("kw", [
    dict(d_model=8, n_heads=2), dict(d_model=12, n_heads=3, d_k=5, d_v=2, bias=True),
    dict(d_model=6, n_heads=6, seed=7)])
@pytest.mark.parametrize("np_dtype, torch_dtype", [
    (np.float64, torch.float64), (np.float32, torch.float32), (np.float16, torch.float16)])
def test_init_params_same_seed_same_weights(kw, np_dtype, torch_dtype):
    a = npa.init_params(**kw, dtype=np_dtype)
    for dtype in (torch_dtype, np_dtype):  # torch takes either spelling of the dtype
        b = tta.init_params(**kw, dtype=dtype)
        for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None), name
            if x is not None:
                assert isinstance(y, torch.Tensor) and y.dtype == torch_dtype, (name, y.dtype)
                assert y.shape == x.shape, name
                np.testing.assert_array_equal(y.numpy(), x, err_msg=name)  # bit for bit


def test_init_params_seeds_differ_and_device_is_honoured():
    a, b = tta.init_params(8, 2, seed=0), tta.init_params(8, 2, seed=1)
    assert not torch.equal(a.W_Q, b.W_Q)
    assert tta.init_params(8, 2, device="cpu").W_O.device.type == "cpu"
    assert tta.init_params(8, 2).W_Q.dtype == torch.float64  # the default, as NumPy's


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("n", [0, 3, np.int64(4), np.int32(2)])
def test_causal_mask_takes_the_same_lengths(n):
    np.testing.assert_array_equal(tta.causal_mask(n).numpy(), npa.causal_mask(n))
    np.testing.assert_array_equal(tta.padding_mask([0, int(n)], n).numpy(),
                                  npa.padding_mask([0, int(n)], n))


@pytest.mark.parametrize("n", [-1, 2.0, True, "3", None])
def test_masks_refuse_the_same_lengths(n):
    for fn in (npa.causal_mask, tta.causal_mask):
        with pytest.raises(ValueError, match=r"causal_mask needs a non-negative integer length"):
            fn(n)
    for mod in (npa, tta):
        with pytest.raises(ValueError, match=r"padding_mask needs a non-negative integer length"):
            mod.padding_mask([1], n)


@pytest.mark.parametrize("lengths, error, match", [
    ([[1, 2]], TypeError, r"lengths must be 1-D integers \(batch,\); got shape \(1, 2\)"),
    ([1.0, 2.0], TypeError, r"lengths must be 1-D integers .* and dtype (float64|torch.float32)"),
    ([True], TypeError, "lengths must be 1-D integers"),
    ([1, 5], ValueError, r"lengths must lie in \[0, n=4\]; got \[1, 5\]"),
    ([-1], ValueError, r"lengths must lie in \[0, n=4\]"),
])
def test_padding_mask_refuses_the_same_lengths(lengths, error, match):
    for mod in (npa, tta):
        with pytest.raises(error, match=match):
            mod.padding_mask(lengths, 4)


# --------------------------------------------------------------------------- the two BERTs
def tiny_bert(seed=0, n_layers=2, d_model=8, n_heads=2, d_ff=12, vocab=11, positions=9):
    """A random BERT small enough to compare the two backends and take finite differences."""
    rng = np.random.default_rng(seed)
    w = lambda *s: 0.5 * rng.standard_normal(s)  # noqa: E731  (float64 weights)
    d_k = d_model // n_heads

    def layer():
        attention = MHAParams(W_Q=w(n_heads, d_model, d_k), W_K=w(n_heads, d_model, d_k),
                              W_V=w(n_heads, d_model, d_k), W_O=w(d_model, d_model),
                              b_Q=w(n_heads, d_k), b_K=w(n_heads, d_k), b_V=w(n_heads, d_k),
                              b_O=w(d_model))
        return LayerParams(attention, 1 + w(d_model), w(d_model), w(d_model, d_ff), w(d_ff),
                           w(d_ff, d_model), w(d_model), 1 + w(d_model), w(d_model))

    return BertParams(w(vocab, d_model), w(positions, d_model), w(2, d_model), 1 + w(d_model),
                      w(d_model), [layer() for _ in range(n_layers)])


def test_torch_bert_equals_np_bert_and_is_differentiable():
    p = tiny_bert()
    pt = p.map(torch.from_numpy)
    rng = np.random.default_rng(1)
    ids, types = rng.integers(0, 11, (3, 7)), rng.integers(0, 2, (3, 7))
    mask = npa.padding_mask([7, 4, 1], 7)  # (batch, 1, n)
    gates = rng.uniform(0.2, 1.0, (2, 3, 2))  # (n_layers, batch, n_heads)
    eps = 1e-12
    ref = np_bert.encode(p, ids, types, eps, mask, gates)
    xi = torch.tensor(gates, requires_grad=True)
    out = torch_bert.encode(pt, torch.from_numpy(ids), torch.from_numpy(types), eps,
                            torch.from_numpy(mask), xi)
    for name, a, b in zip(ref._fields, ref, out):
        np.testing.assert_allclose(b.detach().numpy(), a, rtol=1e-10, atol=1e-10, err_msg=name)
    assert out.hidden_states.requires_grad, "torch_bert.encode must not switch autograd off"

    def loss(g):  # any smooth function of the output: a weighted sum of the last layer
        last = np_bert.encode(p, ids, types, eps, mask, g).hidden_states[-1]  # (batch, n, d)
        return float((last * np.cos(np.arange(last.size)).reshape(last.shape)).sum())

    weights = torch.cos(torch.arange(out.hidden_states[-1].numel(), dtype=torch.float64))
    (out.hidden_states[-1].reshape(-1) * weights).sum().backward()
    h = 1e-6
    for index in [(0, 0, 0), (1, 2, 1), (1, 1, 0)]:
        up, down = gates.copy(), gates.copy()
        up[index] += h
        down[index] -= h
        numeric = (loss(up) - loss(down)) / (2 * h)
        assert abs(float(xi.grad[index]) - numeric) < 1e-6 * max(1.0, abs(numeric)), index


def test_bert_gates_are_checked_by_the_one_gate_check():
    p = tiny_bert()
    ids = np.zeros((3, 5), dtype=np.int64)
    for mod, conv in ((np_bert, lambda a: a), (torch_bert, torch.from_numpy)):
        params = p if mod is np_bert else p.map(torch.from_numpy)
        for bad in (np.ones(2), np.ones((3, 2)), np.ones((2, 4, 2)), np.ones((2, 3))):
            with pytest.raises(ValueError, match=r"head_gates must have shape \(n_layers, "
                                                 r"n_heads\) = \(2, 2\)"):
                mod.encode(params, conv(ids), conv(ids), 1e-12, None, conv(bad))

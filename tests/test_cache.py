"""The one model interface: `model.run(inputs, head_gates=None) -> Cache`.

The Cache's own contract (shapes checked, padding zero, slicing), then each model's `run` held to
an independent computation: the toy Transformer's `forward` on one unpadded sentence, the
attention layer recomputed from its input with `torch_attention`, and MiniLM's `forward` with
the same gates. (tests/test_pretrained.py holds MiniLM's Cache to Hugging Face transformers.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mha_course.models import toy_language as lang
from mha_course.models.cache import Cache, concatenate, zero_padding
from mha_course.models.minilm import load_minilm
from mha_course.torch_attention import padding_mask


@pytest.fixture(scope="module")
def sentences():
    return lang.generate(7, seed=1404)


def _random_cache(rng, lengths, n_layers=2, n_heads=3, d_v=4, d_model=5) -> Cache:
    lengths = np.asarray(lengths)
    B, n = len(lengths), int(lengths.max())
    arrays = zero_padding({
        "attention": rng.random((n_layers, B, n_heads, n, n)),
        "z": rng.standard_normal((n_layers, B, n_heads, n, d_v)),
        "attn_in": rng.standard_normal((n_layers, B, n, d_model)),
        "attn_out": rng.standard_normal((n_layers, B, n, d_model)),
        "residual": rng.standard_normal((n_layers + 1, B, n, d_model))}, lengths)
    tokens = [[f"t{b}_{i}" for i in range(m)] for b, m in enumerate(lengths)]
    return Cache(tokens=tokens, lengths=lengths, inputs=list(range(B)), **arrays)


# --------------------------------------------------------------------------- the Cache itself
def test_cache_slices_heads_and_sequences():
    cache = _random_cache(np.random.default_rng(0), [4, 6, 2])
    assert (len(cache), cache.n_layers, cache.n_heads, cache.n, cache.d_v, cache.d_model) == (
        3, 2, 3, 6, 4, 5)
    A, Z = cache.head(1, 2)
    np.testing.assert_array_equal(A, cache.attention[1, :, 2])  # (batch, n, n)
    np.testing.assert_array_equal(Z, cache.z[1, :, 2])  # (batch, n, d_v)
    first = cache[0]
    assert (len(first), first.n, first.tokens, first.inputs) == (1, 4, [cache.tokens[0]], [0])
    np.testing.assert_array_equal(first.attention[:, 0], cache.attention_of(0))
    np.testing.assert_array_equal(first.residual[:, 0], cache.residual[:, 0, :4])
    np.testing.assert_array_equal(cache.z_of(2), cache.z[:, 2, :, :2])
    tail = cache[1:]
    assert tail.lengths.tolist() == [6, 2] and tail.n == 6 and tail.inputs == [1, 2]
    assert cache[-1].tokens == [cache.tokens[2]]
    assert cache.mask.tolist()[2] == [True, True, False, False, False, False]


def test_padding_is_zero():
    cache = _random_cache(np.random.default_rng(1), [2, 5])
    assert (cache.attention[:, 0, :, 2:] == 0).all()  # padded queries
    assert (cache.attention[:, 0, :, :, 2:] == 0).all()  # padded keys
    assert (cache.z[:, 0, :, 2:] == 0).all() and (cache.residual[:, 0, 2:] == 0).all()
    assert (cache.attn_out[:, 1] != 0).all()  # the longest sequence keeps every position


def test_cache_refuses_inconsistent_shapes():
    rng = np.random.default_rng(2)
    good = _random_cache(rng, [3, 3])
    fields = {name: getattr(good, name) for name in ("attention", "z", "attn_in", "attn_out",
                                                     "residual")}
    with pytest.raises(ValueError, match=r"residual must be \(3, 2, 3, 5\)"):
        Cache(good.tokens, good.lengths, **{**fields, "residual": fields["residual"][1:]})
    with pytest.raises(ValueError, match="attention must be"):
        Cache(good.tokens, good.lengths, **{**fields, "attention": fields["attention"][0]})
    with pytest.raises(ValueError, match="lengths must be"):
        Cache(good.tokens, [3, 4], **fields)
    with pytest.raises(ValueError, match="tokens must be 2 lists"):
        Cache(good.tokens[:1], good.lengths, **fields)
    with pytest.raises(ValueError,
                       match=r"head_gates must have shape \(n_layers, n_heads\) = \(2, 3\)"):
        Cache(good.tokens, good.lengths, head_gates=np.ones((2, 4)), **fields)
    with pytest.raises(IndexError, match="layer=2"):
        good.head(2, 0)
    with pytest.raises(IndexError, match="sequence 2 of a batch of 2"):
        good[2]


# --------------------------------------------------------------------------- the toy model
def test_toy_run_equals_forward_on_each_sentence(shipped, sentences):
    cache = shipped.run(sentences, batch_size=3)  # three forward passes, padded to the longest
    assert cache.tokens == [s.tokens for s in sentences] and cache.inputs == sentences
    cfg = shipped.config
    d_v = shipped.blocks[0].attn.d_v  # Z_i is as wide as a head's values
    assert cache.z.shape == (cfg.n_layers, 7, cfg.n_heads, cache.n, d_v)
    for b, s in enumerate(sentences):
        with torch.no_grad():
            alone = shipped(torch.tensor([lang.encode(s.tokens)]))  # no padding at all
        m = len(s)
        for field, theirs in (("attention", "weights"), ("z", "heads"), ("attn_in", "attn_in"),
                              ("attn_out", "attn_out"), ("residual", "residual")):
            np.testing.assert_allclose(getattr(cache[b], field)[:, 0],
                                       getattr(alone, theirs)[:, 0].numpy(), atol=1e-5,
                                       err_msg=f"sentence {b} ({m} tokens): {field}")
    # one text, tokenized like the explorer's input
    text = " ".join(sentences[0].tokens[1:-1])
    np.testing.assert_allclose(shipped.run(text).attention[:, 0], cache.attention_of(0),
                               atol=1e-6)


def test_toy_attention_layer_is_its_input_through_the_attention(shipped, sentences):
    """attn_out[l] = MHA(attn_in[l]) with layer l's weights; residual[l + 1] follows from both."""
    cache = shipped.run(sentences)
    mask = padding_mask(torch.from_numpy(cache.lengths), cache.n)  # (batch, 1, n)
    for layer, block in enumerate(shipped.blocks):
        with torch.no_grad():
            out = block.attn(torch.from_numpy(cache.attn_in[layer]), mask=mask)
        real = cache.mask[:, :, None]  # (batch, n, 1)
        np.testing.assert_allclose(out.out.numpy() * real, cache.attn_out[layer], atol=1e-5)
        np.testing.assert_allclose(out.heads.numpy() * real[:, None], cache.z[layer], atol=1e-5)


def test_toy_gates_scale_attn_out_not_z(shipped, sentences):
    gates = np.ones((shipped.config.n_layers, shipped.config.n_heads), dtype=np.float32)
    gates[0, 2] = 0.0
    plain, gated = shipped.run(sentences[:3]), shipped.run(sentences[:3], head_gates=gates)
    np.testing.assert_allclose(gated.z[0], plain.z[0], atol=1e-6)  # Z_i is read before its gate
    assert np.abs(gated.attn_out[0] - plain.attn_out[0]).max() > 1e-3
    p = shipped.blocks[0].attn.to_params()
    d_v = p.W_O.shape[0] // shipped.config.n_heads
    removed = plain.z[0, :, 2] @ p.W_O[2 * d_v:3 * d_v]  # (batch, n, d_model): head 2's share
    np.testing.assert_allclose(gated.attn_out[0], plain.attn_out[0] - removed, atol=1e-5)
    per_sentence = np.ones((shipped.config.n_layers, 3, shipped.config.n_heads))
    per_sentence[0, 1, 2] = 0.0  # only the second sentence loses head 2
    mixed = shipped.run(sentences[:3], head_gates=per_sentence, batch_size=2)
    np.testing.assert_allclose(mixed[1].attn_out, gated[1].attn_out, atol=1e-6)
    np.testing.assert_allclose(mixed[0].attn_out, plain[0].attn_out, atol=1e-6)


def test_toy_run_rejects_bad_inputs(shipped, sentences):
    with pytest.raises(TypeError, match="one token list"):
        shipped.run(sentences[0].tokens)
    with pytest.raises(TypeError, match="non-empty list"):
        shipped.run([])
    with pytest.raises(TypeError, match=r"inputs\[1\]"):
        shipped.run([sentences[0], 3])
    with pytest.raises(ValueError, match="head_gates must"):
        shipped.run(sentences[:2], head_gates=np.ones((2, 5)))
    assert shipped.training is False


def test_toy_run_restores_training_mode(shipped, sentences):
    shipped.train()
    try:
        shipped.run(sentences[:1])
        assert shipped.training
    finally:
        shipped.eval()


# --------------------------------------------------------------------------- MiniLM
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_minilm_run_with_gates_equals_forward(backend):
    model = load_minilm(backend)
    texts = ["Dogs bark.", "The quick brown fox jumps over the lazy dog."]
    gates = np.ones((6, 12), dtype=np.float32)
    gates[1, 4], gates[5, :6] = 0.0, 0.5
    cache = model.run(texts, head_gates=gates)
    for b in range(2):
        enc = cache.inputs[b]
        out = model.forward(enc.input_ids[None], head_gates=gates)  # one text, no padding
        one = cache[b]
        np.testing.assert_allclose(one.residual, out.hidden_states, atol=2e-5)
        np.testing.assert_allclose(one.z, out.heads, atol=2e-5)
        np.testing.assert_allclose(one.attn_in, out.hidden_states[:-1], atol=2e-5)
    plain = model.run(texts)
    assert np.abs(plain.attn_out[1] - cache.attn_out[1]).max() > 1e-3


def test_concatenate_pads_and_reindexing_restores_the_order():
    rng = np.random.default_rng(3)
    a, b = _random_cache(rng, [2, 4]), _random_cache(rng, [5])
    both = concatenate([a, b])
    assert both.lengths.tolist() == [2, 4, 5] and both.n == 5 and both.inputs == [0, 1, 0]
    np.testing.assert_array_equal(both[1].attention, a[1].attention)
    np.testing.assert_array_equal(both[2].residual, b.residual)
    assert (both.attention[:, 1, :, 4:] == 0).all()  # padded on concatenation
    shuffled = both[[2, 0, 1]]
    assert shuffled.lengths.tolist() == [5, 2, 4] and shuffled.tokens[0] == b.tokens[0]
    np.testing.assert_array_equal(shuffled[[1, 2, 0]].z, both.z)
    assert both.head_gates is None
    gated = concatenate([Cache(**{**vars(a), "head_gates": np.zeros((2, 3))}), b])
    assert gated.head_gates.shape == (2, 3, 3)  # (n_layers, batch, n_heads): gates differ
    assert (gated.head_gates[:, :2] == 0).all() and (gated.head_gates[:, 2] == 1).all()
    with pytest.raises(ValueError, match="at least one Cache"):
        concatenate([])

"""The induction model (models/induction): causal attention against PyTorch's, the Cache,
weights that reproduce the forward pass, data, saving, and the heads that it learns."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from mha_course.__main__ import main
from mha_course.analysis import circuits
from mha_course.experiments import induction_training
from mha_course.models import induction
from mha_course.models.induction import AttnOnlyTransformer, InductionConfig, data

TINY = InductionConfig(n_layers=2, n_heads=3, d_model=12, d_head=4, vocab_size=20, n_ctx=16,
                       batch_size=4, steps=3, warmup=2)
ROLE_BOUND = 0.7  # issue 16: the previous-token and the induction head score at least this


def tiny_model(seed=0, **changes) -> AttnOnlyTransformer:
    torch.manual_seed(seed)
    return AttnOnlyTransformer(replace(TINY, **changes)).eval()


def tokens(batch=3, n=None, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return data.repeated_sequences(batch, n or TINY.n_ctx, TINY.vocab_size, rng)


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------------------------ causal
@pytest.mark.parametrize("n", [1, 5, TINY.n_ctx])
def test_attention_layer_matches_torch_causal_sdpa(n):
    model = tiny_model()
    x = torch.randn(2, n, TINY.d_model)
    attn = model.attn[0]
    ours = attn(x, mask=torch.ones(n, n, dtype=torch.bool).tril())
    Q = torch.einsum("bnd,hdk->bhnk", x, attn.W_Q)  # (batch, n_heads, n, d_head)
    K = torch.einsum("bnd,hdk->bhnk", x, attn.W_K)  # (batch, n_heads, n, d_head)
    V = torch.einsum("bnd,hdk->bhnk", x, attn.W_V)  # (batch, n_heads, n, d_head)
    Z = F.scaled_dot_product_attention(Q, K, V, is_causal=True)  # (batch, n_heads, n, d_head)
    out = Z.transpose(1, 2).reshape(2, n, -1) @ attn.W_O  # (batch, n, d_model)
    torch.testing.assert_close(ours.heads, Z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.out, out, atol=1e-5, rtol=1e-5)


def test_no_position_attends_to_a_later_one():
    cache = tiny_model().run(tokens())
    n = TINY.n_ctx
    later = np.triu(np.ones((n, n), dtype=bool), k=1)  # key j > query i
    assert np.all(cache.attention[..., later] == 0)
    np.testing.assert_allclose(cache.attention.sum(axis=-1), 1, atol=1e-5)
    np.testing.assert_allclose(cache.attention[..., 0, 0], 1, atol=1e-6)  # BOS sees itself only


def test_a_later_token_changes_nothing_before_it():
    model = tiny_model()
    a = tokens(1)
    b = a.copy()
    b[0, -1] = (b[0, -1] % (TINY.vocab_size - 1)) + 1  # another token at the last position
    logits_a = model(torch.from_numpy(a)).logits
    logits_b = model(torch.from_numpy(b)).logits
    torch.testing.assert_close(logits_a[:, :-1], logits_b[:, :-1])
    assert not torch.allclose(logits_a[:, -1], logits_b[:, -1])


# ------------------------------------------------------------------------------------- cache
def test_run_returns_a_cache_of_the_right_shapes():
    model = tiny_model()
    ids = tokens(batch=3, n=10)
    cache = model.run(ids)
    L, H, d, dh = TINY.n_layers, TINY.n_heads, TINY.d_model, TINY.d_head
    assert cache.attention.shape == (L, 3, H, 10, 10)
    assert cache.z.shape == (L, 3, H, 10, dh)
    assert cache.attn_in.shape == cache.attn_out.shape == (L, 3, 10, d)
    assert cache.residual.shape == (L + 1, 3, 10, d)
    assert cache.tokens[1] == [str(t) for t in ids[1]]
    np.testing.assert_allclose(cache.residual[1:], cache.residual[:-1] + cache.attn_out,
                               atol=1e-5)  # attention only: each layer adds its output
    assert model.attention(ids[0]).shape == (L, H, 10, 10)
    np.testing.assert_allclose(model.attention(ids[0]), cache.attention[:, 0], atol=1e-6)


def test_head_gates_remove_a_head():
    model = tiny_model()
    ids = tokens()
    gates = np.ones((TINY.n_layers, TINY.n_heads))
    gates[0, 1] = 0
    cache = model.run(ids, head_gates=gates)
    z, W_O = cache.z[0], model.weights()["W_O"][0]  # (batch, H, n, d_head), (H, d_head, d_model)
    kept = np.einsum("bhnk,hkd->bnd", z[:, [0, 2]], W_O[[0, 2]])  # (batch, n, d_model)
    np.testing.assert_allclose(cache.attn_out[0], kept, atol=1e-5)


# ----------------------------------------------------------------------------------- weights
def test_weights_reproduce_the_attention_scores():
    model = tiny_model(seed=3)
    ids = tokens(seed=3)
    cache = model.run(ids)
    w = model.weights()
    n = ids.shape[1]
    assert w["W_E"].shape == (TINY.vocab_size, TINY.d_model)
    assert w["W_pos"].shape == (TINY.n_ctx, TINY.d_model)
    assert w["W_U"].shape == (TINY.d_model, TINY.vocab_size)
    assert w["W_Q"].shape == (TINY.n_layers, TINY.n_heads, TINY.d_model, TINY.d_head)
    assert w["W_O"].shape == (TINY.n_layers, TINY.n_heads, TINY.d_head, TINY.d_model)
    x = w["W_E"][ids] + w["W_pos"][:n]  # (batch, n, d_model)
    causal = np.tril(np.ones((n, n), dtype=bool))
    for layer in range(TINY.n_layers):
        q = np.einsum("bnd,hdk->bhnk", x, w["W_Q"][layer])  # (batch, H, n, d_head)
        k = np.einsum("bnd,hdk->bhnk", x, w["W_K"][layer])  # (batch, H, n, d_head)
        v = np.einsum("bnd,hdk->bhnk", x, w["W_V"][layer])  # (batch, H, n, d_head)
        scores = np.where(causal, q @ k.swapaxes(-1, -2) / math.sqrt(TINY.d_head), -np.inf)
        A = softmax(scores)  # (batch, H, n, n)
        np.testing.assert_allclose(A, cache.attention[layer], atol=1e-5)
        x = x + np.einsum("bhnk,hkd->bnd", A @ v, w["W_O"][layer])  # (batch, n, d_model)
    np.testing.assert_allclose(x @ w["W_U"], model(torch.from_numpy(ids)).logits.detach(),
                               atol=1e-4)


# -------------------------------------------------------------------------------------- data
def test_repeated_sequences_repeat_a_segment():
    rng = np.random.default_rng(7)
    n, V = 20, 30
    seqs = data.repeated_sequences(200, n, V, rng, min_segment=3)
    assert seqs.shape == (200, n) and seqs.dtype == np.int64
    assert np.all(seqs[:, 0] == data.BOS) and seqs[:, 1:].min() >= 1 and seqs.max() < V
    for row in seqs:  # some segment of >= 3 tokens occurs twice, without overlap
        assert any(np.array_equal(row[s1:s1 + L], row[s2:s2 + L])
                   for L in range(3, (n - 1) // 2 + 1) for s1 in range(1, n)
                   for s2 in range(s1 + L, n - L + 1))
    again = data.repeated_sequences(200, n, V, np.random.default_rng(7), min_segment=3)
    np.testing.assert_array_equal(seqs, again)


def test_periodic_sequences_repeat_until_the_end():
    n = 24
    seqs = data.repeated_sequences(50, n, 40, np.random.default_rng(1), periodic=1.0)
    for row in seqs:  # a period L from some start s on: row[k] == row[k - L] for all k >= s + L
        assert any(all(row[k] == row[k - L] for k in range(s + L, n))
                   for L in range(2, (n - 1) // 2 + 1) for s in range(1, n - 2 * L + 1))


def test_repeated_sequences_put_the_copies_at_many_offsets():
    """No single offset finds the earlier copy: a 1-layer positional head cannot do induction."""
    seqs = data.repeated_sequences(300, 32, 64, np.random.default_rng(0), min_segment=4)

    def copy_offset(row):  # the offset d with the longest run of row[k] == row[k + d]
        runs = {}
        for d in range(1, len(row)):
            same = np.concatenate([[0], (row[:-d] == row[d:]).astype(int), [0]])
            edges = np.flatnonzero(np.diff(same))  # starts and ends of runs of equal tokens
            runs[d] = (edges[1::2] - edges[::2]).max(initial=0)
        return max(runs, key=runs.get)

    assert len({copy_offset(row[1:]) for row in seqs}) > 10


def test_doubled_sequences():
    seqs = data.doubled_sequences(10, 15, 30, np.random.default_rng(0))
    assert seqs.shape == (10, 15) and np.all(seqs[:, 0] == data.BOS)
    m = 15 // 2
    np.testing.assert_array_equal(seqs[:, 1 + m:], seqs[:, 1:15 - m])
    assert all(len(set(row[1:1 + m])) == m for row in seqs)
    assert circuits.prefix_matching_score(np.ones((1, 10, 1, 15, 15)) / 15, seqs).shape == (1, 1)


@pytest.mark.parametrize("call, match", [
    (lambda: data.repeated_sequences(2, 4, 10, np.random.default_rng(0)), "n must be"),
    (lambda: data.repeated_sequences(2, 10, 10, 0), "numpy.random.Generator"),
    (lambda: data.repeated_sequences(2, 10, 10, np.random.default_rng(0), min_segment=5),
     "min_segment"),
    (lambda: data.repeated_sequences(2, 10, 10, np.random.default_rng(0), periodic=2), "periodic"),
    (lambda: data.doubled_sequences(2, 20, 5, np.random.default_rng(0)), "vocab_size"),
    (lambda: InductionConfig(n_layers=0), "n_layers"),
    (lambda: InductionConfig(n_ctx=10, min_segment=5), "min_segment"),
    (lambda: InductionConfig(lr=0), "lr"),
    (lambda: AttnOnlyTransformer({"n_layers": 2}), "InductionConfig"),
    (lambda: tiny_model().run(np.zeros((2, TINY.n_ctx + 1), dtype=int)), "n_ctx"),
    (lambda: tiny_model().run(np.full((1, 4), TINY.vocab_size)), "token ids must be"),
    (lambda: tiny_model().run(np.zeros((1, 4)) + 0.5), "integer"),
    (lambda: tiny_model().run([[0, 1], [0]]), "token ids"),
    (lambda: tiny_model().attention(np.zeros((2, 4), dtype=int)), "one sequence"),
    (lambda: induction.load_induction("/nonexistent/folder"), "not an induction checkpoint"),
])
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=match):
        call()


# ---------------------------------------------------------------------- training, checkpoint
def test_training_is_deterministic_and_reports():
    (m1, r1), (m2, r2) = (induction.train(TINY, seed=5, progress=False, log_every=2)
                          for _ in range(2))
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert r1["loss_history"] == r2["loss_history"] and r1["steps"] == TINY.steps
    assert len(r1["position_loss"]) == TINY.n_ctx - 1
    assert [h["step"] for h in r1["history"]] == [2, 3]
    assert r1["config"] == asdict(TINY)
    _, r3 = induction.train(TINY, seed=6, progress=False)
    assert r3["loss_history"] != r1["loss_history"]


def test_save_load_round_trip(tmp_path):
    model = tiny_model(seed=2)
    report = {"seed": 2, "note": "tiny"}
    induction.save(model, report, tmp_path / "ck")
    loaded = induction.load_induction(tmp_path / "ck")
    assert loaded.config == model.config
    ids = tokens()
    np.testing.assert_array_equal(loaded.run(ids).attention, model.run(ids).attention)
    assert induction.load_report(tmp_path / "ck") == report


def test_shipped_checkpoint_has_the_pair_of_heads():
    model = induction.load_induction()
    report = induction.load_report()
    held_out = induction.held_out_sequences(model.config, report["seed"])
    A = model.run(held_out).attention  # (n_layers, batch, n_heads, n, n)
    previous = circuits.previous_token_score(A)  # (n_layers, n_heads)
    prefix = circuits.prefix_matching_score(A, held_out)  # (n_layers, n_heads)
    assert previous[0].max() >= ROLE_BOUND and prefix[1].max() >= ROLE_BOUND
    assert previous[0].argmax() == report["best"]["previous_token"]["head"]
    np.testing.assert_allclose(previous, report["scores"]["previous_token"], atol=1e-3)
    assert max(report["control"].values()) < 0.3
    assert report["in_context_learning"] < -1  # late tokens much better predicted than early


def test_train_induction_command_writes_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "ck"
    assert main(["train-induction", "--layers", "1", "--seed", "4", "--steps", "3", "--out",
                 str(out), "--quiet"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["layers"] == 1 and line["steps"] == 3 and line["prefix_matching"]["layer"] == 0
    report = induction.load_report(out)
    assert induction.load_induction(out).config.n_layers == 1
    assert np.shape(report["scores"]["prefix_matching"]) == (1, InductionConfig().n_heads)
    assert "k_composition" not in report  # one layer: nothing to compose with
    assert main(["train-induction", "--layers", "0", "--quiet"]) == 2
    assert "n_layers" in capsys.readouterr().err
    assert main(["train-induction", "--threads", "0", "--quiet"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_removing_the_previous_token_head_removes_induction():
    model = induction.load_induction()
    held_out = induction.held_out_sequences(model.config, seed=77)  # not the report's sequences
    ablation = induction_training.head_ablation(model, held_out)
    previous = induction.load_report()["best"]["previous_token"]["head"]
    prefix = np.array(ablation["prefix_matching"])  # (1 + n_heads, n_heads): intact, then each
    assert ablation["removed"][1 + previous] == previous
    assert prefix[0].max() >= ROLE_BOUND and prefix[1 + previous].max() < 0.3
    others = [1 + h for h in range(model.config.n_heads) if h != previous]
    assert prefix[others].max(axis=1).min() >= ROLE_BOUND
    icl = ablation["in_context_learning"]
    assert icl[1 + previous] > icl[0] + 1  # most of the in-context gain is gone
    with pytest.raises(ValueError, match="below the last layer"):
        induction_training.head_ablation(model, held_out, layer=1)


@pytest.mark.slow
def test_short_training_forms_the_pair_and_not_in_one_layer():
    config = InductionConfig()
    _, two = induction_training.train(config, seed=1, progress=False)
    assert two["best"]["previous_token"]["score"] >= ROLE_BOUND
    assert two["best"]["prefix_matching"]["score"] >= ROLE_BOUND
    assert max(two["control"].values()) < 0.3
    _, one = induction_training.train(replace(config, n_layers=1), seed=1, progress=False)
    assert one["best"]["prefix_matching"]["score"] < 0.3

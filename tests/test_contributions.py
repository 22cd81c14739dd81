"""W^O as a sum over heads: per-head contributions add up to the layer output, the weighted value
vectors add up to each contribution, and a planted head with sharp attention but a tiny W^O
block is found (Kobayashi et al. 2020)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import random_params

from mha_course import np_attention as npa
from mha_course.analysis import activations
from mha_course.analysis import contributions as C
from mha_course.experiments.activations import collect_toy
from mha_course.models import toy_language as lang
from mha_course.models import toy_model


def test_contributions_plus_bias_are_the_layer_output():
    rng = np.random.default_rng(0)
    p = random_params(12, 3, bias=True, seed=1)
    X = rng.standard_normal((2, 5, 12))
    for gates in (None, np.array([1.0, 0.0, 0.4])):
        res = npa.multi_head_attention(X, X, p, head_gates=gates)
        parts = C.head_contributions(res.heads, p.W_O, gates)  # (2, 3, 5, 12)
        assert parts.shape == (2, 3, 5, 12)
        np.testing.assert_allclose(parts.sum(axis=1) + p.b_O, res.out, atol=1e-12)
    # each part is Z_i times the i-th row block of W^O
    res = npa.multi_head_attention(X, X, p)
    parts = C.head_contributions(res.heads, p.W_O)
    for i in range(3):
        np.testing.assert_allclose(parts[:, i], res.heads[:, i] @ p.W_O[4 * i:4 * (i + 1)],
                                   atol=1e-12)
    np.testing.assert_allclose(C.contribution_norms(res.heads, p.W_O),
                               np.linalg.norm(parts, axis=-1))
    with pytest.raises(ValueError,
                       match=r"W_O must be \(n_heads \* d_v, d_model\) = \(12, d_model\)"):
        C.head_contributions(res.heads, p.W_O[:-1])


def test_weighted_value_vectors_add_up_to_each_contribution():
    """sum_j alpha_ij f_i(x_j) = Z_i W^O_i, with f_i(x) = (x W^V_i + b^V_i) W^O_i."""
    rng = np.random.default_rng(2)
    p = random_params(8, 2, bias=True, seed=3)
    X = rng.standard_normal((6, 8))
    res = npa.multi_head_attention(X, X, p)
    f = C.value_vectors(X, p)  # (n_heads, n, d_model)
    summed = np.einsum("hqk,hkd->hqd", res.weights, f)  # (n_heads, n_q, d_model)
    np.testing.assert_allclose(summed, C.head_contributions(res.heads, p.W_O), atol=1e-12)
    N = C.weighted_vector_norms(res.weights, X, p)  # (n_heads, n_q, n_k)
    np.testing.assert_allclose(N, res.weights * np.linalg.norm(f, axis=-1)[:, None, :])
    # a vector sum is never longer than the sum of the lengths
    assert (np.linalg.norm(summed, axis=-1) <= N.sum(-1) + 1e-12).all()
    M = C.norm_based_attention(res.weights, X, p)
    np.testing.assert_allclose(M.sum(-1), 1.0)


def test_a_heavy_weight_on_a_short_vector_counts_little():
    """Kobayashi's effect, planted: every query puts 0.9 of its weight on token 0, whose value
    vector is nearly zero; the norm-based map moves that mass to the other tokens."""
    p = random_params(8, 1, bias=False, seed=4)
    X = np.random.default_rng(5).standard_normal((5, 8))
    X[0] *= 1e-3  # token 0: a short value vector
    A = np.full((1, 5, 5), 0.1 / 4)
    A[0, :, 0] = 0.9
    M = C.norm_based_attention(A, X, p)
    assert (M[0, :, 0] < 0.01).all() and (A[0, :, 0] == 0.9).all()


def planted_activations():
    """One layer, two heads: head 0 attends sharply (large Q/K weights) but its W^O block is
    scaled by 0.01; head 1 attends uniformly (zero Q/K weights) and writes at full size."""
    rng = np.random.default_rng(6)
    p = random_params(8, 2, bias=True, seed=7)
    W_Q, W_K, W_O = p.W_Q.copy(), p.W_K.copy(), p.W_O.copy()
    W_Q[0] *= 30.0
    W_Q[1] = W_K[1] = 0.0
    W_O[:4] *= 0.01
    p = replace(p, W_Q=W_Q, W_K=W_K, W_O=W_O)
    lengths = [5, 7, 6]
    Xs = [rng.standard_normal((n, 8)) for n in lengths]
    runs = [npa.multi_head_attention(X, X, p) for X in Xs]
    heads = np.concatenate([r.heads for r in runs], axis=1)[None]  # (1, 2, n_tokens, 4)
    X_all = np.concatenate(Xs)[None]  # (1, n_tokens, 8)
    out = np.concatenate([r.out for r in runs])[None]
    return activations.Activations(
        heads=heads, attn_out=out, attn_in=X_all, residual=out,
        sentence=np.repeat(np.arange(3), lengths),
        position=np.concatenate([np.arange(n) for n in lengths]),
        tokens=["t"] * sum(lengths), attentions=[r.weights[None] for r in runs],
        annotations=[None] * 3, params=[p])


def test_sharp_but_small_finds_the_planted_head():
    acts = planted_activations()
    summary = C.head_summary(acts)
    assert set(summary) == {"sharpness", "contribution", "contribution_share", "top_key_norm"}
    assert summary["sharpness"][0, 0] > 0.8
    uniform = np.mean([1 / 5] * 5 + [1 / 7] * 7 + [1 / 6] * 6)  # head 1 attends uniformly
    assert summary["sharpness"][0, 1] == pytest.approx(uniform)
    assert summary["contribution_share"][0, 0] < 0.05
    np.testing.assert_allclose(summary["contribution_share"].sum(axis=1), 1.0)
    norms = C.corpus_contribution_norms(acts)  # (1, 2, n_tokens)
    np.testing.assert_allclose(summary["contribution"], norms.mean(-1))
    found = C.sharp_but_small(summary)
    assert [(r["layer"], r["head"]) for r in found] == [(0, 0)]
    assert C.sharp_but_small(summary, min_sharpness=0.99) == []
    with pytest.raises(ValueError, match="alike"):
        C.sharp_but_small({"sharpness": np.ones((1, 2)), "contribution_share": np.ones(2),
                           "contribution": np.ones(2)})


def test_on_the_toy_model():
    acts = collect_toy(toy_model.load(), lang.generate(20, seed=3))
    for layer in range(acts.n_layers):
        p = acts.params[layer]
        parts = C.head_contributions(acts.heads[layer], p.W_O)  # (n_heads, n_tokens, d_model)
        np.testing.assert_allclose(parts.sum(0) + p.b_O, acts.attn_out[layer], atol=1e-4)
    summary = C.head_summary(acts)
    for table in summary.values():
        assert table.shape == (2, 8) and np.isfinite(table).all()
    assert (summary["sharpness"] > 0).all() and (summary["sharpness"] <= 1 + 1e-6).all()

"""Head similarity with known answers: identical heads are at JS distance 0 and CKA 1, disjoint
attention is at distance 1, rotations do not change CKA, the JS distance agrees with scipy's, and
planted clusters come out of the clustering and the MDS map."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from mha_course.analysis import redundancy as R
from mha_course.experiments.activations import collect_toy
from mha_course.models import toy_language as lang
from mha_course.models import toy_model
from mha_course.np_attention import softmax


def random_attentions(n_layers=2, n_heads=3, lengths=(4, 6, 5), seed=0):
    rng = np.random.default_rng(seed)
    return [softmax(2 * rng.standard_normal((n_layers, n_heads, n, n)), axis=-1) for n in lengths]


def test_identical_heads_are_at_distance_zero():
    attentions = random_attentions()
    for A in attentions:
        A[1, 2] = A[0, 1]  # head L1H2 copies L0H1 on every sentence
    D = R.js_distance_matrix(attentions)
    assert D.shape == (6, 6)
    np.testing.assert_allclose(np.diag(D), 0.0)
    assert D[1, 5] == pytest.approx(0.0, abs=1e-7) and D[5, 1] == D[1, 5]
    np.testing.assert_array_equal(D, D.T)
    off = ~np.eye(6, dtype=bool)
    off[1, 5] = off[5, 1] = False
    assert D[off].min() > 0.05 and D.max() <= 1.0


def test_disjoint_attention_is_at_distance_one():
    n = 4
    A = np.zeros((1, 2, n, n))
    A[0, 0, :, 0] = 1.0  # every query on the first token
    A[0, 1, :, -1] = 1.0  # every query on the last
    D = R.js_distance_matrix([A])
    assert D[0, 1] == pytest.approx(1.0)


def test_js_distance_agrees_with_scipy():
    attentions = random_attentions(seed=3)
    D = R.js_distance_matrix(attentions)
    for a, b in ((0, 4), (2, 3)):
        (la, ha), (lb, hb) = divmod(a, 3), divmod(b, 3)
        rows = [jensenshannon(A[la, ha, q], A[lb, hb, q], base=2)
                for A in attentions for q in range(A.shape[-1])]
        assert D[a, b] == pytest.approx(np.mean(rows), abs=1e-9)
    # query masks: only the chosen rows count
    masks = [np.arange(A.shape[-1]) == 0 for A in attentions]
    first_rows = [jensenshannon(A[0, 0, 0], A[1, 1, 0], base=2) for A in attentions]
    assert R.js_distance_matrix(attentions, masks)[0, 4] == pytest.approx(np.mean(first_rows))


def test_linear_cka_known_answers():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 6))
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert R.linear_cka(X, X) == pytest.approx(1.0)
    assert R.linear_cka(X, 3.0 * X @ Q + 5.0) == pytest.approx(1.0)  # rotated, scaled, shifted
    assert R.linear_cka(X, rng.standard_normal((500, 4))) < 0.05  # unrelated
    assert np.isnan(R.linear_cka(X, np.ones((500, 2))))  # a constant output
    with pytest.raises(ValueError, match="same n tokens"):
        R.linear_cka(X, X[:-1])


def test_cka_matrix_matches_pairwise_cka():
    rng = np.random.default_rng(1)
    heads = rng.standard_normal((2, 3, 200, 4))  # (n_layers, n_heads, n_tokens, d_v)
    Q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    heads[1, 0] = heads[0, 2] @ Q * 0.5  # L1H0 is a rotated copy of L0H2
    S = R.cka_matrix(heads)
    assert S.shape == (6, 6)
    np.testing.assert_allclose(np.diag(S), 1.0)
    assert S[2, 3] == pytest.approx(1.0) and S[3, 2] == pytest.approx(1.0)
    for a, b in ((0, 1), (1, 5), (4, 2)):
        assert S[a, b] == pytest.approx(R.linear_cka(heads.reshape(6, 200, 4)[a],
                                                     heads.reshape(6, 200, 4)[b]))
    dead = heads.copy()
    dead[0, 0] = 0.0
    assert np.isnan(R.cka_matrix(dead)[0]).all()
    with pytest.raises(ValueError, match=r"\(n_layers, n_heads, n_tokens, d_v\)"):
        R.cka_matrix(heads[0])


def planted_clusters(seed=0):
    """Six heads: 0-2 close to each other, 3-5 close to each other, the groups far apart."""
    rng = np.random.default_rng(seed)
    points = np.concatenate([rng.normal(0, 0.05, (3, 3)), rng.normal(0, 0.05, (3, 3)) + 3.0])
    perm = np.array([4, 0, 5, 2, 1, 3])  # interleave the groups
    points = points[perm]
    D = np.linalg.norm(points[:, None] - points[None], axis=-1)  # (6, 6)
    return D, (perm >= 3).astype(int)


def test_cluster_order_puts_planted_groups_side_by_side():
    D, group = planted_clusters()
    order = R.cluster_order(D)
    assert sorted(order.tolist()) == list(range(6))
    along = group[order]
    assert (np.diff(along) != 0).sum() == 1, along  # one switch between the two groups
    assert R.cluster_order(np.zeros((1, 1))).tolist() == [0]
    with pytest.raises(ValueError, match="NaN"):
        R.cluster_order(np.full((3, 3), np.nan))


def test_mds_embedding_separates_planted_groups():
    D, group = planted_clusters(seed=1)
    xy = R.mds_embedding(D, seed=0)
    assert xy.shape == (6, 2)
    E = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    same = group[:, None] == group[None]
    assert E[~same].min() > 3 * E[same].max()
    np.testing.assert_allclose(R.mds_embedding(D, seed=0), xy)  # seeded
    with pytest.raises(ValueError, match="square"):
        R.mds_embedding(np.zeros((3, 2)))


def test_layer_separation_and_labels():
    names, layers = R.head_labels(2, 3)
    assert names == ["L0H0", "L0H1", "L0H2", "L1H0", "L1H1", "L1H2"]
    assert layers.tolist() == [0, 0, 0, 1, 1, 1]
    D = np.where(layers[:, None] == layers[None], 0.2, 0.8)
    np.fill_diagonal(D, 0.0)
    sep = R.layer_separation(D, 2, 3)
    assert sep == pytest.approx({"within_layer": 0.2, "between_layers": 0.8, "ratio": 0.25})
    with pytest.raises(ValueError, match=r"must be \(9, 9\) for 3 layers x 3 heads; got \(6, 6\)"):
        R.layer_separation(D, 3, 3)


def test_on_the_toy_model():
    """A smoke test on real heads: finite, symmetric, within [0, 1], and the 16 heads differ."""
    acts = collect_toy(toy_model.load(), lang.generate(30, seed=9))
    D = R.js_distance_matrix(acts.attentions)
    S = R.cka_matrix(acts.heads)
    for M in (D, S):
        assert M.shape == (16, 16) and np.isfinite(M).all()
        np.testing.assert_allclose(M, M.T, atol=1e-12)
        assert M.min() >= -1e-12 and M.max() <= 1 + 1e-9
    off = ~np.eye(16, dtype=bool)
    assert D[off].min() > 0.05 and S[off].max() < 0.99
    assert R.mds_embedding(D).shape == (16, 2)

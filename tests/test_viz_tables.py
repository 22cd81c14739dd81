"""The per-head views draw what they are given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402 (after matplotlib.use)
import pytest  # noqa: E402 (after matplotlib.use)

from mha_course.analysis.probing import ProbeResult  # noqa: E402 (after matplotlib.use)
from mha_course.analysis.pruning import PruningCurves  # noqa: E402 (after matplotlib.use)
from mha_course.viz import tables  # noqa: E402 (after matplotlib.use)


def test_layer_head_table_draws_the_values_and_greys_out_removed_heads():
    T = np.arange(6.0).reshape(2, 3) / 10
    removed = np.array([[False, True, False], [False, False, False]])
    fig = tables.layer_head_table(T, title="scores", removed=removed)
    ax = fig.axes[0]
    (image,) = ax.images
    shown = image.get_array()
    assert shown.mask[0, 1] and not shown.mask[0, 0]
    np.testing.assert_array_equal(shown.data, T)
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["0.00", "0.20", "0.30", "0.40", "0.50"]  # no number on the removed head
    assert ax.get_title() == "scores" and (ax.get_xlabel(), ax.get_ylabel()) == ("head", "layer")
    with pytest.raises(ValueError, match=r"\(n_layers, n_heads\)"):
        tables.layer_head_table(np.ones(3))
    with pytest.raises(ValueError, match="removed must be"):
        tables.layer_head_table(T, removed=np.ones((3, 2), dtype=bool))


def test_probe_panels_and_similarity_and_head_map():
    acc = np.array([[0.9, 0.5], [0.7, 0.6]])
    control = np.array([[0.4, 0.5], [0.6, 0.6]])
    result = ProbeResult(task="pos", classes=("A", "B"), accuracy=acc, control_accuracy=control,
                         majority=0.5)
    fig = tables.probe_panels(result)
    np.testing.assert_allclose(fig.axes[2].images[0].get_array(), acc - control)
    D = np.array([[0, 1, 0.1], [1, 0, 1], [0.1, 1, 0]])
    fig = tables.similarity_matrix(D, order=[0, 2, 1], labels=["a", "b", "c"])
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), D[np.ix_([0, 2, 1], [0, 2, 1])])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "c", "b"]
    with pytest.raises(ValueError, match="cover"):
        tables.similarity_matrix(D, order=[0, 0, 1])
    fig = tables.head_map(np.random.default_rng(0).standard_normal((4, 2)), [0, 0, 1, 1],
                          ["L0H0", "L0H1", "L1H0", "L1H1"])
    assert len(fig.axes[0].texts) == 4


def test_pruning_plot():
    curves = PruningCurves(
        n_removed=np.arange(5), n_total=4, metric="accuracy", ablation="zero",
        curves={"importance": np.array([[1.0, 0.9, 0.8, 0.5, 0.1]]),
                "reverse": np.array([[1.0, 0.4, 0.2, 0.1, 0.1]]),
                "random": np.array([[1.0, 0.7, 0.5, 0.3, 0.1], [1.0, 0.8, 0.4, 0.2, 0.1]])},
        orders={})
    ax = tables.pruning_plot(curves).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["least important first"].get_ydata(),
                               [1.0, 0.9, 0.8, 0.5, 0.1])
    np.testing.assert_allclose(lines["random order (mean of 2)"].get_ydata(),
                               [1.0, 0.75, 0.45, 0.25, 0.1])
    np.testing.assert_allclose(lines["most important first"].get_xdata(), [0, 0.25, 0.5, 0.75, 1.0])
    assert ax.get_ylabel() == "accuracy" and len(ax.collections) == 1  # the random band


def test_head_scatter_and_layer_profile_draw_each_head_once_with_its_label():
    x, y = np.array([0.1, 0.5, 0.9, 0.3]), np.array([1.0, 2.0, 3.0, 4.0])
    names = ["L0H0", "L0H1", "L1H0", "L1H1"]
    fig = tables.head_scatter(x, y, names, layers=[0, 0, 1, 1], title="two scores", xlabel="a",
                              ylabel="b")
    ax = fig.axes[0]
    points = np.concatenate([c.get_offsets() for c in ax.collections])  # one scatter per layer
    np.testing.assert_allclose(sorted(map(tuple, points)), sorted(zip(x, y)))
    labelled = {t.get_text(): tuple(t.xy) for t in ax.texts}
    assert labelled == {name: (a, b) for name, a, b in zip(names, x, y)}  # each label on its point
    assert ax.get_title() == "two scores" and ax.get_legend() is not None
    with pytest.raises(ValueError, match="one entry per head"):
        tables.head_scatter(x, y, names[:3], title="t")
    T = np.array([[0.5, 1.5, 1.0], [0.2, 0.1, 0.3]])  # (n_layers, n_heads)
    ax = tables.layer_profile(T, ylabel="entropy", title="entropy").axes[0]
    texts = {t.get_text(): t.xy for t in ax.texts}
    assert len(ax.texts) == 6 and set(texts) == {"H0", "H1", "H2"}
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    np.testing.assert_allclose(np.sort(points[:, 1]), np.sort(T.ravel()))
    assert np.all(np.abs(points[:3, 0] - 0) < 0.3) and np.all(np.abs(points[3:, 0] - 1) < 0.3)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["layer 0", "layer 1"]

"""The helpers that notebooks 05 and 06 call instead of long cells: each is checked against an
independent computation (loops, the inputs themselves) and for its error on bad input."""

from __future__ import annotations

# matplotlib draws with Agg: tests/conftest.py selects it before any test module loads
import numpy as np
import pytest
from matplotlib.colors import to_hex

from mha_course.analysis import probing, real_roles
from mha_course.analysis.probing import ProbeResult
from mha_course.analysis.syntax import DIRECTION_WORDS
from mha_course.np_attention import softmax
from mha_course.viz import palette, tables

TOKENS = ["[CLS]", "the", "fox", "jumps", ".", "[SEP]"]


def _weights(n_layers=2, n_heads=3, n=len(TOKENS), seed=0):
    rng = np.random.default_rng(seed)
    return softmax(2 * rng.standard_normal((n_layers, n_heads, n, n)), axis=-1)


def _result(task, acc, control, layer_acc, layer_control, classes=("A", "B", "C")):
    return ProbeResult(task=task, classes=classes, accuracy=np.asarray(acc),
                       control_accuracy=np.asarray(control),
                       layer_accuracy={"residual": np.asarray(layer_acc)},
                       layer_control_accuracy={"residual": np.asarray(layer_control)},
                       majority=0.25, n_train=70, n_test=30)


# ---------------------------------------------------------------------------- analysis helpers
def test_mass_on_tokens_is_the_mean_weight_from_the_inner_pieces():
    A = _weights()
    mass = real_roles.mass_on_tokens(A, TOKENS)
    assert list(mass) == ["[CLS]", "[SEP]", "."]
    for target, key in (("[CLS]", 0), ("[SEP]", 5), (".", 4)):
        expected = np.zeros((2, 3))
        for layer in range(2):
            for head in range(3):
                expected[layer, head] = sum(A[layer, head, i, key] for i in range(1, 5)) / 4
        np.testing.assert_allclose(mass[target], expected)
    one_hot = np.zeros_like(A)
    one_hot[..., 0] = 1.0  # every query parks all its weight on [CLS]
    np.testing.assert_allclose(real_roles.mass_on_tokens(one_hot, TOKENS)["[CLS]"], 1.0)
    np.testing.assert_allclose(real_roles.mass_on_tokens(one_hot, TOKENS)["."], 0.0)


def test_mass_on_tokens_refuses_bad_input():
    with pytest.raises(ValueError, match=r"not among the tokens"):
        real_roles.mass_on_tokens(_weights(), TOKENS, targets=("[CLS]", "?"))
    with pytest.raises(ValueError, match=r"\(n_layers, n_heads, n, n\).*got shape \(2, 3, 5, 5\)"):
        real_roles.mass_on_tokens(_weights(n=5), TOKENS)


def test_summary_lines_report_the_best_head_and_the_layer_outputs():
    acc = np.array([[0.5, 0.9, 0.6], [0.7, 0.8, 0.4]])
    control = np.array([[0.4, 0.3, 0.5], [0.2, 0.7, 0.4]])  # selectivity: best L0H1, 0.60
    results = {"pos": _result("pos", acc, control, [0.8, 0.95], [0.3, 0.5])}
    header, line = probing.summary_lines(results)
    assert "best head" in header and "last layer" in header
    fields = line.split()
    assert fields[:3] == ["pos", "3", "0.25"] and fields[3] == "L0H1"
    assert [float(x) for x in fields[4:]] == pytest.approx([0.9, 0.3, 0.6, 0.95, 0.5, 0.45])
    header, line = probing.summary_lines(results, layers="all")
    assert [float(x) for x in line.split()[-2:]] == pytest.approx([0.5, 0.45])  # L0, L1
    with pytest.raises(ValueError, match="'last' or 'all'"):
        probing.summary_lines(results, layers="first")
    with pytest.raises(ValueError, match="no layer output 'attn_out'"):
        probing.summary_lines(results, feature="attn_out")


# ---------------------------------------------------------------------------- figures
def test_head_maps_draw_each_table_on_one_scale_and_name_its_best_head():
    a = np.array([[0.1, 0.2, 0.3], [0.9, 0.0, 0.4]])
    b = np.full((2, 3), np.nan)
    fig = tables.head_maps({"on [CLS]": a, "rare_word": b}, suptitle="what to see", label="weight",
                           cmap=palette.ATTENTION_CMAP)
    maps = [ax for ax in fig.axes if ax.images]
    assert len(maps) == 2 and fig.get_suptitle() == "what to see"
    np.testing.assert_allclose(maps[0].images[0].get_array(), a)
    assert maps[0].get_title(loc="left") == f"on [CLS]: best L1H0 0.90, mean {a.mean():.2f}"
    assert maps[1].get_title(loc="left") == "rare_word: no values (NaN)"
    assert all(im.get_clim() == (0.0, 1.0) for ax in maps for im in ax.images)
    assert [t.get_text() for t in maps[0].get_yticklabels()] == ["L0", "L1"]
    assert (maps[0].get_xlabel(), maps[0].get_ylabel()) == ("head", "layer")
    assert any(ax.get_ylabel() == "weight" for ax in fig.axes if not ax.images)  # the colour bar
    with pytest.raises(ValueError, match="same"):
        tables.head_maps({"a": a, "b": np.zeros((3, 2))}, suptitle="t")
    with pytest.raises(ValueError, match="at least one"):
        tables.head_maps({}, suptitle="t")


def test_head_maps_fill_a_grid_and_hide_the_spare_axes():
    fig = tables.head_maps({str(k): np.full((2, 3), k / 10) for k in range(5)}, suptitle="t",
                           ncols=3)
    assert sum(1 for ax in fig.axes if ax.images) == 5
    assert sum(1 for ax in fig.axes if not ax.axison) == 1  # 2 x 3 grid, one left empty


def _clark_rows():
    rows = []
    for relation, acc, base in (("nsubj", (0.6, 0.5), (0.55, 0.55)),
                                ("det", (0.8, 0.7), (0.7, 0.7))):
        for direction, a, b in zip(DIRECTION_WORDS, acc, base):
            rows.append({"relation": relation, "direction": direction,
                         "direction_words": DIRECTION_WORDS[direction], "query": "q", "key": "k",
                         "n_arcs": 10, "best_head": "L1H2", "accuracy": a,
                         "baseline_accuracy": b})
    return rows


def test_clark_bars_put_each_head_next_to_its_baseline_one_panel_per_direction():
    rows = _clark_rows()
    fig = tables.clark_bars(rows)
    assert len(fig.axes) == 2
    for ax, direction in zip(fig.axes, DIRECTION_WORDS):
        these = [r for r in rows if r["direction"] == direction]
        heights = [p.get_height() for p in ax.patches]
        assert heights == pytest.approx([r["accuracy"] for r in these]
                                        + [r["baseline_accuracy"] for r in these])
        colours = {to_hex(p.get_facecolor()) for p in ax.patches}
        assert colours == {palette.BLUE.lower(), palette.GREY.lower()}
        assert ax.get_title().startswith(DIRECTION_WORDS[direction])
        assert ax.get_xlabel() and ax.get_ylabel() == "accuracy"
        assert [t.get_text() for t in ax.texts] == ["L1H2", "L1H2"]
    with pytest.raises(ValueError, match="at least one row"):
        tables.clark_bars([])


def test_layer_trends_plot_the_profile_as_given():
    profile = {"delimiter": np.array([0.3, 0.6, 0.4]),
               "entropy": np.array([2.0, 1.3, 1.8]), "entropy_words": np.array([2.1, 1.6, 2.0]),
               "mean_distance": np.array([5.0, 5.5, 6.0]),
               "mean_distance_words": np.array([4.0, 3.0, 4.5])}
    fig = tables.layer_trends(profile, title="t")
    lines = [line for ax in fig.axes for line in ax.lines]
    expected = [profile[k] for k in ("delimiter", "entropy", "entropy_words", "mean_distance",
                                     "mean_distance_words")]
    for line, values in zip(lines, expected, strict=True):
        np.testing.assert_allclose(line.get_ydata(), values)
        np.testing.assert_allclose(line.get_xdata(), [0, 1, 2])
    assert all(ax.get_xlabel() == "layer" and ax.get_ylabel() for ax in fig.axes)
    with pytest.raises(ValueError, match="entropy_words"):
        tables.layer_trends({k: v for k, v in profile.items() if k != "entropy_words"})


def test_selectivity_bars_show_the_best_head_and_layer_output_of_each_model():
    trained = {"pos": _result("pos", [[0.9, 0.5]], [[0.2, 0.4]], [0.9, 0.99], [0.4, 0.5]),
               "role": _result("role", [[0.7, 0.6]], [[0.6, 0.6]], [0.8, 0.9], [0.7, 0.6])}
    untrained = {t: _result(t, [[0.3, 0.3]], [[0.3, 0.25]], [0.3, 0.3], [0.3, 0.2])
                 for t in trained}
    fig = tables.selectivity_bars(trained, untrained)
    heights = [p.get_height() for p in fig.axes[0].patches]
    expected = []
    for source in (trained, untrained):
        expected += [source[t].selectivity.max() for t in trained]  # best head
        expected += [source[t].layer_selectivity["residual"].max() for t in trained]  # layer output
    assert heights == pytest.approx(expected)
    with pytest.raises(ValueError, match="same tasks"):
        tables.selectivity_bars(trained, {"pos": untrained["pos"]})
    with pytest.raises(ValueError, match="no layer output 'attn_out' was probed for trained 'pos'"):
        tables.selectivity_bars(trained, untrained, feature="attn_out")

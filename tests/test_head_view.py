"""The head view draws one line per (query, key) weight above the threshold, styled per head."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # drawn and inspected here, never shown

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import PathPatch

from mha_course.viz.head_view import ROLE_STYLES, head_view

TOKENS = ["The", "fox", "jumps", "."]


def previous_token_head(n=4):
    A = np.zeros((n, n))
    A[0, 0] = 1.0
    A[np.arange(1, n), np.arange(n - 1)] = 1.0  # every query on the token before it
    return A


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_arcs_one_curve_per_weight_above_threshold_with_width_proportional_to_weight():
    A = previous_token_head()
    A[2] = [0.0, 0.6, 0.3, 0.1]  # "jumps" -> "fox" 0.6, itself 0.3, "." 0.1 (below threshold)
    fig = head_view(A, TOKENS, threshold=0.2, max_linewidth=4.0)
    patches = [p for p in fig.axes[0].patches if isinstance(p, PathPatch)]
    expected = int((A >= 0.2).sum())
    assert len(patches) == expected == 5
    widths = sorted(p.get_linewidth() for p in patches)
    assert widths == pytest.approx(sorted(4.0 * A[A >= 0.2]))


def test_each_head_gets_its_role_style_and_a_legend_entry():
    A = np.stack([previous_token_head(), np.eye(4)])
    fig = head_view(A, TOKENS, labels=["local head", "identity"], threshold=0.5)
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["local head", "identity"]
    colours = {matplotlib.colors.to_hex(p.get_edgecolor()) for p in ax.patches}
    assert colours == {matplotlib.colors.to_hex(ROLE_STYLES["local"][0]),
                       matplotlib.colors.to_hex(ROLE_STYLES["identity"][0])}


def test_selected_heads_only_and_columns_layout_draws_straight_lines():
    A = np.stack([previous_token_head(), np.eye(4), np.full((4, 4), 0.25)])
    fig = head_view(A, TOKENS, heads=[1], layout="columns", threshold=0.5)
    lines = [ln for ln in fig.axes[0].lines if len(ln.get_xdata()) == 2]
    assert len(lines) == 4  # the identity head only: one line per token, query i -> key i
    for ln in lines:
        (x0, x1), (y0, y1) = ln.get_xdata(), ln.get_ydata()
        assert (x0, x1) == (0.0, 1.0) and y0 == y1


def test_tokens_are_written_under_the_arcs():
    fig = head_view(previous_token_head(), TOKENS)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == TOKENS


def test_figure_exports_to_png_and_svg(tmp_path):
    fig = head_view(previous_token_head(), TOKENS)
    for ext in ("png", "svg"):
        path = tmp_path / f"view.{ext}"
        fig.savefig(path)
        assert path.stat().st_size > 1000


@pytest.mark.parametrize("kwargs, error, match", [
    ({"weights": np.ones((2, 3, 4))}, ValueError, "3 x 4"),
    ({"tokens": TOKENS[:3]}, ValueError, "3 tokens.*4"),
    ({"heads": [5]}, ValueError, r"\[0, 0\].*\[5\]"),
    ({"labels": ["a", "b"]}, ValueError, "2 labels for 1 heads"),
    ({"layout": "circle"}, ValueError, "circle"),
    ({"threshold": 1.5}, ValueError, "1.5"),
    ({"weights": np.full((4, 4), np.nan)}, ValueError, "NaN"),
])
def test_bad_input_names_what_was_expected_and_given(kwargs, error, match):
    args = {"weights": previous_token_head(), "tokens": TOKENS, **kwargs}
    with pytest.raises(error, match=match):
        head_view(args.pop("weights"), args.pop("tokens"), **args)

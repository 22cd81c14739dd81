"""The head view draws one line per (query, key) weight above the threshold, styled per head; it
says which end is the key, keeps the delimiter's fan underneath, and `drawn_arcs` lists what it
draws."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # drawn and inspected here, never shown

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.patches import PathPatch

from mha_course.analysis.heads import ROLES
from mha_course.viz import palette
from mha_course.viz.head_view import KEY_NOTE, ROLE_STYLES, drawn_arcs, head_view

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
    colours = {to_hex(p.get_edgecolor()) for p in ax.patches}
    assert colours == {to_hex(ROLE_STYLES["local"][0]), to_hex(ROLE_STYLES["identity"][0])}


def test_every_role_has_its_own_okabe_ito_colour_and_line_style():
    assert set(ROLE_STYLES) == set(ROLES)  # the role names of analysis.heads, no more, no less
    colours = [to_hex(c) for c, _ in ROLE_STYLES.values()]
    okabe_ito = {to_hex(c) for c in palette.OKABE_ITO + (palette.GREY,)}
    assert set(colours) <= okabe_ito and len(set(colours)) == len(colours)
    styles = [str(ls) for _, ls in ROLE_STYLES.values()]
    assert len(set(styles)) == len(styles)  # the style alone tells two roles apart
    # the running example's illustration: local blue dashed, verb -> subject pink solid,
    # related nouns green dotted
    assert ROLE_STYLES["local"][0] == palette.BLUE
    assert ROLE_STYLES["syntactic"] == (palette.PURPLE, "-")
    assert ROLE_STYLES["coreference"][0] == palette.GREEN


@pytest.mark.parametrize("label, role", [
    ("rare word (L5H4)", "rare_word"), ("rare-target", "rare_target"), ("L0H8 duplicate 0.83",
                                                                        "duplicate"),
    ("identity: own position", "identity"), ("syntactic: verb → subject", "syntactic")])
def test_a_label_that_names_a_role_takes_its_style(label, role):
    fig = head_view(np.eye(4), TOKENS, labels=[label], threshold=0.5)
    patch = fig.axes[0].patches[0]
    assert to_hex(patch.get_edgecolor()) == to_hex(ROLE_STYLES[role][0])


def test_the_legend_says_which_end_is_the_query_and_which_the_key():
    for layout in ("arcs", "columns"):
        fig = head_view(previous_token_head(), TOKENS, layout=layout, threshold=0.5)
        assert fig.axes[0].get_legend().get_title().get_text() == KEY_NOTE
    assert "query → key" in KEY_NOTE and "dot at the key" in KEY_NOTE
    # the dots sit at the keys: the previous-token head's keys are 0, 0, 1, 2
    fig = head_view(previous_token_head(), TOKENS, threshold=0.5)
    dots = sorted(float(ln.get_xdata()[0]) for ln in fig.axes[0].lines if ln.get_marker() == "o")
    assert dots == [0.0, 0.0, 1.0, 2.0]


def test_the_delimiter_head_goes_underneath_and_thinner():
    fan = np.zeros((4, 4))
    fan[:, 3] = 1.0  # every token on "."
    A = np.stack([fan, previous_token_head()])  # (2, 4, 4): the delimiter is listed first
    fig = head_view(A, TOKENS, labels=["delimiter", "local"], threshold=0.5, max_linewidth=4.0)
    ax = fig.axes[0]
    by_colour = {}
    for p in ax.patches:
        by_colour.setdefault(to_hex(p.get_edgecolor()), []).append(p)
    delimiter = by_colour[to_hex(ROLE_STYLES["delimiter"][0])]
    local = by_colour[to_hex(ROLE_STYLES["local"][0])]
    assert max(p.get_zorder() for p in delimiter) < min(p.get_zorder() for p in local)
    assert max(p.get_linewidth() for p in delimiter) == pytest.approx(2.0)  # half of 4 * 1.0
    assert max(p.get_linewidth() for p in local) == pytest.approx(4.0)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["delimiter (underneath, thinner)", "local"]
    # and drawn like any other head on request
    fig = head_view(A, TOKENS, labels=["delimiter", "local"], threshold=0.5, background_roles=())
    widths = {to_hex(p.get_edgecolor()): p.get_linewidth() for p in fig.axes[0].patches}
    assert widths[to_hex(ROLE_STYLES["delimiter"][0])] == pytest.approx(4.0)
    # alone it covers nothing: full width, no note
    fig = head_view(fan, TOKENS, labels=["delimiter"], threshold=0.5)
    assert max(p.get_linewidth() for p in fig.axes[0].patches) == pytest.approx(4.0)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["delimiter"]


def test_drawn_arcs_lists_exactly_the_lines_the_view_draws():
    rng = np.random.default_rng(0)
    A = rng.dirichlet(np.full(4, 0.5), size=(3, 4))  # (n_heads, n_q, n_k)
    labels = ["local", "delimiter", "x"]
    arcs = drawn_arcs(A, TOKENS, heads=[0, 1, 2], labels=labels, threshold=0.3)
    fig = head_view(A, TOKENS, labels=labels, threshold=0.3)
    assert len(arcs) == len(fig.axes[0].patches) == int((A >= 0.3).sum())
    for arc in arcs:  # each entry is one weight of the array, named by its tokens
        h = labels.index(arc["label"])
        assert arc["weight"] == A[h, arc["query_index"], arc["key_index"]] >= 0.3
        assert (arc["query"], arc["key"]) == (TOKENS[arc["query_index"]], TOKENS[arc["key_index"]])
    strong = drawn_arcs(A, TOKENS, heads=[1], labels=["delimiter"], threshold=0.5)
    assert strong
    assert strong == [a for a in arcs if a["label"] == "delimiter" and a["weight"] >= 0.5]


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
    ({"background_roles": ["punctuation"]}, ValueError, "punctuation"),
    ({"weights": np.full((4, 4), np.nan)}, ValueError, "NaN"),
])
def test_bad_input_names_what_was_expected_and_given(kwargs, error, match):
    args = {"weights": previous_token_head(), "tokens": TOKENS, **kwargs}
    with pytest.raises(error, match=match):
        head_view(args.pop("weights"), args.pop("tokens"), **args)

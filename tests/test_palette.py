"""Figures anyone can read: every view of `mha_course.viz` draws with the course's palette.

Each public figure function is rendered (Agg) on small arrays, then every artist is inspected:

- categorical colours (lines, markers, scatter points, patches' faces and edges, texts) are
  Okabe-Ito colours or greys (black and white included);
- colour-mapped artists (images, colour-mapped scatters, colour bars) use one of the palette's
  maps, and the sequential ones darken in even steps of lightness;
- attention images sit on a fixed 0-1 scale with a colour bar, unless a title says "auto-scaled";
- labels do not overlap, mosaics carry token labels, scatters have a title and labelled points.

A source scan adds that no viz module but palette.py names a colour or a colour map.
"""

from __future__ import annotations

import ast
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402 (after matplotlib.use)
import pytest  # noqa: E402 (after matplotlib.use)
from matplotlib.colors import is_color_like, to_rgb, to_rgba_array  # noqa: E402 (after matplotlib.use)
from matplotlib.figure import Figure  # noqa: E402 (after matplotlib.use)
from matplotlib.image import AxesImage  # noqa: E402 (after matplotlib.use)
from matplotlib.text import Text  # noqa: E402 (after matplotlib.use)

import mha_course.viz as viz  # noqa: E402 (after matplotlib.use)
from mha_course.analysis.probing import ProbeResult  # noqa: E402 (after matplotlib.use)
from mha_course.analysis.pruning import PruningCurves  # noqa: E402 (after matplotlib.use)
from mha_course.np_attention import init_params, softmax  # noqa: E402 (after matplotlib.use)
from mha_course.viz import palette, tables, widgets  # noqa: E402 (after matplotlib.use)
from mha_course.viz.explorer import VIEWS, explore  # noqa: E402 (after matplotlib.use)
from mha_course.viz.heatmap import head_mosaic  # noqa: E402 (after matplotlib.use)

VIZ = Path(viz.__file__).parent
TOKENS = ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "."]
# Okabe & Ito (2008), "Color Universal Design", as published: the oracle for palette.OKABE_ITO
PUBLISHED_OKABE_ITO = {(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66),
                       (0, 114, 178), (213, 94, 0), (204, 121, 167), (0, 0, 0)}


def weights(*shape, seed=0, sharp=1.0):
    """Rows that sum to 1, like softmax output."""
    return softmax(sharp * np.random.default_rng(seed).standard_normal(shape), axis=-1)


def _curves():
    return PruningCurves(
        n_removed=np.arange(5), n_total=4, metric="accuracy", ablation="zero",
        curves={"importance": np.array([[1.0, 0.9, 0.8, 0.5, 0.1]]),
                "reverse": np.array([[1.0, 0.4, 0.2, 0.1, 0.1]]),
                "random": np.array([[1.0, 0.7, 0.5, 0.3, 0.1], [1.0, 0.8, 0.4, 0.2, 0.1]])},
        orders={"importance": np.array([[3, 1, 0, 2]]), "reverse": np.array([[2, 0, 1, 3]]),
                "random": np.array([[0, 1, 2, 3], [3, 2, 1, 0]])})


def _fake_attend(text):
    tokens = text.split()
    A = weights(2, 3, len(tokens), len(tokens), seed=len(text), sharp=3.0)
    return tokens, A


def _explorer_figure(view):
    panel = explore(_fake_attend, ["the fox sees the dog ."], view=view)
    if view == "grid":
        return head_mosaic(panel.weights, tokens=panel.tokens, titles=panel._titles(),
                           selected=(0, 1))
    return panel.figure()


def _figure(result) -> Figure:
    return result if isinstance(result, Figure) else result.figure


rng = np.random.default_rng(0)
W = weights(2, 3, 6, 6, sharp=2.0)  # (n_layers, n_heads, n, n)
SIX = TOKENS[:6]
PROBE = ProbeResult(task="pos", classes=("A", "B"), accuracy=np.array([[0.9, 0.5], [0.7, 0.6]]),
                    control_accuracy=np.array([[0.4, 0.5], [0.6, 0.6]]), majority=0.5)
PROBE_LAYERS = ProbeResult(task="pos", classes=("A", "B"), accuracy=PROBE.accuracy,
                           control_accuracy=PROBE.control_accuracy, majority=0.5,
                           layer_accuracy={"residual": np.array([0.8, 0.9])},
                           layer_control_accuracy={"residual": np.array([0.5, 0.5])})
PARAMS = init_params(d_model=8, n_heads=2, seed=0)
Q2, K2 = rng.standard_normal((10, 4)), rng.standard_normal((10, 4))
XY = rng.standard_normal((24, 2))
HEAD_NAMES = [f"L{layer}H{head}" for layer in range(4) for head in range(6)]

# Every public figure function, with its arguments. A new view gets a line here.
FIGURES = {
    "attention_heatmap": lambda: viz.attention_heatmap(W[0, 0], SIX, title="one head"),
    "attention_heatmap auto-scaled": lambda: viz.attention_heatmap(W[0, 0], SIX, vmax=None),
    "head_grid": lambda: viz.head_grid(W, SIX),
    "head_grid auto-scaled": lambda: viz.head_grid(W, SIX, vmax=None),
    "head_mosaic": lambda: head_mosaic(W, tokens=SIX, selected=(1, 2)),
    "head_view arcs": lambda: viz.head_view(W[0], SIX, labels=["local", "syntactic", "x"]),
    "head_view columns": lambda: viz.head_view(W[1], SIX, layout="columns"),
    "projected_tokens": lambda: viz.projected_tokens(Q2, K2, TOKENS, weights=weights(10, 10),
                                                     title="head 0"),
    "layer_head_table": lambda: tables.layer_head_table(W[0, :, 0], title="scores"),
    "layer_head_table removed": lambda: tables.layer_head_table(
        W[0, :, 0], removed=np.eye(3, 6, dtype=bool)),
    "probe_panels": lambda: tables.probe_panels(PROBE),
    "similarity_matrix": lambda: tables.similarity_matrix(1 - np.eye(4), labels=list("abcd")),
    "head_map": lambda: tables.head_map(XY, np.repeat(np.arange(4), 6), HEAD_NAMES),
    "head_scatter": lambda: tables.head_scatter(XY[:, 0], XY[:, 1], HEAD_NAMES,
                                                layers=np.repeat(np.arange(4), 6),
                                                xlabel="x", ylabel="y", title="two scores"),
    "layer_profile": lambda: tables.layer_profile(np.abs(XY[:, 0]).reshape(4, 6),
                                                  ylabel="entropy (nats)", title="entropy"),
    "pruning_plot": lambda: tables.pruning_plot(_curves()),
    "head_maps": lambda: tables.head_maps({"a": W[0, :, 0], "b": W[0, :, 1]}, suptitle="two maps"),
    "clark_bars": lambda: tables.clark_bars([
        {"direction": "dep_to_head", "direction_words": "dependent → head", "relation": "det",
         "query": "determiner", "key": "noun", "n_arcs": 3, "best_head": "L0H1", "accuracy": 0.8,
         "baseline_accuracy": 0.6}]),
    "layer_trends": lambda: tables.layer_trends(
        {k: np.linspace(0.2, 0.8, 3) for k in ("delimiter", "entropy", "entropy_words",
                                                 "mean_distance", "mean_distance_words")}),
    "selectivity_bars": lambda: tables.selectivity_bars({"pos": PROBE_LAYERS},
                                                        {"pos": PROBE_LAYERS}),
    "plot_scaling": lambda: widgets.plot_scaling(64, 1.0, n_pairs=200),
    "plot_head": lambda: widgets.plot_head(Q2[:6, :2], K2[:6, :2], W[0, 0], SIX, head=0),
    "plot_pruned_heads": lambda: widgets.plot_pruned_heads(_curves(), np.arange(4.0).reshape(2, 2),
                                                           2, "random"),
    **{f"explorer {view}": (lambda view=view: _explorer_figure(view)) for view in VIEWS},
}


_RENDERED: dict[str, Figure] = {}


@pytest.fixture(params=sorted(FIGURES))
def figure(request):
    """Each view rendered once for all the checks below (closing it keeps the artists)."""
    if request.param not in _RENDERED:
        fig = _figure(FIGURES[request.param]())
        fig.canvas.draw()
        _RENDERED[request.param] = fig
    return _RENDERED[request.param]


# ---------------------------------------------------------------------------- what is allowed
def allowed_colour(rgb) -> bool:
    """An Okabe-Ito colour or a grey (black and white included)."""
    r, g, b = (round(255 * c) for c in rgb[:3])
    return (r, g, b) in PUBLISHED_OKABE_ITO or (abs(r - g) <= 1 and abs(g - b) <= 1)


def test_the_palette_is_okabe_ito_as_published():
    published = {tuple(round(255 * c) for c in to_rgb(x)) for x in palette.OKABE_ITO}
    assert published == PUBLISHED_OKABE_ITO
    assert palette.categorical(10)[:8] == list(palette.OKABE_ITO)
    assert palette.HIGHLIGHT in palette.OKABE_ITO


@pytest.mark.parametrize("name", palette.SEQUENTIAL_CMAPS)
def test_sequential_maps_darken_in_even_steps(name):
    """Perceptually uniform enough to read magnitudes: lightness L* is monotonic, and no step is
    more than twice another (cividis, uniform in CAM02-UCS: 1.7; matplotlib's "Blues": 2.4)."""
    L = palette.lightness(matplotlib.colormaps[name](np.linspace(0, 1, 64)))  # (64,)
    steps = np.abs(np.diff(L))
    assert np.all(np.diff(L) > 0) or np.all(np.diff(L) < 0)
    assert steps.max() / steps.min() < 2.0
    assert abs(L[0] - L[-1]) > 60  # a long lightness range


def test_the_diverging_map_has_a_light_centre_and_no_red_green_axis():
    colours = matplotlib.colormaps[palette.DIVERGING_CMAP]([0.0, 0.5, 1.0])
    L = palette.lightness(colours)
    assert L[1] > L[0] + 40 and L[1] > L[2] + 40
    for r, g, b, _ in colours[[0, 2]]:  # neither end is a green
        assert not (g > r and g > b)


def test_lightness_matches_the_cielab_reference_values():
    np.testing.assert_allclose(palette.lightness([[0, 0, 0], [1, 1, 1], [1, 0, 0]]),
                               [0.0, 100.0, 53.24], atol=0.01)


# ---------------------------------------------------------------------------- rendered figures
def _categorical_colours(fig):
    """(what, rgba) of every colour an artist uses directly (not through a colour map)."""
    for ax in fig.axes:
        for line in ax.get_lines():
            yield f"line {line.get_label()!r}", line.get_color()
            for value in (line.get_markerfacecolor(), line.get_markeredgecolor()):
                if value is not None and not (isinstance(value, str) and value == "none"):
                    yield f"marker of {line.get_label()!r}", value
        for coll in ax.collections:
            if coll.get_array() is None:  # not colour-mapped: its own face colours
                yield from ((f"{type(coll).__name__} face", c) for c in coll.get_facecolors())
            yield from ((f"{type(coll).__name__} edge", c) for c in coll.get_edgecolors())
        for patch in ax.patches:
            yield f"{type(patch).__name__} face", patch.get_facecolor()
            yield f"{type(patch).__name__} edge", patch.get_edgecolor()
        for text in ax.texts:
            yield f"text {text.get_text()!r}", text.get_color()
            arrow = getattr(text, "arrow_patch", None)
            if arrow is not None:
                yield f"arrow of {text.get_text()!r}", arrow.get_edgecolor()
    for text in fig.texts:
        yield f"figure text {text.get_text()!r}", text.get_color()


def test_categorical_colours_are_okabe_ito_or_grey(figure):
    bad = set()
    for what, colour in _categorical_colours(figure):
        for rgba in to_rgba_array(colour):
            if rgba[3] > 0 and not allowed_colour(rgba):
                bad.add((what, tuple(np.round(rgba[:3], 3))))
    assert not bad, f"colours outside the palette: {sorted(bad)[:6]}"


def _mapped(fig):
    for ax in fig.axes:
        for artist in ax.images + [c for c in ax.collections if c.get_array() is not None]:
            yield ax, artist


def test_colour_maps_come_from_the_palette(figure):
    names = {artist.get_cmap().name for _, artist in _mapped(figure)}
    assert names <= set(palette.CMAPS), f"maps outside the palette: {names - set(palette.CMAPS)}"


def _titles(fig, ax):
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return " ".join([suptitle, ax.get_title()] + [t.get_text() for t in ax.texts])


def test_attention_is_on_0_1_with_a_colour_bar_unless_the_title_says_auto_scaled(figure):
    attention = [(ax, a) for ax, a in _mapped(figure)
                 if isinstance(a, AxesImage) and a.get_cmap().name == palette.ATTENTION_CMAP]
    bars = [a.colorbar for _, a in _mapped(figure) if a.colorbar is not None]
    for ax, image in attention:
        if palette.AUTO_SCALED in _titles(figure, ax):
            continue
        assert (image.norm.vmin, image.norm.vmax) == palette.ATTENTION_RANGE, ax.get_title()
        assert any(bar.mappable.get_cmap().name == palette.ATTENTION_CMAP
                   and (bar.norm.vmin, bar.norm.vmax) == palette.ATTENTION_RANGE for bar in bars), \
            f"no 0-1 colour bar for {ax.get_title()!r}"


ATTENTION_VIEWS = ["attention_heatmap", "head_grid", "head_mosaic", "plot_head", "explorer heatmap",
                   "explorer grid"]


@pytest.mark.parametrize("name", ATTENTION_VIEWS)
def test_attention_views_draw_with_the_attention_map(name):
    """So that the check above sees them: attention is drawn with palette.ATTENTION_CMAP."""
    fig = _figure(FIGURES[name]())
    assert any(isinstance(a, AxesImage) and a.get_cmap().name == palette.ATTENTION_CMAP
               for _, a in _mapped(fig))


@pytest.mark.parametrize("name", ["attention_heatmap auto-scaled", "head_grid auto-scaled"])
def test_auto_scaled_attention_says_so_in_its_title(name):
    fig = _figure(FIGURES[name]())
    image = next(a for _, a in _mapped(fig) if isinstance(a, AxesImage))
    assert image.norm.vmax == pytest.approx(W[0, 0].max() if "heatmap" in name else W.max())
    assert palette.AUTO_SCALED in _titles(fig, fig.axes[0])


def test_every_scatter_has_a_title_and_labelled_points(figure):
    for ax in figure.axes:
        points = sum(len(c.get_offsets()) for c in ax.collections
                     if type(c).__name__ == "PathCollection")
        if points:
            assert ax.get_title(), "a scatter without a title"
            assert len([t for t in ax.texts if t.get_text()]) >= points, "unlabelled points"


def _overlaps(texts, renderer):
    boxes = [Text.get_window_extent(t, renderer) for t in texts if t.get_text() and t.get_visible()]
    return [(texts[i].get_text(), texts[j].get_text())
            for i in range(len(boxes)) for j in range(i + 1, len(boxes))
            if boxes[i].overlaps(boxes[j]) and boxes[i].intersection(boxes[i], boxes[j]).width > 1
            and boxes[i].intersection(boxes[i], boxes[j]).height > 1]


def _scatter_view(name, seed):
    r = np.random.default_rng(seed)
    xy = r.standard_normal((24, 2))
    layers = np.repeat(np.arange(4), 6)
    if name == "projected_tokens":
        Q, K = 0.3 * r.standard_normal((10, 4)), 0.3 * r.standard_normal((10, 4))  # (n, d_k)
        return viz.projected_tokens(Q, K, TOKENS, weights=weights(10, 10), title="head 0")
    if name == "head_map":
        return tables.head_map(xy, layers, HEAD_NAMES)
    if name == "head_scatter":
        return tables.head_scatter(xy[:, 0], xy[:, 1], HEAD_NAMES, layers=layers, title="t")
    return tables.layer_profile(np.abs(xy[:, 0]).reshape(4, 6), ylabel="entropy", title="t")


# seed 0 in the fast tier, two more layouts of the same views in the slow one
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow),
                                  pytest.param(2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", ["projected_tokens", "head_map", "head_scatter", "layer_profile"])
def test_point_labels_do_not_overlap(name, seed):
    fig = _figure(_scatter_view(name, seed))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        assert not _overlaps(list(ax.texts), renderer)


def test_the_mosaic_labels_queries_and_keys_with_tokens():
    fig = head_mosaic(W, tokens=SIX)
    texts = [t.get_text() for t in fig.axes[0].texts]
    n_layers, n_heads = W.shape[:2]
    assert all(texts.count(token) >= n_layers + n_heads for token in set(SIX) - {"the"})


# ---------------------------------------------------------------------------- source scan
def _literals(tree):
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    # an f-string's format spec ({x:g}, {x:.2f}) is a string constant too, not a colour
    specs = {id(part) for node in ast.walk(tree) if isinstance(node, ast.FormattedValue)
             and node.format_spec is not None for part in ast.walk(node.format_spec)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and id(node) not in docstrings | specs:
            yield node.lineno, node.value


def _grey(text: str) -> bool:
    try:
        return 0.0 <= float(text) <= 1.0
    except ValueError:
        return text in ("white", "black", "none")


@pytest.mark.parametrize("path", sorted(p.name for p in VIZ.glob("*.py") if p.name != "palette.py"))
def test_no_viz_module_names_a_colour_outside_the_palette(path):
    tree = ast.parse((VIZ / path).read_text())
    colour_maps = set(matplotlib.colormaps)
    found = [(line, text) for line, text in _literals(tree)
             if (is_color_like(text) and not _grey(text)) or text in colour_maps]
    assert not found, f"{path} names colours or colour maps; take them from palette.py: {found}"


def test_the_source_scan_sees_a_colour():
    tree = ast.parse('"""doc "red"."""\nx = "crimson"\ny = ("tab:blue", "0.5", "RdBu_r")\n')
    literals = [text for _, text in _literals(tree)]
    assert literals == ["crimson", "tab:blue", "0.5", "RdBu_r"]
    assert [t for t in literals if is_color_like(t) and not _grey(t)] == ["crimson", "tab:blue"]


def test_the_source_scan_sees_colours_but_not_format_specs():
    found = list(_literals(ast.parse('colour = "g"\nlabel = f"{x:g} {y:.2f}"\n')))
    assert [item for item in found if item[1].strip()] == [(1, "g")]

"""The notebooks' interactive panels: unit checks in this process, then each widget notebook
run in a real kernel (nbclient), with its sliders moved and the redrawn figure checked.

nbclient answers the Output widget's capture protocol as a browser would, so the kernel-level test
covers the callback wiring and the redraw; it cannot see the browser side (extension installed,
events reaching the kernel). Kernels inherit MPLBACKEND: with MPLBACKEND=Agg and no
`%matplotlib inline` the Output stays empty while the notebook still runs without error, so
tests/conftest.py unsets it and every widget notebook starts with `%matplotlib inline`.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # in-process drawing only

import matplotlib.image  # noqa: E402 (after matplotlib.use)
import nbformat  # noqa: E402 (after matplotlib.use)
import numpy as np  # noqa: E402 (after matplotlib.use)
import pytest  # noqa: E402 (after matplotlib.use)
from nbclient import NotebookClient  # noqa: E402 (after matplotlib.use)
from notebook_kernel import notebook_kernel  # noqa: E402 (after matplotlib.use)
from panel_checks import (  # noqa: E402 (after matplotlib.use)
    check_saved,
    check_text_view,
    find,
    keyboard_problems,
    printed,
)

from mha_course.examples import running_example  # noqa: E402 (after matplotlib.use)
from mha_course.install_cell import INSTALL_CELL_TAG  # noqa: E402 (after matplotlib.use)
from mha_course.np_attention import init_params, multi_head_attention, softmax  # noqa: E402 (after matplotlib.use)
from mha_course.viz import widgets as w  # noqa: E402 (after matplotlib.use)
from mha_course.viz.export import load_attention  # noqa: E402 (after matplotlib.use)

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


# ---------------------------------------------------------------------------- in-process units
def test_plot_scaling_bars_are_the_softmax_rows_with_and_without_scaling():
    d_k, T = 128, 0.5
    fig = w.plot_scaling(d_k, T, n_keys=10, seed=3)
    ax_hist, ax_row = fig.axes
    _, row = w._random_scores(d_k, 4000, 10, 3)  # (n_keys,) raw q . k
    heights = np.array([p.get_height() for p in ax_row.patches])  # unscaled bars, then scaled
    np.testing.assert_allclose(heights[:10], softmax(row / T))
    np.testing.assert_allclose(heights[10:], softmax(row / (np.sqrt(d_k) * T)))
    assert "d_k$ = 128" in ax_hist.get_title()


def test_random_scores_have_variance_d_k():
    pairs, _ = w._random_scores(256, 4000, 10, 0)
    assert 0.9 * 256 < pairs.var() < 1.1 * 256


def test_scaling_explorer_rejects_an_unknown_d_k():
    with pytest.raises(ValueError, match="d_k must be one of"):
        w.scaling_explorer(d_k=100)


def test_head_explorer_shows_the_core_weights_and_one_position_per_head():
    ex = running_example()
    params = init_params(d_model=16, n_heads=4, seed=0)
    panel = w.head_explorer(ex, params, head=1)
    np.testing.assert_array_equal(panel.weights, multi_head_attention(ex.X, ex.X, params).weights)
    assert (panel.head.min, panel.head.max, panel.head.value) == (0, 3, 1)
    with pytest.raises(ValueError, match=r"head must lie in \[0, 3\]"):
        w.head_explorer(ex, params, head=4)


def test_head_projections_match_the_equations():
    ex = running_example()
    params = init_params(d_model=16, n_heads=4, seed=1, bias=True)
    params.b_Q[:] = 0.3
    Q, K = w.head_projections(ex.X, params)
    for i in range(4):
        np.testing.assert_allclose(Q[i], ex.X @ params.W_Q[i] + 0.3)
        np.testing.assert_allclose(K[i], ex.X @ params.W_K[i])


# ---------------------------------------------------------------------------- the pruning panel
def fake_curves():
    """Curves of a 2 x 2-head model measured after 0, 2 and 4 heads, with known orders."""
    from mha_course.analysis.pruning import PruningCurves

    return PruningCurves(
        n_removed=np.array([0, 2, 4]), n_total=4, metric="accuracy", ablation="zero",
        curves={"importance": np.array([[1.0, 0.9, 0.2]]), "reverse": np.array([[1.0, 0.3, 0.2]]),
                "random": np.array([[1.0, 0.6, 0.2], [1.0, 0.5, 0.2]])},
        orders={"importance": np.array([[0, 3, 1, 2]]), "reverse": np.array([[2, 1, 3, 0]]),
                "random": np.array([[1, 2, 0, 3], [3, 0, 2, 1]])})


def test_pruned_heads_are_the_first_heads_of_the_chosen_order():
    curves = fake_curves()
    np.testing.assert_array_equal(w.pruned_heads(curves, 2, (2, 2)), [[True, False], [False, True]])
    np.testing.assert_array_equal(w.pruned_heads(curves, 2, (2, 2), "reverse"),
                                  [[False, True], [True, False]])
    np.testing.assert_array_equal(w.pruned_heads(curves, 2, (2, 2), "random", run=1),
                                  [[True, False], [False, True]])
    assert not w.pruned_heads(curves, 0, (2, 2)).any() and w.pruned_heads(curves, 4, (2, 2)).all()
    with pytest.raises(ValueError, match="order must be one of"):
        w.pruned_heads(curves, 2, (2, 2), "alphabetical")


def test_plot_pruned_heads_greys_out_the_removed_heads_and_circles_the_measured_point():
    curves, table = fake_curves(), np.array([[0.1, 0.4], [0.3, 0.2]])
    fig = w.plot_pruned_heads(curves, table, 2, "random", run=0)
    ax_table, ax_curve = fig.axes[:2]  # fig.axes[2] is the table's colour bar
    shown = ax_table.images[0].get_array()
    np.testing.assert_array_equal(shown.mask, [[False, True], [True, False]])  # heads 1 and 2
    np.testing.assert_array_equal(shown.data, table)
    assert sorted(t.get_text() for t in ax_table.texts) == ["0.10", "0.20"]  # none on removed heads
    marker = ax_curve.get_lines()[-1]  # the circle drawn last
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == (0.5, 0.6)
    assert "0.600" in ax_curve.get_title() and "2 of 4 heads removed" in ax_table.get_title()
    with pytest.raises(ValueError, match=r"measured steps \[0, 2, 4\]"):
        w.plot_pruned_heads(curves, table, 1)
    with pytest.raises(ValueError, match="4 heads in all"):
        w.plot_pruned_heads(curves, np.ones((3, 2)), 2)


def test_pruning_explorer_redraws_on_every_move_and_is_reproducible():
    curves, table = fake_curves(), np.array([[0.1, 0.4], [0.3, 0.2]])
    panel = w.pruning_explorer(curves, table, n_removed=2)
    assert panel.n_removed.options == (0, 2, 4) and panel.n_removed.value == 2
    assert [value for _, value in panel.order.options] == ["importance", "reverse", "random"]
    first = panel.image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    seen = {first}
    for attribute, value in (("n_removed", 4), ("n_removed", 0), ("order", "reverse"),
                             ("n_removed", 2), ("order", "random")):
        setattr(getattr(panel, attribute), "value", value)
        assert panel.image.value not in seen, f"moving {attribute} to {value} redrew nothing"
        seen.add(panel.image.value)
    panel.order.value = "importance"
    assert panel.image.value == first  # back to the start: the same picture
    with pytest.raises(ValueError, match="measured steps"):
        w.pruning_explorer(curves, table, n_removed=3)


# ---------------------------------------------------------------------------- Save, text, keys
def test_scaling_panel_saves_the_figure_and_the_softmax_rows_it_shows(tmp_path):
    panel = w.scaling_explorer(export_dir=tmp_path, seed=2)
    panel.d_k.value, panel.temperature.value = 256, 0.5
    panel.save.button.click()
    paths = check_saved(printed(panel.save.output).split()[1:], tmp_path)
    assert sorted(paths) == [".csv", ".png", ".svg"]
    assert paths[".png"].stem == "scaling_dk256_T0.50"
    A, queries, keys = load_attention(paths[".csv"])
    _, row = w._random_scores(256, 4000, 10, 2)  # (n_keys,) raw q . k
    np.testing.assert_array_equal(A, [softmax(row / 0.5), softmax(row / (16 * 0.5))])
    assert queries == ["unscaled", "scaled"] and keys == [f"key{j}" for j in range(10)]


def test_head_panel_saves_the_head_shown_and_its_text_view_follows_the_slider(tmp_path):
    ex = running_example()
    params = init_params(d_model=16, n_heads=4, seed=0)
    A = multi_head_attention(ex.X, ex.X, params).weights  # (n_heads, n, n), the oracle
    panel = w.head_explorer(ex, params, export_dir=tmp_path / "exports")
    panel.head.value = 2
    panel.save.button.click()
    paths = check_saved(printed(panel.save.output).split()[1:], tmp_path / "exports")
    assert paths[".csv"].name.startswith("head2_") and paths[".png"].stem == paths[".csv"].stem
    weights, queries, keys = load_attention(paths[".csv"])
    np.testing.assert_array_equal(weights, A[2])
    assert queries == keys == list(ex.tokens)

    toggle = find(panel.widget, w.widgets.Checkbox, "Text view")
    assert panel.text_view.html.value == ""  # off until asked for
    toggle.value = True
    check_text_view(panel.text_view.html.value, A[2], ex.tokens)
    panel.head.value = 3
    check_text_view(panel.text_view.html.value, A[3], ex.tokens)
    toggle.value = False
    assert panel.text_view.html.value == ""


def test_pruning_panel_saves_the_figure_and_the_table_it_shows(tmp_path):
    curves, table = fake_curves(), np.array([[0.1, 0.4], [0.3, 0.2]])
    panel = w.pruning_explorer(curves, table, export_dir=tmp_path)
    panel.order.value, panel.n_removed.value = "reverse", 2
    find(panel.widget, w.widgets.Button, "Save").click()
    paths = check_saved(printed(panel.save.output).split()[1:], tmp_path)
    assert paths[".npz"].stem == "pruning_reverse_2-removed"
    with np.load(paths[".npz"]) as data:
        np.testing.assert_array_equal(data["table"], table)
        np.testing.assert_array_equal(data["removed"], [[False, True], [True, False]])
        assert (int(data["n_removed"]), str(data["order"]), float(data["value"])) == \
            (2, "reverse", 0.3)


def test_every_panel_is_keyboard_operable_with_a_save_button():
    ex = running_example()
    panels = {"scaling": w.scaling_explorer(),
              "head": w.head_explorer(ex, init_params(d_model=16, n_heads=4, seed=0)),
              "pruning": w.pruning_explorer(fake_curves(), np.ones((2, 2)))}
    for name, panel in panels.items():
        assert keyboard_problems(panel.widget) == [], name
        assert find(panel.widget, w.widgets.Button, "Save").tooltip, name


# ---------------------------------------------------------------------------- kernel level
def output_png(client: NotebookClient, output_id: str) -> np.ndarray:
    """The one PNG drawn in the Output widget, decoded to an RGBA array."""
    outputs = client.widget_state[output_id]["outputs"]
    pngs = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 1, f"expected one PNG in the Output widget, got {len(pngs)}: {outputs}"
    return matplotlib.image.imread(io.BytesIO(base64.b64decode(pngs[0])), format="png")


def assert_not_blank(image: np.ndarray, what: str):
    rgb = image[..., :3]
    inked = (rgb < 0.9).any(axis=-1).mean()  # share of pixels that are not (near) white
    assert image.shape[0] > 200 and image.shape[1] > 400, f"{what}: tiny image {image.shape}"
    assert inked > 0.05, f"{what}: the figure is blank ({inked:.1%} of the pixels drawn)"


def differs(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape != b.shape or not np.array_equal(a, b)


# notebook -> (panel variable, [(slider attribute, new value), ...])
WIDGET_NOTEBOOKS = {
    "01_scaled_dot_product_attention.ipynb": ("scaling_panel",
                                              [("d_k", 512), ("temperature", 0.2)]),
    "02_multi_head_projections.ipynb": ("head_panel", [("head", 2), ("head", 3)]),
}


@pytest.mark.parametrize("name", sorted(WIDGET_NOTEBOOKS))
def test_widget_notebook_draws_inline_and_ignores_widget_output(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"
            and INSTALL_CELL_TAG not in c.metadata.get("tags", [])]  # the setup check comes first
    assert code[0].startswith("%matplotlib inline"), \
        f"{name}: the first code cell after the setup check must select inline"
    panel = WIDGET_NOTEBOOKS[name][0]
    widget_cells = [src for src in code if src.rstrip().endswith(panel)]
    assert widget_cells, f"{name}: no cell displays {panel}"
    assert all("# NBVAL_IGNORE_OUTPUT" in src for src in widget_cells), \
        f"{name}: widget cells must carry # NBVAL_IGNORE_OUTPUT (strict nbval cannot compare them)"
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(WIDGET_NOTEBOOKS))
def test_widget_notebook_redraws_when_a_slider_moves(name):
    panel, moves = WIDGET_NOTEBOOKS[name]
    with notebook_kernel(NOTEBOOKS / name, timeout=120) as kernel:
        client, run_cell = kernel.client, kernel.outputs
        (out,) = run_cell(f"print({panel}.output.model_id)")
        output_id = out.text.strip()
        first = output_png(client, output_id)
        assert_not_blank(first, f"{name} initial figure")

        attributes = sorted({attribute for attribute, _ in moves})
        run_cell(f"_initial = {{a: getattr({panel}, a).value for a in {attributes!r}}}")
        previous = first
        for attribute, value in moves:
            run_cell(f"{panel}.{attribute}.value = {value!r}")
            image = output_png(client, output_id)
            assert_not_blank(image, f"{name} after {attribute} = {value}")
            assert differs(image, previous), f"{name}: moving {attribute} to {value} redrew nothing"
            previous = image

        # Back to the starting values: the panel is deterministic, so the first picture returns.
        run_cell(f"for a, v in _initial.items(): getattr({panel}, a).value = v")
        assert not differs(output_png(client, output_id), first), f"{name}: not reproducible"

"""Every widget notebook, run in JupyterLab in Chromium as a student runs it.

What nbval and the kernel-level widget tests cannot see: the widget extension missing or
mismatched, a slider that renders but does not reach the kernel, a figure that never redraws.
Per notebook: open a clean copy, Run All, every cell ran without an error (read back from the
saved file), every widget view the kernel displayed is rendered as a widget, and every enabled
slider, moved with the keyboard, changes the figure of its panel, which then settles; moved back,
the first figure returns. The negative control runs the same check with the widget extension
disabled and asserts that it fails.
"""

from __future__ import annotations

import json

import pytest

from browser import harness

NOTEBOOKS = harness.widget_notebooks()


def test_widget_notebooks_are_found():
    # The parametrisation below is only as good as this detection; these notebooks have panels.
    names = [nb.name for nb in NOTEBOOKS]
    for expected in ("01_scaled_dot_product_attention.ipynb", "03_attention_heatmaps.ipynb"):
        assert expected in names, f"{expected} has widgets but was not detected; found {names}"


def _notebook(path, *sources, outputs=(), models=()):
    cells = [{"cell_type": "code", "source": src, "outputs": list(outputs) if i == 0 else [],
              "execution_count": None, "metadata": {}} for i, src in enumerate(sources)]
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                               "language": "python"}}
    if models:
        state = {f"m{i}": {"model_name": name, "model_module": "@jupyter-widgets/controls",
                           "model_module_version": "2.0.0", "state": {}}
                 for i, name in enumerate(models)}
        metadata["widgets"] = {"application/vnd.jupyter.widget-state+json":
                               {"state": state, "version_major": 2, "version_minor": 0}}
    path.write_text(json.dumps({"cells": cells, "metadata": metadata, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


def test_widget_detection_reads_code_outputs_and_stored_state(tmp_path):
    n = iter(range(100))

    def has(*sources, **kw):
        return harness.has_widgets(_notebook(tmp_path / f"nb{next(n)}.ipynb", *sources, **kw))

    view = [{"output_type": "display_data", "data": {harness.WIDGET_VIEW: {}}}]
    assert has("from mha_course.viz.explorer import explore\n")
    assert has("from mha_course.viz import (\n    head_grid,\n    explore,\n)\n")
    assert has("import ipywidgets as widgets\n")
    assert has("x = 1", outputs=view)  # a widget view whose state was not stored
    assert has("x = 1", outputs=view, models=["IntSliderModel", "LayoutModel"])
    # a progress bar alone (tqdm) is display-only: left to nbval
    assert not has("train()", outputs=view,
                   models=["FloatProgressModel", "HTMLModel", "HBoxModel", "LayoutModel",
                           "ProgressStyleModel", "HTMLStyleModel"])
    assert not has("from mha_course.viz import head_grid, head_view\n")
    assert not has("import numpy as np\n")


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem[:2] for nb in NOTEBOOKS])
def test_widget_notebook_in_jupyterlab(notebook, lab, page, artifacts):
    try:
        run = harness.full_run(page, lab, notebook, artifacts=artifacts)
    finally:
        lab.shutdown_kernels_of(f"browser_{notebook.name}")
    print(f"{notebook.name}: {len(run.views)} widget view(s), {len(run.moves)} slider move(s), "
          f"skipped {run.skipped}; timings "
          + ", ".join(f"{k} {v:.1f}" for k, v in run.timings.items()))
    for move in run.moves:
        print(f"  view {move.view} {move.label!r} {move.key}: {move.value_before} -> "
              f"{move.value_after}, changed after {move.changed_after_s:.2f} s, "
              f"settled after {move.settled_after_s:.2f} s")
    assert run.views, f"{notebook.name} was detected as a widget notebook but shows no widget view"
    if any(v["sliders"] for v in run.views):
        assert run.moves, f"{notebook.name}: every slider was disabled ({run.skipped}): none moved"


@pytest.mark.slow
def test_the_check_fails_without_the_widget_extension(lab_without_widgets, page, tmp_path):
    """Negative control: the same check, in a JupyterLab whose widget extension is disabled, must
    fail, and fail because the widgets are not rendered (so the tier cannot pass vacuously).
    Notebook 02 is the quickest widget notebook to run."""
    notebook = harness.NOTEBOOKS / "02_multi_head_projections.ipynb"
    assert notebook in NOTEBOOKS, f"{notebook.name} is no longer a widget notebook: pick another"
    try:
        with pytest.raises(AssertionError) as failure:
            harness.full_run(page, lab_without_widgets, notebook, artifacts=tmp_path,
                             widget_timeout=5.0)
    finally:
        lab_without_widgets.shutdown_kernels_of(f"browser_{notebook.name}")
    message = str(failure.value)
    assert "widget view" in message and harness.WIDGET_MANAGER in message, (
        f"the check failed, but not for the missing widgets: {message}")
    assert "shows 0 of them as widgets" in message, message


@pytest.mark.slow
def test_the_check_fails_when_a_slider_does_not_redraw(lab, page, tmp_path):
    """Negative control of the slider check: a slider that reaches the kernel but is wired to
    nothing leaves its figure unchanged, and the check must say so."""
    notebook = _notebook(
        tmp_path / "unwired_slider.ipynb",
        "%matplotlib inline\n"
        "import ipywidgets as widgets\n"
        "import matplotlib.pyplot as plt\n"
        "slider = widgets.IntSlider(value=1, min=0, max=5, description='unwired',\n"
        "                           continuous_update=False)\n"
        "out = widgets.Output()\n"
        "with out:\n"
        "    plt.plot([0, 1], [0, 1])\n"
        "    plt.show()\n"
        "widgets.VBox([slider, out])  # the slider is connected to nothing\n",
    )
    try:
        with pytest.raises(AssertionError) as failure:
            harness.full_run(page, lab, notebook, artifacts=tmp_path, slider_timeout=4.0)
    finally:
        lab.shutdown_kernels_of(f"browser_{notebook.name}")
    message = str(failure.value)
    assert "'unwired'" in message and "did not change the figure" in message, \
        f"the check failed, but not because the figure stayed the same: {message}"

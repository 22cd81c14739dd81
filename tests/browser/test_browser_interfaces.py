"""The interfaces students use besides JupyterLab's defaults: the classic Notebook interface
(Notebook 7, `jupyter notebook`) and the keyboard alone.

- Notebook 7: a widget notebook opens, runs (every cell, no error), shows its panels as widgets,
  and a panel redraws when a control changes, driven by the keyboard. In Notebook 7 the plain
  arrow keys on a focused slider are taken by the notebook's own command-mode shortcuts (move to
  the cell or heading below/above), so there the slider is moved with End and Home, which the
  slider keeps; the test reports what a plain arrow key does.
- The keyboard alone, in JupyterLab: Tab to a panel's slider and move it with the arrow keys,
  Tab to its "Save" button and press Space, Tab to its "Text view" toggle and press Space
  (keyboard.py says what each step checks).
Notebook 02 is the quickest widget notebook to run (about 35 s in Chromium here).
"""

from __future__ import annotations

import pytest

from browser import harness, keyboard

NOTEBOOK = harness.NOTEBOOKS / "02_multi_head_projections.ipynb"


def _run(page, server, artifacts):
    assert NOTEBOOK in harness.widget_notebooks(), f"{NOTEBOOK.name} has no panel any more"
    run = harness.run_notebook(page, server, NOTEBOOK, artifacts=artifacts)
    views = [v for v in run.views if v["sliders"]]
    assert views, f"{NOTEBOOK.name}: no widget view with a slider in {run.views}"
    return run, views[0]["k"]


def _report(interface: str, run, keys: keyboard.KeyboardRun) -> None:
    print(f"{interface}: {NOTEBOOK.name} {run.timings}; slider {keys.slider}; saved "
          f"{keys.saved}; text view rows {keys.text_rows}; missing {keys.missing}; "
          f"{keys.tabs} Tab presses")


@pytest.mark.slow
def test_widget_notebook_in_notebook7(notebook7, page, artifacts):
    try:
        run, view = _run(page, notebook7, artifacts)
        keys = keyboard.drive_panel(page, notebook7, view, slider_keys=("End", "Home"),
                                    artifacts=artifacts)
        _report("Notebook 7", run, keys)
        assert len(keys.slider) == 2 and not keys.missing, keys
        root = f'[data-browser-test-view="{view}"] .noUi-handle'
        page.locator(root).focus()  # what a plain arrow key does here: reported, not asserted
        before = page.locator(root).get_attribute("aria-valuenow")
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(500)
        print(f"Notebook 7, plain ArrowRight on the focused slider: aria-valuenow {before} -> "
              f"{page.locator(root).get_attribute('aria-valuenow')}, focus on "
              f"{page.evaluate(keyboard.ACTIVE_JS)}")
    finally:
        notebook7.shutdown_kernels_of(f"browser_{NOTEBOOK.name}")


@pytest.mark.slow
def test_panel_by_keyboard_alone_in_jupyterlab(lab, page, artifacts):
    try:
        run, view = _run(page, lab, artifacts)
        keys = keyboard.drive_panel(page, lab, view, artifacts=artifacts)
        _report("JupyterLab", run, keys)
    finally:
        lab.shutdown_kernels_of(f"browser_{NOTEBOOK.name}")
    assert len(keys.slider) == 2, keys
    assert not keys.missing, f"the panel has no {keys.missing} control to press"
    assert keys.saved and keys.text_rows > 0, keys

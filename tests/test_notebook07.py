"""Notebook 07's pruning panel, driven in a real kernel (no browser): run the notebook with
nbclient, then move the slider and the order there and check that the panel's PNG changes each
time and that the greyed-out heads are the ones the order removes.

nbclient answers the widget protocol as a browser would, so this tests the callback wiring and the
redraw in the kernel; the browser side is not seen. Running the notebook takes about a minute
here (it trains six small models in part 5), which is why the kernel test is marked slow.

The static tests check part 5's shape (predict, then train, then the attention) and that the
prose quotes no number a run produces: every decimal in a markdown cell is a constant of the
method (a threshold, a chance level), typed once, so that prose cannot go stale when the
checkpoint changes; the run's numbers are printed by the cells.
"""

from __future__ import annotations

import re

import nbformat
import pytest

from notebook_kernel import NOTEBOOKS, notebook_kernel

NOTEBOOK = NOTEBOOKS / "07_redundancy_and_pruning.ipynb"
PANEL = "panel = pruning_explorer("
# decimals that the prose may type: thresholds the cells check (0.01, 0.05, 0.1, 0.5, 0.75, 0.8),
# chance levels (1/8 = 0.125, 1/12 = 0.083), a share of 0.00 and a cosine of 0.9 or 1.0 used as
# examples. Anything else is a result and must be printed by a cell instead.
CONSTANTS = {"0.00", "0.01", "0.05", "0.1", "0.5", "0.75", "0.8", "0.9", "1.0", "0.125", "0.083"}
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+")
HISTORY = re.compile(r"earlier version|previous version|session \d|lab log|we used to", re.I)


def test_notebook_07_draws_inline_and_ignores_the_panel_output():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code[0].startswith("%matplotlib inline"), "the first code cell must select inline"
    (cell,) = [src for src in code if PANEL in src]
    assert "# NBVAL_IGNORE_OUTPUT" in cell, "the widget cell must carry # NBVAL_IGNORE_OUTPUT"
    assert "plot_pruned_heads(" in cell, "the widget cell must also draw a static figure"
    assert nb.metadata.kernelspec.name == "python3"


def test_notebook_07_prose_types_no_result():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        typed = set(DECIMAL.findall(cell.source)) - CONSTANTS
        assert not typed, (f"cell {index} types the numbers {sorted(typed)}: print them from a "
                           "code cell and refer to the output instead")
        assert not HISTORY.search(cell.source), f"cell {index} tells development history"


def test_notebook_07_several_heads_section_predicts_then_trains():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = nb.cells
    (predict,) = [i for i, c in enumerate(cells) if "predict" in c.metadata.get("tags", [])]
    assert cells[predict].source.startswith('my_prediction = ""')
    assert cells[predict - 1].cell_type == "markdown" and "**Predict.**" in cells[predict - 1].source
    train = cells[predict + 1].source
    assert "several_heads.compare_on_conflict_task(" in train
    assert "NBVAL_CHECK_OUTPUT" not in train  # it prints accuracies (floats) ...
    assert re.search(r"^assert .*n_params", train, re.M)  # ... and asserts what matters
    assert re.search(r"^assert .*accuracy\[\"both\"\]", train, re.M)
    assert "plot_attention(" in cells[predict + 2].source
    assert "several_heads.compare_on_conflict_task" not in "".join(  # trained once, in part 5
        c.source for c in cells[predict + 2:] if c.cell_type == "code")
    assert not any("compare_head_counts(" in c.source for c in cells if c.cell_type == "code"), \
        "the toy-language comparison is a command, not a notebook cell"


@pytest.mark.slow
def test_notebook_07_pruning_panel_redraws_in_the_kernel():
    with notebook_kernel(NOTEBOOK, timeout=300) as kernel:
        run = kernel.run
        digest = "import hashlib; print(hashlib.sha256(panel.image.value).hexdigest())"
        assert run("print(list(panel.n_removed.options), panel.n_removed.value)").strip() == \
            "[0, 2, 4, 6, 8, 10, 12, 14, 16] 2"  # the toy model's 16 heads, measured every 2
        first = run(digest)
        seen = {first}
        for move in ("panel.n_removed.value = 8", "panel.n_removed.value = 16",
                     "panel.order.value = 'random'", "panel.n_removed.value = 4",
                     "panel.order.value = 'reverse'"):
            run(move)
            now = run(digest)
            assert now not in seen, f"{move} did not redraw the pruning panel"
            seen.add(now)
        # the greyed-out heads are the first 4 of the reverse order, and nothing else
        check = ("import numpy as np\n"
                 "fig = panel.figure()\n"
                 "grey = fig.axes[0].images[0].get_array().mask\n"
                 "expected = np.zeros(16, bool); expected[curves.orders['reverse'][0][:4]] = True\n"
                 "print(np.array_equal(grey, expected.reshape(2, 8)), int(grey.sum()))")
        assert run(check).split() == ["True", "4"]
        run("panel.order.value = 'importance'; panel.n_removed.value = 2")
        assert run(digest) == first, "back at the start, the panel must show the first picture"

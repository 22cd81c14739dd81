"""Notebook 07 (redundancy, importance, pruning): its pruning panel, driven in a real kernel (no
browser), and the static shape of the notebook.

The kernel test runs the notebook with nbclient, then moves the slider and the order there and
checks that the panel's PNG changes each time and that the greyed-out heads are the ones the order
removes. nbclient answers the widget protocol as a browser would, so this tests the callback
wiring and the redraw in the kernel; the browser side is not seen. Running the notebook takes
about a minute here (it ablates all 72 MiniLM heads), which is why the kernel test is marked slow.

The static tests check that the prose quotes no number a run produces (every decimal in a
markdown cell is a constant of the method, a threshold or an example, typed once, so that prose
cannot go stale when the checkpoint changes; the run's numbers are printed by the cells), that
each pruning claim the prose makes is asserted by the cell that prints it, and that the W^O and
several-heads material now lives in notebook 08 (tests/test_notebook08.py).
"""

from __future__ import annotations

import re

import nbformat
import pytest
from notebook_kernel import NOTEBOOKS, notebook_kernel
from notebook_prose import prose_problems

NOTEBOOK = NOTEBOOKS / "07_redundancy_and_pruning.ipynb"
PANEL = "panel = pruning_explorer("
# decimals that the prose may type: thresholds the cells use (0.001, 0.01, 0.05, 0.1, 0.5, 0.8),
# a share of 0.00 and cosines of 0.9 and 1.0 used as examples. Anything else is a result and must
# be printed by a cell instead.
CONSTANTS = {"0.00", "0.001", "0.01", "0.05", "0.1", "0.5", "0.8", "0.9", "1.0"}


def _cells():
    return nbformat.read(NOTEBOOK, as_version=4).cells


def _code(cells):
    return "\n".join(c.source for c in cells if c.cell_type == "code")


def test_notebook_07_draws_inline_and_ignores_the_panel_output():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"
            and "install-check" not in c.metadata.get("tags", [])]  # the setup check comes first
    assert code[0].startswith("%matplotlib inline"), "the first code cell must select inline"
    (cell,) = [src for src in code if PANEL in src]
    assert "# NBVAL_IGNORE_OUTPUT" in cell, "the widget cell must carry # NBVAL_IGNORE_OUTPUT"
    assert "plot_pruned_heads(" in cell, "the widget cell must also draw a static figure"
    assert nb.metadata.kernelspec.name == "python3"


def test_notebook_07_prose_types_no_result():
    assert prose_problems(nbformat.read(NOTEBOOK, as_version=4), CONSTANTS) == []


def test_notebook_07_asserts_the_pruning_claims_it_prints():
    # the prose says: least important first beats random beats reverse, at half the heads, on
    # both models; most toy heads cannot go; the first 8 heads cost more together than alone
    code = _code(_cells())
    assert re.search(r'^assert curves\.mean\("importance"\)\[half\] '
                     r'> curves\.mean\("random"\)\[half\] '
                     r'> curves\.mean\("reverse"\)\[half\]', code, re.M)
    assert re.search(r'^assert at_half\["importance"\] > at_half\["random"\] '
                     r'> at_half\["reverse"\]', code, re.M)
    assert re.search(r'^assert curves\.removable_fraction\("importance", 0\.05\) < 0\.5', code,
                     re.M)
    assert re.search(r"^assert together > alone", code, re.M)
    assert "pruning.curve_table(curves, at=8)" in code
    assert "pruning.curve_table(minilm_curves, at=36)" in code


def test_notebook_07_leaves_w_o_and_several_heads_to_notebook_08():
    cells = _cells()
    code = _code(cells)
    for moved in ("several_heads.", "contributions.", "norm_based_attention"):
        assert moved not in code, f"{moved} belongs to notebook 08 now"
    prose = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "](08_combining_heads.ipynb)" in prose, "notebook 07 must point on to notebook 08"


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

"""Notebook 07's pruning panel, driven in a real kernel (no browser): run the notebook with
nbclient, then move the slider and the order there and check that the panel's PNG changes each
time and that the greyed-out heads are the ones the order removes.

nbclient answers the widget protocol as a browser would, so this tests the callback wiring and the
redraw in the kernel; the browser side is not seen. Running the notebook takes about 40 s here
(it trains four small models), which is why this is its own (slow) module.
"""

from __future__ import annotations

import nbformat
import pytest

from notebook_kernel import NOTEBOOKS, notebook_kernel

NOTEBOOK = NOTEBOOKS / "07_redundancy_and_pruning.ipynb"
PANEL = "panel = pruning_explorer("


def test_notebook_07_draws_inline_and_ignores_the_panel_output():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code[0].startswith("%matplotlib inline"), "the first code cell must select inline"
    (cell,) = [src for src in code if PANEL in src]
    assert "# NBVAL_IGNORE_OUTPUT" in cell, "the widget cell must carry # NBVAL_IGNORE_OUTPUT"
    assert "plot_pruned_heads(" in cell, "the widget cell must also draw a static figure"
    assert nb.metadata.kernelspec.name == "python3"


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

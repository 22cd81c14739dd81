"""Notebook 05's MiniLM explorer, driven in a real kernel (no browser): run the notebook with
nbclient, then move the controls there and check that the panel's PNG changes each time.

nbclient answers the Output-widget protocol as a browser would, so this tests the callback wiring
and the redraw in the kernel; the browser side is not seen. Running the notebook takes about 20 s
here, which is why this is its own (slow) module rather than part of test_explorer.py.
"""

from __future__ import annotations

import pytest
from notebook_kernel import NOTEBOOKS, notebook_kernel

NOTEBOOK = NOTEBOOKS / "05_real_model_heads.ipynb"


@pytest.mark.slow
def test_notebook_05_explorer_redraws_minilm_in_the_kernel():
    with notebook_kernel(NOTEBOOK) as kernel:
        run = kernel.run
        digest = "import hashlib; print(hashlib.sha256(panel.image.value).hexdigest())"
        assert run("print(panel.layer.max, panel.head.max, len(panel.tokens))").split() == \
            ["5", "11", "12"]  # MiniLM's 6 x 12 heads on the 12 pieces of the running example
        kernel.assert_each_move_redraws(digest, (
            "panel.layer.value = 1", "panel.head.value = 8", "panel.view.value = 'grid'",
            "panel.layer.value = 5", "panel.view.value = 'head view'",
            "panel.threshold.value = 0.3",
            "panel.text.value = 'A heron stood in the shallow water.'"))
        assert run("print(panel.tokens[:3], panel.title(1, 8))").strip() == \
            "['[CLS]', 'a', 'heron'] L1H8 local 0.65"
        assert "at least one word" in run(
            "panel.show('   '); print(panel.message.value)")  # refused, with a message

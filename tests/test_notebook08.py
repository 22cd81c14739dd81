"""Notebook 08 (W^O and the benefit of several heads): its static shape.

- part 2 (one head vs four) predicts, then trains once, then shows the attention, and prints
  accuracies unchecked while asserting what matters (equal parameters, four heads win);
- part 1 (W^O) asserts the per-head sum and the "sharp but small" claim, and measures the
  misleading head by ablation within its own layer only (12 evaluations): the notebook must not
  rerun notebook 07's 72-head ablation, so that 07 and 08 together stay within 07's former time;
- the prose quotes no number a run produces: every decimal in a markdown cell is a constant of the
  method (a threshold, a chance level), typed once, so that it cannot go stale.
"""

from __future__ import annotations

import re

import nbformat
from notebook_kernel import NOTEBOOKS
from notebook_prose import prose_problems

NOTEBOOK = NOTEBOOKS / "08_combining_heads.ipynb"
# decimals the prose may type: thresholds the cells check (0.5, 0.75), chance levels (1/8 = 0.125,
# 1/10 = 0.1, 1/12 = 0.083) and a weight of 0.8 in a question. Anything else must be printed.
CONSTANTS = {"0.1", "0.5", "0.75", "0.8", "0.125", "0.083"}


def _cells():
    return nbformat.read(NOTEBOOK, as_version=4).cells


def _index(cells, text):
    (index,) = [i for i, c in enumerate(cells) if c.cell_type == "code" and text in c.source]
    return index


def test_notebook_08_opens_inline_with_its_title():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.cells[0].source.startswith("# 08 · W^O and the benefit of several heads")
    code = [c.source for c in nb.cells if c.cell_type == "code"
            and "install-check" not in c.metadata.get("tags", [])]  # the setup check comes first
    assert code[0].startswith("%matplotlib inline"), "the first code cell must select inline"
    assert nb.metadata.kernelspec.name == "python3"


def test_notebook_08_prose_types_no_result():
    assert prose_problems(nbformat.read(NOTEBOOK, as_version=4), CONSTANTS) == []


def test_notebook_08_several_heads_section_predicts_then_trains():
    cells = _cells()
    train = _index(cells, "several_heads.compare_on_conflict_task(")
    predict = cells[train - 1]
    assert "predict" in predict.metadata.get("tags", [])
    assert predict.source.startswith('my_prediction = ""')
    question = cells[train - 2]
    assert question.cell_type == "markdown" and "**Predict.**" in question.source
    assert "predict" in question.metadata.get("tags", [])
    source = cells[train].source
    assert "NBVAL_CHECK_OUTPUT" not in source  # it prints accuracies (floats) ...
    assert re.search(r"^assert .*n_params", source, re.M)  # ... and asserts what matters
    assert re.search(r"^assert .*accuracy\[\"both\"\]", source, re.M)
    assert "plot_attention(" in cells[train + 1].source
    later = "".join(c.source for c in cells[train + 1:] if c.cell_type == "code")
    assert "several_heads.compare_on_conflict_task" not in later  # trained once
    assert not any("compare_head_counts(" in c.source for c in cells if c.cell_type == "code"), \
        "the toy-language comparison is a command, not a notebook cell"


def test_notebook_08_checks_w_o_and_ablates_one_layer_only():
    cells = _cells()
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert re.search(r"^assert worst < 1e-4", code, re.M)  # the per-head sum is the output
    assert re.search(r"^assert misleading\[\"contribution_share\"\] < 0\.75 / ", code, re.M)
    calls = re.findall(r"ablation_effects\(([^\n]*)", code)
    assert calls and all("layers=[l]" in call for call in calls), \
        f"08 ablates the heads of one layer only (07 ablates all 72); got {calls}"
    assert re.search(r"^assert rank > len\(lost\) - 3", code, re.M)
    # the W^O part comes first, the several-heads part second, the caveats last
    order = [_index(cells, "contributions.head_contributions("),
             _index(cells, "several_heads.compare_on_conflict_task(")]
    caveats = [i for i, c in enumerate(cells) if c.source.startswith("## 3. Caveats")]
    assert order == sorted(order) and caveats and caveats[0] > order[-1]

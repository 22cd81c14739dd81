"""Notebook 09 (previous-token and induction heads): its static shape.

- it sets one torch thread before it trains, then trains the 2-layer and the 1-layer model once
  each, after a prediction, and asserts what the prose claims (the 2-layer model's induction
  head passes 0.7, the 1-layer model stays under 0.3);
- the parts come in the issue's order: causal masks and the sink, the live training, the pair
  with K-composition and the ablation that proves it, the circuits and the widget, the subject;
- it links both ex10 exercises by name;
- the prose quotes no number a run produces: every decimal in a markdown cell is a constant of the
  method (a threshold, a chance level), typed once, so that it cannot go stale;
- a cell whose output nbval compares prints no decimal number.
"""

from __future__ import annotations

import re

import nbformat
from notebook_kernel import NOTEBOOKS
from notebook_prose import DECIMAL, prose_problems

NOTEBOOK = NOTEBOOKS / "09_induction_heads.ipynb"
TITLE = "# 09 · Heads that work together: previous-token and induction heads"
EXERCISE = "../exercises/ex10_induction_circuits.ipynb"
# decimals the prose may type: the role thresholds the cells assert (0.7, 0.3), the "most of
# the weight" bound (0.5) and the chance level of a uniform causal head (about 0.1)
CONSTANTS = {"0.1", "0.3", "0.5", "0.7"}


def _cells():
    return nbformat.read(NOTEBOOK, as_version=4).cells


def _code(cells) -> str:
    return "\n".join(c.source for c in cells if c.cell_type == "code")


def _index(cells, text, kind="code"):
    (index,) = [i for i, c in enumerate(cells) if c.cell_type == kind and text in c.source]
    return index


def test_notebook_09_opens_inline_with_its_title():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.cells[0].source.startswith(TITLE)
    code = [c.source for c in nb.cells if c.cell_type == "code"
            and "install-check" not in c.metadata.get("tags", [])]  # the setup check comes first
    assert code[0].startswith("%matplotlib inline"), "the first code cell must select inline"
    assert nb.metadata.kernelspec.name == "python3"


def test_notebook_09_prose_types_no_result():
    assert prose_problems(nbformat.read(NOTEBOOK, as_version=4), CONSTANTS) == []


def test_notebook_09_trains_both_models_once_on_one_thread_after_a_prediction():
    cells = _cells()
    train = _index(cells, "induction_training.train(")
    threads = _index(cells, "torch.set_num_threads(1)")
    assert threads < train
    source = cells[train].source
    assert source.count("induction_training.train(") == 2  # 2 layers and 1 layer
    assert "n_layers=1" in source
    assert re.search(r"^assert report\[\"best\"\]\[\"prefix_matching\"\]\[\"score\"\] >= 0\.7",
                     source, re.M)
    assert re.search(r"^assert report_1\[.*\] < 0\.3", source, re.M)
    assert "NBVAL_CHECK_OUTPUT" not in source  # it prints seconds and scores (floats)
    predict = cells[train - 1]
    assert "predict" in predict.metadata.get("tags", []) and predict.source.startswith(
        'my_prediction = ""')
    later = _code(cells[train + 1:])
    assert "induction_training.train(" not in later and ".train(" not in later  # trained once
    assert "phase_change_plot(" in cells[train + 1].source


def test_notebook_09_parts_come_in_order_and_the_ablation_is_asserted():
    cells = _cells()
    order = [_index(cells, "causal_mask(5)"),
             _index(cells, "induction_training.train("),
             _index(cells, "pair_heatmaps("),
             _index(cells, 'composition_scores(weights, "k")'),
             _index(cells, "ablation_bars("),
             _index(cells, "circuits.ov_circuit("),
             _index(cells, "circuit_explorer(")]
    assert order == sorted(order)
    subject = _index(cells, "## 5. Back to the subject", "markdown")
    assert subject > order[-1]
    ablation = cells[order[4]].source
    assert re.search(r"^assert without_prev\.max\(\) < 0\.3", ablation, re.M)
    code = _code(cells)
    assert re.search(r"^assert on_bos_first\[1\]\.min\(\) > 0\.5", code, re.M)  # the sink
    assert "W_pos" in code and "qk_circuit(" in code  # the positional QK circuit is read


def test_notebook_09_links_both_exercises_by_name():
    prose = [c.source for c in _cells() if c.cell_type == "markdown"]
    for name in ("prefix_matching_score", "ov_copying_score"):
        (cell,) = [s for s in prose if f"*{name}*" in s]
        assert f"({EXERCISE})" in cell and "★★" in cell


def test_notebook_09_checked_outputs_print_no_decimal():
    checked = [c for c in _cells() if c.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in c.source]
    assert checked, "at least the causal mask's output is checked"
    for cell in checked:
        text = "".join(o.get("text", "") for o in cell.get("outputs", []))
        assert not DECIMAL.search(text), f"a checked cell prints a decimal: {text!r}"

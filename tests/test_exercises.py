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
import numpy as np
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from mha_course.checks import EXERCISES
from mha_course.grading import authoring
from mha_course.install_cell import INSTALL_CELL_SOURCE, INSTALL_CELL_TAG

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
    hints = 0
    for cell in nb.cells:
        assert authoring.BEGIN not in cell.source and authoring.END not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            stubs += len(authoring.stub_hints(cell.source))
            hints += sum(line.strip().startswith(authoring.HINT)
                         for line in cell.source.split("\n"))
    assert stubs == hints == solution_regions > 0  # each stub keeps its hint's comment


SHIPPED = [ROOT / folder / name for folder in ("solutions", "exercises") for name in NAMES]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem[:4]}")
def test_no_shipped_notebook_carries_run_timestamps(path):
    """Cell metadata.execution (the instructor's run timestamps) would travel into nbgrader's
    release; solutions are executed with --ExecutePreprocessor.record_timing=False or stripped
    by `make exercises`."""
    carrying = [i for i, c in enumerate(read(path).cells) if "execution" in c.metadata]
    assert carrying == [], f"cells {carrying} carry metadata.execution: run `make exercises`"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem[:4]}")
def test_first_code_cell_is_the_install_check(path):
    nb = read(path)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.source == INSTALL_CELL_SOURCE
    assert INSTALL_CELL_TAG in first.metadata.get("tags", [])
    assert "nbgrader" not in first.metadata  # a plain setup cell: neither graded nor a solution
    if path.parent.name == "solutions":
        assert first.outputs == [], "where the course is installed the cell prints nothing"


def test_make_exercises_strips_run_timestamps_from_the_solutions(tmp_path):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    nb = read(SOLUTIONS / NAMES[0])
    nb.cells[1].metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00.000000Z"}
    nbformat.write(nb, solutions / NAMES[0])
    stale = authoring.stale_exercises(solutions, EXERCISES_DIR)
    assert any(NAMES[0] in s and "metadata.execution" in s for s in stale), stale
    authoring.make_exercises(solutions, tmp_path / "exercises")
    assert (solutions / NAMES[0]).read_bytes() == (SOLUTIONS / NAMES[0]).read_bytes()
    assert (tmp_path / "exercises" / NAMES[0]).read_bytes() == \
        (EXERCISES_DIR / NAMES[0]).read_bytes()


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
        'def f(x):\n    """Doc."""\n    # HINT: use "x"\n    #   twice\n    ### BEGIN SOLUTION\n'
        '    return x + x\n    ### END SOLUTION\n\nprint(f(1))'))
    assert nb.cells[0].source == ('def f(x):\n    """Doc."""\n    # HINT: use "x"\n    #   twice\n'
                                  '    raise NotImplementedError("use \\"x\\" twice")\n'
                                  '\nprint(f(1))')
    assert authoring.stub_hints(nb.cells[0].source) == ['use "x" twice']


@pytest.mark.parametrize("source, message", [
    ("# HINT: h\n### BEGIN SOLUTION\nx = 1", "is never closed"),
    ("x = 1\n### END SOLUTION", "without ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "has no '# HINT: ...' comment"),
    ("# HINT: h\nx = 0\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "has no '# HINT: ...'"),
    ("def f():\n# HINT: h\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION",
     "(same indentation)"),
    ("# HINT: h\n### BEGIN SOLUTION\n### HINT: h\nx = 1\n### END SOLUTION",
     "move the hint above ### BEGIN SOLUTION"),
    ("# HINT: h\n### BEGIN SOLUTION\n### BEGIN SOLUTION\n", "inside another region"),
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


# ----------------------------------------------------------------------------------------------
# Hints guide, they do not give the answer away (every solution notebook, whoever wrote it)


@pytest.mark.parametrize("name", NAMES)
def test_hints_do_not_give_the_solution_away(name):
    leaks = authoring.notebook_hint_leaks(read(SOLUTIONS / name), name)
    assert leaks == [], "\n".join(leaks)


SOFTMAX_BACKWARD = ('def softmax_backward(A, dA, axis=-1):\n    """dL/dx."""\n'
                    "    # HINT: {hint}\n    ### BEGIN SOLUTION\n"
                    "    return A * (dA - (dA * A).sum(axis=axis, keepdims=True))"
                    "  # same shape as A\n"
                    "    ### END SOLUTION\n")


@pytest.mark.parametrize("hint, caught", [
    # the hint ex03 once had: the solution's returned expression, and every one of its names
    ("dx = A * (dA - (dA * A).sum(axis=axis, keepdims=True))", "the solution line"),
    ("dx = A * (dA - (dA * A).sum(axis=axis, keepdims=True))", "names 4 of the solution's 4"),
    # the same line with other spacing, and without the comment the solution carries
    ("return A*(dA-(dA*A).sum(axis=axis,keepdims=True))", "the solution line"),
    # no line, but the expression in words with 3 of its 4 identifiers
    ("multiply A by dA minus the sum of dA times A along axis", "names 3 of the solution's 4"),
])
def test_hint_leak_is_caught(hint, caught):
    regions = authoring.solution_regions(SOFTMAX_BACKWARD.format(hint=hint))
    assert len(regions) == 1
    problems = authoring.hint_leaks(regions[0])
    assert any(caught in p for p in problems), problems


def test_guiding_hint_passes():
    hint = ("Start from the last formula above: every entry of dx needs its own weight and its own "
            "upstream gradient, plus one number shared by the whole slice. Which number is that, "
            "along which axis is it summed?")
    region = authoring.solution_regions(SOFTMAX_BACKWARD.format(hint=hint))[0]
    assert authoring.hint_leaks(region) == []
    names, code = authoring._code_tokens(region.code)
    assert names == {"A", "dA", "axis", "keepdims"}  # builtins (sum) and keywords left out
    assert code[0].rstrip().endswith("keepdims=True))")  # the comment is not part of the line


def test_short_lines_and_shared_words_alone_are_no_leak():
    region = authoring.SolutionRegion(
        hint="Return Z, A as a pair: what must the weights of every row sum to?",
        code=("    Z, A = attend(Q, K, V)", "    return Z, A"))
    assert authoring.hint_leaks(region) == []  # "return Z, A" has fewer than 12 characters


# ----------------------------------------------------------------------------------------------
# Exercise functions mirror the package: same names, same leading parameters

PACKAGE_MODULES = ("mha_course.np_attention", "mha_course.analysis.heads",
                   "mha_course.analysis.probing", "mha_course.analysis.pruning",
                   "mha_course.analysis.contributions", "mha_course.analysis.alignment",
                   "mha_course.analysis.circuits", "mha_course.models.minilm.model")
# exercise functions that the package deliberately does not have, and why
NOT_IN_PACKAGE = {
    "split_heads": "the package projects every head with one 2-D product and never splits",
    "merge_heads": "the package projects every head with one 2-D product and never merges",
    "head_importance": "the package ablates through "
                       "`experiments.pruning.ablation_effects(task, ...)`, "
                       "which takes a task object, not (model, inputs, ...)",
    "previous_token_head": "ex06 asks for weights designed by hand; a package function would be "
                           "the answer",
}


def exercise_signatures() -> dict[str, list[str]]:
    """Every exercise function of every solution notebook -> its parameter names."""
    wanted = {f for ex in EXERCISES.values() for f in ex.functions}
    found = {}
    for name in NAMES:
        for cell in read(SOLUTIONS / name).cells:
            if cell.cell_type != "code" or authoring.BEGIN not in cell.source:
                continue
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.FunctionDef) and node.name in wanted:
                    found[node.name] = [a.arg for a in node.args.posonlyargs + node.args.args]
    return found


def test_every_exercise_function_is_defined_in_a_solution():
    wanted = {f for ex in EXERCISES.values() for f in ex.functions}
    assert sorted(wanted - set(exercise_signatures())) == []


@pytest.mark.parametrize("function", sorted(exercise_signatures()))
def test_exercise_function_mirrors_the_package(function):
    import importlib
    import inspect

    params = exercise_signatures()[function]
    homes = [m for m in PACKAGE_MODULES
             if callable(getattr(importlib.import_module(m), function, None))]
    if function in NOT_IN_PACKAGE:
        assert not homes, f"{function} is in {homes}: take it off NOT_IN_PACKAGE and compare"
        pytest.skip(NOT_IN_PACKAGE[function])
    assert homes, (f"the exercise function {function} is in none of {PACKAGE_MODULES}: name it as "
                   "the package does, or add it to NOT_IN_PACKAGE with the reason")
    package = inspect.signature(getattr(importlib.import_module(homes[0]), function))
    leading = [p.name for p in package.parameters.values()
               if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:len(params)]
    assert leading == params, \
        f"{homes[0]}.{function}{package} vs the exercise's ({', '.join(params)})"


def test_ex05_control_labels_draws_what_the_package_draws():
    """The exercise's control task is the package's draw, token for token."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mha_course.analysis import probing

    cell = next(c for c in read(SOLUTIONS / "ex05_probing_and_pruning.ipynb").cells
                if c.cell_type == "code" and "def control_labels(" in c.source)
    space = {"np": np, "make_pipeline": make_pipeline, "StandardScaler": StandardScaler,
             "LogisticRegression": LogisticRegression}
    exec(cell.source, space)
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array(["NOUN", "VERB", "DET", ""], dtype=object), size=300,
                        p=[0.5, 0.25, 0.2, 0.05])
    types = rng.integers(40, size=300) ** 2  # word types of unequal frequency
    for seed in (0, 3):
        np.testing.assert_array_equal(space["control_labels"](labels, types, seed),
                                      probing.control_labels(labels, types, seed))

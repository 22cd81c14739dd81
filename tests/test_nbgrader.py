"""nbgrader 0.9.6, run for real as an instructor would, on the course's solutions: the shipped
docs/nbgrader_config.py, `generate_assignment` from solutions/ (the release keeps the hints and the
install-check cell, and carries no run timestamps), `autograde` and `export` of a three-student
class, and `validate`; nbgrader's points per student and per exercise equal the course grader's
(`python -m mha_course grade`) on the same submissions.

One notebook (ex03, two exercises, NumPy only) keeps the test near a minute: nbgrader starts a
kernel per notebook and per student, and each imports the course's checks.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from mha_course.checks import EXERCISES
from mha_course.grading import authoring
from mha_course.install_cell import INSTALL_CELL_SOURCE

pytestmark = [pytest.mark.slow, pytest.mark.grader]

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "ex03_backward.ipynb"
ASSIGNMENT = "backward"
NBGRADER = [sys.executable, "-m", "nbgrader"]
# nbgrader runs `alembic` (its database migrations) from PATH: the environment's bin/ comes first,
# as in an activated environment.
ENV = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                              os.environ.get("PATH", "")])}


def run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            env=ENV)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def replace_in(nb, old: str, new: str, cell: str | None = None) -> None:
    """Replace `old` in the one code cell that holds it and `cell` (fails when none or several
    do)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and old in c.source
             and (cell or old) in c.source]
    assert len(cells) == 1, (old, cell, len(cells))
    cells[0].source = cells[0].source.replace(old, new)


def broken_submission(release) -> nbformat.NotebookNode:
    """The released notebook with a wrong softmax_backward (0 points), an attention backward that
    is right without calling it (3 points), a cell that raises and a cell that does not parse."""
    nb = nbformat.from_dict(release)
    stub = "raise NotImplementedError()"
    replace_in(nb, stub, "return A * dA  # forgot the shared term", "def softmax_backward(")
    replace_in(nb, stub, (
        "_, A = scaled_dot_product_attention(Q, K, V, mask)\n"
        "    dA = dZ @ V.swapaxes(-1, -2)\n"
        "    dS = A * (dA - (dA * A).sum(axis=-1, keepdims=True)) / np.sqrt(Q.shape[-1])\n"
        "    return dS @ K, dS.swapaxes(-1, -2) @ Q, A.swapaxes(-1, -2) @ dZ"),
        "def scaled_dot_product_attention_backward(")
    replace_in(nb, "rng = np.random.default_rng(0)", "1 / 0\nrng = np.random.default_rng(0)")
    replace_in(nb, "rng = np.random.default_rng(1)", "rng = np.random.default_rng(1\n")
    return nb


def outside_regions(source: str) -> list[str]:
    """The lines of a cell outside its solution regions (what nbgrader's release keeps)."""
    kept, inside = [], False
    for line in source.split("\n"):
        if line.strip().startswith((authoring.BEGIN, authoring.END)):
            inside = line.strip().startswith(authoring.BEGIN)
        elif not inside:
            kept.append(line)
    return kept


def course_points(feedback: str) -> dict[str, float]:
    """grade_id -> points from a feedback/<student>.md of the course's grader."""
    by_title = {ex.title: grade_id for grade_id, ex in EXERCISES.items()}
    points = {}
    for title, earned in re.findall(r"^\| (.+?) \| ([\d.]+) / [\d.]+ \|", feedback, re.M):
        points[by_title[title.replace("\\|", "|")]] = float(earned)
    return points


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course directory after generate_assignment, autograde and export of three students."""
    root = tmp_path_factory.mktemp("nbgrader_course")
    shutil.copy(ROOT / "docs" / "nbgrader_config.py", root / "nbgrader_config.py")
    (root / "source" / ASSIGNMENT).mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / NOTEBOOK, root / "source" / ASSIGNMENT / NOTEBOOK)
    run(NBGRADER + ["generate_assignment", ASSIGNMENT], root)
    release = nbformat.read(root / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    students = {"perfect": nbformat.read(ROOT / "solutions" / NOTEBOOK, as_version=4),
                "blank": release, "broken": broken_submission(release)}
    for student, nb in students.items():
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / NOTEBOOK)
        (root / "SUBMISSIONS" / student).mkdir(parents=True)
        nbformat.write(nb, root / "SUBMISSIONS" / student / NOTEBOOK)
    run(NBGRADER + ["autograde", ASSIGNMENT], root, timeout=420)
    run(NBGRADER + ["export"], root)
    return root


def test_release_keeps_hints_and_setup_cell_and_drops_timestamps(course):
    solution = nbformat.read(ROOT / "solutions" / NOTEBOOK, as_version=4)
    release = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    code = [c for c in release.cells if c.cell_type == "code"]
    assert code[0].source == INSTALL_CELL_SOURCE
    assert all("execution" not in c.metadata for c in release.cells)
    released = "\n".join(c.source for c in code)
    hints = [line.strip() for c in solution.cells if c.cell_type == "code"
             for line in outside_regions(c.source) if line.strip().startswith("#")]
    assert sum(h.startswith(authoring.HINT) for h in hints) == 2  # one per exercise
    for hint in hints:
        assert hint in released, f"the release lost the hint line {hint!r}"
    assert authoring.BEGIN not in released and "NotImplementedError" in released


def test_nbgrader_scores_match_the_course_grader(course):
    with open(course / "grades.csv", newline="") as f:
        exported = {row["student_id"]: (float(row["score"]), float(row["max_score"]))
                    for row in csv.DictReader(f)}
    graded = authoring.graded_cells(nbformat.read(ROOT / "solutions" / NOTEBOOK, as_version=4))
    full = sum(g.points for g in graded)
    assert exported == {"perfect": (full, full), "blank": (0.0, full), "broken": (3.0, full)}

    exercises = course / "exercises"
    exercises.mkdir()
    shutil.copy(ROOT / "exercises" / NOTEBOOK, exercises / NOTEBOOK)
    run([sys.executable, "-m", "mha_course", "grade", str(course / "SUBMISSIONS"), "--out",
         str(course / "gradebook.csv"), "--exercises", str(exercises), "--quiet"], course)
    with open(course / "gradebook.csv", newline="") as f:
        ours = {row["student"]: float(row["total"]) for row in csv.DictReader(f)}
    assert ours == {student: score for student, (score, _) in exported.items()}

    # exercise by exercise: nbgrader's grade cells against the course's feedback
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for student in exported:
            theirs = {g.grade_id: gradebook.find_grade(g.grade_id, NOTEBOOK[:-6], ASSIGNMENT,
                                                       student).score for g in graded}
            feedback = (course / "feedback" / f"{student}.md").read_text()
            assert theirs == course_points(feedback), student


def test_validate_passes_the_perfect_and_fails_the_others(course):
    students = ("perfect", "blank", "broken")
    paths = [str(course / "submitted" / s / ASSIGNMENT / NOTEBOOK) for s in students]
    output = run(NBGRADER + ["validate", *paths], course).stdout  # one verdict per notebook
    verdicts = re.findall(r"Success! Your notebook passes all the tests\.|VALIDATION FAILED",
                          output)
    assert verdicts == ["Success! Your notebook passes all the tests.", "VALIDATION FAILED",
                        "VALIDATION FAILED"], output

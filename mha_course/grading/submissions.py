"""The assignment and the submissions, read before any student code runs.

    SUBMISSIONS/<student>/<exercise notebook>.ipynb   (the names of the notebooks in exercises/)

The assignment is read from the exercise notebooks (the graded cells' `grade_id` and `points`;
never from a submission, whose metadata the student could edit) and checked against
`mha_course.checks.EXERCISES`. A student's folder is copied to a scratch folder (regular files
only; the originals are never opened for writing) and each notebook is read into memory as the
sources of its code cells, or the reason why it cannot be run.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat

from mha_course.checks import EXERCISES
from mha_course.grading.authoring import graded_cells

__all__ = ["Assignment", "default_exercises_dir", "load_assignment", "student_folders",
           "copy_regular_files", "read_notebook"]

MAX_NOTEBOOK_BYTES = 20 * 2**20
MAX_FILE_BYTES = 50 * 2**20
_SOURCE_CHECKOUT = Path(__file__).resolve().parents[2]  # mha_course/grading/ -> the checkout


@dataclass(frozen=True)
class Assignment:
    """One exercise notebook: its file name and its graded exercises (grade_id, points)."""

    name: str
    exercises: tuple[tuple[str, float], ...]

    @property
    def stem(self) -> str:
        return self.name[: -len(".ipynb")]

    @property
    def max_points(self) -> float:
        return sum(points for _, points in self.exercises)


def default_exercises_dir() -> Path:
    """exercises/ next to the package in a source checkout (where `make-exercises` writes)."""
    return _SOURCE_CHECKOUT / "exercises"


def load_assignment(exercises_dir: Path) -> list[Assignment]:
    """Every exercise notebook with graded cells, checked against `mha_course.checks.EXERCISES`."""
    exercises_dir = Path(exercises_dir)
    if not exercises_dir.is_dir():
        raise FileNotFoundError(f"exercises folder not found: {exercises_dir} (expected the folder "
                                "of exercise notebooks handed out to students; pass --exercises)")
    assignment = []
    for path in sorted(exercises_dir.glob("*.ipynb")):
        graded = graded_cells(nbformat.read(path, as_version=4), path.name)
        unknown = [g.grade_id for g in graded if g.grade_id not in EXERCISES]
        if unknown:
            raise ValueError(f"{path.name}: graded cells {unknown} name no exercise of "
                             f"mha_course.checks.EXERCISES (known: {sorted(EXERCISES)})")
        if graded:
            assignment.append(Assignment(path.name, tuple((g.grade_id, g.points) for g in graded)))
    if not assignment:
        raise FileNotFoundError(f"no exercise notebooks with graded cells in {exercises_dir}")
    return assignment


def student_folders(submissions: Path, assignment: list[Assignment]) -> list[str]:
    example = f"{submissions}/alice/{assignment[0].name}"
    if not submissions.exists():
        raise FileNotFoundError(f"SUBMISSIONS folder not found: {submissions} (expected a folder "
                                f"with one sub-folder per student, e.g. {example})")
    if not submissions.is_dir():
        raise NotADirectoryError(f"SUBMISSIONS must be a folder of student folders; got the file "
                                 f"{submissions}")
    students = sorted(p.name for p in submissions.iterdir()
                      if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
    if not students:
        raise ValueError(f"no student folders in {submissions}: expected SUBMISSIONS/<student>/"
                         f"<notebook>.ipynb, e.g. {example}")
    return students


def copy_regular_files(source: Path, target: Path) -> list[str]:
    """Copy a student's folder, regular files only (no links, nothing huge); returns notes."""
    notes = []
    for folder, dirs, files in os.walk(source, followlinks=False):
        rel = Path(folder).relative_to(source)
        dirs[:] = [d for d in dirs if not (Path(folder) / d).is_symlink()]
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file():
                notes.append(f"{rel / name}: not a regular file, not copied")
            elif path.stat().st_size > MAX_FILE_BYTES:
                notes.append(f"{rel / name}: larger than {MAX_FILE_BYTES // 2**20} MiB, not copied")
            else:
                shutil.copyfile(path, target / rel / name)
    return notes


def read_notebook(path: Path) -> tuple[list[str] | None, str | None]:
    """(code cells' sources, None) or (None, why the notebook cannot be run)."""
    if not path.is_file():
        return None, "missing"
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        return None, f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB"
    try:
        text = path.read_bytes().decode("utf-8")
        raw = json.loads(text)
        if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
            return None, "not a notebook: no list of cells"
        nb = nbformat.reads(text, as_version=4)
        return [c.source for c in nb.cells if c.get("cell_type") == "code"], None
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as error:
        return None, f"not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
    except Exception as error:  # nbformat's own complaints
        return None, f"not a readable notebook ({type(error).__name__}: {error})"


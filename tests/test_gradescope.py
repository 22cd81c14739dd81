"""The Gradescope autograder: `python -m mha_course gradescope OUT.zip` writes a bundle whose
`run_autograder`, run in a folder laid out as Gradescope lays out /autograder (AUTOGRADER_ROOT),
grades a perfect, a blank and a hostile submission and writes results.json in Gradescope's format.

The assignment is ex01 + ex02 (5 + 8 points, as in test_grading.py); the bundle is built once.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.grader

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
EX01, EX02 = "ex01_softmax_and_sdpa.ipynb", "ex02_multi_head.ipynb"
POINTS = {EX01: 5, EX02: 8}


def graded_cells(name: str) -> list[float]:
    """The points of each graded cell (nbgrader's metadata) of an exercise notebook."""
    nb = nbformat.read(EXERCISES / name, as_version=4)
    return [c.metadata["nbgrader"]["points"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade")]
VISIBILITIES = {"visible", "after_due_date", "after_published", "hidden"}


def notebook(folder: Path, name: str, extra_cells=()):
    nb = nbformat.read(folder / name, as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(source) for source in extra_cells]
    return nb


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle")
    assignment = tmp / "assignment"
    assignment.mkdir()
    for name in POINTS:
        shutil.copy(EXERCISES / name, assignment / name)
    out = tmp / "autograder.zip"
    result = subprocess.run([sys.executable, "-m", "mha_course", "gradescope", str(out),
                             "--exercises", str(assignment), "--seed", "7", "--timeout", "10",
                             "--memory-mb", "512"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return out


def autograde(bundle: Path, root: Path, files: dict, python: str = sys.executable):
    """Lay out root as Gradescope lays out /autograder, run run_autograder there, read
    results/results.json. files: path in submission/ -> notebook."""
    with zipfile.ZipFile(bundle) as z:
        z.extractall(root / "source")
        for info in z.infolist():  # zipfile does not restore permissions
            os.chmod(root / "source" / info.filename, (info.external_attr >> 16) & 0o777)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    for rel, nb in files.items():
        (root / "submission" / rel).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, root / "submission" / rel)
    (root / "submission").mkdir(exist_ok=True)
    (root / "results").mkdir()
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": python}
    started = time.monotonic()
    run = subprocess.run([str(root / "run_autograder")], cwd=root, env=env, capture_output=True,
                         text=True, timeout=300)
    seconds = time.monotonic() - started
    return run, json.loads((root / "results" / "results.json").read_text()), seconds


def check_schema(results: dict) -> None:
    """Gradescope's results.json: a score, tests with name/score/max_score/output/visibility."""
    assert isinstance(results["score"], (int, float))
    assert isinstance(results["output"], str) and results["output_format"] == "md"
    assert results["visibility"] in VISIBILITIES and results["stdout_visibility"] in VISIBILITIES
    tests = results["tests"]
    points = [p for name in POINTS for p in graded_cells(name)]
    assert len({t["name"] for t in tests}) == len(tests) == len(points)  # one test per exercise
    assert [t["max_score"] for t in tests] == points
    for t in tests:
        assert set(t) >= {"name", "score", "max_score", "output", "visibility", "status"}
        assert 0 <= t["score"] <= t["max_score"] and isinstance(t["output"], str) and t["output"]
        assert t["status"] == ("passed" if t["score"] == t["max_score"] else "failed")
    assert sum(t["max_score"] for t in tests) == sum(POINTS.values())
    assert results["score"] == sum(t["score"] for t in tests)


@pytest.fixture(scope="module")
def graded(bundle, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("autograder")
    hostile_root = tmp / "hostile"
    results_path = hostile_root / "results" / "results.json"
    fake = json.dumps({"score": 1000, "tests": []})
    submissions = {
        # the perfect student uploaded one notebook inside a folder
        "perfect": {EX01: notebook(SOLUTIONS, EX01), f"work/{EX02}": notebook(SOLUTIONS, EX02)},
        "blank": {name: notebook(EXERCISES, name) for name in POINTS},
        # it writes results.json, reads the seed and loops in ex02, and ends its process in ex01
        "hostile": {
            EX01: notebook(SOLUTIONS, EX01, ["import os\nos._exit(0)"]),
            EX02: notebook(SOLUTIONS, EX02, [
                f"open({str(results_path)!r}, 'w').write({fake!r})",
                f"print(open({str(hostile_root / 'source' / 'config.json')!r}).read())",
                "while True:\n    pass"])},
    }
    return {student: autograde(bundle, tmp / student, files)
            for student, files in submissions.items()} | {"hostile_root": hostile_root}


def test_bundle_follows_gradescope_layout(bundle):
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in z.infolist()}
        requirements = z.read("requirements.txt").decode().split()
        config = json.loads(z.read("config.json"))
        setup = z.read("setup.sh").decode()
    assert {"setup.sh", "run_autograder", "requirements.txt", "config.json",
            "mha_course/__init__.py", "mha_course/grading/gradescope.py"} <= names
    assert {f"exercises/{name}" for name in POINTS} == {n for n in names if n.startswith("exer")}
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert setup.startswith("#!/usr/bin/env bash") and "/autograder/venv" in setup
    names_required = {r.split("==")[0].lower() for r in requirements}
    assert {"numpy", "nbformat", "ipython", "scikit-learn"} <= names_required
    assert "torch" not in names_required and "download.pytorch.org/whl/cpu" in setup
    assert config == {"seed": 7, "timeout": 10, "memory_mb": 512, "jobs": 1,
                      "visibility": "visible"}


def test_perfect_submission_gets_full_marks(graded):
    run, results, _ = graded["perfect"]
    assert run.returncode == 0, run.stdout + run.stderr
    check_schema(results)
    assert results["score"] == sum(POINTS.values())
    assert all(t["output"] == "passed the hidden checks" for t in results["tests"])
    assert "**Total: 13 / 13 points.**" in results["output"]


def test_blank_submission_gets_zero(graded):
    run, results, _ = graded["blank"]
    assert run.returncode == 0, run.stdout + run.stderr
    check_schema(results)
    assert results["score"] == 0
    assert all("NotImplementedError" in t["output"] for t in results["tests"]), results["tests"]


def test_hostile_submission_cannot_set_its_own_score(graded):
    run, results, _ = graded["hostile"]
    root = graded["hostile_root"]
    assert run.returncode == 0, run.stdout + run.stderr
    check_schema(results)
    by_name = {t["name"]: t for t in results["tests"]}
    ex01 = [t for name, t in by_name.items() if name.startswith("ex01")]
    ex02 = [t for name, t in by_name.items() if name.startswith("ex02")]
    assert all(t["score"] == 0 and "exited (code 0)" in t["output"] for t in ex01), ex01
    assert all(t["score"] == t["max_score"] for t in ex02), ex02  # the loop was stopped
    assert results["score"] == POINTS[EX02]
    feedback = results["output"]
    assert f"blocked by the grader: writing {root / 'results' / 'results.json'}" in feedback
    assert f"blocked by the grader: reading {root / 'source' / 'config.json'}" in feedback
    assert "ran past its share of the time limit" in feedback
    assert sorted(p.name for p in (root / "results").iterdir()) == ["results.json"]


def test_grading_time_per_submission(graded):
    """Each run_autograder call starts the grader afresh (a fork server that imports the course):
    a submission of two notebooks takes seconds, not minutes."""
    for student in ("perfect", "blank", "hostile"):
        seconds = graded[student][2]
        print(f"{student}: run_autograder took {seconds:.1f} s")
        assert seconds < 120, (student, seconds)


def test_a_grader_that_cannot_start_still_writes_results(bundle, tmp_path):
    run, results, _ = autograde(bundle, tmp_path, {}, python=shutil.which("false"))
    assert run.returncode != 0
    assert results["score"] == 0 and "autograder failed" in results["output"]
    assert stat.S_ISREG((tmp_path / "results" / "results.json").stat().st_mode)


def test_an_empty_submission_is_graded_as_missing_notebooks(bundle, tmp_path):
    run, results, _ = autograde(bundle, tmp_path, {})
    assert run.returncode == 0, run.stdout + run.stderr
    check_schema(results)
    assert results["score"] == 0
    assert all("was not submitted" in t["output"] for t in results["tests"]), results["tests"]

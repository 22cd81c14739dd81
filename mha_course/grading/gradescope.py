"""A Gradescope autograder: the course's grader in Gradescope's layout and results format.

    python -m mha_course gradescope autograder.zip     # upload it as the assignment's autograder

The zip follows Gradescope's autograder specification (setup.sh and run_autograder at its root):

    setup.sh           run once when Gradescope builds the image: Python 3.11+, torch (CPU wheels)
                       and requirements.txt into /autograder/venv
    run_autograder     run for each submission: `python -m mha_course.grading.gradescope`
    requirements.txt   the course's dependencies at the versions installed here, and what the
                       grader needs on top (nbformat, IPython)
    mha_course/        the course's package as installed here (code and data)
    exercises/         the exercise notebooks handed out: the assignment (graded cells, points)
    config.json        seed of the hidden cases, limits per notebook, visibility of the results

For each submission Gradescope lays out /autograder (`AUTOGRADER_ROOT` points elsewhere, for
tests): source/ holds the zip's contents, submission/ the student's files (the notebooks under
their exercise names, at the top or in one sub-folder), results/ what the autograder writes.
`run` grades the submission with `grader.grade`, each notebook confined as in `grade`, with
source/config.json unreadable to the student's code (it holds the seed), and writes
results/results.json: one test per exercise (score, max_score, output = the feedback), the total
and the whole feedback (Markdown). Only the grader writes there, after every notebook has run.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

from mha_course.grading import grader, report
from mha_course.grading.submissions import copy_regular_files, default_exercises_dir

__all__ = ["VISIBILITIES", "build_bundle", "worst_case_seconds", "timing_note", "results_json",
           "run", "main"]

VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")
STUDENT = "submission"  # the one student folder run() grades
_PACKAGE = Path(os.path.abspath(__file__)).parents[1]  # mha_course/ (links not followed)
_GRADING_NEEDS = ("nbformat", "ipython")  # grading's own imports beyond the course's dependencies
_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image (Ubuntu).
set -euo pipefail
cd /autograder/source
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip
PYTHON=python3
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then  # the course needs 3.11+
    apt-get install -y --no-install-recommends software-properties-common
    add-apt-repository -y ppa:deadsnakes/ppa
    apt-get update
    apt-get install -y --no-install-recommends python3.11 python3.11-venv
    PYTHON=python3.11
fi
"$PYTHON" -m venv /autograder/venv
/autograder/venv/bin/pip install --upgrade pip
/autograder/venv/bin/pip install "torch=={torch}" --index-url {index}  # CPU wheels: no CUDA
/autograder/venv/bin/pip install -r requirements.txt
# fail the build now, not at the first submission, if the grader cannot start
PYTHONPATH=/autograder/source /autograder/venv/bin/python -c "import mha_course.grading.grader"
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for each submission, from /autograder; AUTOGRADER_ROOT points it at another
# folder laid out the same way, AUTOGRADER_PYTHON at another Python (tests).
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${AUTOGRADER_PYTHON:-/autograder/venv/bin/python}"
cd "$ROOT" || exit 1
mkdir -p "$ROOT/results"
export PYTHONPATH="$ROOT/source${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -m mha_course.grading.gradescope "$ROOT"
status=$?
if [ ! -s "$ROOT/results/results.json" ]; then  # the grader did not start: tell the student
    printf '{"score": 0, "output": "The autograder failed (exit status %s) before it could grade \
this submission; please tell your instructor."}\\n' "$status" > "$ROOT/results/results.json"
fi
exit "$status"
"""


# ----------------------------------------------------------------------------------------------
# the bundle


def _requirements() -> list[str]:
    """The course's own dependencies and grading's, pinned to the versions installed here where
    they are (else as the course declares them); torch is installed separately, from CPU wheels."""
    try:
        declared = [r for r in importlib.metadata.requires("mha-course") or []
                    if "extra ==" not in r]
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError("the course is not installed (no metadata for mha-course): install it "
                           "(pip install -e . or the wheel) to build a Gradescope bundle") from None
    lines = []
    for spec in [*declared, *_GRADING_NEEDS]:
        name = re.match(r"[A-Za-z0-9._-]+", spec).group(0)
        if name.lower() == "torch":
            continue
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(spec.split(";")[0].strip())
    return lines


def worst_case_seconds(n_notebooks: int, timeout: float, jobs: int) -> float:
    """How long one submission can take when every notebook runs to its limit (plus the 3 s grace
    and about 30 s to start the grader on a slow CPU)."""
    waves = -(-n_notebooks // jobs)
    return waves * (timeout + 3.0) + 30.0


def timing_note(exercises: Path | None, timeout: float, jobs: int) -> str:
    """What the instructor must know about Gradescope's overall timeout."""
    n = len(grader.load_assignment(exercises or default_exercises_dir()))
    worst = worst_case_seconds(n, timeout, jobs)
    return (f"a submission whose {n} notebooks all run to the time limit ({timeout:g} s each, "
            f"{jobs} at a time) takes about {worst:.0f} s: Gradescope's overall timeout (10 "
            f"minutes unless raised in its Autograder Settings) must be longer"
            + ("" if worst < 600 else "; raise it, or lower --timeout"))


def _torch_version() -> str:
    return importlib.metadata.version("torch").split("+")[0]


def build_bundle(out: Path, exercises: Path | None = None, seed: int | None = None,
                 timeout: float = 45.0, memory_mb: int = 512, jobs: int = 1,
                 visibility: str = "visible") -> Path:
    """Write the autograder zip to `out`; seed None: a fresh random seed for the hidden cases.

    The defaults fit Gradescope's default container (half a CPU, 768 MB, 10 minutes in all): one
    notebook at a time, and every notebook of a submission at its time limit still ends in time
    (`worst_case_seconds`)."""
    out = Path(out)
    if out.suffix != ".zip":
        raise ValueError(f"the bundle must be a .zip file (Gradescope takes a zip); got {out}")
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {', '.join(VISIBILITIES)}; got {visibility!r}")
    if jobs < 1 or not timeout > 0 or memory_mb < 64 or (seed is not None and seed < 0):
        raise ValueError(f"expected jobs >= 1, timeout > 0, memory_mb >= 64 and seed >= 0; got "
                         f"jobs={jobs}, timeout={timeout}, memory_mb={memory_mb}, seed={seed}")
    exercises = Path(exercises) if exercises is not None else default_exercises_dir()
    assignment = grader.load_assignment(exercises)  # checked before anything is written
    config = {"seed": secrets.randbelow(2**31) if seed is None else seed, "timeout": timeout,
              "memory_mb": memory_mb, "jobs": jobs, "visibility": visibility}
    files = {"setup.sh": SETUP_SH.replace("{torch}", _torch_version())
             .replace("{index}", _TORCH_INDEX),
             "run_autograder": RUN_AUTOGRADER,
             "requirements.txt": "\n".join(_requirements()) + "\n",
             "config.json": json.dumps(config, indent=1) + "\n"}
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, text in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, text)
        for spec in assignment:
            bundle.write(exercises / spec.name, f"exercises/{spec.name}")
        for path in sorted(_PACKAGE.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                bundle.write(path, f"mha_course/{path.relative_to(_PACKAGE)}")
    os.replace(temporary, out)
    return out


# ----------------------------------------------------------------------------------------------
# one submission


def _collect(submission: Path, folder: Path, names: list[str]) -> list[str]:
    """Copy the submission (regular files) into `folder`; a notebook found only below the top
    (one match, e.g. a zipped folder) is put at the top. Returns notes for the feedback."""
    folder.mkdir(parents=True)
    notes = (copy_regular_files(submission, folder) if submission.is_dir()
             else [f"no submission folder ({submission})"])
    for name in names:
        if (folder / name).exists():
            continue
        found = sorted(p for p in folder.rglob(name) if p.is_file())
        if len(found) == 1:
            shutil.copyfile(found[0], folder / name)
        elif len(found) > 1:
            notes.append(f"{name} was found {len(found)} times in sub-folders; upload one copy")
    return notes


def results_json(student, config: dict, seconds: float, notes: list[str]) -> dict:
    """Gradescope's results.json for one graded `StudentResult`."""
    tests = []
    for nb in student.notebooks:
        for e in nb.exercises:
            output = "passed the hidden checks" if e.reason is None else e.reason
            if e.reason is not None and nb.notes:
                output += "\n\nNotes on " + nb.name + ":\n" + "\n".join(f"- {n}" for n in nb.notes)
            tests.append({"name": f"{nb.name[:-len('.ipynb')]}: {e.title}", "score": e.points,
                          "max_score": e.max_points, "output": output,
                          "status": "passed" if e.reason is None else "failed",
                          "visibility": config["visibility"]})
    feedback = report.feedback_markdown(student)
    if notes:
        feedback += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return {"score": student.total, "output": feedback, "output_format": "md",
            "visibility": config["visibility"], "stdout_visibility": "hidden",
            "execution_time": round(seconds), "tests": tests}


def run(root: Path) -> dict:
    """Grade root/submission with the bundle in root/source; write root/results/results.json."""
    started = time.monotonic()
    root = Path(root).resolve()
    source, results = root / "source", root / "results" / "results.json"
    results.unlink(missing_ok=True)  # nothing from before may stand for this run's result
    config = json.loads((source / "config.json").read_text())
    assignment = grader.load_assignment(source / "exercises")
    scratch = Path(tempfile.mkdtemp(prefix="mha-gradescope-"))
    try:
        notes = _collect(root / "submission", scratch / "submissions" / STUDENT,
                         [spec.name for spec in assignment])
        options = grader.GradeOptions(
            submissions=scratch / "submissions", out=scratch / "out" / "gradebook.csv",
            exercises=source / "exercises", jobs=config["jobs"], timeout=config["timeout"],
            memory_mb=config["memory_mb"], seed=config["seed"], progress=False,
            scratch=scratch, deny=(source / "config.json",))
        graded = grader.grade(options)
        print(report.format_summary(graded))
        data = results_json(graded.students[0], config, time.monotonic() - started, notes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.write_atomic(results, json.dumps(data, indent=1) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    """`python -m mha_course.grading.gradescope [ROOT]`: what run_autograder calls."""
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0] if argv else os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    try:
        data = run(root)
    except Exception as error:  # tell the student the grader failed, and the instructor why
        traceback.print_exc(file=sys.stdout)
        failed = {"score": 0, "output": f"The autograder failed ({type(error).__name__}) before "
                  "it finished grading this submission; please tell your instructor.",
                  "stdout_visibility": "hidden", "tests": []}
        report.write_atomic(root / "results" / "results.json", json.dumps(failed) + "\n")
        return 1
    print(f"score {data['score']:g} / {sum(t['max_score'] for t in data['tests']):g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The instructor's side: grade every student's notebooks and write the gradebook and feedback.

    SUBMISSIONS/<student>/<exercise notebook>.ipynb   (the names of the notebooks in exercises/)

1. The assignment is read from the exercise notebooks (the graded cells' `grade_id` and `points`;
   never from a submission, whose metadata the student could edit): `submissions`.
2. The hidden cases of every exercise and their reference outputs are computed here, once.
3. Every submission folder is copied to a scratch folder (regular files only; the originals are
   never opened for writing) and every notebook is read into memory before any student code runs
   (`submissions`).
4. Each notebook runs in a fresh process forked from a pristine server (`worker.run_job`),
   confined by `sandbox`, with a wall-clock limit and a memory limit (`runner`). `jobs` run in
   parallel.
5. The student's process sends outputs for the hidden cases; `Exercise.judge` compares them here
   (`scoring`).
6. gradebook.csv (atomic), feedback/<student>.md and a summary are written at the end (`report`).

A notebook that crashes, loops, exits, exhausts its memory, is not valid JSON or is missing costs
only that notebook's affected points, with the reason in the student's feedback.
"""

from __future__ import annotations

import concurrent.futures
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from mha_course.checks import EXERCISES
from mha_course.grading import sandbox
from mha_course.grading.report import write_outputs
from mha_course.grading.runner import (
    Shared,
    fork_server_context,
    run_notebook,
    wait_for_fork_server,
)
from mha_course.grading.scoring import ExerciseResult, NotebookResult, StudentResult
from mha_course.grading.submissions import (
    Assignment,
    copy_regular_files,
    default_exercises_dir,
    load_assignment,
    read_notebook,
    student_folders,
)

__all__ = ["GradeOptions", "Assignment", "ExerciseResult", "NotebookResult", "StudentResult",
           "GradeRun", "grade", "default_exercises_dir", "load_assignment"]


@dataclass
class GradeOptions:
    """What `python -m mha_course grade` takes; see `grade`."""

    submissions: Path
    out: Path = Path("gradebook.csv")
    exercises: Path | None = None  # None: exercises/ of the course's source checkout
    feedback: Path | None = None  # None: a folder "feedback" next to `out`
    jobs: int = 1
    timeout: float = 120.0  # wall-clock seconds per notebook
    memory_mb: int = 2048  # address space a notebook may add to the preloaded libraries
    seed: int = 0  # hidden cases; choose your own to keep them unguessable
    progress: bool = True
    scratch: Path | None = None  # where the scratch folder goes (None: the system's temp folder)
    keep_scratch: bool = False
    deny: tuple[Path, ...] = ()  # more files or folders the notebooks may neither read nor write


@dataclass
class GradeRun:
    students: list[StudentResult]
    gradebook: Path
    feedback: Path
    summary: dict



# ----------------------------------------------------------------------------------------------


def _hidden_references(assignment: list[Assignment], seed: int) -> dict:
    references = {}
    for spec in assignment:
        for ex_id, _ in spec.exercises:
            exercise = EXERCISES[ex_id]
            cases = exercise.cases(hidden=True, seed=seed)
            references[ex_id] = (cases, [exercise.expected(c) for c in cases])
    return references


_HEX = re.compile(r"0x[0-9a-fA-F]{6,}")


def _clean(text: str, scratch: Path) -> str:
    """Messages without run-specific details (scratch paths, memory addresses): re-runs agree."""
    return _HEX.sub("0x...", text.replace(str(scratch), "<scratch>"))


def grade(options: GradeOptions) -> GradeRun:
    """Grade every student in options.submissions; write the gradebook, feedback and summary."""
    started = time.monotonic()
    if options.jobs < 1:
        raise ValueError(f"--jobs must be at least 1; got {options.jobs}")
    if not options.timeout > 0:
        raise ValueError(f"--timeout must be a positive number of seconds; got {options.timeout}")
    if options.memory_mb < 64:
        raise ValueError(f"--memory-mb must be at least 64; got {options.memory_mb}")
    if options.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer; got {options.seed}")
    submissions = Path(options.submissions).resolve()
    out = Path(options.out).resolve()
    feedback = Path(options.feedback).resolve() if options.feedback else out.parent / "feedback"
    assignment = load_assignment(options.exercises or default_exercises_dir())
    students = student_folders(submissions, assignment)
    for path, what in ((out, "--out"), (feedback, "the feedback folder")):
        if path == submissions or submissions in path.parents:
            raise ValueError(f"{what} ({path}) must not be inside SUBMISSIONS ({submissions})")

    ctx = fork_server_context()  # it imports the libraries while the references are computed
    references = _hidden_references(assignment, options.seed)
    scratch = Path(tempfile.mkdtemp(prefix="mha-grade-", dir=options.scratch)).resolve()
    try:
        copy_notes, sources = {}, {}
        for student in students:
            copy_notes[student] = copy_regular_files(submissions / student,
                                                     scratch / "copies" / student)
            for spec in assignment:  # read before any student code runs
                path = scratch / "copies" / student / spec.name
                sources[student, spec.name] = read_notebook(path)
        denied = [str(submissions), str(scratch)] + [str(p) for p in (out, feedback) if p.exists()]
        denied += [str(Path(p).resolve()) for p in options.deny]
        read_roots = sandbox.readable_roots(denied) if sandbox.landlock_abi() else None
        wait_for_fork_server(ctx)
        server_ready = time.monotonic()
        shared = Shared(options.timeout, options.memory_mb, references, ctx, scratch, denied,
                        read_roots)
        results = _run_all(shared, options, students, assignment, sources)
        finished = time.monotonic()
        student_results = []
        for student in students:
            notebooks = [results[student, spec.name] for spec in assignment]
            for nb in notebooks:
                nb.notes = [_clean(n, scratch) for n in nb.notes]
                for e in nb.exercises:
                    e.reason = e.reason and _clean(e.reason, scratch)
            if copy_notes[student]:
                notebooks[0].notes += [f"submission: {n}" for n in copy_notes[student]]
            student_results.append(StudentResult(student, notebooks))
    finally:
        if not options.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    summary = _summary(student_results, assignment, options, started, server_ready, finished,
                       read_roots is not None)
    write_outputs(student_results, assignment, out, feedback, summary)
    return GradeRun(student_results, out, feedback, summary)


def _run_all(shared: Shared, options: GradeOptions, students, assignment, sources) -> dict:
    results: dict = {}
    jobs = []
    for student in students:
        for spec in assignment:
            cells, problem = sources[student, spec.name]
            if problem is None:
                jobs.append((student, spec, cells))
                continue
            status = "missing" if problem == "missing" else "invalid"
            why = (f"{spec.name} was not submitted" if status == "missing"
                   else f"{spec.name} could not be read: {problem}")
            results[student, spec.name] = NotebookResult(
                spec.name, status, [ExerciseResult(i, _title(i), 0.0, p, f"not graded: {why}")
                                    for i, p in spec.exercises], [why])
    bar = _progress(len(jobs), options.progress)
    with concurrent.futures.ThreadPoolExecutor(max_workers=options.jobs) as pool:
        futures = {pool.submit(run_notebook, shared, s, spec, cells): (s, spec)
                   for s, spec, cells in jobs}
        for future in concurrent.futures.as_completed(futures):
            student, spec = futures[future]
            results[student, spec.name] = future.result()
            bar.update(1)
    bar.close()
    return results


def _title(ex_id: str) -> str:
    return EXERCISES[ex_id].title


def _progress(total: int, enabled: bool):
    return tqdm(total=total, desc="grading notebooks", unit="nb", disable=not enabled)


def _summary(results: list[StudentResult], assignment, options, started, server_ready, finished,
             landlock: bool) -> dict:
    notebooks = [nb for r in results for nb in r.notebooks]
    ran = [nb for nb in notebooks if nb.status not in ("missing", "invalid")]
    statuses: dict[str, int] = {}
    for nb in notebooks:
        statuses[nb.status] = statuses.get(nb.status, 0) + 1
    totals = [r.total for r in results]
    max_points = sum(a.max_points for a in assignment)
    return {
        "students": len(results), "notebooks_per_student": len(assignment),
        "notebooks_run": len(ran), "statuses": statuses,
        "max_points": max_points, "mean_total": sum(totals) / len(totals),
        "full_marks": sum(t == max_points for t in totals), "zero": sum(t == 0 for t in totals),
        "blocked": sum(n.startswith("blocked by the grader") for nb in notebooks for n in nb.notes),
        "jobs": options.jobs, "timeout_s": options.timeout, "memory_mb": options.memory_mb,
        "sandbox": "rlimits + " + ("Landlock" if landlock else "no Landlock") + " + audit hook",
        "seconds": {"total": round(time.monotonic() - started, 2),
                    "setup": round(server_ready - started, 2),
                    "notebooks": round(finished - server_ready, 2),
                    "mean_per_notebook": round(sum(nb.seconds for nb in ran) / max(len(ran), 1), 3),
                    "max_per_notebook": round(max((nb.seconds for nb in ran), default=0.0), 3),
                    "notebook_cpu": round(sum(nb.cpu_seconds for nb in ran), 2)},
    }

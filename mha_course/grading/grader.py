"""The instructor's side: grade every student's notebooks and write the gradebook and feedback.

    SUBMISSIONS/<student>/<exercise notebook>.ipynb   (the names of the notebooks in exercises/)

1. The assignment is read from the exercise notebooks (the graded cells' `grade_id` and `points`;
   never from a submission, whose metadata the student could edit).
2. The hidden cases of every exercise and their reference outputs are computed here, once.
3. Every submission folder is copied to a scratch folder (regular files only; the originals are
   never opened for writing) and every notebook is read into memory before any student code runs.
4. Each notebook runs in a fresh process forked from a pristine server (`worker.run_job`),
   confined by `sandbox`, with a wall-clock limit and a memory limit. `jobs` run in parallel.
5. The student's process sends outputs for the hidden cases; `Exercise.judge` compares them here.
6. gradebook.csv (atomic), feedback/<student>.md and a summary are written at the end.

A notebook that crashes, loops, exits, exhausts its memory, is not valid JSON or is missing costs
only that notebook's affected points, with the reason in the student's feedback.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import multiprocessing.forkserver
import os
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from mha_course.grading import codec, sandbox
from mha_course.grading.authoring import graded_cells
from mha_course.grading.report import write_outputs

__all__ = ["GradeOptions", "Assignment", "ExerciseResult", "NotebookResult", "StudentResult",
           "GradeRun", "grade", "default_exercises_dir"]

_GRACE_SECONDS = 3.0  # after the time limit, before the process is killed
_MAX_TRAFFIC_BYTES = 64 * 2**20  # what one notebook's process may send in all (a few KiB is usual)
_MAX_MESSAGES = 10_000
_MAX_NOTEBOOK_BYTES = 20 * 2**20
_MAX_FILE_BYTES = 50 * 2**20


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


@dataclass
class ExerciseResult:
    id: str
    title: str
    points: float
    max_points: float
    reason: str | None  # None: passed the hidden checks


@dataclass
class NotebookResult:
    name: str
    status: str  # graded, missing, invalid, timeout, crashed, exited
    exercises: list[ExerciseResult]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall clock, from fork to verdict
    cpu_seconds: float = 0.0  # as the notebook's process reported it (for the summary only)

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def max_points(self) -> float:
        return sum(e.max_points for e in self.exercises)


@dataclass
class StudentResult:
    student: str
    notebooks: list[NotebookResult]

    @property
    def total(self) -> float:
        return sum(n.points for n in self.notebooks)

    @property
    def max_points(self) -> float:
        return sum(n.max_points for n in self.notebooks)


@dataclass
class GradeRun:
    students: list[StudentResult]
    gradebook: Path
    feedback: Path
    summary: dict


# ----------------------------------------------------------------------------------------------
# The assignment and the submissions


def default_exercises_dir() -> Path:
    """exercises/ next to the package in a source checkout (where `make-exercises` writes)."""
    import mha_course

    return Path(mha_course.__file__).resolve().parent.parent / "exercises"


def load_assignment(exercises_dir: Path) -> list[Assignment]:
    """Every exercise notebook with graded cells, checked against `mha_course.checks.EXERCISES`."""
    from mha_course.checks import EXERCISES

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


def _students(submissions: Path, assignment: list[Assignment]) -> list[str]:
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


def _copy_regular_files(source: Path, target: Path) -> list[str]:
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
            elif path.stat().st_size > _MAX_FILE_BYTES:
                notes.append(f"{rel / name}: larger than {_MAX_FILE_BYTES // 2**20} MiB, not copied")
            else:
                shutil.copyfile(path, target / rel / name)
    return notes


def _read_notebook(path: Path) -> tuple[list[str] | None, str | None]:
    """(code cells' sources, None) or (None, why the notebook cannot be run)."""
    if not path.is_file():
        return None, "missing"
    if path.stat().st_size > _MAX_NOTEBOOK_BYTES:
        return None, f"larger than {_MAX_NOTEBOOK_BYTES // 2**20} MiB"
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


# ----------------------------------------------------------------------------------------------
# Running one notebook


@contextlib.contextmanager
def _environment(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _fork_server_context():
    """The forkserver context, its server started with the course preloaded and one thread per
    notebook for BLAS/OpenMP (jobs run in parallel; a thread pool each would fight over cores)."""
    try:
        ctx = multiprocessing.get_context("forkserver")
    except ValueError:
        raise RuntimeError("grading needs a POSIX system with fork (Linux or macOS)") from None
    ctx.set_forkserver_preload(["mha_course.grading._preload"])
    with _environment(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                      VECLIB_MAXIMUM_THREADS="1", MPLBACKEND="Agg"):
        multiprocessing.forkserver.ensure_running()
    return ctx


def _wait_for_fork_server(ctx, seconds: float = 600.0) -> None:
    """Fork one process that does nothing: it starts once the server has imported everything."""
    from mha_course.grading.worker import ready

    process = ctx.Process(target=ready, daemon=True)
    process.start()
    process.join(seconds)
    if process.exitcode != 0:
        process.kill()
        raise RuntimeError(f"the grader's fork server did not start a process within {seconds:g} s "
                           f"(exit code {process.exitcode}); is the course installed in this Python?")


def _cell_label(cells: list[str], index: int) -> str:
    first = next((line.strip() for line in cells[index].splitlines() if line.strip()), "")
    first = first if len(first) <= 60 else first[:57] + "..."
    return f"code cell {index + 1} (`{first}`)"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Context:
    """What every job shares: options, references, the process context, the sandbox settings."""

    def __init__(self, options: GradeOptions, references: dict, ctx, scratch: Path,
                 denied: list[str], read_roots: list[str] | None):
        self.options, self.references, self.ctx = options, references, ctx
        self.scratch, self.denied, self.read_roots = scratch, denied, read_roots


def _run_notebook(shared: _Context, student: str, spec: Assignment, cells: list[str]
                  ) -> NotebookResult:
    from mha_course.checks import EXERCISES

    options = shared.options
    started = time.monotonic()
    workdir = shared.scratch / "work" / student / spec.stem
    shutil.copytree(shared.scratch / "copies" / student, workdir)
    limits = {"memory_mb": options.memory_mb, "cpu_seconds": int(options.timeout) + 10,
              "file_mb": 64, "open_files": 512}
    job = {"cells": cells, "workdir": str(workdir), "timeout": options.timeout, "limits": limits,
           "denied": shared.denied, "read_roots": shared.read_roots,
           "exercises": [{"id": ex_id, "cases": shared.references[ex_id][0]}
                         for ex_id, _ in spec.exercises]}
    receive, send = shared.ctx.Pipe(duplex=False)
    from mha_course.grading.worker import run_job

    process = shared.ctx.Process(target=run_job, args=(job, send), daemon=True)
    process.start()
    send.close()
    # The clock starts when the process says it is ready (confined, before the first cell): the
    # time it waited for a free core or for the fork server is not the student's.
    deadline = started + max(60.0, options.timeout) + _GRACE_SECONDS
    messages, timed_out, protocol_error, traffic = [], False, None, 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        try:
            if not receive.poll(min(remaining, 1.0)):
                if not process.is_alive() and not receive.poll(0):
                    break
                continue
            raw = receive.recv_bytes(codec.MAX_MESSAGE_BYTES)
        except EOFError:
            break  # the process ended
        except OSError as error:  # more than the grader accepts, or a broken pipe
            protocol_error = f"the notebook's process sent an unreadable message ({error})"
            break
        traffic += len(raw)
        if traffic > _MAX_TRAFFIC_BYTES or len(messages) >= _MAX_MESSAGES:
            protocol_error = "the notebook's process sent far more messages than a notebook needs"
            break
        try:
            message = codec.decode(raw)
            if not isinstance(message, dict):
                raise codec.CodecError("a message must be an object")
        except codec.CodecError as error:
            protocol_error = f"the notebook's process sent a malformed message ({error})"
            break
        messages.append(message)
        if message.get("kind") == "start" and len(messages) == 1:
            deadline = time.monotonic() + options.timeout + _GRACE_SECONDS
        if message.get("kind") == "done":
            break
    if process.is_alive():
        process.kill()
    process.join(10)
    receive.close()
    result = _score(spec, cells, messages, timed_out, process.exitcode, protocol_error,
                    shared, EXERCISES)
    result.seconds = time.monotonic() - started
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def _score(spec: Assignment, cells: list[str], messages: list[dict], timed_out: bool,
           exitcode: int | None, protocol_error: str | None, shared: _Context,
           registry) -> NotebookResult:
    options = shared.options
    outputs: dict[str, dict] = {}
    notes: list[str] = []
    where = "starting"
    done, cpu_seconds = False, 0.0
    for m in messages:
        kind = m.get("kind")
        if kind == "cell" and isinstance(m.get("index"), int) and 0 <= m["index"] < len(cells):
            where = f"running {_cell_label(cells, m['index'])}"
        elif kind == "cells":
            for e in (m.get("errors") or [])[:10]:
                if isinstance(e, dict) and isinstance(e.get("cell"), int) \
                        and 0 <= e["cell"] < len(cells):
                    notes.append(f"{_cell_label(cells, e['cell'])} raised {e.get('error')}")
            stopped = m.get("stopped")
            if isinstance(stopped, dict) and isinstance(stopped.get("cell"), int) \
                    and 0 <= stopped["cell"] < len(cells):
                notes.append(f"{_cell_label(cells, stopped['cell'])} ran past its share of the "
                             f"time limit and was stopped; the cells after it did not run")
            where = "running the hidden checks"
        elif kind == "exercise" and isinstance(m.get("id"), str):
            outputs.setdefault(m["id"], m)
            where = f"running the hidden checks of {m['id']}"
        elif kind == "done":
            done = True
            cpu = m.get("cpu_seconds")
            cpu_seconds = float(cpu) if isinstance(cpu, (int, float)) and cpu >= 0 else 0.0
            blocked = m.get("blocked") or []
            notes += [f"blocked by the grader: {b}" for b in blocked[:20] if isinstance(b, str)]
        elif kind == "fatal":
            notes.append(f"the grader's worker failed: {m.get('error')}")

    status, fate = "graded", None
    if protocol_error:
        status, fate = "crashed", protocol_error
    elif timed_out:
        status = "timeout"
        fate = (f"the notebook ran past the time limit of {options.timeout:g} s per notebook "
                f"(an endless loop?) and was stopped while {where}")
    elif not done:
        if exitcode is not None and exitcode < 0:
            name = _signal_name(-exitcode)
            status = "crashed"
            fate = {"SIGXCPU": f"the notebook used more than its CPU time while {where}",
                    "SIGKILL": f"the notebook's process was killed (out of memory?) while {where}",
                    }.get(name, f"the notebook's process crashed ({name}) while {where}")
        else:
            status = "exited"
            fate = (f"the notebook's process exited (code {exitcode}) while {where}: "
                    f"os._exit() or a crash ends the notebook")
    if fate:
        notes.insert(0, fate)

    results = []
    for ex_id, points in spec.exercises:
        exercise = registry[ex_id]
        cases, expected = shared.references[ex_id]
        reason = _exercise_reason(exercise, cases, expected, outputs.get(ex_id), fate)
        results.append(ExerciseResult(ex_id, exercise.title, 0.0 if reason else points, points,
                                      reason))
    return NotebookResult(spec.name, status, results, notes, cpu_seconds=cpu_seconds)


def _exercise_reason(exercise, cases, expected, message, fate) -> str | None:
    if message is None:
        return f"not graded: {fate}" if fate else "not graded: no output came back"
    if message.get("missing"):
        names = ", ".join(str(n) for n in message["missing"])
        return f"{names} is not defined (did its cell run without an error?)"
    if message.get("error"):
        return f"could not be graded: {message['error']}"
    outputs = message.get("outputs")
    if not isinstance(outputs, list):
        return "could not be graded: malformed outputs"
    for case, reference, out in zip(cases, expected, outputs):
        if not isinstance(out, dict):
            return "could not be graded: malformed outputs"
        if "error" in out:
            error = str(out["error"])
            if error.startswith("NotImplementedError"):
                return "not attempted: the stub still raises NotImplementedError"
            if error == "GradingTimeout":
                return f"the hidden checks ran past the time limit (on {case['about']})"
            return f"your function raised {error} (on {case['about']})"
        problem = exercise.judge(case, out.get("ok"), reference)
        if problem:
            return f"{problem} (on {case['about']})"
    if len(outputs) < len(cases):
        return f"not every hidden case ran: {fate}" if fate else "not every hidden case ran"
    return None


# ----------------------------------------------------------------------------------------------


def _hidden_references(assignment: list[Assignment], seed: int) -> dict:
    from mha_course.checks import EXERCISES

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
    students = _students(submissions, assignment)
    for path, what in ((out, "--out"), (feedback, "the feedback folder")):
        if path == submissions or submissions in path.parents:
            raise ValueError(f"{what} ({path}) must not be inside SUBMISSIONS ({submissions})")

    ctx = _fork_server_context()  # it imports the libraries while the references are computed
    references = _hidden_references(assignment, options.seed)
    scratch = Path(tempfile.mkdtemp(prefix="mha-grade-", dir=options.scratch)).resolve()
    try:
        copy_notes, sources = {}, {}
        for student in students:
            copy_notes[student] = _copy_regular_files(submissions / student,
                                                      scratch / "copies" / student)
            for spec in assignment:  # read before any student code runs
                sources[student, spec.name] = _read_notebook(scratch / "copies" / student / spec.name)
        denied = [str(submissions), str(scratch)] + [str(p) for p in (out, feedback) if p.exists()]
        read_roots = sandbox.readable_roots(denied) if sandbox.landlock_abi() else None
        _wait_for_fork_server(ctx)
        server_ready = time.monotonic()
        shared = _Context(options, references, ctx, scratch, denied, read_roots)
        results = _run_all(shared, students, assignment, sources)
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


def _run_all(shared: _Context, students, assignment, sources) -> dict:
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
    bar = _progress(len(jobs), shared.options.progress)
    with concurrent.futures.ThreadPoolExecutor(max_workers=shared.options.jobs) as pool:
        futures = {pool.submit(_run_notebook, shared, s, spec, cells): (s, spec)
                   for s, spec, cells in jobs}
        for future in concurrent.futures.as_completed(futures):
            student, spec = futures[future]
            results[student, spec.name] = future.result()
            bar.update(1)
    bar.close()
    return results


def _title(ex_id: str) -> str:
    from mha_course.checks import EXERCISES

    return EXERCISES[ex_id].title


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

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

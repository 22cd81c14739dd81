"""Scoring one notebook: from the messages its process sent to a `NotebookResult`.

The student's process sends outputs, never a verdict: `score` reads the messages (which cell ran
last, the cells' errors, each exercise's outputs, whether the process said it was done), names the
notebook's fate (timeout, crash, exit) in words, and judges each exercise's outputs against the
references with `Exercise.judge`. An exercise earns its points only if every hidden case passed.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from mha_course.grading.submissions import Assignment

__all__ = ["ExerciseResult", "NotebookResult", "StudentResult", "score", "exercise_reason"]


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
    status: str  # graded, missing, invalid, timeout, memory, crashed, exited
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


def _cell_label(cells: list[str], index: int) -> str:
    first = next((line.strip() for line in cells[index].splitlines() if line.strip()), "")
    first = first if len(first) <= 60 else first[:57] + "..."
    return f"code cell {index + 1} (`{first}`)"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"



def score(spec: Assignment, cells: list[str], messages: list[dict], timed_out: bool,
          exitcode: int | None, protocol_error: str | None, references: dict, timeout: float,
          registry, memory_mb: int | None = None) -> NotebookResult:
    """The notebook's result from its process's messages and how it ended (timed out, exit code,
    a protocol error); references: exercise id -> (hidden cases, reference outputs); timeout: the
    limit per notebook, in seconds; registry: exercise id -> `Exercise`; memory_mb: the memory
    limit, for the feedback."""
    outputs: dict[str, dict] = {}
    notes: list[str] = []
    where = "starting"
    done, cpu_seconds = False, 0.0
    out_of_memory = None  # where the process first ran out of memory, as the process reported it
    for m in messages:
        kind = m.get("kind")
        if kind == "cell" and isinstance(m.get("index"), int) and 0 <= m["index"] < len(cells):
            where = f"running {_cell_label(cells, m['index'])}"
        elif kind == "memory" and out_of_memory is None:
            cell, exercise = m.get("cell"), m.get("exercise")
            if isinstance(cell, int) and 0 <= cell < len(cells):
                out_of_memory = f"running {_cell_label(cells, cell)}"
            elif isinstance(exercise, str) and exercise in references:
                out_of_memory = f"running the hidden checks of {exercise}"
            else:
                out_of_memory = where
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
        fate = (f"the notebook ran past the time limit of {timeout:g} s per notebook "
                f"(an endless loop?) and was stopped while {where}")
    elif not done and out_of_memory is not None:
        # the process died after it ran out of memory: that is the cause, whatever ended it
        status = "memory"
        limit = f" (limit {memory_mb} MiB)" if memory_mb else ""
        how = (f"was then killed ({_signal_name(-exitcode)})"
               if exitcode is not None and exitcode < 0 else f"then ended (code {exitcode})")
        fate = (f"the notebook ran out of memory{limit} while {out_of_memory}; its process {how} "
                f"while {where}")
    elif not done:
        limit = f" of {memory_mb} MiB" if memory_mb else ""
        if exitcode is not None and exitcode < 0:
            name = _signal_name(-exitcode)
            status = "crashed"
            fate = {"SIGXCPU": f"the notebook used more than its CPU time while {where}",
                    "SIGKILL": f"the notebook's process was killed (SIGKILL: most likely the "
                               f"system's out-of-memory killer, the machine's memory having run "
                               f"out before the grader's limit{limit}) while {where}",
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
        cases, expected = references[ex_id]
        reason = exercise_reason(exercise, cases, expected, outputs.get(ex_id), fate)
        results.append(ExerciseResult(ex_id, exercise.title, 0.0 if reason else points, points,
                                      reason))
    return NotebookResult(spec.name, status, results, notes, cpu_seconds=cpu_seconds)


def exercise_reason(exercise, cases, expected, message, fate) -> str | None:
    """None when the exercise's message shows every hidden case right, else why not (for the
    student's feedback); fate: what ended the notebook early, or None."""
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


"""What the grader writes: gradebook.csv, feedback/<student>.md and a summary, each atomically.

The gradebook has one row per student: `student`, one column per exercise notebook (its stem, the
points earned), `total` and `max_points`. Files are written to a temporary name in the same folder
and renamed into place, so a reader never sees half a gradebook, and an interrupted run leaves the
previous one intact. Feedback and gradebook contain no timings: grading the same submissions again
writes the same bytes. Timings go to the summary.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic", "write_outputs", "feedback_markdown", "format_summary", "fmt_points"]


def fmt_points(points: float) -> str:
    return str(int(points)) if float(points).is_integer() else f"{points:.2f}".rstrip("0")


def write_atomic(path: Path, text: str) -> None:
    """Write text to path through a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def gradebook_csv(results, assignment) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *(a.stem for a in assignment), "total", "max_points"])
    for r in results:
        writer.writerow([r.student, *(fmt_points(nb.points) for nb in r.notebooks),
                         fmt_points(r.total), fmt_points(r.max_points)])
    return buffer.getvalue()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def feedback_markdown(result) -> str:
    lines = [f"# Feedback for {result.student}", "",
             f"**Total: {fmt_points(result.total)} / {fmt_points(result.max_points)} points.** "
             "Each exercise was run on hidden inputs; an exercise gets its points when every "
             "hidden case is right.", ""]
    for nb in result.notebooks:
        lines += [f"## {nb.name}: {fmt_points(nb.points)} / {fmt_points(nb.max_points)}", "",
                  "| exercise | points | result |", "|---|---|---|"]
        for e in nb.exercises:
            verdict = "passed the hidden checks" if e.reason is None else e.reason
            lines.append(f"| {_cell(e.title)} | {fmt_points(e.points)} / "
                         f"{fmt_points(e.max_points)} | {_cell(verdict)} |")
        if nb.notes:
            lines += ["", "Notes:"] + [f"- {_cell(n)}" for n in nb.notes]
        lines.append("")
    return "\n".join(lines)


def write_outputs(results, assignment, out: Path, feedback: Path, summary: dict) -> None:
    for r in results:
        write_atomic(feedback / f"{r.student}.md", feedback_markdown(r))
    write_atomic(out.with_name(out.stem + ".summary.json"), json.dumps(summary, indent=1) + "\n")
    write_atomic(out, gradebook_csv(results, assignment))  # last: its presence means a full run


def format_summary(run) -> str:
    s = run.summary
    seconds = s["seconds"]
    problems = ", ".join(f"{n} {k}" for k, n in sorted(s["statuses"].items()) if k != "graded")
    return "\n".join([
        f"graded {s['students']} students x {s['notebooks_per_student']} notebooks "
        f"({s['notebooks_run']} run) in {seconds['total']:.1f} s with {s['jobs']} job(s): "
        f"setup {seconds['setup']:.1f} s, notebooks {seconds['notebooks']:.1f} s "
        f"(mean {seconds['mean_per_notebook']:.2f} s, "
        f"max {seconds['max_per_notebook']:.2f} s each; "
        f"{seconds['notebook_cpu']:.1f} CPU seconds in the notebooks' processes)",
        f"mean total {s['mean_total']:.1f} / {fmt_points(s['max_points'])}; full marks: "
        f"{s['full_marks']}, zero: {s['zero']}; not graded normally: {problems or 'none'}; "
        f"blocked operations: {s['blocked']}",
        f"sandbox: {s['sandbox']}, {s['timeout_s']:g} s and {s['memory_mb']} MiB per notebook",
        f"gradebook: {run.gradebook}   feedback: {run.feedback}/",
    ])

"""How long does grading a class take? A synthetic class, graded by the real command.

    .venv/bin/python bench/grading.py                  # 100 students, --jobs 2
    .venv/bin/python bench/grading.py --students 20 --jobs 2 --loops 1

The class is made from the course's own notebooks: most students hand in the solutions, some the
untouched exercises, some a solution with one wrong line (each costs a known exercise), a few
hostile ones (a crash, an exception, invalid JSON, a missing notebook, os._exit), and `--loops`
students whose notebook never ends (each costs up to the time limit). The script runs
`python -m mha_course grade` on it, checks every student's total against what it should be, and
prints the measured time, the time per notebook and the projection for a class of 100. The goal is
100 students x every exercise notebook in at most 10 minutes on this 2-core machine.
Other processes slow it down: the load average before and after is printed with the result.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 600

# one wrong line each: (notebook, grade_id of the exercise it breaks, line, replacement)
MUTATIONS = [
    ("ex01_softmax_and_sdpa", "sdpa", "scores = Q @ K.swapaxes(-1, -2) / np.sqrt(d_k)",
     "scores = Q @ K.swapaxes(-1, -2)"),
    ("ex01_softmax_and_sdpa", "softmax", "return e / np.where(total > 0, total, 1.0)",
     "return e / total"),
    ("ex02_multi_head", "split_merge", "X.reshape(*batch, n, n_heads, d_model // n_heads)",
     "X.reshape(*batch, n_heads, n, d_model // n_heads)"),
    ("ex02_multi_head", "mha_loop", "        out = out + p.b_O\n    weights = np.stack",
     "        out = out\n    weights = np.stack"),
    ("ex03_backward", "sdpa_backward", "dS = softmax_backward(A, dA) / np.sqrt(Q.shape[-1])",
     "dS = softmax_backward(A, dA)"),
    ("ex04_head_metrics", "entropy", "        H = -(A * np.log(np.clip(A, 1e-12, None)))",
     "        H = -(A * np.log2(np.clip(A, 1e-12, None)))"),
    ("ex04_head_metrics", "dependency_accuracy",
     "scores = np.where(np.asarray(s.is_delimiter), -np.inf, A)  #", "scores = A  #"),
    ("ex05_probing_and_pruning", "probe", "control[probed] = type_label[type_of_token]",
     "control[probed] = np.random.default_rng(seed).choice(classes, size=probed.sum())"),
    ("ex05_probing_and_pruning", "ablation", "                W_O[rows] = saved\n", ""),
]

# hostile: (notebook, what it does to that notebook, points that notebook keeps)
HOSTILE = [
    ("ex01_softmax_and_sdpa", "crash", 0),
    ("ex01_softmax_and_sdpa", "exception", 2),
    ("ex02_multi_head", "os_exit", 0),
    ("ex03_backward", "invalid_json", 0),
    ("ex04_head_metrics", "missing", 0),
]


def _replace_in_code(source: str, old: str, new: str) -> str:
    """Replace `old` once in the code of a solution cell, never in its ### lines (the hint)."""
    lines = source.split("\n")
    masked = "\n".join("\0" * len(line) if line.lstrip().startswith("###") else line
                        for line in lines)  # same length, so positions carry over
    at = masked.index(old)  # ValueError when the code does not contain it
    return source[:at] + new + source[at + len(old):]


def _solution_cell(nb, grade_id):
    return next(c for c in nb.cells
                if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                == f"{grade_id}-solution")


def make_class(folder: Path, students: int, loops: int) -> dict[str, float]:
    """Write folder/<student>/<notebook>.ipynb; return every student's expected total."""
    import nbformat

    from mha_course.grading.authoring import graded_cells

    solutions = {p.stem: nbformat.read(p, as_version=4)
                 for p in sorted((ROOT / "solutions").glob("*.ipynb"))}
    points = {g.grade_id: g.points for nb in solutions.values() for g in graded_cells(nb)}
    notebook_points = {stem: sum(g.points for g in graded_cells(nb))
                       for stem, nb in solutions.items()}
    full = sum(points.values())
    expected = {}
    for k in range(students):
        student = f"student{k:03d}"
        notebooks = {stem: nbformat.from_dict(json.loads(json.dumps(nb)))
                     for stem, nb in solutions.items()}
        raw: dict[str, str | None] = {}
        total = full
        kind = k % 20  # per 20 students: 12 right, 3 blank, 4 one wrong line, 1 hostile
        if k < loops:
            stem = "ex01_softmax_and_sdpa"
            notebooks[stem].cells.append(nbformat.v4.new_code_cell(
                "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                "while True:\n    pass"))
            total -= notebook_points[stem]
        elif kind in (12, 13, 14):
            for stem in notebooks:
                notebooks[stem] = nbformat.read(ROOT / "exercises" / f"{stem}.ipynb", as_version=4)
            total = 0
        elif kind in (15, 16, 17, 18):
            stem, grade_id, old, new = MUTATIONS[(k // 20 * 4 + kind - 15) % len(MUTATIONS)]
            cell = _solution_cell(notebooks[stem], grade_id)
            cell.source = _replace_in_code(cell.source, old, new)
            total -= points[grade_id]
        elif kind == 19:
            stem, what, kept = HOSTILE[(k // 20) % len(HOSTILE)]
            if what == "crash":
                notebooks[stem].cells.append(nbformat.v4.new_code_cell(
                    "import faulthandler\nfaulthandler._sigsegv()"))
            elif what == "exception":
                cell = _solution_cell(notebooks[stem], "sdpa")
                cell.source = cell.source.replace("d_k = Q.shape[-1]", "raise RuntimeError('no')")
            elif what == "os_exit":
                notebooks[stem].cells.append(nbformat.v4.new_code_cell("import os\nos._exit(1)"))
            elif what == "invalid_json":
                raw[stem] = '{"cells": [ oops'
            elif what == "missing":
                raw[stem] = None
            total -= notebook_points[stem] - kept
        (folder / student).mkdir(parents=True)
        for stem, nb in notebooks.items():
            path = folder / student / f"{stem}.ipynb"
            if stem not in raw:
                nbformat.write(nb, path)
            elif raw[stem] is not None:
                path.write_text(raw[stem])
        expected[student] = total
    return expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--loops", type=int, default=0, help="students whose notebook never ends")
    parser.add_argument("--keep", type=Path, default=None, help="keep the class and gradebook here")
    args = parser.parse_args()
    workdir = (Path(tempfile.mkdtemp(prefix="mha-bench-grading-")) if args.keep is None
               else args.keep)
    try:
        t = time.perf_counter()
        expected = make_class(workdir / "submissions", args.students, args.loops)
        print(f"class of {args.students} students written in {time.perf_counter() - t:.1f} s "
              f"({args.loops} with an endless loop)")
        load_before = os.getloadavg()
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "mha_course", "grade",
                                 str(workdir / "submissions"), "--out",
                                 str(workdir / "out" / "gradebook.csv"), "--jobs", str(args.jobs),
                                 "--timeout", str(args.timeout), "--quiet"],
                                capture_output=True, text=True)
        seconds = time.perf_counter() - start
        load_after = os.getloadavg()
        if result.returncode != 0:
            print(result.stdout, result.stderr, sep="\n")
            return result.returncode
        print(result.stdout.strip())
        with (workdir / "out" / "gradebook.csv").open(newline="") as f:
            got = {row["student"]: float(row["total"]) for row in csv.DictReader(f)}
        wrong = {s: (got.get(s), e) for s, e in expected.items() if got.get(s) != e}
        summary = json.loads((workdir / "out" / "gradebook.summary.json").read_text())
        notebooks = args.students * summary["notebooks_per_student"]
        projection = seconds * 100 / args.students
        cpu = summary["seconds"]["notebook_cpu"]
        print(f"\nmeasured: {seconds:.1f} s for {args.students} students x "
              f"{summary['notebooks_per_student']} notebooks "
              f"({notebooks / seconds:.2f} notebooks/s, "
              f"{seconds / notebooks:.2f} s per notebook) with --jobs {args.jobs}, "
              f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, "
              f"{load_after[0]:.2f} after")
        print(f"CPU time in the notebooks' processes: {cpu:.1f} s ({cpu / notebooks:.2f} s per "
              f"notebook); with {args.jobs} idle cores that alone would take "
              f"{cpu / args.jobs * 100 / args.students:.0f} s for 100 students")
        print(f"projection for 100 students from the measured time: {projection:.0f} s "
              f"(goal <= {GOAL_SECONDS} s: {'met' if projection <= GOAL_SECONDS else 'missed'})")
        print(f"totals as expected for {len(expected) - len(wrong)} of {len(expected)} students"
              + (f"; differ: {wrong}" if wrong else ""))
        return 0 if not wrong else 1
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

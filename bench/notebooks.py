"""What each notebook costs: run time, the kernel's peak memory, and an estimate of the minutes a
student needs to *work* it (read, predict, run, answer).

    .venv/bin/python bench/notebooks.py                 # every notebook in notebooks/
    .venv/bin/python bench/notebooks.py 04 07           # some of them

Run time and peak memory are measured: each notebook runs top to bottom in a fresh kernel
(nbclient), and an extra cell reads the kernel's high-water mark of resident memory (VmHWM in
/proc/self/status, so Linux only). The load average before and after is printed: on a shared
machine, run times grow with the load.

Working minutes are an ESTIMATE, not a measurement, from the notebook's content:
    prose words / 120 words per minute (technical reading)
  + code lines a student reads * 5 s
  + run time
  + 2 min per `predict` cell, 1.5 min per question in a `questions` cell, 1 min per figure
The second estimate adds the minutes of the exercises the notebook links where it teaches them
("exercise *name* (★★, 15 min)": each exercise states its own; one linked from two notebooks
counts in the first). That is the notebook's
"Time:" in its opening and the README's learning path, rounded to 5 minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
READING_WPM = 120
SECONDS_PER_CODE_LINE = 5
MINUTES_PER_PREDICT = 2.0
MINUTES_PER_QUESTION = 1.5
MINUTES_PER_FIGURE = 1.0

PEAK_RSS = ("print([l.split()[1] for l in open('/proc/self/status') "
            "if l.startswith('VmHWM')][0])")


def run(path: Path) -> tuple[float, float, int]:
    """(seconds, peak resident MiB of the kernel, number of figures shown)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, index)
        seconds = time.perf_counter() - start
        probe = nbformat.v4.new_code_cell(PEAK_RSS)
        nb.cells.append(probe)
        client.execute_cell(probe, len(nb.cells) - 1)
    kib = int("".join(o.get("text", "") for o in probe.outputs).strip())
    figures = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if "image/png" in o.get("data", {}))
    return seconds, kib / 1024, figures


def working_minutes(path: Path, seconds: float, figures: int) -> float:
    """The estimate of the module docstring."""
    nb = nbformat.read(path, as_version=4)
    words = sum(len(re.findall(r"\w+", c.source)) for c in nb.cells if c.cell_type == "markdown")
    code_lines = sum(len([line for line in c.source.splitlines() if line.strip()])
                     for c in nb.cells if c.cell_type == "code")
    tagged = ["predict" in c.get("metadata", {}).get("tags", []) for c in nb.cells]
    predicts = sum(t and not (k and tagged[k - 1]) for k, t in enumerate(tagged))  # a run = one
    questions = sum(c.source.count("<details>") for c in nb.cells
                    if "questions" in c.get("metadata", {}).get("tags", []))
    return (words / READING_WPM + code_lines * SECONDS_PER_CODE_LINE / 60 + seconds / 60
            + predicts * MINUTES_PER_PREDICT + questions * MINUTES_PER_QUESTION
            + figures * MINUTES_PER_FIGURE)


EXERCISE = re.compile(r"exercises?\s+\*([^*]+)\*[^(\n]*\((★{1,3}),\s*(\d+)\s*min")


def exercise_minutes(path: Path) -> dict[str, int]:
    """{exercise name: its stated minutes} for the exercises the notebook links."""
    nb = nbformat.read(path, as_version=4)
    found = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for name, _, minutes in EXERCISE.findall(cell.source):
                found[name.strip()] = int(minutes)
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("which", nargs="*", help="notebook number prefixes, e.g. 01 04")
    args = parser.parse_args(argv)
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.which:
        paths = [p for p in paths if any(p.name.startswith(w) for w in args.which)]
        if not paths:
            raise SystemExit(f"no notebook starts with {args.which}")
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPUs, "
          f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"{'notebook':<42}{'run s':>7}{'peak MiB':>10}{'figures':>8}{'work min':>10}"
          f"{'+ exercises':>13}")
    total = total_with = 0.0
    counted: set[str] = set()  # an exercise linked from two notebooks counts in the first
    for path in paths:
        seconds, mib, figures = run(path)
        minutes = working_minutes(path, seconds, figures)
        exercises = {k: v for k, v in exercise_minutes(path).items() if k not in counted}
        counted |= set(exercises)
        with_exercises = minutes + sum(exercises.values())
        total, total_with = total + minutes, total_with + with_exercises
        print(f"{path.name:<42}{seconds:7.1f}{mib:10.0f}{figures:8d}{minutes:10.0f}"
              f"{with_exercises:13.0f}")
    print(f"total working minutes (estimate): {total:.0f}, with the exercises {total_with:.0f}; "
          f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

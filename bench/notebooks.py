"""What each notebook costs: run time, the kernel's peak memory, and an estimate of the minutes a
student needs to *work* it (read, predict, run, answer).

    .venv/bin/python bench/notebooks.py                 # every notebook in notebooks/
    .venv/bin/python bench/notebooks.py 04 07           # some of them
    .venv/bin/python bench/notebooks.py --stored        # no run: the stored outputs and timings
    .venv/bin/python bench/notebooks.py --stored --write  # and write the minutes into the
                                                        # notebooks' openings and the README

Run time and peak memory are measured: each notebook runs top to bottom in a fresh kernel
(nbclient), and an extra cell reads the kernel's high-water mark of resident memory (VmHWM in
/proc/self/status, so Linux only). The load average before and after is printed: on a shared
machine, run times grow with the load.

With --stored nothing runs: the run time is the sum of the cells' recorded execution times
(nbclient stores them in each cell's metadata when the notebook is executed) and the figures are
the stored ones; peak memory is not known then.

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
from datetime import datetime
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


def stored(path: Path) -> tuple[float, float, int]:
    """(seconds, NaN, figures) from the notebook as saved: the cells' recorded execution times."""
    nb = nbformat.read(path, as_version=4)
    seconds = 0.0
    for cell in nb.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            start, end = (datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                          for k in ("iopub.execute_input", "shell.execute_reply"))
            seconds += (end - start).total_seconds()
    figures = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if "image/png" in o.get("data", {}))
    return seconds, float("nan"), figures


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


EXERCISE = re.compile(r"\*([^*]+)\*\s*\((★{1,3}),\s*(\d+)\s*min")  # *name* (★★, 15 min)


def exercise_minutes(path: Path) -> dict[str, int]:
    """{exercise name: its stated minutes} for the exercises the notebook links."""
    nb = nbformat.read(path, as_version=4)
    found = {}
    for cell in nb.cells:
        if cell.cell_type == "markdown" and "exercises/ex" in cell.source:  # a cell that links one
            for name, _, minutes in EXERCISE.findall(cell.source):
                found[name.strip()] = int(minutes)
    return found


TIME = re.compile(r"\*\*Time:\*\* about .*?\.(?=\s|$)", re.S)
README = ROOT / "README.md"


def round5(minutes: float) -> int:
    return max(5, int(5 * round(minutes / 5)))


def write_minutes(minutes: dict[Path, tuple[int, int]]) -> None:
    """Each notebook's "**Time:** about N minutes, M more for the exercises linked in place." and
    its README learning-path row's last two cells; then the README's totals."""
    readme = README.read_text(encoding="utf-8")
    for path, (own, exercises) in minutes.items():
        nb = nbformat.read(path, as_version=4)
        more = f", {exercises} more for the exercises linked in place" if exercises else ""
        text, n = TIME.subn(f"**Time:** about {own} minutes{more}.", nb.cells[0].source, count=1)
        if n != 1:
            raise SystemExit(f"{path.name}: no '**Time:** about ...' sentence in the opening")
        if text != nb.cells[0].source:
            nb.cells[0].source = text
            nbformat.write(nb, path)
        row = re.compile(rf"^(\|[^\n]*\(notebooks/{re.escape(path.name)}\)[^\n]*?)"
                         rf"\|\s*\d+\s*\|\s*\d+\s*\|\s*$", re.M)
        readme, n = row.subn(lambda m: f"{m.group(1)}| {own} | {exercises} |", readme)
        if n != 1:
            raise SystemExit(f"README: no learning-path row for {path.name} ending | N | M |")
    own = sum(a for a, _ in minutes.values())
    both = own + sum(b for _, b in minutes.values())
    readme, n = re.subn(r"in all about \d+ minutes, \d+ minutes with the exercises",
                        f"in all about {own} minutes, {both} minutes with the exercises", readme)
    if n != 1:
        raise SystemExit("README: no 'in all about N minutes, M minutes with the exercises'")
    README.write_text(readme, encoding="utf-8")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("which", nargs="*", help="notebook number prefixes, e.g. 01 04")
    parser.add_argument("--stored", action="store_true",
                        help="run nothing: use the stored outputs and recorded cell times")
    parser.add_argument("--write", action="store_true",
                        help="write the minutes (rounded to 5) into the notebooks and the README")
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
    rounded: dict[Path, tuple[int, int]] = {}
    for path in paths:
        seconds, mib, figures = stored(path) if args.stored else run(path)
        minutes = working_minutes(path, seconds, figures)
        exercises = {k: v for k, v in exercise_minutes(path).items() if k not in counted}
        counted |= set(exercises)
        with_exercises = minutes + sum(exercises.values())
        total, total_with = total + minutes, total_with + with_exercises
        print(f"{path.name:<42}{seconds:7.1f}{mib:10.0f}{figures:8d}{minutes:10.0f}"
              f"{with_exercises:13.0f}")
        rounded[path] = (round5(minutes), sum(exercises.values()))
    print(f"total working minutes (estimate): {total:.0f}, with the exercises {total_with:.0f}; "
          f"load average after: {os.getloadavg()[0]:.1f}")
    if args.write:
        write_minutes(rounded)
        print(f"wrote the minutes into {len(rounded)} notebooks and {README.name}")


if __name__ == "__main__":
    main()

"""How long does the Gradescope autograder take per submission? Its own entry point, as Gradescope
runs it.

    .venv/bin/python bench/gradescope.py                 # 100 submissions, one after another
    .venv/bin/python bench/gradescope.py --students 10

Builds the autograder zip (`python -m mha_course gradescope`, every exercise notebook), lays out a
folder like /autograder per submission (AUTOGRADER_ROOT: source/ from the zip, submission/,
results/), alternates perfect (the solutions) and blank (the exercises as handed out) submissions,
runs `run_autograder` for each, one after another, checks each score (full marks, 0), and prints
the time per submission and the total. Each run starts the grader afresh (a fork server that
imports the course), as each Gradescope container does. Gradescope runs submissions in separate
containers, in parallel: a class's wall-clock time there is about one submission's time times the
number of waves. The load average before and after is printed: other processes slow it down.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lay_out(bundle: Path, root: Path, notebooks: list[Path]) -> None:
    with zipfile.ZipFile(bundle) as z:
        z.extractall(root / "source")
        for info in z.infolist():
            os.chmod(root / "source" / info.filename, (info.external_attr >> 16) & 0o777)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    (root / "results").mkdir()
    for path in notebooks:
        shutil.copy(path, root / "submission" / path.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1, help="notebooks in parallel per submission")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mha-gradescope-bench-") as tmp:
        tmp = Path(tmp)
        bundle = tmp / "autograder.zip"
        subprocess.run([sys.executable, "-m", "mha_course", "gradescope", str(bundle), "--seed",
                        "1", "--jobs", str(args.jobs)], check=True, capture_output=True)
        solutions = sorted((ROOT / "solutions").glob("ex*.ipynb"))
        exercises = sorted((ROOT / "exercises").glob("ex*.ipynb"))
        env = {**os.environ, "AUTOGRADER_PYTHON": sys.executable}
        times, setups, wrong = [], [], []
        started = time.monotonic()
        for i in range(args.students):
            root = tmp / f"s{i:03d}"
            perfect = i % 2 == 0
            lay_out(bundle, root, solutions if perfect else exercises)
            t0 = time.monotonic()
            run = subprocess.run([str(root / "run_autograder")], cwd=root, capture_output=True,
                                 text=True, env={**env, "AUTOGRADER_ROOT": str(root)},
                                 timeout=1800)
            times.append(time.monotonic() - t0)
            split = re.search(r"setup ([0-9.]+) s, notebooks ([0-9.]+) s", run.stdout)
            setups.append(float(split.group(1)) if split else float("nan"))
            results = json.loads((root / "results" / "results.json").read_text())
            full = sum(t["max_score"] for t in results["tests"])
            if results["score"] != (full if perfect else 0) or not full:
                wrong.append((i, results["score"], full))
            shutil.rmtree(root)
            print(f"submission {i + 1}/{args.students} ({'perfect' if perfect else 'blank'}): "
                  f"{times[-1]:.1f} s (grader start {setups[-1]:.1f} s), score "
                  f"{results['score']:g} / {full:g}", flush=True)
        total = time.monotonic() - started
    print(json.dumps({
        "submissions": args.students, "notebooks_each": len(solutions), "jobs": args.jobs,
        "total_s": round(total, 1), "mean_s": round(statistics.mean(times), 1),
        "median_s": round(statistics.median(times), 1), "max_s": round(max(times), 1),
        "mean_grader_start_s": round(statistics.mean(setups), 1),
        "projected_100_one_after_another_s": round(statistics.mean(times) * 100),
        "wrong_scores": wrong, "load_before": [round(x, 1) for x in load_before],
        "load_after": [round(x, 1) for x in os.getloadavg()], "cpus": os.cpu_count()}, indent=1))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

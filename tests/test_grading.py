"""The grader on small synthetic classes: right answers get full marks, stubs get zero, one wrong
line costs exactly its exercise, and hostile notebooks cost only their own points.

Three runs of `python -m mha_course grade` (module-scoped fixtures, --jobs 2):
- the full assignment for a perfect, a blank and a one-wrong-line student;
- ex01 + ex02 only, for one perfect student and one student per hostile behaviour, whose ex01 is
  hostile and whose ex02 is the solution (so each hostile act must stay inside that one notebook);
- a small class graded twice, to check that re-running writes the same files.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mha_course.grading import report, sandbox
from mha_course.grading.scoring import ExerciseResult, NotebookResult, StudentResult

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
EX01, EX02 = "ex01_softmax_and_sdpa.ipynb", "ex02_multi_head.ipynb"
SCALE_LINE = "scores = Q @ K.swapaxes(-1, -2) / np.sqrt(d_k)  # (..., n_q, n_k)"


def run_grader(submissions: Path, out: Path, *extra: str, timeout: int = 600):
    return subprocess.run([sys.executable, "-m", "mha_course", "grade", str(submissions),
                           "--out", str(out), "--jobs", "2", "--quiet", *extra],
                          capture_output=True, text=True, timeout=timeout)


def read_gradebook(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def solution(name: str):
    return nbformat.read(SOLUTIONS / name, as_version=4)


def write(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def with_sdpa(body_edit, extra_cells=(), prepend_cells=()):
    """ex01's solution with the sdpa solution cell edited and cells added at the end / after the
    set-up cell."""
    nb = solution(EX01)
    cell = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                == "sdpa-solution")
    assert SCALE_LINE in cell.source
    cell.source = body_edit(cell.source)
    setup = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                 and "install-check" not in c.metadata.get("tags", []))  # the imports
    for source in reversed(prepend_cells):
        nb.cells.insert(setup + 1, nbformat.v4.new_code_cell(source))
    nb.cells += [nbformat.v4.new_code_cell(source) for source in extra_cells]
    return nb


def inject(statement: str):
    """An sdpa whose first line is `statement` (then the right answer)."""
    return lambda source: source.replace(SCALE_LINE, f"{statement}\n    {SCALE_LINE}")


# ----------------------------------------------------------------------------------------------
# 1. the full assignment: perfect, blank, one wrong line


@pytest.fixture(scope="module")
def full_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    subs = root / "submissions"
    for path in SOLUTIONS.glob("*.ipynb"):
        write(nbformat.read(path, as_version=4), subs / "perfect" / path.name)
        write(nbformat.read(EXERCISES / path.name, as_version=4), subs / "blank" / path.name)
        if path.name != EX01:
            write(nbformat.read(path, as_version=4), subs / "one_wrong" / path.name)
    write(with_sdpa(lambda s: s.replace(SCALE_LINE, "scores = Q @ K.swapaxes(-1, -2)")),
          subs / "one_wrong" / EX01)
    before = tree_digest(subs)
    result = run_grader(subs, root / "out" / "gradebook.csv", "--timeout", "120")
    return root, subs, before, result


def test_full_class_grades(full_class):
    root, subs, before, result = full_class
    assert result.returncode == 0, result.stderr
    book = read_gradebook(root / "out" / "gradebook.csv")
    assert list(book) == ["blank", "one_wrong", "perfect"]
    max_points = book["perfect"]["max_points"]
    assert float(max_points) >= 30
    assert book["perfect"]["total"] == max_points
    assert book["blank"]["total"] == "0"
    assert float(book["one_wrong"]["total"]) == float(max_points) - 3  # sdpa is worth 3
    assert book["one_wrong"]["ex01_softmax_and_sdpa"] == "2"
    columns = ["student", *(p.stem for p in sorted(EXERCISES.glob("*.ipynb"))), "total",
               "max_points"]
    assert list(book["perfect"]) == columns
    assert tree_digest(subs) == before  # the originals are never modified


def test_full_class_feedback(full_class):
    root, *_ = full_class
    feedback = root / "out" / "feedback"
    assert sorted(p.name for p in feedback.iterdir()) == ["blank.md", "one_wrong.md", "perfect.md"]
    wrong = (feedback / "one_wrong.md").read_text()
    assert "you forgot to divide by sqrt(d_k)" in wrong
    assert wrong.count("passed the hidden checks") == (feedback / "perfect.md").read_text().count(
        "passed the hidden checks") - 1
    blank = (feedback / "blank.md").read_text()
    assert "not attempted: the stub still raises NotImplementedError" in blank
    assert "passed the hidden checks" not in blank
    summary = (root / "out" / "gradebook.summary.json").read_text()
    n_notebooks = len(list(SOLUTIONS.glob("*.ipynb")))  # every student hands in every notebook
    assert '"students": 3' in summary and f'"notebooks_run": {3 * n_notebooks}' in summary


# ----------------------------------------------------------------------------------------------
# 2. hostile notebooks, each in ex01 of its own student


HOSTILE = {
    # student: (ex01 notebook or None for missing / raw text, expected ex01 points, reason snippet)
    "crash": (lambda: with_sdpa(lambda s: s, extra_cells=[
        "import faulthandler\nfaulthandler._sigsegv()"]), 0, "crashed (SIGSEGV)"),
    "exception": (lambda: with_sdpa(inject("raise ValueError('the student broke it')")), 2,
                  "ValueError: the student broke it"),
    "loop_cell": (lambda: with_sdpa(lambda s: s, extra_cells=["while True:\n    pass"]), 5,
                  "ran past its share of the time limit"),
    "loop_killed": (lambda: with_sdpa(lambda s: s, extra_cells=[
        "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass"]),
        0, "ran past the time limit"),
    "loop_in_function": (lambda: with_sdpa(inject("while True:\n        pass")), 2,
                         "the hidden checks ran past the time limit"),
    "sys_exit": (lambda: with_sdpa(lambda s: s, prepend_cells=["import sys\nsys.exit(3)"]), 5,
                 "SystemExit"),
    "os_exit": (lambda: with_sdpa(lambda s: s, extra_cells=["import os\nos._exit(0)"]), 0,
                "exited (code 0)"),
    "memory": (lambda: with_sdpa(inject("_hog = [np.ones(10**7) for _ in range(10**4)]")), 2,
               "MemoryError"),
    "memory_cell": (lambda: with_sdpa(lambda s: s, extra_cells=[
        "import numpy as np\nblocks = []\nwhile True:\n    blocks.append(np.ones(10**7))"]), 5,
        "MemoryError"),
    "invalid_json": ("{ this is not a notebook", 0, "not valid JSON"),
    "pickle_on_the_pipe": (lambda: with_sdpa(lambda s: s, extra_cells=[
        "import gc, pickle, multiprocessing.connection as mc\n"
        "pipe = [c for c in gc.get_objects() if isinstance(c, mc.Connection)][0]\n"
        "pipe.send_bytes(pickle.dumps({'kind': 'done'}))"]), 0, "sent a malformed message"),
    "missing": (None, 0, "was not submitted"),
    "checks_and_numpy": (lambda: with_sdpa(
        lambda s: s.replace(SCALE_LINE, "scores = Q @ K.swapaxes(-1, -2)"),
        prepend_cells=["import numpy as np\nimport mha_course.checks as checks\n"
                       "np.allclose = lambda *a, **k: True\n"
                       "np.testing.assert_allclose = lambda *a, **k: None\n"
                       "checks.EXERCISES.clear()\n"
                       "def check_scaled_dot_product_attention(f):\n"
                       "    print('scaled_dot_product_attention: public checks passed')"]),
        2, "you forgot to divide by sqrt(d_k)"),
}


def writes_notebook(subs: Path, out: Path):
    victim = subs / "perfect" / EX01
    return with_sdpa(
        inject(f"open({str(out)!r}, 'w').write('hacked')"),
        extra_cells=[f"import shutil\nshutil.rmtree({str(subs / 'perfect')!r})",
                     f"open({str(victim)!r}, 'w').write('{{}}')",
                     f"stolen = open({str(victim)!r}).read()",
                     "open('my_own_scratch_file.txt', 'w').write('allowed')"])


@pytest.fixture(scope="module")
def hostile_class(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    subs, out = root / "submissions", root / "out" / "gradebook.csv"
    assignment = root / "assignment"
    assignment.mkdir()
    for name in (EX01, EX02):
        shutil.copy(EXERCISES / name, assignment / name)
        write(solution(name), subs / "perfect" / name)
    for student, (make, _, _) in HOSTILE.items():
        write(solution(EX02), subs / student / EX02)
        if isinstance(make, str):
            (subs / student / EX01).write_text(make)
        elif make is not None:
            write(make(), subs / student / EX01)
    write(solution(EX02), subs / "writes" / EX02)
    write(writes_notebook(subs, out), subs / "writes" / EX01)
    out.parent.mkdir(parents=True)
    out.write_text("the previous gradebook\n")
    before = tree_digest(subs)
    result = run_grader(subs, out, "--exercises", str(assignment), "--timeout", "12",
                        "--memory-mb", "512")
    return root, subs, before, result


def test_hostile_notebooks_cost_only_their_own_points(hostile_class):
    root, subs, before, result = hostile_class
    assert result.returncode == 0, result.stderr
    book = read_gradebook(root / "out" / "gradebook.csv")
    assert book["perfect"]["total"] == book["perfect"]["max_points"] == "13"
    for student, (_, points, _) in HOSTILE.items():
        assert book[student]["ex01_softmax_and_sdpa"] == str(points), student
        assert book[student]["ex02_multi_head"] == "8", student  # the other notebook is untouched


@pytest.mark.parametrize("student", sorted(HOSTILE))
def test_hostile_reason_is_in_the_feedback(hostile_class, student):
    root, *_ = hostile_class
    text = (root / "out" / "feedback" / f"{student}.md").read_text()
    assert HOSTILE[student][2] in text, text


def test_redefined_checks_and_patched_numpy_fool_only_the_notebook(hostile_class):
    root, *_ = hostile_class
    text = (root / "out" / "feedback" / "checks_and_numpy.md").read_text()
    assert "| scaled_dot_product_attention | 0 / 3 |" in text
    assert "| softmax | 2 / 2 | passed the hidden checks |" in text


def test_writes_outside_the_working_copy_are_blocked(hostile_class):
    root, subs, before, result = hostile_class
    assert tree_digest(subs) == before  # no submission was changed, deleted or added to
    book = read_gradebook(root / "out" / "gradebook.csv")
    assert book["writes"]["ex01_softmax_and_sdpa"] == "2"  # sdpa wrote first, so it fails
    assert book["perfect"]["total"] == "13"
    text = (root / "out" / "feedback" / "writes.md").read_text()
    assert "PermissionError" in text
    assert f"blocked by the grader: writing {root / 'out' / 'gradebook.csv'}" in text
    assert f"blocked by the grader: reading {subs / 'perfect' / EX01}" in text
    assert "my_own_scratch_file" not in text  # its own working copy is writable


def test_hostile_run_summary(hostile_class):
    root, _, _, result = hostile_class
    assert "15 students x 2 notebooks" in result.stdout
    for status in ("crashed", "exited", "invalid", "missing", "timeout"):
        assert status in result.stdout, result.stdout
    summary = (root / "out" / "gradebook.summary.json").read_text()
    assert '"timeout": 1' in summary and '"missing": 1' in summary


MEMORY_HOG = "import numpy as np\nblocks = []\nwhile True:\n    blocks.append(np.ones(10**6))"
LATER_DEATHS = {"exits_later": "import os\nos._exit(1)",
                "killed_later": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"}


def test_running_out_of_memory_is_named_as_the_cause_of_a_later_death(tmp_path):
    """A cell that fills the memory limit (MemoryError, its blocks kept), then a later cell whose
    process ends (os._exit, a kill as the OOM killer would): the feedback names the memory."""
    subs, assignment = tmp_path / "submissions", tmp_path / "assignment"
    assignment.mkdir()
    shutil.copy(EXERCISES / EX01, assignment / EX01)
    n_cells = sum(c.cell_type == "code" for c in solution(EX01).cells)
    for student, death in LATER_DEATHS.items():
        write(with_sdpa(lambda s: s, extra_cells=[MEMORY_HOG, "x = 1", death]),
              subs / student / EX01)
    write(with_sdpa(lambda s: s, extra_cells=[LATER_DEATHS["killed_later"]]),
          subs / "killed_only" / EX01)
    result = run_grader(subs, tmp_path / "out" / "gradebook.csv", "--exercises", str(assignment),
                        "--timeout", "30", "--memory-mb", "128")
    assert result.returncode == 0, result.stderr
    assert "not graded normally: 1 crashed, 2 memory" in result.stdout, result.stdout
    hog, death_cell = f"code cell {n_cells + 1} (`import numpy as np`)", f"code cell {n_cells + 3}"
    for student, then in (("exits_later", "then ended (code 1)"),
                          ("killed_later", "was then killed (SIGKILL)")):
        text = (tmp_path / "out" / "feedback" / f"{student}.md").read_text()
        assert f"ran out of memory (limit 128 MiB) while running {hog}" in text, text
        assert f"its process {then} while running {death_cell}" in text, text
        assert "os._exit() or a crash" not in text and "out-of-memory killer" not in text, text
        assert read_gradebook(tmp_path / "out" / "gradebook.csv")[student]["total"] == "0"
    # killed without a MemoryError first, as by the OOM killer when the machine's memory runs out
    text = (tmp_path / "out" / "feedback" / "killed_only.md").read_text()
    assert (f"killed (SIGKILL: most likely the system's out-of-memory killer, the machine's memory "
            f"having run out before the grader's limit of 128 MiB) while running code cell "
            f"{n_cells + 1}") in text, text


# ----------------------------------------------------------------------------------------------
# 3. re-running gives the same files


def test_regrading_is_idempotent(tmp_path):
    subs, assignment = tmp_path / "submissions", tmp_path / "assignment"
    assignment.mkdir()
    shutil.copy(EXERCISES / EX01, assignment / EX01)
    write(solution(EX01), subs / "perfect" / EX01)
    write(nbformat.read(EXERCISES / EX01, as_version=4), subs / "blank" / EX01)
    write(HOSTILE["crash"][0](), subs / "crash" / EX01)
    write(HOSTILE["exception"][0](), subs / "exception" / EX01)
    (subs / "invalid").mkdir()
    (subs / "invalid" / EX01).write_text("{")
    outputs = []
    for run in range(2):
        out = tmp_path / f"run{run}" / "gradebook.csv"
        result = run_grader(subs, out, "--exercises", str(assignment), "--timeout", "30")
        assert result.returncode == 0, result.stderr
        outputs.append({p.relative_to(out.parent): p.read_bytes()
                        for p in sorted(out.parent.rglob("*")) if p.suffix in (".csv", ".md")})
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 6  # the gradebook and five feedback files
    # a third run into the same place replaces the gradebook atomically: no temporary file left
    result = run_grader(subs, tmp_path / "run0" / "gradebook.csv", "--exercises", str(assignment))
    assert result.returncode == 0, result.stderr
    assert not [p for p in (tmp_path / "run0").rglob("*.tmp")]


# ----------------------------------------------------------------------------------------------
# 4. bad input


def test_missing_submissions_folder_is_a_clear_error(tmp_path):
    result = run_grader(tmp_path / "nowhere", tmp_path / "gradebook.csv")
    assert result.returncode == 2
    assert "SUBMISSIONS folder not found" in result.stderr
    assert str(tmp_path / "nowhere") in result.stderr
    assert not (tmp_path / "gradebook.csv").exists()


def test_empty_submissions_and_bad_options_are_clear_errors(tmp_path):
    (tmp_path / "subs").mkdir()
    result = run_grader(tmp_path / "subs", tmp_path / "gradebook.csv")
    assert result.returncode == 2 and "no student folders in" in result.stderr
    (tmp_path / "subs" / "alice").mkdir()
    result = run_grader(tmp_path / "subs", tmp_path / "gradebook.csv", "--jobs", "0")
    assert result.returncode == 2 and "--jobs must be at least 1; got 0" in result.stderr
    result = run_grader(tmp_path / "subs", tmp_path / "gradebook.csv", "--seed", "-3")
    assert result.returncode == 2
    assert "--seed must be a non-negative integer; got -3" in result.stderr
    result = run_grader(tmp_path / "subs", tmp_path / "subs" / "gradebook.csv")
    assert result.returncode == 2 and "must not be inside SUBMISSIONS" in result.stderr
    result = run_grader(tmp_path / "subs", tmp_path / "gradebook.csv", "--exercises",
                        str(tmp_path / "none"))
    assert result.returncode == 2 and "exercises folder not found" in result.stderr


def test_feedback_markdown_escapes_table_cells():
    nb = NotebookResult("ex.ipynb", "graded",
                        [ExerciseResult("a", "a", 0.0, 2.0, "a | b\nc"),
                         ExerciseResult("b", "b", 1.5, 1.5, None)], ["note"])
    text = report.feedback_markdown(StudentResult("s", [nb]))
    assert "| a | 0 / 2 | a \\| b c |" in text
    assert "| b | 1.5 / 1.5 | passed the hidden checks |" in text
    assert "**Total: 1.5 / 3.5 points.**" in text


# ----------------------------------------------------------------------------------------------
# 5. the sandbox's layers, each on its own (a fresh interpreter per test)

SANDBOX_SCRIPT = r"""
import json, os, sqlite3, sys
from mha_course.grading import sandbox
layer, work, denied = sys.argv[1:4]
os.chdir(work)
if layer == "landlock":
    assert sandbox._landlock(work, sandbox.readable_roots([denied])) > 0
elif layer == "hook":
    sandbox._install_audit_hook(work, [denied])
else:
    roots = sandbox.readable_roots([denied]) if sandbox.landlock_abi() else None
    sandbox.confine(work, sandbox.Limits(memory_mb=256), [denied], roots)
results = {}
def attempt(name, action):
    try:
        action()
        results[name] = "done"
    except BaseException as error:
        results[name] = type(error).__name__
attempt("write_inside", lambda: open(os.path.join(work, "a.txt"), "w").write("x"))
attempt("write_outside", lambda: open(os.path.join(denied, "b.txt"), "w").write("x"))
attempt("read_denied", lambda: open(os.path.join(denied, "secret.txt")).read())
attempt("list_denied", lambda: os.listdir(denied))
attempt("sqlite_outside",
        lambda: sqlite3.connect(os.path.join(denied, "c.db")).execute("create table t (x)"))
attempt("read_library", lambda: open(os.__file__).read())
if layer == "all":
    attempt("memory", lambda: bytearray(1 << 30))
    attempt("signal_grader", lambda: os.kill(os.getppid(), 0))
    attempt("subprocess", lambda: __import__("subprocess").run(["true"]))
    if sys.platform.startswith("linux"):
        results["oom_score_adj"] = open("/proc/self/oom_score_adj").read().strip()
print(json.dumps(results))
"""


def run_sandboxed(tmp_path: Path, layer: str) -> dict:
    work, denied = tmp_path / "work", tmp_path / "denied"
    work.mkdir()
    denied.mkdir()
    (denied / "secret.txt").write_text("another student's answer")
    result = subprocess.run([sys.executable, "-c", SANDBOX_SCRIPT, layer, str(work), str(denied)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in denied.iterdir()) == ["secret.txt"]  # nothing written there
    return __import__("json").loads(result.stdout)


def test_landlock_alone_confines_writes_and_reads(tmp_path):
    if not sandbox.landlock_abi():
        pytest.skip("this kernel has no Landlock")
    results = run_sandboxed(tmp_path, "landlock")
    assert results == {"write_inside": "done", "write_outside": "PermissionError",
                       "read_denied": "PermissionError", "list_denied": "PermissionError",
                       "sqlite_outside": "OperationalError", "read_library": "done"}


def test_audit_hook_alone_confines_writes_and_reads(tmp_path):
    results = run_sandboxed(tmp_path, "hook")
    assert results == {"write_inside": "done", "write_outside": "PermissionError",
                       "read_denied": "PermissionError", "list_denied": "PermissionError",
                       "sqlite_outside": "PermissionError", "read_library": "done"}


def test_confine_limits_memory_signals_and_processes(tmp_path):
    results = run_sandboxed(tmp_path, "all")
    assert results["write_inside"] == results["read_library"] == "done"
    assert results["memory"] == "MemoryError"
    assert results["signal_grader"] == results["subprocess"] == "PermissionError"
    if sys.platform.startswith("linux"):  # the out-of-memory killer picks the notebook first
        assert results["oom_score_adj"] == "1000"

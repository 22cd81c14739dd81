"""Exercises from solutions: the solution notebooks are the single source.

A solution notebook marks each answer with nbgrader's delimiters, and the hint in a comment right
above them, so that nbgrader's `generate_assignment` keeps it in its release too:

    def softmax(x, axis=-1):
        \"\"\"...\"\"\"
        # HINT: subtract the maximum along `axis` before np.exp (more comment lines
        #   may follow: they belong to the hint)
        ### BEGIN SOLUTION
        ...the answer...
        ### END SOLUTION

`make_exercise` replaces every region by `raise NotImplementedError("<the hint>")` at the same
indentation (nbgrader keeps the region's first line indentation the same way), keeps the hint's
comment, clears outputs and execution counts, and keeps the cell metadata that nbgrader reads. A
graded cell carries `{"nbgrader": {"grade": true, "grade_id": ..., "points": ...}}`: the grader
reads the points from there, and `grade_id` names the exercise in `mha_course.checks.EXERCISES`.
Solutions are stored without the cells' `metadata.execution` (run timestamps, which nbgrader's
release would hand out): `make_exercises` strips them from the solutions too. The install-check
cell (`mha_course.install_cell`) is a plain setup cell: neither graded nor stubbed.
"""

from __future__ import annotations

import builtins
import copy
import io
import json
import keyword
import re
import textwrap
import tokenize
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = ["BEGIN", "END", "HINT", "GradedCell", "SolutionFormatError", "make_exercise",
           "make_exercises", "stale_exercises", "graded_cells", "exercise_text", "stub_hints",
           "SolutionRegion", "solution_regions", "hint_leaks", "notebook_hint_leaks",
           "strip_execution_metadata"]

BEGIN, END, HINT = "### BEGIN SOLUTION", "### END SOLUTION", "# HINT:"
_OLD_HINT = "### HINT:"  # the hint's former place, inside the region (nbgrader drops it there)
_KEEP_NOTEBOOK_METADATA = ("kernelspec", "language_info")
_KEEP_CELL_METADATA = ("nbgrader", "tags", "editable", "deletable")


class SolutionFormatError(ValueError):
    """A solution notebook whose regions or graded cells are malformed."""


@dataclass(frozen=True)
class GradedCell:
    """One graded exercise of a notebook: its grade_id and points (from the cell metadata)."""

    grade_id: str
    points: float
    cell_index: int


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _hint_above(lines: list[str], indent: str) -> tuple[int, str] | None:
    """(index of the `# HINT:` line, the hint) for the comment lines that end `lines` at the
    indentation `indent`; None when they hold no hint."""
    k = len(lines)
    while k > 0 and lines[k - 1].strip().startswith("#") and _indent(lines[k - 1]) == indent:
        k -= 1
        if lines[k].strip().startswith(HINT):
            words = [lines[k].strip()[len(HINT):]] + [r.strip()[1:] for r in lines[k + 1:]]
            return k, " ".join(w.strip() for w in words if w.strip())
    return None


def _split_regions(source: str, where: str) -> tuple[list[str], list[tuple]]:
    """(the lines outside the regions, [(where the region was in them, the indentation of its
    BEGIN line, its hint, its code lines)]); raises SolutionFormatError on a malformed region or
    a missing hint."""
    out: list[str] = []
    regions: list[tuple] = []
    region: list[str] | None = None
    hint = indent = ""
    for number, line in enumerate(source.split("\n"), start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if region is not None:
                raise SolutionFormatError(f"{where}, line {number}: {BEGIN} inside another region")
            found = _hint_above(out, _indent(line))
            if found is None:
                raise SolutionFormatError(
                    f"{where}, line {number}: the solution region has no '{HINT} ...' comment "
                    f"right above {BEGIN} (same indentation): it becomes the stub's message, and "
                    "nbgrader's release keeps it")
            region, indent, hint = [], _indent(line), found[1]
        elif stripped.startswith(END):
            if region is None:
                raise SolutionFormatError(f"{where}, line {number}: {END} without {BEGIN}")
            regions.append((len(out), indent, hint, region))
            region = None
        elif region is not None:
            if stripped.startswith(_OLD_HINT):
                raise SolutionFormatError(f"{where}, line {number}: move the hint above {BEGIN} "
                                          f"as '{HINT} ...': nbgrader drops what is inside")
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise SolutionFormatError(f"{where}: {BEGIN} is never closed by {END}")
    return out, regions


def _stub_source(source: str, where: str) -> str:
    out, regions = _split_regions(source, where)
    for at, indent, hint, _ in reversed(regions):
        out.insert(at, f"{indent}raise NotImplementedError({json.dumps(hint, ensure_ascii=False)})")
    return "\n".join(out)


def strip_execution_metadata(nb) -> int:
    """Remove every cell's `metadata.execution` (run timestamps) in place; returns how many."""
    stripped = 0
    for cell in nb.cells:
        if "execution" in cell.get("metadata", {}):
            del cell.metadata["execution"]
            stripped += 1
    return stripped


def graded_cells(nb, name: str = "notebook") -> list[GradedCell]:
    """The graded cells of a notebook, in order; checks that ids are unique and points positive."""
    found, seen = [], set()
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade"):
            continue
        grade_id, points = meta.get("grade_id"), meta.get("points")
        if not isinstance(grade_id, str) or not grade_id:
            raise SolutionFormatError(f"{name}, cell {index}: a graded cell needs a grade_id")
        if isinstance(points, bool) or not isinstance(points, (int, float)) or points <= 0:
            raise SolutionFormatError(f"{name}, cell {index} ({grade_id}): points must be a "
                                      f"positive number; got {points!r}")
        if grade_id in seen:
            raise SolutionFormatError(f"{name}: grade_id {grade_id!r} is used twice")
        seen.add(grade_id)
        found.append(GradedCell(grade_id, float(points), index))
    return found


def make_exercise(solution, name: str = "notebook"):
    """The exercise version of a solution notebook (a new NotebookNode; the input is untouched)."""
    nb = copy.deepcopy(solution)
    graded_cells(nb, name)  # validate before writing anything
    nb.metadata = nbformat.from_dict({k: nb.metadata[k] for k in _KEEP_NOTEBOOK_METADATA
                                      if k in nb.metadata})
    for index, cell in enumerate(nb.cells):
        cell.metadata = nbformat.from_dict({k: v for k, v in cell.get("metadata", {}).items()
                                            if k in _KEEP_CELL_METADATA})
        if cell.cell_type == "code":
            cell.source = _stub_source(cell.source, f"{name}, cell {index}")
            cell.outputs = []
            cell.execution_count = None
        elif BEGIN in cell.source:
            raise SolutionFormatError(f"{name}, cell {index}: solution regions belong in code "
                                      "cells")
    return nb


def exercise_text(solution_path: Path) -> str:
    """The exact text of the exercise notebook generated from one solution notebook."""
    solution = nbformat.read(solution_path, as_version=4)
    text = nbformat.writes(make_exercise(solution, solution_path.name), version=4)
    return text if text.endswith("\n") else text + "\n"


def _solution_paths(solutions_dir: Path) -> list[Path]:
    solutions_dir = Path(solutions_dir)
    if not solutions_dir.is_dir():
        raise FileNotFoundError(f"solutions folder not found: {solutions_dir} (expected the folder "
                                "of solution notebooks, e.g. solutions/)")
    paths = sorted(p for p in solutions_dir.glob("*.ipynb") if not p.name.startswith("."))
    if not paths:
        raise FileNotFoundError(f"no solution notebooks (*.ipynb) in {solutions_dir}")
    return paths


def _without_timestamps(path: Path) -> str | None:
    """The text of a solution notebook without its cells' `metadata.execution`, or None when it
    carries none."""
    nb = nbformat.read(path, as_version=4)
    if not strip_execution_metadata(nb):
        return None
    text = nbformat.writes(nb, version=4)
    return text if text.endswith("\n") else text + "\n"


def make_exercises(solutions_dir: Path, exercises_dir: Path) -> list[Path]:
    """Write exercises_dir/<name>.ipynb for every solutions_dir/<name>.ipynb; remove exercise
    notebooks that no longer have a solution; strip the solutions' run timestamps (cell
    `metadata.execution`) in place. Returns the exercise paths written."""
    exercises_dir = Path(exercises_dir)
    sources = _solution_paths(solutions_dir)
    texts = {p.name: exercise_text(p) for p in sources}  # all or nothing: fail before writing
    for path in sources:
        if (clean := _without_timestamps(path)) is not None:
            path.write_text(clean, encoding="utf-8")
    exercises_dir.mkdir(parents=True, exist_ok=True)
    for old in exercises_dir.glob("*.ipynb"):
        if old.name not in texts:
            old.unlink()
    written = []
    for name, text in texts.items():
        target = exercises_dir / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def stale_exercises(solutions_dir: Path, exercises_dir: Path) -> list[str]:
    """Names of exercise notebooks that are missing, different from what `make_exercises` would
    write, or left over without a solution, and of solutions that carry run timestamps. Empty
    when exercises_dir is up to date."""
    exercises_dir = Path(exercises_dir)
    stale = []
    sources = _solution_paths(solutions_dir)
    expected = {p.name: exercise_text(p) for p in sources}
    for name, text in expected.items():
        target = exercises_dir / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(name)
    stale += sorted(p.name for p in exercises_dir.glob("*.ipynb") if p.name not in expected)
    stale += [f"{p.parent.name}/{p.name} (run timestamps in cell metadata.execution)"
              for p in sources if _without_timestamps(p) is not None]
    return stale


_HINT_RE = re.compile(r"raise NotImplementedError\((.*)\)\s*$")


def stub_hints(source: str) -> list[str]:
    """The messages of the stubs in a generated cell (used by the tests)."""
    return [json.loads(m.group(1)) for line in source.split("\n")
            if (m := _HINT_RE.search(line.strip()))]


# ----------------------------------------------------------------------------------------------
# Hints that guide: a hint must not give the solution away


@dataclass(frozen=True)
class SolutionRegion:
    """One `### BEGIN SOLUTION` ... `### END SOLUTION` region: its hint and its code lines."""

    hint: str
    code: tuple[str, ...]


def solution_regions(source: str, where: str = "cell") -> list[SolutionRegion]:
    """The regions of a solution cell, in order; raises SolutionFormatError where the cell is
    malformed (see `make_exercise`)."""
    return [SolutionRegion(hint, tuple(code))
            for _, _, hint, code in _split_regions(source, where)[1]]


_TRIVIAL_NAMES = (frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)
                  | frozenset(dir(builtins)))
MIN_LEAKED_LINE = 12  # non-space characters: shorter lines ("return Z, A") may be said in words
MAX_IDENTIFIER_SHARE = 0.5


def _code_tokens(code_lines) -> tuple[set[str], list[str]]:
    """(the NAME tokens, each line without its comment) of dedented code; strings and comments
    hold no identifiers. Falls back to a regular expression where the code does not tokenize."""
    text = textwrap.dedent("\n".join(code_lines))
    lines = text.split("\n")
    names, comment_at = set(), {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text + "\n").readline):
            if tok.type == tokenize.NAME:
                names.add(tok.string)
            elif tok.type == tokenize.COMMENT:
                comment_at[tok.start[0] - 1] = tok.start[1]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        names = set(re.findall(r"[A-Za-z_]\w*", re.sub(r"#.*", "", text)))
        comment_at = {i: line.index("#") for i, line in enumerate(lines) if "#" in line}
    code = [line[: comment_at.get(i, len(line))] for i, line in enumerate(lines)]
    return names - _TRIVIAL_NAMES, code


def hint_leaks(region: SolutionRegion) -> list[str]:
    """What in the region's hint gives the solution away (empty: the hint only guides).

    Two things count as giving it away: a line of the solution (comments dropped, whitespace
    ignored, and a leading `return` too) of at least MIN_LEAKED_LINE non-space characters, found
    in the hint; or more than
    MAX_IDENTIFIER_SHARE of the solution's identifiers (Python NAME tokens, keywords and
    builtins excepted) named in the hint as whole words.
    """
    names, code = _code_tokens(region.code)
    hint_flat = re.sub(r"\s+", "", region.hint)
    problems = []
    for line in code:
        flat = re.sub(r"\s+", "", line)
        said = re.sub(r"^return", "", flat)  # "return expr" leaks when the hint holds expr
        if len(said) >= MIN_LEAKED_LINE and said in hint_flat:
            problems.append(f"the hint contains the solution line {line.strip()!r}")
    named = sorted(n for n in names if re.search(rf"\b{re.escape(n)}\b", region.hint))
    if names and len(named) > MAX_IDENTIFIER_SHARE * len(names):
        problems.append(f"the hint names {len(named)} of the solution's {len(names)} identifiers "
                        f"({', '.join(named)}): say where to look, not what to write")
    return problems


def notebook_hint_leaks(nb, name: str = "notebook") -> list[str]:
    """Every leak of every solution region of a notebook, as 'name, cell k, region j: problem'."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or BEGIN not in cell.source:
            continue
        regions = solution_regions(cell.source, f"{name}, cell {index}")
        for number, region in enumerate(regions, start=1):
            found += [f"{name}, cell {index}, region {number}: {problem}"
                      for problem in hint_leaks(region)]
    return found

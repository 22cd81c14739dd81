"""Exercises from solutions: the solution notebooks are the single source.

A solution notebook marks each answer with nbgrader's delimiters, plus one line for the stub:

    def softmax(x, axis=-1):
        \"\"\"...\"\"\"
        ### BEGIN SOLUTION
        ### HINT: subtract the maximum along `axis` before np.exp
        ...the answer...
        ### END SOLUTION

`make_exercise` replaces every region by `raise NotImplementedError("<the hint>")` at the same
indentation (nbgrader keeps the region's first line indentation the same way), clears outputs and
execution counts, and keeps the cell metadata that nbgrader reads. A graded cell carries
`{"nbgrader": {"grade": true, "grade_id": ..., "points": ...}}`: the grader reads the points from
there, and `grade_id` names the exercise in `mha_course.checks.EXERCISES`.
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
           "SolutionRegion", "solution_regions", "hint_leaks", "notebook_hint_leaks"]

BEGIN, END, HINT = "### BEGIN SOLUTION", "### END SOLUTION", "### HINT:"
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


def _stub_source(source: str, where: str) -> str:
    lines, out = source.split("\n"), []
    region: list[str] | None = None
    indent = ""
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if region is not None:
                raise SolutionFormatError(f"{where}, line {number}: {BEGIN} inside another region")
            region, indent = [], line[: len(line) - len(line.lstrip())]
        elif stripped.startswith(END):
            if region is None:
                raise SolutionFormatError(f"{where}, line {number}: {END} without {BEGIN}")
            hints = [r.strip()[len(HINT):].strip() for r in region if r.strip().startswith(HINT)]
            if not hints:
                raise SolutionFormatError(f"{where}, line {number}: the solution region has no "
                                          f"'{HINT} ...' line, which becomes the stub's message")
            message = json.dumps(" ".join(hints), ensure_ascii=False)
            out.append(f"{indent}raise NotImplementedError({message})")
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise SolutionFormatError(f"{where}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


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


def make_exercises(solutions_dir: Path, exercises_dir: Path) -> list[Path]:
    """Write exercises_dir/<name>.ipynb for every solutions_dir/<name>.ipynb; remove exercise
    notebooks that no longer have a solution. Returns the paths written."""
    exercises_dir = Path(exercises_dir)
    sources = _solution_paths(solutions_dir)
    texts = {p.name: exercise_text(p) for p in sources}  # all or nothing: fail before writing
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
    write, or left over without a solution. Empty when exercises_dir is up to date."""
    exercises_dir = Path(exercises_dir)
    stale = []
    expected = {p.name: exercise_text(p) for p in _solution_paths(solutions_dir)}
    for name, text in expected.items():
        target = exercises_dir / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(name)
    stale += sorted(p.name for p in exercises_dir.glob("*.ipynb") if p.name not in expected)
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


def solution_regions(source: str) -> list[SolutionRegion]:
    """The regions of a solution cell, in order (the cell is assumed well formed: see
    `make_exercise` for the checks)."""
    regions, lines = [], None
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            lines = []
        elif stripped.startswith(END) and lines is not None:
            hints = [r.strip()[len(HINT):].strip() for r in lines if r.strip().startswith(HINT)]
            code = tuple(r for r in lines if not r.strip().startswith(HINT))
            regions.append(SolutionRegion(" ".join(hints), code))
            lines = None
        elif lines is not None:
            lines.append(line)
    return regions


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
        for number, region in enumerate(solution_regions(cell.source), start=1):
            found += [f"{name}, cell {index}, region {number}: {problem}"
                      for problem in hint_leaks(region)]
    return found

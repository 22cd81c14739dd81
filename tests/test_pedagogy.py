"""The course's notebooks teach the way ../shared/PEDAGOGY.md says, and the exercises fit them.

Every notebook in notebooks/: an opening with 3-5 objectives, what it needs, its minutes and the
glossary; at least three predict-then-check places (a markdown cell tagged `predict` with
"**Predict.**", then a code cell tagged `predict` the student fills, with no answer in it); "What to
notice" after every figure and "Try it" after every widget; a link to an exercise that exists and
links back; a summary and 3-5 questions with folded answers (`questions`); short cells.
Every exercise notebook: links back to a notebook, states difficulty and minutes for each exercise,
and asks a question with a folded answer after each self-check.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXERCISES = sorted((ROOT / "solutions").glob("ex[0-9][0-9]_*.ipynb"))
GLOSSARY = ROOT / "docs" / "GLOSSARY.md"
MAX_CODE_LINES, MAX_MARKDOWN_LINES = 15, 20
FIGURE, WIDGET = "image/png", "application/vnd.jupyter.widget-view+json"
LINK = re.compile(r"\]\(([^)\s]+\.(?:ipynb|md))(?:#[^)]*)?\)")


def read(path: Path):
    return nbformat.read(path, as_version=4)


def tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def n_lines(cell) -> int:
    return len(cell.source.rstrip().splitlines())


def links(cell, base: Path) -> list[Path]:
    return [(base / target).resolve() for target in LINK.findall(cell.source)]


def output_kinds(cell) -> set[str]:
    kinds = set()
    for output in cell.get("outputs", []):
        kinds.update(output.get("data", {}))
    return kinds


# ----------------------------------------------------------------------------------------------
# The rules, as functions of one notebook: each returns a list of problems (empty = fine), so
# that the unit tests at the end can show that each rule sees what it should.


def opening_problems(nb, path: Path) -> list[str]:
    first = nb.cells[0]
    if first.cell_type != "markdown":
        return ["the first cell must be the opening (markdown)"]
    text, problems = first.source, []
    if not re.search(r"^# ", text, re.M):
        problems.append("the opening has no title (# ...)")
    # The second line also takes bullets wrapped onto indented continuation lines.
    match = re.search(r"After this notebook you can:?\**:?\s*\n"
                      r"((?:\s*(?:[-*]|\d+\.)\s+.+\n?(?:[ \t]+\S.*\n?)*)+)", text)
    objectives = 0 if match is None else len(re.findall(r"^\s*(?:[-*]|\d+\.)\s+",
                                                          match.group(1), re.M))
    if not 3 <= objectives <= 5:
        problems.append(f"expected 3-5 objectives after 'After this notebook you can:'; "
                        f"found {objectives}")
    if "You need" not in text:
        problems.append("the opening does not say what it needs ('You need: ...')")
    if not re.search(r"Time:?\**:?\s*(?:about\s+)?~?\d+\s*min", text):
        problems.append("the opening does not give its minutes ('Time: about NN minutes')")
    if GLOSSARY.resolve() not in links(first, path.parent):
        problems.append("the opening does not link the glossary (../docs/GLOSSARY.md)")
    return problems


def predict_problems(nb) -> list[str]:
    problems, places = [], 0
    cells = nb.cells
    for i, cell in enumerate(cells):
        if "predict" not in tags(cell) or cell.cell_type != "markdown":
            continue
        if "**Predict" not in cell.source:
            problems.append(f"cell {i}: a predict cell must say **Predict.**")
            continue
        following = cells[i + 1] if i + 1 < len(cells) else None
        if following is None or following.cell_type != "code" or "predict" not in tags(following):
            problems.append(f"cell {i}: a predict question must be followed by a code cell tagged "
                            "'predict' where the student writes the guess")
            continue
        if following.get("outputs"):
            problems.append(f"cell {i + 1}: the student's prediction cell must have no output")
            continue
        places += 1
    if places < 3:
        problems.append(f"expected at least 3 predict-then-check places; found {places}")
    return problems


def notice_problems(nb) -> list[str]:
    """After a figure, the next markdown cell says what to notice; after a widget, what to try."""
    problems = []
    cells = nb.cells
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        kinds = output_kinds(cell)
        wanted = [w for k, w in ((FIGURE, "What to notice"), (WIDGET, "Try it")) if k in kinds]
        if not wanted:
            continue
        after = next((c for c in cells[i + 1:] if c.cell_type == "markdown"), None)
        for phrase in wanted:
            if after is None or phrase.lower() not in after.source.lower():
                problems.append(f"cell {i}: the markdown after its "
                                f"{'figure' if phrase == 'What to notice' else 'widget'} "
                                f"should say '{phrase}'")
    return problems


def ending_problems(nb) -> list[str]:
    problems = []
    if not any(c.cell_type == "markdown" and re.search(r"^##+ Summary", c.source, re.M)
               for c in nb.cells):
        problems.append("no '## Summary' cell")
    questions = [c for c in nb.cells if c.cell_type == "markdown" and "questions" in tags(c)]
    folded = sum(len(re.findall(r"<details>\s*<summary>", c.source)) for c in questions)
    closed = sum(c.source.count("</details>") for c in questions)
    if not 3 <= folded <= 6 or folded != closed:
        problems.append(f"expected 3-5 questions with folded answers"
                        f" (<details><summary>...</details>) in cells tagged 'questions';"
                        f" found {folded} opened, {closed} closed")
    return problems


def length_problems(nb) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.cells):
        limit = MAX_CODE_LINES if cell.cell_type == "code" else MAX_MARKDOWN_LINES
        if cell.cell_type in ("code", "markdown") and n_lines(cell) > limit:
            problems.append(f"cell {i}: {n_lines(cell)} lines"
                            f" ({cell.cell_type} cells: at most {limit})")
    return problems


def exercise_links(nb, path: Path) -> list[Path]:
    return [p for c in nb.cells if c.cell_type == "markdown" for p in links(c, path.parent)
            if p.parent.name == "exercises"]


def exercise_link_problems(nb, path: Path) -> list[str]:
    targets = exercise_links(nb, path)
    if not targets:
        return ["no link to an exercise notebook (../exercises/exNN_....ipynb)"]
    problems = [f"the link to {t.name} does not resolve" for t in targets if not t.exists()]
    for target in {t for t in targets if t.exists()}:
        back = [p for c in read(target).cells if c.cell_type == "markdown"
                for p in links(c, target.parent)]
        if path.resolve() not in back:
            problems.append(f"{target.name} does not link back to {path.name}")
    return problems


def exercise_notebook_problems(nb, path: Path) -> list[str]:
    """A solution notebook (the exercises are generated from it, text unchanged)."""
    problems = []
    back = [p for p in links(nb.cells[0], ROOT / "exercises") if p.parent.name == "notebooks"]
    if not back or not all(p.exists() for p in back):
        problems.append("the first cell must link the course notebook(s) that teach it "
                        "(../notebooks/NN_....ipynb), and the links must resolve")
    graded = [i for i, c in enumerate(nb.cells)
              if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    for number, i in enumerate(graded):
        grade_id = nb.cells[i].metadata["nbgrader"]["grade_id"]
        heading = next((c.source for c in reversed(nb.cells[:i]) if c.cell_type == "markdown"
                        and re.search(r"^## ", c.source, re.M)), "")
        if not re.search(r"★{1,3}[^\n]*?\d+\s*min", heading):
            problems.append(f"{grade_id}: its heading must state difficulty and minutes "
                            "(e.g. '(★★, 15 min, 3 points)')")
        end = graded[number + 1] if number + 1 < len(graded) else len(nb.cells)
        between = [c for c in nb.cells[i + 1:end] if c.cell_type == "markdown"]
        if not any(re.search(r"<details>\s*<summary>", c.source) for c in between):
            problems.append(f"{grade_id}: no question with a folded answer after its self-check")
    return problems


# ----------------------------------------------------------------------------------------------
# The course


def test_there_are_notebooks_and_exercises():
    assert len(NOTEBOOKS) >= 8 and len(EXERCISES) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_notebook_opens_with_objectives_needs_time_and_glossary(path):
    assert opening_problems(read(path), path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_notebook_makes_the_student_predict_three_times(path):
    assert predict_problems(read(path)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_notebook_says_what_to_notice_and_what_to_try(path):
    assert notice_problems(read(path)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_notebook_ends_with_a_summary_and_folded_questions(path):
    assert ending_problems(read(path)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_notebook_cells_are_short(path):
    assert length_problems(read(path)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_notebook_links_an_exercise_that_links_back(path):
    assert exercise_link_problems(read(path), path) == []


@pytest.mark.parametrize("path", EXERCISES, ids=lambda p: "exercise-" + p.name[:4])
def test_exercise_notebook_links_back_states_difficulty_and_asks_a_question(path):
    assert exercise_notebook_problems(read(path), path) == []


def test_every_exercise_notebook_is_linked_from_a_notebook():
    linked = {p for path in NOTEBOOKS for p in exercise_links(read(path), path)}
    names = {p.name for p in linked}
    assert [p.name for p in EXERCISES if p.name not in names] == []


def test_glossary_terms_name_the_notebook_that_teaches_them():
    paragraphs = re.split(r"\n\s*\n", GLOSSARY.read_text(encoding="utf-8"))
    entries = [(re.findall(r"\*\*(.+?)\*\*", p), p) for p in paragraphs if p.startswith("**")]
    assert len(entries) >= 40, (
        f"expected the glossary's entries as '**term** — ...'; found {len(entries)}"
    )
    for terms, text in entries:
        assert re.search(r"\(notebook \d\d", text), f"{terms}: which notebook teaches it?"
    terms = [t.lower() for names, _ in entries for t in names]
    for wanted in ["LxHy", "query", "[CLS]", "word piece", "nsubj", "dobj", "det", "amod", "prep",
                   "pobj", "aux", "poss", "selectivity", "control task", "ablation", "JS distance",
                   "CKA", "MDS", "post-LN", "Xavier", "Zipf", "residual stream"]:
        assert any(wanted.lower() in t for t in terms), wanted


TIME = re.compile(r"\*\*Time:\*\* about (\d+) minutes(?:, (\d+) more for the exercises)?")


def test_readme_minutes_match_each_notebook_and_the_total_is_stated():
    """Each notebook's opening says "**Time:** about N minutes, M more for the exercises ...";
    the README's learning path gives the same N and M, and the totals of both."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    total = total_exercises = 0
    for path in NOTEBOOKS:
        stated = TIME.search(read(path).cells[0].source)
        assert stated, (
            f"{path.name}: the opening should say '**Time:** about N minutes, M more ...'"
        )
        minutes, exercises = int(stated.group(1)), int(stated.group(2) or 0)
        row = re.search(rf"^\|[^\n]*\(notebooks/{re.escape(path.name)}\)[^\n]*\|\s*(\d+)\s*\|"
                        rf"\s*(\d+)\s*\|\s*$", readme, re.M)
        assert row, (
            f"no learning-path row for {path.name} ending with its minutes | exercise minutes"
        )
        assert (int(row.group(1)), int(row.group(2))) == (minutes, exercises), path.name
        total, total_exercises = total + minutes, total_exercises + exercises
    assert re.search(rf"\b{total} minutes\b", readme), (
        f"the README should state the total, {total} minutes"
    )
    assert re.search(rf"\b{total + total_exercises} minutes\b", readme), (
        f"the README should state the total with the exercises, {total + total_exercises} minutes")


# ----------------------------------------------------------------------------------------------
# The rules see what they should


def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def _md(text, *tag):
    cell = nbformat.v4.new_markdown_cell(text)
    if tag:
        cell.metadata["tags"] = list(tag)
    return cell


def _code(text, *tag, outputs=()):
    cell = nbformat.v4.new_code_cell(text)
    if tag:
        cell.metadata["tags"] = list(tag)
    cell.outputs = [nbformat.v4.new_output("display_data", data={k: "x"}) for k in outputs]
    return cell


def test_rules_catch_a_passive_notebook():
    path = ROOT / "notebooks" / "99_example.ipynb"
    passive = _nb(_md("# 99 · Reading only\n\nA long story."), _code("plot()", outputs=[FIGURE]),
                  _md("The figure shows heads."), _code("panel()", outputs=[WIDGET]),
                  _md("A panel.\n" * 21))
    assert len(opening_problems(passive, path)) == 4
    assert predict_problems(passive) == ["expected at least 3 predict-then-check places; found 0"]
    assert len(notice_problems(passive)) == 2
    assert len(ending_problems(passive)) == 2
    assert length_problems(passive) == ["cell 4: 21 lines (markdown cells: at most 20)"]
    assert exercise_link_problems(passive, path) == [
        "no link to an exercise notebook (../exercises/exNN_....ipynb)"]


def test_rules_accept_an_active_notebook():
    path = ROOT / "notebooks" / "99_example.ipynb"
    opening = ("# 99 · Example\n\n**After this notebook you can:**\n- compute a\n- explain b\n"
               "- tell c from d\n\n**You need:** [01](01_scaled_dot_product_attention.ipynb)\n"
               "**Time:** about 30 minutes · [glossary](../docs/GLOSSARY.md)")
    predict = [c for _ in range(3) for c in (_md("**Predict.** Which?", "predict"),
                                             _code('my_prediction = ""', "predict"))]
    active = _nb(_md(opening), *predict, _code("plot()", outputs=[FIGURE]),
                 _md("**What to notice.** The diagonal."), _code("panel()", outputs=[WIDGET]),
                 _md("**Try it.** Move the slider."), _md("## Summary\nThe cell above prints it."),
                 *[_md(f"**{k}.** Why?\n<details><summary>Answer</summary>Because.</details>",
                       "questions") for k in range(3)])
    assert opening_problems(active, path) == []
    assert predict_problems(active) == []
    assert notice_problems(active) == []
    assert ending_problems(active) == []
    assert length_problems(active) == []


def test_a_prediction_cell_with_an_answer_in_its_output_is_refused():
    cells = [_md("**Predict.** Which?", "predict"),
             _code('my_prediction = "x"', "predict", outputs=["text/plain"])] * 3
    assert predict_problems(_nb(*cells))[0].endswith("must have no output")

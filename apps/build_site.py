"""Build the course as a static site for reading: `make site` (`python apps/build_site.py [DIR]`).

One HTML page per notebook, made by nbconvert from the notebook as committed (its stored outputs:
nothing is executed), and an index page in the order of the README's learning path, the one
place that order is written. Pages link to the previous and next notebook.

Interactive panels cannot move without a kernel, so each widget output is replaced by a static
snapshot of the figures it showed when the notebook was saved (the PNGs in its stored widget
state) and a line saying how to get the live panel. Links between notebooks (`NN_name.ipynb`)
are pointed at their pages; so are the links to the exercises (one page each, the generated
exercise notebook as handed out, with a note on how to work it) and to the glossary
(docs/GLOSSARY.md). The result needs no server: open `site/index.html`.

It also needs no network: every script a page loads comes from `site/` itself (a test checks that
no page names an http(s) script or stylesheet). nbconvert's lab template would load three things
from CDNs; here, through nbconvert's own options and a template that extends the lab one:
- MathJax (the maths in the prose): MathJax 2.7 as the `jupyter-server-mathjax` package ships it
  (the copy Jupyter Notebook served), copied to `site/mathjax/` and named by `mathjax_url`, with the
  STIX-Web fonts that copy carries.
- require.js and the widget manager (@jupyter-widgets/html-manager): not loaded. They serve
  JavaScript outputs and embedded widget state, and a page has neither: a panel's sliders cannot
  run its Python callbacks without a kernel, so a reader who met live-looking but frozen sliders
  would think the page broken. Each panel shows the figures it had when saved, and says so. The
  build fails, naming the cell, if a notebook ever carries a JavaScript output.
- mermaid (diagrams in markdown): not loaded, and the build fails if a notebook has a diagram.

Every figure gets alt text, built from the cell that drew it (`apps/figure_alt.py`: the view's
name, the titles and axis labels written in the cell, a panel's settings). The page template and
the MathJax copy are in `apps/site_offline.py`.
"""

from __future__ import annotations

import copy
import html
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import site_offline as offline
from figure_alt import alt_text, describe, panel_settings, view_names
from nbconvert.filters.markdown import markdown2html

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
README = ROOT / "README.md"
EXERCISES = ROOT / "exercises"
GLOSSARY = ROOT / "docs" / "GLOSSARY.md"
GLOSSARY_PAGE = "glossary.html"
EXERCISE_NOTE = ("<p class='site-widget-note'><em>An exercise as handed out: its functions raise "
                 "NotImplementedError until you write them. To work it, open "
                 "<code>exercises/{name}</code> in JupyterLab (<code>make lab</code>) and run each "
                 "self-check.</em></p>")
HEAD_IMAGE = ROOT / "docs" / "images" / "head_grid.png"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
LIVE_NOTE = ("<p class='site-widget-note'><em>A static snapshot of an interactive panel. To move "
             "its sliders, run the notebook in JupyterLab (<code>make lab</code>), or try the head "
             "explorer app (<code>make explore</code>).</em></p>")

STYLE = """
<style>
  .site-nav { font-family: system-ui, sans-serif; padding: 0.6em 1em; background: #f3f5f7;
              border-bottom: 1px solid #d0d7de; display: flex; gap: 1.5em; }
  .site-nav a { color: #0b5cad; text-decoration: none; }
  .site-widget-note { color: #555; font-size: 0.9em; }
</style>
"""


@dataclass
class Entry:
    number: str  # "01"
    title: str  # from the notebook's first heading, or the README
    teaches: str  # the README's "What it teaches" (markdown)
    minutes: str
    notebook: Path | None  # None: announced in the README, not there yet

    @property
    def page(self) -> str | None:
        return None if self.notebook is None else self.notebook.with_suffix(".html").name


# --------------------------------------------------------------------------- the learning path
def learning_path(readme: Path = README, notebooks: Path = NOTEBOOKS) -> list[Entry]:
    """The README's learning-path table, in its order; notebooks it does not list yet come last."""
    text = readme.read_text(encoding="utf-8")
    section = re.search(r"^## Learning path\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not section:
        raise SystemExit(f"{readme} has no '## Learning path' section: it gives the site's order")
    rows = [line.strip() for line in section.group(1).splitlines() if line.strip().startswith("|")]
    entries, seen = [], set()
    for row in rows[2:]:  # header and separator first
        cells = [c.strip() for c in row.strip("|").split("|")]
        first, teaches = cells[0], cells[1] if len(cells) > 1 else ""
        minutes = cells[3] if len(cells) > 3 else ""
        if len(cells) > 4 and cells[4] not in ("", "0"):  # the exercises' minutes
            minutes += f" + {cells[4]} (exercises)"
        link = re.search(r"\((notebooks/[^)]+\.ipynb)\)", first)
        if link and (ROOT / link.group(1)).is_file():
            path = ROOT / link.group(1)
            seen.add(path.name)
            entries.append(Entry(path.name[:2], notebook_title(path), teaches, minutes, path))
        else:
            label = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", first)
            number = (re.match(r"\d\d", label) or [""])[0]
            entries.append(Entry(number, label, teaches, minutes, None))
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        if path.name not in seen:
            print(f"build_site: {path.name} is not in the README's learning path yet; "
                  "listed last", file=sys.stderr)
            entries.append(Entry(path.name[:2], notebook_title(path), "", "", path))
    return entries


def notebook_title(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            match = re.search(r"^#\s+(.+)$", "".join(cell["source"]), re.M)
            if match:
                return match.group(1).strip()
    return path.stem.replace("_", " ")


# --------------------------------------------------------------------------- widgets -> snapshots
def _model_images(state: dict, model_id: str, seen: set) -> list[dict]:
    """display_data outputs for the figures under one widget model: the PNG outputs of Output
    widgets and the values of PNG Image widgets, in the order the panel shows them."""
    if model_id in seen or model_id not in state:
        return []
    seen.add(model_id)
    model = state[model_id]
    inner = model.get("state", {})
    out = []
    if model.get("model_name") == "ImageModel" and inner.get("format", "png") == "png":
        for buf in model.get("buffers", []):
            if buf.get("path") == ["value"] and buf.get("encoding") == "base64":
                out.append(nbformat.v4.new_output("display_data", {"image/png": buf["data"]}))
    for o in inner.get("outputs", []) or []:
        if "image/png" in o.get("data", {}):
            png = o["data"]["image/png"]
            out.append(nbformat.v4.new_output("display_data", {"image/png": png}))
    for child in inner.get("children", []) or []:
        if isinstance(child, str) and child.startswith("IPY_MODEL_"):
            out.extend(_model_images(state, child.removeprefix("IPY_MODEL_"), seen))
    return out


def static_snapshots(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of `nb` whose widget views are replaced by their stored figures and a note, whose
    widget state is dropped (a page cannot run the panels' callbacks), and whose figures carry
    their alt text (output metadata "image/png" -> "alt", which the page template writes)."""
    nb = copy.deepcopy(nb)
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    views = view_names([c.source for c in nb.cells if c.cell_type == "code"])
    heading = nb.metadata.get("title", "")
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = next(iter(re.findall(r"^#+\s+(.+)$", cell.source, re.M)[-1:]), heading)
        if cell.cell_type != "code":
            continue
        description = describe(cell.source, views, heading)
        figures = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        for k, out in enumerate(figures):
            _set_alt(out, alt_text(description, index=k, count=len(figures)))
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(out)
                continue
            images = _model_images(state, view.get("model_id", ""), set())
            settings = panel_settings(state, view.get("model_id", ""))
            for k, image in enumerate(images):
                _set_alt(image, alt_text(description, index=k, count=len(images),
                                         panel=settings))
            if images:  # a panel with figures; a progress bar or the like leaves nothing
                outputs.extend(images)
                outputs.append(nbformat.v4.new_output("display_data", {"text/html": LIVE_NOTE}))
        cell.outputs = outputs
    return nb


def _set_alt(output: nbformat.NotebookNode, alt: str) -> None:
    output.setdefault("metadata", {}).setdefault("image/png", {})["alt"] = alt


# --------------------------------------------------------------------------- pages
def _nav(entries: list[Entry], i: int | None) -> str:
    links = ["<a href='index.html'>Course index</a>"]
    pages = [e for e in entries if e.page]
    if i is not None:
        k = pages.index(entries[i])
        if k > 0:
            prev = pages[k - 1]
            links.append(f"<a href='{prev.page}'>&larr; {html.escape(prev.title)}</a>")
        if k + 1 < len(pages):
            nxt = pages[k + 1]
            links.append(f"<a href='{nxt.page}'>{html.escape(nxt.title)} &rarr;</a>")
    return f"<nav class='site-nav'>{' '.join(links)}</nav>"


def _link_pages(body: str, names: set[str]) -> str:
    """href="(…/)NN_name.ipynb(#x)" -> href="NN_name.html(#x)" for the course's notebooks."""
    def repl(m):
        name = m.group(2)
        return f'href="{name[:-6]}.html{m.group(3) or ""}"' if name in names else m.group(0)
    return re.sub(r'href="((?:\.\./)?(?:notebooks/)?)?([0-9][0-9]_[\w-]+\.ipynb)(#[^"]*)?"',
                  repl, body)


def _link_exercises_and_glossary(body: str) -> str:
    """href="../exercises/exNN_name.ipynb" -> "exNN_name.html"; the glossary -> glossary.html."""
    body = re.sub(r'href="(?:(?:\.\./)?exercises/)?(ex[0-9][0-9]_[\w-]+)\.ipynb(#[^"]*)?"',
                  lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)
    return re.sub(r'href="(?:\.\./)?docs/GLOSSARY\.md(#[^"]*)?"',
                  lambda m: f'href="{GLOSSARY_PAGE}{m.group(1) or ""}"', body)


def render_notebook(path: Path, entries: list[Entry], i: int | None, title: str | None = None,
                    note: str = "") -> str:
    """One page: a course notebook (entries[i]) or, with i None, an exercise notebook."""
    nb = nbformat.read(path, as_version=4)
    offline.check_no_scripts(nb, path)
    nb = static_snapshots(nb)
    exporter = offline.page_exporter()
    name = entries[i].title if i is not None else (title or notebook_title(path))
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": name}})
    body = _link_pages(body, {e.notebook.name for e in entries if e.notebook})
    body = _link_exercises_and_glossary(body)
    nav = _nav(entries, i) + note
    body = body.replace("</head>", STYLE + "</head>", 1)
    body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, body, count=1)
    return body.replace("</body>", nav + "</body>", 1)


def _intro(readme: Path) -> str:
    """The README's first paragraphs, between its title and its first section."""
    text = readme.read_text(encoding="utf-8")
    head = re.split(r"^## ", text, maxsplit=1, flags=re.M)[0]
    head = re.sub(r"^# .*$", "", head, count=1, flags=re.M)
    head = re.sub(r"!\[[^]]*\]\([^)]*\)", "", head)  # the picture is placed by the index itself
    return markdown2html(head.strip())


def render_index(entries: list[Entry], has_image: bool) -> str:
    rows = []
    for e in entries:
        title = (f"<a href='{e.page}'>{html.escape(e.title)}</a>" if e.page
                 else f"{html.escape(e.title)}")
        teaches = markdown2html(e.teaches).strip().removeprefix("<p>").removesuffix("</p>")
        rows.append(f"<tr{'' if e.page else ' class=coming'}><td>{e.number}</td><td>{title}</td>"
                    f"<td>{teaches}</td><td>{html.escape(e.minutes)}</td></tr>")
    image = ("<img src='images/head_grid.png' alt='Every head of the trained toy model on the "
             "running example: one attention heatmap per head.'>" if has_image else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mha-course: multi-head attention and head specialization</title>
<style>
  body {{ font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em;
         color: #1f2328; line-height: 1.5; }}
  img {{ max-width: 100%; }}
  table {{ border-collapse: collapse; width: 100%; }}
  td, th {{ border-bottom: 1px solid #d0d7de; padding: 0.5em; text-align: left;
            vertical-align: top; }}
  tr.coming {{ color: #777; }}
  a {{ color: #0b5cad; }}
</style></head>
<body>
<h1>mha-course: multi-head attention and head specialization</h1>
{_intro(README)}
{image}
<h2>Learning path</h2>
<p>Work the notebooks in order; each builds on the one before. These pages show them as
committed, with their outputs; to run them, see the README (<code>make lab</code>).</p>
<table><thead><tr><th></th><th>Notebook</th><th>What it teaches</th><th>Minutes</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
{_exercise_list()}
<p>Every term the course uses, with the notebook that teaches it: <a href='{GLOSSARY_PAGE}'>the
glossary</a>.</p>
</body></html>
"""


def _exercise_list() -> str:
    """The exercises, one link each: the notebooks link them where the concept is taught."""
    items = [f"<li><a href='{p.with_suffix('.html').name}'>"
             f"{html.escape(notebook_title(p))}</a></li>"
             for p in sorted(EXERCISES.glob("ex[0-9][0-9]_*.ipynb"))]
    return ("<h2>Exercises</h2>\n<p>You write the piece being taught; a self-check says what is "
            "likely wrong. Each notebook links its exercises where it teaches them.</p>\n<ul>"
            + "".join(items) + "</ul>") if items else ""


def build(out: Path) -> list[Path]:
    """Write the site into `out` (emptied first); return the pages written, index first."""
    entries = learning_path()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    offline.copy_mathjax(out)
    has_image = HEAD_IMAGE.is_file()
    if has_image:
        (out / "images").mkdir()
        shutil.copy2(HEAD_IMAGE, out / "images" / HEAD_IMAGE.name)
    written = [out / "index.html"]
    written[0].write_text(render_index(entries, has_image), encoding="utf-8")
    for i, e in enumerate(entries):
        if e.notebook is not None:
            page = out / e.page
            page.write_text(render_notebook(e.notebook, entries, i), encoding="utf-8")
            written.append(page)
    for path in sorted(EXERCISES.glob("ex[0-9][0-9]_*.ipynb")):
        page = out / path.with_suffix(".html").name
        page.write_text(render_notebook(path, entries, None,
                                        note=EXERCISE_NOTE.format(name=path.name)),
                        encoding="utf-8")
        written.append(page)
    if GLOSSARY.is_file():
        written.append(out / GLOSSARY_PAGE)
        written[-1].write_text(render_glossary(entries), encoding="utf-8")
    return written


def render_glossary(entries: list[Entry]) -> str:
    """docs/GLOSSARY.md as a page; "notebook NN" becomes a link to that notebook's page."""
    body = markdown2html(GLOSSARY.read_text(encoding="utf-8"))
    pages = {e.number: e.page for e in entries if e.page}
    body = re.sub(r"\bnotebook (\d\d)\b",
                  lambda m: (f"<a href='{pages[m.group(1)]}'>{m.group(0)}</a>"
                             if m.group(1) in pages else m.group(0)), body)
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>Glossary</title>"
            f"{STYLE}<style>body {{ font-family: system-ui, sans-serif; max-width: 60em; "
            f"margin: 0 auto; line-height: 1.5; }} main {{ padding: 0 1em; }}</style></head>"
            f"<body>{_nav(entries, None)}<main>{body}</main></body></html>\n")


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "site"
    pages = build(out)
    print(f"wrote {len(pages)} pages to {out}/: " + ", ".join(p.name for p in pages))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

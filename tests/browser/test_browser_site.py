"""The static site (`make site`): every notebook as a page with its figures, an index in the
README's learning-path order, links that resolve, pages that Chromium draws (not blank), no page
that fetches from another host, and maths that MathJax typesets from site/ with the network cut
off (Chromium resolves no host but localhost; the site is served by a local http.server)."""

from __future__ import annotations

import base64
import functools
import io
import json
import re
import subprocess
import sys
import threading
from contextlib import contextmanager
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import numpy as np
import pytest
from nbconvert import HTMLExporter
from PIL import Image
from site_html import NBCONVERT_PLACEHOLDER, assets, remote_references

from browser import harness

ROOT = harness.ROOT
BUILDER = ROOT / "apps" / "build_site.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """The links (href, src) and anchors (id, name) of one HTML page."""

    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (tag, url)
        self.anchors: set[str] = set()
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.anchors.add(a[key])
        for key in ("href", "src"):
            if a.get(key) is not None:
                self.links.append((tag, a[key]))
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _readme_order() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Learning path\s*$(.*?)(?=^## |\Z)", text, re.M | re.S).group(1)
    return [Path(link).name for link in re.findall(r"\((notebooks/[^)]+\.ipynb)\)", section)
            if (ROOT / link).is_file()]


def _stored_figures(nb_path: Path) -> int:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return sum(1 for c in nb["cells"] if c["cell_type"] == "code"
               for o in c.get("outputs", []) if "image/png" in o.get("data", {}))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    proc = subprocess.run([sys.executable, str(BUILDER), str(out)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, f"{BUILDER.name} failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_make_site_runs_the_builder_into_site():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^site:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "the Makefile has no `site` target"
    assert "apps/build_site.py site" in recipe.group(1), recipe.group(1)
    assert re.search(r"(?m)^/?site/$", (ROOT / ".gitignore").read_text()), "site/ is not gitignored"


def test_every_notebook_has_a_page_with_its_figures(site):
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks
    for nb in notebooks:
        page = site / nb.with_suffix(".html").name
        assert page.is_file(), f"no page for {nb.name} in {sorted(p.name for p in site.iterdir())}"
        parsed = _parse(page)
        data = [src for src in parsed.images if src.startswith("data:image/png;base64,")]
        expected = _stored_figures(nb)
        assert len(data) >= expected, (
            f"{page.name}: {len(data)} embedded PNG figures, but the notebook stores {expected}")
        for src in data:
            raw = base64.b64decode(src.split(",", 1)[1])
            assert raw.startswith(PNG_MAGIC) and len(raw) > 1000, f"{page.name}: a broken figure"
        text = page.read_text(encoding="utf-8")
        assert "application/vnd.jupyter.widget-view+json" not in text, (
            f"{page.name}: a widget view is left in the page (it cannot run without a kernel)")


def test_index_follows_the_learning_path(site):
    index = _parse(site / "index.html")
    pages = [url for tag, url in index.links if tag == "a" and url.endswith(".html")]
    order = [name.replace(".ipynb", ".html") for name in _readme_order()]
    assert order, "the README's learning path links no notebook"
    assert pages[:len(order)] == order, (
        f"the index lists {pages}, the README's learning path {order}")
    present = {p.with_suffix(".html").name
               for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    exercises = {p.with_suffix(".html").name
                 for p in (ROOT / "exercises").glob("ex[0-9][0-9]_*.ipynb")}
    assert set(pages) == present | exercises | {"glossary.html"}, (
        f"index links {sorted(pages)}, notebooks {sorted(present)}, exercises {sorted(exercises)}")


def test_notebook_links_to_exercises_and_the_glossary_become_pages(site):
    """The notebooks link ../exercises/exNN_x.ipynb and ../docs/GLOSSARY.md: on the site those
    are pages (test_links_resolve checks they exist)."""
    first = (site / "01_scaled_dot_product_attention.html").read_text(encoding="utf-8")
    assert 'href="glossary.html"' in first and 'href="ex01_softmax_and_sdpa.html"' in first
    glossary = (site / "glossary.html").read_text(encoding="utf-8")
    assert "<a href='05_real_model_heads.html'>notebook 05</a>" in glossary


def test_links_resolve(site):
    problems = []
    pages = sorted(site.glob("*.html"))
    anchors = {p.name: _parse(p).anchors for p in pages}
    for page in pages:
        for tag, url in _parse(page).links:
            parts = urlsplit(url)
            if parts.scheme in ("http", "https", "data", "mailto"):
                continue  # a link in the prose, or inline: nothing to resolve here
            target = page if not parts.path else (page.parent / unquote(parts.path))
            if not target.exists():
                problems.append(f"{page.name}: <{tag}> {url} -> no such file")
            elif parts.fragment and target.suffix == ".html" and not (
                    {parts.fragment, unquote(parts.fragment)} & anchors.get(target.name, set())):
                # (nbconvert writes heading ids percent-encoded; a browser tries both forms)
                problems.append(f"{page.name}: <{tag}> {url} -> no such anchor")
    assert not problems, "\n".join(problems)


def _not_blank(png: bytes, what: str) -> None:
    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    inked = float((grey < 200).mean())
    assert grey.std() > 10 and inked > 0.01, (
        f"{what} looks blank: grey-level std {grey.std():.1f}, {inked:.1%} of pixels inked")


@pytest.mark.slow
def test_index_and_a_page_are_drawn_in_chromium(site, page):
    page.goto((site / "index.html").as_uri(), wait_until="load")
    _not_blank(page.screenshot(full_page=True), "the index page")
    page.get_by_role("link", name=re.compile("Scaled dot-product", re.I)).first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("01_scaled_dot_product_attention.html"), page.url
    _not_blank(page.screenshot(), "notebook 01's page")
    figures = harness.images(page, "body")
    assert len(figures) >= _stored_figures(ROOT / "notebooks/01_scaled_dot_product_attention.ipynb")
    blank = [f for f in figures if f.get("error") or f.get("std", 0) < 1.0]
    assert not blank, f"figures that Chromium cannot draw, or draws blank: {blank}"


def test_no_page_fetches_from_another_host(site):
    pages = sorted(site.glob("*.html"))
    problems = [p for page in pages for p in remote_references(page)]
    assert len(pages) > 10 and not problems, "pages that need the network:\n" + "\n".join(problems)


def test_every_image_of_the_site_has_alt_text(site):
    missing = [f"{page.name}: {img.get('src', '')[:40]} alt={img.get('alt')!r}"
               for page in sorted(site.glob("*.html")) for img in assets(page).images
               if not (img.get("alt") or "").strip() or img.get("alt") == NBCONVERT_PLACEHOLDER]
    assert not missing, "images without alt text:\n" + "\n".join(missing)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no line per request in the test's output
        pass


@contextmanager
def _served(folder: Path):
    """`folder` over http on a free 127.0.0.1 port (a page's fonts need http, not file://)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


MATHJAX_DONE_JS = """() => window.MathJax && MathJax.Hub && MathJax.Hub.queue
  && MathJax.Hub.queue.pending === 0 && !MathJax.Hub.queue.running
  && document.querySelectorAll('script[type^="math/tex"]').length > 0"""
MATHS_JS = r"""() => ({
  typeset: document.querySelectorAll('script[type^="math/tex"]').length,
  rendered: document.querySelectorAll('.MathJax, .MathJax_Display').length,
  errors: document.querySelectorAll('.MathJax_Error, merror').length,
  stix: [...document.fonts].filter(f => /STIX/.test(f.family) && f.status === 'loaded').length,
  tex_left: [...document.querySelectorAll('.jp-RenderedMarkdown')].map(e => e.innerText)
            .filter(t => /\$|\\(frac|sqrt|mathrm)/.test(t)).map(t => t.slice(0, 120)),
})"""


def test_maths_is_typeset_from_the_site_with_the_network_cut_off(site, page, artifacts):
    """Notebook 01's formulas are typeset by the MathJax in site/, in its own web font; the page
    asks no other host for anything, and no request fails."""
    name = "01_scaled_dot_product_attention"
    markdown = "".join("".join(c["source"]) for c in json.loads(
        (ROOT / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
        if c["cell_type"] == "markdown")
    formulas = len(re.findall(r"\$\$.+?\$\$|\$[^$]+?\$", markdown, re.S))
    assert formulas >= 5, "notebook 01 was expected to hold formulas"
    requested, failed = [], []
    page.on("request", lambda r: requested.append(r.url))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    with _served(site) as root:
        page.goto(f"{root}/{name}.html", wait_until="load")
        try:
            page.wait_for_function(MATHJAX_DONE_JS, timeout=60_000)
        except Exception:
            artifacts.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(artifacts / "page.png"))
            raise
        page.evaluate("() => document.fonts.ready")
        maths = page.evaluate(MATHS_JS)
    # (MathJax probes web-font support with a font whose source is about:blank: no request)
    failed = [f for f in failed if not f.startswith("about:blank")]
    elsewhere = [u for u in requested if not u.startswith((root, "data:", "about:blank"))]
    assert not elsewhere and not failed, f"other hosts: {elsewhere}; failed: {failed}"
    assert maths["typeset"] >= formulas and maths["rendered"] >= formulas, (maths, formulas)
    assert not maths["errors"] and not maths["tex_left"], maths
    assert maths["stix"] > 0, f"MathJax did not load its STIX-Web font from the site: {maths}"


def test_nbconvert_default_page_shows_raw_tex_with_the_network_cut_off(page, tmp_path):
    """The negative control: nbconvert's own lab page (MathJax from a CDN) typesets nothing here,
    so the test above passes only because the site carries its MathJax."""
    exporter = HTMLExporter(template_name="lab")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(r"$\sqrt{d_k}$")])
    (tmp_path / "cdn.html").write_text(exporter.from_notebook_node(nb)[0], encoding="utf-8")
    with _served(tmp_path) as root:
        page.goto(f"{root}/cdn.html", wait_until="load")
        page.wait_for_timeout(1500)
        maths = page.evaluate(MATHS_JS)
    assert maths["typeset"] == 0 and maths["tex_left"], maths

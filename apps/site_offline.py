"""What the static site's pages load, all of it from `site/` (`apps/build_site.py` says why).

`page_exporter()`: nbconvert's HTML exporter with the lab template less its CDN scripts (require.js,
mermaid), MathJax named by `mathjax_url` as a path inside the site, and each figure's alt text
written from its output's metadata. `copy_mathjax()` puts MathJax there; `check_no_scripts()`
stops the build on a notebook that would need a script the site does not ship.
"""

from __future__ import annotations

import re
import shutil
from importlib import resources
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter

MATHJAX_PACKAGE = "jupyter_server_mathjax"  # pip install jupyter-server-mathjax (the dev extra)
MATHJAX_DIR = "mathjax"  # site/mathjax/: MathJax.js, config/, jax/, extensions/, fonts/
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
# The lab template, less the CDN scripts a page does not need (see build_site.py), with the
# fonts the shipped MathJax has, and each figure's alt text from its output's metadata. MathJax
# also writes each formula as hidden MathML for screen readers, which Chromium would style with
# TeX web fonts that the package does not ship (404s): a screen reader reads its text, not its
# font, so that copy keeps the page's font.
PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
{{ super() }}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, imageFont: null,
                                 webFont: "STIX-Web"}});
</script>
<style>.MJX_Assistive_MathML * { font-family: inherit !important; }</style>
{%- endblock html_head_js_mathjax -%}
{% block data_png scoped %}
{%- set alt = output | get_metadata('alt', 'image/png') -%}
{%- if alt -%}{{ super() | replace('<img src=', '<img alt="' ~ (alt | escape_html) ~ '" src=', 1) }}
{%- else -%}{{ super() }}{%- endif -%}
{% endblock data_png %}
"""


def page_exporter() -> HTMLExporter:
    """nbconvert's exporter for one page (a new one each time: it keeps state between calls)."""
    return HTMLExporter(template_name="lab", template_file="site.html.j2",
                        extra_loaders=[DictLoader({"site.html.j2": PAGE_TEMPLATE})],
                        mathjax_url=MATHJAX_URL)


def copy_mathjax(site: Path) -> Path:
    """MathJax as the `jupyter-server-mathjax` package ships it, into `site`/mathjax/ (its
    translations but the English one left out: the pages are in English); return that folder."""
    try:
        static = Path(str(resources.files(MATHJAX_PACKAGE) / "static"))
    except ModuleNotFoundError:
        raise SystemExit(f"the site serves MathJax from the `{MATHJAX_PACKAGE}` package, which is "
                         "not installed: `make install` (the dev extra) or "
                         "`pip install jupyter-server-mathjax`") from None
    if not (static / "MathJax.js").is_file():
        raise SystemExit(f"{static} holds no MathJax.js: is `{MATHJAX_PACKAGE}` a version that "
                         "ships MathJax 2 (0.2.x)?")
    target = site / MATHJAX_DIR
    shutil.copytree(static, target, ignore=lambda folder, names: (
        [n for n in names if n != "en"] if Path(folder).name == "localization" else []))
    return target


def check_no_scripts(nb: nbformat.NotebookNode, path: Path) -> None:
    """Stop the build on what a page would need a CDN script for (see build_site.py)."""
    for number, cell in enumerate(nb.cells, 1):
        if cell.cell_type == "markdown" and re.search(r"^\s*```\s*mermaid", cell.source, re.M):
            raise SystemExit(f"{path.name}, cell {number}: a mermaid diagram; the site loads no "
                             "mermaid script (draw it as a picture instead)")
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "application/javascript" in data or "<script" in str(data.get("text/html", "")):
                raise SystemExit(f"{path.name}, cell {number}: a JavaScript output; the site "
                                 "loads no require.js and runs no scripts of outputs (show the "
                                 "result as an image or HTML without scripts)")

"""The static site works offline (apps/build_site.py, apps/site_offline.py, apps/figure_alt.py):
its pages load every script and stylesheet from site/ itself (MathJax from the
jupyter-server-mathjax package), and every figure has alt text built from the cell that drew it.

Two notebooks are built here (maths, figures and interactive panels), to stay fast; the browser
tier (tests/browser/test_browser_site.py) checks every page of the full build and typesets the
maths in Chromium with the network cut off."""

from __future__ import annotations

import importlib
import re
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import nbformat
import pytest
from nbconvert import HTMLExporter
from project_files import ROOT
from site_html import NBCONVERT_PLACEHOLDER, assets, is_remote, local_file, remote_references

APPS = ROOT / "apps"
SAMPLE = ("01_scaled_dot_product_attention.ipynb", "03_attention_heatmaps.ipynb")


@pytest.fixture(scope="module")
def apps():
    """The site builder's modules (apps/ is a folder of scripts, not a package)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(APPS))
        return SimpleNamespace(**{name: importlib.import_module(name) for name in
                                  ("build_site", "site_offline", "figure_alt")})


@pytest.fixture(scope="module")
def small_site(apps, tmp_path_factory):
    """MathJax and the pages of the SAMPLE notebooks, as `make site` writes them."""
    out = tmp_path_factory.mktemp("site")
    apps.site_offline.copy_mathjax(out)
    entries = apps.build_site.learning_path()
    for i, entry in enumerate(entries):
        if entry.notebook is not None and entry.notebook.name in SAMPLE:
            html = apps.build_site.render_notebook(entry.notebook, entries, i)
            (out / entry.page).write_text(html, encoding="utf-8")
    assert len(list(out.glob("*.html"))) == len(SAMPLE)
    return out


def test_pages_fetch_nothing_from_another_host(small_site):
    problems = [p for page in sorted(small_site.glob("*.html")) for p in remote_references(page)]
    assert not problems, "pages that need the network:\n" + "\n".join(problems)


def test_the_remote_check_sees_a_cdn(tmp_path):
    """A test of the test: nbconvert's own lab page (CDN MathJax and require.js) is flagged."""
    exporter = HTMLExporter(template_name="lab")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$x^2$")])
    (tmp_path / "cdn.html").write_text(exporter.from_notebook_node(nb)[0], encoding="utf-8")
    found = remote_references(tmp_path / "cdn.html")
    assert any("mathjax" in f and "<script src=" in f for f in found), found
    assert any("require" in f for f in found), found


def test_the_scripts_the_pages_name_are_in_the_site(small_site, apps):
    """Each local script exists; MathJax's ?config= files and its web font are there too."""
    for page in sorted(small_site.glob("*.html")):
        found = assets(page)
        local = [u for u in found.scripts + found.stylesheets if not is_remote(u)]
        mathjax = [u for u in local if urlsplit(u).path.endswith("MathJax.js")]
        assert len(mathjax) == 1, f"{page.name} loads MathJax {len(mathjax)} times: {local}"
        for url in local:
            assert local_file(page, url).is_file(), f"{page.name}: {url} is not in the site"
        root = local_file(page, mathjax[0]).parent
        configs = parse_qs(urlsplit(mathjax[0]).query)["config"][0].split(",")
        for name in configs:
            assert (root / "config" / f"{name}.js").is_file(), f"no MathJax config {name}"
        fonts = re.findall(r'webFont:\s*"([^"]+)"', "".join(found.inline_js))
        assert fonts, f"{page.name} does not say which web font MathJax uses"
        for font in fonts:  # its metrics (jax/) and its files (fonts/)
            assert list((root / "fonts" / "HTML-CSS" / font).rglob("*.woff")), font
            assert (root / "jax" / "output" / "HTML-CSS" / "fonts" / font).is_dir(), font


def test_every_figure_has_its_own_alt_text(small_site, apps):
    for page in sorted(small_site.glob("*.html")):
        nb = apps.build_site.static_snapshots(
            nbformat.read(ROOT / "notebooks" / page.with_suffix(".ipynb").name, as_version=4))
        stored = [o.metadata["image/png"]["alt"] for c in nb.cells if c.cell_type == "code"
                  for o in c.outputs if "image/png" in o.get("data", {})]
        shown = [img.get("alt", "") for img in assets(page).images]
        assert stored and shown == stored, f"{page.name}: alt texts {shown}, expected {stored}"
        for alt in shown:
            assert alt.strip() and alt != NBCONVERT_PLACEHOLDER, f"{page.name}: alt {alt!r}"
            assert len(re.findall(r"[^\W\d_]{3,}", alt)) >= 3, f"{page.name}: alt {alt!r}"
        assert len(set(shown)) > len(shown) // 2, f"{page.name}: alt texts repeat: {shown}"


def test_a_figures_alt_text_quotes_the_title_its_cell_wrote(apps):
    """In every notebook: a figure whose cell passes a plain title="…" has that title in its
    alt text (read here with a regex, there with ast)."""
    checked = 0
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = apps.build_site.static_snapshots(nbformat.read(path, as_version=4))
        for cell in nb.cells:
            figures = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
            for out in figures:
                alt = out.metadata["image/png"]["alt"]
                assert alt.strip() and "$" not in alt, f"{path.name}: alt {alt!r}"
            titles = re.findall(r'\btitle="([^"$\\{}]{12,})"', cell.source)
            for out in figures:
                alt = out.metadata["image/png"]["alt"]
                for title in titles if not alt.startswith("Snapshot") else []:
                    assert title in alt, f"{path.name}: {title!r} is not in {alt!r}"
                    checked += 1
    assert checked >= 5, f"only {checked} figures with a plain title were checked"


def test_plain_reads_mathtext(apps):
    plain = apps.figure_alt.plain
    assert plain(r"$A = \mathrm{softmax}(QK^\top/\sqrt{d_k})$") == "A = softmax(QK^T/sqrt(d_k))"
    assert plain(r"Var($q\cdot k$), $\|\partial L/\partial s\|$") == "Var(q · k), |∂L/∂s|"


def test_describe_a_cell(apps):
    describe = apps.figure_alt.describe
    cell = ('fig, ax = plt.subplots()\nax.hist(x, bins=10)\n'
            'ax.set(title=f"seed {s}: scores on held-out sentences", xlabel="score")\n')
    text = describe(cell, set(), "Seeds")
    assert text.startswith("Histogram: “seed …: scores on held-out sentences”"), text
    assert "x score" in text and "Seeds" not in text, text
    untitled = describe("%matplotlib inline\nhead_grid(A, tokens, vmax=1.0)\n", {"head_grid"},
                        "Four heads")
    assert untitled == "Head grid (vmax = 1.0), in the section “Four heads”", untitled
    assert describe("print(1)\n", set(), "Setup") == "A figure of the section “Setup”"
    helper = describe("counts = role_places(runs)\nplot_role_places(runs)\n",
                      {"role_places", "plot_role_places"}, "Where")
    assert helper == "Plot of role places, in the section “Where”", helper


def test_panel_settings_and_snapshot_alt(apps):
    fa = apps.figure_alt
    state = {"box": {"state": {"children": ["IPY_MODEL_s", "IPY_MODEL_d", "IPY_MODEL_box"]}},
             "s": {"state": {"description": "head", "value": 2}},
             "d": {"state": {"description": "layer:", "_options_labels": ["L0", "L1"],
                             "index": 1}}}
    settings = fa.panel_settings(state, "box")
    assert settings == ["head 2", "layer L1"]
    alt = fa.alt_text("Head explorer", index=1, count=2, panel=settings)
    assert alt == "Snapshot of an interactive panel (head 2, layer L1): head explorer " \
                  "(figure 2 of 2)"
    assert len(fa.alt_text("word " * 200)) <= fa.MAX_CHARS


@pytest.mark.parametrize("cell", [
    nbformat.v4.new_markdown_cell("```mermaid\ngraph LR\n  a --> b\n```"),
    nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
        "display_data", {"application/javascript": "alert(1)"})]),
    nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output(
        "display_data", {"text/html": "<div></div><script>require(['x'])</script>"})]),
])
def test_the_build_stops_on_what_needs_a_script(apps, cell, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"), cell])
    with pytest.raises(SystemExit, match=r"x\.ipynb, cell 2"):
        apps.site_offline.check_no_scripts(nb, tmp_path / "x.ipynb")
    apps.site_offline.check_no_scripts(nbformat.v4.new_notebook(cells=nb.cells[:1]), tmp_path)

"""What a static-site page loads, read with the stdlib HTML parser (tests/test_site.py and
tests/browser/test_browser_site.py): scripts, stylesheets and inline code, and its images."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

NBCONVERT_PLACEHOLDER = "No description has been provided for this image"
# In inline CSS or script: a URL the browser would fetch (an xmlns in a data: URI is not fetched).
REMOTE_IN_CSS = re.compile(r"""(?:@import\s+|url\(\s*)["']?(?:https?:)?//""", re.I)
REMOTE_IN_JS = re.compile(r"""["'`](?:https?:)?//[^"'`\s]+["'`]""", re.I)


class PageAssets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts: list[str] = []  # src of <script src>
        self.stylesheets: list[str] = []  # href of <link> (any rel: stylesheet, preload, icon)
        self.inline_js: list[str] = []
        self.inline_css: list[str] = []
        self.images: list[dict] = []  # the attributes of each <img>
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            if a.get("src") is not None:
                self.scripts.append(a["src"])
            elif a.get("type", "text/javascript") in ("text/javascript", "module",
                                                      "text/x-mathjax-config"):
                self._in = "js"
        elif tag == "link" and a.get("href") is not None:
            self.stylesheets.append(a["href"])
        elif tag == "style":
            self._in = "css"
        elif tag == "img":
            self.images.append(a)

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._in = None

    def handle_data(self, data):
        if self._in == "js":
            self.inline_js.append(data)
        elif self._in == "css":
            self.inline_css.append(data)


def assets(path: Path) -> PageAssets:
    page = PageAssets()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def is_remote(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https") or url.startswith("//")


def remote_references(path: Path) -> list[str]:
    """Every script or stylesheet the page would fetch from another host, as "page: what"."""
    page = assets(path)
    found = [f"<script src={u}>" for u in page.scripts if is_remote(u)]
    found += [f"<link href={u}>" for u in page.stylesheets if is_remote(u)]
    found += [f"inline script names {m.group(0)}" for js in page.inline_js
              for m in REMOTE_IN_JS.finditer(js)]
    found += [f"inline style fetches {m.group(0)}…" for css in page.inline_css
              for m in REMOTE_IN_CSS.finditer(css)]
    return [f"{path.name}: {f}" for f in found]


def local_file(page: Path, url: str) -> Path:
    """The file a relative src/href of `page` names (query and fragment dropped)."""
    return page.parent / unquote(urlsplit(url).path)

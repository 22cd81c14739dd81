"""Alt text for the static site's figures (`apps/build_site.py`), read from the notebook alone.

A stored PNG keeps no trace of the words drawn in it, and the site runs no kernel, so a figure's
alt text is built from the code cell that drew it: what drew it (the course's view functions, by
name, with their numeric settings, or matplotlib's plotting methods: "attention heatmap",
"histogram"), the titles, axis labels and legend entries written in the cell (maths made plain:
"$\\sqrt{d_k}$" -> "sqrt(d_k)"), and for a snapshot of an interactive panel the settings its
controls had when the notebook was saved. A cell that writes no title adds the heading of its
section, so that no figure gets an empty "figure".
"""

from __future__ import annotations

import ast
import re

MAX_CHARS = 300  # alt text is read out whole: a sentence or two, not the whole cell
AXES_METHODS = {"hist": "histogram", "plot": "line plot", "loglog": "log-log plot",
                "semilogx": "plot with a logarithmic x axis", "semilogy": "plot with a "
                "logarithmic y axis", "bar": "bar chart", "barh": "bar chart",
                "scatter": "scatter plot", "imshow": "image", "matshow": "matrix picture",
                "errorbar": "plot with error bars", "boxplot": "box plot", "pie": "pie chart"}
TEXT_SETTERS = {"set_title": "title", "suptitle": "title", "title": "title",
                "set_xlabel": "x", "xlabel": "x", "set_ylabel": "y", "ylabel": "y"}
TEXT_KEYWORDS = {"title": "title", "suptitle": "title", "xlabel": "x", "ylabel": "y",
                 "label": "legend"}
DRAWN = re.compile(r"fig|ax|panel|view|plot|grid|image|picture")  # a name that holds a figure
VIEW_NAME = re.compile(r"^plot_|_plot$|_explorer$|_panel$|_bars$|^explore$")
TEX = [(re.compile(r"\\(?:mathrm|mathbf|mathit|text|operatorname)\{([^{}]*)\}"), r"\1"),
       (re.compile(r"\\sqrt\{([^{}]*)\}"), r"sqrt(\1)"),
       (re.compile(r"\\(?:top|intercal)\b"), "T"), (re.compile(r"\\\|"), "|"),
       (re.compile(r"\s*\\(?:cdot|times)\b\s*"), " · "), (re.compile(r"\\partial\b\s*"), "∂"),
       (re.compile(r"\\(?:to|rightarrow)\b"), "→"), (re.compile(r"\\[!,;: ]"), ""),
       (re.compile(r"\\(?:left|right)\b"), ""), (re.compile(r"\\([A-Za-z]+)"), r"\1"),
       (re.compile(r"[{}$]"), "")]


def plain(text: str) -> str:
    """Matplotlib mathtext made readable: no dollars, braces or backslash commands."""
    for pattern, repl in TEX:
        text = pattern.sub(repl, text)
    return re.sub(r"\s+", " ", text).strip()


def _parse(source: str) -> ast.Module | None:
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def _string(node: ast.AST) -> str | None:
    """The text of a string literal; an f-string's values become "…"."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values)
    return None


def _name(func: ast.AST) -> tuple[str, bool]:
    """(the called name, whether it is an attribute: ax.hist, tables.head_maps)."""
    if isinstance(func, ast.Attribute):
        return func.attr, True
    return (func.id, False) if isinstance(func, ast.Name) else ("", False)


def view_names(sources: list[str]) -> set[str]:
    """The names a notebook imports from `mha_course.viz` (functions and modules)."""
    names = set()
    for source in sources:
        tree = _parse(source)
        for node in ast.walk(tree) if tree else ():
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("mha_course.viz"):
                names.update(a.asname or a.name for a in node.names)
    return names


def _kind(call: ast.Call, views: set[str]) -> str | None:
    name, attr = _name(call.func)
    owner = call.func.value if isinstance(call.func, ast.Attribute) else None
    from_view_module = isinstance(owner, ast.Name) and owner.id in views
    if attr and name in AXES_METHODS and not from_view_module:
        return AXES_METHODS[name]
    if not (name in views or from_view_module or VIEW_NAME.search(name)):
        return None
    words = name.removeprefix("plot_").replace("_", " ")
    kind = f"plot of {words}" if name.startswith("plot_") else words
    settings = [f"{k.arg} = {k.value.value}" for k in call.keywords
                if k.arg and isinstance(k.value, ast.Constant)
                and isinstance(k.value.value, (int, float)) and not isinstance(k.value.value, bool)]
    return f"{kind} ({', '.join(settings)})" if settings else kind


def _informative(text: str, key: str) -> bool:
    """A title with words of its own, not only an f-string's values ("…: L…H…" is not); a
    label with a letter of its own ("d_k", not "…")."""
    words = re.findall(r"[^\W\d_]{3,}" if key == "title" else r"[^\W\d_]",
                       text.replace("…", " "))
    return len(words) >= (2 if key == "title" else 1)


def describe(source: str, views: set[str], heading: str) -> str:
    """One sentence or two on the figure a code cell draws. Without a title in the cell, the
    heading of its section says what it is about."""
    tree = _parse(source) or ast.Module(body=[], type_ignores=[])
    kinds: list[str] = []
    texts: dict[str, list[str]] = {"title": [], "x": [], "y": [], "legend": []}
    # a view module's helper whose result is kept as numbers (`counts = role_places(...)`)
    computed = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                and all(isinstance(t, ast.Name) and not DRAWN.search(t.id) for t in n.targets)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        kind = None if id(node) in computed else _kind(node, views)
        if kind and kind not in kinds:
            kinds.append(kind)
        name, _ = _name(node.func)
        if name in TEXT_SETTERS and node.args and _string(node.args[0]):
            texts[TEXT_SETTERS[name]].append(_string(node.args[0]))
        for k in node.keywords:
            if k.arg in TEXT_KEYWORDS and _string(k.value):
                texts[TEXT_KEYWORDS[k.arg]].append(_string(k.value))
    texts = {key: list(dict.fromkeys(plain(t) for t in ts if _informative(plain(t), key)))
             for key, ts in texts.items()}
    parts = []
    if kinds or texts["title"]:
        head = ", ".join(kinds)
        titles = "; ".join(f"“{t}”" for t in texts["title"])
        parts.append(f"{head}: {titles}" if head and titles else head or titles)
    if texts["x"] or texts["y"]:
        parts.append("axes: " + ", ".join([f"x {t}" for t in texts["x"]]
                                          + [f"y {t}" for t in texts["y"]]))
    if texts["legend"]:
        parts.append("legend: " + ", ".join(texts["legend"]))
    where = plain(heading) or "introduction"
    if not parts:
        return f"A figure of the section “{where}”"
    if not texts["title"]:
        parts[0] += f", in the section “{where}”"
    return ". ".join(p[:1].upper() + p[1:] for p in parts)


def panel_settings(state: dict, model_id: str, seen: set | None = None) -> list[str]:
    """"description value" of each control (slider, dropdown, toggle, text) in a stored panel."""
    seen = set() if seen is None else seen
    if model_id in seen or model_id not in state:
        return []
    seen.add(model_id)
    inner = state[model_id].get("state", {})
    out = []
    label = str(inner.get("description", "")).strip().rstrip(":")
    if label and "_options_labels" in inner and isinstance(inner.get("index"), int):
        labels = inner["_options_labels"]
        if 0 <= inner["index"] < len(labels):
            out.append(f"{label} {labels[inner['index']]}")
    elif label and isinstance(inner.get("value"), (int, float, str)) and not isinstance(
            inner.get("value"), bool) and str(inner["value"]).strip():
        out.append(f"{label} {inner['value']}")
    for child in inner.get("children", []) or []:
        if isinstance(child, str) and child.startswith("IPY_MODEL_"):
            out.extend(panel_settings(state, child.removeprefix("IPY_MODEL_"), seen))
    return out


def alt_text(description: str, *, index: int = 0, count: int = 1,
             panel: list[str] | None = None) -> str:
    """The alt text of figure `index` of `count` drawn by one cell; `panel` (the settings of its
    controls) when the figure is a snapshot of an interactive panel."""
    text = description
    if panel is not None:
        settings = f" ({', '.join(panel)})" if panel else ""
        text = f"Snapshot of an interactive panel{settings}: {text[:1].lower()}{text[1:]}"
    suffix = f" (figure {index + 1} of {count})" if count > 1 else ""
    room = MAX_CHARS - len(suffix)
    return (text if len(text) <= room else text[:room - 1].rstrip() + "…") + suffix

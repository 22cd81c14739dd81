"""The notebook files as the browser tier reads them: which notebooks have widgets to drive, a
clean copy to run, and what a saved notebook holds (errors, widget views). Pure file reading."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# A notebook "has widgets" for this tier when it has something to interact with: its stored widget
# state holds a control (a slider, a drop-down, an Image or Output that a control redraws...), or
# its code imports the course's panels or ipywidgets (a new notebook whose outputs were never
# stored), or it shows a widget view whose state was not stored. A notebook whose only widgets
# are display-only (a tqdm progress bar: progress, HTML and box models) is left to nbval: driving
# it in the browser would only run it a second time.
_WIDGET_CODE = re.compile(
    r"(?m)^\s*(?:import\s+ipywidgets\b|from\s+ipywidgets\b"
    r"|from\s+mha_course\.viz\.(?:widgets|explorer)\s+import\b"
    r"|from\s+mha_course\.viz\s+import\s+(?:\([^)]*|[^\n]*)"
    r"\b(?:explore|scaling_explorer|head_explorer)\b)"
)
_DISPLAY_ONLY_MODEL = re.compile(r"(Layout|Style|Box|HTML|HTMLMath|Label|Progress)Model$")


def _cells(nb: dict) -> list[dict]:
    return [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]


def _stored_models(nb: dict) -> list[str]:
    state = nb.get("metadata", {}).get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return [str(m.get("model_name", "")) for m in state.values()]


def has_widgets(path: Path) -> bool:
    """Whether the notebook has widgets to drive in the browser (see _WIDGET_CODE above)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    models = _stored_models(nb)
    if any(not _DISPLAY_ONLY_MODEL.search(name) for name in models):
        return True
    for cell in _cells(nb):
        if _WIDGET_CODE.search("".join(cell.get("source", ""))):
            return True
        if not models and any(WIDGET_VIEW in o.get("data", {}) for o in cell.get("outputs", [])):
            return True
    return False


def widget_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """Every course notebook (NN_name.ipynb) that has widgets, in file-name order."""
    return [p for p in sorted(Path(folder).glob("[0-9][0-9]_*.ipynb")) if has_widgets(p)]


def stored_slider_models(path: Path) -> int:
    """How many slider models the notebook's stored widget state holds (0 if none is stored)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return sum(1 for name in _stored_models(nb) if name.endswith("SliderModel"))


def clean_copy(src: Path, dest: Path) -> None:
    """`src` without outputs, execution counts or stored widget state, written to `dest`: what the
    browser then shows can only come from this run."""
    nb = json.loads(Path(src).read_text(encoding="utf-8"))
    for cell in _cells(nb):
        cell["outputs"] = []
        cell["execution_count"] = None
    nb.get("metadata", {}).pop("widgets", None)
    dest.write_text(json.dumps(nb, indent=1), encoding="utf-8")


def output_errors(nb: dict) -> list[str]:
    """'cell N: Ename: value' for every error output, and every non-empty code cell not run."""
    problems = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
        if "".join(cell.get("source", "")).strip() and cell.get("execution_count") is None:
            problems.append(f"cell {i}: not executed")
    return problems


def widget_view_outputs(nb: dict) -> list[list[int]]:
    """[cell index, output index] of every widget-view output."""
    return [[i, j] for i, c in enumerate(nb.get("cells", [])) if c.get("cell_type") == "code"
            for j, o in enumerate(c.get("outputs", [])) if WIDGET_VIEW in o.get("data", {})]

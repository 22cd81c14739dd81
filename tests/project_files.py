"""Readers of the files that describe and install the course (pyproject.toml, environment.yml,
README.md), shared by test_packaging.py and test_setup_and_readme.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def read_pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def read_environment() -> dict:
    with open(ROOT / "environment.yml", encoding="utf-8") as f:
        env = yaml.safe_load(f)
    assert isinstance(env, dict), "environment.yml must be a mapping"
    return env


def pip_entries(env: dict) -> list[str]:
    """The entries of environment.yml's pip section, stripped."""
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict) and "pip" in dep:
            return [str(x).strip() for x in dep["pip"] or []]
    return []


def read_readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")

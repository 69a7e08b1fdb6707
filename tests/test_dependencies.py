"""pyproject.toml declares exactly what syncd and protocol import, no more, no less."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OURS = {"syncd", "protocol"}


def imported_modules() -> set[str]:
    """Top-level names of every module imported by the shipped packages, stdlib aside."""
    names: set[str] = set()
    for package in OURS:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - OURS - set(sys.stdlib_module_names)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_dependencies_are_exactly_the_imports() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {normalized(re.split(r"[<>=!~ ;\[]", d)[0]) for d in project["dependencies"]}
    owners = packages_distributions()
    imported = {normalized(dist) for name in imported_modules() for dist in owners[name]}
    assert imported == declared

"""The distribution maps top-level folders to ``avaluma.*``; a sub-package missing from pyproject would be left out
of wheels while still importing fine from an editable checkout, so check the list against the tree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_listed() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for import_name, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([import_name, *rel.parts]))
    assert found - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    # Data folders are listed too (setuptools warns about every unlisted one): they exist but hold no Python.
    data_only = {name for name in listed - found if _folder(setuptools["package-dir"], name).is_dir()}
    assert listed - found - data_only == set(), "these listed packages have no folder"
    data = setuptools.get("package-data", {})
    assert data_only <= set(data), "a listed folder without Python must have package-data (or not be listed)"
    for name in data_only:
        assert not list(_folder(setuptools["package-dir"], name).glob("*.py")), f"{name} holds Python: add __init__.py"


def _folder(package_dir: dict[str, str], name: str) -> Path:
    """The folder of package ``name`` under the package-dir mapping: avaluma.proto.avaluma.v1 -> proto/avaluma/v1."""
    for import_name, folder in package_dir.items():
        if name == import_name or name.startswith(import_name + "."):
            rest = name[len(import_name) :].lstrip(".")
            return ROOT / folder / Path(*rest.split(".")) if rest else ROOT / folder
    return ROOT / Path(*name.split("."))


def test_no_bare_top_level_imports() -> None:
    bare = re.compile(r"^\s*(import|from)\s+(core|renderer|agent|proto)(\.|\s|$)")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("core", "renderer", "agent", "proto", "tests", "bench", "plugins", "scripts")
        if (ROOT / folder).exists()
        for path in (ROOT / folder).rglob("*.py")
        if ".venv" not in path.parts and any(bare.match(line) for line in path.read_text(encoding="utf-8").splitlines())
    ]
    assert offenders == [], "import through avaluma.* instead"

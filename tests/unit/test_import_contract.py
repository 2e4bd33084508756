"""The layer contract in pyproject.toml names the base modules of core one by one (import-linter has no "the modules
at the top of a package" selector); a new base module left out of that list would be unchecked, so compare."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_base_module_of_core_is_in_the_base_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (base,) = [c for c in config["contracts"] if c["id"] == "base"]
    (layers,) = [c for c in config["contracts"] if c["id"] == "layers"]
    layered = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    on_disk = {f"avaluma.core.{p.stem}" for p in (ROOT / "core").glob("*.py") if p.stem != "__init__"}
    assert on_disk - layered == set(base["source_modules"]), "list core's base modules in the 'base' import contract"


def test_every_core_subpackage_is_a_layer() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["id"] == "layers"]
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    on_disk = {f"avaluma.core.{p.parent.name}" for p in (ROOT / "core").glob("*/__init__.py")}
    assert on_disk <= named, "add the new core sub-package to the 'layers' import contract"

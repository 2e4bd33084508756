"""A real ``pip install`` of plugins/piper is discovered through its ``avaluma.plugins`` entry point.

The plugin is installed into a fresh ``--target`` directory from a copy whose version is stamped with a unique local
version label. Whether or not the shared virtualenv already has ``avaluma-plugin-piper`` installed (``./scripts/test``
installs it for the demo tests), only the copy we just installed can report that version, and the module it loads
must live under the target directory: the test therefore proves discovery of *this* install.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SRC = ROOT / "plugins" / "piper"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Install a version-stamped copy of plugins/piper into a target directory; return (target, version)."""
    work = tmp_path_factory.mktemp("plugin-install")
    src = work / "src"
    shutil.copytree(PLUGIN_SRC, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pyproject = src / "pyproject.toml"
    text = pyproject.read_text()
    base = re.search(r'^version = "([^"]+)"$', text, flags=re.MULTILINE)
    assert base is not None, "plugins/piper/pyproject.toml must have a static version"
    version = f"{base.group(1)}+installtest{uuid.uuid4().hex[:8]}"
    pyproject.write_text(text.replace(base.group(0), f'version = "{version}"'))
    target = work / "site"
    # Building offline with the environment's setuptools is quick; an older setuptools cannot read the PEP 639
    # license field, so then let pip fetch a current one into an isolated build environment (from PyPI).
    offline = _setuptools_at_least(77)
    build_flags = ["--no-build-isolation", "--no-index"] if offline else []
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            *build_flags,
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    return target, version


def _setuptools_at_least(major: int) -> bool:
    try:
        return int(metadata.version("setuptools").split(".")[0]) >= major
    except metadata.PackageNotFoundError:
        return False


def run_python(target: Path, args: list[str], **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVALUMA_") and k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), **env_vars)
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, check=True, cwd=target)


def plugins_json(target: Path, **env_vars: str) -> dict[str, Any]:
    result = run_python(target, ["-m", "avaluma.core.cli", "plugins", "--json"], **env_vars)
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def piper_providers(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in payload["providers"] if (p["kind"], p["name"]) == ("tts", "piper")]


def test_installed_plugin_is_found_through_its_entry_point(installed: tuple[Path, str]) -> None:
    target, version = installed
    payload = plugins_json(target)
    assert piper_providers(payload) == [
        {
            "kind": "tts",
            "name": "piper",
            "plugin": "piper",
            "distribution": "avaluma-plugin-piper",
            "version": version,
            "description": piper_providers(payload)[0]["description"],
        }
    ]
    assert {"name": "piper", "distribution": "avaluma-plugin-piper", "version": version, "builtin": False} in payload[
        "plugins"
    ]
    assert payload["failures"] == []


def test_the_loaded_code_is_the_installed_copy(installed: tuple[Path, str]) -> None:
    target, _ = installed
    out = run_python(target, ["-c", "import avaluma_plugin_piper as m; print(m.__file__)"]).stdout.strip()
    assert Path(out).resolve().is_relative_to(target.resolve())


@pytest.mark.parametrize(
    ("env_vars", "visible"),
    [
        ({"AVALUMA_PLUGINS": "piper"}, True),
        ({"AVALUMA_PLUGINS": "none"}, False),
        ({"AVALUMA_PLUGINS": "some-other-plugin"}, False),
        ({"AVALUMA_DISABLE_PLUGINS": "piper"}, False),
    ],
)
def test_allow_and_deny_lists_hide_the_installed_plugin(
    installed: tuple[Path, str], env_vars: dict[str, str], visible: bool
) -> None:
    target, version = installed
    payload = plugins_json(target, **env_vars)
    assert bool(piper_providers(payload)) is visible
    assert any(p["version"] == version for p in payload["plugins"]) is visible

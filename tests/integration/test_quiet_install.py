"""Real wheel builds (offline, the environment's setuptools): the main distribution and avaluma-livekit-plugin build
without a single setuptools warning, carry their data files, and the plugin's wheel stays small and self-contained."""

from __future__ import annotations

import importlib.metadata as metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _setuptools_at_least(major: int) -> bool:
    try:
        return int(metadata.version("setuptools").split(".")[0]) >= major
    except metadata.PackageNotFoundError:
        return False


needs_setuptools = pytest.mark.skipif(
    not _setuptools_at_least(77), reason="offline builds need setuptools >= 77 (the dev extra)"
)


def build_wheel(source: Path, out: Path) -> tuple[Path, str]:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(source)],
        cwd=out,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("*.whl")
    return wheel, result.stdout + result.stderr


@needs_setuptools
def test_the_main_wheel_builds_without_warnings_and_carries_its_data(tmp_path: Path) -> None:
    wheel, output = build_wheel(ROOT, tmp_path)
    assert "Warning" not in output and "would be ignored" not in output, output
    names = zipfile.ZipFile(wheel).namelist()
    assert "avaluma/proto/avaluma/v1/avatar_service.proto" in names
    assert "avaluma/renderer/lipsync/models/lipsync.onnx" in names


@needs_setuptools
def test_the_livekit_plugin_wheel_is_small_and_holds_only_its_package(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        ROOT / "plugins" / "livekit-plugin", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    wheel, output = build_wheel(source, tmp_path)
    assert "Warning" not in output, output
    assert wheel.stat().st_size < 64 * 1024  # tens of kB: stubs and code, no models
    names = zipfile.ZipFile(wheel).namelist()
    code = sorted(n for n in names if ".dist-info/" not in n)
    assert all(n.startswith("livekit/plugins/avaluma/") for n in code)
    assert "livekit/plugins/avaluma/_proto/avatar_service_pb2_grpc.py" in code
    assert not any(n.startswith(("livekit/__init__", "livekit/plugins/__init__")) for n in names)  # namespaces
    requires = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    deps = sorted(line.split(":", 1)[1].split(">")[0].split("<")[0].strip() for line in requires.splitlines()
                  if line.startswith("Requires-Dist:"))  # fmt: skip
    assert deps == ["grpcio", "livekit-agents", "protobuf"]

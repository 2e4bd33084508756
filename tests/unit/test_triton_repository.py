"""`avaluma models push` without a server: versions written atomically next to the shipped one, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from avaluma.core.cli import cli
from avaluma.core.errors import FailedPrecondition, InvalidArgument
from avaluma.core.ops.triton.repository import push_model_version, versions
from avaluma.renderer.lipsync.onnx_backend import DEFAULT_MODEL

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "triton" / "model_repository"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(SHIPPED, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def test_push_writes_the_next_version_with_the_adapter(repo: Path) -> None:
    pushed = push_model_version(repo, "lipsync", DEFAULT_MODEL)
    assert (pushed.version, pushed.path) == (2, repo / "lipsync" / "2")
    assert sorted(p.name for p in pushed.path.iterdir()) == ["model.onnx", "model.py"]
    assert (pushed.path / "model.py").read_text() == (repo / "lipsync" / "1" / "model.py").read_text()
    assert (pushed.path / "model.onnx").read_bytes() == DEFAULT_MODEL.read_bytes()
    # Nothing half-written is left where Triton looks.
    assert sorted(p.name for p in (repo / "lipsync").iterdir()) == ["1", "2", "config.pbtxt"]
    assert versions(repo / "lipsync") == [1, 2]


def test_push_numbers_after_the_highest_version(repo: Path) -> None:
    (repo / "lipsync" / "7").mkdir()
    assert push_model_version(repo, "lipsync", DEFAULT_MODEL).version == 8


def test_push_errors_say_what_to_fix(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        push_model_version(repo, "lipsync", tmp_path / "missing.onnx")
    with pytest.raises(FailedPrecondition, match=r"no config\.pbtxt"):
        push_model_version(repo, "other", DEFAULT_MODEL)
    shutil.rmtree(repo / "lipsync" / "1")
    with pytest.raises(FailedPrecondition, match=r"model\.py to copy"):
        push_model_version(repo, "lipsync", DEFAULT_MODEL)
    assert versions(repo / "lipsync") == []  # the failed push left nothing behind


def test_cli_refuses_a_file_that_is_not_a_lipsync_model(repo: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not an onnx model")
    result = CliRunner().invoke(cli, ["models", "push", str(bogus), "--repository", str(repo), "--no-load"])
    assert result.exit_code != 0
    assert "is not a usable lip-sync model" in result.output and "nothing was pushed" in result.output
    assert versions(repo / "lipsync") == [1]


def test_cli_push_without_load(repo: Path) -> None:
    result = CliRunner().invoke(cli, ["models", "push", str(DEFAULT_MODEL), "--repository", str(repo), "--no-load"])
    assert result.exit_code == 0, result.output
    assert "(version 2)" in result.output


def test_every_model_in_the_repository_carries_the_same_adapter() -> None:
    """Triton loads a python-backend ``model.py`` from each model's own version directory, so lipsync and
    lipsync_multi each hold a copy; the copies must not drift (the protocol differs only by config.pbtxt)."""
    repo = Path(__file__).resolve().parents[2] / "deploy" / "triton" / "model_repository"
    adapters = {p.relative_to(repo).as_posix(): p.read_text() for p in sorted(repo.glob("*/1/model.py"))}
    assert {"lipsync/1/model.py", "lipsync_multi/1/model.py"} <= set(adapters)
    assert len(set(adapters.values())) == 1, f"model.py differs between {sorted(adapters)}: copy one over the others"

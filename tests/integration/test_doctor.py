"""``avaluma doctor`` on this machine: a port held by another program and a broken avatar are FAILs that say what to do,
a running Avaluma server on the port is fine, and the lip-sync check really runs the model."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from avaluma.core.cli import cli

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()  # the CLI group configures the root logger with CliRunner's stream
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def doctor(avatars_dir: Path, grpc_port: int, tmp_path: Path) -> tuple[int, str]:
    env = {
        "AVALUMA_CONFIG": None,
        "AVALUMA_AVATARS_DIR": str(avatars_dir),
        "AVALUMA_SERVER__HOST": "127.0.0.1",
        "AVALUMA_SERVER__PORT": str(grpc_port),
        "AVALUMA_HTTP__PORT": "0",
        "AVALUMA_LIPSYNC__NAME": "onnx",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    result = CliRunner().invoke(cli, ["doctor"], env=env)
    return result.exit_code, result.output


def line(output: str, what: str) -> str:
    return next(x for x in output.splitlines() if x[6:].startswith(what))


def test_a_port_held_by_another_program_fails_with_what_to_do(avatars_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, output = doctor(avatars_dir, port, tmp_path)
    assert code == 1, output
    assert line(output, "gRPC port").startswith("FAIL")
    assert f"127.0.0.1:{port} is in use by another program" in output
    assert "pick another with --port" in output
    assert line(output, "avatars").startswith("ok") and "astronaut" in line(output, "avatars")
    assert line(output, "lip-sync (onnx)").startswith("ok")
    assert "development key" in line(output, "API keys")


async def test_a_running_avaluma_server_on_the_port_is_fine(make_server, avatars_dir: Path, tmp_path: Path) -> None:
    server = await make_server()
    port = int(server.address.rsplit(":", 1)[1])
    _, output = await asyncio.to_thread(doctor, avatars_dir, port, tmp_path)
    assert "taken by a running gRPC server" in line(output, "gRPC port")
    assert line(output, "gRPC port").startswith("ok")


def test_a_broken_avatar_is_named(avatars_dir: Path, tmp_path: Path) -> None:
    (avatars_dir / "broken.hvia").write_bytes(b"not an avatar")
    shutil.copy(next(avatars_dir.glob("*.hvia")), avatars_dir / "copy.hvia")
    code, output = doctor(avatars_dir, 0, tmp_path)
    assert code == 1
    assert line(output, "avatars").startswith("FAIL") and "broken.hvia" in line(output, "avatars")
    assert "rebuild or remove" in output

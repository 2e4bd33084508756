"""``avaluma serve`` as a real subprocess: starts on a free port, answers health, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avaluma.proto.v1 import avatar_registry_pb2, avatar_registry_pb2_grpc

pytestmark = pytest.mark.integration

#: Hang guards (not latency assertions): start-up imports the renderer and LiveKit on a slow CI box.
START_TIMEOUT_S = 120.0
GRACE_S = 2.0


async def start_serve(
    avatars_dir: Path, env: dict[str, str], http_port: str = "0"
) -> tuple[asyncio.subprocess.Process, str, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "avaluma.core.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--http-port",
        http_port,
        "--avatars-dir",
        str(avatars_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
        if not raw:
            stderr = await process.stderr.read() if process.stderr else b""
            pytest.fail(f"avaluma serve exited early: {process.returncode}\n{stderr.decode(errors='replace')}")
        line = raw.decode().strip()
        lines.append(line)
        found = re.search(r"listening on (\S+:\d+)", line)
        if found:
            return process, found.group(1), lines


def serve_env(config_home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a test server: no AVALUMA_* of the user's, and a private config home (the development key
    lives there) so tests never read or write the user's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVALUMA_")}
    env.update({"AVALUMA_SERVER__SHUTDOWN_GRACE_S": str(GRACE_S), **extra})
    if config_home is not None:
        env["XDG_CONFIG_HOME"] = str(config_home)
    return env


async def stop_and_wait(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), GRACE_S + 10)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail("avaluma serve did not stop after SIGTERM within its grace period")


async def list_avatars(address: str, key: str | None) -> list[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        registry = avatar_registry_pb2_grpc.AvatarRegistryStub(channel)
        metadata = (("x-api-key", key),) if key is not None else ()
        listed = await registry.ListAvatars(avatar_registry_pb2.ListAvatarsRequest(), metadata=metadata, timeout=10)
        return [a.id for a in listed.avatars]


async def test_serve_makes_a_development_key_once_answers_health_and_stops_on_sigterm(
    avatars_dir: Path, tmp_path: Path
) -> None:
    process, address, lines = await start_serve(avatars_dir, serve_env(tmp_path))
    try:
        assert len([line for line in lines if "made a development key" in line]) == 1
        (key,) = [line.split("=", 1)[1] for line in lines if line.startswith("AVALUMA_API_KEY=")]
        async with grpc.aio.insecure_channel(address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert await list_avatars(address, key) == ["astronaut"]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await list_avatars(address, None)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        returncode = await stop_and_wait(process)
    assert returncode == 0
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert key not in stderr, "the API key must never be logged"
    assert "server stopped" in stderr
    stored = tmp_path / "avaluma" / "dev-api-key"
    assert stored.read_text().strip() == key
    assert stored.stat().st_mode & 0o777 == 0o600

    # A restart keeps the key (clients configured with it go on working) and does not print it again.
    process, address, lines = await start_serve(avatars_dir, serve_env(tmp_path))
    try:
        assert not [line for line in lines if key in line]
        assert any("using the development key in" in line for line in lines)
        assert await list_avatars(address, key) == ["astronaut"]
    finally:
        assert await stop_and_wait(process) == 0


async def test_a_busy_http_port_is_one_error_naming_it_and_nothing_says_listening(avatars_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "avaluma.core.cli", "serve", "--host", "127.0.0.1", "--port", "0",
            "--http-port", str(port), "--avatars-dir", str(avatars_dir),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=serve_env(AVALUMA_API_KEYS="k"),
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), START_TIMEOUT_S)
    assert process.returncode != 0
    assert "listening" not in stdout.decode()
    errors = [line for line in stderr.decode().splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert f"cannot listen for HTTP on 127.0.0.1:{port} (Address already in use)" in errors[0]
    assert "Pick another with --http-port" in errors[0]


async def test_serve_uses_configured_keys_and_prints_none(avatars_dir: Path) -> None:
    process, address, lines = await start_serve(avatars_dir, serve_env(AVALUMA_API_KEYS="k1,k2"))
    try:
        assert not [line for line in lines if "generated" in line]
        async with grpc.aio.insecure_channel(address) as channel:
            registry = avatar_registry_pb2_grpc.AvatarRegistryStub(channel)
            listed = await registry.ListAvatars(
                avatar_registry_pb2.ListAvatarsRequest(), metadata=(("x-api-key", "k2"),), timeout=10
            )
            assert len(listed.avatars) == 1
    finally:
        assert await stop_and_wait(process) == 0


async def test_serve_skips_a_corrupt_avatar_and_still_starts(avatars_dir: Path) -> None:
    (avatars_dir / "broken.hvia").write_bytes(b"this is not an avatar")
    process, address, _ = await start_serve(avatars_dir, serve_env(AVALUMA_API_KEYS="k"))
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            registry = avatar_registry_pb2_grpc.AvatarRegistryStub(channel)
            listed = await registry.ListAvatars(
                avatar_registry_pb2.ListAvatarsRequest(), metadata=(("x-api-key", "k"),), timeout=10
            )
            assert [a.id for a in listed.avatars] == ["astronaut"]
    finally:
        assert await stop_and_wait(process) == 0
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert "skipping avatar file that failed to load" in stderr and "broken.hvia" in stderr

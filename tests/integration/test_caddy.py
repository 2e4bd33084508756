"""The real Caddy (Debian's package) with deploy/caddy/Caddyfile in front of a real Avaluma server.

Caddy terminates HTTPS with its internal CA ("localhost" never goes to an ACME CA) and proxies gRPC over h2c to the
server's gRPC port and everything else to its HTTP API, both on free ports. Clients trust only that CA's root, so
a passing call proves the certificate chain too. Caddy's data directory is private to the test; its root is never
installed into the system's trust store (``skip_install_trust`` in the Caddyfile).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avaluma.core.server.app import RunningServer
from avaluma.proto.v1 import avatar_registry_pb2, avatar_registry_pb2_grpc, render_service_pb2, render_service_pb2_grpc

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CADDYFILE = ROOT / "deploy" / "caddy" / "Caddyfile"
CADDY = shutil.which("caddy")
NO_CADDY = (
    "caddy is not installed: `apt-get install caddy` (Debian 12 ships 2.6; ./scripts/test installs it where it can)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Caddy:
    https_port: int
    http_port: int
    root_cert: bytes
    log: Path

    @property
    def target(self) -> str:
        return f"localhost:{self.https_port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.root_cert.decode())


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def _ready_root(data: Path, https_port: int) -> bytes | None:
    """Caddy's internal root once Caddy listens and has issued the certificate for localhost, else None."""
    root = data / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    if not (root.exists() and list((data / "caddy" / "certificates").rglob("localhost.crt"))):
        return None
    try:
        with socket.create_connection(("127.0.0.1", https_port), timeout=0.5):
            return root.read_bytes()
    except OSError:
        return None


async def _wait_until_serving(process: asyncio.subprocess.Process, data: Path, https_port: int, log: Path) -> bytes:
    for _ in range(300):  # up to ~30 s on a loaded CI machine
        if process.returncode is not None:
            raise AssertionError(f"caddy exited with {process.returncode}:\n{_tail(log)}")
        root = _ready_root(data, https_port)
        if root is not None:
            return root
        await asyncio.sleep(0.1)
    raise AssertionError(f"caddy did not come up:\n{_tail(log)}")


@pytest.fixture
async def start_caddy(tmp_path: Path) -> AsyncIterator[object]:
    if CADDY is None:
        pytest.skip(NO_CADDY)
    processes: list[asyncio.subprocess.Process] = []

    async def start(*, grpc_upstream: str, http_upstream: str) -> Caddy:
        home = tmp_path / "caddy-home"
        https_port, http_port = free_port(), free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"),
            "AVALUMA_DOMAIN": "localhost",
            "AVALUMA_GRPC_UPSTREAM": grpc_upstream,
            "AVALUMA_HTTP_UPSTREAM": http_upstream,
            "LIVEKIT_UPSTREAM": "127.0.0.1:9",  # not used here
            "CADDY_HTTPS_PORT": str(https_port),
            "CADDY_HTTP_PORT": str(http_port),
            "CADDY_ADMIN": "off",
        }
        log = tmp_path / "caddy.log"
        with open(log, "wb") as out:  # noqa: ASYNC230 - creating an empty log file
            process = await asyncio.create_subprocess_exec(
                CADDY, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile",
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        processes.append(process)
        root = await _wait_until_serving(process, home / "data", https_port, log)
        return Caddy(https_port=https_port, http_port=http_port, root_cert=root, log=log)

    yield start
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest.fixture
async def proxied(server: RunningServer, start_caddy) -> Caddy:
    # No HTTP API in this fixture: the gRPC tests point the HTTP upstream at a closed port.
    return await start_caddy(grpc_upstream=server.address, http_upstream=f"127.0.0.1:{free_port()}")


@pytest.fixture
async def tls_channel(proxied: Caddy) -> AsyncIterator[grpc.aio.Channel]:
    credentials = grpc.ssl_channel_credentials(root_certificates=proxied.root_cert)
    async with grpc.aio.secure_channel(proxied.target, credentials) as channel:
        yield channel


async def test_grpc_health_and_unary_calls_pass_through_https(tls_channel: grpc.aio.Channel, auth) -> None:
    health = health_pb2_grpc.HealthStub(tls_channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    registry = avatar_registry_pb2_grpc.AvatarRegistryStub(tls_channel)
    avatars = await registry.ListAvatars(avatar_registry_pb2.ListAvatarsRequest(), metadata=auth, timeout=10)
    assert len(avatars.avatars) >= 1


async def test_grpc_errors_keep_their_status_and_message_through_the_proxy(tls_channel: grpc.aio.Channel) -> None:
    registry = avatar_registry_pb2_grpc.AvatarRegistryStub(tls_channel)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await registry.ListAvatars(avatar_registry_pb2.ListAvatarsRequest(), timeout=10)  # no API key
    assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "x-api-key" in (failed.value.details() or "")


def _speech(seconds: float, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = 0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * np.sin(2 * np.pi * 180 * t)
    return (samples * 32767).astype("<i2").tobytes()


async def test_a_render_stream_streams_frames_both_ways_through_the_proxy(
    tls_channel: grpc.aio.Channel, server: RunningServer, auth
) -> None:
    async def requests() -> AsyncIterator[render_service_pb2.RenderRequest]:
        yield render_service_pb2.RenderRequest(config=render_service_pb2.RenderConfig(avatar_id=server.store.ids()[0]))
        pcm = _speech(0.4)
        for start in range(0, len(pcm), 3200):
            yield render_service_pb2.RenderRequest(
                audio=render_service_pb2.AudioChunk(pcm=pcm[start : start + 3200], sample_rate=16_000, num_channels=1)
            )
        yield render_service_pb2.RenderRequest(segment_end=render_service_pb2.SegmentEnd())

    stub = render_service_pb2_grpc.RenderServiceStub(tls_channel)
    kinds = [r.WhichOneof("response") async for r in stub.Render(requests(), metadata=auth, timeout=60)]
    assert kinds[0] == "started" and kinds[-1] == "playback_finished"
    assert kinds.count("video") == kinds.count("audio") == 10  # 0.4 s at 25 fps


def _get(caddy: Caddy, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    connection = http.client.HTTPSConnection("localhost", caddy.https_port, context=caddy.ssl_context(), timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


async def test_plain_http_redirects_to_https(proxied: Caddy) -> None:
    def fetch() -> tuple[int, str]:
        connection = http.client.HTTPConnection("localhost", proxied.http_port, timeout=10)
        try:
            connection.request("GET", "/health")
            response = connection.getresponse()
            return response.status, response.getheader("Location", "")
        finally:
            connection.close()

    status, location = await asyncio.to_thread(fetch)
    assert status in (301, 308) and location.startswith("https://localhost")


@pytest.fixture
async def http_api(server: RunningServer) -> AsyncIterator[int]:
    try:
        from avaluma.core.server.http_api import start_http_api
    except ImportError:
        pytest.skip("the server's HTTP API (avaluma.core.server.http_api) is not in this tree yet")
    slots, keys = getattr(server, "slots", None), getattr(server, "keys", None)
    if slots is None or keys is None:
        pytest.skip("RunningServer does not expose slots/keys for the HTTP API yet")
    running = await start_http_api(server.sessions, slots, keys, host="127.0.0.1", port=0)
    try:
        yield running.port
    finally:
        await running.stop()


@pytest.fixture
async def proxied_both(server: RunningServer, http_api: int, start_caddy) -> Caddy:
    return await start_caddy(grpc_upstream=server.address, http_upstream=f"127.0.0.1:{http_api}")


async def test_the_http_api_is_served_over_https_next_to_grpc(proxied_both: Caddy, api_key: str) -> None:
    status, _, body = await asyncio.to_thread(_get, proxied_both, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"

    status, _, body = await asyncio.to_thread(
        _get, proxied_both, "POST", "/v1/livekit/stop-avatar", b'{"session_id": "nope"}',
        {"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 401 and json.loads(body)["code"] == "UNAUTHENTICATED"

    status, _, body = await asyncio.to_thread(
        _get, proxied_both, "POST", "/v1/livekit/stop-avatar", b'{"session_id": "nope"}',
        {"Content-Type": "application/json", "api-secret": api_key},
    )  # fmt: skip
    assert status == 404 and json.loads(body)["code"] == "NOT_FOUND"

    # The same :443 still answers gRPC.
    credentials = grpc.ssl_channel_credentials(root_certificates=proxied_both.root_cert)
    async with grpc.aio.secure_channel(proxied_both.target, credentials) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

"""Fixtures for integration tests: a real gRPC server on a free port (in-process), real avatars, real backend."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest

from avaluma.core.config import Config, ServerConfig, SessionsConfig
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.live.sessions import RoomConnector, connect_livekit
from avaluma.core.server.app import RunningServer, start_server
from avaluma.renderer.lipsync.energy import EnergyBackend

ROOT = Path(__file__).resolve().parents[2]
DEMO_AVATARS = ROOT / "assets" / "avatars"
API_KEY = "test-key-integration"

MakeServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture(scope="session")
def api_key() -> str:
    return API_KEY


@pytest.fixture(scope="session")
def auth() -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the test server's API key."""
    return (("x-api-key", API_KEY),)


@pytest.fixture(scope="session")
def demo_avatar_path() -> Path:
    files = sorted(DEMO_AVATARS.glob("*.hvia"))
    if not files:
        pytest.skip(f"no demo avatar in {DEMO_AVATARS}: run scripts/build_demo_avatars.py")
    return files[0]


@pytest.fixture
def avatars_dir(tmp_path: Path, demo_avatar_path: Path) -> Path:
    """A private copy of one demo avatar (tests upload and delete; the repository's files stay untouched)."""
    directory = tmp_path / "avatars"
    directory.mkdir()
    shutil.copy(demo_avatar_path, directory / demo_avatar_path.name)
    return directory


def server_config(avatars_dir: Path, **server: object) -> Config:
    settings = {"host": "127.0.0.1", "port": 0, "shutdown_grace_s": 1.0, **server}
    # measure_budget off: each test server would otherwise spend a second of CPU timing renders at start-up.
    return Config(
        server=ServerConfig(**settings),  # type: ignore[arg-type]
        sessions=SessionsConfig(measure_budget=False),
        avatars_dir=avatars_dir,
        api_keys=(API_KEY,),
    )


@pytest.fixture
async def make_server(avatars_dir: Path) -> AsyncIterator[MakeServer]:
    """Start servers on free ports (``make_server(max_sessions=1, room_connector=...)``); all are stopped after."""
    started: list[RunningServer] = []

    async def make(*, room_connector: RoomConnector = connect_livekit, **server: object) -> RunningServer:
        running = await start_server(
            server_config(avatars_dir, **server),
            store=AvatarStore.open(avatars_dir),
            lipsync_backend=EnergyBackend,
            room_connector=room_connector,
        )
        started.append(running)
        return running

    yield make
    for running in started:
        await running.stop(0.5)


@pytest.fixture
async def server(make_server: MakeServer) -> RunningServer:
    return await make_server()


@pytest.fixture
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as ch:
        yield ch

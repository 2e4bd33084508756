"""Per-session frame size and fps (issue 16, item 2) through gRPC StartSession, the HTTP API and the LiveKit plugin,
on a real server on free ports: the session publishes its frames scaled to the asked size at the asked fps (what
the real ``rtc.VideoSource`` is handed), GetSession reports them, a size that would stretch the face or is out of
range is one clear error with nothing started, and admission counts a smaller or slower session as less of the
measured capacity. The only stand-in is LiveKit's room (a recording ``rtc.Room`` look-alike: no LiveKit server runs
here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest
from livekit import rtc

from avaluma.core.config import Config, ServerConfig, SessionsConfig
from avaluma.core.live.admission import SessionBudget
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.live.livekit_session import LiveKitRuntime
from avaluma.core.server.app import RunningServer, start_server
from avaluma.core.server.http_api import start_http_api
from avaluma.proto.v1 import avatar_service_pb2, avatar_service_pb2_grpc, common_pb2
from avaluma.renderer.lipsync.energy import EnergyBackend

api = pytest.importorskip("livekit.api", reason="the server extra (livekit-api) is needed to mint tokens")

from recording_room import LK_KEY, LK_SECRET, Rooms, token  # noqa: E402  (needs livekit.api)

pytestmark = pytest.mark.integration

URL = "ws://lk.example:7880"


@pytest.fixture
async def server(avatars_dir: Path) -> AsyncIterator[RunningServer]:
    config = Config(
        server=ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.5),
        sessions=SessionsConfig(measure_budget=False),
        avatars_dir=avatars_dir,
        api_keys=("test-key-integration",),
    )
    running = await start_server(
        config, store=AvatarStore.open(avatars_dir), lipsync_backend=EnergyBackend, room_connector=Rooms()
    )
    try:
        yield running
    finally:
        await running.stop(0.5)


async def published_frames(server: RunningServer, session_id: str, count: int = 3) -> list[tuple[int, int]]:
    """Sizes of the next ``count`` frames the session's real ``rtc.VideoSource`` captures."""
    runtime = server.sessions.get(session_id).runtime
    assert isinstance(runtime, LiveKitRuntime)
    source = runtime.sink.video_source
    capture, sizes, enough = source.capture_frame, [], asyncio.Event()

    def recording(frame: rtc.VideoFrame, **kwargs: Any) -> None:
        sizes.append((frame.width, frame.height))
        if len(sizes) >= count:
            enough.set()
        capture(frame, **kwargs)

    source.capture_frame = recording  # type: ignore[method-assign]
    async with asyncio.timeout(20):
        await enough.wait()
    return sizes


async def audio_per_frame(server: RunningServer, session_id: str, count: int = 3) -> list[int]:
    """Samples of the next ``count`` audio frames the session's real ``rtc.AudioSource`` captures (one per video
    frame)."""
    runtime = server.sessions.get(session_id).runtime
    assert isinstance(runtime, LiveKitRuntime)
    source = runtime.sink.audio_source
    capture, samples, enough = source.capture_frame, [], asyncio.Event()

    async def recording(frame: rtc.AudioFrame) -> None:
        samples.append(frame.samples_per_channel)
        if len(samples) >= count:
            enough.set()
        await capture(frame)

    source.capture_frame = recording  # type: ignore[method-assign]
    async with asyncio.timeout(20):
        await enough.wait()
    return samples


def avatar_size(avatars_dir: Path) -> tuple[int, int]:
    """The size of the server's one (default) avatar."""
    store = AvatarStore.open(avatars_dir)
    avatar = store.get(store.ids()[0])
    return avatar.width, avatar.height


async def test_grpc_start_publishes_the_asked_frame_size_and_fps(
    server: RunningServer, avatars_dir: Path, auth: Any
) -> None:
    width, height = avatar_size(avatars_dir)
    start = avatar_service_pb2.StartSessionRequest
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = avatar_service_pb2_grpc.AvatarServiceStub(channel)
        half = common_pb2.RenderOptions(width=width // 2, height=height // 2, fps=15)
        small = await stub.StartSession(start(livekit_url=URL, livekit_token=token("a1"), render=half), metadata=auth)
        plain = await stub.StartSession(start(livekit_url=URL, livekit_token=token("a2")), metadata=auth)
        assert set(await published_frames(server, small.session_id)) == {(width // 2, height // 2)}
        assert set(await published_frames(server, plain.session_id)) == {(width, height)}
        info = await stub.GetSession(avatar_service_pb2.GetSessionRequest(session_id=small.session_id), metadata=auth)
        assert (info.render.width, info.render.height, info.render.fps) == (width // 2, height // 2, 15)
        # Asked for the avatar's own size (0 x 0): GetSession says which size that is.
        info = await stub.GetSession(avatar_service_pb2.GetSessionRequest(session_id=plain.session_id), metadata=auth)
        assert (info.render.width, info.render.height) == (width, height)
        # Each published frame carries the audio that plays with it: 1/15 s of it at 15 fps.
        assert set(await audio_per_frame(server, small.session_id)) == {info.render.audio_sample_rate // 15}

        for bad, says in (
            (common_pb2.RenderOptions(width=width, height=height // 2), "would stretch avatar"),
            (common_pb2.RenderOptions(width=width * 4, height=height * 4), "is out of range for avatar"),
            (common_pb2.RenderOptions(width=width // 2), "must be set together"),
            (common_pb2.RenderOptions(fps=90), "render.fps 90 is out of range"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.StartSession(start(livekit_url=URL, livekit_token=token("a3"), render=bad), metadata=auth)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert says in str(refused.value.details())
        assert len(server.sessions.list()) == 2  # refused starts joined nothing


async def test_admission_counts_smaller_sessions_as_less(server: RunningServer, avatars_dir: Path, auth: Any) -> None:
    width, height = avatar_size(avatars_dir)
    assert server.slots is not None
    # A budget as measured: 2.5 sessions at the avatar's size fit; rendering is 10 % of a session.
    budget = SessionBudget(
        cpu_per_session=0.1, cores=5, target_utilization=0.5, fps=25, publish_cost=0.9, pixels=width * height
    )
    server.slots.set_budget(budget)
    start = avatar_service_pb2.StartSessionRequest
    quarter = common_pb2.RenderOptions(width=width // 2, height=height // 2)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = avatar_service_pb2_grpc.AvatarServiceStub(channel)
        started = []
        for i in range(3):  # a quarter of the pixels: 0.82 of a session each, three fit where two full ones do
            response = await stub.StartSession(
                start(livekit_url=URL, livekit_token=token(f"q{i}"), render=quarter), metadata=auth
            )
            started.append(response.session_id)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.StartSession(start(livekit_url=URL, livekit_token=token("q3"), render=quarter), metadata=auth)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "smaller frame (render.width/height) or a lower fps" in str(refused.value.details())
        for session_id in started:
            await stub.StopSession(avatar_service_pb2.StopSessionRequest(session_id=session_id), metadata=auth)
        fast = common_pb2.RenderOptions(fps=50)  # twice the frames: 1.78 sessions, a quarter-size one no longer fits
        await stub.StartSession(start(livekit_url=URL, livekit_token=token("f0"), render=fast), metadata=auth)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.StartSession(start(livekit_url=URL, livekit_token=token("f1"), render=quarter), metadata=auth)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_http_start_takes_a_render_object(server: RunningServer, avatars_dir: Path, api_key: str) -> None:
    width, height = avatar_size(avatars_dir)
    served = await start_http_api(server.sessions, server.slots, server.keys, host="127.0.0.1", port=0)
    base = f"http://127.0.0.1:{served.port}/v1/livekit/start-avatar"
    body = {"livekit_url": URL, "livekit_token": token("h1")}
    try:
        async with aiohttp.ClientSession(headers={"api-secret": api_key}) as http:
            for render, says in (
                ({"width": width, "height": height // 2}, "would stretch avatar"),
                ({"widht": 10}, "render has unknown fields widht"),
                ({"fps": "25"}, "render.fps must be a non-negative whole number"),
                ({"fps": 0.5}, "render.fps must be a non-negative whole number"),
                ({"fps": 61}, "render.fps 61 is out of range"),
                ("256x320", "render must be a JSON object"),
            ):
                async with http.post(base, json={**body, "render": render}) as response:
                    answer = await response.json()
                assert response.status == 400 and answer["code"] == "INVALID_ARGUMENT", answer
                assert says in answer["message"]
            assert server.sessions.list() == []
            render = {"width": width // 2, "height": height // 2, "fps": 20}
            async with http.post(base, json={**body, "render": render}) as response:
                started = await response.json()
            assert response.status == 200, started
        session = server.sessions.get(started["session_id"])
        assert (session.render.width, session.render.height, session.render.fps) == (width // 2, height // 2, 20)
        assert set(await published_frames(server, session.id)) == {(width // 2, height // 2)}
    finally:
        await served.stop()


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_the_plugins_frame_options_reach_the_session(
    server: RunningServer, avatars_dir: Path, api_key: str, transport: str
) -> None:
    from livekit.agents import AgentSession
    from livekit.agents.testing import fake_job_context
    from livekit.plugins import avaluma

    width, height = avatar_size(avatars_dir)
    served = None
    url = server.address
    if transport == "http":
        served = await start_http_api(server.sessions, server.slots, server.keys, host="127.0.0.1", port=0)
        url = f"http://127.0.0.1:{served.port}"
    try:
        avatar = avaluma.AvatarSession(
            api_url=url, api_key=api_key, video_width=width // 4, video_height=height // 4, video_fps=10
        )
        room = rtc.Room()
        with fake_job_context(room=room):
            await avatar.start(
                AgentSession(),
                room=room,
                agent_identity="agent-1",
                livekit_url=URL,
                livekit_api_key=LK_KEY,
                livekit_api_secret=LK_SECRET,
            )
            assert avatar.session_id is not None
            session = server.sessions.get(avatar.session_id)
            assert (session.render.width, session.render.height, session.render.fps) == (width // 4, height // 4, 10)
            assert set(await published_frames(server, avatar.session_id, count=2)) == {(width // 4, height // 4)}
            await avatar.aclose()
    finally:
        if served is not None:
            await served.stop()

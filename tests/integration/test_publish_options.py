"""Per-session publishing options (issue 16, item 2) through gRPC StartSession, the HTTP API and the LiveKit plugin, on
a real server on free ports: the request's codec / bitrate / simulcast go over the server's ``sessions.publish``,
reach the avatar_video track's publish options, show in GetSession, and bad values are one clear error with nothing
started. The only stand-in is LiveKit's room (a recording ``rtc.Room`` look-alike: no LiveKit server runs here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest
from livekit import rtc

from avaluma.core.config import Config, PublishConfig, ServerConfig, SessionsConfig
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.live.sessions import VideoPublishing
from avaluma.core.server.app import RunningServer, start_server
from avaluma.core.server.http_api import start_http_api
from avaluma.proto.v1 import avatar_service_pb2, avatar_service_pb2_grpc
from avaluma.renderer.lipsync.energy import EnergyBackend

api = pytest.importorskip("livekit.api", reason="the server extra (livekit-api) is needed to mint tokens")

from recording_room import LK_KEY, LK_SECRET, Rooms, token  # noqa: E402  (needs livekit.api)

pytestmark = pytest.mark.integration


@pytest.fixture
async def serve(avatars_dir: Path) -> AsyncIterator[tuple[RunningServer, Rooms]]:
    rooms = Rooms()
    config = Config(
        server=ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=0.5),
        # The server's defaults: H.264, simulcast on, LiveKit's bitrate.
        sessions=SessionsConfig(measure_budget=False, publish=PublishConfig(video_codec="h264")),
        avatars_dir=avatars_dir,
        api_keys=("test-key-integration",),
    )
    server = await start_server(
        config, store=AvatarStore.open(avatars_dir), lipsync_backend=EnergyBackend, room_connector=rooms
    )
    try:
        yield server, rooms
    finally:
        await server.stop(0.5)


async def test_grpc_start_publishes_as_asked_over_the_servers_defaults(serve: Any, auth: Any) -> None:
    server, rooms = serve
    start = avatar_service_pb2.StartSessionRequest
    publish = avatar_service_pb2.PublishOptions
    url = "ws://lk.example:7880"
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = avatar_service_pb2_grpc.AvatarServiceStub(channel)

        plain = await stub.StartSession(start(livekit_url=url, livekit_token=token("a1")), metadata=auth)
        assert server.sessions.get(plain.session_id).video == VideoPublishing("h264", 0, True)
        assert rooms.video().video_codec == rtc.VideoCodec.H264 and rooms.video().simulcast

        asked = publish(video_codec=avatar_service_pb2.VIDEO_CODEC_VP8, video_max_bitrate=900_000, simulcast=False)
        chosen = await stub.StartSession(
            start(livekit_url=url, livekit_token=token("a2"), publish=asked), metadata=auth
        )
        video = rooms.video()
        assert video.video_codec == rtc.VideoCodec.VP8 and not video.simulcast
        assert video.video_encoding.max_bitrate == 900_000
        info = await stub.GetSession(avatar_service_pb2.GetSessionRequest(session_id=chosen.session_id), metadata=auth)
        assert info.publish == asked
        info = await stub.GetSession(avatar_service_pb2.GetSessionRequest(session_id=plain.session_id), metadata=auth)
        assert info.publish == publish(video_codec=avatar_service_pb2.VIDEO_CODEC_H264, simulcast=True)

        for bad, says in (
            (publish(video_max_bitrate=1_000), "publish.video_max_bitrate 1000 is out of range"),
            (publish(video_codec=9), "publish.video_codec 9 is not a known VideoCodec"),  # type: ignore[arg-type]
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info_error:
                await stub.StartSession(start(livekit_url=url, livekit_token=token("a3"), publish=bad), metadata=auth)
            assert info_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert says in str(info_error.value.details())
        assert len(rooms.rooms) == 2 and len(server.sessions.list()) == 2  # refused starts joined nothing


async def test_http_start_takes_a_publish_object(serve: Any, api_key: str) -> None:
    server, rooms = serve
    served = await start_http_api(server.sessions, server.slots, server.keys, host="127.0.0.1", port=0)
    base = f"http://127.0.0.1:{served.port}/v1/livekit/start-avatar"
    body = {"livekit_url": "ws://lk.example:7880", "livekit_token": token("h1")}
    try:
        async with aiohttp.ClientSession(headers={"api-secret": api_key}) as http:
            for publish, says in (
                ({"video_codec": "av1"}, "publish.video_codec: video codec must be one of vp8, h264, got 'av1'"),
                ({"videocodec": "vp8"}, "publish has unknown fields videocodec"),
                ({"simulcast": "no"}, "publish.simulcast must be true or false"),
                ({"video_max_bitrate": -5}, "publish.video_max_bitrate must be a non-negative whole number"),
                ("h264", "publish must be a JSON object"),
            ):
                async with http.post(base, json={**body, "publish": publish}) as response:
                    answer = await response.json()
                assert response.status == 400 and answer["code"] == "INVALID_ARGUMENT", answer
                assert says in answer["message"]
            assert server.sessions.list() == []
            publish = {"video_codec": "vp8", "video_max_bitrate": 700_000, "simulcast": False}
            async with http.post(base, json={**body, "publish": publish}) as response:
                started = await response.json()
            assert response.status == 200, started
        assert server.sessions.get(started["session_id"]).video == VideoPublishing("vp8", 700_000, False)
        assert rooms.video().video_codec == rtc.VideoCodec.VP8
    finally:
        await served.stop()


@pytest.mark.parametrize("transport", ["grpc", "http"])
async def test_the_plugins_options_reach_the_track(serve: Any, api_key: str, transport: str) -> None:
    from livekit.agents import AgentSession
    from livekit.agents.testing import fake_job_context
    from livekit.plugins import avaluma

    server, rooms = serve
    served = None
    url = server.address
    if transport == "http":
        served = await start_http_api(server.sessions, server.slots, server.keys, host="127.0.0.1", port=0)
        url = f"http://127.0.0.1:{served.port}"
    try:
        avatar = avaluma.AvatarSession(api_url=url, api_key=api_key, video_codec="vp8", simulcast=False)
        room = rtc.Room()
        with fake_job_context(room=room):
            await avatar.start(
                AgentSession(),
                room=room,
                agent_identity="agent-1",
                livekit_url="ws://lk.example:7880",
                livekit_api_key=LK_KEY,
                livekit_api_secret=LK_SECRET,
            )
            assert avatar.session_id is not None
            assert server.sessions.get(avatar.session_id).video == VideoPublishing("vp8", 0, False)
            assert rooms.video().video_codec == rtc.VideoCodec.VP8 and not rooms.video().simulcast
            await avatar.aclose()
    finally:
        if served is not None:
            await served.stop()

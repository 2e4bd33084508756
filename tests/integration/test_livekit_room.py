"""A real LiveKit room: the server joins it, publishes avatar_video + avatar_audio, plays a segment sent on
lk.audio_stream and answers lk.playback_started / lk.playback_finished and lk.clear_buffer.

Runs only where LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET point at a LiveKit server (see docs/livekit.md:
``livekit-server --dev`` gives ws://localhost:7880, devkey, secret). No LiveKit server can be installed on CI."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from typing import Any

import numpy as np
import pytest

from avaluma.proto.v1 import avatar_service_pb2, avatar_service_pb2_grpc

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(os.environ.get(v) for v in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")),
        reason="needs a LiveKit server: set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET (docs/livekit.md)",
    ),
]
HANG_GUARD_S = 30.0


def mint(identity: str, room: str, *, agent: str | None = None, kind: str | None = None) -> str:
    from livekit.plugins.avaluma import mint_token

    return mint_token(
        api_key=os.environ["LIVEKIT_API_KEY"],
        api_secret=os.environ["LIVEKIT_API_SECRET"],
        room=room,
        identity=identity,
        on_behalf_of=agent,
        kind=kind,
        ttl_s=600,
    )


async def test_a_segment_round_trip_in_a_real_room(server: Any, channel: Any, auth: Any) -> None:
    from livekit import rtc

    room_name = "avaluma-test-" + secrets.token_hex(4)
    url = os.environ["LIVEKIT_URL"]
    agent = rtc.Room()
    await agent.connect(url, mint("agent-1", room_name, kind="agent"))
    rpcs: list[tuple[str, str]] = []
    got = asyncio.Event()

    def record(method: str) -> Any:
        async def handler(data: rtc.RpcInvocationData) -> str:
            rpcs.append((method, data.payload))
            got.set()
            return "ok"

        return handler

    for method in ("lk.playback_started", "lk.playback_finished"):
        agent.local_participant.register_rpc_method(method, record(method))
    video = asyncio.Event()
    agent.on("track_subscribed", lambda track, *_: video.set() if track.kind == rtc.TrackKind.KIND_VIDEO else None)
    try:
        stub = avatar_service_pb2_grpc.AvatarServiceStub(channel)
        started = await stub.StartSession(
            avatar_service_pb2.StartSessionRequest(
                livekit_url=url, livekit_token=mint("avatar-1", room_name, agent="agent-1")
            ),
            metadata=auth,
        )
        await asyncio.wait_for(video.wait(), HANG_GUARD_S)
        t = np.arange(24_000) / 24_000
        pcm = (8000 * np.sin(2 * np.pi * 150 * t)).astype("<i2").tobytes()
        writer = await agent.local_participant.stream_bytes(
            name="AUDIO_1",
            topic="lk.audio_stream",
            destination_identities=["avatar-1"],
            attributes={"sample_rate": "24000", "num_channels": "1"},
        )
        await writer.write(pcm)
        await writer.aclose()
        while not any(m == "lk.playback_finished" for m, _ in rpcs):
            got.clear()
            await asyncio.wait_for(got.wait(), HANG_GUARD_S)
        assert rpcs[0][0] == "lk.playback_started"
        finished = json.loads(rpcs[-1][1])
        assert finished["interrupted"] is False and finished["playback_position"] == pytest.approx(1.0, abs=0.05)

        # A clear while idle is answered too.
        await agent.local_participant.perform_rpc(destination_identity="avatar-1", method="lk.clear_buffer", payload="")
        while sum(m == "lk.playback_finished" for m, _ in rpcs) < 2:
            got.clear()
            await asyncio.wait_for(got.wait(), HANG_GUARD_S)
        assert json.loads(rpcs[-1][1])["interrupted"] is True
        await stub.StopSession(avatar_service_pb2.StopSessionRequest(session_id=started.session_id), metadata=auth)
    finally:
        await agent.disconnect()

"""Triton killed under live avatar sessions of a real gRPC server: watchers get an ``error`` event naming Triton's
address and the policy; under ``fallback`` the session keeps playing speech, under ``end`` it ends with
``END_REASON_LIPSYNC_UNAVAILABLE``; the other sessions and the server stay up.

No LiveKit server can run here, so rooms are scripted and each session's runtime is the real room-free one
(:func:`build_live_session`: playout, receiver, events) publishing into a recording sink."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import grpc.aio
import numpy as np
import pytest
from conftest import API_KEY, server_config
from test_grpc_sessions import ScriptedConnector, token
from triton_support import copy_repository, require_triton, speech_like
from waiting import wait_until

from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.live.livekit_session import LiveSession, build_live_session
from avaluma.core.live.sessions import RoomHandle, Session
from avaluma.core.media import AudioChunk
from avaluma.core.ops.triton.server import start_triton
from avaluma.core.server.app import RunningServer, start_server
from avaluma.proto.v1 import avatar_service_pb2, avatar_service_pb2_grpc
from avaluma.renderer.avatar import Avatar
from avaluma.renderer.engine import RenderedFrame
from avaluma.renderer.lipsync.triton_backend import TritonBackend, TritonOptions

pytestmark = pytest.mark.integration

AUTH = (("x-api-key", API_KEY),)
#: Hang guard for waits, not a latency assertion.
WAIT_S = 30.0


class Recorder:
    """The frame sink: records what would have been published, and wakes waiters."""

    def __init__(self) -> None:
        self.frames: list[RenderedFrame] = []
        self.changed = asyncio.Event()

    def prepare(self, frame: RenderedFrame) -> None:
        pass  # nothing to convert ahead of push

    async def push(self, frame: RenderedFrame) -> None:
        self.frames.append(frame)
        self.changed.set()

    async def clear(self) -> None:
        return None

    async def speaking_frames(self, n: int) -> None:
        await wait_until(self.changed, lambda: sum(f.speaking for f in self.frames) >= n, WAIT_S)


class Runtimes:
    """The runtime factory of the test servers: the real session runtime with a recording sink."""

    def __init__(self) -> None:
        self.by_id: dict[str, tuple[LiveSession, Recorder]] = {}
        self.backend: TritonBackend | None = None

    async def __call__(
        self, session: Session, room: RoomHandle, avatar: Avatar, *, end: Callable[[int, str], None]
    ) -> LiveSession:
        assert self.backend is not None
        sink = Recorder()

        async def send_rpc(destination: str, method: str, payload: str) -> str:
            return ""

        runtime = build_live_session(
            session, avatar, self.backend, sink, fps=25, audio_sample_rate=16_000, send_rpc=send_rpc, end=end
        )
        runtime.start()
        self.by_id[session.id] = (runtime, sink)
        return runtime


async def serve(avatars_dir: Path, url: str, policy: str, model: str) -> tuple[RunningServer, Runtimes]:
    runtimes = Runtimes()
    # One shared backend per server, as the server's SharedBackend would hold.
    runtimes.backend = TritonBackend(TritonOptions(url=url, model=model, on_failure=policy, timeout_s=2))  # type: ignore[arg-type]
    server = await start_server(
        server_config(avatars_dir),
        store=AvatarStore.open(avatars_dir),
        lipsync_backend=lambda: runtimes.backend,  # type: ignore[arg-type,return-value]
        room_connector=ScriptedConnector(),
        runtime=runtimes,
    )
    return server, runtimes


async def start(stub: avatar_service_pb2_grpc.AvatarServiceStub, identity: str) -> str:
    request = avatar_service_pb2.StartSessionRequest(
        livekit_url="ws://lk.example:7880", livekit_token=token(identity), avatar_id="astronaut"
    )
    return (await stub.StartSession(request, metadata=AUTH)).session_id


def play(runtime: LiveSession, audio: np.ndarray, *, end: bool = True) -> None:
    for i in range(0, len(audio), 1600):
        runtime.playout.push_audio(AudioChunk(audio[i : i + 1600], 16_000))
    if end:
        runtime.playout.end_segment()


async def next_event(watch: grpc.aio.UnaryStreamCall, kind: str) -> avatar_service_pb2.SessionEvent:
    """The next event of ``kind`` (stats and playback events in between are skipped)."""
    while True:
        event = await asyncio.wait_for(watch.read(), WAIT_S)
        assert event is not grpc.aio.EOF, f"the watch ended before a {kind} event"
        if event.WhichOneof("event") == kind:
            return event
        assert event.WhichOneof("event") != "error", event


# lipsync: one request per session and chunk; lipsync_multi: the sessions of a server share requests.
@pytest.mark.parametrize("model", ["lipsync", "lipsync_multi"])
async def test_triton_killed_under_live_sessions(tmp_path: Path, avatars_dir: Path, model: str) -> None:
    require_triton()
    triton = start_triton(copy_repository(tmp_path), models=[model])
    servers: list[RunningServer] = []
    try:
        url = triton.grpc_url
        (keep_on, on_runtimes), (stop_on, stop_runtimes) = (
            await serve(avatars_dir, url, "fallback", model),
            await serve(avatars_dir, url, "end", model),
        )
        servers = [keep_on, stop_on]
        keep_stub = avatar_service_pb2_grpc.AvatarServiceStub(grpc.aio.insecure_channel(keep_on.address))
        stop_stub = avatar_service_pb2_grpc.AvatarServiceStub(grpc.aio.insecure_channel(stop_on.address))
        kept, ended, bystander = (
            await start(keep_stub, "avatar-1"),
            await start(stop_stub, "avatar-2"),
            await start(stop_stub, "avatar-3"),
        )
        watch_kept = keep_stub.WatchSession(avatar_service_pb2.WatchSessionRequest(session_id=kept), metadata=AUTH)
        watch_ended = stop_stub.WatchSession(avatar_service_pb2.WatchSessionRequest(session_id=ended), metadata=AUTH)
        for watch in (watch_kept, watch_ended):
            await next_event(watch, "started")

        # Both sessions speak a segment through Triton.
        first, rest = speech_like(0.6, seed=31), speech_like(0.8, seed=32)
        for runtimes, session_id, watch in ((on_runtimes, kept, watch_kept), (stop_runtimes, ended, watch_ended)):
            play(runtimes.by_id[session_id][0], first)
            await next_event(watch, "playback_finished")

        triton.kill()  # SIGKILL: a real crash

        # fallback: an error event naming the address and the policy; the segment still plays in full.
        runtime, sink = on_runtimes.by_id[kept]
        spoken = sum(f.speaking for f in sink.frames)
        play(runtime, rest)
        error = (await next_event_allowing_error(watch_kept)).error
        assert error.code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert url in error.message and "on_failure: fallback" in error.message
        finished = (await next_event(watch_kept, "playback_finished")).playback_finished
        assert not finished.interrupted and finished.playback_position_s == pytest.approx(0.8)
        await sink.speaking_frames(spoken + 20)  # 0.8 s at 25 fps
        info = await keep_stub.GetSession(avatar_service_pb2.GetSessionRequest(session_id=kept), metadata=AUTH)
        assert info.state == avatar_service_pb2.SESSION_STATE_ACTIVE

        # end: the error event, then the session ends with its own reason.
        play(stop_runtimes.by_id[ended][0], rest, end=False)
        error = (await next_event_allowing_error(watch_ended)).error
        assert error.code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert url in error.message and "on_failure: end" in error.message
        closing = (await next_event(watch_ended, "ended")).ended
        assert closing.reason == avatar_service_pb2.END_REASON_LIPSYNC_UNAVAILABLE
        assert url in closing.detail
        assert await asyncio.wait_for(watch_ended.read(), WAIT_S) is grpc.aio.EOF

        # The other session on that server is untouched, and the server still starts new ones.
        listed = await stop_stub.ListSessions(avatar_service_pb2.ListSessionsRequest(), metadata=AUTH)
        assert [s.session_id for s in listed.sessions] == [bystander]
        assert listed.sessions[0].state == avatar_service_pb2.SESSION_STATE_ACTIVE
        assert await start(stop_stub, "avatar-4")
    finally:
        for server in servers:
            await server.stop(0.5)  # closes its backend too
        triton.stop()


async def next_event_allowing_error(watch: grpc.aio.UnaryStreamCall) -> avatar_service_pb2.SessionEvent:
    """The next ``error`` event, skipping stats and playback events."""
    while True:
        event = await asyncio.wait_for(watch.read(), WAIT_S)
        assert event is not grpc.aio.EOF, "the watch ended before an error event"
        if event.WhichOneof("event") == "error":
            return event

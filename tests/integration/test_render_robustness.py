"""Render streams against hostile or absent clients, at the gRPC wire level.

Requests are written as raw bytes on the real ``/avaluma.v1.RenderService/Render`` method, so the tests hold whatever
implements the service behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import pytest
from conftest import API_KEY, server_config
from test_grpc_render import (
    FPS,
    IN_RATE,
    Req,
    audio_requests,
    config,
    kinds,
    speech_like,
)

from avaluma.core.config import RenderConfig
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.server.app import RunningServer, start_server
from avaluma.proto.v1 import avatar_registry_pb2, render_service_pb2
from avaluma.renderer.lipsync.base import MouthFrames
from avaluma.renderer.lipsync.energy import EnergyBackend, EnergyStream

pytestmark = pytest.mark.integration

AUTH = (("x-api-key", API_KEY),)
RENDER = "/avaluma.v1.RenderService/Render"
#: Hang guard only (not a latency assertion).
READ_TIMEOUT_S = 30.0
#: Three bytes that are not a protobuf message: field 15, wire type 7 (invalid).
GARBAGE = b"\x7f\xff\xff"


def raw_render(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    """A Render call whose requests are bytes, written to the wire unchanged."""
    method = channel.stream_stream(
        RENDER, request_serializer=None, response_deserializer=render_service_pb2.RenderResponse.FromString
    )
    return method(metadata=AUTH)


async def read_all(call: grpc.aio.StreamStreamCall) -> list[render_service_pb2.RenderResponse]:
    out = []
    while (response := await asyncio.wait_for(call.read(), READ_TIMEOUT_S)) is not grpc.aio.EOF:
        out.append(response)
    return out


@pytest.fixture
async def quick_server(avatars_dir: Path) -> AsyncIterator[RunningServer]:
    """A server whose Render timeouts are short enough for a test, with room for two streams."""
    base = server_config(avatars_dir, max_sessions=2)
    cfg = base.model_copy(
        update={"render": RenderConfig(first_message_timeout_s=0.5, idle_timeout_s=0.8)}  # type: ignore[call-arg]
    )
    running = await start_server(cfg, store=AvatarStore.open(avatars_dir), lipsync_backend=EnergyBackend)
    yield running
    await running.stop(0.5)


# --- defect 4: a message that does not decode ends the stream with INVALID_ARGUMENT, never OK ---------------------


async def test_undecodable_message_mid_stream_is_invalid_argument_not_a_normal_end(channel) -> None:
    call = raw_render(channel)
    chunk = audio_requests(speech_like([("speech", 0.4)]))
    joined = Req(audio=render_service_pb2.AudioChunk(pcm=b"".join(r.audio.pcm for r in chunk), sample_rate=IN_RATE,
                                                     num_channels=1))  # fmt: skip
    for message in (config(), joined, GARBAGE, joined, Req(segment_end=render_service_pb2.SegmentEnd())):
        await call.write(message if isinstance(message, bytes) else message.SerializeToString())
    await call.done_writing()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_all(call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "RenderRequest" in info.value.details() and "decode" in info.value.details()


async def test_undecodable_first_message_is_invalid_argument_with_one_log_line(channel, caplog) -> None:
    caplog.set_level(logging.INFO)
    call = raw_render(channel)
    await call.write(GARBAGE)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_all(call)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "RenderRequest" in info.value.details()
    # A client's garbage is not a server bug: no traceback in the log (grpc's own or ours).
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


async def test_undecodable_unary_request_is_invalid_argument(channel, caplog) -> None:
    caplog.set_level(logging.INFO)
    for method in ("GetAvatar", "ListAvatars", "DeleteAvatar"):
        call = channel.unary_unary(
            f"/avaluma.v1.AvatarRegistry/{method}",
            request_serializer=None,
            response_deserializer=avatar_registry_pb2.ListAvatarsResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(GARBAGE, metadata=AUTH, timeout=READ_TIMEOUT_S)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
        assert "decode" in info.value.details()
    assert not [r for r in caplog.records if r.exc_info]
    # The server still answers normal calls.
    ok = channel.unary_unary(
        "/avaluma.v1.AvatarRegistry/ListAvatars",
        request_serializer=avatar_registry_pb2.ListAvatarsRequest.SerializeToString,
        response_deserializer=avatar_registry_pb2.ListAvatarsResponse.FromString,
    )
    listed = await ok(avatar_registry_pb2.ListAvatarsRequest(), metadata=AUTH, timeout=READ_TIMEOUT_S)
    assert [a.id for a in listed.avatars] == ["astronaut"]


# --- defect 3: streams that stop talking are ended, and their admission slot comes back ---------------------------


async def test_stream_without_a_config_is_ended_by_the_first_message_timeout(quick_server) -> None:
    async with grpc.aio.insecure_channel(quick_server.address) as channel:
        call = raw_render(channel)  # opened, never written to
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await read_all(call)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "first_message_timeout_s" in info.value.details()


@pytest.mark.parametrize("realtime", [False, True])
async def test_silent_streams_time_out_and_free_their_slots(quick_server, realtime: bool) -> None:
    async with grpc.aio.insecure_channel(quick_server.address) as channel:
        # Two silent clients take both slots (max_sessions=2) ...
        silent = [raw_render(channel) for _ in range(2)]
        for call in silent:
            await call.write(config(realtime=realtime).SerializeToString())
            first = await asyncio.wait_for(call.read(), READ_TIMEOUT_S)
            assert first.WhichOneof("response") == "started"
        # ... and are ended once they have said nothing for render.idle_timeout_s.
        for call in silent:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await read_all(call)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "idle_timeout_s" in info.value.details()
        # The slots are free again: a well-behaved stream renders.
        call = raw_render(channel)
        await call.write(config().SerializeToString())
        for request in audio_requests(speech_like([("speech", 0.2)])):
            await call.write(request.SerializeToString())
        await call.write(Req(segment_end=render_service_pb2.SegmentEnd()).SerializeToString())
        await call.done_writing()
        responses = await read_all(call)
        assert kinds(responses).count("video") == round(0.2 * FPS)


async def test_a_client_waiting_for_its_frames_is_not_timed_out(quick_server) -> None:
    """The idle clock runs only while the server has nothing left to do for the stream."""
    async with grpc.aio.insecure_channel(quick_server.address) as channel:
        call = raw_render(channel)
        await call.write(config(realtime=True).SerializeToString())
        # 3 s of audio in one go (played out in real time: longer than the idle timeout), then silence from the
        # client while the stream renders and sends it.
        for request in audio_requests(speech_like([("speech", 3.0)])):
            await call.write(request.SerializeToString())
        await call.write(Req(segment_end=render_service_pb2.SegmentEnd()).SerializeToString())
        responses = []
        while True:
            response = await asyncio.wait_for(call.read(), READ_TIMEOUT_S)
            responses.append(response)
            if response.WhichOneof("response") == "playback_finished":
                break
        assert sum(r.video.speaking for r in responses if r.WhichOneof("response") == "video") == 3 * FPS
        call.cancel()


# --- a realtime stream that cannot keep up says so -----------------------------------------------------------------


class _StallingStream(EnergyStream):
    """The energy model, stalled once for longer than a realtime stream may lag (a starved CPU, for one step)."""

    stall_s = 1.0

    def push(self, audio: np.ndarray) -> MouthFrames:
        if len(audio) and self.stall_s:
            time.sleep(self.stall_s)  # runs in the stream's render worker thread
            self.stall_s = 0.0
        return super().push(audio)


class _StallingBackend(EnergyBackend):
    def open_stream(self, *, fps: float) -> EnergyStream:
        return _StallingStream(self.options, fps)


async def test_a_realtime_stream_that_falls_behind_tells_the_client(avatars_dir: Path) -> None:
    cfg = server_config(avatars_dir)
    running = await start_server(cfg, store=AvatarStore.open(avatars_dir), lipsync_backend=_StallingBackend)
    try:
        async with grpc.aio.insecure_channel(running.address) as channel:
            call = raw_render(channel)
            await call.write(config(realtime=True).SerializeToString())
            for request in audio_requests(speech_like([("speech", 0.4)])):
                await call.write(request.SerializeToString())
            await call.write(Req(segment_end=render_service_pb2.SegmentEnd()).SerializeToString())
            notices = []
            while True:
                response = await asyncio.wait_for(call.read(), READ_TIMEOUT_S)
                if response.WhichOneof("response") == "error":
                    notices.append(response.error)
                if response.WhichOneof("response") == "playback_finished":
                    break
            call.cancel()
    finally:
        await running.stop(0.5)
    assert len(notices) == 1
    assert notices[0].code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "behind real time" in notices[0].message


# --- defect 5: every int64 seed renders ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, -(2**63), 2**63 - 1])
async def test_any_int64_seed_renders(channel, seed: int) -> None:
    call = raw_render(channel)
    await call.write(config(seed=seed).SerializeToString())
    for request in audio_requests(speech_like([("speech", 0.2)])):
        await call.write(request.SerializeToString())
    await call.write(Req(segment_end=render_service_pb2.SegmentEnd()).SerializeToString())
    await call.done_writing()
    responses = await read_all(call)
    assert kinds(responses).count("video") == round(0.2 * FPS)
    assert await call.code() == grpc.StatusCode.OK

"""Triton killed under live Render streams of a real gRPC server: the client sees an in-band ``StreamError`` naming
Triton's address and the policy; under ``fallback`` frames keep coming, under ``end`` the call ends UNAVAILABLE; the
server and its other streams stay up."""

from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import pytest
from conftest import API_KEY, server_config
from triton_support import copy_repository, require_triton, speech_like

from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.ops.triton.server import start_triton
from avaluma.core.server.app import RunningServer, start_server
from avaluma.proto.v1 import common_pb2, render_service_pb2, render_service_pb2_grpc
from avaluma.renderer.lipsync.triton_backend import TritonBackend, TritonOptions

pytestmark = pytest.mark.integration

AUTH = (("x-api-key", API_KEY),)
SR = 16_000
FPS = 25
#: Hang guard for reads, not a latency assertion.
READ_TIMEOUT_S = 30.0

Req = render_service_pb2.RenderRequest
Resp = render_service_pb2.RenderResponse


def audio(samples: np.ndarray) -> list[Req]:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    step = 2 * SR // 10  # 100 ms chunks
    return [
        Req(audio=render_service_pb2.AudioChunk(pcm=pcm[i : i + step], sample_rate=SR, num_channels=1))
        for i in range(0, len(pcm), step)
    ]


SEGMENT_END = Req(segment_end=render_service_pb2.SegmentEnd())


class Stream:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.call = render_service_pb2_grpc.RenderServiceStub(channel).Render(metadata=AUTH)

    async def start(self) -> None:
        config = render_service_pb2.RenderConfig(
            avatar_id="astronaut", fps=FPS, audio_sample_rate=SR, encoding=common_pb2.VIDEO_ENCODING_JPEG
        )
        await self.call.write(Req(config=config))
        assert (await self.read()).WhichOneof("response") == "started"

    async def read(self) -> Resp:
        response = await asyncio.wait_for(self.call.read(), READ_TIMEOUT_S)
        assert response is not grpc.aio.EOF, "the stream ended early"
        return response

    async def read_until(self, kind: str) -> list[Resp]:
        out = [await self.read()]
        while out[-1].WhichOneof("response") != kind:
            out.append(await self.read())
        return out

    async def read_to_end(self) -> list[Resp]:
        """Everything up to the end of the call, whatever its status (check ``call.code()``)."""
        out = []
        with contextlib.suppress(grpc.aio.AioRpcError):
            while (response := await asyncio.wait_for(self.call.read(), READ_TIMEOUT_S)) is not grpc.aio.EOF:
                out.append(response)
        return out


def count(responses: list[Resp], kind: str) -> int:
    return sum(1 for r in responses if r.WhichOneof("response") == kind)


def errors(responses: list[Resp]) -> list[common_pb2.StreamError]:
    return [r.error for r in responses if r.WhichOneof("response") == "error"]


async def triton_server(avatars_dir: Path, url: str, policy: str) -> RunningServer:
    options = TritonOptions(url=url, on_failure=policy, timeout_s=2)  # type: ignore[arg-type]
    return await start_server(
        server_config(avatars_dir), store=AvatarStore.open(avatars_dir), lipsync_backend=lambda: TritonBackend(options)
    )


async def test_triton_killed_under_render_streams(tmp_path: Path, avatars_dir: Path) -> None:
    require_triton()
    triton = start_triton(copy_repository(tmp_path))
    servers: list[RunningServer] = []
    try:
        url = triton.grpc_url
        servers = [await triton_server(avatars_dir, url, "fallback"), await triton_server(avatars_dir, url, "end")]
        ch_fallback = grpc.aio.insecure_channel(servers[0].address)
        ch_end = grpc.aio.insecure_channel(servers[1].address)
        first, rest = speech_like(0.8, seed=21), speech_like(1.2, seed=22)

        # Three live streams; two have rendered a segment through Triton.
        fallback, ending, bystander = Stream(ch_fallback), Stream(ch_end), Stream(ch_end)
        for stream in (fallback, ending, bystander):
            await stream.start()
        for stream in (fallback, ending):
            for request in [*audio(first), SEGMENT_END]:
                await stream.call.write(request)
            before = await stream.read_until("playback_finished")
            assert errors(before) == [] and count(before, "video") == math.ceil(len(first) / SR * FPS)

        triton.kill()  # SIGKILL: a real crash

        # fallback: one StreamError naming the address and the policy, and every frame of the segment still comes.
        for request in [*audio(rest), SEGMENT_END]:
            await fallback.call.write(request)
        after = await fallback.read_until("playback_finished")
        [error] = errors(after)
        assert error.code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert url in error.message and "on_failure: fallback" in error.message
        expected = math.ceil(len(rest) / SR * FPS)
        assert count(after, "video") == expected
        assert after[-1].playback_finished.playback_position_s == pytest.approx(expected / FPS)

        # end: the StreamError, then the call ends UNAVAILABLE with a message naming the address. (One chunk only:
        # the server ends the call at that chunk, so later writes would fail.)
        await ending.call.write(audio(rest)[0])
        tail = await ending.read_to_end()
        [error] = errors(tail)
        assert error.code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert url in error.message and "on_failure: end" in error.message
        assert await ending.call.code() == grpc.StatusCode.UNAVAILABLE
        assert url in await ending.call.details()

        # The other stream on that server is untouched: it still answers (a clear is answered at once).
        await bystander.call.write(Req(clear=render_service_pb2.Clear()))
        [answer] = await bystander.read_until("playback_finished")
        assert answer.playback_finished.interrupted
        await bystander.call.done_writing()
        assert errors(await bystander.read_to_end()) == []
        assert await bystander.call.code() == grpc.StatusCode.OK

        # Both servers keep serving new streams: the fallback one renders every frame of a fresh segment.
        second = Stream(ch_fallback)
        await second.start()
        for request in [*audio(rest), SEGMENT_END]:
            await second.call.write(request)
        await second.call.done_writing()
        responses = await second.read_to_end()
        assert count(responses, "video") == math.ceil(len(rest) / SR * FPS)
        assert await second.call.code() == grpc.StatusCode.OK
        await ch_fallback.close()
        await ch_end.close()
    finally:
        for server in servers:
            await server.stop(0.5)
        triton.stop()

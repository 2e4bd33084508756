"""A draining server and its Render streams (the gRPC half of the graceful drain): a new stream is refused with
UNAVAILABLE naming another instance, a running one plays to its end by itself, one still open at the deadline ends
UNAVAILABLE saying so. Real server on a free port, real renderer, energy backend."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from test_grpc_render import FPS, _first_status, audio_requests, config, kinds, open_stream, speech_like, videos

pytestmark = pytest.mark.integration


async def test_drain_refuses_new_streams_lets_running_ones_finish_and_ends_the_rest(make_server) -> None:
    running = await make_server()
    async with grpc.aio.insecure_channel(running.address) as channel:
        finishing = await open_stream(channel)
        lingering = await open_stream(channel, config(realtime=True))
        await lingering.read()  # an idle frame: the stream is live

        drain = asyncio.create_task(running.drain(timeout_s=1.0))
        await asyncio.sleep(0)  # the drain has begun: nothing new is admitted
        refused = await _first_status(channel, config())
        assert refused.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in refused.details() and "another server instance" in refused.details()

        # A running stream is not cut short: its segment plays out and the call ends normally.
        await finishing.write(*audio_requests(speech_like([("speech", 0.4)])))
        await finishing.call.done_writing()
        responses = await finishing.read_to_end()
        assert len(videos(responses)) == 0.4 * FPS
        assert kinds(responses)[-1] == "playback_finished" and not responses[-1].playback_finished.interrupted
        assert await finishing.call.code() == grpc.StatusCode.OK

        assert await drain == (0, 1)  # no session; the realtime stream was still open at the deadline
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                await lingering.read()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "drain deadline of 1 s" in info.value.details() and "another instance" in info.value.details()


async def test_drain_returns_as_soon_as_the_last_stream_ends(make_server) -> None:
    running = await make_server()
    async with grpc.aio.insecure_channel(running.address) as channel:
        stream = await open_stream(channel, config(realtime=True))
        await stream.read()
        drain = asyncio.create_task(running.drain(timeout_s=3600))
        await asyncio.sleep(0)
        await stream.call.done_writing()
        await stream.read_to_end()
        # A deadline no test would wait for: returning at all shows the drain ended with the stream, not the clock.
        assert await asyncio.wait_for(drain, 30) == (0, 0)
        assert await stream.call.code() == grpc.StatusCode.OK

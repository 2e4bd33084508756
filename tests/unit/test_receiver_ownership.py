"""Stopping a session while an ``lk.audio_stream`` is open leaves no task behind (it used to log "Task was
destroyed but it is pending!" for 333 of 500 sessions)."""

from __future__ import annotations

import asyncio

from test_receiver_protocol import HANG_GUARD_S, Rig, ScriptedStream, pcm

from avaluma.core.live.audio_receiver import SenderPolicy


def _others() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]


async def test_closing_the_receiver_with_a_stream_open_cancels_and_awaits_every_task() -> None:
    before = set(_others())
    rig = Rig(SenderPolicy(["agent-1"]))
    rig.receiver.start()
    playing = asyncio.create_task(rig.playout.run())
    # A stream that stays open: the receiver is waiting for its next chunk when the session stops.
    stream = ScriptedStream({"sample_rate": "16000", "num_channels": "1"}, [pcm(0.2, 16_000)], open_end=True)
    rig.receiver.on_stream(stream, "agent-1")
    await rig.until(lambda: any(f.speaking for f in rig.sink.frames))

    await rig.receiver.aclose()
    rig.playout.close()
    await asyncio.wait_for(playing, HANG_GUARD_S)

    left = [t for t in _others() if t not in before]
    assert left == [], [t.get_coro() for t in left]

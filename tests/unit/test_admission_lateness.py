"""Admission stops while the running sessions miss their frame deadlines, and resumes when they catch up.

Lateness is injected through the real path: a real :class:`Playout` (real RenderSession, energy lip-sync) on a
virtual clock reports every frame through its admission slot; a sink that "takes" two frame periods of virtual time
per frame stands for a CPU starved by other work. The last two tests run in real time (what they check is how the
clock starts and restarts): a stalled event loop and a slow first frame, each a few hundred milliseconds, far beyond
the lateness threshold of 20 ms, so scheduling noise cannot decide them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from waiting import wait_until

from avaluma.core.errors import ResourceExhausted
from avaluma.core.live.lateness import WINDOW_S, LatenessWatch
from avaluma.core.live.playout import Playout, VirtualClock
from avaluma.core.live.sessions import SessionSlots
from avaluma.renderer.engine import RenderedFrame, RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.energy import EnergyBackend

ROOT = Path(__file__).resolve().parents[2]
FPS = 25
HANG_GUARD_S = 60.0


class StarvableSink:
    """Records frames; while ``starved``, publishing a frame takes two frame periods of the virtual clock."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.starved = False
        self.frames = 0
        self.changed = asyncio.Event()

    def prepare(self, frame: RenderedFrame) -> None:
        pass

    async def push(self, frame: RenderedFrame) -> None:
        if self.starved:
            self.clock.advance(2 / FPS)
        self.frames += 1
        self.changed.set()

    async def clear(self) -> None:
        pass

    async def published(self, n: int) -> None:
        """Wait until ``n`` more frames went out."""
        target = self.frames + n

        await wait_until(self.changed, lambda: self.frames >= target, HANG_GUARD_S)


async def test_a_server_behind_on_its_sessions_admits_nothing_until_they_catch_up() -> None:
    clock = VirtualClock()
    slots = SessionSlots(8, LatenessWatch(clock=clock.now))
    slot = slots.take("session")
    sink = StarvableSink(clock)
    render = RenderSession(load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia"), EnergyBackend(), fps=FPS)
    playout = Playout(render, sink, clock=clock, watch=slot)
    task = asyncio.create_task(playout.run())
    try:
        await sink.published(2 * FPS)  # on time: admission goes by the limit
        assert not slots.behind and slots.free == 7
        slots.take("session").release()

        sink.starved = True  # every frame now comes two frame periods late
        await sink.published(FPS)
        assert playout.stats().late_frames > FPS // 2  # (the clock restarts once it is MAX_LAG_S behind)
        assert slots.behind and slots.free == 0
        with pytest.raises(ResourceExhausted) as refused:
            slots.take("session")
        message = refused.value.message
        assert "behind on its 1 sessions" in message and "start the session on another server instance" in message
        assert "came late" in message

        sink.starved = False  # lateness stops: once the late frames age out of the window, it admits again
        await sink.published(2 * FPS)
        assert slots.behind  # still within the window
        await sink.published(round(WINDOW_S * FPS))
        assert not slots.behind and slots.free == 7
        slots.take("session").release()
    finally:
        playout.close()
        await asyncio.wait_for(task, HANG_GUARD_S)
    slot.release()
    # Frames of a released slot no longer count, and an empty server is never "behind".
    slot.frame(True)
    assert slots.free == 8


def test_the_late_frames_of_a_session_that_ended_no_longer_count() -> None:
    now = [0.0]
    slots = SessionSlots(8, LatenessWatch(clock=lambda: now[0]))
    starved, fine = slots.take("session"), slots.take("session")
    for _ in range(25):
        starved.frame(True)
        fine.frame(False)
        now[0] += 0.04
    assert slots.behind and slots.free == 0
    starved.release()  # the session that was late ended: the one left runs on time
    assert not slots.behind and slots.free == 7


def test_the_watch_needs_several_late_frames_and_forgets_old_ones() -> None:
    now = [0.0]
    watch = LatenessWatch(clock=lambda: now[0])
    for i in range(100):
        watch.frame(late=i in (10, 20))  # two stray late frames in 100: not behind
        now[0] += 0.01
    assert watch.counts() == (100, 2) and not watch.behind()
    for _ in range(3):
        watch.frame(late=True)
    assert watch.behind()
    now[0] += WINDOW_S + 0.5
    assert watch.counts() == (0, 0) and not watch.behind()


async def test_one_stall_of_the_event_loop_leaves_a_livekit_session_on_time_afterwards() -> None:
    """Real time and the real LiveKit sink (``rtc.AVSynchronizer`` and sources, no room): its audio source plays out
    in real time and takes at most 100 ms ahead, so a playout stalled for longer can never catch up through it. The
    stalled frame counts as late once; the frames after it must not (before the clock restarted at 100 ms of lag,
    every later frame of the session counted as late, and the server's lateness guard refused all new sessions)."""
    from avaluma.core.live.livekit_session import AVSyncSink

    avatar = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")
    render = RenderSession(avatar, EnergyBackend(), fps=FPS, audio_sample_rate=16_000)
    sink = AVSyncSink(width=avatar.width, height=avatar.height, fps=FPS, sample_rate=16_000)
    playout = Playout(render, sink)
    task = asyncio.create_task(playout.run())
    try:
        await asyncio.sleep(1.0)  # idle frames on time
        before = playout.stats()
        time.sleep(0.3)  # noqa: ASYNC251 - the event loop stalls once (a garbage collection, a blocking call)
        await asyncio.sleep(0.2)
        at_stall = playout.stats()
        await asyncio.sleep(2.0)
        after = playout.stats()
    finally:
        playout.close()
        await asyncio.wait_for(task, HANG_GUARD_S)
        await sink.aclose()
    assert at_stall.late_frames > before.late_frames  # the stall itself is seen
    assert after.frames - at_stall.frames >= FPS  # frames kept going out in real time
    # Before the clock restarted at 100 ms of lag, all of them (50) were late; a few may be, on a busy machine.
    assert after.late_frames - at_stall.late_frames <= 10, after


class ColdStart(RenderSession):
    """A render session whose first frame takes 300 ms (a model's first run, cold caches)."""

    cold = True

    def idle_frames(self, n: int) -> list[RenderedFrame]:
        if self.cold:
            self.cold = False
            time.sleep(0.3)
        return super().idle_frames(n)


async def test_a_sessions_slow_first_frame_is_not_counted_late() -> None:
    """Real time: the clock starts with the first frame, so starting sessions do not look like a server behind."""
    avatar = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")
    sink = StarvableSink(VirtualClock())  # records frames; never starved here
    watch = LateFlags()
    playout = Playout(ColdStart(avatar, EnergyBackend(), fps=FPS), sink, watch=watch)
    task = asyncio.create_task(playout.run())
    try:
        await sink.published(FPS // 2)
    finally:
        playout.close()
        await asyncio.wait_for(task, HANG_GUARD_S)
    assert watch.flags[0] is False  # the first frame, 300 ms in the making, is on time: the clock starts with it


class LateFlags:
    """A frame watch that keeps every frame's late flag."""

    def __init__(self) -> None:
        self.flags: list[bool] = []

    def frame(self, late: bool) -> None:
        self.flags.append(late)

"""Playout, the clocked core of a live session: real RenderSession + energy lip-sync, a virtual clock, a recording
sink. Checks frame pacing (one frame per slot, idle frames in silence), A/V alignment, playback events, interruption
mid-segment, clear when idle, back-to-back segments and agent-state cues. Nothing here depends on wall-clock time."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from avaluma.core.errors import ResourceExhausted
from avaluma.core.live.events import Cleared
from avaluma.core.live.playout import MAX_BACKLOG_S, Playout, Unpaced, VirtualClock
from avaluma.core.media import AudioChunk
from avaluma.renderer.avatar import Avatar
from avaluma.renderer.engine import PlaybackEvent, RenderedFrame, RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.energy import EnergyBackend

ROOT = Path(__file__).resolve().parents[2]
FPS, RATE = 25, 24_000
SPF = RATE // FPS
HANG_GUARD_S = 60.0


@pytest.fixture(scope="module")
def avatar() -> Avatar:
    return load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")


def speech(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


class Recorder:
    """A sink that records frames and runs scripted actions when a given frame is about to be published."""

    def __init__(self) -> None:
        self.frames: list[RenderedFrame] = []
        self.times: list[float] = []
        self.clears = 0
        self.actions: dict[int, Callable[[], None]] = {}
        self.clock: VirtualClock | None = None
        self.done = asyncio.Event()
        self.stop_at = 0
        #: Called before each frame is recorded (the rig reads the playout's events there).
        self.before_push: Callable[[], None] = lambda: None

    def prepare(self, frame: RenderedFrame) -> None:
        pass  # nothing to convert ahead of push

    async def push(self, frame: RenderedFrame) -> None:
        self.before_push()
        action = self.actions.pop(len(self.frames), None)
        self.frames.append(frame)
        assert self.clock is not None
        self.times.append(self.clock.now())
        if action is not None:
            action()
        if len(self.frames) >= self.stop_at:
            self.done.set()

    async def clear(self) -> None:
        self.clears += 1


class Rig:
    def __init__(self, avatar: Avatar) -> None:
        self.clock = VirtualClock()
        self.sink = Recorder()
        self.sink.clock = self.clock
        self.events: list[tuple[int, PlaybackEvent]] = []  # (frames published when emitted, event)
        self.render = RenderSession(avatar, EnergyBackend(), fps=FPS, audio_sample_rate=RATE)
        self.playout = Playout(self.render, self.sink, clock=self.clock)
        self.sink.before_push = self.read_events

    def read_events(self) -> None:
        """The playout's event stream so far, each with the frames published when it was emitted (the stream is in
        order with the frames: what is pending before a frame's push came before that frame)."""
        for event in self.playout.events().take_ready():
            if isinstance(event, PlaybackEvent):
                self.events.append((len(self.sink.frames), event))
            elif isinstance(event, Cleared):
                self.events.extend((len(self.sink.frames), e) for e in event.finished)

    def at(self, frame: int, action: Callable[[], None]) -> None:
        self.sink.actions[frame] = action

    def push(self, audio: np.ndarray, chunk_s: float = 0.1) -> None:
        step = round(RATE * chunk_s)
        for i in range(0, audio.size, step):
            self.playout.push_audio(AudioChunk(audio[i : i + step], RATE))

    async def run(self, frames: int) -> list[RenderedFrame]:
        self.sink.stop_at = frames
        task = asyncio.create_task(self.playout.run())
        try:
            await asyncio.wait_for(self.sink.done.wait(), HANG_GUARD_S)
        finally:
            self.playout.close()
            await asyncio.wait_for(task, HANG_GUARD_S)
            self.read_events()
        return self.sink.frames[:frames]


def speaking_audio(frames: list[RenderedFrame]) -> np.ndarray:
    return np.concatenate([f.audio for f in frames if f.speaking])


async def test_one_frame_per_slot_idle_in_silence_and_exact_audio(avatar: Avatar) -> None:
    rig = Rig(avatar)
    audio = speech(1.0)
    rig.at(5, lambda: (rig.push(audio), rig.playout.end_segment()))
    frames = await rig.run(60)

    # A steady clock: frame n is published in slot n, and every frame carries exactly one frame of audio.
    assert rig.sink.times[:60] == pytest.approx([i / FPS for i in range(60)])
    # Frames keep their render order; idle frames rendered ahead and replaced by speech leave gaps in the numbering.
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices)) and indices[:6] == list(range(6))
    assert all(f.audio.shape == (SPF,) for f in frames)
    assert not any(f.speaking for f in frames[:6])
    # Speech: exactly the input audio, frame-aligned (24 kHz in and out: no resampling), then idle again.
    speaking = [i for i, f in enumerate(frames) if f.speaking]
    assert len(speaking) == audio.size // SPF and speaking == list(range(speaking[0], speaking[0] + len(speaking)))
    np.testing.assert_array_equal(speaking_audio(frames), audio)
    assert all(not f.audio.any() for f in frames if not f.speaking)
    assert rig.playout.stats().late_frames == 0

    # started goes out just before the first speaking frame, finished just after the last one.
    (started_at, started), (finished_at, finished) = rig.events
    assert (started.kind, started.segment) == ("started", 0) and started_at == speaking[0]
    assert (finished.kind, finished.segment, finished.interrupted) == ("finished", 0, False)
    assert finished_at == speaking[-1] + 1 and finished.position_s == pytest.approx(1.0)


async def test_interruption_mid_segment_closes_the_mouth_on_the_next_frame(avatar: Avatar) -> None:
    rig = Rig(avatar)
    answers: list[list[PlaybackEvent]] = []
    rig.at(2, lambda: rig.push(speech(3.0)))  # a long segment, still open (no end)
    rig.at(30, lambda: answers.append(rig.playout.clear()))
    frames = await rig.run(45)

    (answer,) = answers
    (finished,) = answer
    played = sum(1 for f in frames[:31] if f.speaking)
    assert finished.interrupted and finished.segment == 0
    assert 0 < finished.position_s == pytest.approx(played / FPS)
    assert [e.kind for _, e in rig.events] == ["started", "finished"]
    # Frame 30 was already being pushed; from frame 31 on the mouth is at rest and nothing cleared plays.
    assert not any(f.speaking for f in frames[31:])
    assert rig.sink.clears == 1
    assert rig.playout.stats().queue_depth == 0 and rig.playout.stats().backlog_s == 0


async def test_clear_when_idle_is_answered_and_playback_goes_on_after(avatar: Avatar) -> None:
    rig = Rig(avatar)
    answers: list[list[PlaybackEvent]] = []
    rig.at(3, lambda: answers.append(rig.playout.clear()))
    rig.at(5, lambda: (rig.push(speech(0.4)), rig.playout.end_segment()))
    frames = await rig.run(30)

    assert answers == [[PlaybackEvent("finished", 0, 0.0, interrupted=True)]]
    kinds = [(e.kind, e.segment, e.interrupted) for _, e in rig.events]
    assert kinds == [("finished", 0, True), ("started", 0, False), ("finished", 0, False)]
    assert sum(f.speaking for f in frames) == 10


async def test_back_to_back_segments_play_in_order_without_a_gap(avatar: Avatar) -> None:
    rig = Rig(avatar)
    first, second = speech(0.4), speech(0.6)

    def both() -> None:
        assert rig.playout.push_audio(AudioChunk(first, RATE)) == 0
        assert rig.playout.end_segment() == 0
        assert rig.playout.push_audio(AudioChunk(second, RATE)) == 1
        assert rig.playout.end_segment() == 1

    rig.at(2, both)
    frames = await rig.run(40)

    speaking = [i for i, f in enumerate(frames) if f.speaking]
    assert len(speaking) == 25 and speaking == list(range(speaking[0], speaking[0] + 25))
    np.testing.assert_array_equal(speaking_audio(frames), np.concatenate([first, second]))
    events = [(at, e.kind, e.segment) for at, e in rig.events]
    s = speaking[0]
    assert events == [(s, "started", 0), (s + 10, "finished", 0), (s + 10, "started", 1), (s + 25, "finished", 1)]


async def test_clear_with_a_queued_segment_finishes_both(avatar: Avatar) -> None:
    rig = Rig(avatar)
    answers: list[list[PlaybackEvent]] = []

    def two() -> None:
        rig.push(speech(1.0))
        rig.playout.end_segment()
        rig.push(speech(1.0))

    rig.at(1, two)
    rig.at(10, lambda: answers.append(rig.playout.clear()))
    await rig.run(20)
    (answer,) = answers
    assert [(e.segment, e.interrupted) for e in answer] == [(0, True), (1, True)]
    assert answer[0].position_s > 0 and answer[1].position_s == 0


async def test_backlog_is_bounded_with_a_clear_error(avatar: Avatar) -> None:
    rig = Rig(avatar)
    rig.playout.push_audio(AudioChunk(speech(MAX_BACKLOG_S - 1, rate=8_000), 8_000))
    with pytest.raises(ResourceExhausted, match="faster than real time"):
        rig.playout.push_audio(AudioChunk(speech(2.0, rate=8_000), 8_000))


async def test_agent_states_reach_a_renderer_that_supports_them(avatar: Avatar) -> None:
    rig = Rig(avatar)
    seen: list[str] = []
    rig.render.set_state = seen.append  # type: ignore[attr-defined]
    rig.at(1, lambda: rig.playout.set_state("thinking"))
    rig.at(3, lambda: rig.playout.set_state("speaking"))
    await rig.run(6)
    assert seen == ["thinking", "idle"]


async def test_unpaced_playout_publishes_only_speech_and_finishes_after_the_last_segment(avatar: Avatar) -> None:
    """The offline mode of a Render stream: no idle frames, no pacing, run() returns once everything is out."""
    sink = Recorder()
    sink.clock = VirtualClock()  # only stamps the recorded frames
    playout = Playout(RenderSession(avatar, EnergyBackend(), fps=FPS, audio_sample_rate=RATE), sink, clock=Unpaced())
    for seconds in (0.5, 0.3):
        playout.push_audio(AudioChunk(speech(seconds), RATE))
        playout.end_segment()
    playout.finish()
    await asyncio.wait_for(playout.run(), HANG_GUARD_S)
    events = [e async for e in playout.events()]  # the stream ends after run() returned

    assert len(sink.frames) == math.ceil(0.5 * FPS) + math.ceil(0.3 * FPS) and all(f.speaking for f in sink.frames)
    assert [(e.kind, e.segment) for e in events] == [("started", 0), ("finished", 0), ("started", 1), ("finished", 1)]
    assert not playout.busy() and playout.stats().late_frames == 0


async def test_clear_returns_the_answer_and_a_sender_can_wait_for_room(avatar: Avatar) -> None:
    rig = Rig(avatar)
    rig.push(speech(MAX_BACKLOG_S - 0.5), chunk_s=5.0)
    waiter = asyncio.create_task(rig.playout.wait_for_room(1.0))
    await asyncio.sleep(0)
    assert not waiter.done()  # 1 s more would pass the bound: the sender waits instead of being refused
    events = rig.playout.clear()
    await asyncio.wait_for(waiter, HANG_GUARD_S)  # the clear dropped the backlog
    assert [(e.kind, e.segment, e.interrupted) for e in events] == [("finished", 0, True)]
    assert rig.playout.events().take_ready() == [Cleared(tuple(events))]  # returned, and recorded once as the clear

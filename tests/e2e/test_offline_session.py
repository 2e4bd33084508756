"""Offline end to end: LiveKit Agents' real AgentSession (scripted STT/VAD/LLM/TTS) -> QueueAudioOutput -> the
server's session core (AgentAudioBridge + Playout + RenderSession with energy lip-sync, real time) -> recorded frames
and audio. Checks playback events reaching the agent, an interruption mid-segment, frame count and A/V alignment.

``asyncio.wait_for`` limits only stop a broken pipeline from hanging the suite; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("livekit.agents", reason="the agent extra (livekit-agents) is needed")

from livekit.agents import Agent, AgentSession
from livekit.agents.voice.avatar import QueueAudioOutput
from waiting import wait_until

from avaluma.agent.testing import LLMReply, ScriptedLLM, ScriptedSTT, ScriptedVAD, SilentAudioInput, ToneTTS, UserTurn
from avaluma.core.live.events import Cleared, PlayoutEvent
from avaluma.core.live.playout import Playout
from avaluma.core.live.testing import AgentAudioBridge
from avaluma.renderer.engine import PlaybackEvent, RenderedFrame, RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.energy import EnergyBackend

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 40.0
FPS, RATE = 25, 24_000


class Recorder:
    def __init__(self) -> None:
        self.frames: list[RenderedFrame] = []
        self.clears = 0
        #: Called before each frame is recorded (the rig reads the playout's pending events there).
        self.before_push: Callable[[], None] = lambda: None

    def prepare(self, frame: RenderedFrame) -> None:
        pass  # nothing to convert ahead of push

    async def push(self, frame: RenderedFrame) -> None:
        self.before_push()
        self.frames.append(frame)

    async def clear(self) -> None:
        self.clears += 1


class Rig:
    def __init__(self, session: AgentSession, tts: ToneTTS, sink: Recorder, playout: Playout) -> None:
        self.session, self.tts, self.sink, self.playout = session, tts, sink, playout
        self.events: list[tuple[int, PlaybackEvent]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.items: list[Any] = []
        self.changed = asyncio.Event()

    def assistant(self) -> list[Any]:
        return [i for i in self.items if i.type == "message" and i.role == "assistant"]

    def finished(self) -> list[PlaybackEvent]:
        return [e for _, e in self.events if e.kind == "finished"]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        await wait_until(self.changed, predicate, HANG_GUARD_S)


@pytest.fixture
async def rig_factory() -> AsyncIterator[Any]:
    opened: list[tuple[Rig, AgentAudioBridge, asyncio.Task[None]]] = []
    avatar = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")

    async def make(turns: list[UserTurn], replies: dict[str, LLMReply]) -> Rig:
        tts = ToneTTS(sample_rate=RATE, seconds_per_char=0.02)
        session: AgentSession = AgentSession(
            vad=ScriptedVAD(turns),
            stt=ScriptedSTT(turns),
            llm=ScriptedLLM(replies),
            tts=tts,
            turn_handling={
                "turn_detection": "vad",
                "endpointing": {"min_delay": 0.1, "max_delay": 1.0},
                "interruption": {"mode": "vad", "min_duration": 0.2, "resume_false_interruption": False},
                "preemptive_generation": {"enabled": False},
            },
            session_close_transcript_timeout=0.1,
        )
        queue = QueueAudioOutput(sample_rate=RATE)
        session.input.audio = SilentAudioInput()
        session.output.audio = queue
        bridge = AgentAudioBridge(queue)
        sink = Recorder()

        playout = Playout(RenderSession(avatar, EnergyBackend(), fps=FPS, audio_sample_rate=RATE), sink)
        rig = Rig(session, tts, sink, playout)

        def on_event(event: PlayoutEvent) -> None:
            """Playback events to the bridge (it answers clears itself); all recorded with the frames published."""
            if isinstance(event, PlaybackEvent):
                bridge.on_playback(event)
                rig.events.append((len(sink.frames), event))
            elif isinstance(event, Cleared):
                rig.events.extend((len(sink.frames), e) for e in event.finished)
            rig.changed.set()

        async def read_events() -> None:
            async for event in playout.events():
                on_event(event)

        def read_pending() -> None:  # what is pending when a frame is pushed was emitted before that frame
            for event in playout.events().take_ready():
                on_event(event)

        sink.before_push = read_pending

        def on_item(ev: Any) -> None:
            rig.items.append(ev.item)
            rig.changed.set()

        session.on("conversation_item_added", on_item)
        bridge.start(playout)
        task = asyncio.create_task(playout.run())
        rig.tasks.append(asyncio.create_task(read_events()))
        opened.append((rig, bridge, task))
        await session.start(Agent(instructions="You are an avatar."))
        return rig

    yield make
    for rig, bridge, task in opened:
        await rig.session.aclose()
        await bridge.aclose()
        rig.playout.close()
        await asyncio.wait_for(task, HANG_GUARD_S)
        await asyncio.wait_for(asyncio.gather(*rig.tasks), HANG_GUARD_S)  # the event stream ends after the playout


def tts_audio(tts: ToneTTS, texts: list[str]) -> np.ndarray:
    return np.concatenate([np.frombuffer(tts.tone(t), dtype=np.int16) for t in texts])


async def test_a_voice_turn_is_rendered_frame_aligned_and_reported_back(rig_factory: Any) -> None:
    reply = "Hello! I am the avatar speaking to you."
    rig: Rig = await rig_factory([UserTurn(start=0.1, end=0.5, transcript="hello")], {"hello": LLMReply(reply)})
    await rig.wait_for(lambda: bool(rig.assistant()) and bool(rig.finished()))

    (answer,) = rig.assistant()
    assert answer.text_content == reply and not answer.interrupted  # the agent got our playback_finished
    (finished,) = rig.finished()
    assert not finished.interrupted

    frames = rig.sink.frames
    speaking = [i for i, f in enumerate(frames) if f.speaking]
    assert speaking == list(range(speaking[0], speaking[-1] + 1))  # one unbroken run of speech frames
    played = np.concatenate([frames[i].audio for i in speaking])
    expected = tts_audio(rig.tts, rig.tts.texts).astype(np.float32) / 32768.0
    # Exactly the TTS audio (LiveKit pads its last TTS frame with silence), cut into one frame's worth per frame.
    assert len(speaking) == -(-played.size // (RATE // FPS))
    np.testing.assert_allclose(played[: expected.size], expected, atol=1 / 32768)
    assert not played[expected.size :].any()
    assert finished.position_s == pytest.approx(len(speaking) / FPS, abs=1 / FPS)
    # started right before the first speech frame, finished right after the last.
    kinds = [(at, e.kind) for at, e in rig.events]
    assert kinds == [(speaking[0], "started"), (speaking[-1] + 1, "finished")]
    # Idle frames around the speech are silent with the mouth at rest (no speaking flag).
    assert all(not f.audio.any() for f in frames if not f.speaking)


async def test_barge_in_interrupts_mid_segment(rig_factory: Any) -> None:
    story = " ".join(["Once upon a time there was a small robot who loved to sing songs all day long."] * 4)
    rig: Rig = await rig_factory(
        [UserTurn(start=0.1, end=0.4, transcript="story"), UserTurn(start=2.5, end=3.0, transcript="stop")],
        {"story": LLMReply(story), "stop": LLMReply("Okay, stopping.")},
    )
    await rig.wait_for(lambda: len(rig.assistant()) == 2 and len(rig.finished()) == 2)

    first, second = rig.assistant()
    assert first.interrupted and not second.interrupted
    cut, done = rig.finished()
    full_story_s = tts_audio(rig.tts, rig.tts.texts[:-1]).size / RATE
    assert cut.interrupted and 0 < cut.position_s < full_story_s
    assert not done.interrupted
    # The frame after the interruption is idle: the mouth closed at once.
    cut_at = next(at for at, e in rig.events if e is cut)
    restart_at = next(at for at, e in rig.events if e.kind == "started" and at > cut_at)
    # rig.events records how many frames had been published, so frames[cut_at] is the first one after the clear.
    assert restart_at > cut_at
    assert not any(f.speaking for f in rig.sink.frames[cut_at:restart_at])
    assert rig.sink.clears >= 1

"""A live session's one reader of its player's events: playback RPC replies, watchers and the end policy, all from
one stream. The session runtime is real (``build_live_session``: receiver, playout, RenderSession with energy
lip-sync, real-time clock: the session's stats task sleeps on the playout's clock, and a virtual one would run ahead);
a recording sink and a scripted ``send_rpc`` stand in for the room."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from livekit import rtc
from waiting import wait_until

from avaluma.core.avatar_protocol import RPC_CLEAR_BUFFER, RPC_PLAYBACK_FINISHED, RPC_PLAYBACK_STARTED
from avaluma.core.live.events import EndReason, SessionError
from avaluma.core.live.livekit_session import LiveSession, build_live_session
from avaluma.core.live.sessions import Session
from avaluma.core.media import AudioChunk, RenderOptions
from avaluma.renderer.engine import PlaybackEvent, RenderedFrame
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.energy import EnergyBackend

ROOT = Path(__file__).resolve().parents[2]
RATE = 24_000
HANG_GUARD_S = 30.0


class Sink:
    def __init__(self) -> None:
        self.frames: list[RenderedFrame] = []
        self.fail_on_speech = False

    def prepare(self, frame: RenderedFrame) -> None:
        if self.fail_on_speech and frame.speaking:
            raise RuntimeError("encoder broke")

    async def push(self, frame: RenderedFrame) -> None:
        self.frames.append(frame)

    async def clear(self) -> None:
        pass


class Rig:
    def __init__(self) -> None:
        self.session = Session(
            id="s1",
            avatar_id="astronaut",
            livekit_url="ws://lk.example",
            room_name="room-1",
            identity="avatar-1",
            agent_identity="agent-1",
            accepted_senders=("sender-2",),
            idle_timeout_s=3600,
            render=RenderOptions(audio_sample_rate=RATE),
        )
        self.sink = Sink()
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.ended: list[tuple[EndReason, str]] = []
        self.changed = asyncio.Event()
        self.live: LiveSession = build_live_session(
            self.session,
            load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia"),
            EnergyBackend(),
            self.sink,
            fps=25,
            audio_sample_rate=RATE,
            send_rpc=self.send,
            end=self.end,
        )
        self.watched: list[Any] = []

    async def send(self, destination: str, method: str, payload: str) -> str:
        self.sent.append((destination, method, json.loads(payload) if payload else {}))
        self.changed.set()
        return "ok"

    def end(self, reason: EndReason, detail: str) -> None:
        self.ended.append((reason, detail))
        self.changed.set()

    async def watch(self) -> None:
        async for event in self.session.watch():
            self.watched.append(event.body)
            self.changed.set()

    def playback(self) -> list[tuple[str, int, bool]]:
        """What the watchers got of playback: (kind, segment, interrupted)."""
        return [(e.kind, e.segment, e.interrupted) for e in self.watched if isinstance(e, PlaybackEvent)]

    async def until(self, predicate: Callable[[], bool]) -> None:
        await wait_until(self.changed, predicate, HANG_GUARD_S)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    watcher = asyncio.create_task(rig.watch())
    rig.live.start()
    yield rig
    await rig.live.aclose()
    watcher.cancel()


def speech(seconds: float) -> AudioChunk:
    t = np.arange(round(seconds * RATE)) / RATE
    return AudioChunk((0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), RATE)


def clear_call(caller: str) -> rtc.RpcInvocationData:
    return rtc.RpcInvocationData("r1", caller, "", 5.0, RPC_CLEAR_BUFFER)


async def test_playback_and_clears_reach_the_sender_and_the_watchers_from_one_stream(rig: Rig) -> None:
    rig.live.playout.push_audio(speech(3.0), sender="sender-2")  # a long segment, still open
    await rig.until(lambda: any(m == RPC_PLAYBACK_STARTED for _, m, _ in rig.sent))
    assert rig.live.receiver.on_clear_buffer(clear_call("agent-1")) == "ok"
    rig.live.receiver.on_clear_buffer(clear_call("agent-1"))  # nothing open now: still answered, to the caller
    await rig.until(lambda: len(rig.playback()) == 3)

    # The segment's replies go to its sender, the idle clear's to whoever asked.
    assert [(d, m) for d, m, _ in rig.sent] == [
        ("sender-2", RPC_PLAYBACK_STARTED),
        ("sender-2", RPC_PLAYBACK_FINISHED),
        ("agent-1", RPC_PLAYBACK_FINISHED),
    ]
    cut, idle = rig.sent[1][2], rig.sent[2][2]
    assert cut["interrupted"] and 0 < cut["playback_position"] < 3.0
    assert idle == {"playback_position": 0.0, "interrupted": True, "synchronized_transcript": None}
    # The watchers see the same events, with the one segment id.
    assert rig.playback() == [("started", 0, False), ("finished", 0, True), ("finished", 0, True)]
    assert rig.ended == []


async def test_a_render_failure_is_one_error_event_and_ends_the_session(rig: Rig) -> None:
    rig.sink.fail_on_speech = True
    rig.live.playout.push_audio(speech(0.4), sender="sender-2")
    await rig.until(lambda: bool(rig.ended))
    await rig.until(lambda: any(isinstance(e, SessionError) for e in rig.watched))
    assert rig.ended == [(EndReason.ERROR, "rendering failed; see the error event")]
    (error,) = [e for e in rig.watched if isinstance(e, SessionError)]
    assert "rendering failed: encoder broke" in error.message

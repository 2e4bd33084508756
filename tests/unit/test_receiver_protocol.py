"""The lk.audio_stream receiver and its RPCs, with livekit.rtc's own objects up to the network boundary: real
``rtc.ByteStreamInfo`` headers, ``rtc.RpcInvocationData`` calls and ``rtc.RpcError`` answers; the byte stream's
chunks and the outgoing RPCs are scripted (no LiveKit server can run here). The playout behind it is real (energy
lip-sync, virtual clock). Bad input: missing attributes, wrong sample rates, refused senders, garbage payloads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from livekit import rtc

from avaluma.core.errors import AvalumaError
from avaluma.core.live.audio_receiver import (
    AUDIO_STREAM_TOPIC,
    RPC_AGENT_STATE_CHANGED,
    RPC_CLEAR_BUFFER,
    RPC_PLAYBACK_FINISHED,
    RPC_PLAYBACK_STARTED,
    RPC_SET_EMOTION,
    AudioStreamReceiver,
    RpcRefused,
    SenderPolicy,
)
from avaluma.core.live.playout import Playout, VirtualClock
from avaluma.renderer.engine import PlaybackEvent, RenderedFrame, RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.energy import EnergyBackend

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 30.0


class ScriptedStream:
    """A byte stream as ``rtc.ByteStreamReader`` delivers it: a real header, then chunks, then the close."""

    def __init__(self, attributes: dict[str, str] | None, chunks: list[bytes] | None = None, *, open_end: bool = False):
        self.info = rtc.ByteStreamInfo(
            stream_id="s1",
            mime_type="application/octet-stream",
            topic=AUDIO_STREAM_TOPIC,
            timestamp=0,
            size=None,
            attributes=attributes,
            name="AUDIO_1",
        )
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        for chunk in chunks or []:
            self.queue.put_nowait(chunk)
        if not open_end:
            self.queue.put_nowait(None)
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while (chunk := await self.queue.get()) is not None:
            yield chunk

    def close(self) -> None:
        self.closed = True


def pcm(seconds: float, rate: int, channels: int = 1) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    mono = (8000 * np.sin(2 * np.pi * 150 * t)).astype("<i2")
    return np.repeat(mono[:, None], channels, axis=1).tobytes()


def call(caller: str, payload: str = "", method: str = RPC_CLEAR_BUFFER) -> rtc.RpcInvocationData:
    return rtc.RpcInvocationData(
        request_id="r1", caller_identity=caller, payload=payload, response_timeout=5.0, method=method
    )


class FrameCounter:
    def __init__(self) -> None:
        self.frames: list[RenderedFrame] = []

    def prepare(self, frame: RenderedFrame) -> None:
        pass  # nothing to convert ahead of push

    async def push(self, frame: RenderedFrame) -> None:
        self.frames.append(frame)

    async def clear(self) -> None:
        pass


class Rig:
    def __init__(self, policy: SenderPolicy, *, agents: tuple[str, ...] = ()) -> None:
        avatar = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")
        self.sink = FrameCounter()
        self.sent: list[tuple[str, str, str]] = []
        self.errors: list[AvalumaError] = []
        self.changed = asyncio.Event()
        render = RenderSession(avatar, EnergyBackend(), fps=25, audio_sample_rate=24_000)
        self.playout = Playout(render, self.sink, clock=VirtualClock())
        self.receiver = AudioStreamReceiver(
            self.playout, policy, send_rpc=self.send, on_error=self.error, is_agent=lambda i: i in agents
        )

    async def run(self) -> None:
        await asyncio.gather(self.playout.run(), self.forward_playback())

    async def forward_playback(self) -> None:
        """The playout's playback events to the receiver, as a live session's event reader does."""
        async for event in self.playout.events():
            if isinstance(event, PlaybackEvent):
                self.receiver.on_playback(event)

    async def send(self, destination: str, method: str, payload: str) -> str:
        self.sent.append((destination, method, payload))
        self.changed.set()
        return "ok"

    def error(self, exc: AvalumaError) -> None:
        self.errors.append(exc)
        self.changed.set()

    async def until(self, predicate: Any) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await asyncio.sleep(0.01)

        await asyncio.wait_for(loop(), HANG_GUARD_S)

    def finished(self) -> list[tuple[str, dict[str, Any]]]:
        return [(d, json.loads(p)) for d, m, p in self.sent if m == RPC_PLAYBACK_FINISHED]


@pytest.fixture
async def rig_factory() -> AsyncIterator[Any]:
    rigs: list[tuple[Rig, asyncio.Task[None]]] = []

    def make(policy: SenderPolicy, **kwargs: Any) -> Rig:
        rig = Rig(policy, **kwargs)
        rig.receiver.start()
        rigs.append((rig, asyncio.create_task(rig.run())))
        return rig

    yield make
    for rig, task in rigs:
        rig.playout.close()
        await asyncio.wait_for(task, HANG_GUARD_S)
        await rig.receiver.aclose()


async def test_a_segment_plays_and_both_playback_rpcs_go_back_to_its_sender(rig_factory: Any) -> None:
    rig: Rig = rig_factory(SenderPolicy(["agent-1", "wav-sender"]))
    audio = pcm(0.4, 16_000, channels=2)
    # Chunk boundaries that split a sample must not shift the audio.
    rig.receiver.on_stream(
        ScriptedStream({"sample_rate": "16000", "num_channels": "2"}, [audio[:1001], audio[1001:]]), "wav-sender"
    )
    await rig.until(lambda: len(rig.finished()) == 1)
    assert [(d, m) for d, m, _ in rig.sent] == [
        ("wav-sender", RPC_PLAYBACK_STARTED),
        ("wav-sender", RPC_PLAYBACK_FINISHED),
    ]
    ((_, body),) = rig.finished()
    assert body == {
        "playback_position": pytest.approx(0.4, abs=0.01),
        "interrupted": False,
        "synchronized_transcript": None,
    }
    assert sum(f.speaking for f in rig.sink.frames) == 10
    assert rig.errors == []


async def test_clear_interrupts_an_open_stream_and_its_rest_is_never_played(rig_factory: Any) -> None:
    rig: Rig = rig_factory(SenderPolicy(["agent-1"]))
    stream = ScriptedStream({"sample_rate": "24000", "num_channels": "1"}, [pcm(2.0, 24_000)], open_end=True)
    rig.receiver.on_stream(stream, "agent-1")
    await rig.until(lambda: any(m == RPC_PLAYBACK_STARTED for _, m, _ in rig.sent))
    assert rig.receiver.on_clear_buffer(call("agent-1")) == "ok"
    # The answer is queued before the handler returns: it does not wait for rendering or the stream.
    await rig.until(lambda: len(rig.finished()) == 1)
    ((dest, body),) = rig.finished()
    assert dest == "agent-1" and body["interrupted"] is True and 0 < body["playback_position"] < 2.0
    stream.queue.put_nowait(pcm(1.0, 24_000))  # late audio of the cleared stream
    stream.queue.put_nowait(None)
    n = len(rig.sink.frames)
    await rig.until(lambda: len(rig.sink.frames) > n + 40)
    assert not any(f.speaking for f in rig.sink.frames[n + 1 :])
    assert len(rig.finished()) == 1


async def test_every_clear_is_answered_even_when_idle(rig_factory: Any) -> None:
    rig: Rig = rig_factory(SenderPolicy(["agent-1"]))
    rig.receiver.on_clear_buffer(call("agent-1"))
    rig.receiver.on_clear_buffer(call("agent-1"))
    await rig.until(lambda: len(rig.finished()) == 2)
    assert (
        rig.finished()
        == [("agent-1", {"playback_position": 0.0, "interrupted": True, "synchronized_transcript": None})] * 2
    )


async def test_bad_streams_get_one_clear_error_and_the_session_goes_on(rig_factory: Any) -> None:
    rig: Rig = rig_factory(SenderPolicy(["agent-1"]))
    bad = {
        "no attributes": (None, "has no sample_rate or num_channels attribute"),
        "no channels": ({"sample_rate": "24000"}, "has no num_channels attribute"),
        "not numbers": ({"sample_rate": "fast", "num_channels": "1"}, "non-numeric"),
        "44 Hz": ({"sample_rate": "44", "num_channels": "1"}, "unsupported sample rate 44 Hz"),
        "12 channels": ({"sample_rate": "24000", "num_channels": "12"}, "unsupported channel count 12"),
    }
    streams = []
    for attributes, _ in bad.values():
        stream = ScriptedStream(attributes, [pcm(0.2, 24_000)])
        streams.append(stream)
        rig.receiver.on_stream(stream, "agent-1")
        expected = len(streams)
        await rig.until(lambda: len(rig.errors) == expected)  # noqa: B023 (awaited in this iteration)
    for error, (_, says) in zip(rig.errors, bad.values(), strict=True):
        assert error.code == "INVALID_ARGUMENT" and says in error.message
    assert all(s.closed for s in streams)
    # Nothing was played, and a good stream afterwards plays normally.
    rig.receiver.on_stream(ScriptedStream({"sample_rate": "24000", "num_channels": "1"}, [pcm(0.2, 24_000)]), "agent-1")
    await rig.until(lambda: len(rig.finished()) == 1)
    assert sum(f.speaking for f in rig.sink.frames) == 5


async def test_senders_not_allowed_are_refused_without_disturbing_the_agent(rig_factory: Any) -> None:
    rig: Rig = rig_factory(SenderPolicy(["agent-1"]))
    intruder = ScriptedStream({"sample_rate": "24000", "num_channels": "1"}, [pcm(0.2, 24_000)])
    rig.receiver.on_stream(intruder, "mallory")
    (error,) = rig.errors
    assert error.code == "PERMISSION_DENIED" and "accepted_sender_identities" in error.message
    assert "mallory" not in error.message and intruder.closed
    with pytest.raises(RpcRefused, match="not an accepted sender"):
        rig.receiver.on_clear_buffer(call("mallory"))
    with pytest.raises(RpcRefused):
        rig.receiver.on_agent_state(call("mallory", '{"state": "thinking"}', RPC_AGENT_STATE_CHANGED))
    rig.receiver.on_stream(ScriptedStream({"sample_rate": "24000", "num_channels": "1"}, [pcm(0.2, 24_000)]), "agent-1")
    await rig.until(lambda: len(rig.finished()) == 1)
    assert {d for d, _, _ in rig.sent} == {"agent-1"}


def test_without_identities_the_first_agent_is_the_only_sender() -> None:
    policy = SenderPolicy()
    with pytest.raises(AvalumaError, match="only the agent"):
        policy.check("user-1", is_agent=False)
    policy.check("agent-a", is_agent=True)
    with pytest.raises(AvalumaError, match="only the agent"):
        policy.check("agent-b", is_agent=True)
    assert policy.accepted == {"agent-a"}
    assert SenderPolicy(["wav"], agent="agent-1").accepted == {"wav", "agent-1"}


async def test_agent_state_payloads(rig_factory: Any) -> None:
    rig: Rig = rig_factory(SenderPolicy(["agent-1"]))
    assert rig.receiver.on_agent_state(call("agent-1", '{"state": "listening"}', RPC_AGENT_STATE_CHANGED)) == "ok"
    for garbage in ("", "not json", "[1, 2]", '{"state": 3}', '{"state": "dancing"}', '{"mood": "happy"}'):
        with pytest.raises(RpcRefused, match=r'JSON like \{"state": "listening"\}'):
            rig.receiver.on_agent_state(call("agent-1", garbage, RPC_AGENT_STATE_CHANGED))


class RecordingParticipant:
    def __init__(self) -> None:
        self.methods: dict[str, Any] = {}

    def register_rpc_method(self, name: str, handler: Any) -> None:
        self.methods[name] = handler


class RecordingRoom:
    """Stands in for a connected ``rtc.Room`` (connecting needs a LiveKit server): records what is registered."""

    def __init__(self) -> None:
        self.local_participant = RecordingParticipant()
        self.stream_handlers: dict[str, Any] = {}

    def register_byte_stream_handler(self, topic: str, handler: Any) -> None:
        self.stream_handlers[topic] = handler


async def test_attach_registers_the_stock_topic_and_rpcs_and_refusals_become_rpc_errors(rig_factory: Any) -> None:
    rig: Rig = rig_factory(SenderPolicy(["agent-1"]))
    room = RecordingRoom()
    rig.receiver.attach(room)
    assert set(room.stream_handlers) == {AUDIO_STREAM_TOPIC}
    assert set(room.local_participant.methods) == {RPC_CLEAR_BUFFER, RPC_AGENT_STATE_CHANGED, RPC_SET_EMOTION}
    clear = room.local_participant.methods[RPC_CLEAR_BUFFER]
    assert await clear(call("agent-1")) == "ok"
    with pytest.raises(rtc.RpcError) as info:
        await room.local_participant.methods[RPC_AGENT_STATE_CHANGED](call("agent-1", "{", RPC_AGENT_STATE_CHANGED))
    assert info.value.code == rtc.RpcError.ErrorCode.APPLICATION_ERROR and "not JSON" in info.value.message
    room.stream_handlers[AUDIO_STREAM_TOPIC](
        ScriptedStream({"sample_rate": "24000", "num_channels": "1"}, [pcm(0.2, 24_000)]), "agent-1"
    )
    await rig.until(lambda: any(m == RPC_PLAYBACK_STARTED for _, m, _ in rig.sent))

"""The emotion API below the front doors: the playout applies a change in order with the audio (speech already
received keeps its emotion, a clear keeps the change), the room's ``set_emotion`` / ``agent_state_changed`` RPCs, the
``render.emotion`` default, and the name lists every surface documents. Real RenderSession (energy lip-sync) on a
virtual clock; the emotion each frame was rendered with is read from the session right after it rendered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from livekit import rtc

from avaluma.core.config import AvatarLinkConfig, Config, RenderConfig
from avaluma.core.errors import AvalumaError, InvalidArgument
from avaluma.core.live.audio_receiver import (
    RPC_AGENT_STATE_CHANGED,
    RPC_SET_EMOTION,
    AudioStreamReceiver,
    RpcRefused,
    SenderPolicy,
)
from avaluma.core.live.playout import Playout, VirtualClock
from avaluma.core.media import EMOTIONS, AudioChunk
from avaluma.core.server import http_models
from avaluma.renderer.engine import RenderedFrame, RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.energy import EnergyBackend

ROOT = Path(__file__).resolve().parents[2]
RATE = 16_000
HANG_GUARD_S = 30.0


class EmotionRecorder:
    """A frame sink that notes the emotion each frame was rendered with (``prepare`` runs right after rendering)."""

    def __init__(self) -> None:
        self.playout: Playout | None = None
        self.rendered: dict[int, str] = {}
        self.published: list[RenderedFrame] = []

    def prepare(self, frame: RenderedFrame) -> None:
        assert self.playout is not None
        self.rendered[frame.index] = self.playout.render_session.emotion

    async def push(self, frame: RenderedFrame) -> None:
        self.published.append(frame)

    async def clear(self) -> None:
        pass

    def speech(self) -> list[str]:
        """The emotion of every published speech frame, in order."""
        return [self.rendered[f.index] for f in self.published if f.speaking]


def tone(seconds: float) -> AudioChunk:
    t = np.arange(round(seconds * RATE)) / RATE
    return AudioChunk((0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), RATE)


@pytest.fixture(scope="module")
def avatar() -> Any:
    return load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")


@pytest.fixture
async def player(avatar: Any) -> AsyncIterator[tuple[Playout, EmotionRecorder]]:
    sink = EmotionRecorder()
    render = RenderSession(avatar, EnergyBackend(), fps=25, audio_sample_rate=RATE, emotion="serious")
    playout = Playout(render, sink, clock=VirtualClock())
    sink.playout = playout
    task = asyncio.create_task(playout.run())
    yield playout, sink
    playout.close()
    await asyncio.wait_for(task, HANG_GUARD_S)


async def until(predicate: Any) -> None:
    async def loop() -> None:
        while not predicate():  # noqa: ASYNC110 (the state changes in the render threads, no event to wait on)
            await asyncio.sleep(0.005)

    await asyncio.wait_for(loop(), HANG_GUARD_S)


async def test_a_change_applies_from_its_point_in_the_audio(player: tuple[Playout, EmotionRecorder]) -> None:
    playout, sink = player
    assert playout.emotion == "serious"  # the session's start emotion
    playout.push_audio(tone(0.4))  # 10 frames, queued before the change
    playout.set_emotion("happy")
    playout.push_audio(tone(0.4))
    playout.end_segment()
    assert playout.emotion == "happy"  # what new audio will show, at once
    await until(lambda: len(sink.speech()) == 20)
    assert sink.speech() == ["serious"] * 10 + ["happy"] * 10


async def test_a_clear_drops_the_audio_but_keeps_the_change(player: tuple[Playout, EmotionRecorder]) -> None:
    playout, sink = player
    playout.push_audio(tone(2.0))
    playout.set_emotion("concerned")
    playout.push_audio(tone(2.0))
    await until(lambda: any(f.speaking for f in sink.published))
    playout.clear()
    playout.push_audio(tone(0.2))
    playout.end_segment()
    await until(lambda: sink.speech()[-1:] == ["concerned"] and len(sink.rendered) > 0)
    n = len(sink.published)
    await until(lambda: len(sink.published) > n + 3)  # idle frames after the clear show it too
    assert sink.rendered[sink.published[-1].index] == "concerned"


async def test_an_unknown_emotion_changes_nothing(player: tuple[Playout, EmotionRecorder]) -> None:
    playout, sink = player
    with pytest.raises(InvalidArgument) as info:
        playout.set_emotion("furious")
    assert "furious" in info.value.message and all(name in info.value.message for name in EMOTIONS)
    playout.push_audio(tone(0.2))
    playout.end_segment()
    await until(lambda: len(sink.speech()) == 5)
    assert playout.emotion == "serious" and set(sink.speech()) == {"serious"}


class Caller:
    def __init__(self, identity: str, method: str, payload: str) -> None:
        self.data = rtc.RpcInvocationData(
            request_id="r1", caller_identity=identity, payload=payload, response_timeout=5.0, method=method
        )


async def test_room_rpcs_set_the_emotion_and_refuse_unknown_names(player: tuple[Playout, EmotionRecorder]) -> None:
    playout, sink = player
    applied: list[str] = []

    def set_emotion(name: str) -> None:  # what a LiveSession does: the playout, and the session's record
        playout.set_emotion(name)
        applied.append(name)

    async def send_rpc(destination: str, method: str, payload: str) -> str:
        return "ok"

    errors: list[AvalumaError] = []
    receiver = AudioStreamReceiver(
        playout, SenderPolicy(["agent-1"]), send_rpc=send_rpc, on_error=errors.append, set_emotion=set_emotion
    )
    on_set = receiver.on_set_emotion
    assert on_set(Caller("agent-1", RPC_SET_EMOTION, '{"emotion": "happy"}').data) == "ok"
    state_call = Caller("agent-1", RPC_AGENT_STATE_CHANGED, '{"state": "listening", "emotion": "surprised"}')
    assert receiver.on_agent_state(state_call.data) == "ok"
    assert receiver.on_agent_state(Caller("agent-1", RPC_AGENT_STATE_CHANGED, '{"state": "thinking"}').data) == "ok"
    assert applied == ["happy", "surprised"] and playout.emotion == "surprised"

    for garbage, says in {
        '{"emotion": "furious"}': "unknown emotion 'furious': use one of neutral, happy, serious, surprised, concerned",
        '{"emotion": 3}': "must be a string",
        '{"mood": "happy"}': "has no emotion",
        "happy": "not JSON",
        '["happy"]': "not a JSON object",
    }.items():
        with pytest.raises(RpcRefused, match=says):
            on_set(Caller("agent-1", RPC_SET_EMOTION, garbage).data)
    # A bad emotion in agent_state_changed refuses the whole cue: neither the state nor the emotion changes.
    with pytest.raises(RpcRefused, match="unknown emotion"):
        receiver.on_agent_state(Caller("agent-1", RPC_AGENT_STATE_CHANGED, '{"state": "idle", "emotion": "x"}').data)
    with pytest.raises(RpcRefused, match="not an accepted sender"):
        on_set(Caller("mallory", RPC_SET_EMOTION, '{"emotion": "happy"}').data)
    assert applied == ["happy", "surprised"] and playout.emotion == "surprised"
    playout.push_audio(tone(0.2))
    playout.end_segment()
    await until(lambda: len(sink.speech()) == 5)
    assert set(sink.speech()) == {"surprised"}
    assert errors == []


def test_the_server_default_emotion_is_checked_at_start_up() -> None:
    assert Config().render.emotion == "neutral"
    assert RenderConfig(emotion="happy").emotion == "happy"
    with pytest.raises(ValueError, match=r"render\.emotion: unknown emotion 'cheerful'"):
        RenderConfig(emotion="cheerful")
    assert AvatarLinkConfig().emotion == "" and AvatarLinkConfig(emotion="serious").emotion == "serious"
    with pytest.raises(ValueError, match=r"agent\.avatar\.emotion: unknown emotion 'glum'"):
        AvatarLinkConfig(emotion="glum")


def test_every_surface_lists_the_same_emotions() -> None:
    from livekit.plugins import avaluma

    assert get_args(http_models.Emotion) == EMOTIONS
    assert avaluma.EMOTIONS == EMOTIONS

"""LiveKit's real AgentSession pipeline, offline: scripted STT/VAD/LLM/TTS (subclasses of LiveKit's base classes)
drive it into ``QueueAudioOutput``, the audio output an avatar consumes, and a real-time playout stands in for the
avatar. A full voice turn, an interruption and a tool call.

``asyncio.wait_for`` limits below only stop a broken pipeline from hanging the suite; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from livekit.agents import Agent, AgentSession, function_tool
from livekit.agents.voice.avatar import QueueAudioOutput
from waiting import wait_until

from avaluma.agent.testing import (
    LLMReply,
    PlayoutSimulator,
    ScriptedLLM,
    ScriptedSTT,
    ScriptedVAD,
    SilentAudioInput,
    ToneTTS,
    UserTurn,
)

HANG_GUARD_S = 30.0


@dataclass
class Rig:
    session: AgentSession
    tts: ToneTTS
    llm: ScriptedLLM
    avatar: PlayoutSimulator
    items: list[Any] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def assistant_messages(self) -> list[Any]:
        return [i for i in self.items if i.type == "message" and i.role == "assistant"]

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        await wait_until(self.changed, predicate, HANG_GUARD_S)


@pytest.fixture
async def rig_factory() -> AsyncIterator[Callable[..., Any]]:
    rigs: list[Rig] = []

    async def make(turns: Sequence[UserTurn], replies: dict[str, LLMReply], agent: Agent) -> Rig:
        tts = ToneTTS(seconds_per_char=0.02)
        llm = ScriptedLLM(replies)
        session: AgentSession = AgentSession(
            vad=ScriptedVAD(turns),
            stt=ScriptedSTT(turns),
            llm=llm,
            tts=tts,
            turn_handling={
                "turn_detection": "vad",
                "endpointing": {"min_delay": 0.1, "max_delay": 1.0},
                "interruption": {"mode": "vad", "min_duration": 0.2, "resume_false_interruption": False},
                "preemptive_generation": {"enabled": False},
            },
            # No transcription output to wait for when the session closes.
            session_close_transcript_timeout=0.1,
        )
        queue = QueueAudioOutput(sample_rate=tts.sample_rate)
        session.input.audio = SilentAudioInput()
        session.output.audio = queue
        avatar = PlayoutSimulator(queue)
        rig = Rig(session=session, tts=tts, llm=llm, avatar=avatar)

        def on_item(ev: Any) -> None:
            rig.items.append(ev.item)
            rig.changed.set()

        def on_state(ev: Any) -> None:
            rig.states.append(ev.new_state)
            rig.changed.set()

        session.on("conversation_item_added", on_item)
        session.on("agent_state_changed", on_state)
        avatar.start()
        await session.start(agent)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.session.aclose()
        await rig.avatar.aclose()


async def test_full_voice_turn_reaches_the_avatar(rig_factory: Callable[..., Any]) -> None:
    reply = "Hello! I am the avatar speaking to you."
    rig: Rig = await rig_factory(
        [UserTurn(start=0.1, end=0.5, transcript="hello there")],
        {"hello there": LLMReply(reply)},
        Agent(instructions="You are a friendly avatar."),
    )
    await rig.wait_for(lambda: bool(rig.assistant_messages()) and bool(rig.avatar.segments))
    await rig.wait_for(lambda: rig.states[-1:] == ["listening"])

    users = [i for i in rig.items if i.type == "message" and i.role == "user"]
    assert [u.text_content for u in users] == ["hello there"]
    (answer,) = rig.assistant_messages()
    assert answer.text_content == reply
    assert not answer.interrupted
    assert rig.llm.requests == ["hello there"]

    # The avatar received exactly the TTS audio, sentence after sentence, as one segment played to its end.
    assert " ".join(t.strip() for t in rig.tts.texts) == reply
    (segment,) = rig.avatar.segments
    assert not segment.interrupted
    expected = np.concatenate([np.frombuffer(rig.tts.tone(t), dtype=np.int16) for t in rig.tts.texts])
    # LiveKit's TTS emitter pads the last frame of a synthesis with silence (frames are 200 ms).
    played = segment.samples
    np.testing.assert_array_equal(played[: len(expected)], expected)
    assert len(played) - len(expected) < rig.tts.sample_rate // 5
    assert not played[len(expected) :].any()
    assert segment.position == pytest.approx(len(played) / rig.tts.sample_rate, abs=1e-3)

    assert "thinking" in rig.states
    assert rig.states.index("thinking") < rig.states.index("speaking")


async def test_user_barge_in_interrupts_the_avatar(rig_factory: Callable[..., Any]) -> None:
    story = " ".join(["Once upon a time there was a small robot who loved to sing songs all day long."] * 4)
    rig: Rig = await rig_factory(
        [
            UserTurn(start=0.1, end=0.4, transcript="tell me a story"),
            # Starts while the ~6 s story is still playing.
            UserTurn(start=2.5, end=3.0, transcript="stop please"),
        ],
        {"tell me a story": LLMReply(story), "stop please": LLMReply("Okay, stopping.")},
        Agent(instructions="You tell stories."),
    )
    await rig.wait_for(lambda: len(rig.assistant_messages()) == 2 and len(rig.avatar.segments) == 2)

    first, second = rig.assistant_messages()
    assert first.interrupted
    assert not second.interrupted
    assert second.text_content == "Okay, stopping."

    story_segment, answer_segment = rig.avatar.segments
    assert story_segment.interrupted
    full_story_s = sum(len(rig.tts.tone(t)) // 2 for t in rig.tts.texts[:-1]) / rig.tts.sample_rate
    assert 0 < story_segment.position < full_story_s
    assert not answer_segment.interrupted
    assert rig.llm.requests == ["tell me a story", "stop please"]


class WeatherAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You answer weather questions with the get_weather tool.")
        self.calls: list[str] = []

    @function_tool
    async def get_weather(self, city: str) -> str:
        """Current weather in a city.

        Args:
            city: The city name.
        """
        self.calls.append(city)
        return f"sunny in {city}"


async def test_tool_call_result_is_spoken(rig_factory: Callable[..., Any]) -> None:
    agent = WeatherAgent()
    rig: Rig = await rig_factory(
        [UserTurn(start=0.1, end=0.5, transcript="what is the weather in Paris")],
        {
            "what is the weather in Paris": LLMReply(tool_calls=[("get_weather", '{"city": "Paris"}')]),
            "sunny in Paris": LLMReply("It is sunny in Paris today."),
        },
        agent,
    )
    await rig.wait_for(lambda: bool(rig.assistant_messages()) and bool(rig.avatar.segments))

    assert agent.calls == ["Paris"]
    history = rig.session.history.items
    calls = [i for i in history if i.type == "function_call"]
    outputs = [i for i in history if i.type == "function_call_output"]
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city": "Paris"}')]
    assert [o.output for o in outputs] == ["sunny in Paris"]
    assert rig.llm.requests == ["what is the weather in Paris", "sunny in Paris"]
    (answer,) = rig.assistant_messages()
    assert answer.text_content == "It is sunny in Paris today."
    (segment,) = rig.avatar.segments
    assert not segment.interrupted
    assert np.abs(segment.samples).max() > 1000  # audible speech, not silence

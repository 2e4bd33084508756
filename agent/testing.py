"""Scripted providers for running a LiveKit ``AgentSession`` offline: no network, no keys, no room.

Each class subclasses LiveKit Agents' real base class (``stt.STT``, ``vad.VAD``, ``llm.LLM``, ``tts.TTS``) and is
scripted with data, so the real pipeline (turn taking, interruptions, tool calls, audio output) runs unchanged:

    turns = [UserTurn(start=0.2, end=0.8, transcript="hello")]
    session = AgentSession(
        vad=ScriptedVAD(turns), stt=ScriptedSTT(turns),
        llm=ScriptedLLM({"hello": LLMReply("Hi there!")}), tts=ToneTTS(),
    )
    session.input.audio = SilentAudioInput()
    session.output.audio = QueueAudioOutput()        # what an avatar consumes

Times in :class:`UserTurn` are seconds after the first input frame reaches the VAD/STT stream. The scripted VAD and
STT follow the script rather than the audio, which is silent; :class:`PlayoutSimulator` stands in for the avatar
side: it plays the session's audio back in real time and reports playback started/finished and interruptions,
exactly as an avatar worker answers through ``AudioReceiver``.

This module imports LiveKit Agents: import it only where the ``agent`` extra is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import LanguageCode, llm, stt, tts, utils, vad
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions, NotGivenOr
from livekit.agents.voice.avatar import AudioReceiver, AudioSegmentEnd
from livekit.agents.voice.io import AudioInput

__all__ = [
    "LLMReply",
    "PlayoutSimulator",
    "ScriptedLLM",
    "ScriptedSTT",
    "ScriptedVAD",
    "SilentAudioInput",
    "ToneTTS",
    "UserTurn",
]


@dataclass(frozen=True)
class UserTurn:
    """One user utterance: speech from ``start`` to ``end`` (seconds), recognised as ``transcript``."""

    start: float
    end: float
    transcript: str
    #: Delay after ``end`` before the final transcript arrives (a real STT's latency).
    stt_delay: float = 0.1


def _check_turns(turns: Sequence[UserTurn]) -> list[UserTurn]:
    ordered = sorted(turns, key=lambda t: t.start)
    for prev, nxt in itertools.pairwise(ordered):
        if prev.end > nxt.start:
            raise ValueError("scripted user turns overlap")
    return ordered


class _Clock:
    """Seconds since the first input frame of a stream: the script's time base."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    async def until(self, t: float) -> None:
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)


# --- VAD ----------------------------------------------------------------------------------------------------------


class ScriptedVAD(vad.VAD):
    """A VAD that reports speech exactly where the script says, whatever the audio."""

    def __init__(
        self, turns: Sequence[UserTurn], *, min_speech_duration: float = 0.05, min_silence_duration: float = 0.2
    ) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=0.05))
        self.turns = _check_turns(turns)
        self.min_speech_duration = min_speech_duration
        self.min_silence_duration = min_silence_duration

    def stream(self) -> vad.VADStream:
        return _ScriptedVADStream(self)


class _ScriptedVADStream(vad.VADStream):
    def __init__(self, vad_: ScriptedVAD) -> None:
        super().__init__(vad_)
        self._script = vad_

    async def _main_task(self) -> None:
        await self._input_ch.recv()  # the script starts with the first frame
        clock = _Clock()
        for turn in self._script.turns:
            await clock.until(turn.start + self._script.min_speech_duration)
            self._send(vad.VADEventType.START_OF_SPEECH, turn, clock.now(), speaking=True)
            end_of_speech = turn.end + self._script.min_silence_duration
            while clock.now() < end_of_speech - 0.05:
                await asyncio.sleep(0.05)
                speaking = clock.now() < turn.end
                self._send(vad.VADEventType.INFERENCE_DONE, turn, clock.now(), speaking=speaking)
            await clock.until(end_of_speech)
            self._send(vad.VADEventType.END_OF_SPEECH, turn, clock.now(), speaking=False)
        async for _ in self._input_ch:  # keep consuming until the session ends the input
            pass

    def _send(self, kind: vad.VADEventType, turn: UserTurn, now: float, *, speaking: bool) -> None:
        self._event_ch.send_nowait(
            vad.VADEvent(
                type=kind,
                samples_index=0,
                timestamp=now,
                speech_duration=max(0.0, min(now, turn.end) - turn.start),
                silence_duration=max(0.0, now - turn.end),
                probability=1.0 if speaking else 0.0,
                speaking=speaking,
            )
        )


# --- STT ----------------------------------------------------------------------------------------------------------


class ScriptedSTT(stt.STT[Any]):
    """A streaming STT that emits an interim then a final transcript for each scripted turn."""

    def __init__(self, turns: Sequence[UserTurn]) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True))
        self.turns = _check_turns(turns)
        #: Resolved once every scripted transcript has been emitted.
        self.done: asyncio.Future[None] = asyncio.get_event_loop().create_future()

    async def _recognize_impl(
        self, buffer: Any, *, language: NotGivenOr[str] = NOT_GIVEN, conn_options: APIConnectOptions
    ) -> stt.SpeechEvent:
        raise NotImplementedError("ScriptedSTT only streams")

    def stream(
        self, *, language: NotGivenOr[str] = NOT_GIVEN, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> stt.RecognizeStream:
        return _ScriptedRecognizeStream(stt=self, conn_options=conn_options)


class _ScriptedRecognizeStream(stt.RecognizeStream):
    def __init__(self, *, stt: ScriptedSTT, conn_options: APIConnectOptions) -> None:
        super().__init__(stt=stt, conn_options=conn_options)
        self._script = stt

    async def _run(self) -> None:
        await self._input_ch.recv()
        clock = _Clock()
        for turn in self._script.turns:
            await clock.until(turn.end + turn.stt_delay / 2)
            first_words = " ".join(turn.transcript.split()[:2])
            self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT, first_words)
            await clock.until(turn.end + turn.stt_delay)
            self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, turn.transcript)
        if not self._script.done.done():
            self._script.done.set_result(None)
        async for _ in self._input_ch:
            pass

    def _send(self, kind: stt.SpeechEventType, text: str) -> None:
        data = stt.SpeechData(language=LanguageCode("en"), text=text)
        self._event_ch.send_nowait(stt.SpeechEvent(type=kind, alternatives=[data]))


# --- LLM ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LLMReply:
    """What the scripted LLM answers: text, and optionally tool calls as ``(name, json_arguments)``."""

    text: str = ""
    tool_calls: Sequence[tuple[str, str]] = ()
    #: Time to first token.
    ttft: float = 0.05


class ScriptedLLM(llm.LLM[Any]):
    """Answers by looking up the newest user message (or, after a tool call, the tool's output) in ``replies``.

    Unknown inputs produce an empty answer. Every request's lookup key is appended to :attr:`requests`.
    """

    def __init__(self, replies: Mapping[str, LLMReply]) -> None:
        super().__init__()
        self.replies = dict(replies)
        self.requests: list[str] = []

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _ScriptedLLMStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _ScriptedLLMStream(llm.LLMStream):
    def __init__(
        self, llm_: ScriptedLLM, *, chat_ctx: llm.ChatContext, tools: list[llm.Tool], conn_options: APIConnectOptions
    ) -> None:
        super().__init__(llm_, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._script = llm_

    def _key(self) -> str:
        last = self.chat_ctx.items[-1]
        if last.type == "function_call_output":
            return str(last.output)
        for item in reversed(self.chat_ctx.items):
            if item.type == "message" and item.role == "user":
                return item.text_content or ""
        return ""

    async def _run(self) -> None:
        key = self._key()
        self._script.requests.append(key)
        reply = self._script.replies.get(key)
        if reply is None:
            return
        await asyncio.sleep(reply.ttft)
        request_id = utils.shortuuid("scripted_llm_")
        words = reply.text.split(" ")
        for i, word in enumerate(words):  # stream word by word like a real model
            delta = word if i == 0 else " " + word
            self._event_ch.send_nowait(
                llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", content=delta))
            )
        if reply.tool_calls:
            calls = [
                llm.FunctionToolCall(name=name, arguments=args, call_id=f"{request_id}_{i}")
                for i, (name, args) in enumerate(reply.tool_calls)
            ]
            self._event_ch.send_nowait(
                llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", tool_calls=calls))
            )


# --- TTS ----------------------------------------------------------------------------------------------------------


class ToneTTS(tts.TTS[Any]):
    """Speaks any text as an amplitude-modulated tone lasting ``seconds_per_char`` per character.

    The audio is audible (not silence) so an avatar's lip-sync has something to follow. Every synthesised text is
    appended to :attr:`texts`.
    """

    def __init__(self, *, sample_rate: int = 24_000, seconds_per_char: float = 0.02) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=sample_rate, num_channels=1)
        self.seconds_per_char = seconds_per_char
        self.texts: list[str] = []

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        self.texts.append(text)
        return _ToneStream(tts=self, input_text=text, conn_options=conn_options)

    def tone(self, text: str) -> bytes:
        """The PCM (int16 mono) this TTS produces for ``text``."""
        n = max(1, round(len(text) * self.seconds_per_char * self.sample_rate))
        t = np.arange(n) / self.sample_rate
        envelope = 0.5 + 0.5 * np.sin(2 * math.pi * 4.0 * t)  # ~4 syllables per second
        wave = 8000 * envelope * np.sin(2 * math.pi * 180.0 * t)
        return wave.astype(np.int16).tobytes()


class _ToneStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        assert isinstance(self._tts, ToneTTS)
        output_emitter.initialize(
            request_id=utils.shortuuid("tone_"),
            sample_rate=self._tts.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        output_emitter.push(self._tts.tone(self.input_text))
        output_emitter.flush()


# --- Audio in and the avatar side ---------------------------------------------------------------------------------


class SilentAudioInput(AudioInput):
    """A microphone that delivers one frame of silence, then stays open: the scripted VAD/STT start their clocks on
    that frame and follow the script from there."""

    def __init__(self, *, sample_rate: int = 16_000) -> None:
        super().__init__(label="SilentAudioInput")
        self._ch = utils.aio.Chan[rtc.AudioFrame]()
        n = sample_rate // 10
        self._ch.send_nowait(rtc.AudioFrame(b"\x00\x00" * n, sample_rate, 1, n))

    async def __anext__(self) -> rtc.AudioFrame:
        return await self._ch.__anext__()

    def close(self) -> None:
        self._ch.close()


@dataclass
class PlayedSegment:
    """One audio segment the simulated avatar played."""

    frames: list[rtc.AudioFrame] = field(default_factory=list)
    position: float = 0.0
    interrupted: bool = False

    @property
    def samples(self) -> np.ndarray:
        if not self.frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in self.frames])


class PlayoutSimulator:
    """Plays an ``AudioReceiver`` (e.g. ``QueueAudioOutput``) back in real time, the way an avatar worker does.

    Each segment ends with ``notify_playback_finished``; a ``clear_buffer`` from the agent stops playback at once and
    reports ``interrupted=True`` with the position reached. Finished segments are in :attr:`segments`.
    """

    def __init__(self, receiver: AudioReceiver) -> None:
        self._receiver = receiver
        self.segments: list[PlayedSegment] = []
        self._current: PlayedSegment | None = None
        self._interrupt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        receiver.on("clear_buffer", self._on_clear_buffer)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="PlayoutSimulator")

    async def aclose(self) -> None:
        self._receiver.off("clear_buffer", self._on_clear_buffer)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_clear_buffer(self) -> None:
        if self._current is None:
            # Nothing playing: the protocol still answers every clear_buffer with an interrupted "finished".
            self._receiver.notify_playback_finished(playback_position=0.0, interrupted=True)
        else:
            self._finish(interrupted=True)
        self._interrupt.set()  # cuts the frame being played short

    def _finish(self, *, interrupted: bool) -> None:
        segment = self._current
        if segment is None:
            return
        segment.interrupted = interrupted
        self.segments.append(segment)
        self._current = None
        self._receiver.notify_playback_finished(playback_position=segment.position, interrupted=interrupted)

    async def _run(self) -> None:
        async for item in self._receiver:
            if isinstance(item, AudioSegmentEnd):
                self._finish(interrupted=False)
                continue
            if self._current is None:
                self._interrupt.clear()
                self._current = PlayedSegment()
                self._receiver.notify_playback_started()
            segment = self._current
            segment.frames.append(item)
            # Real-time pacing, like a real avatar's playout.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._interrupt.wait(), timeout=item.duration)
            if not self._interrupt.is_set():
                segment.position += item.duration

"""LiveKit's stock avatar audio protocol, server side, for a configurable set of senders.

What the sender (LiveKit Agents' ``DataStreamAudioOutput``, or ``avaluma send``) does, and what this answers:

- audio: one byte stream per segment on topic ``lk.audio_stream`` with ``sample_rate`` and ``num_channels``
  attributes, raw little-endian int16 PCM; closing the stream ends the segment. A newer stream supersedes one still
  open (its trailer was lost), and :data:`STREAM_IDLE_TIMEOUT_S` without data ends a segment, as in the stock
  ``DataStreamAudioReceiver``;
- ``lk.clear_buffer`` RPC: drop everything, answer ``lk.playback_finished{interrupted: true}`` right away (also when
  nothing plays: every clear is answered), ignore the rest of the stream being cleared;
- ``lk.playback_started`` (empty payload) and ``lk.playback_finished`` (JSON ``{playback_position, interrupted,
  synchronized_transcript}``) RPCs go back to the participant that sent the segment;
- ``agent_state_changed`` RPC (the hosted avatar API's cue, payload ``{"state": "listening"}``) sets the avatar state;
  an optional ``"emotion"`` key in the same payload also sets the emotion;
- ``set_emotion`` RPC (payload ``{"emotion": "happy"}``) sets the emotion from this point of the audio on (eased by the
  renderer). An unknown name is refused with an RPC error listing the valid ones.

Unlike the stock receiver, which accepts only the first agent-kind participant, a :class:`SenderPolicy` names the
accepted identities, so external senders (agent-2) work with an ordinary token.

Bad input never ends the session: a refused sender, a stream without its attributes or with an unsupported format,
a garbage RPC payload each produce one clear error (an RPC error for RPCs, an ``error`` event otherwise) and the
session goes on. :meth:`AudioStreamReceiver.attach` is the only code that touches ``rtc.Room``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from avaluma.core.avatar_protocol import (
    AUDIO_STREAM_TOPIC,
    RPC_AGENT_STATE_CHANGED,
    RPC_CLEAR_BUFFER,
    RPC_PLAYBACK_FINISHED,
    RPC_PLAYBACK_STARTED,
    RPC_SET_EMOTION,
)
from avaluma.core.errors import AvalumaError, InvalidArgument, PermissionDenied
from avaluma.core.live.playout import AGENT_STATES, Playout
from avaluma.core.media import EMOTIONS, check_emotion, pcm16_to_mono, validate_format
from avaluma.core.tasks import cancel_and_wait
from avaluma.renderer.engine import PlaybackEvent

log = logging.getLogger(__name__)

#: With no chunk (and no trailer) for this long a segment ends anyway: the stock receiver's fallback.
STREAM_IDLE_TIMEOUT_S: Final = 10.0
#: Attempts for each playback RPC, and the pause between them (the stock receiver's values).
RPC_ATTEMPTS: Final = 3
RPC_RETRY_PAUSE_S: Final = 0.1
#: livekit.rtc.RpcError codes used here (kept as numbers so this module imports without livekit).
RPC_APPLICATION_ERROR: Final = 1500
RPC_UNSUPPORTED_METHOD: Final = 1400


class StreamInfo(Protocol):
    """What is read from a byte stream's header (``rtc.ByteStreamInfo``)."""

    @property
    def stream_id(self) -> str: ...

    @property
    def attributes(self) -> dict[str, str] | None: ...


class ByteStream(Protocol):
    """An incoming byte stream (``rtc.ByteStreamReader``): its header, then chunks until the sender closes it."""

    @property
    def info(self) -> StreamInfo: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


class RpcInvocation(Protocol):
    """An incoming RPC (``rtc.RpcInvocationData``)."""

    @property
    def caller_identity(self) -> str: ...

    @property
    def payload(self) -> str: ...


#: Performs an RPC: ``(destination_identity, method, payload) -> response``; raises on failure.
SendRpc = Callable[[str, str, str], Awaitable[str]]


class RpcRefused(Exception):
    """An RPC the receiver refuses; the adapter turns it into ``rtc.RpcError(APPLICATION_ERROR, message)``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SenderPolicy:
    """Who may send audio and control playback.

    ``accepted`` (plus ``agent``, when known) are the accepted identities. With neither, the first agent-kind
    participant that sends is accepted, like LiveKit's stock receiver, and the policy stays locked to it.
    """

    def __init__(self, accepted: Iterable[str] = (), *, agent: str = "") -> None:
        self._accepted = {identity for identity in (*accepted, agent) if identity}
        self._locked: str | None = None

    @property
    def accepted(self) -> frozenset[str]:
        """The identities accepted now (the locked-on agent when no identities were configured)."""
        if self._accepted:
            return frozenset(self._accepted)
        return frozenset({self._locked} if self._locked else ())

    def check(self, identity: str, *, is_agent: bool) -> None:
        """Raise :class:`PermissionDenied` unless ``identity`` may send."""
        if self._accepted:
            if identity in self._accepted:
                return
            raise PermissionDenied(
                "a participant that is not an accepted sender tried to send audio or control playback: add its "
                "identity to accepted_sender_identities when starting the session"
            )
        if self._locked is None and is_agent:
            self._locked = identity
        if identity == self._locked:
            return
        raise PermissionDenied(
            "only the agent may send audio to this avatar (no accepted_sender_identities were given, so the first "
            "agent participant is the only sender): list external senders in accepted_sender_identities"
        )


@dataclass(frozen=True, slots=True)
class AudioFormat:
    sample_rate: int
    num_channels: int


def stream_format(attributes: dict[str, str] | None) -> AudioFormat:
    """The format a stream's attributes declare; :class:`InvalidArgument` naming what is missing or wrong."""
    attrs = attributes or {}
    missing = [name for name in ("sample_rate", "num_channels") if name not in attrs]
    if missing:
        raise InvalidArgument(
            f"audio stream on {AUDIO_STREAM_TOPIC} has no {' or '.join(missing)} attribute: open each byte stream "
            "with attributes {'sample_rate': '<Hz>', 'num_channels': '<n>'} (LiveKit's DataStreamAudioOutput does)"
        )
    try:
        fmt = AudioFormat(int(attrs["sample_rate"]), int(attrs["num_channels"]))
    except ValueError:
        raise InvalidArgument(
            f"audio stream on {AUDIO_STREAM_TOPIC} has non-numeric sample_rate/num_channels attributes: send whole "
            "numbers, e.g. sample_rate='24000', num_channels='1'"
        ) from None
    validate_format(fmt.sample_rate, fmt.num_channels)
    return fmt


def _json_object(payload: str, method: str, hint: str) -> dict[str, Any]:
    try:
        body: Any = json.loads(payload)
    except (ValueError, RecursionError):
        raise RpcRefused(f"{method} payload is not JSON: {hint}") from None
    if not isinstance(body, dict):
        raise RpcRefused(f"{method} payload is not a JSON object: {hint}")
    return body


def _emotion(value: Any, method: str) -> str:
    if not isinstance(value, str):
        raise RpcRefused(f'{method} payload\'s "emotion" must be a string, one of: {", ".join(EMOTIONS)}')
    try:
        return check_emotion(value)
    except InvalidArgument as exc:
        raise RpcRefused(f"{method}: {exc.message}") from None


def parse_agent_state(payload: str) -> tuple[str, str | None]:
    """The state named by an ``agent_state_changed`` payload and its optional emotion (``None``: unchanged);
    :class:`RpcRefused` for anything else (then nothing changes)."""
    hint = 'send JSON like {"state": "listening"} with one of: ' + ", ".join(AGENT_STATES)
    body = _json_object(payload, RPC_AGENT_STATE_CHANGED, hint)
    state = body.get("state")
    if not isinstance(state, str) or state not in AGENT_STATES:
        raise RpcRefused(f"agent_state_changed payload has no known state: {hint}")
    emotion = body.get("emotion")
    return state, None if emotion is None else _emotion(emotion, RPC_AGENT_STATE_CHANGED)


def parse_set_emotion(payload: str) -> str:
    """The emotion named by a ``set_emotion`` payload; :class:`RpcRefused` listing the valid names otherwise."""
    hint = 'send JSON like {"emotion": "happy"} with one of: ' + ", ".join(EMOTIONS)
    body = _json_object(payload, RPC_SET_EMOTION, hint)
    if "emotion" not in body:
        raise RpcRefused(f"set_emotion payload has no emotion: {hint}")
    return _emotion(body["emotion"], RPC_SET_EMOTION)


def playback_finished_payload(event: PlaybackEvent) -> str:
    return json.dumps(
        {"playback_position": event.position_s, "interrupted": event.interrupted, "synchronized_transcript": None}
    )


@dataclass
class _Stream:
    reader: ByteStream
    sender: str
    cleared: bool = False


class AudioStreamReceiver:
    """Feeds a :class:`Playout` from ``lk.audio_stream`` and answers the protocol's RPCs.

    ``send_rpc`` performs outgoing RPCs; ``on_error`` receives every refused input as a domain error (the session
    publishes it as an ``error`` event). ``set_emotion`` applies an emotion the agent asked for (default: the
    playout's; a session passes its own, which also records it). Call :meth:`start`, then hand it streams
    (:meth:`on_stream`) and RPCs (:meth:`on_clear_buffer`, :meth:`on_agent_state`, :meth:`on_set_emotion`) —
    :meth:`attach` wires a room's — and :meth:`on_playback` with the playout's playback events (a clear it answers
    itself). :meth:`aclose` ends its tasks.
    """

    def __init__(
        self,
        playout: Playout,
        policy: SenderPolicy,
        *,
        send_rpc: SendRpc,
        on_error: Callable[[AvalumaError], None],
        is_agent: Callable[[str], bool] = lambda _identity: False,
        idle_timeout_s: float = STREAM_IDLE_TIMEOUT_S,
        set_emotion: Callable[[str], None] | None = None,
    ) -> None:
        self._playout = playout
        self._set_emotion = set_emotion or playout.set_emotion
        self._policy = policy
        self._send_rpc = send_rpc
        self._on_error = on_error
        self._is_agent = is_agent
        self._idle_timeout_s = idle_timeout_s
        self._streams: deque[_Stream] = deque()
        self._streams_changed = asyncio.Event()
        self._current: _Stream | None = None
        self._superseded = asyncio.Event()
        self._outbox: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._receive_loop(), name="avaluma-audio-receive"),
            asyncio.create_task(self._send_loop(), name="avaluma-playback-rpc"),
        ]

    async def aclose(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        for stream in (*self._streams, *([self._current] if self._current else [])):
            with contextlib.suppress(Exception):
                stream.reader.close()
        self._streams.clear()

    # --- from the room ---------------------------------------------------------------------------------------

    def on_stream(self, reader: ByteStream, sender: str) -> None:
        """A byte stream on ``lk.audio_stream`` opened (synchronous: the room's handler calls it)."""
        try:
            self._policy.check(sender, is_agent=self._is_agent(sender))
        except PermissionDenied as exc:
            self._refuse(reader, exc, sender)
            return
        self._streams.append(_Stream(reader, sender))
        if self._current is not None:
            self._superseded.set()  # the sender never overlaps streams: the open one's trailer is lost
        self._streams_changed.set()

    def on_clear_buffer(self, call: RpcInvocation) -> str:
        """``lk.clear_buffer``: interrupt and answer with ``lk.playback_finished{interrupted: true}``."""
        try:
            self._policy.check(call.caller_identity, is_agent=self._is_agent(call.caller_identity))
        except PermissionDenied as exc:
            raise RpcRefused(exc.message) from None
        if self._current is not None:
            self._current.cleared = True
            self._superseded.set()
        for stream in self._streams:  # queued streams belong to the cleared audio too
            stream.cleared = True
        # Answered here from what the clear returns: each open segment's finished goes to its sender, the one for
        # "nothing was open" (no sender) to the caller.
        events = self._playout.clear()
        for event in events:
            self._reply(event.sender or call.caller_identity, event)
        log.debug("clear_buffer handled", extra={"segments_finished": len(events)})
        return "ok"

    def on_agent_state(self, call: RpcInvocation) -> str:
        """``agent_state_changed``: show listening / thinking cues (and an emotion, when the payload names one)."""
        self._check_caller(call)
        state, emotion = parse_agent_state(call.payload)
        if emotion is not None:
            self._set_emotion(emotion)
        self._playout.set_state(state)
        return "ok"

    def on_set_emotion(self, call: RpcInvocation) -> str:
        """``set_emotion``: show an emotion from this point of the audio on."""
        self._check_caller(call)
        self._set_emotion(parse_set_emotion(call.payload))
        return "ok"

    def _check_caller(self, call: RpcInvocation) -> None:
        try:
            self._policy.check(call.caller_identity, is_agent=self._is_agent(call.caller_identity))
        except PermissionDenied as exc:
            raise RpcRefused(exc.message) from None

    def on_playback(self, event: PlaybackEvent) -> None:
        """A playback event of the playout: tell the sender of that segment (the playout carries it on the event)."""
        if event.sender:
            self._reply(event.sender, event)

    def _reply(self, destination: str, event: PlaybackEvent) -> None:
        if event.kind == "started":
            self._outbox.put_nowait((destination, RPC_PLAYBACK_STARTED, ""))
        else:
            self._outbox.put_nowait((destination, RPC_PLAYBACK_FINISHED, playback_finished_payload(event)))

    # --- internals -------------------------------------------------------------------------------------------

    def _refuse(self, reader: ByteStream, exc: AvalumaError, sender: str) -> None:
        with contextlib.suppress(Exception):
            reader.close()
        log.warning(
            "audio stream refused",
            extra={"error_type": type(exc).__name__, "sender_identity": sender, "user_content": ["sender_identity"]},
        )
        self._on_error(exc)

    async def _receive_loop(self) -> None:
        while True:
            await self._streams_changed.wait()
            self._streams_changed.clear()
            while self._streams:
                stream = self._streams.popleft()
                self._current = stream
                self._superseded.clear()
                try:
                    await self._play_stream(stream)
                except AvalumaError as exc:
                    self._refuse(stream.reader, exc, stream.sender)
                except Exception as exc:  # a broken stream must not end the receiver
                    log.warning("audio stream failed", extra={"error_type": type(exc).__name__})
                    self._on_error(InvalidArgument(f"the audio stream broke off: {exc}; start a new stream"))
                finally:
                    self._current = None
                    if not stream.cleared:
                        self._playout.end_segment()

    async def _play_stream(self, stream: _Stream) -> None:
        fmt = stream_format(stream.reader.info.attributes)
        frame_bytes = 2 * fmt.num_channels
        rest = b""
        async for data in self._chunks(stream):
            if stream.cleared:
                continue  # drained so the reader is released; cleared audio is never played
            data = rest + data
            usable = len(data) - len(data) % frame_bytes  # chunk boundaries may split a sample
            rest = data[usable:]
            if not usable:
                continue
            chunk = pcm16_to_mono(data[:usable], fmt.sample_rate, fmt.num_channels)
            self._playout.push_audio(chunk, sender=stream.sender)

    async def _chunks(self, stream: _Stream) -> AsyncIterator[bytes]:
        """The stream's chunks; ends early when superseded, cleared or idle (its trailer may be lost)."""
        iterator = stream.reader.__aiter__()
        superseded = asyncio.ensure_future(self._superseded.wait())
        next_chunk: asyncio.Future[bytes] | None = None
        try:
            while True:
                next_chunk = asyncio.ensure_future(anext(iterator))
                done, _ = await asyncio.wait(
                    {next_chunk, superseded}, timeout=self._idle_timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
                if next_chunk in done:
                    try:
                        yield next_chunk.result()
                    except StopAsyncIteration:
                        return
                    continue
                next_chunk.cancel()
                with contextlib.suppress(Exception):
                    stream.reader.close()
                if not stream.cleared:
                    reason = "superseded by a newer stream" if superseded in done else "idle"
                    log.warning("audio stream ended before its trailer arrived", extra={"reason": reason})
                return
        finally:
            # Also when the session stops mid-stream (this generator's consumer is cancelled while it waits): the
            # read of the next chunk is a task of its own, and nobody else would ever cancel or await it.
            await cancel_and_wait(superseded, next_chunk)

    async def _send_loop(self) -> None:
        while True:
            destination, method, payload = await self._outbox.get()
            await self._send(destination, method, payload)

    async def _send(self, destination: str, method: str, payload: str) -> None:
        for attempt in range(1, RPC_ATTEMPTS + 1):
            try:
                await self._send_rpc(destination, method, payload)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                code = getattr(exc, "code", None)
                if method == RPC_PLAYBACK_STARTED and code == RPC_UNSUPPORTED_METHOD:
                    return  # older senders do not listen for playback_started
                if attempt == RPC_ATTEMPTS:
                    log.warning("playback RPC failed", extra={"rpc_method": method, "error_type": type(exc).__name__})
                    return
                await asyncio.sleep(RPC_RETRY_PAUSE_S)

    # --- the room adapter ------------------------------------------------------------------------------------

    def attach(self, room: Any) -> None:
        """Register the stream handler and RPC methods on a connected ``livekit.rtc.Room``."""
        from livekit import rtc

        def rpc(handler: Callable[[RpcInvocation], str]) -> Callable[[rtc.RpcInvocationData], Awaitable[str]]:
            async def handle(data: rtc.RpcInvocationData) -> str:
                try:
                    return handler(data)
                except RpcRefused as exc:
                    raise rtc.RpcError(RPC_APPLICATION_ERROR, exc.message) from None

            return handle

        room.register_byte_stream_handler(AUDIO_STREAM_TOPIC, lambda reader, identity: self.on_stream(reader, identity))
        local = room.local_participant
        local.register_rpc_method(RPC_CLEAR_BUFFER, rpc(self.on_clear_buffer))
        local.register_rpc_method(RPC_AGENT_STATE_CHANGED, rpc(self.on_agent_state))
        local.register_rpc_method(RPC_SET_EMOTION, rpc(self.on_set_emotion))

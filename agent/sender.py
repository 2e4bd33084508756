"""agent-2: stream audio from any source into a LiveKit room for an Avaluma avatar to speak.

The wire protocol is stock LiveKit (DESIGN.md section 5), so a sender needs nothing from Avaluma:

- one byte stream per segment on topic ``lk.audio_stream``, sent to the avatar's identity, with attributes
  ``sample_rate`` and ``num_channels`` and raw little-endian int16 PCM as its payload; closing the stream ends the
  segment;
- the avatar answers with the RPCs ``lk.playback_started`` and ``lk.playback_finished`` (JSON
  ``{playback_position, interrupted, synchronized_transcript}``) sent to the sender;
- ``lk.clear_buffer`` (sender -> avatar) stops playback at once; the avatar answers with
  ``lk.playback_finished{interrupted: true}``.

This module is what ``avaluma send`` runs; its pure parts (reading, segmenting, chunking, pacing) are importable
and tested without a room. Audio is sent at real-time pace (with a small lead) so the avatar's buffer stays short
and a ``clear_buffer`` takes effect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
import wave
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from avaluma.core.avatar_protocol import (
    AUDIO_STREAM_TOPIC,
    RPC_CLEAR_BUFFER,
    RPC_PLAYBACK_FINISHED,
    RPC_PLAYBACK_STARTED,
)
from avaluma.core.errors import FailedPrecondition, InvalidArgument, Unavailable

logger = logging.getLogger(__name__)

#: Sample rates the sender accepts: LiveKit's audio rates (the server, core/media.py, accepts a wider range).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8_000, 48_000
DEFAULT_CHUNK_MS = 100
#: How far ahead of real time the sender may run: enough to ride out network jitter, short enough that an
#: interruption does not leave seconds of queued audio behind.
DEFAULT_LEAD_S = 0.3


# --- Audio in -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pcm:
    """Interleaved little-endian int16 PCM."""

    data: bytes
    sample_rate: int
    num_channels: int

    def __post_init__(self) -> None:
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise InvalidArgument(
                f"sample rate {self.sample_rate} Hz is not supported: use {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz "
                "(e.g. resample with `sox in.wav -r 24000 out.wav`)"
            )
        if self.num_channels not in (1, 2):
            raise InvalidArgument(f"{self.num_channels} channels are not supported: send mono or stereo audio")
        if len(self.data) % self.frame_bytes:
            raise InvalidArgument(
                f"PCM length {len(self.data)} bytes is not a whole number of {self.num_channels}-channel int16 "
                "samples: the input is truncated or not int16"
            )

    @property
    def frame_bytes(self) -> int:
        """Bytes per sample frame (all channels)."""
        return 2 * self.num_channels

    @property
    def samples_per_channel(self) -> int:
        return len(self.data) // self.frame_bytes

    @property
    def duration(self) -> float:
        return self.samples_per_channel / self.sample_rate


def read_wav(source: IO[bytes]) -> Pcm:
    """Read a 16-bit PCM WAV (a file or a pipe). Anything else gets one error saying how to convert it."""
    try:
        # wave needs to seek for some headers; a pipe cannot, so buffer it.
        buffered = source if source.seekable() else io.BytesIO(source.read())
        with wave.open(buffered, "rb") as wav:
            width, rate, channels = wav.getsampwidth(), wav.getframerate(), wav.getnchannels()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise InvalidArgument(
            f"not a PCM WAV file ({exc}): convert it with `ffmpeg -i IN -ac 1 -ar 24000 -c:a pcm_s16le out.wav` "
            "or send raw PCM with --raw"
        ) from None
    if width != 2:
        raise InvalidArgument(
            f"WAV samples are {8 * width}-bit: only 16-bit PCM is sent; convert with "
            "`ffmpeg -i IN -c:a pcm_s16le out.wav`"
        )
    if not frames:
        raise InvalidArgument("the WAV file holds no audio")
    return Pcm(frames, rate, channels)


def read_raw(source: IO[bytes], *, sample_rate: int, num_channels: int) -> Pcm:
    """Read raw little-endian int16 PCM (e.g. ``ffmpeg ... -f s16le -``) until end of input."""
    data = source.read()
    if not data:
        raise InvalidArgument("no audio on the input")
    return Pcm(data, sample_rate, num_channels)


def split_segments(pcm: Pcm, segment_s: float | None) -> list[Pcm]:
    """Cut ``pcm`` into segments of ``segment_s`` seconds (the last may be shorter); ``None`` = one segment."""
    if segment_s is None:
        return [pcm]
    if segment_s <= 0:
        raise InvalidArgument("--segment-seconds must be positive")
    step = max(1, round(segment_s * pcm.sample_rate)) * pcm.frame_bytes
    return [Pcm(pcm.data[i : i + step], pcm.sample_rate, pcm.num_channels) for i in range(0, len(pcm.data), step)]


def chunks(pcm: Pcm, chunk_ms: int = DEFAULT_CHUNK_MS) -> Iterator[bytes]:
    """``pcm.data`` in pieces of ``chunk_ms`` (whole sample frames, so channels never split)."""
    step = max(1, pcm.sample_rate * chunk_ms // 1000) * pcm.frame_bytes
    for i in range(0, len(pcm.data), step):
        yield pcm.data[i : i + step]


def stream_attributes(pcm: Pcm) -> dict[str, str]:
    """The byte-stream attributes LiveKit's avatar receiver requires."""
    return {"sample_rate": str(pcm.sample_rate), "num_channels": str(pcm.num_channels)}


# --- Pacing and the byte stream -----------------------------------------------------------------------------------


class Pacer:
    """Keeps the sender at most ``lead_s`` ahead of real time. ``clock``/``sleep`` are injectable for tests."""

    def __init__(
        self,
        *,
        lead_s: float = DEFAULT_LEAD_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.lead_s = lead_s
        self._clock = clock
        self._sleep = sleep
        self._t0: float | None = None
        self.sent_s = 0.0

    async def pace(self, seconds: float) -> None:
        """Account for ``seconds`` of audio about to be sent; wait first if that would run too far ahead."""
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        ahead = self._t0 + self.sent_s - self.lead_s - now
        if ahead > 0:
            await self._sleep(ahead)
        self.sent_s += seconds


class StreamWriter(Protocol):
    """What the sender uses of ``rtc.ByteStreamWriter``."""

    async def write(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


class Participant(Protocol):
    """What the sender uses of ``rtc.LocalParticipant``."""

    async def stream_bytes(
        self,
        name: str,
        *,
        attributes: dict[str, str] | None = ...,
        destination_identities: list[str] | None = ...,
        topic: str = ...,
    ) -> StreamWriter: ...


async def send_segment(
    participant: Participant,
    pcm: Pcm,
    *,
    destination: str,
    pacer: Pacer,
    name: str,
    chunk_ms: int = DEFAULT_CHUNK_MS,
) -> None:
    """Send one segment as one byte stream on ``lk.audio_stream`` to ``destination``, paced, then close it."""
    writer = await participant.stream_bytes(
        name,
        topic=AUDIO_STREAM_TOPIC,
        attributes=stream_attributes(pcm),
        destination_identities=[destination],
    )
    try:
        for piece in chunks(pcm, chunk_ms):
            await pacer.pace(len(piece) / pcm.frame_bytes / pcm.sample_rate)
            await writer.write(piece)
    finally:
        # Closing ends the segment on the avatar's side, also when we were cancelled half-way.
        await writer.aclose()


# --- Playback events ----------------------------------------------------------------------------------------------


@dataclass
class PlaybackEvents:
    """``lk.playback_started`` / ``lk.playback_finished`` RPCs received from the avatar."""

    avatar_identity: str
    started: int = 0
    finished: list[dict[str, Any]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_started(self, caller_identity: str) -> str:
        if caller_identity != self.avatar_identity:
            return "reject"
        self.started += 1
        self._changed.set()
        return "ok"

    def on_finished(self, caller_identity: str, payload: str) -> str:
        if caller_identity != self.avatar_identity:
            return "reject"
        try:
            event = json.loads(payload) if payload else {}
        except json.JSONDecodeError:
            event = {}
        self.finished.append(event if isinstance(event, dict) else {})
        self._changed.set()
        return "ok"

    async def wait_finished(self, count: int, timeout_s: float) -> bool:
        """Wait until ``count`` segments finished; False on timeout (the avatar may not report playback)."""

        async def loop() -> None:
            while len(self.finished) < count:
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout_s)
        except TimeoutError:
            return False
        return True


# --- Connecting ---------------------------------------------------------------------------------------------------


def mint_token(*, api_key: str, api_secret: str, room: str, identity: str, ttl_s: int = 3600) -> str:
    """A token for the sender: join ``room`` as ``identity``, publish data (byte streams and RPC), no media."""
    from livekit.plugins.avaluma import tokens

    token: str = tokens.mint_token(
        api_key=api_key,
        api_secret=api_secret,
        room=room,
        identity=identity,
        publish=False,
        subscribe=False,
        ttl_s=ttl_s,
    )
    return token


@dataclass(frozen=True)
class SendReport:
    segments: int
    seconds: float
    finished: list[dict[str, Any]]
    interrupted: bool


async def connect(url: str, token: str, *, timeout_s: float = 10.0) -> Any:
    """Connect an ``rtc.Room``; every failure becomes one :class:`Unavailable` that says what to check."""
    from livekit import rtc

    room = rtc.Room()
    try:
        await asyncio.wait_for(room.connect(url, token), timeout_s)
    except rtc.ConnectError as exc:
        raise Unavailable(
            f"cannot join the LiveKit room at {url}: {exc}. Check --url, that the LiveKit server is running and "
            "that the token is valid for it"
        ) from None
    except TimeoutError:
        with contextlib.suppress(Exception):
            await room.disconnect()
        raise Unavailable(
            f"no answer from LiveKit at {url} within {timeout_s:g} s: check --url and the network"
        ) from None
    return room


async def wait_for_avatar(room: Any, identity: str, timeout_s: float) -> None:
    from livekit.agents import utils

    try:
        await asyncio.wait_for(utils.wait_for_participant(room=room, identity=identity), timeout_s)
    except TimeoutError:
        raise FailedPrecondition(
            f"the avatar participant {identity!r} did not join the room within {timeout_s:g} s: start the avatar "
            "first (Avaluma server StartSession) or pass the right --avatar-identity"
        ) from None


async def send(
    *,
    url: str,
    token: str,
    segments: Sequence[Pcm],
    avatar_identity: str,
    chunk_ms: int = DEFAULT_CHUNK_MS,
    lead_s: float = DEFAULT_LEAD_S,
    join_timeout: float = 30.0,
    finish_timeout: float = 10.0,
) -> SendReport:
    """Join the room, stream ``segments`` to the avatar at real-time pace and wait for it to finish playing.

    Cancelling (Ctrl-C) sends ``lk.clear_buffer`` so the avatar stops speaking at once.
    """
    from livekit import rtc

    room = await connect(url, token)
    events = PlaybackEvents(avatar_identity)
    local = room.local_participant

    @local.register_rpc_method(RPC_PLAYBACK_STARTED)  # type: ignore[untyped-decorator]
    async def _started(data: rtc.RpcInvocationData) -> str:
        return events.on_started(data.caller_identity)

    @local.register_rpc_method(RPC_PLAYBACK_FINISHED)  # type: ignore[untyped-decorator]
    async def _finished(data: rtc.RpcInvocationData) -> str:
        return events.on_finished(data.caller_identity, data.payload)

    interrupted = False
    try:
        await wait_for_avatar(room, avatar_identity, join_timeout)
        pacer = Pacer(lead_s=lead_s)
        try:
            for i, segment in enumerate(segments):
                await send_segment(
                    local, segment, destination=avatar_identity, pacer=pacer, name=f"segment-{i}", chunk_ms=chunk_ms
                )
            # Playback runs up to lead_s behind the sender, plus the avatar's own latency.
            if not await events.wait_finished(len(segments), finish_timeout + lead_s):
                logger.warning(
                    "the avatar did not report the end of playback", extra={"avatar_identity": avatar_identity}
                )
        except asyncio.CancelledError:
            interrupted = True
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    local.perform_rpc(destination_identity=avatar_identity, method=RPC_CLEAR_BUFFER, payload="")
                )
            raise
        return SendReport(
            segments=len(segments),
            seconds=pacer.sent_s,
            finished=list(events.finished),
            interrupted=interrupted,
        )
    finally:
        await room.disconnect()

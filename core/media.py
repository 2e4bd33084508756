"""Media types shared by the server, the renderer and the agent: PCM validation and conversion.

Audio arrives as raw little-endian int16 PCM (the LiveKit ``lk.audio_stream`` contract). Everything downstream works
on mono float32 in [-1, 1]; these functions are the one place that converts and validates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avaluma.core.errors import InvalidArgument

#: Sample rates we accept on input. Anything else is almost certainly a client bug (e.g. 44 instead of 44100).
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 8
#: Upper bound for one chunk: 10 s of 48 kHz stereo. Larger chunks must be split by the sender.
MAX_CHUNK_BYTES = 10 * 48_000 * 2 * 2

FloatAudio = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Mono float32 samples in [-1, 1] at ``sample_rate``."""

    samples: FloatAudio
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def validate_format(sample_rate: int, num_channels: int) -> None:
    """Raise :class:`InvalidArgument` unless the format is one we can play."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidArgument(
            f"unsupported sample rate {sample_rate} Hz: send PCM at {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz "
            "(16000, 24000 or 48000 are typical)"
        )
    if not 1 <= num_channels <= MAX_CHANNELS:
        raise InvalidArgument(f"unsupported channel count {num_channels}: send 1..{MAX_CHANNELS} channels")


def pcm16_to_mono(data: bytes, sample_rate: int, num_channels: int) -> AudioChunk:
    """Decode interleaved int16 PCM into a mono float32 chunk, validating size and format."""
    validate_format(sample_rate, num_channels)
    if not data:
        raise InvalidArgument("empty audio chunk: send at least one sample, or end the segment instead")
    if len(data) > MAX_CHUNK_BYTES:
        raise InvalidArgument(
            f"audio chunk of {len(data)} bytes is larger than the limit of {MAX_CHUNK_BYTES}: split it into chunks "
            "of at most a few hundred milliseconds"
        )
    frame_bytes = 2 * num_channels
    if len(data) % frame_bytes:
        raise InvalidArgument(
            f"audio chunk of {len(data)} bytes is not a whole number of {num_channels}-channel int16 frames "
            f"({frame_bytes} bytes each): send complete samples"
        )
    return AudioChunk(samples=decode_pcm16(data, num_channels), sample_rate=sample_rate)


def decode_pcm16(data: bytes, num_channels: int) -> FloatAudio:
    """Interleaved int16 PCM as mono float32 in [-1, 1], channels averaged; no checks.

    For audio already in a trusted frame type (``rtc.AudioFrame`` from a TTS or LiveKit's receiver); untrusted bytes
    go through :func:`pcm16_to_mono`, which validates first.
    """
    pcm = np.frombuffer(data, dtype="<i2").reshape(-1, num_channels)
    mono = pcm.mean(axis=1, dtype=np.float32) if num_channels > 1 else pcm[:, 0].astype(np.float32)
    return (mono / 32768.0).astype(np.float32, copy=False)


def float_to_pcm16(samples: FloatAudio) -> bytes:
    """Encode mono float32 samples as int16 PCM bytes, clipping out-of-range values."""
    return bytes((np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


# --- render options ---------------------------------------------------------------------------------------------

MIN_FPS, MAX_FPS = 1, 60
#: Sample rates of the audio a rendering *produces* (input audio may use any rate of :func:`validate_format`).
MIN_OUTPUT_RATE, MAX_OUTPUT_RATE = 8_000, 48_000


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How a rendering looks and sounds; the one value type that config, both front doors and the engine use.

    Validated once, on construction (:class:`InvalidArgument` naming the field and its valid range). On the wire 0
    means "the server's default": :meth:`resolve` fills those in and validates with the request's field names.
    ``width``/``height`` 0 keep the avatar's size (both set or neither).
    """

    fps: int = 25
    audio_sample_rate: int = 24_000
    seed: int = 0
    width: int = 0
    height: int = 0
    #: Facial expressions (prosody-driven brows, nods, tilts and glances, the emotion's face): the server's
    #: ``render.expressions``, not set per request. Off renders the face exactly as without them.
    expressions: bool = True

    def __post_init__(self) -> None:
        check_render_options(self.fps, self.audio_sample_rate, self.width, self.height)

    @property
    def samples_per_frame(self) -> int:
        return self.audio_sample_rate // self.fps

    def resolve(
        self,
        *,
        fps: int = 0,
        audio_sample_rate: int = 0,
        seed: int = 0,
        width: int = 0,
        height: int = 0,
        field: str = "",
    ) -> RenderOptions:
        """These options (the defaults) overridden by a request's non-zero values; errors name ``field.<name>``."""
        options = (
            fps or self.fps,
            audio_sample_rate or self.audio_sample_rate,
            seed or self.seed,
            width,
            height,
        )
        check_render_options(*options[:2], width, height, field=f"{field}." if field else "", defaults_hint=True)
        return RenderOptions(*options, expressions=self.expressions)


#: The emotions an avatar can show (per session, changeable mid-session; eased, never jumps). ``neutral`` is the
#: default and the face as built.
EMOTIONS: tuple[str, ...] = ("neutral", "happy", "serious", "surprised", "concerned")


def check_emotion(name: str, *, field: str = "emotion") -> str:
    """``name`` if it is one of :data:`EMOTIONS`; else :class:`InvalidArgument` listing the valid ones."""
    if name not in EMOTIONS:
        raise InvalidArgument(f"{field}: unknown emotion {name!r}: use one of {', '.join(EMOTIONS)}")
    return name


def check_render_options(
    fps: int, audio_sample_rate: int, width: int = 0, height: int = 0, *, field: str = "", defaults_hint: bool = False
) -> None:
    """Raise :class:`InvalidArgument` unless these render options can be rendered (see :class:`RenderOptions`)."""
    default = ", or 0 for the default" if defaults_hint else ""
    if not MIN_FPS <= fps <= MAX_FPS:
        raise InvalidArgument(f"{field}fps {fps} is out of range: use {MIN_FPS}..{MAX_FPS} (25 is typical){default}")
    if not MIN_OUTPUT_RATE <= audio_sample_rate <= MAX_OUTPUT_RATE:
        raise InvalidArgument(
            f"{field}audio_sample_rate {audio_sample_rate} is out of range: use {MIN_OUTPUT_RATE}..{MAX_OUTPUT_RATE} "
            f"Hz (16000, 24000 or 48000 are typical){default}"
        )
    if audio_sample_rate % fps:
        raise InvalidArgument(
            f"{field}audio_sample_rate {audio_sample_rate} Hz is not a multiple of fps {fps}: every frame must carry "
            "a whole number of samples, so pick a rate divisible by the fps (e.g. 16000, 24000 or 48000 at 25 fps)"
        )
    if width < 0 or height < 0 or bool(width) != bool(height):
        raise InvalidArgument(f"{field}width and {field}height must be set together (or both left 0)")

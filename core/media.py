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

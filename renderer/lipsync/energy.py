"""The ``energy`` lip-sync backend: mouth opening from the loudness envelope. The baseline trained models must beat.

It knows nothing about phonemes: it opens the jaw with the level of each video frame's audio and guesses a little
stretch (bright, hissy sounds) or rounding (dull, low sounds) from the spectral tilt. Bilabials (p, b, m) do not close
the mouth unless they are quiet, which is exactly what a real lip-sync model fixes.

Per frame ``i`` (audio ``[i / fps, (i + 1) / fps)``, see :mod:`avaluma.renderer.lipsync.base`):

1. DC removal: the frame's mean is subtracted (a per-frame high-pass that needs no state across frames).
2. Level: RMS in dBFS, mapped linearly from ``gate_db`` (closed) to ``full_db`` (fully open) and clipped to [0, 1].
3. Attack/release: a one-pole follower, fast when opening and slower when closing, so the mouth does not flutter.
4. ``lips_closed = 1 - jaw_open``; levels below 1 % snap to the rest pose, so silence renders exactly at rest.

Each frame depends only on its own samples and the follower state, so streaming any chunking gives the offline
result exactly, and the backend needs no lookahead.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from avaluma.renderer.lipsync.base import (
    JAW_OPEN,
    LIPS_CLOSED,
    LIPSYNC_SAMPLE_RATE,
    REST_POSE,
    ROUNDING,
    STRETCH,
    LipSyncBackend,
    LipSyncStream,
    MouthFrames,
)

F32 = npt.NDArray[np.float32]

#: Spectral tilt (RMS of the first difference over RMS of the signal) below which a sound counts as rounded, and
#: above which it counts as stretched. Rough values from piper speech: "who" ~0.1, open vowels ~0.25, "s" ~1.5.
_ROUND_TILT = 0.12
_STRETCH_TILT = 0.3
_SNAP = 0.01


class EnergyOptions(BaseModel):
    """Options of the ``energy`` backend (config ``lipsync: {name: energy, options: {...}}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gate_db: float = Field(-42.0, le=0, description="Frame level (dBFS) at and below which the mouth stays closed.")
    full_db: float = Field(-12.0, le=0, description="Frame level (dBFS) at which the jaw is fully open.")
    attack_ms: float = Field(15.0, ge=0, le=1000, description="Time constant for opening.")
    release_ms: float = Field(70.0, ge=0, le=1000, description="Time constant for closing.")
    shape_gain: float = Field(0.8, ge=0, le=1, description="How much stretch/rounding the spectral tilt adds.")

    @model_validator(mode="after")
    def _gate_below_full(self) -> EnergyOptions:
        if self.full_db <= self.gate_db:
            raise ValueError("full_db must be greater than gate_db")
        return self


def _coefficient(time_ms: float, fps: float) -> float:
    """Per-frame smoothing coefficient of a one-pole follower with time constant ``time_ms`` (1 = no smoothing)."""
    if time_ms <= 0:
        return 1.0
    return 1.0 - math.exp(-1000.0 / (time_ms * fps))


class EnergyStream(LipSyncStream):
    lookahead_s = 0.0

    def __init__(self, options: EnergyOptions, fps: float) -> None:
        if not 0 < fps <= 120:
            raise ValueError(f"fps must be in (0, 120], got {fps}")
        self._o = options
        self._fps = float(fps)
        self._attack = _coefficient(options.attack_ms, self._fps)
        self._release = _coefficient(options.release_ms, self._fps)
        self._reset()

    def _reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self._frame = 0  # index of the next frame to emit, within the segment
        self._consumed = 0  # samples of the segment before self._pending
        self._state = np.zeros(3, dtype=np.float64)  # smoothed jaw, rounding, stretch

    def _bound(self, i: int) -> int:
        """First sample of frame ``i`` (exact for integer fps; within a sample otherwise)."""
        return math.floor(i * LIPSYNC_SAMPLE_RATE / self._fps + 1e-9)

    def _push(self, audio: F32) -> MouthFrames:
        if audio.size:
            self._pending = np.concatenate([self._pending, audio])
        return self._emit(final=False)

    def _flush(self) -> MouthFrames:
        frames = self._emit(final=True)
        self._reset()
        return frames

    def _emit(self, *, final: bool) -> MouthFrames:
        rows: list[F32] = []
        while True:
            start, end = self._bound(self._frame) - self._consumed, self._bound(self._frame + 1) - self._consumed
            have = self._pending.size
            if end > have and not (final and have > start):
                break
            # The last frame of a flushed segment may be short. It still counts as a whole (silence-padded) frame,
            # but its level comes from the samples it has: literal zero padding would turn a DC offset into a step.
            window = self._pending[start:end]
            rows.append(self._frame_params(window))
            self._frame += 1
        if rows:
            cut = min(self._bound(self._frame) - self._consumed, self._pending.size)
            self._pending = self._pending[cut:]
            self._consumed += cut
        if not rows:
            return MouthFrames.empty()
        return MouthFrames(np.stack(rows).astype(np.float32))

    def _frame_params(self, window: F32) -> F32:
        x = window.astype(np.float64)
        x = x - x.mean()
        rms = math.sqrt(float(np.mean(x * x))) if x.size else 0.0
        level_db = 20.0 * math.log10(rms + 1e-12)
        level = min(1.0, max(0.0, (level_db - self._o.gate_db) / (self._o.full_db - self._o.gate_db)))
        if level > 0.0 and x.size > 1:
            tilt = math.sqrt(float(np.mean(np.diff(x) ** 2))) / (rms + 1e-12)
            rounding = min(1.0, max(0.0, (_STRETCH_TILT - tilt) / (_STRETCH_TILT - _ROUND_TILT))) * level
            stretch = min(1.0, max(0.0, (tilt - _STRETCH_TILT) / _STRETCH_TILT)) * level
        else:
            rounding = stretch = 0.0
        target = np.array([level, rounding * self._o.shape_gain, stretch * self._o.shape_gain])
        coeff = np.where(target > self._state, self._attack, self._release)
        self._state += coeff * (target - self._state)
        self._state[self._state < _SNAP] = 0.0
        jaw, rnd, st = (float(v) for v in self._state)
        params = REST_POSE.copy()
        params[JAW_OPEN] = jaw
        params[LIPS_CLOSED] = 1.0 - jaw
        params[ROUNDING] = rnd
        params[STRETCH] = st
        return params


class EnergyBackend(LipSyncBackend):
    """Mouth opening from the audio envelope. Stateless and shared; each :meth:`open_stream` is one session."""

    name = "energy"

    def __init__(self, options: EnergyOptions | None = None) -> None:
        self.options = options or EnergyOptions()

    def open_stream(self, *, fps: float) -> EnergyStream:
        return EnergyStream(self.options, fps)

    def analyze(self, audio: F32, *, fps: float) -> MouthFrames:
        """Offline convenience: all frames of one segment of 16 kHz audio."""
        stream = self.open_stream(fps=fps)
        return MouthFrames.concat([stream.push(audio), stream.flush()])

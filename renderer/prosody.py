"""Prosody of the speech, per video frame and streamed: pitch (f0), energy, voicing, speaker-normalised values, and
the events the expression motion follows (pitch accents, stressed syllables, phrase ends).

Two parts, both pure and deterministic (numpy only):

- :class:`ProsodyAnalyzer` (per segment) is fed the same 16 kHz audio as the lip-sync backend and measures each video
  frame as soon as its audio is complete: frame ``i`` covers ``[i / fps, (i + 1) / fps)`` like the lip-sync frames
  (:mod:`avaluma.renderer.lipsync.base`). The f0 window ends at the frame's end and reaches back, never forward, so
  it adds no latency: a frame's mouth parameters (which need the backend's lookahead) are never ready before it.
- :class:`ProsodyTracker` (per session) turns those measurements plus the lip-sync model's voice activity into
  speaker-normalised values and events. Normalisation is against running medians and MADs (f0 in semitones, energy in
  dB) of what this speaker said so far, so a deep or high voice, quiet or loud speech behave the same. Events have
  thresholds with floors, hysteresis and refractory periods, so monotone, whispered (no f0), shouted (clipped) or
  noisy speech gives few events, never a rattle of them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE

F32 = npt.NDArray[np.float32]

#: Pitch range searched (Hz): low male voices to high female and children's.
F0_MIN, F0_MAX = 60.0, 450.0
#: f0 is estimated at 8 kHz (pairs of samples averaged): plenty for f0 <= 450 Hz and 4x cheaper.
_RATE = LIPSYNC_SAMPLE_RATE // 2
_WINDOW = 240  # 30 ms at 8 kHz: two periods of the lowest f0
_MIN_LAG = int(_RATE / F0_MAX)
_MAX_LAG = math.ceil(_RATE / F0_MIN)
_SPAN = _WINDOW + _MAX_LAG  # samples at 8 kHz the estimate looks at, ending at the frame's end
_NFFT = 1 << math.ceil(math.log2(_SPAN + _WINDOW))
#: History kept before a frame (16 kHz samples).
_HISTORY = 2 * _SPAN
#: YIN: a dip of the normalised difference below this is a period; the dip's depth is the voicing.
_YIN_THRESHOLD = 0.2
_VOICED_MAX_DIP = 0.5
#: Frames quieter than this are unvoiced whatever their periodicity (room hum, dither).
_SILENT_DB = -55.0
_DB_FLOOR = -100.0


@dataclass(frozen=True, slots=True)
class ProsodyFrame:
    """The acoustic measurements of one video frame."""

    f0: float  #: Hz, 0 when unvoiced
    energy_db: float  #: frame energy in dBFS (-100 for digital silence)
    voicing: float  #: 0..1 periodicity (1 - the YIN dip depth); 0 when unvoiced
    #: True when two or more estimates inside the frame agree on f0 (an octave error or a glitch rarely repeats).
    stable: bool = False


SILENT_FRAME = ProsodyFrame(0.0, _DB_FLOOR, 0.0)
#: f0 is estimated every this many 16 kHz samples (20 ms) inside a frame, windows ending at the frame's end and back.
_HOP = 320


def estimate_f0(x16: npt.NDArray[np.floating]) -> tuple[float, float]:
    """``(f0, voicing)`` of the last ~47 ms of ``x16`` (16 kHz), YIN's cumulative-mean-normalised difference over a
    30 ms window. ``(0, 0)`` when no period is clear."""
    return estimate_f0_many([x16])[0]


def estimate_f0_many(contexts: list[npt.NDArray[np.floating]]) -> list[tuple[float, float]]:
    """:func:`estimate_f0` of several signals at once (one FFT call for all: the frame's estimates cost little more
    than one)."""
    rows = np.zeros((len(contexts), 2 * _SPAN))
    for i, c in enumerate(contexts):
        c = np.asarray(c, dtype=np.float64)[-2 * _SPAN :]
        rows[i, rows.shape[1] - c.size :] = c
    # Low-pass (an 8-sample box, zero at the new Nyquist) before decimating: fricative noise otherwise aliases into
    # short-lag dips that read as 400 Hz voices.
    padded = np.pad(rows, ((0, 0), (4, 4)))
    c = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(padded, axis=1)], axis=1)
    x = ((c[:, 8:] - c[:, :-8]) / 8.0)[:, 1::2]
    x = x - x.mean(axis=1, keepdims=True)
    sq = np.concatenate([np.zeros((len(rows), 1)), np.cumsum(x * x, axis=1)], axis=1)
    e0 = sq[:, _WINDOW]
    spec = np.fft.rfft(x, _NFFT, axis=1)
    head = np.fft.rfft(x[:, :_WINDOW], _NFFT, axis=1)
    r = np.fft.irfft(np.conj(head) * spec, _NFFT, axis=1)[:, : _MAX_LAG + 1]
    lags = np.arange(_MAX_LAG + 1)
    e_tau = sq[:, lags + _WINDOW] - sq[:, lags]
    d = np.maximum(e0[:, None] + e_tau - 2.0 * r, 0.0)
    cum = np.cumsum(d[:, 1:], axis=1)
    dn = np.ones_like(d)
    dn[:, 1:] = d[:, 1:] * lags[1:] / np.maximum(cum, 1e-12)
    out: list[tuple[float, float]] = []
    for i in range(len(rows)):
        out.append((0.0, 0.0) if e0[i] <= 1e-12 else _pick_period(dn[i, _MIN_LAG : _MAX_LAG + 1]))
    return out


def _pick_period(search: npt.NDArray[np.float64]) -> tuple[float, float]:
    """YIN's choice on the normalised difference over lags ``_MIN_LAG..``: the first dip under the threshold (down to
    its bottom), else the deepest; ``(f0, voicing)`` or ``(0, 0)``."""
    below = np.flatnonzero(search < _YIN_THRESHOLD)
    if below.size:
        k = int(below[0])
        while k + 1 < search.size and search[k + 1] < search[k]:
            k += 1
    else:
        k = int(np.argmin(search))
    dip = float(search[k])
    if dip > _VOICED_MAX_DIP:
        return 0.0, 0.0
    tau = float(k + _MIN_LAG)
    if 0 < k < search.size - 1:  # parabolic refinement of the dip
        a, b, c = search[k - 1], search[k], search[k + 1]
        den = a - 2 * b + c
        if den > 1e-12:
            tau += 0.5 * (a - c) / den
    return _RATE / tau, max(0.0, 1.0 - dip)


class ProsodyAnalyzer:
    """Streaming per-frame measurements of one segment. Not thread-safe; one owner."""

    def __init__(self, fps: float) -> None:
        if not 0 < fps <= 120:
            raise ValueError(f"fps must be in (0, 120], got {fps}")
        self._fps = float(fps)
        self.reset()

    def reset(self) -> None:
        """Start a new segment (the history is silence again)."""
        self._buf = np.zeros(_HISTORY, dtype=np.float32)  # history, then the audio not yet measured
        self._hist = _HISTORY  # samples of _buf that precede the next frame
        self._frame = 0
        self._consumed = 0  # segment samples before the next frame

    def _bound(self, i: int) -> int:
        """First sample of frame ``i`` within the segment (the lip-sync backends' framing)."""
        return math.floor(i * LIPSYNC_SAMPLE_RATE / self._fps + 1e-9)

    def push(self, audio: npt.NDArray[np.floating]) -> list[ProsodyFrame]:
        """Add 16 kHz audio; return the frames it completed."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size:
            self._buf = np.concatenate([self._buf, audio])
        return self._emit(final=False)

    def flush(self) -> list[ProsodyFrame]:
        """End of segment: the remaining frames (a partial last frame counts as a whole one), then :meth:`reset`."""
        frames = self._emit(final=True)
        self.reset()
        return frames

    def _emit(self, *, final: bool) -> list[ProsodyFrame]:
        out: list[ProsodyFrame] = []
        while True:
            length = self._bound(self._frame + 1) - self._bound(self._frame)
            have = self._buf.size - self._hist
            if length > have and not (final and have > 0):
                break
            take = min(length, have)
            end = self._hist + take
            out.append(self._measure(self._buf, self._hist, end))
            self._frame += 1
            self._hist = end
        if out:
            cut = max(0, self._hist - _HISTORY)
            self._buf = self._buf[cut:]
            self._hist -= cut
        return out

    @staticmethod
    def _measure(buf: F32, start: int, end: int) -> ProsodyFrame:
        """Frame ``buf[start:end]``, with the history before ``start`` for the f0 windows."""
        x = buf[start:end].astype(np.float64)
        power = float(np.mean((x - x.mean()) ** 2)) if x.size else 0.0
        energy_db = max(_DB_FLOOR, 10.0 * math.log10(power + 1e-12))
        if energy_db < _SILENT_DB:
            return ProsodyFrame(0.0, energy_db, 0.0)
        k = max(1, round((end - start) / _HOP))
        stops = [end - round(j * (end - start) / k) for j in range(k)]
        estimates = estimate_f0_many([buf[max(0, stop - 2 * _SPAN) : stop] for stop in stops])
        voiced = sorted(12.0 * math.log2(f / 100.0) for f, _ in estimates if f > 0)
        if 2 * len(voiced) < k or not voiced:
            return ProsodyFrame(0.0, energy_db, 0.0)
        st = voiced[(len(voiced) - 1) // 2]
        agree = [v for v in voiced if abs(v - st) <= MAX_STEP_ST]
        f0 = 100.0 * 2.0 ** (float(np.mean(agree)) / 12.0)
        voicing = float(np.mean([v for f, v in estimates if f > 0]))
        return ProsodyFrame(f0, energy_db, voicing, stable=len(agree) >= 2)


@dataclass(frozen=True, slots=True)
class ProsodyFeatures:
    """One frame of prosody for the motion generator: measurements, speaker-normalised values and events."""

    f0: float = 0.0  #: Hz, 0 unvoiced
    energy_db: float = _DB_FLOOR
    voicing: float = 0.0
    speaking: bool = False  #: voice activity (with hysteresis): inside a word or between close words
    #: f0 in semitones above the speaker's running median (0 when unvoiced or not yet known).
    pitch_st: float = 0.0
    #: Energy in dB above the speaker's running median speech level (0 when not speaking).
    energy_rel_db: float = 0.0
    pause_s: float = 0.0  #: seconds since the voice last stopped (0 while speaking)
    accent: bool = False  #: a pitch accent starts here: f0 clearly above the speaker's level on a loud voiced syllable
    stress: bool = False  #: a stressed syllable starts here: an energy peak on a voiced stretch
    phrase_end: bool = False  #: the pause after a phrase just reached :data:`PHRASE_PAUSE_S`


QUIET = ProsodyFeatures()

#: A pause this long after speech ends a phrase (detected when the pause has lasted this long: causal).
PHRASE_PAUSE_S = 0.18
#: Speech needed in a phrase before its pause counts (clicks and coughs do not end phrases).
PHRASE_MIN_SPEECH_S = 0.3
#: A syllable nucleus (a voiced loudness peak) ends once the level falls this far below its peak; the next one
#: starts once the level rises this far above the valley after it.
NUCLEUS_DROP_DB = 3.0
#: Pitch accents: a nucleus whose f0 peaks at least this many semitones above the speaker's median, and this many
#: MAD-scales, while not weaker than the speaker's typical syllable by more than ACCENT_WEAK_DB.
ACCENT_MIN_ST = 2.0
ACCENT_MAD = 0.8
ACCENT_WEAK_DB = 6.0
ACCENT_REFRACTORY_S = 0.5
#: Stressed syllables: a nucleus at least this many dB louder than the speaker's median syllable, and this many
#: MAD-scales (syllables of equal loudness, as in monotone or clipped speech, stress none).
STRESS_MIN_DB = 2.5
STRESS_MAD = 1.0
STRESS_REFRACTORY_S = 0.45
#: Running statistics: this much of the speaker's recent voiced speech, and this many syllables.
STATS_S = 8.0
STATS_SYLLABLES = 40
#: Events wait until the statistics have seen this much voiced speech and this many syllables.
WARMUP_S = 0.3
WARMUP_SYLLABLES = 3
#: A frame's f0 counts only when it is within this many semitones of the previous voiced frame's (octave errors and
#: one-frame glitches never reach the statistics); and only this close to the speaker's median.
MAX_STEP_ST = 2.5
MAX_PLAUSIBLE_ST = 10.0
_VOICED = 0.5
_NONE = -1e9


class ProsodyTracker:
    """Per-session normalisation and event detection; :meth:`step` once per video frame (silent frames included).

    ``voice`` is the lip-sync model's speech probability for the frame (``1 - P(silence)``), or ``None`` where the
    backend gives none; then the frame's own loudness decides. Events are decided per syllable nucleus (a voiced
    loudness peak), one frame after its peak, against the speaker's own syllables so far. Deterministic; not
    thread-safe.
    """

    def __init__(self, fps: float) -> None:
        self._fps = float(fps)
        self._pitch: deque[float] = deque(maxlen=max(8, round(STATS_S * fps)))  # voiced f0, semitones re 100 Hz
        self._peaks: deque[float] = deque(maxlen=STATS_SYLLABLES)  # loudness of the last syllable nuclei, dB
        self._warmup = max(3, round(WARMUP_S * fps))
        self._speaking = False
        self._silent_frames = 10**9
        self._phrase_speech = 0
        self._prev_st = _NONE  # raw f0 of the previous frame (semitones), _NONE when it was unvoiced
        self._nucleus = False
        self._peak_db = _NONE
        self._peak_st = _NONE
        self._valley_db = _NONE
        self._since_accent = 10**9
        self._since_stress = 10**9

    def step(self, frame: ProsodyFrame | None, voice: float | None = None) -> ProsodyFeatures:
        """Features of the next frame; ``frame=None`` is a frame of silence (idle frames, padding)."""
        fps = self._fps
        self._since_accent += 1
        self._since_stress += 1
        if frame is None:
            frame = SILENT_FRAME
            voice = 0.0
        if voice is None:
            # No model to ask: loud enough for this speaker's syllables (quiet speakers included) is speech.
            gate = min(-40.0, max(-60.0, self._median(self._peaks, -25.0) - 25.0))
            voice = 1.0 if frame.energy_db > gate else 0.0
        # Hysteresis: a single frame's dip or blip does not flip speaking.
        self._speaking = voice > (0.35 if self._speaking else 0.6)
        speaking = self._speaking

        phrase_end = False
        if speaking:
            self._silent_frames = 0
            self._phrase_speech += 1
        else:
            self._silent_frames += 1
            pause_frames = max(1, math.ceil(PHRASE_PAUSE_S * fps - 1e-9))
            if self._silent_frames == pause_frames and self._phrase_speech >= PHRASE_MIN_SPEECH_S * fps:
                phrase_end = True
            if self._silent_frames >= pause_frames:
                self._phrase_speech = 0

        voiced = speaking and frame.f0 > 0 and frame.voicing >= _VOICED
        pitch_st = _NONE
        if voiced:
            st = 12.0 * math.log2(frame.f0 / 100.0)
            median = self._median(self._pitch, st)
            if (frame.stable or abs(st - self._prev_st) <= MAX_STEP_ST) and (
                abs(st - median) <= MAX_PLAUSIBLE_ST or len(self._pitch) < self._warmup
            ):
                self._pitch.append(st)
                pitch_st = st - median
            self._prev_st = st
        else:
            self._prev_st = _NONE

        # Syllable nuclei: a voiced stretch's loudness peak, ended by a drop, by unvoicing or by the end of speech.
        accent = stress = False
        e = frame.energy_db
        if self._nucleus and (not voiced or e < self._peak_db - NUCLEUS_DROP_DB):
            accent, stress = self._nucleus_done()
            self._valley_db = e if speaking else _NONE
        elif self._nucleus:
            self._peak_db = max(self._peak_db, e)
            self._peak_st = max(self._peak_st, pitch_st)
        if not self._nucleus and voiced and e >= self._valley_db + NUCLEUS_DROP_DB:
            self._nucleus = True
            self._peak_db, self._peak_st = e, pitch_st
        elif not self._nucleus:
            self._valley_db = min(self._valley_db, e) if speaking else _NONE

        level = self._median(self._peaks, e)
        return ProsodyFeatures(
            f0=frame.f0 if voiced else 0.0,
            energy_db=e,
            voicing=frame.voicing if voiced else 0.0,
            speaking=speaking,
            pitch_st=pitch_st if pitch_st > _NONE else 0.0,
            energy_rel_db=e - level if speaking else 0.0,
            pause_s=0.0 if speaking else min(self._silent_frames, 10**6) / fps,
            accent=accent,
            stress=stress,
            phrase_end=phrase_end,
        )

    def _nucleus_done(self) -> tuple[bool, bool]:
        """Decide the nucleus that just ended: ``(accent, stress)``; then add it to the speaker's syllables."""
        fps = self._fps
        peak_db, peak_st = self._peak_db, self._peak_st
        self._nucleus = False
        accent = stress = False
        if len(self._peaks) >= WARMUP_SYLLABLES:
            level = self._median(self._peaks, peak_db)
            rel = peak_db - level
            scale = max(STRESS_MIN_DB / STRESS_MAD, 1.4826 * self._mad(self._peaks, level))
            stress = rel >= STRESS_MAD * scale and self._since_stress >= STRESS_REFRACTORY_S * fps
            if len(self._pitch) >= self._warmup and peak_st > _NONE:
                p_scale = max(ACCENT_MIN_ST / ACCENT_MAD, 1.4826 * self._mad(self._pitch, self._median(self._pitch, 0)))
                accent = (
                    peak_st >= ACCENT_MAD * p_scale
                    and rel >= -ACCENT_WEAK_DB
                    and self._since_accent >= ACCENT_REFRACTORY_S * fps
                )
        if stress:
            self._since_stress = 0
        if accent:
            self._since_accent = 0
        self._peaks.append(peak_db)
        return accent, stress

    @staticmethod
    def _median(values: deque[float], default: float) -> float:
        return float(np.median(values)) if values else default

    @staticmethod
    def _mad(values: deque[float], median: float) -> float:
        return float(np.median(np.abs(np.asarray(values) - median))) if values else 0.0

"""Degradations that match what the Avatar Server hears in production, for training on real speech.

Every function takes and returns mono float32 at 16 kHz. The labels never move, except where time itself changes
(:func:`speed`) or silence is added; each function says so. The mix (:func:`deployment_mix`) draws one chain per
utterance: speed/pitch and vocal-tract-length change, room reverberation, band limits (8 kHz telephone, 16 kHz), a
codec round trip (Opus, AAC, MP3 through PyAV), background noise at 0-30 dB SNR (white, pink, brown, babble made
from other speakers, hum), breaths and clicks in the pauses (labelled silence: the mouth stays closed), and a level
from -40 to 0 dBFS (sometimes clipped, sometimes with a DC offset).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import soxr

from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE
from avaluma.renderer.lipsync.visemes import SIL, PhonemeSpan

SR = LIPSYNC_SAMPLE_RATE
Audio = npt.NDArray[np.float32]

#: (container, codec, encoder rate, bit rates) for the codec round trips; the rates LiveKit, phones and files use.
CODECS: tuple[tuple[str, str, int, tuple[int, ...]], ...] = (
    ("ogg", "libopus", 48000, (12000, 16000, 24000, 32000)),
    ("adts", "aac", 16000, (24000, 32000, 48000)),
    ("mp3", "libmp3lame", 16000, (24000, 32000, 48000)),
)


def _rms(x: Audio) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-9


def pink(n: int, rng: np.random.Generator, exponent: float = 1.0) -> Audio:
    """Noise with a 1/f**exponent power spectrum (0 white, 1 pink, 2 brown), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (exponent / 2), n=n)
    return (x / (np.std(x) + 1e-9)).astype(np.float32)


def room_impulse(rng: np.random.Generator, rt60: float, direct_ratio_db: float) -> Audio:
    """A synthetic room: direct path, a few early reflections, then exponentially decaying noise for ``rt60`` s."""
    n = int(SR * rt60 * 1.2)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    # Rooms absorb highs faster than lows: a one-pole low-pass on the tail.
    from scipy import signal

    tail = signal.lfilter([0.4], [1.0, -0.6], tail)
    tail[: int(0.002 * SR)] = 0.0
    for _ in range(int(rng.integers(2, 6))):
        k = int(rng.uniform(0.003, 0.03) * SR)
        if k < n:
            tail[k] += rng.uniform(-0.6, 0.6)
    tail /= np.sqrt(np.sum(tail**2)) + 1e-9
    rir = tail * 10 ** (-direct_ratio_db / 20)
    rir[0] += 1.0
    return np.asarray(rir, dtype=np.float32)


def reverb(x: Audio, rng: np.random.Generator) -> Audio:
    """Room reverberation (RT60 0.15-0.9 s). Keeps the direct path at t=0, so labels do not move."""
    from scipy import signal

    rir = room_impulse(rng, float(rng.uniform(0.15, 0.9)), float(rng.uniform(-6.0, 8.0)))
    y = signal.fftconvolve(x, rir)[: len(x)]
    y32 = np.asarray(y, dtype=np.float32)
    return np.asarray(y32 * (_rms(x) / _rms(y32)), dtype=np.float32)


def band_limit(x: Audio, rng: np.random.Generator) -> Audio:
    """Telephone (8 kHz, often 300-3400 Hz) or a cheap microphone / 16 kHz codec band."""
    from scipy import signal

    if rng.random() < 0.6:
        y = np.asarray(soxr.resample(soxr.resample(x, SR, 8000), 8000, SR), dtype=np.float32)[: len(x)]
        if rng.random() < 0.6:
            sos = signal.butter(4, [300, 3400], btype="bandpass", fs=SR, output="sos")
            y = signal.sosfilt(sos, y).astype(np.float32)
        return y if len(y) == len(x) else np.pad(y, (0, len(x) - len(y)))
    lo, hi = rng.uniform(50, 300), rng.uniform(4000, 7800)
    sos = signal.butter(4, [lo, hi], btype="bandpass", fs=SR, output="sos")
    return np.asarray(signal.sosfilt(sos, x), dtype=np.float32)


def _align(reference: Audio, y: Audio, max_lag: int = 4096) -> Audio:
    """``y`` shifted so that it lines up with ``reference`` (codecs add priming delay), same length."""
    n = min(len(reference), len(y))
    if n < 2 * max_lag:
        lag = 0
    else:
        a, b = reference[:n].astype(np.float64), y[:n].astype(np.float64)
        size = 1 << int(np.ceil(np.log2(2 * n)))
        corr = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
        window = np.concatenate([corr[: max_lag + 1], corr[-max_lag:]])
        k = int(np.argmax(window))
        lag = k if k <= max_lag else k - len(window)
    y = y[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, np.float32), y])
    out = np.zeros(len(reference), np.float32)
    out[: min(len(y), len(out))] = y[: len(out)]
    return out


def codec_roundtrip(x: Audio, container: str, codec: str, rate: int, bit_rate: int) -> Audio:
    """Encode and decode through PyAV; the result is re-aligned to the input (labels stay valid)."""
    import av

    peak = float(np.max(np.abs(x))) + 1e-9
    scale = 0.9 / peak if peak > 0.9 else 1.0  # the encoders take int16; keep clipping out of this step
    pcm = np.clip(x * scale * 32767, -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        assert isinstance(stream, av.AudioStream)
        stream.bit_rate = bit_rate
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm[None], format="s16", layout="mono")
        frame.sample_rate = SR
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    chunks: list[Audio] = []
    with av.open(buf, "r") as inp:
        back = av.AudioResampler(format="flt", layout="mono", rate=SR)
        for f in inp.decode(audio=0):
            chunks.extend(np.asarray(g.to_ndarray(), np.float32).reshape(-1) for g in back.resample(f))
        chunks.extend(np.asarray(g.to_ndarray(), np.float32).reshape(-1) for g in back.resample(None))
    y = np.concatenate(chunks).astype(np.float32) / scale if chunks else np.zeros_like(x)
    return _align(x, y)


def random_codec(x: Audio, rng: np.random.Generator) -> Audio:
    container, codec, rate, rates = CODECS[int(rng.integers(len(CODECS)))]
    return codec_roundtrip(x, container, codec, rate, int(rng.choice(rates)))


def speed(
    x: Audio, spans: Sequence[PhonemeSpan], factor: float, sample_rate: int = SR
) -> tuple[Audio, list[PhonemeSpan]]:
    """Play ``factor`` times faster (tempo and pitch together, like a shorter vocal tract); labels scale."""
    y = np.asarray(soxr.resample(x, sample_rate * factor, sample_rate), dtype=np.float32)
    return y, [PhonemeSpan(s.phoneme, s.start / factor, s.end / factor, s.viseme) for s in spans]


def noise(x: Audio, rng: np.random.Generator, snr_db: float, bank: Sequence[Audio] = ()) -> Audio:
    """Background noise at ``snr_db`` against the speech RMS: white, pink, brown, hum or babble from ``bank``."""
    n = len(x)
    kind = int(rng.integers(5 if bank else 4))
    if kind == 0:
        nz = rng.standard_normal(n).astype(np.float32)
    elif kind == 1:
        nz = pink(n, rng, 1.0)
    elif kind == 2:
        nz = pink(n, rng, 2.0)
    elif kind == 3:
        f0 = float(rng.choice([50.0, 60.0]))
        t = np.arange(n) / SR
        hum = np.zeros(n)
        for h in range(1, 6):
            hum += np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) / h
        nz = hum.astype(np.float32)
        nz = nz + 0.3 * pink(n, rng)
    else:
        nz = np.zeros(n, np.float32)
        for _ in range(int(rng.integers(3, 7))):
            other = bank[int(rng.integers(len(bank)))]
            if len(other) == 0:
                continue
            start = int(rng.integers(max(1, len(other))))
            piece = np.resize(np.roll(other, -start), n)
            nz += piece / _rms(piece)
    speech_rms = _rms(x[np.abs(x) > 0.1 * float(np.max(np.abs(x)) + 1e-9)]) if np.any(x) else 1e-3
    return (x + nz / _rms(nz) * speech_rms * 10 ** (-snr_db / 20)).astype(np.float32)


def pause_sounds(x: Audio, spans: Sequence[PhonemeSpan], rng: np.random.Generator) -> Audio:
    """Breaths (band-passed noise bursts), lip smacks and clicks inside silences: the mouth must stay closed."""
    from scipy import signal

    y = x.copy()
    level = _rms(x) if np.any(x) else 1e-3
    for s in _silences(spans, len(x) / SR, min_s=0.25):
        if rng.random() < 0.5:
            continue
        dur = min(s[1] - s[0] - 0.05, rng.uniform(0.15, 0.5))
        if dur <= 0.05:
            continue
        a = int((s[0] + rng.uniform(0.02, max(0.03, s[1] - s[0] - dur - 0.02))) * SR)
        m = int(dur * SR)
        if a + m > len(y):
            continue
        if rng.random() < 0.75:  # breath
            lo, hi = rng.uniform(300, 1200), rng.uniform(2500, 6000)
            sos = signal.butter(2, [lo, hi], btype="bandpass", fs=SR, output="sos")
            burst = signal.sosfilt(sos, rng.standard_normal(m)) * np.hanning(m)
            gain = level * 10 ** (rng.uniform(-30, -12) / 20)
        else:  # click / smack
            burst = np.zeros(m)
            for _ in range(int(rng.integers(1, 4))):
                k = int(rng.integers(m))
                burst[k : k + 40] += rng.standard_normal(min(40, m - k)) * np.hanning(80)[40 : 40 + min(40, m - k)]
            gain = level * 10 ** (rng.uniform(-20, -6) / 20)
        y[a : a + m] += (burst / (np.std(burst) + 1e-9) * gain).astype(np.float32)
    return y


def _silences(spans: Sequence[PhonemeSpan], total_s: float, min_s: float) -> list[tuple[float, float]]:
    """Silent stretches of at least ``min_s`` (labelled SIL, or not covered by any span)."""
    out: list[tuple[float, float]] = []
    t = 0.0
    for sp in sorted(spans, key=lambda s: s.start):
        if sp.viseme == SIL:
            continue
        if sp.start - t >= min_s:
            out.append((t, sp.start))
        t = max(t, sp.end)
    if total_s - t >= min_s:
        out.append((t, total_s))
    return out


def pad_silence(
    x: Audio, spans: Sequence[PhonemeSpan], lead_s: float, trail_s: float
) -> tuple[Audio, list[PhonemeSpan]]:
    lead, trail = np.zeros(int(lead_s * SR), np.float32), np.zeros(int(trail_s * SR), np.float32)
    return np.concatenate([lead, x, trail]), [
        PhonemeSpan(s.phoneme, s.start + lead_s, s.end + lead_s, s.viseme) for s in spans
    ]


def level(x: Audio, rng: np.random.Generator) -> Audio:
    """Peak level from -40 to 0 dBFS; 8 % clipped by up to 12 dB; 10 % with a DC offset."""
    peak = float(np.max(np.abs(x))) + 1e-9
    if rng.random() < 0.08:
        y = x / peak * 10 ** (rng.uniform(2.0, 12.0) / 20)
    else:
        y = x / peak * 10 ** (rng.uniform(-40.0, 0.0) / 20)
    if rng.random() < 0.1:
        y = y + rng.uniform(-0.1, 0.1)
    return np.asarray(np.clip(y, -1.0, 1.0), dtype=np.float32)


def deployment_mix(
    x: Audio, spans: Sequence[PhonemeSpan], rng: np.random.Generator, bank: Sequence[Audio] = ()
) -> tuple[Audio, list[PhonemeSpan]]:
    """One random deployment-like chain for a clean 16 kHz utterance; returns audio and its (moved) spans."""
    out_spans = list(spans)
    if rng.random() < 0.5:
        x, out_spans = speed(x, out_spans, float(rng.uniform(0.85, 1.18)))
    x, out_spans = pad_silence(x, out_spans, float(rng.uniform(0.0, 0.6)), float(rng.uniform(0.1, 0.8)))
    if rng.random() < 0.4:
        x = pause_sounds(x, out_spans, rng)
    if rng.random() < 0.35:
        x = reverb(x, rng)
    if rng.random() < 0.6:
        x = noise(x, rng, float(rng.uniform(0.0, 30.0)), bank)
    if rng.random() < 0.3:
        x = band_limit(x, rng)
    if rng.random() < 0.3:
        x = random_codec(x, rng)
    return level(x, rng), out_spans


def nonspeech(rng: np.random.Generator, seconds: float) -> Audio:
    """A clip with nobody speaking (labelled silence): instrumental music, breathing, hum, clicks or room noise."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    kind = int(rng.integers(4))
    if kind == 0:  # music: notes of a few harmonics with attack/decay envelopes, sometimes a drum
        x = np.zeros(n)
        pos = 0
        while pos < n:
            dur = int(rng.uniform(0.1, 0.6) * SR)
            f0 = 110.0 * 2 ** (int(rng.integers(0, 36)) / 12)
            seg = t[: min(dur, n - pos)]
            note = sum(np.sin(2 * np.pi * f0 * h * seg) * rng.uniform(0.2, 1.0) / h for h in range(1, 6))
            x[pos : pos + len(seg)] += note * np.exp(-seg * rng.uniform(2, 10))
            if rng.random() < 0.4:
                k = min(800, len(seg))
                x[pos : pos + k] += rng.standard_normal(k) * np.exp(-np.arange(k) / 150)
            pos += dur
    elif kind == 1:  # breathing: slow band-passed noise swells
        from scipy import signal

        sos = signal.butter(2, [400, 4000], btype="bandpass", fs=SR, output="sos")
        x = signal.sosfilt(sos, rng.standard_normal(n)) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t))
    elif kind == 2:  # mains hum with a little noise
        x = np.sin(2 * np.pi * float(rng.choice([50.0, 60.0])) * t) + 0.05 * rng.standard_normal(n)
    else:  # room tone with sparse clicks
        x = pink(n, rng, float(rng.uniform(0.0, 2.0))).astype(np.float64) * 0.1
        for k in rng.integers(0, n, size=int(rng.integers(1, 8))):
            x[k : k + 30] += rng.standard_normal(len(x[k : k + 30]))
    peak = float(np.max(np.abs(x))) + 1e-9
    return np.clip(x / peak * 10 ** (rng.uniform(-45.0, -3.0) / 20), -1, 1).astype(np.float32)

"""Streaming log-mel features at 100 Hz: the lip-sync model's input, identical offline and in any chunking.

Feature frame ``m`` describes the 10 ms slot ``[m * 160, (m + 1) * 160)`` samples of a segment: a 25 ms Hann window
centred on the slot's centre (so it reaches 7.5 ms into the future). Each window has its mean removed first, which
makes the features blind to DC offset without the state of a high-pass filter. The first window reaches before the
segment start; that part is zeros, exactly like the silence a stream starts from.

Pure numpy, no state except in :class:`StreamingLogMel`, so training (torch) and inference (onnxruntime) share it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE

HOP = 160  # 10 ms at 16 kHz
WIN = 400  # 25 ms
N_FFT = 512
N_MELS = 80
FEATURE_RATE = LIPSYNC_SAMPLE_RATE / HOP  # 100 Hz
#: Zeros in front of the segment so that window ``m`` is centred on slot ``m``.
LEFT_PAD = (WIN - HOP) // 2  # 120
#: Audio a frame needs beyond the end of its slot.
RIGHT_REACH = WIN - HOP - LEFT_PAD  # 120 samples = 7.5 ms
LOG_FLOOR = 1e-8
#: The feature vector of digital silence (what padding frames contain).
SILENCE_VALUE = float(np.log(LOG_FLOOR))

FloatArray = npt.NDArray[np.float32]


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = LIPSYNC_SAMPLE_RATE, fmin: float = 40.0
) -> FloatArray:
    """Triangular HTK-style mel filters, shape ``[n_fft // 2 + 1, n_mels]``, each normalised to unit area."""
    fmax = sample_rate / 2
    mels = np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)), n_mels + 2)
    edges = _mel_to_hz(mels)
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    fb = np.zeros((len(bins), n_mels), dtype=np.float64)
    for k in range(n_mels):
        lo, mid, hi = edges[k], edges[k + 1], edges[k + 2]
        up = (bins - lo) / (mid - lo)
        down = (hi - bins) / (hi - mid)
        fb[:, k] = np.maximum(0.0, np.minimum(up, down))
        area = fb[:, k].sum()
        if area > 0:
            fb[:, k] /= area
    return fb.astype(np.float32)


_WINDOW = np.hanning(WIN + 1)[:-1].astype(np.float32)
_FILTERS = mel_filterbank()


def frames_to_logmel(frames: FloatArray) -> FloatArray:
    """Log-mel of windows ``[n, WIN]`` -> ``[n, N_MELS]``. Row-independent, so chunking does not change results."""
    if frames.shape[0] == 0:
        return np.zeros((0, N_MELS), dtype=np.float32)
    x = frames - frames.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(x * _WINDOW, n=N_FFT, axis=1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)
    out: FloatArray = np.log(power @ _FILTERS + LOG_FLOOR).astype(np.float32)
    return out


def n_feature_frames(n_samples: int) -> int:
    """Frames covering a segment of ``n_samples``: one per started 10 ms slot."""
    return -(-n_samples // HOP)


def logmel(audio: FloatArray) -> FloatArray:
    """Offline features of a whole segment (mono float32 at 16 kHz), ``[n_feature_frames(len(audio)), N_MELS]``."""
    stream = StreamingLogMel()
    return np.concatenate([stream.push(audio), stream.flush()], axis=0)


class StreamingLogMel:
    """Incremental :func:`logmel`: ``push`` returns the frames whose whole window has arrived."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(LEFT_PAD, dtype=np.float32)  # padded samples not yet consumed
        self._n_samples = 0  # real samples pushed in this segment
        self._n_frames = 0  # frames emitted in this segment

    @property
    def frames_emitted(self) -> int:
        return self._n_frames

    def push(self, audio: FloatArray) -> FloatArray:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        self._n_samples += len(audio)
        self._buf = np.concatenate([self._buf, audio])
        n = 0 if len(self._buf) < WIN else (len(self._buf) - WIN) // HOP + 1
        return self._take(n)

    def flush(self) -> FloatArray:
        """Emit the remaining frames of the segment (windows padded with zeros) and reset."""
        remaining = n_feature_frames(self._n_samples) - self._n_frames
        if remaining > 0:
            need = (remaining - 1) * HOP + WIN
            if len(self._buf) < need:
                self._buf = np.concatenate([self._buf, np.zeros(need - len(self._buf), dtype=np.float32)])
        out = self._take(max(remaining, 0))
        self.reset()
        return out

    def _take(self, n: int) -> FloatArray:
        if n <= 0:
            return np.zeros((0, N_MELS), dtype=np.float32)
        idx = np.arange(n)[:, None] * HOP + np.arange(WIN)[None, :]
        frames = self._buf[idx]
        self._buf = self._buf[n * HOP :]
        self._n_frames += n
        return frames_to_logmel(frames)

"""Classic baseline for the benchmark: MFCC template matching, the method of uLipSync.

Per video frame: 12 MFCCs (DCT of the log-mel, without c0 so loudness does not matter), standardised, compared with
one average template per viseme class by Euclidean distance; frames quieter than a volume gate are silence. The mouth
shape is the matched viseme's canonical shape with the jaw scaled by the frame's volume, as uLipSync drives
blend shapes. Templates are fitted on the same training split as the network, so the comparison is fair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.base import JAW_OPEN, MouthFrames
from avaluma.renderer.lipsync.features import N_MELS, logmel
from avaluma.renderer.lipsync.framing import feature_range, n_video_frames
from avaluma.renderer.lipsync.visemes import SIL, VISEME_SHAPES, VISEMES

N_MFCC = 12


def _dct_matrix(n_in: int = N_MELS, n_out: int = N_MFCC + 1) -> npt.NDArray[np.float32]:
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    out: npt.NDArray[np.float32] = np.cos(np.pi / n_in * (n + 0.5) * k).astype(np.float32).T  # [n_in, n_out]
    return out


_DCT = _dct_matrix()


def mfcc(logmel_frames: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``[n, N_MELS]`` log-mel -> ``[n, N_MFCC]`` (c1..c12)."""
    out: npt.NDArray[np.float32] = (logmel_frames @ _DCT)[:, 1:]
    return out


def volume(logmel_frames: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Frame level in dB (relative to full scale, roughly), from the mel energies."""
    energy = np.exp(logmel_frames).sum(axis=1)
    out: npt.NDArray[np.float32] = (10 * np.log10(energy + 1e-12)).astype(np.float32)
    return out


@dataclass
class MfccTemplates:
    templates: npt.NDArray[np.float32]  # [n_visemes, N_MFCC], NaN rows for classes never seen
    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]
    gate_db: float
    full_db: float

    @staticmethod
    def fit(features: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]) -> MfccTemplates:
        """Average MFCC per viseme over 100 Hz training frames; the volume gate from speech vs silence levels."""
        c = mfcc(features)
        mean, std = c.mean(0), c.std(0) + 1e-6
        z = (c - mean) / std
        templates = np.full((len(VISEMES), N_MFCC), np.nan, dtype=np.float32)
        for v in range(len(VISEMES)):
            if v != SIL and (labels == v).any():
                templates[v] = z[labels == v].mean(0)
        vol = volume(features)
        speech = vol[labels != SIL]
        gate = float(np.percentile(speech, 5)) if speech.size else -60.0
        full = float(np.percentile(speech, 90)) if speech.size else -20.0
        return MfccTemplates(templates, mean.astype(np.float32), std.astype(np.float32), gate, max(full, gate + 1))

    def analyze(self, audio: npt.NDArray[np.float32], *, fps: float) -> MouthFrames:
        feats = logmel(audio)
        n = n_video_frames(len(audio), fps)
        params = np.zeros((n, VISEME_SHAPES.shape[1]), dtype=np.float32)
        onehot = np.zeros((n, len(VISEMES)), dtype=np.float32)
        valid = ~np.isnan(self.templates[:, 0])
        for i in range(n):
            lo, hi = feature_range(i, fps)
            f = feats[lo : min(hi, len(feats))]
            if len(f) == 0:
                f = feats[-1:]
            vol = float(volume(f).mean())
            if vol < self.gate_db:
                v = SIL
            else:
                z = (mfcc(f).mean(0) - self.mean) / self.std
                d = np.where(valid, ((self.templates - z) ** 2).sum(1), np.inf)
                v = int(np.argmin(d))
            level = float(np.clip((vol - self.gate_db) / (self.full_db - self.gate_db), 0.0, 1.0))
            params[i] = VISEME_SHAPES[v]
            params[i, JAW_OPEN] *= level
            onehot[i, v] = 1.0
        return MouthFrames(params, onehot)

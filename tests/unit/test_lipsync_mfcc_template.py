"""The classic baseline of the benchmark (uLipSync-style MFCC template matching) classifies what it was fitted on."""

from __future__ import annotations

import numpy as np

from avaluma.renderer.lipsync.base import LIPS_CLOSED
from avaluma.renderer.lipsync.features import logmel
from avaluma.renderer.lipsync.training.mfcc_template import MfccTemplates
from avaluma.renderer.lipsync.visemes import SIL, VISEME_INDEX


def _tone(freq: float, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.2 * np.sin(2 * np.pi * 3 * freq * t)).astype(np.float32)


def test_templates_separate_fitted_classes_and_gate_silence() -> None:
    low, high, silence = _tone(200), _tone(2500), np.zeros(8000, np.float32)
    feats = np.concatenate([logmel(low), logmel(high), logmel(silence)])
    n = len(logmel(low))
    labels = np.array([VISEME_INDEX["ou"]] * n + [VISEME_INDEX["ih"]] * n + [SIL] * n)
    templates = MfccTemplates.fit(feats, labels)

    out = templates.analyze(np.concatenate([low, high, silence]), fps=25)
    assert out.visemes is not None and len(out) == 38
    pred = out.visemes.argmax(1)
    assert (pred[2:10] == VISEME_INDEX["ou"]).all()
    assert (pred[15:23] == VISEME_INDEX["ih"]).all()
    assert (pred[28:] == SIL).all()
    assert (out.params[28:, LIPS_CLOSED] == 1.0).all()

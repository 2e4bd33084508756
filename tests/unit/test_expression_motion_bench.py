"""bench/expressions.py's references: phrase ends from phone timings, event matching and the chance level."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from speech_signals import SR, lively

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_expressions", ROOT / "bench" / "expressions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # The bench puts bench/ on sys.path and pins BLAS to one thread: neither may leak into later tests.
    saved_path, saved_env = list(sys.path), dict(os.environ)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_env)
    return module


def test_phrase_ends_are_pauses_after_enough_speech(bench: ModuleType) -> None:
    rows = [
        (0.0, 0.1, "SIL"),
        (0.1, 0.3, "HH"),
        (0.3, 0.6, "EH"),  # 0.5 s of speech, then a 0.3 s pause: a phrase end
        (0.6, 0.9, "SIL"),
        (0.9, 1.0, "OW"),  # 0.1 s, then a 0.2 s pause: too little speech to count
        (1.2, 1.5, "AH"),
        (1.5, 1.6, "N"),  # 0.4 s of speech, then the utterance's end at 2.0 s
    ]
    assert bench.phrase_ends(rows, 2.0) == pytest.approx([0.6 + 0.18, 1.6 + 0.18])


def test_matching_and_chance(bench: ModuleType) -> None:
    assert bench.match([1.0, 2.0, 5.0], [1.1, 2.3, 9.0]) == (1, 1)
    assert bench.match([], [1.0]) == (0, 0)
    # Two events 0.3 s wide each inside a 10 s stretch: random times land near one 6 % of the time.
    assert bench.coverage([2.0, 6.0], 10.0) == pytest.approx(0.6, abs=0.02)


def test_offline_accents_find_the_high_rising_syllables(bench: ModuleType) -> None:
    audio, centres = lively(0)
    # Phone rows: every syllable is a vowel (the signal's syllables are 0.2 s long with 0.06 s gaps).
    rows, t = [], 0.5
    for _ in range(4):
        for _ in range(7):
            rows.append((t, t + 0.2, "AA"))
            t += 0.26
        t += 0.5 - 0.06
    accents = bench.pitch_accents(audio, rows)
    assert len(accents) == len(centres)
    assert np.allclose(accents, centres, atol=0.15)
    assert len(audio) / SR > rows[-1][1]

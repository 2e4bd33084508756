"""Prosody: f0, streaming frames aligned with the lip-sync frames, speaker normalisation and the events."""

from __future__ import annotations

import math

import numpy as np
import pytest
from speech_signals import SR, clicks, lively, monotone, noisy, shouted, whisper, white_noise

from avaluma.renderer.prosody import (
    PHRASE_PAUSE_S,
    ProsodyAnalyzer,
    ProsodyFeatures,
    ProsodyFrame,
    ProsodyTracker,
    estimate_f0,
)

FPS = 25


def frames_of(audio: np.ndarray, fps: float = FPS, chunk: int = 1600) -> list[ProsodyFrame]:
    analyzer = ProsodyAnalyzer(fps)
    out: list[ProsodyFrame] = []
    for i in range(0, len(audio), chunk):
        out += analyzer.push(audio[i : i + chunk])
    return out + analyzer.flush()


def track(audio: np.ndarray, fps: float = FPS) -> list[ProsodyFeatures]:
    tracker = ProsodyTracker(fps)
    return [tracker.step(f) for f in frames_of(audio, fps)]


def times(features: list[ProsodyFeatures], kind: str, fps: float = FPS) -> list[float]:
    return [i / fps for i, f in enumerate(features) if getattr(f, kind)]


@pytest.mark.parametrize("f0", [65.0, 90.0, 130.0, 210.0, 320.0, 430.0])
def test_f0_of_a_voice_across_the_range(f0: float) -> None:
    t = np.arange(1600) / SR
    voice = sum(np.sin(2 * np.pi * k * f0 * t + k) / k for k in range(1, 10))
    est, voicing = estimate_f0(0.2 * voice)
    assert est == pytest.approx(f0, rel=0.02)
    assert voicing > 0.8


def test_noise_and_silence_are_unvoiced() -> None:
    assert estimate_f0(white_noise(0.1))[0] == 0.0
    assert estimate_f0(np.zeros(1600))[0] == 0.0
    assert all(f.f0 == 0.0 for f in frames_of(white_noise(2.0)))


@pytest.mark.parametrize("fps", [25, 30, 24, 60])
def test_frames_match_the_lipsync_framing_whatever_the_chunks(fps: int) -> None:
    audio, _ = lively(0)
    audio = audio[:23_456]
    reference = frames_of(audio, fps, chunk=len(audio))
    assert len(reference) == math.ceil(len(audio) * fps / SR)
    for chunk in (160, 333, 4000):
        assert frames_of(audio, fps, chunk) == reference


def test_a_frame_is_measured_as_soon_as_its_audio_is_complete() -> None:
    # No lookahead: the audio of exactly k frames gives k frames (the lip-sync mouth can never be ready earlier).
    audio, _ = lively(0)
    analyzer = ProsodyAnalyzer(FPS)
    assert len(analyzer.push(audio[: 7 * 640])) == 7
    assert len(analyzer.push(audio[7 * 640 : 7 * 640 + 639])) == 0
    assert len(analyzer.push(audio[7 * 640 + 639 : 8 * 640])) == 1


def test_pitch_accents_on_the_high_rising_stressed_syllables() -> None:
    audio, centres = lively(0)
    features = track(audio)
    accents = times(features, "accent")
    assert len(accents) == len(centres)
    for t, centre in zip(accents, centres, strict=True):
        assert centre - 0.05 <= t <= centre + 0.2  # one frame after the syllable's peak: no waiting for more audio


@pytest.mark.parametrize(("f0", "gain"), [(80.0, 1.0), (220.0, 1.0), (120.0, 0.05), (120.0, 3.0)])
def test_deep_high_quiet_or_loud_voices_give_the_same_events(f0: float, gain: float) -> None:
    audio, centres = lively(1, f0=f0)
    features = track(np.clip(audio * gain, -1, 1))
    reference = track(lively(1)[0])
    for kind in ("accent", "phrase_end"):
        assert len(times(features, kind)) == len(times(reference, kind)), kind
    assert np.allclose(times(features, "accent"), centres, atol=0.2)


def test_noise_over_the_speech_does_not_move_the_accents() -> None:
    audio, centres = lively(0)
    for snr in (20.0, 10.0):
        accents = times(track(noisy(audio, snr)), "accent")
        assert np.allclose(accents, centres, atol=0.2), snr


def test_monotone_speech_has_phrase_ends_but_no_accents_or_stress() -> None:
    audio = monotone(10.0)
    features = track(audio)
    assert times(features, "accent") == [] and times(features, "stress") == []
    assert len(times(features, "phrase_end")) == 4


def test_a_phrase_end_is_known_once_the_pause_has_lasted() -> None:
    audio = monotone(2.0)  # one phrase, 0.5 s pauses around it
    features = track(audio)
    speech_end = max(i for i, f in enumerate(features) if f.speaking) + 1
    (end,) = (i for i, f in enumerate(features) if f.phrase_end)
    # Known at the end of that frame: the pause has lasted PHRASE_PAUSE_S (and not a frame more).
    paused = (end + 1 - speech_end) / FPS
    assert PHRASE_PAUSE_S <= paused < PHRASE_PAUSE_S + 1 / FPS
    assert features[end].pause_s == pytest.approx(paused)


@pytest.mark.parametrize(
    ("name", "audio"),
    [
        ("white noise", white_noise(10.0)),
        ("clicks", clicks(10.0)),
        ("whisper", whisper(10.0)),
        ("shouted monotone", shouted(monotone(10.0))),
    ],
)
def test_bad_input_gives_few_events(name: str, audio: np.ndarray) -> None:
    features = track(audio)
    assert times(features, "accent") == [], name  # no pitch, or pitch without accents
    assert len(times(features, "stress")) <= 1, name
    if name in ("white noise", "clicks"):
        assert times(features, "phrase_end") == [], name  # noise never pauses, clicks never speak


def test_the_models_voice_activity_decides_speaking() -> None:
    tracker = ProsodyTracker(FPS)
    loud = ProsodyFrame(120.0, -20.0, 0.9)
    assert not tracker.step(loud, voice=0.1).speaking  # a loud non-speech frame (music, a cough)
    assert tracker.step(loud, voice=0.9).speaking
    assert tracker.step(loud, voice=0.5).speaking  # hysteresis: a dip does not end the word
    assert not tracker.step(loud, voice=0.2).speaking
    assert not tracker.step(None).speaking  # an idle frame

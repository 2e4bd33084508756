"""Deployment-like degradations for training on real speech, and the human-speech label reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avaluma.renderer.lipsync.training import augment, human
from avaluma.renderer.lipsync.visemes import SIL, VISEME_INDEX, PhonemeSpan

SR = augment.SR


def _speechlike(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """Bursts of harmonic 'vowels' separated by silences: onsets a codec must not move."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for start in (0.2, 0.6, 1.0):
        m = (t >= start) & (t < start + 0.25)
        f0 = rng.uniform(100, 220)
        x[m] = sum(np.sin(2 * np.pi * f0 * h * t[m]) / h for h in range(1, 8)) * 0.3
    return x.astype(np.float32)


@pytest.mark.parametrize("codec", augment.CODECS, ids=[c[1] for c in augment.CODECS])
def test_codec_round_trips_keep_the_timing(codec) -> None:
    x = _speechlike()
    container, name, rate, rates = codec
    y = augment.codec_roundtrip(x, container, name, rate, rates[0])
    assert y.shape == x.shape and np.isfinite(y).all()
    # The first onset is where it was (to a few ms): labels stay valid after the codec's priming delay.
    onset_x = int(np.argmax(np.abs(x) > 0.05))
    onset_y = int(np.argmax(np.abs(y) > 0.05))
    assert abs(onset_y - onset_x) < 0.005 * SR
    assert np.corrcoef(x, y)[0, 1] > 0.8


def test_speed_scales_the_labels_with_the_audio() -> None:
    x = _speechlike()
    spans = [PhonemeSpan("a", 0.2, 0.45, VISEME_INDEX["aa"])]
    y, moved = augment.speed(x, spans, 1.25)
    assert abs(len(y) - len(x) / 1.25) <= 2
    assert moved[0].start == pytest.approx(0.16) and moved[0].end == pytest.approx(0.36)


def test_pause_sounds_touch_only_the_silences() -> None:
    x = _speechlike(2.5)
    speech = [PhonemeSpan("a", s, s + 0.25, VISEME_INDEX["aa"]) for s in (0.2, 0.6, 1.0)]
    rng = np.random.default_rng(3)
    changed = np.zeros(len(x), bool)
    for _ in range(10):
        changed |= augment.pause_sounds(x, speech, rng) != x
    assert changed.any(), "no breath or click was added in 10 tries"
    for sp in speech:
        assert not changed[int(sp.start * SR) : int(sp.end * SR)].any()


def test_deployment_mix_is_bounded_and_deterministic() -> None:
    x = _speechlike()
    spans = [PhonemeSpan("a", 0.2, 0.45, VISEME_INDEX["aa"])]
    for seed in range(6):
        y, moved = augment.deployment_mix(x, spans, np.random.default_rng(seed), bank=[_speechlike(seed=9)])
        assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
        assert 0 <= moved[0].start < moved[0].end <= len(y) / SR
        again, _ = augment.deployment_mix(x, spans, np.random.default_rng(seed), bank=[_speechlike(seed=9)])
        np.testing.assert_array_equal(y, again)


def test_label_files_become_viseme_spans(tmp_path: Path) -> None:
    label = tmp_path / "u.tsv"
    label.write_text(
        "start_s\tend_s\tphone\tword\n"
        "0.000\t0.300\tSIL\t\n"
        "0.300\t0.400\tHH\thuman\n"
        "0.400\t0.500\tY\thuman\n"
        "0.500\t0.600\tUW\thuman\n"
        "0.600\t0.700\tM\thuman\n"
        "0.700\t0.800\tAH\thuman\n"
        "0.800\t0.900\tN\thuman\n"
        "0.900\t1.000\tDH\tthe\n"
        "1.000\t1.100\tAH\tthe\n"
        "1.100\t1.300\tK\tcup\n"
        "1.300\t1.400\tAH\tcup\n"
        "1.400\t1.500\tP\tcup\n"
        "1.500\t1.800\tSIL\t\n"
    )
    visemes = [sp.viseme for sp in human.read_label_spans(label)]
    v = VISEME_INDEX
    assert visemes == [
        SIL,
        v["ih"],  # HH takes the next sound (Y)
        v["ih"],
        v["ou"],
        v["PP"],
        v["E"],  # second-syllable AH: schwa
        v["nn"],
        v["TH"],
        v["E"],  # 'the': reduced
        v["kk"],
        v["aa"],  # stressed AH in a one-syllable word
        v["PP"],
        SIL,
    ]


def test_speech_the_aligner_could_not_transcribe_is_marked_unknown(tmp_path: Path) -> None:
    """SPN is labelled silence in the spans (the mouth model has no phones for it), and reported, so the bench leaves
    its frames out and training leaves the utterance out."""
    label = tmp_path / "lj.tsv"
    label.write_text("start_s\tend_s\tphone\tword\n0.000\t0.200\tSIL\t\n0.200\t0.950\tSPN\t<unk>\n"
                     "0.950\t1.050\tM\tme\n1.050\t1.200\tIY\tme\n")  # fmt: skip
    utt = human.HumanUtterance("u", "ljspeech", "lj", "f", "", "us", tmp_path / "u.flac", label)
    assert utt.unknown() == [(0.2, 0.95)]
    spoken = [sp for sp in utt.spans() if sp.viseme != SIL]
    assert spoken[0].viseme == VISEME_INDEX["PP"] and spoken[0].start == 0.95  # nothing spoken before the "m"


def test_speakers_never_change_split_and_ljspeech_is_test() -> None:
    assert human.speaker_split("lj_LJ", "ljspeech") == "test"
    splits = {human.speaker_split(f"so762_{i:04d}", "speechocean762") for i in range(400)}
    assert splits == {"train", "dev", "test"}
    assert [human.speaker_split("cv_abc", "commonvoice") for _ in range(3)] == [human.speaker_split("cv_abc", "x")] * 3

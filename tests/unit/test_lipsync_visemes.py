"""Phoneme -> viseme mapping and the coarticulated targets the model learns from."""

from __future__ import annotations

import pytest

from avaluma.renderer.lipsync.base import JAW_OPEN, LIPS_CLOSED, ROUNDING
from avaluma.renderer.lipsync.visemes import (
    PP,
    SIL,
    VISEME_INDEX,
    VISEME_SHAPES,
    VISEMES,
    coarticulated_params,
    frame_labels,
    phoneme_to_viseme,
    spans_from_events,
    spans_from_piper,
)


def test_fifteen_classes_with_silence_first() -> None:
    assert len(VISEMES) == 15
    assert VISEMES[SIL] == "sil"
    assert VISEME_SHAPES.shape == (15, 4)
    assert ((VISEME_SHAPES >= 0) & (VISEME_SHAPES <= 1)).all()


@pytest.mark.parametrize(
    ("phoneme", "viseme"),
    [
        ("p", "PP"),
        ("b", "PP"),
        ("m", "PP"),
        ("f", "FF"),
        ("v", "FF"),
        ("θ", "TH"),
        ("ð", "TH"),
        ("t", "DD"),
        ("ɾ", "DD"),
        ("k", "kk"),
        ("ŋ", "kk"),
        ("ʃ", "CH"),
        ("s", "SS"),
        ("z", "SS"),
        ("n", "nn"),
        ("l", "nn"),
        ("ɹ", "RR"),
        ("ɚ", "RR"),
        ("ˈæ", "aa"),
        ("ɑː", "aa"),
        ("ɛ", "E"),
        ("ə", "E"),
        ("iː", "ih"),
        ("ɪ", "ih"),
        ("ˈoʊ", "oh"),
        ("ɔ", "oh"),
        ("uː", "ou"),
        ("w", "ou"),
        ("ˈaɪ", "aa"),
        ("", "sil"),
        (",", "sil"),
        ("^", "sil"),
        ("$", "sil"),
    ],
)
def test_mapping(phoneme: str, viseme: str) -> None:
    assert phoneme_to_viseme(phoneme) == VISEME_INDEX[viseme]


def test_h_takes_the_next_phonemes_viseme() -> None:
    assert phoneme_to_viseme("h") is None
    spans = spans_from_events([(0.0, "h"), (0.1, "uː"), (0.3, "")], total_s=0.4)
    assert [VISEMES[s.viseme] for s in spans] == ["ou", "ou", "sil"]


def test_piper_alignment_merges_stress_length_and_word_gaps() -> None:
    # "^ p ˈ i ː <space> m $": 100 samples per unit at 1 kHz = 0.1 s each.
    spans = spans_from_piper(
        [("^", 100), ("p", 100), ("ˈ", 100), ("i", 100), ("ː", 100), (" ", 100), ("m", 100), ("$", 100)],
        sample_rate=1000,
    )
    assert [(s.phoneme, round(s.start, 3), round(s.end, 3)) for s in spans] == [
        ("^", 0.0, 0.1),
        ("p", 0.1, 0.2),
        ("i", 0.2, 0.55),
        ("m", 0.55, 0.7),
        ("$", 0.7, 0.8),
    ]
    assert spans[-1].end == pytest.approx(0.8)


def test_espeak_events_start_with_silence_and_cover_the_audio() -> None:
    spans = spans_from_events([(0.05, "b"), (0.1, "ˈɔː"), (0.3, "")], total_s=0.5)
    assert spans[0].viseme == SIL and spans[0].start == 0.0 and spans[0].end == 0.05
    assert spans[1].viseme == PP
    assert spans[-1].end == 0.5


def test_targets_close_lips_on_bilabials_and_silence_and_anticipate_vowels() -> None:
    spans = spans_from_events([(0.2, "m"), (0.3, "ˈɑː"), (0.6, "")], total_s=0.9)
    labels = frame_labels(spans, 90)
    assert labels[0] == SIL and labels[25] == PP and labels[45] == VISEME_INDEX["aa"]
    params = coarticulated_params(labels)
    assert (params[labels == PP, LIPS_CLOSED] == 1.0).all()
    assert (params[labels == SIL, LIPS_CLOSED] == 1.0).all()
    assert (params[labels == SIL, JAW_OPEN] <= 0.05).all()
    assert params[45, JAW_OPEN] > 0.7
    # Coarticulation: the jaw starts opening during the /m/, before the vowel is heard.
    assert 0.0 < params[29, JAW_OPEN] < params[45, JAW_OPEN]
    assert (params[labels == VISEME_INDEX["aa"], LIPS_CLOSED] <= 0.3).all()


def test_rounding_spreads_into_neighbours() -> None:
    spans = spans_from_events([(0.0, "s"), (0.1, "uː"), (0.3, "")], total_s=0.4)
    params = coarticulated_params(frame_labels(spans, 40))
    assert 0.0 < params[8, ROUNDING] < params[20, ROUNDING]

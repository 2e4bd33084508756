"""Native English studio speech: the prompts of Asterisk's core sounds, aligned here, half to train, half to check.

Debian's ``asterisk-core-sounds-en-g722`` holds about 570 prompts spoken by one US speaker ("Allison", CC-BY-SA 3.0,
16 kHz G.722) and ``asterisk-core-sounds-en`` their transcripts; ``scripts/fetch-native-speech`` puts both into
``build/native-speech``. The shared human-speech corpus is mostly Mandarin-L1 English and its only native adult
speaker is in the test split, so these prompts are the one native adult voice the model can learn from. They are split
in two by a hash of the prompt name (:func:`part`): the ``train`` half is training data (``data.load_or_build_native``),
the ``heldout`` half the bench's native set (new sentences, not a new speaker: LJSpeech in the corpus's test split is
the check on a voice never heard).

Labels come from forced alignment with pocketsphinx's bundled US English model and CMUdict, as the corpus's
pocketsphinx labels were made (two passes, boundaries moved 10 ms later); prompts with a word outside the dictionary
are left out and counted.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE
from avaluma.renderer.lipsync.training.background import decode
from avaluma.renderer.lipsync.training.human import label_spans, stable_hash
from avaluma.renderer.lipsync.visemes import PhonemeSpan

TRANSCRIPTS = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
VOICES = "usr/share/asterisk/sounds"
SOUNDS = f"{VOICES}/en_US_f_Allison"
FRAME_S = 0.01
#: Both reference aligners of the corpus put phone onsets 10 ms later than pocketsphinx does (its README).
SHIFT_S = 0.01
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

PARTS = ("train", "heldout")

Prompt = tuple[str, npt.NDArray[np.float32], list[PhonemeSpan]]


def part(name: str) -> str:
    """``train`` or ``heldout`` for a prompt: stable, by a hash of its name (about half each)."""
    return PARTS[stable_hash(name) % 2]


def words(text: str) -> list[str]:
    """A transcript as dictionary words: lower case, bracketed notes and punctuation dropped, digits spelled out."""
    t = re.sub(r"\[[^]]*\]|\([^)]*\)", " ", text.lower().replace("’", "'"))
    t = re.sub(r"[^a-z0-9' ]+", " ", re.sub(r"[-/]", " ", t))
    out: list[str] = []
    for w in (w.strip("'") for w in t.split()):
        if w:
            out += [_DIGITS[int(c)] for c in w] if w.isdigit() else [w]
    return out


def found(root: Path) -> bool:
    """Whether ``root`` holds the prompts and their transcripts as ``scripts/fetch-native-speech`` leaves them."""
    return (root / TRANSCRIPTS).is_file() and (root / SOUNDS).is_dir()


def voices(root: Path) -> dict[str, list[Path]]:
    """Every fetched voice (``scripts/fetch-native-speech --languages`` adds es-MX, fr-CA, it-IT and ru-RU) -> its
    prompt files, sorted: folder names like ``es_MX_f_Allison`` (language, country, sex, speaker)."""
    folder = root / VOICES
    if not folder.is_dir():
        return {}
    return {d.name: sorted(d.rglob("*.g722")) for d in sorted(folder.iterdir()) if d.is_dir()}


def transcripts(root: Path) -> dict[str, str]:
    """Prompt name (its path under the sounds folder, no suffix) -> transcript."""
    out: dict[str, str] = {}
    with gzip.open(root / TRANSCRIPTS, "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            out[name.strip()] = text.strip()
    return out


class Aligner:
    """Phone-level forced alignment with pocketsphinx (its bundled en-us model and dictionary)."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._decoder = Decoder(samprate=LIPSYNC_SAMPLE_RATE, bestpath=False, loglevel="FATAL")

    def known(self, word: str) -> bool:
        return self._decoder.lookup_word(word) is not None

    def align(self, audio: npt.NDArray[np.float32], text: list[str]) -> list[tuple[float, float, str, str]] | None:
        """``(start_s, end_s, ARPAbet phone or SIL, word)`` rows covering ``audio``, or ``None`` when it fails."""
        d = self._decoder
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        d.set_align_text(" ".join(text))
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        if d.hyp() is None:
            return None
        d.set_alignment()
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        end = len(audio) / LIPSYNC_SAMPLE_RATE
        rows = []
        for word in d.get_alignment():
            name = re.sub(r"\(\d+\)$", "", word.name)
            for phone in word:
                start = phone.start * FRAME_S
                silent = phone.name.startswith("+") or phone.name == "SIL"
                rows.append(
                    (
                        round(start + SHIFT_S, 3) if start > 0 else 0.0,
                        round(min(end, (phone.start + phone.duration) * FRAME_S + SHIFT_S), 3),
                        "SIL" if silent else phone.name,
                        "" if silent or name.startswith("<") else name,
                    )
                )
        return rows


def load(root: Path, progress: Callable[[str], None] = print, *, only: str | None = None) -> list[Prompt]:
    """Every prompt that aligns (of one :func:`part` when ``only`` names it): (name, 16 kHz audio, viseme spans)."""
    if only is not None and only not in PARTS:
        raise ValueError(f"only must be one of {PARTS}, not {only!r}")
    aligner = Aligner()
    out: list[Prompt] = []
    unknown = failed = 0
    for name, text in sorted(transcripts(root).items()):
        path = root / SOUNDS / f"{name}.g722"
        said = words(text)
        if not path.is_file() or (only is not None and part(name) != only):
            continue
        if not said or not all(aligner.known(w) for w in said):
            unknown += 1
            continue
        audio = decode(path, container_format="g722")
        rows = aligner.align(audio, said)
        if rows is None:
            failed += 1
            continue
        out.append((name, audio, label_spans(rows)))
    minutes = sum(len(a) for _, a, _ in out) / LIPSYNC_SAMPLE_RATE / 60
    which = f"{only} half: " if only else ""
    progress(f"native speech: {which}{len(out)} prompts aligned ({minutes:.1f} min), {unknown} with words outside the "
             f"dictionary and {failed} that did not align left out")  # fmt: skip
    return out

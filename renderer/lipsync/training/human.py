"""Real human speech with phone timings (``shared/data/human-speech``): loading, labels and the speaker split.

The corpus is not part of the project (its audio is never committed); it is found at ``$AVALUMA_HUMAN_SPEECH`` or at
``../shared/data/human-speech`` next to the checkout. Labels are ARPAbet phones (no stress digits) with times in
seconds; :data:`ARPABET_IPA` turns them into the IPA the project's own :func:`phoneme_to_viseme` reads.

Speakers are split three ways and never mixed: ``train`` (fitted on), ``dev`` (model and recipe choices are made on it)
and ``test`` (reported only). The split is a pure function of the speaker id (a hash), so it is stable across
machines and runs without a list to keep in sync; ``python -m avaluma.renderer.lipsync.training.human`` prints it.
LJSpeech (one native speaker, labels by the Montreal Forced Aligner rather than pocketsphinx) is always ``test``.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.visemes import PhonemeSpan, _resolve

#: CMUdict's 39 phones (no stress) in IPA, as shared/data/human-speech/phoneset.tsv gives them. ``AH`` is ʌ when
#: stressed and ə when not; the corpus has no stress, see :func:`_ah_ipa`.
ARPABET_IPA: dict[str, str] = {
    "AA": "ɑ", "AE": "æ", "AH": "ʌ", "AO": "ɔ", "AW": "aʊ", "AY": "aɪ", "EH": "ɛ", "ER": "ɝ", "EY": "eɪ",
    "IH": "ɪ", "IY": "i", "OW": "oʊ", "OY": "ɔɪ", "UH": "ʊ", "UW": "u", "B": "b", "CH": "tʃ", "D": "d",
    "DH": "ð", "F": "f", "G": "ɡ", "HH": "h", "JH": "dʒ", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "ŋ",
    "P": "p", "R": "ɹ", "S": "s", "SH": "ʃ", "T": "t", "TH": "θ", "V": "v", "W": "w", "Y": "j", "Z": "z",
    "ZH": "ʒ", "SIL": "", "SPN": "",
}  # fmt: skip
_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
#: Function words whose AH is always the reduced vowel (ə).
_REDUCED_WORDS = {"a", "the", "of", "to", "and", "was", "from", "what", "but", "us", "an", "at", "for", "as", "that"}

SPLITS = ("train", "dev", "test")
#: Per-mille of speakers (by hash) in dev and test; the rest train.
_DEV_PERMILLE, _TEST_PERMILLE = 110, 110


def corpus_root() -> Path | None:
    """The corpus folder, or ``None`` when it is not on this machine."""
    env = os.environ.get("AVALUMA_HUMAN_SPEECH")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "data" / "human-speech" for p in here.parents[3:7]]
    for path in candidates:
        if (path / "manifest.tsv").is_file():
            return path
    return None


def stable_hash(name: str) -> int:
    """A 32-bit hash of ``name`` that is the same on every machine and run (splits are pure functions of names)."""
    return int(hashlib.sha1(name.encode()).hexdigest()[:8], 16)


def speaker_split(speaker: str, source: str) -> str:
    """``train``, ``dev`` or ``test`` for a speaker: stable, by hash (LJSpeech is always test)."""
    if source == "ljspeech":
        return "test"
    h = stable_hash(speaker) % 1000
    if h < _TEST_PERMILLE:
        return "test"
    if h < _TEST_PERMILLE + _DEV_PERMILLE:
        return "dev"
    return "train"


@dataclass(frozen=True, slots=True)
class HumanUtterance:
    utt_id: str
    source: str
    speaker: str
    gender: str
    age: str
    accent: str
    audio_path: Path
    label_path: Path

    @property
    def split(self) -> str:
        return speaker_split(self.speaker, self.source)

    def audio(self) -> npt.NDArray[np.float32]:
        """Mono float32 at 16 kHz (the corpus is 16 kHz mono FLAC)."""
        from avaluma.renderer.lipsync.training.background import decode

        return decode(self.audio_path)

    def spans(self) -> list[PhonemeSpan]:
        return read_label_spans(self.label_path)

    def unknown(self) -> list[tuple[float, float]]:
        """Stretches of speech the aligner could not transcribe (``SPN``, seconds): :meth:`spans` labels them silence,
        so evaluation leaves their frames out and training leaves their utterances out."""
        return [(s, e) for s, e, phone, _ in read_label_rows(self.label_path) if phone == "SPN"]


def _ah_ipa(word: str, vowel_index: int, n_vowels: int) -> str:
    """Best guess for an unstressed-or-not ``AH``: reduced (ə) in function words and in non-first syllables of
    polysyllables, full (ʌ) otherwise. Crude, but it moves most schwas to ``E`` where the mouth really is."""
    if word in _REDUCED_WORDS:
        return "ə"
    if n_vowels > 1 and vowel_index > 0:
        return "ə"
    return "ʌ"


def read_label_rows(path: Path) -> list[tuple[float, float, str, str]]:
    """A label file (``start_s end_s phone word``) as rows ``(start_s, end_s, ARPAbet phone, word)``."""
    rows: list[tuple[float, float, str, str]] = []
    with path.open(encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader, None)
        for row in reader:
            if len(row) < 3:
                continue
            rows.append((float(row[0]), float(row[1]), row[2].strip().upper(), row[3].strip() if len(row) > 3 else ""))
    return rows


def read_label_spans(path: Path) -> list[PhonemeSpan]:
    """A label file (``start_s end_s phone word``) as viseme spans; SIL/SPN become silence."""
    return label_spans(read_label_rows(path))


def label_spans(rows: list[tuple[float, float, str, str]]) -> list[PhonemeSpan]:
    """Label rows ``(start_s, end_s, ARPAbet phone, word)`` as viseme spans; SIL/SPN become silence."""
    items: list[tuple[str, float, float]] = []
    k = 0
    while k < len(rows):
        # Group consecutive rows of one word to count its vowels (for AH).
        word = rows[k][3]
        j = k
        while j + 1 < len(rows) and word and rows[j + 1][3] == word and rows[j + 1][2] != "SIL":
            j += 1
        group = rows[k : j + 1]
        vowels = [r for r in group if r[2] in _VOWELS]
        vi = 0
        for s, e, ph, w in group:
            ipa = _ah_ipa(w.lower(), vi, len(vowels)) if ph == "AH" else ARPABET_IPA.get(ph, "")
            if ph in _VOWELS:
                vi += 1
            items.append((ipa, s, e))
        k = j + 1
    return _resolve(items)


def utterances(root: Path | None = None, split: str | None = None) -> Iterator[HumanUtterance]:
    """Every utterance of the corpus (in manifest order), optionally of one split."""
    root = root or corpus_root()
    if root is None:
        return
    with (root / "manifest.tsv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            utt = HumanUtterance(
                utt_id=row["utt_id"],
                source=row["source"],
                speaker=row["speaker"],
                gender=row["gender"],
                age=row["age"],
                accent=row["accent"],
                audio_path=root / "audio" / row["source"] / f"{row['utt_id']}.flac",
                label_path=root / "labels" / row["source"] / f"{row['utt_id']}.tsv",
            )
            if split is None or utt.split == split:
                yield utt


def main() -> int:
    """Print the speaker split (the list the model card refers to)."""
    root = corpus_root()
    if root is None:
        print("human-speech corpus not found: set AVALUMA_HUMAN_SPEECH to its folder")
        return 1
    by_split: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
    for utt in utterances(root):
        by_split[utt.split][utt.speaker] = by_split[utt.split].get(utt.speaker, 0) + 1
    for name in SPLITS:
        spk = by_split[name]
        print(f"{name}: {len(spk)} speakers, {sum(spk.values())} utterances")
        if name != "train":
            print("  " + " ".join(sorted(spk)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

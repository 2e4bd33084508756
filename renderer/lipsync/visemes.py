"""Phoneme -> viseme mapping and coarticulated mouth targets: the ground truth the lip-sync model is trained on.

Viseme set: the 15 classes of the widely used Oculus/Meta OVR LipSync set (silence included), chosen because avatar
rigs and uLipSync-style tools already speak it:

======  =======================  =========================================
class   IPA (espeak-ng / piper)  example
======  =======================  =========================================
sil     pauses, punctuation      (silence)
PP      p b m β                  **p**ut, **b**e, **m**e, Spanish a**b**ajo — lips closed
FF      f v                      **f**ive, **v**ery
TH      θ ð                      **th**ink, **th**at
DD      t d ɾ                    **t**ip, **d**o, bu**tt**er
kk      k g ŋ x ʔ ɣ χ ʁ ʀ        **k**ey, **g**o, si**ng**, Ba**ch**, French **r**ouge
CH      ʃ ʒ ç                    **sh**e, mea**s**ure (t+ʃ gives DD then CH)
SS      s z                      **s**ee, **z**oo
nn      n l ɫ ɬ ɲ ʎ              **n**o, **l**ay, Spanish a**ñ**o, Italian fi**gl**io
RR      ɹ r ɚ ɝ ɻ                **r**ed, butt**er**
aa      a ɑ æ ʌ ɐ ɒ ᵻ            f**a**ther, c**a**t, c**u**t
E       e ɛ ə ɜ                  b**e**d, **a**bout
ih      i ɪ j ɨ                  s**ee**, s**i**t, **y**es
oh      o ɔ ø œ                  t**o**ne, th**ou**ght, German sch**ö**n, French s**œu**r
ou      u ʊ w ʉ y ʏ ɥ            f**oo**d, b**oo**k, **w**e, French t**u**, German Br**ü**cke
======  =======================  =========================================

``h`` (and ``ɦ``) has no mouth shape of its own (it is the voiceless start of the next vowel), so it takes the next
phoneme's viseme. Front rounded vowels go by their lip rounding (what a viewer sees), not by their tongue position;
nasal vowels map as their oral vowel. Stress marks belong to the following phoneme, length marks to the preceding one.

Continuous targets (:data:`avaluma.renderer.lipsync.base.MOUTH_PARAMS`) come from one canonical shape per viseme
(:data:`VISEME_SHAPES`), sampled at 100 Hz and blended across neighbours with a Gaussian (coarticulation: the jaw and
lip rounding move smoothly and start before the sound), then two hard constraints are applied *after* blending,
because viewers notice them most: the lips are fully closed during every p/b/m, and closed in silence.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.base import MOUTH_PARAMS

VISEMES: tuple[str, ...] = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")
VISEME_INDEX: dict[str, int] = {v: i for i, v in enumerate(VISEMES)}
SIL, PP = VISEME_INDEX["sil"], VISEME_INDEX["PP"]

#: Canonical mouth shape per viseme, columns as MOUTH_PARAMS: jaw_open, lips_closed, rounding, stretch.
VISEME_SHAPES = np.array(
    [
        [0.00, 1.0, 0.00, 0.00],  # sil
        [0.00, 1.0, 0.00, 0.00],  # PP
        [0.10, 0.0, 0.00, 0.20],  # FF
        [0.15, 0.0, 0.00, 0.10],  # TH
        [0.20, 0.0, 0.00, 0.25],  # DD
        [0.25, 0.0, 0.00, 0.10],  # kk
        [0.15, 0.0, 0.60, 0.00],  # CH
        [0.10, 0.0, 0.00, 0.50],  # SS
        [0.15, 0.0, 0.00, 0.20],  # nn
        [0.20, 0.0, 0.45, 0.00],  # RR
        [0.80, 0.0, 0.00, 0.10],  # aa
        [0.50, 0.0, 0.00, 0.40],  # E
        [0.30, 0.0, 0.00, 0.60],  # ih
        [0.55, 0.0, 0.70, 0.00],  # oh
        [0.25, 0.0, 0.90, 0.00],  # ou
    ],
    dtype=np.float32,
)
assert VISEME_SHAPES.shape == (len(VISEMES), len(MOUTH_PARAMS))

_GROUPS: dict[str, str] = {
    "PP": "pbmβ",
    "FF": "fvɱ",
    "TH": "θð",
    "DD": "tdɾ",
    "kk": "kgɡŋxʔqɣχʁʀcɟ",
    "CH": "ʃʒçʝɕʑ",
    "SS": "sz",
    "nn": "nlɫɬɲʎ",
    "RR": "ɹrɚɝɻ",
    "aa": "aɑæʌɐɒᵻ",
    "E": "eɛəɜ",
    "ih": "iɪjɨ",
    "oh": "oɔøœɞ",
    "ou": "uʊwʉɯyʏɥʍ",
}
_SYMBOL_VISEME: dict[str, str] = {ch: vis for vis, chars in _GROUPS.items() for ch in chars}
_PAUSE_SYMBOLS = set(".,;:!?—–-…\"'()[]^$_") | {""}
_STRESS = set("ˈˌ")
_LENGTH = set("ːˑ")
_NEXT = set("hɦ")  # take the viseme of the following phoneme

#: Silence longer than this inside a word gap counts as a pause (piper gives word gaps their own duration).
_SPACE_PAUSE_S = 0.12


@dataclass(frozen=True, slots=True)
class PhonemeSpan:
    """One phoneme with its time span in seconds and its viseme index."""

    phoneme: str
    start: float
    end: float
    viseme: int


def phoneme_to_viseme(phoneme: str) -> int | None:
    """Viseme index of an IPA phoneme string (e.g. ``"ˈaɪ"`` -> aa), ``SIL`` for pauses, ``None`` for ``h``.

    Diphthongs and affricates map by their first sounding symbol; unknown symbols map to ``E`` (a neutral half-open
    mouth), which is the least visible mistake. espeak-ng's language switch markers (``"(en)"``) are ``None`` too.
    """
    text = unicodedata.normalize("NFC", phoneme.strip())
    if len(text) > 2 and text[0] == "(" and text[-1] == ")":
        return None  # espeak-ng's language switch marker, e.g. "(en)" before an English word in German
    for ch in text:
        if ch in _STRESS or ch in _LENGTH or unicodedata.combining(ch):
            continue
        if ch in _PAUSE_SYMBOLS or ch.isspace():
            continue
        if ch not in _SYMBOL_VISEME:
            ch = unicodedata.normalize("NFD", ch)[0]  # õ -> o, but ç stays ç (NFD would make it a c)
        if ch in _NEXT:
            return None
        return VISEME_INDEX[_SYMBOL_VISEME.get(ch, "E")]
    return SIL


def spans_from_piper(phonemes: Sequence[tuple[str, int]], sample_rate: int) -> list[PhonemeSpan]:
    """Turn piper alignments (one phoneme codepoint with its sample count each) into viseme spans.

    Stress marks give their time to the next phoneme and length marks to the previous one (they are not sounds); a
    word gap gives half its time to each neighbour unless it is long enough to be a pause.
    """
    merged: list[tuple[str, float, float]] = []  # (phoneme, start_s, end_s)
    pending_start: float | None = None  # where the next real phoneme starts (stress mark or word gap before it)
    t = 0.0
    for ph, n in phonemes:
        start, end = t, t + float(n) / sample_rate
        t = end
        if ph in _STRESS:
            pending_start = start if pending_start is None else pending_start
        elif ph in _LENGTH and merged:
            merged[-1] = (merged[-1][0], merged[-1][1], end)
        elif ph == " " and end - start < _SPACE_PAUSE_S:
            mid = (start + end) / 2
            if merged:
                merged[-1] = (merged[-1][0], merged[-1][1], mid)
            pending_start = mid if pending_start is None else pending_start
        else:
            merged.append((ph, pending_start if pending_start is not None else start, end))
            pending_start = None
    if pending_start is not None and merged:
        merged[-1] = (merged[-1][0], merged[-1][1], t)
    return _resolve(merged)


def spans_from_events(events: Sequence[tuple[float, str]], total_s: float) -> list[PhonemeSpan]:
    """Turn phoneme onset events ``(time_s, ipa)`` (espeak-ng) into spans; each lasts until the next onset."""
    items: list[tuple[str, float, float]] = []
    if not events or events[0][0] > 0:
        items.append(("", 0.0, events[0][0] if events else total_s))
    for k, (t, ph) in enumerate(events):
        end = events[k + 1][0] if k + 1 < len(events) else total_s
        if end > t:
            items.append((ph, t, end))
    return _resolve(items)


def _resolve(items: Iterable[tuple[str, float, float]]) -> list[PhonemeSpan]:
    spans: list[PhonemeSpan] = []
    unresolved: list[tuple[str, float, float]] = []
    for ph, s, e in items:
        v = phoneme_to_viseme(ph)
        if v is None:
            unresolved.append((ph, s, e))
            continue
        for uph, us, ue in unresolved:
            spans.append(PhonemeSpan(uph, us, ue, v))
        unresolved.clear()
        spans.append(PhonemeSpan(ph, s, e, v))
    for uph, us, ue in unresolved:
        spans.append(PhonemeSpan(uph, us, ue, SIL))
    return spans


def frame_labels(spans: Sequence[PhonemeSpan], n_frames: int, frame_rate: float = 100.0) -> npt.NDArray[np.int64]:
    """Viseme index at the centre of each frame; silence outside all spans."""
    labels = np.full(n_frames, SIL, dtype=np.int64)
    centres = (np.arange(n_frames) + 0.5) / frame_rate
    for sp in spans:
        lo, hi = np.searchsorted(centres, [sp.start, sp.end])
        labels[lo:hi] = sp.viseme
    return labels


def coarticulated_params(
    labels: npt.NDArray[np.int64], frame_rate: float = 100.0, sigma_s: float = 0.025
) -> npt.NDArray[np.float32]:
    """Blend per-frame viseme shapes over neighbours, then force closed lips on p/b/m and in silence."""
    raw = VISEME_SHAPES[labels]
    sigma = sigma_s * frame_rate
    radius = max(1, int(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(raw, ((radius, radius), (0, 0)), mode="edge")
    smooth = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(raw.shape[1])], axis=1)
    closed = (labels == PP) | (labels == SIL)
    smooth[closed, 1] = 1.0
    smooth[closed, 0] = np.minimum(smooth[closed, 0], 0.05)
    # Open lips wherever a non-closing sound is made, even right next to a closure.
    smooth[~closed, 1] = np.minimum(smooth[~closed, 1], 0.3)
    out: npt.NDArray[np.float32] = np.clip(smooth, 0.0, 1.0).astype(np.float32)
    return out

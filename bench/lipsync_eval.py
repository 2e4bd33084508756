"""Lip-sync evaluation: the trained model, the previous model (v1) and the baselines, side by side, on real human
speech, synthetic held-out voices, degraded audio, other languages and real talking faces.

Run: ``.venv/bin/python bench/lipsync_eval.py [--quick] [--faces | --no-faces] [--model PATH] [--fps 25 30]
[--background DIR]``.

Sets (none of them is ever trained on):

* **human test**: the speaker-disjoint test split of ``shared/data/human-speech`` (see
  ``python -m avaluma.renderer.lipsync.training.human``); the **dev** split is printed separately and labelled as the
  tuning set (model and recipe choices are made on it, so its figures are optimistic). Skipped with a message when the
  corpus is not on this machine. Also on the test split: pink noise at 20 dB SNR, babble (six training-split speakers
  talking at once) at 10 dB SNR, a quiet level (speech at -30 dBFS RMS), the 8 kHz telephone band (16 kHz -> 8 kHz
  -> 16 kHz) and five microphone colourations (:data:`MICROPHONES`), per speaker group (female/male, child/adult as
  the manifest says) and the most confused viseme pairs. With ``--background DIR`` (recorded music and sound effects
  the model was not trained on) also music under the test speech at 10 dB SNR, and the recordings alone (nobody
  speaking: the mouth should stay closed).
* **native English**: the held-out half of Asterisk's English prompts (one US speaker, studio, labelled by forced
  alignment here: :mod:`avaluma.renderer.lipsync.training.prompts`) when ``scripts/fetch-native-speech`` has fetched
  them. Version 4 trained on the other half: these are new sentences of a voice it has heard (LJSpeech, in the human
  test split's groups, is the native voice no model has heard).
* **real speech per language, no labels**: with ``scripts/fetch-native-speech --languages``, 150 prompts of each
  Asterisk voice (es-MX, fr-CA, it-IT, ru-RU and the English one): the share of pause frames with the lips shut and
  of loud frames with the mouth visibly open (``energy`` opens on nearly all: more open is not better by itself).
* **synthetic held-out**: voices and sentences the training data cache (``build/lipsync_data``, built by the training
  command; built here first if absent: minutes) keeps aside; clean at each ``--fps`` and with pink noise.
* **languages**: English (the synthetic held-out) and the held-out sentences and voices of
  :mod:`avaluma.renderer.lipsync.training.languages`, spoken by espeak-ng.
* **faces** (``--faces`` runs only this): for each clip in ``shared/data/talking-faces``, the real person's inner-lip
  gap (landmarked frame by frame with the avatar builder's own face mesh, normalised by the distance between the eye
  corners) against the gap of the bundled demo avatar rendered from the clip's audio through the embedded render path
  (``avaluma render --audio``) and landmarked the same way: Pearson r at lag 0 and at the best lag within +-5 frames;
  then the same with a photo avatar built from the clip's own frame (its most closed mouth in the first 3 s), so that
  the real and the rendered mouth are the same person's.

Methods: the trained model (the bundled ``renderer/lipsync/models/lipsync.onnx`` or ``--model``), v3 (the model at
commit 4455189, the default before version 4, with the same frame decoding) and v1 (commit 3a5f3df, as it shipped),
both extracted with git and skipped with a note where git or the commit is missing, ``energy`` and MFCC template
matching (uLipSync-style, fitted on the synthetic training data).

Metrics, per video frame (frame ``i`` covers ``[i/fps, (i+1)/fps)``):

* viseme accuracy: predicted class == the class at the frame centre; "+-1" also accepts the class at the centre of a
  neighbouring frame; "speech acc" is the exact accuracy over frames whose true class is not silence. Backends
  without viseme output (``energy``) are scored by the nearest canonical mouth shape.
* mouth-open correlation: Pearson r between predicted ``jaw_open`` and the coarticulated target (pooled like the model).
* bilabial closure: share of p/b/m phonemes with at least one overlapping frame showing ``lips_closed >= 0.5``.
* silence closure: share of frames at least 100 ms away from any speech sound with ``lips_closed >= 0.5``.
* shut in speech: share of speech frames neither at nor next to a p/b/m frame with ``lips_closed >= 0.5`` (the price
  of bilabial closure: a mouth that shuts more often closes more p/b/m and more of everything else; lower is better).
* cost: CPU milliseconds per second of audio on one thread, streaming in 40 ms chunks (one video frame each).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime
import soxr
from machine import describe

from avaluma.renderer.lipsync.base import JAW_OPEN, LIPS_CLOSED, LIPSYNC_SAMPLE_RATE, MouthFrames
from avaluma.renderer.lipsync.framing import feature_range, n_video_frames
from avaluma.renderer.lipsync.onnx_backend import Decoding, OnnxBackend, OnnxOptions, OnnxStream
from avaluma.renderer.lipsync.training import background
from avaluma.renderer.lipsync.training.augment import pad_silence, pink
from avaluma.renderer.lipsync.training.data import DataConfig, Split, load_or_build
from avaluma.renderer.lipsync.training.mfcc_template import MfccTemplates
from avaluma.renderer.lipsync.visemes import PP, SIL, VISEME_SHAPES, VISEMES, coarticulated_params, frame_labels
from avaluma.renderer.lipsync.visemes import PhonemeSpan as Span

Analyzer = Callable[[npt.NDArray[np.float32], float], MouthFrames]
SILENCE_MARGIN_S = 0.1
#: Audio level bins (dBFS RMS of the frame) for silence closure: digital-quiet, room tone, loud non-speech.
SILENCE_LEVEL_BINS = ((-1000.0, -60.0), (-60.0, -45.0), (-45.0, 1000.0))
CLOSED = 0.5
REPO = Path(__file__).resolve().parent.parent
V1_COMMIT = "3a5f3df"
#: The last commit with model v3 (its file was the default until version 4), run with today's frame decoding.
V3_COMMIT = "4455189"
MODEL_IN_REPO = "renderer/lipsync/models/lipsync.onnx"
#: The :class:`Counts` fields summed over utterances.
COUNTED = (
    *("exact", "near", "total", "speech_hit", "speech_n"),
    *("bil_hit", "bil_n", "sil_hit", "sil_n", "shut_hit", "shut_n"),
)
METRICS = (
    ("acc", "viseme acc", 10),
    ("acc1", "acc +-1", 8),
    ("acc_speech", "speech acc", 10),
    ("corr", "open r", 7),
    ("bilabial", "bilabial", 9),
    ("silence", "silence", 8),
    ("shut_speech", "shut in speech", 15),
)


# --- scoring ---------------------------------------------------------------------------------------------------------


#: The viseme value of a span-array row that marks speech without labels (the aligner's ``SPN``): its frames are left
#: out of every count (they carry the silence label of the spans around them).
UNLABELLED = -1


def _spans(arr: npt.NDArray[np.float64]) -> list[Span]:
    return [Span("", float(s), float(e), int(v)) for s, e, v in arr if int(v) != UNLABELLED]


def _unlabelled(arr: npt.NDArray[np.float64]) -> list[tuple[float, float]]:
    return [(float(s), float(e)) for s, e, v in arr if int(v) == UNLABELLED]


def _span_array(spans: Sequence[Span]) -> npt.NDArray[np.float64]:
    return np.array([[s.start, s.end, s.viseme] for s in spans], dtype=np.float64).reshape(-1, 3)


def _truth(spans: list[Span], n_samples: int, fps: float) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    n = n_video_frames(n_samples, fps)
    labels = frame_labels(spans, n, frame_rate=fps)
    hi_rate = frame_labels(spans, feature_range(n - 1, fps)[1] + 1)
    jaw100 = coarticulated_params(hi_rate)[:, JAW_OPEN]
    jaw = np.array([jaw100[slice(*feature_range(i, fps))].mean() for i in range(n)], dtype=np.float32)
    return labels, jaw


def _decode(frames: MouthFrames) -> npt.NDArray[np.int64]:
    if frames.visemes is not None:
        return frames.visemes.argmax(1)
    d = ((frames.params[:, None, :] - VISEME_SHAPES[None]) ** 2).sum(-1)
    return d.argmin(1)


@dataclass
class Counts:
    """What one utterance contributes to the metrics; summed over any subset with :func:`metrics`."""

    exact: int
    near: int
    total: int
    speech_hit: int
    speech_n: int
    jaw_pred: npt.NDArray[np.float32]
    jaw_true: npt.NDArray[np.float32]
    bil_hit: int
    bil_n: int
    sil_hit: int
    sil_n: int
    shut_hit: int
    shut_n: int
    confusion: npt.NDArray[np.int64]  # [true, predicted] frame counts
    #: Silence closure by the audio level of the frame: [bin, (closed, frames)] over :data:`SILENCE_LEVEL_BINS`.
    sil_by_level: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros((len(SILENCE_LEVEL_BINS), 2), np.int64)
    )


def score(
    out: MouthFrames,
    spans: list[Span],
    n_samples: int,
    fps: float,
    audio: npt.NDArray[np.float32] | None = None,
    unlabelled: Sequence[tuple[float, float]] = (),
) -> Counts:
    labels, jaw = _truth(spans, n_samples, fps)
    assert len(out) == len(labels), (len(out), len(labels))
    pred = _decode(out)
    prev, nxt = np.r_[labels[:1], labels[:-1]], np.r_[labels[1:], labels[-1:]]
    # Frames overlapping speech without labels count nowhere.
    keep = np.ones(len(labels), dtype=bool)
    for a, b in unlabelled:
        keep[max(0, int(np.floor(a * fps))) : int(np.ceil(b * fps))] = False
    talking = (labels != SIL) & keep
    closed = out.params[:, LIPS_CLOSED] >= CLOSED
    bil_hit = bil_n = 0
    for sp in spans:
        if sp.viseme == PP:
            lo, hi = int(np.floor(sp.start * fps)), int(np.ceil(sp.end * fps))
            bil_n += 1
            bil_hit += bool(closed[lo : min(hi, len(closed))].any())
    # Frames overlapping no speech sound widened by the margin.
    near_speech = np.zeros(len(labels), dtype=bool)
    for s in spans:
        if s.viseme != SIL:
            a, b = s.start - SILENCE_MARGIN_S, s.end + SILENCE_MARGIN_S
            lo, hi = max(0, int(np.floor(a * fps))), int(np.ceil(b * fps))
            # frame i = [i/fps, (i+1)/fps) overlaps (a, b) when i/fps < b and (i+1)/fps > a
            near_speech[lo:hi] = True
    quiet = ~near_speech & keep
    other_speech = talking & (labels != PP) & (prev != PP) & (nxt != PP)
    confusion = np.zeros((len(VISEMES), len(VISEMES)), dtype=np.int64)
    np.add.at(confusion, (labels[keep], pred[keep]), 1)
    by_level = np.zeros((len(SILENCE_LEVEL_BINS), 2), np.int64)
    if audio is not None:
        for i in np.flatnonzero(quiet):
            seg = audio[int(i * LIPSYNC_SAMPLE_RATE / fps) : int((i + 1) * LIPSYNC_SAMPLE_RATE / fps)]
            level = 10 * np.log10(np.mean(seg.astype(np.float64) ** 2) + 1e-12) if len(seg) else -120.0
            k = next(b for b, (lo, hi) in enumerate(SILENCE_LEVEL_BINS) if lo <= level < hi)
            by_level[k] += (int(closed[i]), 1)
    return Counts(
        exact=int((pred == labels)[keep].sum()),
        near=int(((pred == labels) | (pred == prev) | (pred == nxt))[keep].sum()),
        total=int(keep.sum()),
        speech_hit=int((pred[talking] == labels[talking]).sum()),
        speech_n=int(talking.sum()),
        jaw_pred=out.params[keep, JAW_OPEN].astype(np.float32),
        jaw_true=jaw[keep],
        bil_hit=bil_hit,
        bil_n=bil_n,
        sil_hit=int(closed[quiet].sum()),
        sil_n=int(quiet.sum()),
        shut_hit=int(closed[other_speech].sum()),
        shut_n=int(other_speech.sum()),
        confusion=confusion,
        sil_by_level=by_level,
    )


def metrics(counts: Iterable[Counts]) -> dict[str, float]:
    cs = list(counts)
    s: dict[str, int] = {k: sum(getattr(c, k) for c in cs) for k in COUNTED}
    jp = np.concatenate([c.jaw_pred for c in cs]) if cs else np.zeros(0, np.float32)
    jt = np.concatenate([c.jaw_true for c in cs]) if cs else np.zeros(0, np.float32)
    corr = float(np.corrcoef(jp, jt)[0, 1]) if len(jp) > 1 and jp.std() > 0 and jt.std() > 0 else 0.0
    return {
        "acc": s["exact"] / max(s["total"], 1),
        "acc1": s["near"] / max(s["total"], 1),
        "acc_speech": s["speech_hit"] / max(s["speech_n"], 1),
        "corr": corr,
        "bilabial": s["bil_hit"] / max(s["bil_n"], 1),
        "silence": s["sil_hit"] / max(s["sil_n"], 1),
        "shut_speech": s["shut_hit"] / max(s["shut_n"], 1),
        "frames": float(s["total"]),
    }


def evaluate(analyze: Analyzer, split: Split, fps: float) -> dict[str, float]:
    """All metrics of one method over a split's audio and spans (``bench/lipsync_resampler.py`` calls this too)."""
    return metrics(
        score(analyze(audio, fps), _spans(arr), len(audio), fps, unlabelled=_unlabelled(arr))
        for audio, arr in zip(split.audio, split.spans, strict=True)
    )


# --- evaluation sets -------------------------------------------------------------------------------------------------


@dataclass
class EvalSet:
    """Utterances at 16 kHz with their spans and tags (speaker, gender, age group, language, voice...)."""

    name: str
    audio: list[npt.NDArray[np.float32]] = field(default_factory=list)
    spans: list[npt.NDArray[np.float64]] = field(default_factory=list)
    tags: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.audio)

    def add(self, audio: npt.NDArray[np.float32], spans: npt.NDArray[np.float64], **tags: str) -> None:
        self.audio.append(np.asarray(audio, dtype=np.float32))
        self.spans.append(spans)
        self.tags.append(tags)

    def with_audio(self, name: str, fn: Callable[[int, npt.NDArray[np.float32]], npt.NDArray[np.float32]]) -> EvalSet:
        """The same utterances and labels, each audio passed through ``fn(index, audio)``."""
        return EvalSet(name, [fn(i, a) for i, a in enumerate(self.audio)], self.spans, self.tags)

    def seconds(self) -> float:
        return sum(len(a) for a in self.audio) / LIPSYNC_SAMPLE_RATE


def from_split(name: str, split: Split) -> EvalSet:
    out = EvalSet(name)
    for voice, a, s in zip(split.voices, split.audio, split.spans, strict=True):
        out.add(a, s, voice=voice, lang="en")
    return out


def age_group(age: str) -> str:
    """``child`` (<= 15 or Common Voice 'teens'), ``adult``, or ``unknown`` as the manifest gives it."""
    age = age.strip().lower()
    if age.isdigit():
        return "child" if int(age) <= 15 else "adult"
    if age in ("teens",):
        return "child"
    return "adult" if age else "unknown"


def human_set(split: str, per_speaker: int = 0) -> EvalSet | None:
    """The corpus's ``dev`` or ``test`` speakers, raw 16 kHz audio (its own leading/trailing pauses, no padding)."""
    try:
        from avaluma.renderer.lipsync.training import human
    except ImportError:
        return None
    root = human.corpus_root()
    if root is None:
        return None
    out = EvalSet(f"human {split}")
    seen: dict[str, int] = {}
    for u in human.utterances(root, split=split):
        if per_speaker and seen.get(u.speaker, 0) >= per_speaker:
            continue
        seen[u.speaker] = seen.get(u.speaker, 0) + 1
        gender = {"f": "female", "m": "male"}.get(u.gender.strip().lower(), "unknown")
        unlabelled = np.array([(a, b, UNLABELLED) for a, b in u.unknown()], dtype=np.float64).reshape(-1, 3)
        out.add(
            u.audio(),
            np.vstack([_span_array(u.spans()), unlabelled]),
            speaker=u.speaker,
            gender=gender,
            age=age_group(u.age),
            source=u.source,
            lang="en",
        )
    return out


def _speech_rms(audio: npt.NDArray[np.float32], spans: npt.NDArray[np.float64]) -> float:
    mask = np.zeros(len(audio), dtype=bool)
    for s, e, v in spans:
        if int(v) != SIL:
            mask[int(s * LIPSYNC_SAMPLE_RATE) : int(e * LIPSYNC_SAMPLE_RATE)] = True
    x = audio[mask] if mask.any() else audio
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) + 1e-9


def add_pink(data: EvalSet, snr_db: float, seed: int = 0) -> EvalSet:
    rng = np.random.default_rng(seed)

    def fn(i: int, a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        noise = pink(len(a), rng) * _speech_rms(a, data.spans[i]) * 10 ** (-snr_db / 20)
        return np.clip(a + noise, -1, 1).astype(np.float32)

    return data.with_audio(f"{data.name}, pink noise {snr_db:g} dB SNR", fn)


def add_babble(data: EvalSet, bank: list[npt.NDArray[np.float32]], snr_db: float, talkers: int = 6) -> EvalSet:
    """Several other people talking at once (``bank``: utterances of speakers outside ``data``) at ``snr_db``."""
    rng = np.random.default_rng(1)

    def fn(i: int, a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        babble = np.zeros(len(a), dtype=np.float64)
        for k in rng.choice(len(bank), size=min(talkers, len(bank)), replace=False):
            b = bank[int(k)]
            b = b / (np.sqrt(np.mean(b.astype(np.float64) ** 2)) + 1e-9)
            reps = int(np.ceil((len(a) + len(b)) / len(b)))
            start = int(rng.integers(0, len(b)))
            babble += np.tile(b, reps)[start : start + len(a)]
        babble /= np.sqrt(np.mean(babble**2)) + 1e-9
        noisy = a + babble * _speech_rms(a, data.spans[i]) * 10 ** (-snr_db / 20)
        return np.clip(noisy, -1, 1).astype(np.float32)

    return data.with_audio(f"{data.name}, babble {snr_db:g} dB SNR", fn)


def native_set(root: Path) -> EvalSet | None:
    """The held-out half of Asterisk's English prompts (``training/prompts.py``), each with 0.3 s of silence before
    and after; ``None`` with a message when pocketsphinx (the aligner) is missing."""
    try:
        from avaluma.renderer.lipsync.training import prompts
    except ImportError as e:
        print(f"\n(native speech skipped: {e}; pip install pocketsphinx)")
        return None
    if not prompts.found(root):
        print(f"\n(no native speech in {root}: scripts/fetch-native-speech fetches it)")
        return None
    out = EvalSet("native English studio speech (held-out half of the Asterisk prompts; v4 trained on the other half)")
    for name, audio, spans in prompts.load(root, progress=print, only="heldout"):
        padded, moved = pad_silence(audio, spans, 0.3, 0.3)
        out.add(padded, _span_array(moved), prompt=name)
    return out


def label_free(methods: list[Method], root: Path, per_voice: int = 150) -> None:
    """Real speech in every fetched Asterisk voice, no labels: the share of pause frames (more than 120 ms from any
    frame within 25 dB of the prompt's loudest) with the lips shut, and of those loud frames with the mouth visibly
    open (``mouth_shape().opening > 0.1``). English (heard in training, v4) is the reference row."""
    from avaluma.renderer.lipsync.training import prompts
    from avaluma.renderer.mouth import mouth_shape

    found = prompts.voices(root)
    print(f"\n== real speech per language, no labels: pauses shut / loud frames open ({per_voice} prompts each) ==")
    if len(found) < 2:
        print("(only English fetched: scripts/fetch-native-speech --languages adds es-MX, fr-CA, it-IT and ru-RU)")
        return
    print(f"{'voice':20} {'min':>5} {'pauses':>6} {'loud':>6} " + " ".join(f"{m.name:>15}" for m in methods))
    hop = LIPSYNC_SAMPLE_RATE // 25  # samples per 25 fps video frame
    for voice, files in found.items():
        clips = [background.decode(f, container_format="g722") for f in files[:per_voice]]
        cells = []
        for m in methods:
            shut = pauses = opened = loud_n = 0
            for audio in clips:
                out = m.analyze(audio, 25.0)
                n = min(len(out), len(audio) // hop)  # whole video frames
                if n == 0:
                    continue
                frames = audio[: n * hop].reshape(n, hop).astype(np.float64)
                level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
                loud = level > level.max() - 25.0
                pause = np.convolve(loud.astype(float), np.ones(7))[3 : 3 + n] == 0  # 3 frames either side
                params = out.params[: len(level)]
                shut += int((params[pause, LIPS_CLOSED] >= CLOSED).sum())
                pauses += int(pause.sum())
                opened += sum(mouth_shape(p).opening > 0.1 for p in params[loud])
                loud_n += int(loud.sum())
            cells.append(f"{shut / max(pauses, 1):.3f} / {opened / max(loud_n, 1):.3f}")
        minutes = sum(len(a) for a in clips) / LIPSYNC_SAMPLE_RATE / 60
        print(f"{voice:20} {minutes:5.1f} {pauses:6d} {loud_n:6d} " + " ".join(f"{c:>15}" for c in cells))


def add_music(data: EvalSet, recordings: list[npt.NDArray[np.float32]], snr_db: float) -> EvalSet:
    """Recorded music or effects (``--background``) under each utterance at ``snr_db`` against its speech."""
    rng = np.random.default_rng(2)

    def fn(i: int, a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        m = np.resize(background.excerpt(recordings, rng, len(a) / LIPSYNC_SAMPLE_RATE), len(a)).astype(np.float64)
        m /= np.sqrt(np.mean(m**2)) + 1e-9
        return np.clip(a + m * _speech_rms(a, data.spans[i]) * 10 ** (-snr_db / 20), -1, 1).astype(np.float32)

    return data.with_audio(f"{data.name}, music {snr_db:g} dB SNR", fn)


def background_alone(
    recordings: list[npt.NDArray[np.float32]], per_recording: int = 3, seconds: float = 6.0
) -> EvalSet:
    """Excerpts of each recording with nobody speaking, at -40 to -6 dBFS RMS: every frame is silence."""
    rng = np.random.default_rng(3)
    out = EvalSet("recorded music and effects, nobody speaking")
    for k, x in enumerate(recordings):
        for _ in range(per_recording):
            start = int(rng.integers(0, max(1, len(x) - int(seconds * LIPSYNC_SAMPLE_RATE))))
            clip = x[start : start + int(seconds * LIPSYNC_SAMPLE_RATE)].astype(np.float64)
            clip *= 10 ** (rng.uniform(-40.0, -6.0) / 20) / (np.sqrt(np.mean(clip**2)) + 1e-9)
            spans = np.array([[0.0, len(clip) / LIPSYNC_SAMPLE_RATE, SIL]])
            out.add(np.clip(clip, -1, 1).astype(np.float32), spans, recording=str(k))
    return out


def at_level(data: EvalSet, dbfs: float) -> EvalSet:
    def fn(i: int, a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return (a * (10 ** (dbfs / 20) / _speech_rms(a, data.spans[i]))).astype(np.float32)

    return data.with_audio(f"{data.name}, speech at {dbfs:g} dBFS RMS", fn)


def telephone(data: EvalSet, rate: int = 8000) -> EvalSet:
    def fn(_: int, a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        low = soxr.resample(a, LIPSYNC_SAMPLE_RATE, rate)
        back = np.asarray(soxr.resample(low, rate, LIPSYNC_SAMPLE_RATE), dtype=np.float32)
        return np.pad(back, (0, max(0, len(a) - len(back))))[: len(a)]

    return data.with_audio(f"{data.name}, {rate / 1000:g} kHz telephone band", fn)


#: Fixed colourations of cheap and odd microphones, as (kind, Hz, dB, Q) second-order sections (:func:`biquad`): a
#: laptop (no bass, a presence peak), a bright headset, a dull lapel microphone under clothing, a boxy loudspeaker, a
#: boomy close microphone.
MICROPHONES: tuple[tuple[tuple[str, float, float, float], ...], ...] = (
    (("low", 300.0, -15.0, 0.7071), ("peak", 3000.0, 8.0, 1.0)),
    (("high", 3000.0, 9.0, 0.7071), ("peak", 6000.0, 4.0, 1.5)),
    (("high", 2000.0, -12.0, 0.7071),),
    (("peak", 1000.0, 10.0, 2.0), ("low", 200.0, -9.0, 0.7071)),
    (("low", 300.0, 9.0, 0.7071), ("high", 4000.0, -6.0, 0.7071)),
)


def biquad(kind: str, hz: float, gain_db: float, q: float) -> npt.NDArray[np.float64]:
    """One second-order section at 16 kHz (RBJ audio-EQ cookbook): a ``low`` / ``high`` shelf or a ``peak``."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * hz / LIPSYNC_SAMPLE_RATE
    cw, alpha = np.cos(w0), np.sin(w0) / (2 * q)
    if kind == "peak":
        num, den = [1 + alpha * a, -2 * cw, 1 - alpha * a], [1 + alpha / a, -2 * cw, 1 - alpha / a]
    else:
        s = 1.0 if kind == "low" else -1.0  # the high shelf is the low shelf with the cosine terms' signs flipped
        k = 2 * np.sqrt(a) * alpha
        num = [a * ((a + 1) - s * (a - 1) * cw + k), s * 2 * a * ((a - 1) - s * (a + 1) * cw)]
        num.append(a * ((a + 1) - s * (a - 1) * cw - k))
        den = [(a + 1) + s * (a - 1) * cw + k, -s * 2 * ((a - 1) + s * (a + 1) * cw), (a + 1) + s * (a - 1) * cw - k]
    return np.array([*num, *den]) / den[0]


def microphones(data: EvalSet) -> EvalSet:
    """Each utterance through one of :data:`MICROPHONES` in turn, at its own RMS."""
    from scipy import signal

    def fn(i: int, a: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        y = signal.sosfilt(np.stack([biquad(*section) for section in MICROPHONES[i % len(MICROPHONES)]]), a)
        gain = np.sqrt(np.mean(a.astype(np.float64) ** 2) / max(float(np.mean(y**2)), 1e-20))
        return np.clip(y * gain, -1, 1).astype(np.float32)

    return data.with_audio(f"{data.name}, {len(MICROPHONES)} microphone colourations", fn)


def subset(split: Split, idx: list[int]) -> Split:
    """The held-out utterances ``idx`` (audio and spans only: what :func:`evaluate` reads)."""
    return Split(
        split.features,
        split.labels,
        split.params,
        np.arange(len(idx) + 1),
        [split.voices[i] for i in idx],
        [split.audio[i] for i in idx],
        [split.spans[i] for i in idx],
    )


def noisy(split: Split, snr_db: float, seed: int = 0) -> Split:
    """The held-out audio 12 dB quieter with pink noise under it (in the pauses too): silence is no longer digital."""
    rng = np.random.default_rng(seed)
    audio = []
    for a in split.audio:
        speech_rms = float(np.sqrt(np.mean(a[np.abs(a) > 1e-4] ** 2))) if (np.abs(a) > 1e-4).any() else 0.01
        noise = pink(len(a), rng) * speech_rms * 10 ** (-snr_db / 20)
        audio.append(((a + noise) * 10 ** (-12 / 20)).astype(np.float32))
    return Split(split.features, split.labels, split.params, split.offsets, split.voices, audio, split.spans)


# --- methods ---------------------------------------------------------------------------------------------------------


def extract_v1(dest: Path, commit: str = V1_COMMIT) -> str | None:
    """Write the model of ``commit`` (v1 unless told) to ``dest``; the reason when it cannot."""
    git = shutil.which("git")
    if git is None:
        return "git is not installed"
    result = subprocess.run(
        [git, "show", f"{commit}:{MODEL_IN_REPO}"], cwd=REPO, capture_output=True, check=False, timeout=60
    )
    if result.returncode != 0 or not result.stdout:
        return f"git show {commit}:{MODEL_IN_REPO} failed ({result.stderr.decode(errors='replace').strip()[:120]})"
    dest.write_bytes(result.stdout)
    return None


class AsShipped(OnnxBackend):
    """The ONNX backend as model v1 shipped: the heads' pooled outputs as they are (:attr:`Decoding.RAW`)."""

    def open_stream(self, *, fps: float) -> OnnxStream:
        return OnnxStream(self.model, fps, decoding=Decoding.RAW)


@dataclass
class Method:
    name: str
    analyze: Analyzer
    backend: Any = None  # a LipSyncBackend for the render path and the streaming cost
    has_visemes: bool = True


def build_methods(
    args: argparse.Namespace, tmp: Path, train: Split | None, notes: list[str], *, with_templates: bool = True
) -> list[Method]:
    from avaluma.renderer.lipsync.energy import EnergyBackend

    methods: list[Method] = []
    trained = OnnxBackend(OnnxOptions(model_path=str(args.model) if args.model else None, threads=1))
    methods.append(Method("trained", lambda a, fps: trained.analyze(a, fps=fps), trained))
    notes.append(f"trained: {trained.model.path} (version {trained.model.version})")
    v3_path = tmp / "lipsync-v3.onnx"
    why = extract_v1(v3_path, V3_COMMIT)
    if why is None:
        v3 = OnnxBackend(OnnxOptions(model_path=str(v3_path), threads=1))
        methods.append(Method("v3", lambda a, fps: v3.analyze(a, fps=fps), v3))
        notes.append(f"v3: {V3_COMMIT}:{MODEL_IN_REPO} (version {v3.model.version}) with the frame decoding")
    else:
        notes.append(f"v3: skipped, {why}")
    v1_path = tmp / "lipsync-v1.onnx"
    why = extract_v1(v1_path)
    if why is None:
        try:
            v1 = AsShipped(OnnxOptions(model_path=str(v1_path), threads=1))
            v1.analyze(np.zeros(LIPSYNC_SAMPLE_RATE // 2, np.float32), fps=25)
            methods.append(Method("v1", lambda a, fps: v1.analyze(a, fps=fps), v1))
            notes.append(f"v1: {V1_COMMIT}:{MODEL_IN_REPO} (version {v1.model.version}) as it shipped (Decoding.RAW)")
        except Exception as e:  # the backend may have moved on from what v1's graph gives
            notes.append(f"v1: skipped, the current backend cannot run it ({type(e).__name__}: {e})")
    else:
        notes.append(f"v1: skipped, {why}")
    energy = EnergyBackend()
    methods.append(Method("energy", lambda a, fps: energy.analyze(a, fps=fps), energy, has_visemes=False))
    if with_templates and train is not None:
        templates = MfccTemplates.fit(train.features, train.labels)
        methods.append(Method("mfcc", lambda a, fps: templates.analyze(a, fps=fps)))
    return methods


# --- running and printing --------------------------------------------------------------------------------------------


Results = dict[str, list[Counts]]  # method name -> per-utterance counts


def run_set(methods: list[Method], data: EvalSet, fps: float) -> Results:
    return {
        m.name: [
            score(m.analyze(a, fps), _spans(s), len(a), fps, a, _unlabelled(s))
            for a, s in zip(data.audio, data.spans, strict=True)
        ]
        for m in methods
    }


def print_table(title: str, results: Results, data: EvalSet | None = None) -> None:
    extra = f" ({len(data)} utterances, {data.seconds() / 60:.1f} min)" if data is not None else ""
    print(f"\n== {title}{extra} ==")
    header = f"{'method':10} " + " ".join(f"{label:>{w}}" for _, label, w in METRICS)
    print(header)
    print("-" * len(header))
    for name, counts in results.items():
        m = metrics(counts)
        print(f"{name:10} " + " ".join(f"{m[k]:{w}.3f}" for k, _, w in METRICS))


def print_groups(title: str, results: Results, data: EvalSet, key: str, keys: tuple[str, ...] = ("acc",)) -> None:
    """One row per value of tag ``key``; per method the metrics ``keys``."""
    values = sorted({t.get(key, "?") for t in data.tags})
    print(f"\n{title}  (per method: {', '.join(keys)})")
    head = f"  {'group':24} {'utts':>5} " + "  ".join(f"{name:>{8 * len(keys) - 1}}" for name in results)
    print(head)
    for v in values:
        idx = [i for i, t in enumerate(data.tags) if t.get(key, "?") == v]
        cells = []
        for counts in results.values():
            m = metrics(counts[i] for i in idx)
            cells.append(" ".join(f"{m[k]:7.3f}" for k in keys))
        print(f"  {v:24} {len(idx):5d} " + "  ".join(cells))


def print_speaker_range(results: Results, data: EvalSet) -> None:
    speakers = sorted({t["speaker"] for t in data.tags})
    print(f"\nper speaker viseme accuracy over {len(speakers)} speakers (min / median / max):")
    for name, counts in results.items():
        accs = [metrics(counts[i] for i, t in enumerate(data.tags) if t["speaker"] == s)["acc"] for s in speakers]
        print(f"  {name:10} {min(accs):.3f} / {float(np.median(accs)):.3f} / {max(accs):.3f}")


def print_silence_by_level(title: str, results: Results) -> None:
    names = ["< -60 dBFS", "-60..-45 dBFS", ">= -45 dBFS"]
    print(f"\nsilence closure by the frame's audio level, {title} (closed share, frames):")
    for name, counts in results.items():
        total = sum((c.sil_by_level for c in counts), np.zeros((len(SILENCE_LEVEL_BINS), 2), np.int64))
        cells = [f"{lab} {h / max(n, 1):.2f} ({n})" for lab, (h, n) in zip(names, total, strict=True)]
        print(f"  {name:10} " + "   ".join(cells))


def print_confusions(title: str, results: Results, methods: list[Method], top: int = 8, min_frames: int = 100) -> None:
    print(f"\nmost confused viseme pairs, {title} (share of the true class's frames; classes with >= {min_frames}):")
    for m in methods:
        if not m.has_visemes or m.name not in results:
            continue
        conf = sum((c.confusion for c in results[m.name]), np.zeros((len(VISEMES), len(VISEMES)), np.int64))
        support = conf.sum(axis=1)
        pairs = [
            (conf[t, p] / support[t], int(conf[t, p]), t, p)
            for t in range(len(VISEMES))
            for p in range(len(VISEMES))
            if t != p and support[t] >= min_frames and conf[t, p] > 0
        ]
        pairs.sort(reverse=True)
        text = ", ".join(f"{VISEMES[t]}->{VISEMES[p]} {share * 100:.0f} %" for share, _, t, p in pairs[:top])
        print(f"  {m.name:10} {text}")
        recall = [
            f"{VISEMES[t]} {conf[t, t] / support[t]:.2f}" for t in range(len(VISEMES)) if support[t] >= min_frames
        ]
        print(f"  {'':10} recall: {', '.join(recall)}")


def print_summary(rows: list[tuple[str, Results]], methods: list[Method]) -> None:
    names = [m.name for m in methods]
    print("\n== summary: viseme accuracy / bilabial closure / silence closure, side by side ==")
    head = f"{'set':52} " + "  ".join(f"{n:>20}" for n in names)
    print(head)
    print("-" * len(head))
    for title, res in rows:
        cells = []
        for n in names:
            if n in res:
                m = metrics(res[n])
                cells.append(f"{m['acc']:6.3f} {m['bilabial']:6.3f} {m['silence']:6.3f}")
            else:
                cells.append(f"{'-':>20}")
        print(f"{title[:52]:52} " + "  ".join(f"{c:>20}" for c in cells))


def stream_cost_ms_per_s(make_stream: Callable[[], object], audio: npt.NDArray[np.float32], chunk: int) -> float:
    """CPU time (this thread) to stream ``audio`` in ``chunk``-sample pushes, per second of audio."""
    best = float("inf")
    for _ in range(3):
        stream = make_stream()
        t0 = time.thread_time()
        for i in range(0, len(audio), chunk):
            stream.push(audio[i : i + chunk])  # type: ignore[attr-defined]
        stream.flush()  # type: ignore[attr-defined]
        best = min(best, time.thread_time() - t0)
    return 1000 * best / (len(audio) / LIPSYNC_SAMPLE_RATE)


# --- the viewer-level measure: real faces vs the rendered avatar -----------------------------------------------------

#: MediaPipe face-mesh indices: inner-lip pairs (upper, lower) across the mouth, and the outer eye corners.
INNER_LIP_PAIRS = ((82, 87), (13, 14), (312, 317))
EYE_CORNERS = (33, 263)
MAX_LAG = 5


def talking_faces_dir() -> Path | None:
    for p in (REPO.parent / "shared" / "data" / "talking-faces", REPO / "shared" / "data" / "talking-faces"):
        if p.is_dir() and any(p.glob("*.mp4")):
            return p
    return None


def decode_clip(
    path: Path, max_s: float = 0.0
) -> tuple[list[npt.NDArray[np.uint8]], npt.NDArray[np.float64], float, npt.NDArray[np.float32], int]:
    """Video frames (RGB), their times in seconds from the first frame, fps, and mono float32 audio from the same
    start, at its own rate."""
    import av

    frames: list[npt.NDArray[np.uint8]] = []
    times: list[float] = []
    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        fps = float(vstream.average_rate or 25)
        for frame in container.decode(vstream):
            t = float(frame.time or 0.0)
            if max_s and times and t - times[0] > max_s:
                break
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(t)
    with av.open(str(path)) as container:
        astream = container.streams.audio[0]
        rate = int(astream.rate or 44100)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks: list[npt.NDArray[np.float32]] = []
        audio_start: float | None = None
        for frame in container.decode(astream):
            if audio_start is None:
                audio_start = float(frame.time or 0.0)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.float32))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1).astype(np.float32))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    # Align the audio to the first video frame.
    offset = round(((audio_start or 0.0) - times[0]) * rate)
    audio = np.pad(audio, (offset, 0)) if offset > 0 else audio[-offset:]
    if max_s:
        audio = audio[: int((times[-1] - times[0] + 1 / fps) * rate)]
    return frames, np.array(times) - times[0], fps, audio, rate


def lip_gaps(mesh: Any, frames: Iterable[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float64]:
    """Inner-lip gap / eye-corner distance per frame (NaN where no face was found)."""
    from avaluma.renderer.facemesh import MIN_PRESENCE

    gaps: list[float] = []
    points = None
    for rgb in frames:
        presence = 0.0
        if points is not None:
            points, presence = mesh.track(rgb, points)
        if points is None or presence < MIN_PRESENCE:
            faces = mesh.detect(rgb) or mesh.detect_small(rgb)
            points, presence = (None, 0.0) if not faces else mesh.landmarks_from_detection(rgb, faces[0])
        if points is None or presence < MIN_PRESENCE:
            gaps.append(float("nan"))
            points = None
            continue
        gap = np.mean([np.linalg.norm(points[u, :2] - points[lo, :2]) for u, lo in INNER_LIP_PAIRS])
        eyes = float(np.linalg.norm(points[EYE_CORNERS[0], :2] - points[EYE_CORNERS[1], :2]))
        gaps.append(float(gap) / max(eyes, 1e-6))
    return np.array(gaps)


def render_gaps(
    mesh: Any, avatar: Any, backend: Any, audio: npt.NDArray[np.float32], rate: int, fps: int
) -> npt.NDArray[np.float64]:
    """The avatar speaking ``audio`` through the embedded render path (what ``avaluma render --audio`` runs, without
    the rest pads), landmarked frame by frame."""
    from avaluma.core.media import AudioChunk
    from avaluma.renderer.cli import chunked, render_frames
    from avaluma.renderer.engine import RenderSession

    session = RenderSession(avatar, backend, fps=fps, audio_sample_rate=24000, seed=0)
    frames = (f.rgb for f in render_frames(session, chunked(AudioChunk(audio, rate)), pad_s=0.0))
    return lip_gaps(mesh, frames)


def pearson(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def lagged_r(real: npt.NDArray[np.float64], rendered: npt.NDArray[np.float64]) -> tuple[float, float, int]:
    """r at lag 0, best r within +-MAX_LAG frames and that lag (positive: the avatar is late)."""
    best, best_lag = -2.0, 0
    for lag in range(-MAX_LAG, MAX_LAG + 1):
        if lag >= 0:
            r = pearson(real[: len(real) - lag], rendered[lag:])
        else:
            r = pearson(real[-lag:], rendered[: len(rendered) + lag])
        if np.isfinite(r) and r > best:
            best, best_lag = r, lag
    return pearson(real, rendered), best, best_lag


CLOSED_SHARE = 0.2


def closure_agreement(real: npt.NDArray[np.float64], rendered: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Share of frames where both mouths are closed or both open (each series thresholded in its own range), and the
    share expected by chance from how often each is closed."""
    ok = np.isfinite(real) & np.isfinite(rendered)
    if ok.sum() < 10:
        return float("nan"), float("nan")

    def closed(x: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        lo, hi = np.percentile(x, [5, 95])
        return np.asarray(x <= lo + CLOSED_SHARE * (hi - lo))

    a, b = closed(real[ok]), closed(rendered[ok])
    pa, pb = float(a.mean()), float(b.mean())
    return float((a == b).mean()), pa * pb + (1 - pa) * (1 - pb)


def faces_eval(methods: list[Method], quick: bool) -> None:
    """Real person's inner-lip gap vs the rendered avatar's, per clip and method."""
    folder = talking_faces_dir()
    print("\n== viewer-level: real talking faces vs the avatar rendered from the same audio ==")
    if folder is None:
        print("talking-faces clips not found (../shared/data/talking-faces): skipped")
        return
    from avaluma.core.config import Config
    from avaluma.renderer.cli import load_avatar_by_id, resolve_avatars_dir
    from avaluma.renderer.facemesh import FaceMesh

    config = Config()
    demo = load_avatar_by_id(config.default_avatar, resolve_avatars_dir(config.avatars_dir))
    mesh = FaceMesh(progress=lambda m: print(m, file=sys.stderr))
    chosen = [m for m in methods if m.backend is not None]
    print(
        "inner-lip gap = mean of 3 inner-lip landmark pairs / outer eye-corner distance; r at "
        f"lag 0 and best r within +-{MAX_LAG} frames (lag > 0: the avatar is late); closed = gap in the lowest "
        f"{CLOSED_SHARE:.0%} of its own range (p5..p95), agreement of real and rendered closed/open against chance"
    )
    clips = sorted(folder.glob("*.mp4"))
    faces_table(f"avatar {demo.id} (the default)", clips, lambda *_: demo, chosen, mesh, quick)
    faces_table("each clip's person: a photo avatar built from the clip's own frame", clips, own_avatar, chosen,
                mesh, quick)  # fmt: skip


def own_avatar(mesh: Any, frames: list[npt.NDArray[np.uint8]], real: npt.NDArray[np.float64], fps: float) -> Any:
    """A photo avatar of the clip's person, from the frame with the most closed mouth in its first 3 s."""
    from avaluma.renderer.builder import build_photo_avatar

    first = real[: max(1, round(3 * fps))]
    rest = int(np.nanargmin(first)) if np.isfinite(first).any() else 0
    return build_photo_avatar(frames[rest], avatar_id="person", size=(512, 640), mesh=mesh)


def faces_table(
    title: str,
    clips: list[Path],
    avatar_for: Callable[[Any, list[npt.NDArray[np.uint8]], npt.NDArray[np.float64], float], Any],
    chosen: list[Method],
    mesh: Any,
    quick: bool,
) -> None:
    """Per clip and method: the real inner-lip gap against the gap of ``avatar_for(mesh, frames, real gaps, fps)``
    rendered from the clip's audio."""
    print(f"\n{title}")
    print(f"{'clip':16} {'s':>5} {'fps':>6} {'face':>5}  {'method':10} {'r lag 0':>8} {'best r':>7} {'lag':>4} "
          f"{'closed agree':>13} {'chance':>7}")  # fmt: skip
    totals: dict[str, list[tuple[float, float, float, float]]] = {m.name: [] for m in chosen}
    for clip in clips:
        frames, times, fps, audio, rate = decode_clip(clip, max_s=8.0 if quick else 0.0)
        real = lip_gaps(mesh, frames)
        avatar = avatar_for(mesh, frames, real, fps)
        del frames
        render_fps = max(1, min(60, round(fps)))
        found = float(np.isfinite(real).mean())
        for k, m in enumerate(chosen):
            rendered = render_gaps(mesh, avatar, m.backend, audio, rate, render_fps)
            # Rendered frame i shows [i, i+1)/render_fps; sample it at each real frame's time.
            t_r = (np.arange(len(rendered)) + 0.5) / render_fps
            ok = np.isfinite(rendered)
            on_real = (
                np.interp(times + 0.5 / fps, t_r[ok], rendered[ok]) if ok.sum() > 1 else np.full(len(times), np.nan)
            )
            r0, rb, lag = lagged_r(real, on_real)
            agree, chance = closure_agreement(real, on_real)
            totals[m.name].append((r0, rb, agree, chance))
            head = f"{clip.stem:16} {times[-1]:5.1f} {fps:6.2f} {found:5.0%}" if k == 0 else " " * 35
            print(f"{head}  {m.name:10} {r0:8.3f} {rb:7.3f} {lag:+4d} {agree:13.2f} {chance:7.2f}")
    for m in chosen:
        r0s, rbs, agrees, chances = (np.nanmean([t[j] for t in totals[m.name]]) for j in range(4))
        print(
            f"{'mean':16} {'':5} {'':6} {'':5}  {m.name:10} {r0s:8.3f} {rbs:7.3f} {'':4} {agrees:13.2f} {chances:7.2f}"
        )


# --- main ------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=float, nargs="+", default=[25.0, 30.0], help="first: all sets; others: synthetic")
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled one)")
    parser.add_argument("--cache", type=Path, default=Path("build/lipsync_data"))
    parser.add_argument("--snr-db", type=float, default=20.0, help="SNR of the synthetic noisy condition")
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N synthetic held-out utterances")
    parser.add_argument("--quick", action="store_true", help="a fast subset of every set (minutes, not tens)")
    parser.add_argument(
        "--background",
        type=Path,
        default=None,
        help="folder of recorded music and effects NOT trained on: adds music under the human test speech and the "
        "recordings alone (nobody speaking)",
    )
    parser.add_argument(
        "--native",
        type=Path,
        default=REPO / "build" / "native-speech" / "files",
        help="Asterisk's English prompts, from scripts/fetch-native-speech (default: where it puts them)",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--faces", action="store_true", help="run only the real-face measure")
    only.add_argument("--no-faces", action="store_true", help="skip the real-face measure")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"machine: {describe(onnxruntime=onnxruntime.__version__)}")

    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lipsync-eval-") as tmp:
        if args.faces:
            methods = build_methods(args, Path(tmp), None, notes, with_templates=False)
            print("models: " + "; ".join(notes))
            faces_eval(methods, args.quick)
            return 0
        train, heldout = load_or_build(DataConfig(), cache_dir=args.cache, progress=lambda m: print(m, file=sys.stderr))
        methods = build_methods(args, Path(tmp), train, notes)
        del train
        print("models: " + "; ".join(notes))
        fps = args.fps[0]
        summary: list[tuple[str, Results]] = []

        # Human speech.
        test = human_set("test", per_speaker=2 if args.quick else 0)
        dev = human_set("dev", per_speaker=1 if args.quick else 0)
        if test is None or dev is None:
            print(
                "\nhuman-speech corpus not found (set AVALUMA_HUMAN_SPEECH or put it at ../shared/data/human-speech): "
                "human sections skipped"
            )
        else:
            from avaluma.renderer.lipsync.training import human

            bank = [u.audio() for k, u in enumerate(human.utterances(split="train")) if k % 40 == 0]
            speakers = len({t["speaker"] for t in test.tags})
            res_test = run_set(methods, test, fps)
            print_table(f"human TEST split, {speakers} speakers never trained or tuned on, {fps:g} fps", res_test, test)
            summary.append(("human test (clean)", res_test))
            print_groups("human test per speaker group: gender", res_test, test, "gender", ("acc", "bilabial"))
            print_groups("human test per speaker group: age", res_test, test, "age", ("acc", "bilabial"))
            print_groups("human test per source", res_test, test, "source", ("acc", "bilabial"))
            print_speaker_range(res_test, test)
            print_confusions("human test", res_test, methods)
            print_silence_by_level("human test", res_test)
            recordings = background.load_recordings(args.background, progress=print) if args.background else []
            for cond in (
                add_pink(test, 20.0),
                add_babble(test, bank, 10.0),
                *([add_music(test, recordings, 10.0)] if recordings else []),
                at_level(test, -30.0),
                telephone(test, 8000),
                microphones(test),
            ):
                res = run_set(methods, cond, fps)
                print_table(cond.name, res)
                summary.append((cond.name.replace("human test, ", "human test: "), res))
            if recordings:
                alone = background_alone(recordings)
                res = run_set(methods, alone, fps)
                print_table(
                    f"{alone.name} (-40 to -6 dBFS RMS; silence = share of frames with closed lips)", res, alone
                )
                summary.append(("music and effects alone", res))
            else:
                print("\n(no --background folder: the music conditions are skipped)")
            res_dev = run_set(methods, dev, fps)
            dev_speakers = len({t["speaker"] for t in dev.tags})
            print_table(
                f"human DEV split ({dev_speakers} speakers): the TUNING set (models are picked on it)",
                res_dev,
                dev,
            )
            summary.append(("human dev (tuning set)", res_dev))

        # Native English studio speech (needs no corpus, only scripts/fetch-native-speech).
        native = native_set(args.native)
        if native is not None:
            res = run_set(methods, native, fps)
            print_table(native.name, res, native)
            summary.append(("native English studio speech", res))
        if args.native.is_dir():
            label_free(methods, args.native)

        # Synthetic held-out (English), as before.
        if args.limit or args.quick:
            heldout = subset(heldout, list(range(min(len(heldout), args.limit or 40))))
        synth = from_split("synthetic held-out", heldout)
        groups = sorted(set(heldout.voices))
        print(f"\nsynthetic held-out: {len(heldout)} utterances, voices: {', '.join(groups)} (sentences unseen)")
        for k, f in enumerate(args.fps if not args.quick else args.fps[:1]):
            res = run_set(methods, synth, f)
            print_table(f"synthetic held-out, {f:g} fps, clean", res, synth)
            if k == 0:
                res_synth = res
                summary.append(("synthetic held-out (clean)", res))
                print_groups(f"synthetic held-out per voice, {f:g} fps", res, synth, "voice")
        noisy_synth = from_split("", noisy(heldout, args.snr_db))
        res = run_set(methods, noisy_synth, fps)
        print_table(f"synthetic held-out, pink noise at {args.snr_db:g} dB SNR, -12 dB gain", res)
        summary.append((f"synthetic held-out: pink {args.snr_db:g} dB, -12 dB", res))

        # Languages: English from the synthetic held-out, the others from languages.py.
        from avaluma.renderer.lipsync.training import languages
        from avaluma.renderer.lipsync.training.synth import EspeakSynth

        multi = EvalSet("languages")
        for label, audio, spans in languages.multilingual_heldout(EspeakSynth()):
            multi.add(audio, _span_array(spans), voice=label, lang=languages.language_of(label))
        if args.quick:
            keep = list(range(0, len(multi), 4))
            multi = EvalSet(multi.name, [multi.audio[i] for i in keep], [multi.spans[i] for i in keep],
                            [multi.tags[i] for i in keep])  # fmt: skip
        res_multi = run_set(methods, multi, fps)
        res_lang: Results = {name: res_synth[name] + res_multi[name] for name in res_multi}
        both = EvalSet("all languages", synth.audio + multi.audio, synth.spans + multi.spans, synth.tags + multi.tags)
        print(
            f"\n== per language, {fps:g} fps: held-out sentences and voices (en: the synthetic held-out; others: "
            "espeak-ng) =="
        )
        print_groups("per language", res_lang, both, "lang", ("acc", "bilabial", "silence"))
        print_table(f"non-English held-out ({', '.join(languages.LANGUAGES)}), all metrics", res_multi, multi)
        for code in languages.LANGUAGES:
            idx = [i for i, t in enumerate(multi.tags) if t["lang"] == code]
            summary.append(
                (f"language {code} (espeak-ng held-out)", {n: [c[i] for i in idx] for n, c in res_multi.items()})
            )

        print_summary(summary, methods)

        audio = np.concatenate(heldout.audio[:20])
        chunk = LIPSYNC_SAMPLE_RATE // 25
        print("\ninference cost, one thread, streaming 40 ms chunks (ms CPU per second of audio / per 40 ms frame):")
        for m in methods:
            if m.backend is None:
                continue
            ms = stream_cost_ms_per_s(lambda m=m: m.backend.open_stream(fps=25), audio, chunk)
            print(f"  {m.name:10} {ms:8.2f} ms/s   {ms / 25:6.3f} ms/frame")
        lookahead = methods[0].backend.open_stream(fps=25).lookahead_s
        print(f"  trained model lookahead: {lookahead * 1000:.1f} ms")

        if not args.no_faces:
            faces_eval(methods, args.quick)
    print(f"\n(bench ran {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

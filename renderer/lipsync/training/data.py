"""Training and evaluation data: synthesize, augment, featurize, cache.

Voices: piper's ``joe`` (neural) with varied speed, noise and pitch, and many espeak-ng voice/variant pairs with varied
rate, pitch and pitch range. Evaluation uses voices **and** sentences that training never sees (see
:data:`HELDOUT_ESPEAK_VOICES`, :data:`HELDOUT_PIPER` and :func:`sentences.is_heldout_sentence`).

Augmentation (training only): resampling through 8/16/22.05/24/44.1/48 kHz, band limits, gain (with clipping),
white/pink noise, DC offset, and random leading/trailing silence. Results are cached under ``build/lipsync_data``
(git-ignored), keyed by the data config, so re-training does not re-synthesize.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE
from avaluma.renderer.lipsync.features import logmel
from avaluma.renderer.lipsync.training import sentences as sentence_set
from avaluma.renderer.lipsync.training.augment import pad_silence, pink, speed
from avaluma.renderer.lipsync.training.synth import EspeakSynth, PiperSynth, Utterance
from avaluma.renderer.lipsync.visemes import PhonemeSpan, coarticulated_params, frame_labels

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path("build/lipsync_data")
RESAMPLE_RATES = (8000, 16000, 22050, 24000, 44100, 48000)

TRAIN_ESPEAK_BASES = ("en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-gbclan")
TRAIN_ESPEAK_VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+f1", "+f2", "+f4", "+klatt", "+Alex", "+john")
#: Voice/variant pairs never used in training: accents and variants both unseen.
HELDOUT_ESPEAK_VOICES = ("en-gb-x-rp+f3", "en-us-nyc+m7", "en-gb-x-gbcwmd+Annie")
#: piper has one English voice on PyPI; its held-out condition is a pitch/speed shift outside the training range.
HELDOUT_PIPER = {"length_scale": 0.9, "pitch": 1.15}


def config_key(config: Any, prefix: str = "") -> str:
    """The cache folder name of a data configuration: ``prefix`` + a hash of its fields."""
    return prefix + hashlib.sha1(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DataConfig:
    n_generated: int = 400
    piper_per_sentence: float = 1.5
    espeak_per_sentence: int = 3
    seed: int = 0
    heldout_espeak: tuple[str, ...] = HELDOUT_ESPEAK_VOICES
    #: Limit sentences (smoke tests); 0 = all.
    max_sentences: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        return config_key(self)


@dataclass
class Split:
    """Concatenated 100 Hz frames of many utterances; ``offsets[i]:offsets[i+1]`` is utterance ``i``."""

    features: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    params: npt.NDArray[np.float32]
    offsets: npt.NDArray[np.int64]
    voices: list[str]
    audio: list[npt.NDArray[np.float32]] = field(default_factory=list)  # 16 kHz, eval split only
    spans: list[npt.NDArray[np.float64]] = field(default_factory=list)  # [n, 3]: start_s, end_s, viseme

    def __len__(self) -> int:
        return len(self.offsets) - 1


def augment(
    audio: npt.NDArray[np.float32], sample_rate: int, spans: list[PhonemeSpan], rng: np.random.Generator
) -> tuple[npt.NDArray[np.float32], list[PhonemeSpan]]:
    """One random degradation of a clean utterance, returned at 16 kHz with its spans shifted by the added silence."""
    from scipy import signal

    mid = int(rng.choice(RESAMPLE_RATES))
    x = soxr.resample(audio, sample_rate, mid) if mid != sample_rate else audio
    x = soxr.resample(x, mid, LIPSYNC_SAMPLE_RATE) if mid != LIPSYNC_SAMPLE_RATE else x
    x = np.asarray(x, dtype=np.float32)
    if rng.random() < 0.4:
        lo, hi = rng.uniform(60, 400), rng.uniform(2800, 7600)
        sos = signal.butter(4, [lo, hi], btype="bandpass", fs=LIPSYNC_SAMPLE_RATE, output="sos")
        x = signal.sosfilt(sos, x).astype(np.float32)
    lead, trail = rng.uniform(0.05, 0.8), rng.uniform(0.05, 0.8)
    x = np.concatenate(
        [
            np.zeros(int(lead * LIPSYNC_SAMPLE_RATE), np.float32),
            x,
            np.zeros(int(trail * LIPSYNC_SAMPLE_RATE), np.float32),
        ]
    )
    peak = float(np.max(np.abs(x))) + 1e-9
    gain_db = rng.uniform(-30.0, 4.0) if rng.random() > 0.1 else rng.uniform(4.0, 14.0)  # 10 %: clipped
    x = x / peak * 10 ** (gain_db / 20)
    if rng.random() < 0.6:
        rms = float(np.sqrt(np.mean(x**2))) + 1e-9
        noise = rng.standard_normal(len(x)).astype(np.float32) if rng.random() < 0.5 else pink(len(x), rng)
        x = x + noise * rms * 10 ** (-rng.uniform(8.0, 45.0) / 20)
    if rng.random() < 0.2:
        x = x + rng.uniform(-0.2, 0.2)
    x = np.clip(x, -1.0, 1.0).astype(np.float32)
    shifted = [PhonemeSpan(s.phoneme, s.start + lead, s.end + lead, s.viseme) for s in spans]
    return x, shifted


def clean_16k(
    audio: npt.NDArray[np.float32], sample_rate: int, spans: list[PhonemeSpan], pad_s: float = 0.3
) -> tuple[npt.NDArray[np.float32], list[PhonemeSpan]]:
    """Evaluation form: resampled to 16 kHz, peak-normalised to -3 dBFS, with ``pad_s`` of silence on both sides."""
    x = soxr.resample(audio, sample_rate, LIPSYNC_SAMPLE_RATE) if sample_rate != LIPSYNC_SAMPLE_RATE else audio
    x = np.asarray(x, dtype=np.float32)
    x = x / (float(np.max(np.abs(x))) + 1e-9) * 0.7
    return pad_silence(x, spans, pad_s, pad_s)


def pitch_shift(utt: Utterance, factor: float) -> Utterance:
    """Play back ``factor`` times faster (pitch up, durations down): a cheap new 'speaker' from one voice."""
    audio, spans = speed(utt.audio, utt.spans, factor, utt.sample_rate)
    return Utterance(audio, utt.sample_rate, spans)


def targets(spans: list[PhonemeSpan], n_frames: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    labels = frame_labels(spans, n_frames)
    return labels, coarticulated_params(labels)


Row = tuple[str, npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.float32]]


def _featurize(voice: str, x: npt.NDArray[np.float32], spans: list[PhonemeSpan]) -> Row:
    """One utterance as a training row: (voice, log-mel features, viseme labels, mouth parameters)."""
    f = logmel(x)
    lab, par = targets(spans, len(f))
    return voice, f, lab, par


def _split_of(rows: list[Row], audio: list[Any] | None = None, spans: list[Any] | None = None) -> Split:
    offs = np.cumsum([0] + [len(r[1]) for r in rows]).astype(np.int64)
    return Split(
        np.concatenate([r[1] for r in rows]).astype(np.float32),
        np.concatenate([r[2] for r in rows]),
        np.concatenate([r[3] for r in rows]),
        offs,
        [r[0] for r in rows],
        audio or [],
        spans or [],
    )


def _pack(items: list[tuple[str, npt.NDArray[np.float32], list[PhonemeSpan]]], keep_audio: bool) -> Split:
    rows = [_featurize(voice, x, sp) for voice, x, sp in items]
    if not keep_audio:
        return _split_of(rows)
    spans = [np.array([[s.start, s.end, s.viseme] for s in sp], dtype=np.float64).reshape(-1, 3) for _, _, sp in items]
    return _split_of(rows, [x for _, x, _ in items], spans)


def build(config: DataConfig, progress: Callable[[str], None] = print) -> tuple[Split, Split]:
    """Synthesize and featurize the train and held-out splits (slow: minutes). Deterministic for a config."""
    rng = np.random.default_rng(config.seed)
    texts = sentence_set.all_sentences(config.n_generated)
    if config.max_sentences:
        texts = texts[: config.max_sentences]
    piper, espeak = PiperSynth(), EspeakSynth()
    train_voices = [b + v for b in TRAIN_ESPEAK_BASES for v in TRAIN_ESPEAK_VARIANTS]
    train: list[tuple[str, npt.NDArray[np.float32], list[PhonemeSpan]]] = []
    heldout: list[tuple[str, npt.NDArray[np.float32], list[PhonemeSpan]]] = []
    t0 = time.monotonic()
    for i, text in enumerate(texts):
        if sentence_set.is_heldout_sentence(i):
            utt = pitch_shift(piper.synth(text, length_scale=HELDOUT_PIPER["length_scale"]), HELDOUT_PIPER["pitch"])
            heldout.append(("piper-joe+15%pitch", *clean_16k(utt.audio, utt.sample_rate, utt.spans)))
            for voice in config.heldout_espeak:
                utt = espeak.synth(text, voice=voice, rate=int(rng.integers(140, 210)))
                heldout.append((f"espeak:{voice}", *clean_16k(utt.audio, utt.sample_rate, utt.spans)))
        else:
            n_piper = int(config.piper_per_sentence) + int(rng.random() < config.piper_per_sentence % 1)
            for _ in range(n_piper):
                utt = piper.synth(
                    text,
                    length_scale=float(rng.uniform(0.75, 1.3)),
                    noise_scale=float(rng.uniform(0.3, 0.9)),
                    noise_w=float(rng.uniform(0.4, 1.0)),
                )
                utt = pitch_shift(utt, float(rng.uniform(0.9, 1.08)))
                train.append(("piper-joe", *augment(utt.audio, utt.sample_rate, utt.spans, rng)))
            for _ in range(config.espeak_per_sentence):
                voice = str(rng.choice(train_voices))
                utt = espeak.synth_varied(text, voice, rng)
                train.append((f"espeak:{voice}", *augment(utt.audio, utt.sample_rate, utt.spans, rng)))
        if (i + 1) % 25 == 0 or i + 1 == len(texts):
            progress(
                f"data: {i + 1}/{len(texts)} sentences, {len(train)} train + {len(heldout)} held-out utterances "
                f"({time.monotonic() - t0:.0f} s)"
            )
    # Pure noise / silence clips teach the model that a closed mouth is the answer when nobody speaks.
    for _ in range(max(4, len(train) // 50)):
        n = int(rng.uniform(0.5, 2.0) * LIPSYNC_SAMPLE_RATE)
        x = pink(n, rng) * 10 ** (rng.uniform(-70, -25) / 20) if rng.random() < 0.7 else np.zeros(n, np.float32)
        train.append(("noise", np.clip(x, -1, 1).astype(np.float32), []))
    return _pack(train, keep_audio=False), _pack(heldout, keep_audio=True)


def save(path: Path, split: Split) -> None:
    arrays: dict[str, Any] = {
        "features": split.features.astype(np.float16),
        "labels": split.labels.astype(np.int8),
        "params": split.params.astype(np.float16),
        "offsets": split.offsets,
        "voices": np.array(split.voices),
    }
    for i, (a, s) in enumerate(zip(split.audio, split.spans, strict=True)):
        arrays[f"audio_{i}"] = a
        arrays[f"spans_{i}"] = s
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def load(path: Path) -> Split:
    with np.load(path) as z:
        n = len(z["offsets"]) - 1
        has_audio = "audio_0" in z.files
        return Split(
            z["features"].astype(np.float32),
            z["labels"].astype(np.int64),
            z["params"].astype(np.float32),
            z["offsets"].astype(np.int64),
            [str(v) for v in z["voices"]],
            [z[f"audio_{i}"] for i in range(n)] if has_audio else [],
            [z[f"spans_{i}"] for i in range(n)] if has_audio else [],
        )


def load_or_build(
    config: DataConfig, cache_dir: Path = DEFAULT_CACHE, progress: Callable[[str], None] = print
) -> tuple[Split, Split]:
    """The cached splits for ``config``, building them first when absent."""
    folder = cache_dir / config.key()
    train_path, eval_path = folder / "train.npz", folder / "heldout.npz"
    if train_path.exists() and eval_path.exists():
        progress(f"data: using cache {folder}")
        return load(train_path), load(eval_path)
    train, heldout = build(config, progress)
    save(train_path, train)
    save(eval_path, heldout)
    (folder / "config.json").write_text(json.dumps(asdict(config), indent=2, sort_keys=True))
    progress(f"data: cached in {folder} ({len(train)} train, {len(heldout)} held-out utterances)")
    # Read back what was stored (float16 features) so a first run trains on exactly what later runs load.
    return load(train_path), load(eval_path)


# --- Real human speech (shared/data/human-speech) -------------------------------------------------------------------


@dataclass(frozen=True)
class HumanConfig:
    """How the human-speech training split is expanded: one clean copy plus ``copies`` deployment-like degradations."""

    copies: int = 3
    seed: int = 0
    #: Limit utterances (smoke tests); 0 = all.
    max_utterances: int = 0
    workers: int = 2

    def key(self) -> str:
        return config_key(self, "human-")


def _featurize_versions(
    index: int,
    seed: int,
    voice: str,
    audio: npt.NDArray[np.float32],
    spans: list[PhonemeSpan],
    copies: int,
    bank: list[npt.NDArray[np.float32]],
) -> list[Row]:
    """One real recording once clean (padded) and ``copies`` times degraded (babble from ``bank``), featurized."""
    from avaluma.renderer.lipsync.training import augment

    rng = np.random.default_rng([seed, index])
    versions = [augment.pad_silence(audio, spans, 0.2, 0.3)]
    versions += [augment.deployment_mix(audio, spans, rng, bank) for _ in range(copies)]
    return [_featurize(voice, x, sp) for x, sp in versions]


def _featurize_human(
    task: tuple[int, int, Any, int, list[Any]],
) -> list[Row]:
    """Worker: the clean and the augmented versions of one training utterance, featurized (picklable arguments)."""
    index, seed, utt, copies, bank_utts = task
    bank = [b.audio() for b in bank_utts]
    return _featurize_versions(index, seed, f"human:{utt.speaker}", utt.audio(), utt.spans(), copies, bank)


def build_human(config: HumanConfig, progress: Callable[[str], None] = print) -> Split:
    """The human-speech training split (train speakers only), clean + augmented, featurized."""
    from concurrent.futures import ProcessPoolExecutor

    from avaluma.renderer.lipsync.training import human

    # Speech the aligner could not transcribe is labelled silence: such utterances would teach a shut mouth on speech.
    utts = [u for u in human.utterances(split="train") if not u.unknown()]
    if config.max_utterances:
        utts = utts[: config.max_utterances]
    rng = np.random.default_rng(config.seed)
    tasks = []
    for i, u in enumerate(utts):
        # Babble for this utterance comes from other training speakers only.
        others = [utts[int(k)] for k in rng.integers(0, len(utts), size=5)]
        tasks.append((i, config.seed, u, config.copies, [o for o in others if o.speaker != u.speaker]))
    rows: list[Row] = []
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=config.workers) as pool:
        for k, items in enumerate(pool.map(_featurize_human, tasks, chunksize=8)):
            rows.extend(items)
            if (k + 1) % 200 == 0 or k + 1 == len(tasks):
                progress(f"human data: {k + 1}/{len(tasks)} utterances ({time.monotonic() - t0:.0f} s)")
    return _split_of(rows)


def nonspeech_split(n: int, seed: int = 0) -> Split:
    """``n`` clips where nobody speaks (music, breathing, hum, clicks), all labelled silence: a closed mouth."""
    from avaluma.renderer.lipsync.training import augment

    rng = np.random.default_rng([seed, 7])
    return _pack([("nonspeech", augment.nonspeech(rng, float(rng.uniform(0.5, 3.0))), []) for _ in range(n)], False)


def background_split(recordings: list[npt.NDArray[np.float32]], n: int, seed: int = 0) -> Split:
    """``n`` excerpts of recorded music and effects (``training/background.py``), degraded, all labelled silence."""
    from avaluma.renderer.lipsync.training import background

    return _pack([("background", x, []) for x in background.silence_clips(recordings, n, seed)], False)


def human_eval_split(split: str, limit: int = 0) -> Split:
    """A clean evaluation split of the human corpus (``dev`` or ``test`` speakers), audio kept for the bench."""
    from avaluma.renderer.lipsync.training import augment, human

    items = []
    for i, u in enumerate(human.utterances(split=split)):
        if limit and i >= limit:
            break
        items.append((f"human:{u.speaker}", *augment.pad_silence(u.audio(), u.spans(), 0.3, 0.3)))
    return _pack(items, keep_audio=True)


def load_or_build_human(
    config: HumanConfig, cache_dir: Path = DEFAULT_CACHE, progress: Callable[[str], None] = print
) -> Split:
    return _cached_split("human data", config, config.key(), build_human, cache_dir, progress)


# --- Native English studio speech (Asterisk's prompts, training/prompts.py) -------------------------------------------


@dataclass(frozen=True)
class NativeConfig:
    """How the ``train`` half of the native prompts is expanded: one clean copy plus ``copies`` degradations."""

    copies: int = 3
    seed: int = 0
    workers: int = 2

    def key(self) -> str:
        return config_key(self, "native-")


def _featurize_native(task: tuple[int, int, Any, int, list[Any]]) -> list[Row]:
    index, seed, (_name, audio, spans), copies, bank = task
    return _featurize_versions(index, seed, "native:allison", audio, spans, copies, bank)


def build_native(config: NativeConfig, root: Path, progress: Callable[[str], None] = print) -> Split:
    """The ``train`` half of the prompts under ``root`` (``scripts/fetch-native-speech``), clean + augmented."""
    from concurrent.futures import ProcessPoolExecutor

    from avaluma.renderer.lipsync.training import prompts

    items = prompts.load(root, progress, only="train")
    rng = np.random.default_rng([config.seed, 13])
    tasks = []
    for i, item in enumerate(items):
        # Babble from other prompts: the corpus is not needed for this data.
        others = [items[int(k)][1] for k in rng.integers(0, len(items), size=5) if int(k) != i]
        tasks.append((i, config.seed, item, config.copies, others))
    rows: list[Row] = []
    with ProcessPoolExecutor(max_workers=config.workers) as pool:
        for versions in pool.map(_featurize_native, tasks, chunksize=8):
            rows.extend(versions)
    progress(f"native speech: {len(tasks)} prompts x {1 + config.copies} versions featurized")
    return _split_of(rows)


def load_or_build_native(
    config: NativeConfig, root: Path, cache_dir: Path = DEFAULT_CACHE, progress: Callable[[str], None] = print
) -> Split:
    def build_split(c: NativeConfig, p: Callable[[str], None]) -> Split:
        return build_native(c, root, p)

    return _cached_split("native speech", config, config.key(), build_split, cache_dir, progress)


# --- Other languages (espeak-ng, training/languages.py) ---------------------------------------------------------------


@dataclass(frozen=True)
class MultilingualConfig:
    """Renditions per training sentence in every non-English language, each degraded like deployment audio."""

    per_sentence: int = 4
    seed: int = 0
    #: Language codes of ``languages.LANGUAGES``; empty = all.
    languages: tuple[str, ...] = ()

    def key(self) -> str:
        return config_key(self, "multilingual-")


def build_multilingual(config: MultilingualConfig, progress: Callable[[str], None] = print) -> Split:
    from avaluma.renderer.lipsync.training import augment, languages

    rng = np.random.default_rng([config.seed, 11])
    items = languages.multilingual_items(rng, EspeakSynth(), config.per_sentence, config.languages or None)
    progress(f"multilingual data: {len(items)} utterances synthesized")
    return _pack([(label, *augment.deployment_mix(x, sp, rng)) for label, x, sp in items], keep_audio=False)


def load_or_build_multilingual(
    config: MultilingualConfig, cache_dir: Path = DEFAULT_CACHE, progress: Callable[[str], None] = print
) -> Split:
    return _cached_split("multilingual data", config, config.key(), build_multilingual, cache_dir, progress)


def _cached_split(
    label: str,
    config: Any,
    key: str,
    build_split: Callable[[Any, Callable[[str], None]], Split],
    cache_dir: Path,
    progress: Callable[[str], None],
) -> Split:
    """The training split cached under ``cache_dir/key``, built first when absent (read back as later runs load it)."""
    path = cache_dir / key / "train.npz"
    if path.exists():
        progress(f"{label}: using cache {path.parent}")
        return load(path)
    save(path, build_split(config, progress))
    (path.parent / "config.json").write_text(json.dumps(asdict(config), indent=2, sort_keys=True))
    return load(path)

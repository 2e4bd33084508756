"""Which soxr quality should resample the lip-sync input? Accuracy and lag of HQ, LQ and QQ, side by side in one run.

Held-out sentences (never trained on) are synthesised afresh at the voices' native rate (22.05 kHz, content up to
11 kHz) by the held-out voices of ``bench/lipsync_eval.py``, brought to 24 and 48 kHz with soxr HQ (what a TTS would
send), then streamed to 16 kHz in 100 ms chunks at each quality, as ``renderer/engine.py`` does, and scored by the
trained model with ``bench/lipsync_eval.evaluate``. The baseline row is the training pipeline's own 16 kHz audio.
"agree" is the share of frames whose viseme equals the HQ run's; "lag" is how far the streamed output trails the
input while streaming (mean / max over chunks).

    .venv/bin/python bench/lipsync_resampler.py [--sentences 40]

Needs the ``train`` extra (piper and espeak-ng voices).
"""

from __future__ import annotations

import argparse

import numpy as np
import numpy.typing as npt
import soxr
from lipsync_eval import evaluate
from machine import describe

from avaluma.renderer.engine import LIPSYNC_RESAMPLER_QUALITY
from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE, MouthFrames
from avaluma.renderer.lipsync.onnx_backend import OnnxBackend, OnnxOptions
from avaluma.renderer.lipsync.training import sentences as sentence_set
from avaluma.renderer.lipsync.training.data import HELDOUT_PIPER, DataConfig, Split, clean_16k, pitch_shift
from avaluma.renderer.lipsync.training.synth import EspeakSynth, PiperSynth, Utterance

FPS = 25.0
PAD_S = 0.3
QUALITIES = ("HQ", "LQ", "QQ")
F32 = npt.NDArray[np.float32]


def held_out_utterances(limit: int) -> list[tuple[str, Utterance]]:
    config = DataConfig()
    texts = sentence_set.all_sentences(config.n_generated)
    held = [t for i, t in enumerate(texts) if sentence_set.is_heldout_sentence(i)][:limit]
    piper, espeak = PiperSynth(), EspeakSynth()
    rng = np.random.default_rng(7)
    utterances = []
    for text in held:
        shifted = pitch_shift(piper.synth(text, length_scale=HELDOUT_PIPER["length_scale"]), HELDOUT_PIPER["pitch"])
        utterances.append(("piper", shifted))
        for voice in config.heldout_espeak:
            utterances.append((f"espeak:{voice}", espeak.synth(text, voice=voice, rate=int(rng.integers(140, 210)))))
    return utterances


def stream_to_16k(x: F32, rate: int, quality: str) -> tuple[F32, list[float]]:
    """Resample in 100 ms chunks like the engine; also return the lag (seconds) after each chunk."""
    stream = soxr.ResampleStream(rate, LIPSYNC_SAMPLE_RATE, 1, dtype="float32", quality=quality)
    step = rate // 10
    out: list[F32] = []
    lags, produced = [], 0
    for i in range(0, len(x), step):
        chunk = np.asarray(stream.resample_chunk(x[i : i + step]), dtype=np.float32)
        out.append(chunk)
        produced += len(chunk)
        lags.append(min(i + step, len(x)) / rate - produced / LIPSYNC_SAMPLE_RATE)
    out.append(np.asarray(stream.resample_chunk(np.zeros(0, np.float32), last=True), dtype=np.float32))
    return np.concatenate(out), lags


def split_at(utterances: list[tuple[str, Utterance]], rate: int | None, quality: str) -> tuple[Split, list[float]]:
    audio, spans, lags = [], [], []
    for _, utt in utterances:
        reference, utt_spans = clean_16k(utt.audio, utt.sample_rate, utt.spans, pad_s=PAD_S)
        spans.append(np.array([[s.start, s.end, s.viseme] for s in utt_spans], dtype=np.float64).reshape(-1, 3))
        if rate is None:
            audio.append(reference)
            continue
        x = np.asarray(soxr.resample(utt.audio, utt.sample_rate, rate, quality="HQ"), np.float32)
        x = x / (float(np.max(np.abs(x))) + 1e-9) * 0.7
        pad = np.zeros(int(PAD_S * rate), np.float32)
        out, chunk_lags = stream_to_16k(np.concatenate([pad, x, pad]), rate, quality)
        lags += chunk_lags
        n = len(reference)
        audio.append(np.pad(out[:n], (0, max(0, n - len(out)))).astype(np.float32))
    return Split(None, None, None, None, [v for v, _ in utterances], audio, spans), lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=40, help="held-out sentences (x4 voices)")
    args = parser.parse_args()
    print(f"machine: {describe()}")
    utterances = held_out_utterances(args.sentences)
    print(f"{len(utterances)} held-out utterances; the engine uses {LIPSYNC_RESAMPLER_QUALITY}; {FPS:g} fps")
    model = OnnxBackend(OnnxOptions(threads=1))

    def analyze(audio: F32, fps: float) -> MouthFrames:
        return model.analyze(audio, fps=fps)

    print(f"{'input':24} {'acc':>6} {'speech':>7} {'open r':>7} {'agree':>6} {'lag ms':>13}")
    baseline, _ = split_at(utterances, None, "HQ")
    m = evaluate(analyze, baseline, FPS)
    print(f"{'16 kHz as trained':24} {m['acc']:6.3f} {m['acc_speech']:7.3f} {m['corr']:7.3f}")
    for rate in (24_000, 48_000):
        reference = None
        for quality in QUALITIES:
            split, lags = split_at(utterances, rate, quality)
            m = evaluate(analyze, split, FPS)
            visemes = [analyze(a, FPS).visemes.argmax(1) for a in split.audio]  # type: ignore[union-attr]
            reference = reference or visemes
            agree = np.concatenate([v == r for v, r in zip(visemes, reference, strict=True)]).mean()
            lag = f"{1000 * np.mean(lags):5.1f} / {1000 * np.max(lags):5.1f}"
            name = f"{rate} -> 16 kHz {quality}"
            print(f"{name:24} {m['acc']:6.3f} {m['acc_speech']:7.3f} {m['corr']:7.3f} {agree:6.3f} {lag:>13}")


if __name__ == "__main__":
    main()

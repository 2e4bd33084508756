"""GPU figures for the Triton lip-sync model: VRAM per session, sessions per GPU at 25 fps, latency percentiles.

Usage::

    .venv/bin/python bench/gpu.py                    # starts tritonserver (nvidia-pytriton wheel) with the GPU config
    .venv/bin/python bench/gpu.py --url HOST:PORT    # a running Triton serving the GPU config (e.g. the NGC container)
    .venv/bin/python bench/gpu.py --sessions 1,32,128 --seconds 4

Without an NVIDIA GPU (no ``nvidia-smi``, or it lists no GPU), or when Triton is started here and onnxruntime has no
CUDA provider (``pip install onnxruntime-gpu``), it prints one ``SKIP`` line and exits 0: CI never has a GPU.

What it does, on a GPU:

1. Started here, Triton serves a temporary copy of ``deploy/triton/model_repository`` whose ``lipsync/config.pbtxt``
   is ``deploy/triton/gpu/lipsync/config.pbtxt`` (``KIND_GPU`` instances, onnxruntime's CUDA provider, batching
   across sessions on). GPU memory (``nvidia-smi --query-gpu=memory.used``) is read before Triton starts and once
   the model is loaded.
2. For each level N of ``--sessions``, N sessions stream ``--seconds`` of audio each in real time (one 40 ms push per
   25 fps frame, on schedule), each from its own thread. Meanwhile GPU memory is sampled every 100 ms; its peak minus
   the loaded-and-idle figure, over N, is the VRAM per session. Latency is counted from the moment a chunk is due to
   the moment its frame is back; a frame is late when that exceeds one frame (40 ms).
3. Then N sessions of the largest level stream as fast as they are answered: frames/s over 25 is how many 25 fps
   sessions the model carries (``model-limited``). Sessions per GPU at 25 fps is the smaller of that and what the
   free memory holds at the measured VRAM per session; the largest level with no late frame is printed beside it.

One client process drives every session, so at high N the client's CPU can be the limit: watch ``client CPU``.
The video encoder's cost per session is measured by ``bench/session.py``, not here.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from machine import describe
from signals import speech_like

from avaluma.renderer.lipsync.base import LipSyncBackend

ROOT = Path(__file__).resolve().parents[1]
SR = 16_000
FPS = 25
CHUNK = SR // FPS  # one video frame of audio at 25 fps
FRAME_S = 1 / FPS


def gpu_info() -> tuple[str, float] | None:
    """(name, total MiB) of GPU 0, or ``None`` without an NVIDIA GPU."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in out.stdout.strip().splitlines() if line.strip()]
    if out.returncode != 0 or not lines:
        return None
    name, total = lines[0].rsplit(",", 1)
    return name.strip(), float(total)


def gpu_used_mib() -> float:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "--id=0"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return float(out.stdout.split()[0])


def skip_reason(url: str | None) -> str | None:
    """Why this machine cannot run the benchmark, or ``None`` when it can."""
    if gpu_info() is None:
        return "no NVIDIA GPU here (nvidia-smi is missing or lists no GPU)"
    if url is None:
        try:
            import onnxruntime
        except ImportError:
            return "onnxruntime is not installed"
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return (
                "onnxruntime has no CUDA provider, so a KIND_GPU Triton instance cannot load: "
                "pip install onnxruntime-gpu (or pass --url to a Triton that has it)"
            )
    return None


def gpu_repository(target: Path) -> Path:
    """The shipped repository with the GPU configuration of ``lipsync``."""
    repo = target / "model_repository"
    shutil.copytree(ROOT / "deploy" / "triton" / "model_repository", repo, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "deploy" / "triton" / "gpu" / "lipsync" / "config.pbtxt", repo / "lipsync" / "config.pbtxt")
    return repo


class MemorySampler:
    """Peak GPU memory used while running (sampled every ``period_s``)."""

    def __init__(self, period_s: float = 0.1) -> None:
        self.peak = 0.0
        self._period_s = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, gpu_used_mib())
            self._stop.wait(self._period_s)


def run_sessions(backend: LipSyncBackend, n: int, seconds: float, *, paced: bool) -> dict[str, float]:
    """N sessions streaming ``seconds`` of audio each; paced: one push per frame on schedule, else back to back."""
    audio = speech_like(seconds, seed=0)
    latencies: list[list[float]] = [[] for _ in range(n)]
    frames = [0] * n
    errors: list[BaseException] = []
    barrier = threading.Barrier(n + 1)

    def session(i: int) -> None:
        try:
            stream = backend.open_stream(fps=FPS)
            stream.push(audio[:CHUNK])  # warm-up: connection and sequence set up before timing
            stream.reset()
            barrier.wait()
            start = time.perf_counter() + (i % FPS) * FRAME_S / FPS  # spread the sessions' schedules over a frame
            for k, offset in enumerate(range(0, len(audio), CHUNK)):
                due = start + k * FRAME_S if paced else time.perf_counter()
                if paced and (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
                frames[i] += len(stream.push(audio[offset : offset + CHUNK]))
                latencies[i].append(time.perf_counter() - due)
            frames[i] += len(stream.flush())
        except BaseException as exc:
            errors.append(exc)
            if not barrier.broken:
                barrier.abort()

    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a session failed: its error is raised below
        barrier.wait()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    if errors:
        raise errors[0]
    lat = np.array([x for per in latencies for x in per]) * 1000
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "late_pct": float((lat > FRAME_S * 1000).mean() * 100),
        "frames_per_s": sum(frames) / wall,
        "client_cpu_pct": cpu_s / wall / (os.cpu_count() or 1) * 100,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="Triton gRPC address serving the GPU config (default: start one here)")
    parser.add_argument("--sessions", default="1,8,32,128", help="comma-separated concurrency levels")
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per session and level")
    args = parser.parse_args()
    levels = sorted({int(x) for x in args.sessions.split(",")})

    reason = skip_reason(args.url)
    if reason is not None:
        print(f"SKIP bench/gpu.py: {reason}; no GPU figures measured.")
        return 0
    info = gpu_info()
    assert info is not None
    gpu_name, total_mib = info

    from avaluma.renderer.lipsync.triton_backend import TritonBackend, TritonOptions

    scratch = tempfile.TemporaryDirectory(prefix="avaluma-bench-gpu-")
    server = None
    url = args.url
    before_mib = gpu_used_mib()
    if url is None:
        from avaluma.core.ops.triton.server import start_triton

        server = start_triton(gpu_repository(Path(scratch.name)), ready_timeout_s=180)
        url = server.grpc_url
    try:
        time.sleep(1.0)
        idle_mib = gpu_used_mib()
        print(f"machine: {describe(GPU=f'{gpu_name} ({total_mib:.0f} MiB)')}")
        print(f"triton: {url} ({'started here with deploy/triton/gpu' if server else 'external'})")
        print(f"command: python bench/gpu.py {' '.join(sys.argv[1:])}".rstrip())
        if server is not None:
            print(f"GPU memory: {before_mib:.0f} MiB before Triton, {idle_mib:.0f} MiB with the model loaded and idle")
        else:
            print(f"GPU memory: {idle_mib:.0f} MiB used with the external Triton idle (what else runs counts too)")
        backend = TritonBackend(TritonOptions(url=url, timeout_s=30, on_failure="end"))
        print(f"real time: {args.seconds:g} s of audio per session, one 40 ms push per 25 fps frame, on schedule")
        print(
            f"{'sessions':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'late %':>7} {'peak MiB':>9} "
            f"{'MiB/sess':>9} {'client CPU':>10}"
        )
        per_session: list[float] = []
        realtime_ok = 0
        for n in levels:
            with MemorySampler() as memory:
                r = run_sessions(backend, n, args.seconds, paced=True)
            mib = max(memory.peak - idle_mib, 0.0) / n
            per_session.append(mib)
            if r["late_pct"] == 0:
                realtime_ok = n
            print(
                f"{n:>8} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['late_pct']:>7.2f} "
                f"{memory.peak:>9.0f} {mib:>9.2f} {r['client_cpu_pct']:>9.0f}%",
                flush=True,
            )
        n = levels[-1]
        r = run_sessions(backend, n, args.seconds, paced=False)
        model_limited = r["frames_per_s"] / FPS
        print(
            f"flat out, {n} sessions: {r['frames_per_s']:.0f} frames/s = {model_limited:.0f} sessions at 25 fps "
            f"(p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, client CPU {r['client_cpu_pct']:.0f}%)"
        )
        backend.close()
        vram_per_session = per_session[-1]  # the largest level: the fixed cost is spread the most there
        memory_limited = (total_mib - idle_mib) / vram_per_session if vram_per_session > 0 else float("inf")
        print(f"VRAM per session: {vram_per_session:.2f} MiB (at {levels[-1]} sessions; issue 16 budget: 100 MB)")
        print(
            f"sessions per GPU at 25 fps: {min(model_limited, memory_limited):.0f} "
            f"(model-limited {model_limited:.0f}, memory-limited {memory_limited:.0f}); "
            f"largest level streamed with no late frame: {realtime_ok or 'none'}"
        )
    finally:
        if server is not None:
            server.stop()
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

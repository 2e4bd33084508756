"""Lip-sync through Triton versus in-process: per-frame latency and throughput for 1, 8 and 32 concurrent sessions,
side by side: one Triton request per session and chunk without batching (``triton unbatched``), the same with Triton
batching the sessions' network calls (``triton batched``: the ``lipsync`` model as shipped, ``batch_windows:
"true"``), and one Triton request for the chunks of many sessions (``triton coalesced``: the ``lipsync_multi`` model,
the client gathering what its sessions push while a request is in flight).

Usage::

    .venv/bin/python bench/triton.py                 # starts tritonserver from the nvidia-pytriton wheel itself
    .venv/bin/python bench/triton.py --url HOST:PORT # an already running Triton serving the `lipsync` model

Started by the benchmark, Triton serves a temporary copy of ``deploy/triton/model_repository`` holding ``lipsync``
``lipsync_unbatched`` (the same model with ``batch_windows: "false"``) and ``lipsync_multi``; against ``--url``
``lipsync`` is measured, plus ``lipsync_unbatched`` and ``lipsync_multi`` if that server has them.

Every session streams ``--seconds`` of speech-like audio in 40 ms chunks (one video frame at 25 fps per push) as
fast as it is answered, from its own thread, like the server's render workers do. Latency is the wall time of one
``push`` (the frame it returns included); throughput is frames produced per second by all sessions together, and
``rt_sessions`` how many 25 fps sessions that would keep in real time. GPU memory (``nvidia-smi``) is printed only
when a GPU is present: used memory with the model loaded and idle, then while 1 and N sessions stream.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime
from machine import describe
from signals import speech_like

from avaluma.renderer.lipsync.base import LipSyncBackend
from avaluma.renderer.lipsync.onnx_backend import OnnxBackend

ROOT = Path(__file__).resolve().parents[1]
SR = 16_000
CHUNK = SR // 25  # one video frame of audio at 25 fps


def gpu_name() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def gpu_memory_mib() -> float | None:
    if gpu_name() is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True
    )
    return float(out.stdout.split()[0]) if out.returncode == 0 else None


def repository_with_unbatched(target: Path) -> Path:
    """A copy of the shipped repository plus ``lipsync_unbatched``: the same model, batch_windows off."""
    repo = target / "model_repository"
    shutil.copytree(ROOT / "deploy" / "triton" / "model_repository", repo, ignore=shutil.ignore_patterns("__pycache__"))
    source, unbatched = repo / "lipsync", repo / "lipsync_unbatched"
    (unbatched / "1").mkdir(parents=True)
    shutil.copy(source / "1" / "model.py", unbatched / "1" / "model.py")
    config = (source / "config.pbtxt").read_text().replace('name: "lipsync"', 'name: "lipsync_unbatched"')
    on = 'key: "batch_windows" value: { string_value: "true" }'
    if on not in config:
        raise SystemExit(f"{source / 'config.pbtxt'} does not set batch_windows to true")
    (unbatched / "config.pbtxt").write_text(config.replace(on, on.replace("true", "false")))
    return repo


def has_model(url: str, model: str) -> bool:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        return bool(client.is_model_ready(model))
    except Exception:
        return False
    finally:
        client.close()


def server_counters(url: str, model: str) -> tuple[int, int, int]:
    """Triton's statistics for ``model``: requests answered, execute() calls, and nanoseconds spent in them."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(model, as_json=True).get("model_stats", [])
    finally:
        client.close()
    requests = executions = ns = 0
    for entry in stats:
        requests += int(entry.get("inference_count", 0))
        executions += int(entry.get("execution_count", 0))
        batches = entry.get("batch_stats", [])
        for batch in batches:
            for part in ("compute_input", "compute_infer", "compute_output"):
                ns += int(batch.get(part, {}).get("ns", 0))
    return requests, executions, ns


def run_sessions(backend: LipSyncBackend, n: int, seconds: float) -> dict[str, float]:
    audio = speech_like(seconds, seed=0)
    latencies: list[list[float]] = [[] for _ in range(n)]
    frames = [0] * n
    barrier = threading.Barrier(n + 1)
    errors: list[BaseException] = []

    def session(i: int) -> None:
        stream = backend.open_stream(fps=25)
        stream.push(audio[:CHUNK])  # warm-up: connection and sequence set up before timing
        stream.reset()
        barrier.wait()
        try:
            for start in range(0, len(audio), CHUNK):
                t0 = time.perf_counter()
                frames[i] += len(stream.push(audio[start : start + CHUNK]))
                latencies[i].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            frames[i] += len(stream.flush())
            latencies[i].append(time.perf_counter() - t0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    gpu_mib = gpu_memory_mib()  # sampled while every session is streaming
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    lat = np.array([x for per in latencies for x in per]) * 1000
    fps_total = sum(frames) / wall
    return {
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
        "frames_per_s": fps_total,
        "rt_sessions": fps_total / 25,
        "gpu_mib": float("nan") if gpu_mib is None else gpu_mib,
    }


def model_alone(n: int, seconds: float) -> tuple[float, float, float]:
    """What batching can gain on this machine at most: Triton's ``model.py`` work without Triton, gRPC or a client
    (:class:`~avaluma.renderer.lipsync.triton_model.SequenceStates` in this thread, ``n`` sequences pushing 40 ms
    chunks in lockstep). Returns frames/s one request after another (``batch_windows: "false"``), frames/s with
    every round's requests in one ``step_many`` (``"true"``), and the share of the batched time spent in
    onnxruntime's ``run``."""
    from avaluma.renderer.lipsync import triton_model as tm

    audio = speech_like(seconds, seed=0).astype(np.float32)
    chunks = [audio[i : i + CHUNK] for i in range(0, len(audio) - CHUNK + 1, CHUNK)]
    fps, flush = np.array([25], np.float32), np.array([False])
    rates: list[float] = []
    share = 0.0
    for batch in (False, True):
        states = tm.load_states(None, threads=1, batch=batch)
        run, in_run = states.model._session.run, [0.0]  # time spent inside onnxruntime

        def timed_run(*args: object, run: object = run, in_run: list[float] = in_run) -> object:
            t0 = time.perf_counter()
            try:
                return run(*args)  # type: ignore[operator]
            finally:
                in_run[0] += time.perf_counter() - t0

        states.model._session.run = timed_run  # type: ignore[method-assign]
        # At least 2000 requests per figure (the speech repeats), after one warm-up round that starts the sequences.
        rounds = [chunks[k % len(chunks)] for k in range(max(len(chunks), -(-2000 // n)) + 1)]
        frames, t0 = 0, 0.0
        for k, chunk in enumerate(rounds):
            if k == 1:
                frames, in_run[0], t0 = 0, 0.0, time.perf_counter()
            steps = [tm.decode_step(np.uint64(i + 1), k == 0, False, chunk, fps, flush) for i in range(n)]
            results = states.step_many(steps) if batch else [states.step(step) for step in steps]
            frames += sum(len(r) for r in results if not isinstance(r, Exception))
        wall = time.perf_counter() - t0
        rates.append(frames / wall)
        share = in_run[0] / wall
    return rates[0], rates[1], share


def ratio(rate: dict[tuple[int, int], float], a: int, b: int, n: int) -> str:
    """Frames/s of backend ``a`` over backend ``b`` at ``n`` sessions ("-" when a round of either failed)."""
    if (a, n) not in rate or (b, n) not in rate:
        return "-"
    return f"{rate[(a, n)] / max(rate[(b, n)], 1e-9):.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="Triton gRPC address (default: start one from the nvidia-pytriton wheel)")
    parser.add_argument("--sessions", default="1,8,32", help="comma-separated concurrency levels")
    parser.add_argument("--seconds", type=float, default=2.0, help="audio per session")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds per level (all backends each round); the median round is printed"
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.sessions.split(",")]

    from avaluma.renderer.lipsync.triton_backend import TritonBackend, TritonOptions

    server = None
    url = args.url
    scratch = tempfile.TemporaryDirectory(prefix="avaluma-bench-triton-")
    if url is None:
        from avaluma.core.ops.triton.server import start_triton

        repo = repository_with_unbatched(Path(scratch.name))
        server = start_triton(repo, models=["lipsync", "lipsync_unbatched", "lipsync_multi"])
        url = server.grpc_url
    try:
        print(f"machine: {describe(onnxruntime=onnxruntime.__version__, GPU=gpu_name() or 'none')}")
        print(f"triton: {url} ({'started by this benchmark' if server else 'external'}), {args.seconds:g} s of audio")
        print(f"per session, 40 ms chunks, 25 fps; command: python bench/triton.py {' '.join(sys.argv[1:])}".rstrip())
        if args.repeat > 1:
            print(f"{args.repeat} rounds per level, backends in turn; each row is the round with the median frames/s")
        gpu_idle = gpu_memory_mib()

        def make_backends(url: str) -> list[tuple[str, LipSyncBackend, str | None]]:
            """(label, backend, Triton model name or None for in-process)"""
            backends: list[tuple[str, LipSyncBackend, str | None]] = [("in-process", OnnxBackend(), None)]
            if has_model(url, "lipsync_unbatched"):
                unbatched = TritonOptions(url=url, model="lipsync_unbatched", timeout_s=30, on_failure="end")
                backends.append(("triton unbatched", TritonBackend(unbatched), "lipsync_unbatched"))
            batched = TritonOptions(url=url, timeout_s=30, on_failure="end")
            backends.append(("triton batched", TritonBackend(batched), "lipsync"))
            if has_model(url, "lipsync_multi"):
                multi = TritonOptions(url=url, model="lipsync_multi", timeout_s=30, on_failure="end", protocol="multi")
                backends.append(("triton coalesced", TritonBackend(multi), "lipsync_multi"))
            return backends

        backends = make_backends(url)
        print(
            "req/exec: requests per execute() call (coalesced: session chunks per request); srv us: Triton's "
            "compute time per session chunk (the model alone, without the client and gRPC)"
        )
        header = (
            f"{'backend':<16} {'sessions':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'frames/s':>9} {'rt sess':>8}"
            f" {'req/exec':>8} {'srv us':>7}"
        )
        if gpu_idle is not None:
            header += f" {'GPU MiB':>8}"
        print(header)
        # Levels outer, backends inner: the rows compared side by side run back to back, so load from other work
        # on the machine skews them alike; printed grouped by backend at the end.
        lines: dict[tuple[int, int], str] = {}
        rate: dict[tuple[int, int], float] = {}
        rounds: dict[tuple[int, int], list[tuple[float, str]]] = {}
        for n, _ in ((n, r) for n in levels for r in range(max(args.repeat, 1))):
            for index in range(len(backends)):
                if server is not None and server.process.poll() is not None:
                    # Triton 2.51 has crashed (SIGSEGV) serving the sequence-batched model to 32 sessions: say so,
                    # start it again, and go on with the other rounds and backends.
                    tail = server.log_tail(1500).strip().replace("\n", "\n    ")
                    print(f"tritonserver exited ({server.process.returncode}), its log ends:\n    {tail}", flush=True)
                    print("restarting it", flush=True)
                    server.stop()
                    server = start_triton(repo, models=["lipsync", "lipsync_unbatched", "lipsync_multi"])
                    url = server.grpc_url
                    for _, old, _ in backends:
                        old.close()
                    backends = make_backends(url)
                name, backend, model = backends[index]
                before = server_counters(url, model) if model else None
                coalescer = getattr(backend, "coalescer", None)
                sent = (coalescer.requests, coalescer.entries) if coalescer is not None else (0, 0)
                try:
                    r = run_sessions(backend, n, args.seconds)
                except Exception as exc:  # reported, not counted; the other rounds and backends go on
                    print(f"{name} at {n} sessions: a round failed and is not counted ({exc})", flush=True)
                    continue
                counters = f" {'-':>8} {'-':>7}"
                if model is not None and before is not None:
                    after = server_counters(url, model)
                    requests, executions, ns = (a - b for a, b in zip(after, before, strict=True))
                    if coalescer is not None:  # one request carries many chunks: count chunks
                        requests, executions = coalescer.entries - sent[1], coalescer.requests - sent[0]
                    counters = f" {requests / max(executions, 1):>8.1f} {ns / max(requests, 1) / 1000:>7.0f}"
                line = (
                    f"{name:<16} {n:>8} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                    f"{r['frames_per_s']:>9.0f} {r['rt_sessions']:>8.1f}{counters}"
                )
                if gpu_idle is not None:
                    line += f" {r['gpu_mib']:>8.0f}"
                rounds.setdefault((index, n), []).append((r["frames_per_s"], line))
                ordered = sorted(rounds[(index, n)], key=lambda x: x[0])
                rate[(index, n)], lines[(index, n)] = ordered[(len(ordered) - 1) // 2]  # the median round
        for key in sorted(lines):
            print(lines[key])
        names = [name for name, _, _ in backends]
        if "triton unbatched" in names:
            ub, b = names.index("triton unbatched"), names.index("triton batched")
            ratios = ", ".join(f"{n}: {ratio(rate, b, ub, n)}" for n in levels)
            print(f"triton batched / unbatched frames/s by sessions: {ratios}")
            if "triton coalesced" in names:
                c = names.index("triton coalesced")
                ratios = ", ".join(f"{n}: {ratio(rate, c, ub, n)}" for n in levels)
                print(f"triton coalesced / unbatched frames/s by sessions: {ratios}")
                if args.repeat > 1:
                    each = "; ".join(
                        f"{n}: " + " ".join(
                            f"{a[0] / max(b[0], 1e-9):.2f}x"
                            for a, b in zip(rounds.get((c, n), []), rounds.get((ub, n), []), strict=False)
                        )
                        for n in levels
                    )  # fmt: skip
                    print(f"  each round (coalesced / unbatched, run back to back): {each}")
        print("model alone (Triton's model.py work in one thread, no Triton, gRPC or client): frames/s")
        for n in levels:
            one, many, share = model_alone(n, args.seconds)
            print(
                f"  {n:>3} sequences: one request after another {one:7.0f}, batched {many:7.0f} "
                f"({many / one:.2f}x); onnxruntime run is {share:.0%} of the batched time"
            )
        print(f"machine after: {describe()}")
        for _, backend, _ in backends:
            backend.close()
        if gpu_idle is not None:
            print(f"GPU memory with the model loaded and no session: {gpu_idle:.0f} MiB")
    finally:
        if server is not None:
            server.stop()
        scratch.cleanup()


if __name__ == "__main__":
    main()

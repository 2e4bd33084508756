#!/usr/bin/env python3
"""Cost of telemetry on the render path: frames/s with OpenTelemetry off and on, side by side in one run.

    .venv/bin/python bench/telemetry.py [--seconds 4] [--rounds 3]

Two levels, each variant run ``--rounds`` times interleaved (A B C A B C ...) and reported by its median:

1. ``engine`` (one thread, what one stream costs a core): a :class:`RenderSession` fed 80 ms pieces exactly as the
   gRPC ``Render`` adapter feeds it, with
   - ``bare``: no telemetry hooks at all (the code before telemetry existed),
   - ``off``: the hooks as shipped, OTEL_* unset (no-op stream telemetry, the backend unwrapped),
   - ``on``: tracing and metrics on (segment, sampled frame and inference spans; batch export to a sink that drops
     them, so the cost measured is Avaluma's and the SDK's, not a network's).
2. ``gRPC``: a real server on loopback, one non-realtime ``Render`` stream of JPEG frames, client and server in this
   process, with telemetry ``off`` and ``on`` (gRPC client and server spans too).

Prints the machine first. Not a test: nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from machine import describe

from avaluma.core import telemetry
from avaluma.core.live.playout import PIECE_FRAMES, split_chunk
from avaluma.core.live.telemetry_render import NOOP_STREAM, StreamTelemetry, lipsync_instrumentation, stream_telemetry
from avaluma.core.media import AudioChunk
from avaluma.renderer.engine import RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.base import NO_INSTRUMENTATION
from avaluma.renderer.lipsync.energy import EnergyBackend

ROOT = Path(__file__).resolve().parent.parent
FPS = 25
SR = 24_000


def speech(seconds: float, rate: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


class _DropSpans:
    """A span exporter that accepts and drops everything."""

    def export(self, spans: Sequence[object]) -> object:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def telemetry_on() -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    sink: Any = _DropSpans()
    telemetry.configure(
        {}, span_exporter=sink, metric_reader=InMemoryMetricReader(), set_global=False, batch_export=True
    )


def telemetry_off() -> None:
    telemetry.configure({})


# --- engine level ---------------------------------------------------------------------------------------------------


def engine_fps(avatar_path: Path, seconds: float, variant: str) -> float:
    """Frames/s of one stream rendering speech in PIECE_FRAMES pieces, segment after segment, for ``seconds``."""
    (telemetry_on if variant == "on" else telemetry_off)()
    avatar = load_hvia(avatar_path)
    backend = EnergyBackend()
    instrumentation = lipsync_instrumentation(backend) if variant != "bare" else NO_INSTRUMENTATION
    session = RenderSession(avatar, backend, fps=FPS, audio_sample_rate=SR, instrumentation=instrumentation)
    hooks: StreamTelemetry = stream_telemetry("render", {}, lambda: 0) if variant != "bare" else NOOP_STREAM
    pieces = split_chunk(AudioChunk(speech(2.0), 16_000), FPS)
    frames = segment = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        hooks.audio_received()
        for piece in pieces:
            if variant == "bare":
                out = session.push_audio(piece)
            else:
                with hooks.rendering(audio=True, queued_frames=PIECE_FRAMES, segment=segment):
                    out = session.push_audio(piece)
                hooks.frames_rendered(out)
            frames += sum(1 for o in out if hasattr(o, "rgb"))
        hooks.segment_end_received()
        if variant == "bare":
            out = session.end_segment()
        else:
            with hooks.rendering(audio=False, queued_frames=0, segment=segment):
                out = session.end_segment()
            hooks.frames_rendered(out)
        segment += 1
        frames += sum(1 for o in out if hasattr(o, "rgb"))
    elapsed = time.perf_counter() - start
    hooks.close()
    telemetry.shutdown()
    return frames / elapsed


# --- gRPC level -----------------------------------------------------------------------------------------------------


async def grpc_fps(avatars_dir: Path, seconds: float, variant: str) -> float:
    import grpc.aio

    from avaluma.core.config import Config, ServerConfig
    from avaluma.core.live.avatar_store import AvatarStore
    from avaluma.core.server.app import start_server
    from avaluma.core.server.grpc.telemetry import client_interceptors
    from avaluma.proto.v1 import render_service_pb2, render_service_pb2_grpc

    (telemetry_on if variant == "on" else telemetry_off)()
    config = Config(server=ServerConfig(host="127.0.0.1", port=0), avatars_dir=avatars_dir, api_keys=("bench",))
    server = await start_server(config, store=AvatarStore.open(avatars_dir), lipsync_backend=EnergyBackend)
    pcm = (speech(2.0) * 32767).astype("<i2").tobytes()
    avatar_id = server.store.ids()[0]

    async def requests() -> AsyncIterator[render_service_pb2.RenderRequest]:
        yield render_service_pb2.RenderRequest(config=render_service_pb2.RenderConfig(avatar_id=avatar_id))
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for i in range(0, len(pcm), 3200):
                chunk = render_service_pb2.AudioChunk(pcm=pcm[i : i + 3200], sample_rate=16_000, num_channels=1)
                yield render_service_pb2.RenderRequest(audio=chunk)
            yield render_service_pb2.RenderRequest(segment_end=render_service_pb2.SegmentEnd())

    frames = 0
    try:
        async with grpc.aio.insecure_channel(server.address, interceptors=client_interceptors()) as channel:
            stub = render_service_pb2_grpc.RenderServiceStub(channel)
            start = time.perf_counter()
            with telemetry.span(telemetry.SPAN_UTTERANCE):
                async for response in stub.Render(requests(), metadata=(("x-api-key", "bench"),)):
                    frames += response.WhichOneof("response") == "video"
            elapsed = time.perf_counter() - start
    finally:
        await server.stop(0.5)
        telemetry.shutdown()
    return frames / elapsed


def hook_cost_off_us(iterations: int = 200_000) -> float:
    """Microseconds the shipped hooks add to one render piece (PIECE_FRAMES frames) with telemetry off."""
    telemetry_off()
    hooks = stream_telemetry("render", {}, lambda: 0)
    out: list[object] = []
    start = time.perf_counter()
    for _ in range(iterations):
        with hooks.rendering(audio=True, queued_frames=PIECE_FRAMES, segment=0):
            pass
        hooks.frames_rendered(out)
        telemetry.INFERENCE_LATENCY.record(0.001)
        with telemetry.span(telemetry.SPAN_LIPSYNC_INFER):
            pass
    return (time.perf_counter() - start) / iterations * 1e6


def compare(name: str, variants: Sequence[str], run: Callable[[str], float], rounds: int) -> None:
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            results[variant].append(run(variant))
    base = statistics.median(results[variants[0]])
    for variant in variants:
        median = statistics.median(results[variant])
        runs = ", ".join(f"{x:.1f}" for x in results[variant])
        print(
            f"{name:7s} {variant:5s} {median:8.1f} frames/s  ({median / base - 1:+6.1%} vs {variants[0]})  runs: {runs}"
        )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per variant (median reported)")
    args = parser.parse_args()

    avatars = sorted((ROOT / "assets" / "avatars").glob("*.hvia"))
    if not avatars:
        raise SystemExit("no demo avatar in assets/avatars: run scripts/build_demo_avatars.py")
    avatar = avatars[0]
    print(f"machine: {describe()}")
    print(f"avatar: {avatar.name}; {FPS} fps; energy backend; {args.seconds:g} s per run, median of {args.rounds}")
    per_piece = hook_cost_off_us()
    print(
        f"off: the hooks cost {per_piece:.2f} us per {PIECE_FRAMES}-frame piece "
        f"({per_piece / PIECE_FRAMES:.2f} us per frame)"
    )
    compare("engine", ("bare", "off", "on"), lambda v: engine_fps(avatar, args.seconds, v), args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        avatars_dir = Path(tmp)
        (avatars_dir / avatar.name).write_bytes(avatar.read_bytes())
        compare("gRPC", ("off", "on"), lambda v: asyncio.run(grpc_fps(avatars_dir, args.seconds, v)), args.rounds)


if __name__ == "__main__":
    main()

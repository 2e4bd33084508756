"""Bounded soak of a real server: what it answers under sustained churn, and what it leaves behind.

    .venv/bin/python bench/soak.py [--seconds 60] [--quick]

One in-process server (gRPC on a free port, real renderer, energy lip-sync, a scripted room connector instead of
LiveKit) and its clients run side by side for ``--seconds`` (``--quick``: 15):

- interruptions: render streams that each loop "0.2 s of speech, clear" and count the ``playback_finished
  {interrupted}`` answers (and the clear -> answer time);
- sessions: ``StartSession`` / ``StopSession`` cycles;
- stream churn: Render streams opened (config sent, ``started`` read) and cancelled by the client;
- hostile noise: undecodable requests and wrong API keys (answered, throttled, not logged per call).

Before (after a warm-up) and after (once everything is closed): resident memory, threads, open file descriptors,
asyncio tasks, admission slots in use and live sessions. Prints the machine first (bench/machine.py). Never used as a
test: numbers go in notes, not in assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np

from avaluma.core.config import Config, ServerConfig, SessionsConfig
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.server.app import RunningServer, start_server
from avaluma.proto.v1 import (
    avatar_registry_pb2,
    avatar_service_pb2,
    avatar_service_pb2_grpc,
    render_service_pb2,
    render_service_pb2_grpc,
)
from avaluma.renderer.lipsync.energy import EnergyBackend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
KEY = "soak-key"
AUTH = (("x-api-key", KEY),)
IN_RATE = 16_000
Req = render_service_pb2.RenderRequest


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def snapshot(server: RunningServer) -> dict[str, Any]:
    gc.collect()
    return {
        "rss_mb": round(rss_mb(), 1),
        "threads": threading.active_count(),
        "os_threads": len(os.listdir("/proc/self/task")),
        "fds": len(os.listdir("/proc/self/fd")),
        "asyncio_tasks": len(asyncio.all_tasks()),
        "slots_used": server.slots.used if server.slots is not None else -1,
        "sessions": len(server.sessions.list()),
    }


def token(identity: str) -> str:
    """An unsigned LiveKit-shaped JWT (the server reads it; LiveKit, absent here, would verify it)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    claims = {"sub": identity, "video": {"room": "soak", "roomJoin": True}, "exp": int(time.time()) + 3600}
    claims["attributes"] = {"lk.publish_on_behalf": "agent-1"}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.signature"


class ScriptedRoom:
    async def disconnect(self) -> None:
        pass


async def connector(url: str, token: str, *, on_disconnected: Callable[[str], None]) -> ScriptedRoom:
    return ScriptedRoom()


def speech(seconds: float) -> bytes:
    t = np.arange(round(seconds * IN_RATE)) / IN_RATE
    wave = 0.3 * np.sin(2 * np.pi * 150 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    return (wave * 32767).astype("<i2").tobytes()


class LogCount(logging.Handler):
    """Counts the server's log lines by level (and tracebacks): a flood or an ERROR under churn is a finding."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.by_level: dict[str, int] = {}
        self.tracebacks = 0
        self.messages: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.by_level[record.levelname] = self.by_level.get(record.levelname, 0) + 1
        self.tracebacks += record.exc_info is not None
        if record.levelno >= logging.WARNING:
            self.messages[record.getMessage()] = self.messages.get(record.getMessage(), 0) + 1


class Counters:
    def __init__(self) -> None:
        self.interruptions = 0
        self.clear_ms: list[float] = []
        self.sessions_started = 0
        self.sessions_stopped = 0
        self.streams_opened = 0
        self.streams_cancelled = 0
        self.hostile_answered = 0
        self.unexpected: list[str] = []


async def interruptions(channel: grpc.aio.Channel, until: float, c: Counters) -> None:
    stub = render_service_pb2_grpc.RenderServiceStub(channel)
    call = stub.Render(metadata=AUTH)
    await call.write(Req(config=render_service_pb2.RenderConfig(avatar_id="astronaut", realtime=True)))
    audio = Req(audio=render_service_pb2.AudioChunk(pcm=speech(0.2), sample_rate=IN_RATE, num_channels=1))
    try:
        while time.monotonic() < until:
            await call.write(audio)
            while (await call.read()).WhichOneof("response") != "playback_started":
                pass
            sent = time.perf_counter()
            await call.write(Req(clear=render_service_pb2.Clear()))
            while True:
                response = await call.read()
                if response.WhichOneof("response") == "playback_finished" and response.playback_finished.interrupted:
                    break
            c.clear_ms.append((time.perf_counter() - sent) * 1000)
            c.interruptions += 1
    finally:
        call.cancel()


async def sessions(channel: grpc.aio.Channel, until: float, c: Counters, worker: int) -> None:
    stub = avatar_service_pb2_grpc.AvatarServiceStub(channel)
    i = 0
    while time.monotonic() < until:
        started = await stub.StartSession(
            avatar_service_pb2.StartSessionRequest(
                livekit_url="ws://127.0.0.1:7880", livekit_token=token(f"avatar-{worker}-{i}"), avatar_id="astronaut"
            ),
            metadata=AUTH,
        )
        c.sessions_started += 1
        await stub.StopSession(avatar_service_pb2.StopSessionRequest(session_id=started.session_id), metadata=AUTH)
        c.sessions_stopped += 1
        i += 1


async def churn(channel: grpc.aio.Channel, until: float, c: Counters) -> None:
    stub = render_service_pb2_grpc.RenderServiceStub(channel)
    while time.monotonic() < until:
        call = stub.Render(metadata=AUTH)
        await call.write(Req(config=render_service_pb2.RenderConfig(avatar_id="astronaut", realtime=True)))
        assert (await call.read()).WhichOneof("response") == "started"
        c.streams_opened += 1
        call.cancel()
        c.streams_cancelled += 1


async def hostile(address: str, until: float, c: Counters) -> None:
    # Its own channel and "client": failed keys throttle the (loopback) address, which the others share, so only
    # undecodable requests with the right key here, plus a few wrong keys at the end.
    async with grpc.aio.insecure_channel(address) as channel:
        method = channel.unary_unary(
            "/avaluma.v1.AvatarRegistry/GetAvatar",
            request_serializer=None,
            response_deserializer=avatar_registry_pb2.ListAvatarsResponse.FromString,
        )
        while time.monotonic() < until:
            try:
                await method(b"\x7f\xff\xff", metadata=AUTH, timeout=10)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    c.unexpected.append(f"undecodable request: {exc.code()}")
                c.hostile_answered += 1
            await asyncio.sleep(0.005)


async def run(seconds: float, streams: int, session_workers: int) -> None:
    avatars = Path(tempfile.mkdtemp(prefix="avaluma-soak-"))
    shutil.copy(ROOT / "assets" / "avatars" / "astronaut.hvia", avatars / "astronaut.hvia")
    config = Config(
        server=ServerConfig(host="127.0.0.1", port=0, shutdown_grace_s=1.0, max_sessions=64),
        sessions=SessionsConfig(measure_budget=False),
        avatars_dir=avatars,
        api_keys=(KEY,),
    )
    server = await start_server(
        config, store=AvatarStore.open(avatars), lipsync_backend=EnergyBackend, room_connector=connector
    )
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            warm = Counters()  # one short round of everything: first-use allocations are not leaks
            await asyncio.gather(
                interruptions(channel, time.monotonic() + 1.0, warm),
                sessions(channel, time.monotonic() + 1.0, warm, 0),
                churn(channel, time.monotonic() + 1.0, warm),
            )
            await asyncio.sleep(0.5)
            before = snapshot(server)
            logs = LogCount()
            logging.getLogger().addHandler(logs)
            c = Counters()
            t0 = time.monotonic()
            until = t0 + seconds
            await asyncio.gather(
                *(interruptions(channel, until, c) for _ in range(streams)),
                *(sessions(channel, until, c, w) for w in range(session_workers)),
                churn(channel, until, c),
                hostile(server.address, until, c),
            )
            elapsed = time.monotonic() - t0
            logging.getLogger().removeHandler(logs)
            await asyncio.sleep(1.0)  # cancelled streams finish their cleanup
            after = snapshot(server)
    finally:
        await server.stop(1.0)
        shutil.rmtree(avatars, ignore_errors=True)

    print(f"machine: {describe()}")
    print(f"soak: {elapsed:.1f} s, {streams} interrupting render streams, {session_workers} session workers, 1 churner")
    print(
        f"interruptions answered: {c.interruptions} ({c.interruptions / elapsed:.1f}/s), clear -> playback_finished "
        f"p50 {statistics.median(c.clear_ms):.1f} ms, p99 {np.percentile(c.clear_ms, 99):.1f} ms"
    )
    print(f"sessions started/stopped: {c.sessions_started}/{c.sessions_stopped} ({c.sessions_started / elapsed:.1f}/s)")
    print(
        f"render streams opened/cancelled: {c.streams_opened}/{c.streams_cancelled} "
        f"({c.streams_opened / elapsed:.1f}/s)"
    )
    print(f"undecodable requests answered INVALID_ARGUMENT: {c.hostile_answered}; unexpected: {c.unexpected or 'none'}")
    print(f"log lines by level: {logs.by_level}, tracebacks: {logs.tracebacks}")
    for message, count in sorted(logs.messages.items(), key=lambda kv: -kv[1]):
        print(f"  {count:>6} x {message}")
    print("                 before   after")
    for key in before:
        print(f"  {key:<14} {before[key]!s:>7} {after[key]!s:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="15 s")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--session-workers", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, handlers=[logging.NullHandler()])  # counted, not printed
    asyncio.run(run(15.0 if args.quick else args.seconds, args.streams, args.session_workers))


if __name__ == "__main__":
    main()

"""Admission control: how many live sessions this machine can render in real time, measured, not guessed.

A session costs the CPU time of rendering ``fps`` frames per second (lip-sync inference + compositing) plus what
publishing them costs: conversions to ``rtc`` frames, the synchronizer and LiveKit's native media threads, the
event loop, and the room's WebRTC video encoder, which costs more than rendering. At start-up the server measures
all of it on its own avatar, backend and publishing settings (:func:`measure_budget`):

- rendering: a fresh session's frames, this thread's CPU time;
- publishing: one real session through the real ``rtc.AVSynchronizer`` sink (no room), the process's CPU time
  beyond rendering;
- the encoder: the configured codec's layers encoded by a real encoder (:mod:`.video_encoding`: PyAV's libvpx or
  libx264 at the layers and bitrates LiveKit publishes the frame size with), as no room is there to run LiveKit's;
- parallelism: how much faster than one thread the machine renders with one thread per core. Rendering is Python
  and numpy, much of it under the GIL that all sessions of the process share, and a VM's or a container's "cores"
  may deliver less than their count (on the 2-core dev VM, two threads rendered 1.13x one thread; even
  GIL-free hashing only 1.15x).

It admits at most ``min(cores, parallelism) * target_utilization / session cost`` sessions (never more than
``server.max_sessions``), so one session too many is answered with ``RESOURCE_EXHAUSTED`` instead of making every
session drop frames. ``bench/session.py`` compares that limit with how many sessions really run without a late frame,
with a real encoder per session.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from avaluma.core.live.video_encoding import encoder_cores
from avaluma.core.media import AudioChunk
from avaluma.renderer.engine import RenderSession

if TYPE_CHECKING:
    from avaluma.core.live.sessions import VideoPublishing

#: Where the process's cgroup files are (for a container's CPU limit, :func:`available_cores`).
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
#: Seconds of speech and idle rendered by :func:`measure_budget` (each half).
MEASURE_SECONDS: Final = 1.0
#: Seconds of the real session :func:`measure_budget` publishes (half of them speaking).
PUBLISH_MEASURE_SECONDS: Final = 2.0
#: At most this many threads render at once to measure the machine's parallelism (each renders
#: :data:`PARALLEL_FRAMES` frames).
MAX_PARALLEL_PROBE: Final = 8
PARALLEL_FRAMES: Final = 40
#: Cores one session's publishing keeps busy beyond rendering in a budget built without measuring it (the server
#: measures its own): a 25 fps 512x640 session published with VP8 simulcast on an Intel Xeon dev machine, from
#: ``bench/session.py``'s encode-inclusive runs (one session kept 38-50 % of a core busy, rendering 11-16 %).
PUBLISH_COST: Final = 0.28
#: How the publishing cost splits, for sessions with another fps or frame size than the measured one (shares of
#: it): per second of session whatever its fps (audio, the session's upkeep), and per frame bound to the frame's
#: pixels (RGB -> I420 or the sink's scaling, the encoder's layers); the rest is per frame whatever its size (the
#: synchronizer, the event loop, LiveKit's per-frame work). From ``bench/session.py`` on the 2-core dev machine:
#: ``--sessions 2 --encode vp8`` at 25 and ``--fps 15`` kept 39 % and 26 % of a core per session busy (0.67, where
#: frames alone would give 0.6), and ``--encode-cost`` measured the pixel-bound steps at 4.5 ms of a 512x640 frame's
#: 15.6 ms, 1.9 ms when it is published at 256x320 (scaling reads the whole frame, so a quarter of the pixels costs
#: 0.42, not 0.25: counted as the square root of the pixel ratio, 0.5) and 4.1 ms at 384x480 (0.9: its simulcast
#: layer stays 360x450; counted as 0.75, 4 % of the session too little).
PUBLISH_PER_SECOND_SHARE: Final = 0.25
PUBLISH_PIXEL_SHARE: Final = 0.4


@dataclass(frozen=True, slots=True)
class SessionBudget:
    """The measured cost of one session and the number of sessions it allows on this machine."""

    cpu_per_session: float  #: cores one session keeps busy rendering (0.1 = 10 % of one core), measured
    cores: int
    target_utilization: float
    fps: int
    publish_cost: float = PUBLISH_COST  #: cores publishing adds per session, encoder included
    #: Pixels of the frames the measured session rendered and published (the default avatar's native size).
    pixels: int = 512 * 640
    #: How many times one thread's rendering the process gets done with one thread per core (measured); None:
    #: as many as ``cores``.
    parallelism: float | None = None
    #: How publishing was counted, for :meth:`describe` (e.g. "measured, VP8 simulcast encoding included").
    publishing: str = "calibrated, VP8 simulcast encoding included"

    @property
    def session_cost(self) -> float:
        """Cores one whole session keeps busy: rendering plus publishing."""
        return self.cpu_per_session + self.publish_cost

    @property
    def max_sessions(self) -> int:
        return max(1, math.floor(self.capacity + 1e-9))

    @property
    def usable_cores(self) -> float:
        """Cores' worth of work the process gets done: ``cores``, or fewer where rendering did not scale to them."""
        return self.cores if self.parallelism is None else max(1.0, min(float(self.cores), self.parallelism))

    @property
    def capacity(self) -> float:
        """How many sessions like the measured one fit (``usable_cores * target_utilization / session_cost``)."""
        return self.usable_cores * self.target_utilization / max(self.session_cost, 1e-6)

    def cost_of(self, *, fps: int, pixels: int) -> float:
        """Cores a session publishing ``pixels``-pixel frames at ``fps`` keeps busy. It renders the avatar at its
        native size whatever it publishes (rendering scales with fps only); publishing splits as
        :data:`PUBLISH_PER_SECOND_SHARE` and :data:`PUBLISH_PIXEL_SHARE` say, the pixel-bound part growing with the
        pixels beyond the measured size and shrinking with their square root below it (scaling down still reads
        every rendered pixel)."""
        ratio = pixels / max(self.pixels, 1)
        frames = fps / self.fps
        pixel_factor = math.sqrt(ratio) if ratio < 1 else ratio
        per_frame = 1 - PUBLISH_PER_SECOND_SHARE - PUBLISH_PIXEL_SHARE + PUBLISH_PIXEL_SHARE * pixel_factor
        publish = self.publish_cost * (PUBLISH_PER_SECOND_SHARE + per_frame * frames)
        return self.cpu_per_session * frames + publish

    def weight_of(self, *, fps: int, pixels: int) -> float:
        """A session's cost in measured sessions (1.0: like the measured one; 0.5: half as costly), what admission
        counts it as (:class:`~avaluma.core.live.sessions.SessionSlots`)."""
        return self.cost_of(fps=fps, pixels=pixels) / max(self.session_cost, 1e-6)

    def describe(self) -> str:
        return (
            f"one {self.fps} fps session needs about {self.cpu_per_session * 100:.0f} % of a CPU core to render "
            f"(measured) and about {self.session_cost * 100:.0f} % with publishing "
            f"(+{self.publish_cost * 100:.0f} %, {self.publishing}), so {self.cores} cores"
            + ("" if self.parallelism is None else f" (rendering {self.parallelism:.2f}x one thread with {self.cores})")
            + f" at {self.target_utilization:.0%} hold {self.max_sessions}"
        )


def available_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPU cores this process may use: the affinity mask (not the machine's count), and no more than a CPU quota of
    its cgroup allows (a container's CPU limit: on Kubernetes a pod limited to 2 CPUs sees all the node's cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    return cores if quota is None else max(1, min(cores, math.ceil(quota - 1e-9)))


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup quota allows (``cpu.max`` of cgroup v2, or ``cpu.cfs_quota_us / cpu.cfs_period_us`` of v1),
    or None when there is no quota (or no cgroup file to read)."""
    try:
        fields = (root / "cpu.max").read_text().split()  # v2: "<quota> <period>" or "max <period>"
    except OSError:
        try:  # v1
            fields = [(root / "cpu" / name).read_text().strip() for name in ("cpu.cfs_quota_us", "cpu.cfs_period_us")]
        except OSError:
            return None
    try:
        quota, period = float(fields[0]), float(fields[1])
    except (ValueError, IndexError):  # "max", or something unexpected: no quota to respect
        return None
    return quota / period if quota > 0 and period > 0 else None


async def measure_budget(
    make_session: Callable[[], RenderSession],
    *,
    publishing: VideoPublishing | None = None,
    target_utilization: float = 0.8,
    cores: int | None = None,
) -> SessionBudget:
    """What one session costs on this machine and how many fit: rendering, publishing through the real LiveKit sink
    with ``publishing``'s encoder (None: none), and the machine's parallelism (see the module's docstring). Takes
    about :data:`PUBLISH_MEASURE_SECONDS` + 2 s; the blocking parts run in threads."""
    cores = cores or available_cores()
    session = make_session()
    render = await asyncio.to_thread(render_cores, session)
    parallelism = await asyncio.to_thread(measure_parallelism, make_session, cores) if cores > 1 else 1.0
    published = await publishing_cores(make_session)
    encoder = 0.0
    counted = "measured, no encoder"
    if publishing is not None:
        frame = session.idle_frames(1)[0].rgb
        encoder = await asyncio.to_thread(
            encoder_cores,
            frame,
            codec=publishing.codec,
            fps=session.fps,
            simulcast=publishing.simulcast,
            max_bitrate=publishing.max_bitrate,
        )
        layers = "simulcast" if publishing.simulcast else "one layer"
        counted = f"measured, {publishing.codec.upper()} {layers} encoding included"
    return SessionBudget(
        cpu_per_session=render,
        cores=cores,
        target_utilization=target_utilization,
        fps=session.fps,
        publish_cost=max(0.0, published - render) + encoder,
        pixels=session.width * session.height,
        parallelism=parallelism,
        publishing=counted,
    )


def _speech(seconds: float, rate: int) -> npt.NDArray[np.float32]:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def _render_half_speech(session: RenderSession, frames: int) -> int:
    """Render about ``frames`` frames, half of them speech (100 ms chunks), half idle; returns how many."""
    rate = 16_000
    speech, step = _speech(frames / 2 / session.fps, rate), rate // 10
    done = 0
    for i in range(0, speech.size, step):
        done += len(session.push_audio(AudioChunk(speech[i : i + step], rate)))
    done += len(session.end_segment())
    return done + len(session.idle_frames(max(1, frames - done)))


def render_cores(session: RenderSession) -> float:
    """Cores ``session`` keeps busy rendering :data:`MEASURE_SECONDS` of speech and of idle frames (CPU time of
    this thread, so other load on the machine does not inflate the figure). Blocking."""
    session.idle_frames(2)  # warm-up: caches, first-use allocations
    start = time.thread_time()
    frames = _render_half_speech(session, round(2 * MEASURE_SECONDS * session.fps))
    return (time.thread_time() - start) / frames * session.fps


def measure_parallelism(make_session: Callable[[], RenderSession], cores: int) -> float:
    """How many times one thread's rendering ``min(cores, MAX_PARALLEL_PROBE)`` threads get done (wall time), each
    rendering its own session. Less than the thread count where the GIL or the machine (a VM's shared cores, a
    container's CPU quota, other load) does not let them run side by side. Blocking."""
    threads = max(1, min(cores, MAX_PARALLEL_PROBE))
    sessions = [make_session() for _ in range(threads)]
    for session in sessions:
        _render_half_speech(session, 4)  # warm-up: the first speech and idle frames of a session cost more

    def rate(n: int) -> float:
        start = time.perf_counter()
        with ThreadPoolExecutor(n) as pool:
            frames = sum(pool.map(lambda s: _render_half_speech(s, PARALLEL_FRAMES), sessions[:n]))
        return frames / (time.perf_counter() - start)

    one = rate(1)
    return min(float(threads), rate(threads) / one)


async def publishing_cores(make_session: Callable[[], RenderSession]) -> float:
    """Cores one real session keeps busy, rendering and publishing: a :class:`~.playout.Playout` into the LiveKit
    sink (``rtc`` sources and ``AVSynchronizer``, no room) for :data:`PUBLISH_MEASURE_SECONDS`, speaking half the
    time; the process's CPU time, every thread's (what else runs in the process then counts too: measure at
    start-up)."""
    from avaluma.core.live.livekit_session import AVSyncSink
    from avaluma.core.live.playout import Playout

    session = make_session()
    rate = session.options.audio_sample_rate
    sink = AVSyncSink(width=session.width, height=session.height, fps=session.fps, sample_rate=rate)
    playout = Playout(session, sink)
    task = asyncio.create_task(playout.run())
    try:
        await asyncio.sleep(0.3)  # warm-up
        cpu, wall = time.process_time(), time.perf_counter()
        speech, step = _speech(PUBLISH_MEASURE_SECONDS / 2, rate), rate // 10
        for i in range(0, speech.size, step):
            playout.push_audio(AudioChunk(speech[i : i + step], rate))
            await asyncio.sleep(0.1)
        playout.end_segment()
        await asyncio.sleep(PUBLISH_MEASURE_SECONDS / 2)
        return (time.process_time() - cpu) / (time.perf_counter() - wall)
    finally:
        playout.close()
        await task
        await sink.aclose()

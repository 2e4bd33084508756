"""Admission control: how many live sessions this machine can render in real time, measured, not guessed.

A session costs the CPU time of rendering ``fps`` frames per second (lip-sync inference + compositing) plus what
publishing them costs: conversions to ``rtc`` frames, LiveKit's native media threads, the event loop, and the GIL
that all sessions of the process share. The server measures the render part once, on its own avatar and backend,
adds :data:`PUBLISH_COST` (calibrated against ``bench/session.py``, which runs whole sessions through real
``rtc.AVSynchronizer`` s until frames come late) and admits at most
``cores * target_utilization / cost`` sessions (never more than ``server.max_sessions``), so one session too many is
answered with ``RESOURCE_EXHAUSTED`` instead of making every session drop frames.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np

from avaluma.core.media import AudioChunk
from avaluma.renderer.engine import RenderSession

#: Seconds of speech and idle rendered by :func:`measure_budget` (each half).
MEASURE_SECONDS: Final = 1.0
#: Cores one session's publishing keeps busy beyond rendering (a 25 fps, 512x512 session), added to the measured
#: render cost. Publishing does not shrink when rendering gets faster, so it is added, not a multiple. Calibrated with
#: ``bench/session.py`` on a 2-core machine (rendering measured at 3-5 % of a core per session): whole sessions
#: published through real AVSynchronizers stayed free of late frames up to 14 concurrent sessions once rendering moved
#: to a pool of one thread per core (6-8 before, with the same bench and machine). 0.13 admits 9 there, leaving room
#: for what a real room adds (every FFI event of the process wakes every waiting audio capture in livekit 1.1.21).
#: Re-calibrate when the pipeline changes: set it to about
#: ``cores * target_utilization / sustained sessions - measured cpu_per_session``.
PUBLISH_COST: Final = 0.13


@dataclass(frozen=True, slots=True)
class SessionBudget:
    """The measured cost of one session and the number of sessions it allows on this machine."""

    cpu_per_session: float  #: cores one session keeps busy rendering (0.1 = 10 % of one core), measured
    cores: int
    target_utilization: float
    fps: int
    publish_cost: float = PUBLISH_COST  #: cores publishing adds per session (:data:`PUBLISH_COST`, calibrated)

    @property
    def session_cost(self) -> float:
        """Cores one whole session keeps busy: rendering plus publishing."""
        return self.cpu_per_session + self.publish_cost

    @property
    def max_sessions(self) -> int:
        return max(1, math.floor(self.cores * self.target_utilization / max(self.session_cost, 1e-6)))

    def describe(self) -> str:
        return (
            f"one {self.fps} fps session needs about {self.cpu_per_session * 100:.0f} % of a CPU core to render "
            f"(measured) and about {self.session_cost * 100:.0f} % with publishing "
            f"(+{self.publish_cost * 100:.0f} %, calibrated), "
            f"so {self.cores} cores at {self.target_utilization:.0%} hold {self.max_sessions}"
        )


def available_cores() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def measure_budget(
    make_session: Callable[[], RenderSession], *, target_utilization: float = 0.8, cores: int | None = None
) -> SessionBudget:
    """Render :data:`MEASURE_SECONDS` of speech and of idle frames with a fresh session and time it (CPU time of
    this thread, so other load on the machine does not inflate the figure). Blocking: run it in a thread."""
    session = make_session()
    fps, rate = session.fps, 16_000
    t = np.arange(round(MEASURE_SECONDS * rate)) / rate
    speech = (0.3 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    idle_frames = round(MEASURE_SECONDS * fps)
    session.idle_frames(2)  # warm-up: caches, first-use allocations
    start = time.thread_time()
    step = rate // 10
    for i in range(0, speech.size, step):
        session.push_audio(AudioChunk(speech[i : i + step], rate))
    session.end_segment()
    session.idle_frames(idle_frames)
    cpu_s = time.thread_time() - start
    frames = round(MEASURE_SECONDS * fps) + idle_frames
    return SessionBudget(
        cpu_per_session=cpu_s / frames * fps,
        cores=cores or available_cores(),
        target_utilization=target_utilization,
        fps=fps,
    )

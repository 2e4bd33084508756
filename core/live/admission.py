"""Admission control: how many live sessions this machine can render in real time, measured, not guessed.

A session costs the CPU time of rendering ``fps`` frames per second (lip-sync inference + compositing) plus what
publishing them costs: conversions to ``rtc`` frames (RGB -> I420 at capture), LiveKit's native media threads, the
event loop, the GIL that all sessions of the process share, and the room's WebRTC video encoder, which costs more
than rendering. The server measures the render part once, on its own avatar and backend, adds :data:`PUBLISH_COST`
(calibrated with ``bench/session.py``: whole sessions through real ``rtc.AVSynchronizer`` s until frames come late,
plus the encoder's measured CPU per frame, checked against runs with a real encoder per published frame) and
admits at most ``cores * target_utilization / cost`` sessions (never more than ``server.max_sessions``), so one
session too many is answered with ``RESOURCE_EXHAUSTED`` instead of making every session drop frames.

The encoder counted is :data:`PUBLISH_CODEC`, VP8 with simulcast: LiveKit's default and the server's unless
``sessions.publish`` says otherwise (450 kbps at 25 fps plus a 360x450 layer at 225 kbps and 20 fps for a 512x640
frame). It is the most expensive of the offered choices: H.264 (x264 ultrafast; WebRTC's own software H.264 is
OpenH264) measured about 40 % cheaper per frame and one layer without simulcast about as much, so the budget errs
low for them.
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
#: Cores one session's publishing keeps busy beyond rendering (a 25 fps, 512x640 session published with
#: :data:`PUBLISH_CODEC`), added to the measured render cost. Publishing does not shrink when rendering gets faster,
#: so it is added, not a multiple. Calibrated from the encode-inclusive figure of ``bench/session.py --capacity``
#: (whole sessions through real AVSynchronizers, each with a real VP8 encoder at LiveKit's default layers, on the
#: 2-core dev machine under load average 4-5 from other work): one such session kept 33-34 % of a core busy
#: (the process's CPU time, every thread), of which rendering measured 10 %, so 0.24. Two cross-checks:
#:
#: - the earlier calibration without an encoder (0.13: 14 sessions sustained on 2 idle cores, 512x512 frames)
#:   plus what ``bench/session.py --encode-cost`` measured for the encoder alone (3.47 ms of CPU per 512x640 frame
#:   for VP8's two simulcast layers, 8.7 % of a core at 25 fps) gives 0.22;
#: - the same capacity run without an encoder measured 19-21 % per session, so VP8 added 12-13 % there (its
#:   stand-in converts RGB to I420 a second time, about 2 %).
#:
#: Re-calibrated on 30 Nov (22:10-22:22 UTC, load average 1.7-4.6 from other work) after the pipeline grew (render
#: 3.7 -> 4.2 ms a frame with expression motion): one VP8 session kept 38.4 % of a core busy with rendering measured
#: at 11 % (``--capacity``), 39 % with 10.5 % (``--sessions 2 --encode vp8``), 50.4 % with 16 % (``--capacity``,
#: heavier load): 0.27-0.34 publishing, so 0.28 (0.24 before).
#:
#: Re-calibrate when the pipeline or the codec changes: the encode-inclusive row's CPU per session minus the
#: measured ``cpu_per_session``, or ``cores * target_utilization / sustained sessions - cpu_per_session`` on an
#: otherwise idle machine.
PUBLISH_COST: Final = 0.28
#: The video codec :data:`PUBLISH_COST` counts the encoder of (LiveKit's default; the server publishes with it).
PUBLISH_CODEC: Final = "vp8"
#: How :data:`PUBLISH_COST` splits, for sessions with another fps or frame size than the measured one (shares of
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
    publish_cost: float = PUBLISH_COST  #: cores publishing adds per session (:data:`PUBLISH_COST`, calibrated)
    #: Pixels of the frames the measured session rendered and published (the default avatar's native size).
    pixels: int = 512 * 640

    @property
    def session_cost(self) -> float:
        """Cores one whole session keeps busy: rendering plus publishing."""
        return self.cpu_per_session + self.publish_cost

    @property
    def max_sessions(self) -> int:
        return max(1, math.floor(self.capacity + 1e-9))

    @property
    def capacity(self) -> float:
        """How many sessions like the measured one fit (``cores * target_utilization / session_cost``)."""
        return self.cores * self.target_utilization / max(self.session_cost, 1e-6)

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
            f"(+{self.publish_cost * 100:.0f} %, calibrated, {PUBLISH_CODEC.upper()} encoding included), "
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
        pixels=session.width * session.height,
    )

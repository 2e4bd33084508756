"""The lip-sync backend interface: streamed 16 kHz speech in, per-video-frame mouth parameters out.

Backends (``energy`` baseline, the trained ONNX model, Triton) register through the ``register_lipsync_backends`` hook.
The compositor only ever sees :class:`MouthFrames`, so backends and avatars evolve independently.

Frame timing contract: frame ``i`` of a segment covers audio ``[i / fps, (i + 1) / fps)`` seconds from its start.
``push`` returns the frames whose audio (plus the backend's lookahead) has fully arrived; ``flush`` returns the rest,
so a segment of ``n`` samples yields exactly ``ceil(n * fps / LIPSYNC_SAMPLE_RATE)`` frames in total.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

#: Sample rate every backend consumes; callers resample before ``push``.
LIPSYNC_SAMPLE_RATE = 16_000

#: Continuous mouth parameters, each in [0, 1], in this column order.
MOUTH_PARAMS: tuple[str, ...] = ("jaw_open", "lips_closed", "rounding", "stretch")
JAW_OPEN, LIPS_CLOSED, ROUNDING, STRETCH = range(len(MOUTH_PARAMS))

#: Mouth at rest: closed, relaxed lips.
REST_POSE = np.array([0.0, 1.0, 0.0, 0.0], dtype=np.float32)


@dataclass(frozen=True, slots=True)
class MouthFrames:
    """Mouth parameters for consecutive video frames.

    ``params`` has shape ``[n, len(MOUTH_PARAMS)]``; ``visemes`` (optional) has shape ``[n, n_visemes]`` with rows
    summing to 1.
    """

    params: npt.NDArray[np.float32]
    visemes: npt.NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return int(self.params.shape[0])

    @staticmethod
    def empty() -> MouthFrames:
        return MouthFrames(np.zeros((0, len(MOUTH_PARAMS)), dtype=np.float32))

    @staticmethod
    def concat(parts: list[MouthFrames]) -> MouthFrames:
        if not parts:
            return MouthFrames.empty()
        params = np.concatenate([p.params for p in parts], axis=0)
        vis = [p.visemes for p in parts if p.visemes is not None]
        visemes = np.concatenate(vis, axis=0) if len(vis) == len(parts) else None
        return MouthFrames(params, visemes)


@dataclass(frozen=True, slots=True)
class LipSyncFault:
    """A backend failed under a stream mid-session (its server died, a request errored or timed out), and what the
    stream did about it: ``fallback`` (it goes on with another model) or ``end`` (its calls now raise).

    Backends that depend on something outside the process report one through :attr:`LipSyncStream.fault`; whoever
    owns the session turns it into an event its client sees (see :func:`watch_faults`).
    """

    url: str  #: address of the service that failed (e.g. Triton's host:port)
    model: str  #: model name on that service
    error: str  #: what went wrong (exception type and message)
    action: Literal["fallback", "end"]
    at: float  #: ``time.time()``
    backend: str = ""  #: name of the backend that failed (``triton``)

    def describe(self) -> str:
        """One sentence for the client: what failed, where, and the policy that was applied."""
        who = f"lip-sync backend {self.backend!r}" if self.backend else "the lip-sync backend"
        if self.action == "fallback":
            then = "continuing with the in-process model (lipsync.options.on_failure: fallback)"
        else:
            then = "ending the session (lipsync.options.on_failure: end; use fallback to continue in-process)"
        return f"{who} at {self.url} failed mid-session ({self.error}); {then}"


class LipSyncStream(ABC):
    """Per-session streaming state of a backend. Not thread-safe; one owner."""

    #: Audio the backend needs beyond a frame's end before it can emit that frame.
    lookahead_s: float = 0.0
    #: The last fault this stream hit mid-session, or ``None``. A backend that can fail under a running session
    #: sets it (a new object per fault) before ``push`` / ``flush`` returns or raises; in-process backends never do.
    fault: LipSyncFault | None = None

    @abstractmethod
    def push(self, audio: npt.NDArray[np.float32]) -> MouthFrames:
        """Feed mono float32 audio at :data:`LIPSYNC_SAMPLE_RATE` (any length, including 0); return completed frames."""

    @abstractmethod
    def flush(self) -> MouthFrames:
        """End of segment: return all remaining frames (the last one padded with silence) and reset."""

    @abstractmethod
    def reset(self) -> None:
        """Drop all buffered audio and state (``clear``): the next push starts a new segment."""


class LipSyncBackend(ABC):
    """A lip-sync model shared by all sessions; :meth:`open_stream` creates cheap per-session state."""

    name: str = ""

    @abstractmethod
    def open_stream(self, *, fps: float) -> LipSyncStream:
        """Create a new per-session stream producing ``fps`` frames per second of audio."""

    def close(self) -> None:  # noqa: B027 - optional hook for backends holding resources
        """Release shared resources (model sessions, connections)."""


class _FaultWatchingStream(LipSyncStream):
    def __init__(self, inner: LipSyncStream, on_fault: Callable[[LipSyncFault], None]) -> None:
        self._inner = inner
        self._on_fault = on_fault
        self.fault = inner.fault
        self.lookahead_s = inner.lookahead_s

    def _check(self) -> None:
        fault = self._inner.fault
        if fault is not None and fault is not self.fault:
            self.fault = fault
            self._on_fault(fault)

    def push(self, audio: npt.NDArray[np.float32]) -> MouthFrames:
        try:
            return self._inner.push(audio)
        finally:  # also when the call raises: a fault under policy `end` is reported before its error propagates
            self._check()

    def flush(self) -> MouthFrames:
        try:
            return self._inner.flush()
        finally:
            self._check()

    def reset(self) -> None:
        try:
            self._inner.reset()
        finally:
            self._check()


class _FaultWatchingBackend(LipSyncBackend):
    def __init__(self, inner: LipSyncBackend, on_fault: Callable[[LipSyncFault], None]) -> None:
        self._inner = inner
        self._on_fault = on_fault
        self.name = inner.name

    def open_stream(self, *, fps: float) -> LipSyncStream:
        return _FaultWatchingStream(self._inner.open_stream(fps=fps), self._on_fault)

    def close(self) -> None:
        # The wrapped backend is shared by every session of the server; its owner closes it.
        return None


def watch_faults(backend: LipSyncBackend, on_fault: Callable[[LipSyncFault], None]) -> LipSyncBackend:
    """``backend`` whose streams call ``on_fault`` once per new :attr:`LipSyncStream.fault`, right after the ``push``,
    ``flush`` or ``reset`` that produced it (in the thread that made the call, before an error it raises propagates).

    For the owner of a session (the gRPC render stream, a LiveKit session), which hands the backend to a renderer
    and never sees the stream itself. Closing the returned backend does not close ``backend``.
    """
    return _FaultWatchingBackend(backend, on_fault)

"""The lip-sync backend interface: streamed 16 kHz speech in, per-video-frame mouth parameters out.

Backends (``energy`` baseline, the trained ONNX model, Triton) register through the ``register_lipsync_backends`` hook.
The compositor only ever sees :class:`MouthFrames`, so backends and avatars evolve independently.

Frame timing contract: frame ``i`` of a segment covers audio ``[i / fps, (i + 1) / fps)`` seconds from its start.
``push`` returns the frames whose audio (plus the backend's lookahead) has fully arrived; ``flush`` returns the rest,
so a segment of ``n`` samples yields exactly ``ceil(n * fps / LIPSYNC_SAMPLE_RATE)`` frames in total.

The base class owns the call: :meth:`LipSyncStream.push` cleans the audio once (:func:`clean_mono`), runs the
backend's ``_push`` inside the owner's :class:`LipSyncInstrumentation` (inference spans and latency, supplied by the
server; nothing by default) and reports a new :attr:`LipSyncStream.fault` to it. A backend implements only
``_push`` / ``_flush`` / ``_reset``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

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

    Backends that depend on something outside the process report one through :attr:`LipSyncStream.fault`; the base
    class hands each new one to the stream's :class:`LipSyncInstrumentation`, whose owner turns it into an event its
    client sees.
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


def clean_mono(audio: Any) -> npt.NDArray[np.float32]:
    """The one sanitiser of lip-sync input: mono float32 in [-1, 1]; NaN/inf become silence/full scale rather than
    poisoning every later frame. A ``[samples, channels]`` array is averaged (flattening would interleave channels)."""
    x = np.asarray(audio, dtype=np.float32)
    x = x.mean(axis=1, dtype=np.float32) if x.ndim == 2 else x.reshape(-1)
    if x.size and not np.isfinite(x).all():
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(x, -1.0, 1.0)


class LipSyncFailed(Exception):
    """A stream gave up on its session with a fault whose action is ``fallback``: whoever composed a fallback
    (:class:`~avaluma.renderer.lipsync.fallback.FallbackStream`) takes over from here."""

    def __init__(self, fault: LipSyncFault) -> None:
        super().__init__(fault.describe())
        self.fault = fault


class LipSyncInstrumentation:
    """What the owner of a stream hears about its calls. The default does nothing; the server supplies one with
    inference spans and latency (``avaluma.core.live.telemetry_render``) and a fault listener."""

    def call(self, op: str, samples: int, run: Callable[[], MouthFrames]) -> MouthFrames:
        """Run one inference call (``op`` is ``push`` or ``flush``); override to time or trace it."""
        return run()

    def faulted(self, fault: LipSyncFault) -> None:
        """A new fault of the stream, in the thread of the call that hit it, before an error it raises propagates."""


NO_INSTRUMENTATION: LipSyncInstrumentation = LipSyncInstrumentation()


class LipSyncStream(ABC):
    """Per-session streaming state of a backend. Not thread-safe; one owner.

    :meth:`push` / :meth:`flush` / :meth:`reset` are the public calls and are not overridden: a backend implements
    ``_push`` (already cleaned audio), ``_flush`` and ``_reset``.
    """

    #: Audio the backend needs beyond a frame's end before it can emit that frame.
    lookahead_s: float = 0.0
    #: The last fault this stream hit mid-session, or ``None``. A backend that can fail under a running session
    #: sets it (a new object per fault) before ``_push`` / ``_flush`` returns or raises; in-process backends never do.
    fault: LipSyncFault | None = None
    #: Set by the stream's owner (``RenderSession``): spans, latency and the fault listener.
    instrumentation: LipSyncInstrumentation = NO_INSTRUMENTATION

    def push(self, audio: npt.NDArray[np.float32]) -> MouthFrames:
        """Feed mono float32 audio at :data:`LIPSYNC_SAMPLE_RATE` (any length, including 0); return completed frames."""
        clean = clean_mono(audio)
        return self._observed_call("push", int(clean.size), lambda: self._push(clean))

    def flush(self) -> MouthFrames:
        """End of segment: return all remaining frames (the last one padded with silence) and reset."""
        return self._observed_call("flush", 0, self._flush)

    def reset(self) -> None:
        """Drop all buffered audio and state (``clear``): the next push starts a new segment."""
        seen = self.fault
        try:
            self._reset()
        finally:
            self._report_new_fault(seen)

    def _observed_call(self, op: str, samples: int, run: Callable[[], MouthFrames]) -> MouthFrames:
        seen = self.fault
        try:
            return self.instrumentation.call(op, samples, run)
        finally:  # also when the call raises: a fault under policy `end` is reported before its error propagates
            self._report_new_fault(seen)

    def _report_new_fault(self, seen: LipSyncFault | None) -> None:
        if self.fault is not None and self.fault is not seen:
            self.instrumentation.faulted(self.fault)

    @abstractmethod
    def _push(self, audio: npt.NDArray[np.float32]) -> MouthFrames:
        """:meth:`push` with the audio already cleaned (:func:`clean_mono`)."""

    @abstractmethod
    def _flush(self) -> MouthFrames: ...

    @abstractmethod
    def _reset(self) -> None: ...


class LipSyncBackend(ABC):
    """A lip-sync model shared by all sessions; :meth:`open_stream` creates cheap per-session state."""

    name: str = ""

    @abstractmethod
    def open_stream(self, *, fps: float) -> LipSyncStream:
        """Create a new per-session stream producing ``fps`` frames per second of audio."""

    def close(self) -> None:  # noqa: B027 - optional hook for backends holding resources
        """Release shared resources (model sessions, connections)."""

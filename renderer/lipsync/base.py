"""The lip-sync backend interface: streamed 16 kHz speech in, per-video-frame mouth parameters out.

Backends (``energy`` baseline, the trained ONNX model, Triton) register through the ``register_lipsync_backends`` hook.
The compositor only ever sees :class:`MouthFrames`, so backends and avatars evolve independently.

Frame timing contract: frame ``i`` of a segment covers audio ``[i / fps, (i + 1) / fps)`` seconds from its start.
``push`` returns the frames whose audio (plus the backend's lookahead) has fully arrived; ``flush`` returns the rest,
so a segment of ``n`` samples yields exactly ``ceil(n * fps / LIPSYNC_SAMPLE_RATE)`` frames in total.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

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


class LipSyncStream(ABC):
    """Per-session streaming state of a backend. Not thread-safe; one owner."""

    #: Audio the backend needs beyond a frame's end before it can emit that frame.
    lookahead_s: float = 0.0

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

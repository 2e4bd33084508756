"""A lip-sync stream that falls back to another one mid-session, without losing or repeating a frame.

:class:`FallbackStream` runs a *primary* stream (e.g. Triton's). When the primary gives up on the session by raising
:class:`LipSyncFailed`, it opens the *fallback* stream (e.g. the in-process ONNX model), replays the current segment's
audio into it, hands out only the frames the primary had not delivered yet, and stays on the fallback for the rest of
the session. The primary's fault becomes this stream's :attr:`~LipSyncStream.fault`, so the session's owner hears it
once through the stream's instrumentation. Keeping the segment's audio costs 64 kB per second of open segment.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.base import LipSyncFailed, LipSyncStream, MouthFrames

F32 = npt.NDArray[np.float32]


class FallbackStream(LipSyncStream):
    """``primary`` until it raises :class:`LipSyncFailed`, then a fresh ``make_fallback()`` for the rest."""

    def __init__(self, primary: LipSyncStream, make_fallback: Callable[[], LipSyncStream]) -> None:
        self._primary = primary
        self._make_fallback = make_fallback
        self._fallback: LipSyncStream | None = None
        self._segment: list[F32] = []
        self._emitted = 0
        self.lookahead_s = primary.lookahead_s

    @property
    def primary(self) -> LipSyncStream:
        return self._primary

    @property
    def using_fallback(self) -> bool:
        """True once the primary failed and the fallback took over."""
        return self._fallback is not None

    def _push(self, audio: F32) -> MouthFrames:
        if self._fallback is not None:
            return self._fallback.push(audio)
        self._segment.append(audio)
        try:
            frames = self._primary.push(audio)
        except LipSyncFailed as failed:
            return self._switch(failed, flush=False)
        self._emitted += len(frames)
        return frames

    def _flush(self) -> MouthFrames:
        if self._fallback is not None:
            return self._fallback.flush()
        try:
            frames = self._primary.flush()
        except LipSyncFailed as failed:
            return self._switch(failed, flush=True)
        self._new_segment()
        return frames

    def _reset(self) -> None:
        if self._fallback is not None:
            self._fallback.reset()
            return
        self._new_segment()
        try:
            self._primary.reset()
        except LipSyncFailed as failed:  # nothing to replay after a reset: just move over
            self.fault = failed.fault
            self._fallback = self._make_fallback()

    def _switch(self, failed: LipSyncFailed, *, flush: bool) -> MouthFrames:
        self.fault = failed.fault
        fallback = self._make_fallback()
        audio = np.concatenate(self._segment) if self._segment else np.zeros(0, dtype=np.float32)
        frames = fallback.push(audio)
        if flush:
            frames = MouthFrames.concat([frames, fallback.flush()])
        emitted = self._emitted
        self._new_segment()
        self._fallback = fallback
        if emitted <= 0:
            return frames
        return MouthFrames(frames.params[emitted:], None if frames.visemes is None else frames.visemes[emitted:])

    def _new_segment(self) -> None:
        self._segment = []
        self._emitted = 0

"""The render engine of one stream: audio in, lip-synced frames with their matching audio out.

Pure and synchronous (no I/O, no asyncio), so the CLI, the gRPC ``RenderService`` and LiveKit sessions all drive the
same code. A/V alignment holds by construction: every :class:`RenderedFrame` carries exactly
``audio_sample_rate / fps`` samples of the audio that plays during that frame (silence when idle).

Playback events mirror LiveKit's avatar contract: ``started`` when the first frame of a segment is emitted,
``finished`` after its last frame (``interrupted=True`` when cut short by :meth:`RenderSession.clear`).

INTERFACE CONTRACT (issue 2): implemented by the renderer owner; the gRPC server codes against these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from avaluma.core.media import AudioChunk  # noqa: F401 - used by RenderSession (added by the renderer)


@dataclass(frozen=True, slots=True)
class RenderedFrame:
    index: int  #: frame number since the stream started (idle frames included)
    pts_us: int  #: presentation time in microseconds, ``index * 1e6 / fps`` rounded
    rgb: npt.NDArray[np.uint8]  #: H x W x 3
    audio: npt.NDArray[np.float32]  #: mono, ``audio_sample_rate / fps`` samples
    speaking: bool  #: True while the frame belongs to an audio segment


@dataclass(frozen=True, slots=True)
class PlaybackEvent:
    kind: Literal["started", "finished"]
    segment: int  #: segment number since the stream started, from 0
    position_s: float  #: seconds of the segment played when the event happened
    interrupted: bool = False


RenderOutput = RenderedFrame | PlaybackEvent

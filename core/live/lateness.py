"""Is this server keeping up? The late-frame ratio of all its live sessions over the last few seconds.

Admission (:class:`~avaluma.core.live.sessions.SessionSlots`) counts a measured cost per session against all the
cores of the machine. On a machine where other processes take CPU, that admits more sessions than are rendered in
time. :class:`LatenessWatch` is the runtime check behind it: every paced playout of the server reports each frame
it publishes, on time or late (:class:`~avaluma.core.live.playout.Playout`), and while more than
:data:`LATE_RATIO_LIMIT` of the frames of the last :data:`WINDOW_S` seconds came late, the server admits nothing new
(``free`` is 0, a start is refused with ``RESOURCE_EXHAUSTED``). It admits again once lateness stops: the late frames
age out of the window. Frames are kept per session (``key``): the frames of a session that ended no longer count.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Final

#: Seconds of frames the ratio is taken over.
WINDOW_S: Final = 5.0
#: Admission stops while more than this share of the window's frames came late ...
LATE_RATIO_LIMIT: Final = 0.02
#: ... and at least this many did (one stray late frame, e.g. a garbage collection, does not stop admission).
MIN_LATE_FRAMES: Final = 3
#: Resolution of the window: frames are counted per bucket of this many seconds.
BUCKET_S: Final = 0.5


class LatenessWatch:
    """Frames published and frames late, over the last ``window_s`` seconds of ``clock`` (see the module docstring).
    Called from the event loop the playouts run on (not thread-safe)."""

    def __init__(
        self,
        *,
        window_s: float = WINDOW_S,
        limit: float = LATE_RATIO_LIMIT,
        min_late: int = MIN_LATE_FRAMES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.limit = limit
        self.min_late = min_late
        self._clock = clock
        #: Per session: ``[bucket index, frames, late frames]``, oldest first.
        self._buckets: dict[object, deque[list[int]]] = {}

    def frame(self, late: bool, key: object = None) -> None:
        """Session ``key`` published a frame, ``late`` or on time."""
        index = int(self._clock() // BUCKET_S)
        buckets = self._buckets.setdefault(key, deque())
        if not buckets or buckets[-1][0] != index:
            buckets.append([index, 0, 0])
            self._trim(buckets)
        bucket = buckets[-1]
        bucket[1] += 1
        bucket[2] += int(late)

    def forget(self, key: object) -> None:
        """Session ``key`` ended: its frames no longer count."""
        self._buckets.pop(key, None)

    def counts(self) -> tuple[int, int]:
        """Frames published and frames late within the window, all sessions together."""
        frames = late = 0
        for buckets in self._buckets.values():
            self._trim(buckets)
            frames += sum(b[1] for b in buckets)
            late += sum(b[2] for b in buckets)
        return frames, late

    def _trim(self, buckets: deque[list[int]]) -> None:
        oldest = int((self._clock() - self.window_s) // BUCKET_S) + 1
        while buckets and buckets[0][0] < oldest:
            buckets.popleft()

    def behind(self) -> bool:
        """Whether the sessions are missing their frame deadlines now (admission then stops)."""
        frames, late = self.counts()
        return late >= self.min_late and late > self.limit * frames

    def describe(self) -> str:
        frames, late = self.counts()
        share = late / frames if frames else 0.0
        return f"{late} of its last {frames} frames ({share:.0%}) came late in the last {self.window_s:g} s"

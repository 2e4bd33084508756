"""One session's animation: raw mouth parameters in, finished frames out, with smoothing and idle life.

:class:`Animator` owns the per-session state the compositor deliberately lacks: the mouth smoother, the idle motion
generator (blinks, breathing, head sway, ``idle``/``listening``/``thinking``), the speech activity that decides how
firmly closures press the lips, and the frame counter. It is pure and synchronous;
:class:`~avaluma.renderer.engine.RenderSession` drives one per stream.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from avaluma.core.media import check_emotion
from avaluma.renderer.avatar import Avatar
from avaluma.renderer.compositor import Compositor
from avaluma.renderer.idle import IdleConfig, IdleMotion, IdlePose
from avaluma.renderer.lipsync.base import JAW_OPEN, REST_POSE
from avaluma.renderer.smoothing import MouthSmoother

U8 = npt.NDArray[np.uint8]

#: How long lips keep "speaking" (pressing shut on closures) after the jaw last opened; faster once speech is over.
ACTIVITY_DECAY_S = 0.35
SILENCE_DECAY_S = 0.1


class Animator:
    """Frames for one session. Not thread-safe: one owner."""

    def __init__(self, avatar: Avatar, *, fps: float, seed: int = 0, idle: IdleConfig | None = None) -> None:
        self.compositor = Compositor(avatar, seed=seed)
        self.idle = IdleMotion(idle, fps=fps, seed=seed)
        self.smoother = MouthSmoother(fps=fps)
        self._decay = math.exp(-1.0 / (ACTIVITY_DECAY_S * fps))
        self._silence_decay = math.exp(-1.0 / (SILENCE_DECAY_S * fps))
        self._activity = 0.0
        self._frame = 0
        self.last_pose = IdlePose()
        self.last_params = REST_POSE.copy()
        self._emotion = "neutral"

    def set_state(self, state: str) -> None:
        """``idle``, ``listening`` or ``thinking`` (see :mod:`avaluma.renderer.idle`)."""
        self.idle.set_state(state)

    @property
    def state(self) -> str:
        return self.idle.state

    def set_emotion(self, emotion: str) -> None:
        """One of :data:`~avaluma.core.media.EMOTIONS` (:class:`InvalidArgument` otherwise)."""
        self._emotion = check_emotion(emotion)

    @property
    def emotion(self) -> str:
        return self._emotion

    def reset_mouth(self) -> None:
        """Interruption: the next frame starts from the rest pose instead of easing out of the last shape."""
        self.smoother.reset()
        self._activity = 0.0

    def next_frame(self, params: npt.NDArray[np.floating] | None, *, speaking: bool) -> U8:
        """The next frame for raw mouth ``params`` (``None``: silence, the mouth eases to rest)."""
        smoothed = self.smoother(REST_POSE if params is None else params)
        decay = self._decay if speaking else self._silence_decay
        self._activity = max(float(smoothed[JAW_OPEN]), self._activity * decay)
        if self._activity < 0.02:
            self._activity = 0.0
        press = min(1.0, 4.0 * self._activity)
        pose = self.idle.step(speaking=speaking)
        frame = self.compositor.render(smoothed, pose=pose, press=press, frame=self._frame)
        self._frame += 1
        self.last_pose, self.last_params = pose, smoothed
        return frame

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
from avaluma.renderer.expression import NEUTRAL, ExpressionPose
from avaluma.renderer.expression_motion import ExpressionMotion
from avaluma.renderer.idle import IdleConfig, IdleMotion, IdlePose
from avaluma.renderer.lipsync.base import JAW_OPEN, REST_POSE
from avaluma.renderer.prosody import ProsodyFeatures, ProsodyFrame, ProsodyTracker
from avaluma.renderer.smoothing import MouthSmoother

U8 = npt.NDArray[np.uint8]

#: How long lips keep "speaking" (pressing shut on closures) after the jaw last opened; faster once speech is over.
ACTIVITY_DECAY_S = 0.35
SILENCE_DECAY_S = 0.1


class Animator:
    """Frames for one session. Not thread-safe: one owner."""

    def __init__(
        self,
        avatar: Avatar,
        *,
        fps: float,
        seed: int = 0,
        idle: IdleConfig | None = None,
        expressions: bool = True,
        emotion: str = "neutral",
    ) -> None:
        self.compositor = Compositor(avatar)
        self.idle = IdleMotion(idle, fps=fps, seed=seed)
        #: Expression motion (emotion + prosody-driven brows, nods, tilts, glances, blink timing); ``None`` when
        #: expressions are off, which renders exactly the frames of a renderer without them. With idle life off only
        #: the emotion shows (the face stays still otherwise).
        #: The emotion a session starts with shows from its first frame; later changes are eased.
        self._emotion = check_emotion(emotion)
        self.motion = (
            ExpressionMotion(fps, seed, emotion=emotion, prosody=self.idle.config.enabled) if expressions else None
        )
        self.prosody = ProsodyTracker(fps) if expressions else None
        self.last_expression: ExpressionPose = NEUTRAL
        self.last_prosody: ProsodyFeatures | None = None
        self.smoother = MouthSmoother(fps=fps)
        self._decay = math.exp(-1.0 / (ACTIVITY_DECAY_S * fps))
        self._silence_decay = math.exp(-1.0 / (SILENCE_DECAY_S * fps))
        self._activity = 0.0
        self._frame = 0
        self.last_pose = IdlePose()
        self.last_params = REST_POSE.copy()

    def set_state(self, state: str) -> None:
        """``idle``, ``listening`` or ``thinking`` (see :mod:`avaluma.renderer.idle`)."""
        self.idle.set_state(state)

    @property
    def state(self) -> str:
        return self.idle.state

    def set_emotion(self, emotion: str) -> None:
        """One of :data:`~avaluma.core.media.EMOTIONS` (:class:`InvalidArgument` otherwise)."""
        self._emotion = check_emotion(emotion)
        if self.motion is not None:
            self.motion.set_emotion(self._emotion)

    @property
    def emotion(self) -> str:
        return self._emotion

    def reset_mouth(self) -> None:
        """Interruption: the next frame starts from the rest pose instead of easing out of the last shape."""
        self.smoother.reset()
        self._activity = 0.0

    @property
    def expressions(self) -> bool:
        return self.motion is not None

    def next_frame(
        self,
        params: npt.NDArray[np.floating] | None,
        *,
        speaking: bool,
        prosody: ProsodyFrame | None = None,
        voice: float | None = None,
    ) -> U8:
        """The next frame for raw mouth ``params`` (``None``: silence, the mouth eases to rest).

        ``prosody`` is the frame's acoustic measurement (:class:`~avaluma.renderer.prosody.ProsodyAnalyzer`, fed the
        lip-sync audio) and ``voice`` the lip-sync model's speech probability for it. Without ``voice`` (the energy
        backend has no speech classes) the frame's loudness against the speaker's syllables decides: the energy
        backend's jaw is that loudness too, but smoothed with a release that hides the pauses between words. Both are
        ignored when expressions are off.
        """
        smoothed = self.smoother(REST_POSE if params is None else params)
        decay = self._decay if speaking else self._silence_decay
        self._activity = max(float(smoothed[JAW_OPEN]), self._activity * decay)
        if self._activity < 0.02:
            self._activity = 0.0
        press = min(1.0, 4.0 * self._activity)
        if self.motion is None or self.prosody is None:
            pose = self.idle.step(speaking=speaking)
            frame = self.compositor.render(smoothed, pose=pose, press=press, frame=self._frame)
        else:
            features = self.prosody.step(prosody, voice)
            motion = self.motion.step(features)
            pose = self.idle.step(
                speaking=speaking,
                blink_ok=motion.blink.ok,
                blink_prefer=motion.blink.prefer,
                head_gain=motion.head_gain,
            )
            if motion.nod:
                pose = IdlePose(pose.blink, pose.head_dx, pose.head_dy + motion.nod)
            frame = self.compositor.render(
                smoothed, pose=pose, press=press, frame=self._frame, expression=motion.expression
            )
            self.last_expression, self.last_prosody = motion.expression, features
        self._frame += 1
        self.last_pose, self.last_params = pose, smoothed
        return frame

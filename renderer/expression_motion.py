"""The per-frame expression motion: the session's emotion plus what the speech's prosody asks for.

:class:`ExpressionMotion` turns each frame's :class:`~avaluma.renderer.prosody.ProsodyFeatures` and the current
emotion into an :class:`~avaluma.renderer.expression.ExpressionPose`, an extra head nod (added to the idle pose's
``head_dy``) and a blink preference for :class:`~avaluma.renderer.idle.IdleMotion`:

- pitch accents lift the brows briefly (rise in ~0.1 s, back in ~0.4 s);
- stressed syllables give a small nod, phrase ends a slightly larger one;
- phrase boundaries tilt the head a little (alternating sides) and may glance aside, the eyes coming back to the
  camera within a second;
- blinks wait out words and come in pauses (:class:`BlinkHint`);
- emotions set held targets (a happy smile stays through speech), eased over ~0.4 s.

Everything moves through critically damped followers with a rate limit per channel, so no field ever changes by more
than :data:`MAX_RATE` per second, whatever the speech or the emotion switches do. Pure and deterministic: the same
features, emotion calls and seed give the same poses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avaluma.core.media import check_emotion
from avaluma.renderer.expression import NEUTRAL, ExpressionPose
from avaluma.renderer.prosody import ProsodyFeatures

#: Held targets per emotion: (brow_raise, brow_inner, smile, motion scale). The motion scale sizes the
#: prosody-driven movement and the idle head sway (a serious face moves its head less).
EMOTION_TARGETS: dict[str, tuple[float, float, float, float]] = {
    "neutral": (0.0, 0.0, 0.0, 1.0),
    "happy": (0.12, 0.0, 0.7, 1.1),
    "serious": (0.0, -0.6, 0.0, 0.55),
    "surprised": (0.8, 0.0, 0.0, 1.0),
    "concerned": (0.0, 0.7, 0.0, 0.8),
}

#: Amplitudes of the prosody-driven motion at motion scale 1.
BROW_PULSE = 0.4  #: brow_raise added on a pitch accent (0.014 face widths: ~3 px on a 512x640 portrait)
BROW_HOLD_S = 0.12  #: how long the accent's target is held before it decays
STRESS_NOD = 0.0035  #: head_dy (face widths, down) on a stressed syllable
PHRASE_NOD = 0.006  #: on a phrase end
NOD_HOLD_S = 0.1
NOD_REFRACTORY_S = 0.5
TILT = (0.012, 0.028)  #: head_roll range (radians) a phrase boundary tilts to, alternating sides
TILT_CHANCE = 0.5  #: share of phrase ends that tilt the head (every one would rock it like a metronome)
TILT_HOLD_S = (1.0, 2.0)  #: how long a tilt is held before the head comes upright again (people rarely hold one)
GAZE_CHANCE = 0.6  #: share of phrase ends that glance aside
GAZE_DX = (0.035, 0.08)
GAZE_DY = (-0.05, 0.01)
GAZE_HOLD_S = (0.5, 1.0)

# Channels of the follower: emotion (3), brow pulse, nod, roll, gaze x, gaze y, head sway gain.
_EMO_RAISE, _EMO_INNER, _EMO_SMILE, _PULSE, _NOD, _ROLL, _GX, _GY, _SCALE = range(9)
#: Angular frequency (1/s) of the critically damped followers, moving up / moving down. 10/s reaches 90 % of a step
#: in ~0.39 s: the ~0.4 s easing of an emotion change.
_OMEGA_UP = np.array([10.0, 10.0, 10.0, 30.0, 22.0, 5.0, 16.0, 16.0, 10.0])
_OMEGA_DOWN = np.array([10.0, 10.0, 10.0, 9.0, 9.0, 5.0, 12.0, 12.0, 10.0])
#: Rate limit per channel, units per second.
_RATE = np.array([3.0, 3.0, 3.0, 4.0, 0.05, 0.08, 0.8, 0.8, 1.0])
#: A channel this close to its target (and this slow) is settled and snaps onto it: well under a tenth of a pixel at
#: normal face sizes, and it lets the compositor skip work for motion that has died away (a critically damped tail
#: would otherwise keep a 0.001-degree head tilt alive for seconds).
_SETTLED = np.array([0.002, 0.002, 0.002, 0.002, 2e-5, 3e-4, 0.001, 0.001, 0.002])

#: The most any output changes per second (per frame: divide by fps); tests hold the motion to these.
MAX_RATE: dict[str, float] = {
    "brow_raise": float(_RATE[_EMO_RAISE] + _RATE[_PULSE]),
    "brow_inner": float(_RATE[_EMO_INNER]),
    "smile": float(_RATE[_EMO_SMILE]),
    "head_roll": float(_RATE[_ROLL]),
    "gaze_dx": float(_RATE[_GX]),
    "gaze_dy": float(_RATE[_GY]),
    "nod": float(_RATE[_NOD]),
    "head_gain": float(_RATE[_SCALE]),
}


@dataclass(frozen=True, slots=True)
class BlinkHint:
    """What the speech says about blinking now: ``ok`` False mid-word (a due blink waits), ``prefer`` True in a
    pause (a blink that is nearly due may come now)."""

    ok: bool = True
    prefer: bool = False


@dataclass(frozen=True, slots=True)
class MotionFrame:
    expression: ExpressionPose
    nod: float  #: added to the idle pose's head_dy (face widths, positive down)
    blink: BlinkHint
    #: Multiplies the idle head sway (the emotion's motion scale, eased): 1 neutral, less when serious.
    head_gain: float = 1.0
    brow_event: bool = False  #: a brow raise starts on this frame (a pitch accent)
    nod_event: bool = False  #: a nod starts on this frame (a stressed syllable or a phrase end)


class ExpressionMotion:
    """Per-session expression motion; :meth:`step` once per frame. Not thread-safe; one owner.

    ``prosody=False`` keeps only the emotion (no brow pulses, nods, tilts, glances or blink steering): what a session
    with idle life turned off gets.
    """

    def __init__(self, fps: float, seed: int = 0, *, emotion: str = "neutral", prosody: bool = True) -> None:
        self._dt = 1.0 / float(fps)
        self._fps = float(fps)
        self._prosody = prosody
        # Its own stream, so the idle motion's draws (same seed) are not shifted by speech events.
        self._rng = np.random.default_rng([seed % 2**64, 0x45585052])
        self._emotion = check_emotion(emotion)
        self._x = np.zeros(len(_RATE))
        self._v = np.zeros(len(_RATE))
        self._target = np.zeros(len(_RATE))
        raise_, inner, smile, scale = EMOTION_TARGETS[self._emotion]
        self._target[[_EMO_RAISE, _EMO_INNER, _EMO_SMILE, _SCALE]] = raise_, inner, smile, scale
        self._x[:] = self._target  # the emotion a session starts with is there from its first frame
        self._pulse_left = 0
        self._nod_left = 0
        self._since_nod = 10**9
        self._gaze_left = 0
        self._tilt_left = 0
        self._tilt_side = 1.0 if self._rng.random() < 0.5 else -1.0

    @property
    def emotion(self) -> str:
        return self._emotion

    def set_emotion(self, emotion: str) -> None:
        """Ease to ``emotion``'s targets over ~0.4 s; unknown names raise :class:`InvalidArgument`."""
        self._emotion = check_emotion(emotion)

    def step(self, features: ProsodyFeatures) -> MotionFrame:
        """The motion of the next frame, from its prosody (:data:`~avaluma.renderer.prosody.QUIET` when silent)."""
        raise_, inner, smile, scale = EMOTION_TARGETS[self._emotion]
        t = self._target
        t[_EMO_RAISE], t[_EMO_INNER], t[_EMO_SMILE], t[_SCALE] = raise_, inner, smile, scale
        blink = BlinkHint()
        brow = nod = False
        if self._prosody:
            brow, nod = self._events(features, scale)
            # A pause in speech invites the blink; a long silence is plain idle time with the plain timer.
            blink = BlinkHint(ok=not features.speaking, prefer=0.12 <= features.pause_s <= 2.0)
        else:
            t[_PULSE:_SCALE] = 0.0
        self._follow()
        x = self._x
        pose = ExpressionPose(
            brow_raise=float(min(1.0, max(0.0, x[_EMO_RAISE] + x[_PULSE]))),
            brow_inner=float(min(1.0, max(-1.0, x[_EMO_INNER]))),
            smile=float(min(1.0, max(0.0, x[_EMO_SMILE]))),
            head_roll=float(x[_ROLL]),
            gaze_dx=float(x[_GX]),
            gaze_dy=float(x[_GY]),
        )
        if pose.is_neutral:
            pose = NEUTRAL
        return MotionFrame(pose, float(x[_NOD]), blink, float(x[_SCALE]), brow, nod)

    def _events(self, f: ProsodyFeatures, scale: float) -> tuple[bool, bool]:
        """Start the motion this frame's events ask for; ``(brow raise started, nod started)``."""
        t, fps, rng = self._target, self._fps, self._rng
        self._since_nod += 1
        if f.accent:
            t[_PULSE] = BROW_PULSE * scale * float(rng.uniform(0.85, 1.15))
            self._pulse_left = max(1, round(BROW_HOLD_S * fps))
        elif self._pulse_left > 0:
            self._pulse_left -= 1
            if self._pulse_left == 0:
                t[_PULSE] = 0.0
        nod = PHRASE_NOD if f.phrase_end else STRESS_NOD if f.stress else 0.0
        nodded = bool(nod) and (f.phrase_end or self._since_nod >= NOD_REFRACTORY_S * fps)
        if nodded:
            t[_NOD] = nod * scale * float(rng.uniform(0.8, 1.2))
            self._nod_left = max(1, round(NOD_HOLD_S * fps))
            self._since_nod = 0
        elif self._nod_left > 0:
            self._nod_left -= 1
            if self._nod_left == 0:
                t[_NOD] = 0.0
        if f.phrase_end:
            if rng.random() < TILT_CHANCE:
                self._tilt_side = -self._tilt_side
                t[_ROLL] = self._tilt_side * float(rng.uniform(*TILT)) * scale
                self._tilt_left = max(1, round(float(rng.uniform(*TILT_HOLD_S)) * fps))
            if rng.random() < GAZE_CHANCE:
                t[_GX] = float(rng.choice([-1.0, 1.0]) * rng.uniform(*GAZE_DX))
                t[_GY] = float(rng.uniform(*GAZE_DY))
                self._gaze_left = max(1, round(float(rng.uniform(*GAZE_HOLD_S)) * fps))
        elif self._gaze_left > 0:
            self._gaze_left -= 1
            if self._gaze_left == 0:
                t[_GX] = t[_GY] = 0.0
        if not f.phrase_end and self._tilt_left > 0:
            self._tilt_left -= 1
            if self._tilt_left == 0:
                t[_ROLL] = 0.0
        if f.speaking:
            self._gaze_left = min(self._gaze_left, max(1, round(0.3 * fps)))  # talking again: eyes back to camera
        return f.accent, nodded

    def _follow(self) -> None:
        """One frame of the critically damped followers (exact for any frame time), then the rate limits."""
        dt, x, v, g = self._dt, self._x, self._v, self._target
        omega = np.where(g > x, _OMEGA_UP, _OMEGA_DOWN)
        y = x - g
        e = np.exp(-omega * dt)
        j = (v + omega * y) * dt
        new_x = g + (y + j) * e
        new_v = (v - omega * j) * e
        step = np.clip(new_x - x, -_RATE * dt, _RATE * dt)
        limited = step != new_x - x
        new_v[limited] = step[limited] / dt
        new_x = x + step
        # Settled channels snap onto their target (within the rate limit), so motion that has died away renders
        # exactly as none.
        settled = (np.abs(new_x - g) < _SETTLED) & (np.abs(new_v) * dt < _SETTLED) & (np.abs(g - x) <= _RATE * dt)
        new_x[settled] = g[settled]
        new_v[settled] = 0.0
        self._x = new_x
        self._v = new_v

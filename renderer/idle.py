"""Idle life: blinks, breathing and small head motion, with ``idle`` / ``listening`` / ``thinking`` states.

:class:`IdleMotion` is a pure, deterministic generator: the same seed, fps and sequence of :meth:`IdleMotion.set_state`
calls give the same poses, frame for frame. It knows nothing about pixels; the compositor turns an :class:`IdlePose`
into eyelid and head movement. Amplitudes are fractions of the face width, so they look the same at any resolution.

- Blinks: the gap between two blinks is drawn from ``blink_interval_s`` (a bell-shaped distribution inside the
  range, so blinks never come in machine-like rhythm and never fall outside it); a blink closes in ~40 % of
  ``blink_duration_s`` and opens more slowly. While the avatar speaks, the expression motion steers them: a blink due
  mid-word waits for the word to end (at most :data:`BLINK_WAIT_MAX_S`), one nearly due comes early in a pause.
- Breathing: a slow rise and fall of the head (``breath_period_s``), with a little irregularity.
- Head motion: a sum of slow sinusoids with seeded frequencies and phases; a bit livelier while speaking.
- States: ``listening`` leans in slightly with small nods; ``thinking`` looks up and aside with narrowed eyes.
  Switching eases over ~0.4 s, never jumps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from avaluma.core.errors import InvalidArgument

IdleState = Literal["idle", "listening", "thinking"]
IDLE_STATES: tuple[str, ...] = get_args(IdleState)


class IdleConfig(BaseModel):
    """How alive an avatar looks when it is not speaking (and between words)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="False renders a still face (only the mouth moves).")
    blink_interval_s: tuple[float, float] = Field((2.0, 6.0), description="Shortest and longest gap between blinks.")
    blink_duration_s: float = Field(0.24, gt=0.05, le=1.0, description="How long one blink takes.")
    breath_period_s: float = Field(4.2, gt=1.0, le=20.0, description="Seconds per breath.")
    breath_amount: float = Field(0.006, ge=0, le=0.05, description="Head rise per breath (fraction of face width).")
    head_motion: float = Field(0.012, ge=0, le=0.05, description="Head sway amplitude (fraction of face width).")

    @model_validator(mode="after")
    def _interval_ordered(self) -> IdleConfig:
        lo, hi = self.blink_interval_s
        if not 0.5 <= lo <= hi <= 60:
            raise ValueError("blink_interval_s must be (shortest, longest) with 0.5 <= shortest <= longest <= 60")
        return self


@dataclass(frozen=True, slots=True)
class IdlePose:
    """One frame of idle life. ``blink`` 0 open .. 1 shut; head offsets in fractions of the face width."""

    blink: float = 0.0
    head_dx: float = 0.0
    head_dy: float = 0.0

    @property
    def is_still(self) -> bool:
        return self.blink < 1e-3 and abs(self.head_dx) < 1e-5 and abs(self.head_dy) < 1e-5


STILL = IdlePose()

#: Longest a due blink waits for a word to end; the most it can come early in a pause.
BLINK_WAIT_MAX_S = 1.0
BLINK_EARLY_S = 0.8

# State targets: (head dx, head dy, eyes narrowed, nod amplitude) in face-width fractions.
_STATE_TARGETS: dict[str, tuple[float, float, float, float]] = {
    "idle": (0.0, 0.0, 0.0, 0.0),
    "listening": (0.0, 0.008, 0.0, 0.006),
    "thinking": (-0.014, -0.012, 0.22, 0.0),
}


class IdleMotion:
    """Per-session idle pose generator; call :meth:`step` once per frame."""

    def __init__(self, config: IdleConfig | None = None, *, fps: float, seed: int = 0) -> None:
        self.config = config or IdleConfig()
        self._fps = float(fps)
        # Seeds come from the API as any int64 (and from config as any int); numpy takes only non-negative ones, so
        # every seed is mapped once, here, onto 0..2**64-1 (distinct int64 seeds stay distinct).
        self._rng = np.random.default_rng(seed % 2**64)
        self._frame = 0
        self._state: str = "idle"
        self._offset = np.zeros(4)  # eased dx, dy, narrow, nod amplitude
        self._ease = 1.0 - math.exp(-1.0 / (0.4 * self._fps))
        # Three slow sinusoids per axis: frequencies (Hz), phases, relative amplitudes.
        self._freq = self._rng.uniform(0.06, 0.35, size=(2, 3))
        self._phase = self._rng.uniform(0, 2 * math.pi, size=(2, 3))
        self._amp = self._rng.uniform(0.5, 1.0, size=(2, 3))
        self._amp /= self._amp.sum(axis=1, keepdims=True)
        self._breath_phase = float(self._rng.uniform(0, 2 * math.pi))
        self._next_blink = self._frame_of(self._draw_interval() * float(self._rng.uniform(0.3, 1.0)))
        self._blink_start: int | None = None
        self._last_blink_end = -(10**9)
        self._wait_max = round(BLINK_WAIT_MAX_S * self._fps)
        self._early = round(BLINK_EARLY_S * self._fps)
        self.blink_frames: list[int] = []  #: frames at which blinks started (for tests and previews)

    @property
    def state(self) -> str:
        return self._state

    def set_state(self, state: str) -> None:
        """Switch to ``idle``, ``listening`` or ``thinking`` (eased over ~0.4 s)."""
        if state not in IDLE_STATES:
            raise InvalidArgument(f"unknown avatar state {state!r}: use one of {', '.join(IDLE_STATES)}")
        self._state = state

    def _draw_interval(self) -> float:
        lo, hi = self.config.blink_interval_s
        return lo + (hi - lo) * float(self._rng.beta(2.0, 2.0))

    def _frame_of(self, seconds: float) -> int:
        return self._frame + max(1, round(seconds * self._fps))

    def step(
        self, *, speaking: bool = False, blink_ok: bool = True, blink_prefer: bool = False, head_gain: float = 1.0
    ) -> IdlePose:
        """The pose of the next frame.

        ``blink_ok=False`` (mid-word) holds back a blink that is due, for at most :data:`BLINK_WAIT_MAX_S`, so blinks
        still come within the configured interval plus that; ``blink_prefer=True`` (a pause in speech) lets a blink
        that is due within :data:`BLINK_EARLY_S` come now, provided the shortest interval has passed. The defaults
        give the plain timer. ``head_gain`` scales the head sway (an emotion's calmer or livelier head).
        """
        c = self.config
        i = self._frame
        self._frame += 1
        if not c.enabled:
            return STILL
        t = i / self._fps
        target = np.array(_STATE_TARGETS[self._state])
        self._offset += self._ease * (target - self._offset)
        dx_o, dy_o, narrow, nod = self._offset

        # Blinks.
        due = i >= self._next_blink
        if due and not blink_ok and i - self._next_blink < self._wait_max:
            due = False  # mid-word: wait for the word to end
        if (
            not due
            and blink_prefer
            and blink_ok
            and self._next_blink - i <= self._early
            and i - self._last_blink_end >= c.blink_interval_s[0] * self._fps
        ):
            due = True  # a pause: blink now rather than in the next word
        if self._blink_start is None and due:
            self._blink_start = i
            self.blink_frames.append(i)
        blink = 0.0
        if self._blink_start is not None:
            u = (i - self._blink_start + 0.5) / (c.blink_duration_s * self._fps)
            if u >= 1.0:
                self._blink_start = None
                self._last_blink_end = i
                self._next_blink = self._frame_of(self._draw_interval()) - 1
            elif u < 0.4:
                blink = math.sin(0.5 * math.pi * u / 0.4)
            else:
                blink = math.cos(0.5 * math.pi * (u - 0.4) / 0.6)
        blink = max(blink, narrow)

        # Head sway, breathing and nods.
        gain = c.head_motion * (1.4 if speaking else 1.0) * head_gain
        waves = self._amp * np.sin(2 * math.pi * self._freq * t + self._phase)
        dx = gain * float(waves[0].sum()) + dx_o
        breath = math.sin(2 * math.pi * t / c.breath_period_s + self._breath_phase)
        dy = gain * 0.6 * float(waves[1].sum()) + c.breath_amount * breath + dy_o
        dy += nod * max(0.0, math.sin(2 * math.pi * 0.7 * t)) ** 2
        return IdlePose(blink=float(min(1.0, blink)), head_dx=dx, head_dy=dy)

"""Facial expression beyond lip-sync and idle life: the value type the motion generator and the compositor share.

An :class:`ExpressionPose` is one frame of expression. It is produced per frame (from the session's emotion, eased,
plus prosody-driven brow raises, tilts and gaze shifts) and rendered by the compositor where the avatar's rig has the
regions for it (photo avatars with brow/cheek regions; video avatars as their assets allow). All-zero is the face
as built, and renders exactly like no expression at all. Head nods and blink timing are not here: they ride on the
idle pose (:class:`~avaluma.renderer.idle.IdlePose`), which already moves the head and the lids.

The emotion names themselves live in :data:`avaluma.core.media.EMOTIONS` (both front doors validate them).
"""

from __future__ import annotations

from dataclasses import dataclass

from avaluma.core.media import EMOTIONS, check_emotion

__all__ = ["EMOTIONS", "NEUTRAL", "ExpressionPose", "check_emotion"]


@dataclass(frozen=True, slots=True)
class ExpressionPose:
    """One frame of facial expression. Distances are fractions of the face width (resolution independent)."""

    #: 0..1: both brows lift (surprise; a stressed word's pitch accent lifts them briefly).
    brow_raise: float = 0.0
    #: -1..1: +1 the inner ends of the brows lift and draw together (concerned), -1 the brows lower and draw
    #: together (serious, a frown).
    brow_inner: float = 0.0
    #: 0..1: mouth corners up and out, cheeks up, lower lids up a little (happy). Holds through speech: the lip-sync
    #: shapes are rendered on top of it.
    smile: float = 0.0
    #: Head tilt in radians, positive clockwise in the image; small (|roll| <= ~0.06).
    head_roll: float = 0.0
    #: Gaze shift of the irises, fractions of the eye width (x right, y down); small (|gaze| <= ~0.12).
    gaze_dx: float = 0.0
    gaze_dy: float = 0.0

    @property
    def is_neutral(self) -> bool:
        return max(abs(self.brow_raise), abs(self.brow_inner), abs(self.smile), abs(self.head_roll),
                   abs(self.gaze_dx), abs(self.gaze_dy)) < 1e-4  # fmt: skip


NEUTRAL = ExpressionPose()

"""A video whose mouth is covered all clip long (a hand held still over it) is refused, with the frame count; the same
clip uncovered builds. The clip is the grace-hopper photo avatar speaking (rendered here); the occluder is generated
(tests/face_samples.py). Real face models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from face_samples import occluded

from avaluma.core.errors import InvalidArgument
from avaluma.renderer.builder import build_video_avatar
from avaluma.renderer.compositor import Compositor
from avaluma.renderer.facemesh import FaceMesh
from avaluma.renderer.hvia import load_hvia

ROOT = Path(__file__).resolve().parents[2]


def test_a_clip_with_a_hand_held_still_over_the_mouth_is_refused() -> None:
    """Per-frame occlusions were judged against the clip's own median, so a hand held over the mouth all clip long
    was the norm and passed. Now each frame needs lips where its mouth is; the same clip uncovered still builds."""
    mesh = FaceMesh(progress=lambda message: None)
    source = load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia")
    comp = Compositor(source)
    frames = []
    for i in range(60):  # 2.4 s of speech-like motion at 25 frames/s
        jaw = max(0.0, float(np.sin(i / 2.5)))
        frames.append(comp.render(np.array([jaw, 1.0 - jaw, 0.0, 0.0], dtype=np.float32), press=1.0))
    clean = build_video_avatar(frames, 25.0, avatar_id="v", size=(512, 640), mesh=mesh, atlas_tiles=8)
    assert clean.metadata["frames"]["dropped_occluded"] == 0
    assert source.landmarks is not None
    covered = [occluded(f, np.array(source.landmarks)) for f in frames]
    with pytest.raises(InvalidArgument, match=r"\d+ with something covering the face\); use a clip where"):
        build_video_avatar(covered, 25.0, avatar_id="v", size=(512, 640), mesh=mesh, atlas_tiles=8)

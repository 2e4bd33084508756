"""The video builder drops frames it should not learn from, and says so.

The clips are generated: the astronaut photo avatar speaking (3 s) then at rest (4 s), with a hand (a shaded shape
with fingers) crossing the lower face for one second, or the head seemingly turned aside for that second. The builder
must drop those frames, count them in the build report, keep them out of the idle loop and the mouth atlas, and still
build. Real face models, encoder and decoder.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from avaluma.renderer.builder import build_report, build_video_avatar, read_video
from avaluma.renderer.compositor import Compositor
from avaluma.renderer.facemesh import FaceMesh
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.idle import IdlePose

ROOT = Path(__file__).resolve().parents[2]
FPS = 25
SECONDS = 7  # 3 s speaking, then at rest: at least 2 s of rest after the edited second, so the loop need not
#              rely on speech frames (the occlusion check may drop one of them)
HAND = range(80, 105)  # frames with the hand in front of the mouth (3.2 s .. 4.2 s, in the quiet part)


def _hand(frame: np.ndarray, cx: float, cy: float, size: float) -> None:
    h, w = frame.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    inside = ((xx - cx) / (0.55 * size)) ** 2 + ((yy - cy) / (0.9 * size)) ** 2 < 1
    shade = np.clip(0.55 + 0.45 * (yy - cy + size) / (2 * size), 0.4, 1.0)[..., None]
    frame[inside] = (np.array([150.0, 105.0, 85.0]) * shade)[inside].astype(np.uint8)
    fingers = inside & (np.abs(((xx - cx) % (0.22 * size)) - 0.11 * size) < 1.2)
    frame[fingers] = (70, 45, 38)


def _turn(frame: np.ndarray, nose_x: int, k: float) -> np.ndarray:
    """The head seemingly turned: the face left of the nose squeezed to ``k`` of its width, the rest stretched."""
    h, w = frame.shape[:2]
    left = np.asarray(Image.fromarray(frame[:, :nose_x]).resize((max(1, int(nose_x * k)), h)))
    right = np.asarray(Image.fromarray(frame[:, nose_x:]).resize((w - left.shape[1], h)))
    return np.ascontiguousarray(np.concatenate([left, right], axis=1))


def _clip(path: Path, edit: str) -> Path:
    """SECONDS of the astronaut (3 s speaking, then at rest); frames in HAND get a hand over the mouth or a turn."""
    avatar = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")
    comp = Compositor(avatar)
    rig = avatar.rig
    assert avatar.landmarks is not None
    nose_x = int(avatar.landmarks[1, 0])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "16"})
        stream.width, stream.height, stream.pix_fmt = avatar.width, avatar.height, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        for i in range(SECONDS * FPS):
            jaw = max(0.0, float(np.sin(i / 2.5))) if i < 3 * FPS else 0.0
            params = np.array([jaw, 1.0 - jaw, 0.0, 0.0], dtype=np.float32)
            rgb = comp.render(params, pose=IdlePose(head_dx=0.006 * np.sin(i / 11)), press=1.0).copy()
            if i in HAND and edit == "hand":
                t = (i - HAND.start) / len(HAND)
                _hand(rgb, rig.mouth_left[0] - 30 + 100 * t, rig.chin[1] - 10, 1.6 * rig.mouth_width)
            elif i in HAND and edit == "turn":
                rgb = _turn(rgb, nose_x, 0.4)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return FaceMesh(progress=lambda message: None)


@pytest.fixture(scope="module")
def occluded_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _clip(tmp_path_factory.mktemp("clip") / "hand.mp4", "hand")


def test_turned_head_frames_are_dropped_and_counted(tmp_path: Path, mesh: FaceMesh) -> None:
    frames, rate = read_video(_clip(tmp_path / "turn.mp4", "turn"))
    avatar = build_video_avatar(frames, rate, avatar_id="turn", mesh=mesh)
    counts = avatar.metadata["frames"]
    assert counts["dropped_head_turned"] >= 0.8 * len(HAND)
    assert counts["total"] - counts["used"] <= len(HAND) + 4
    assert "with the head turned more than 15 degrees" in build_report(avatar)[0]


def test_occluded_frames_are_dropped_counted_and_kept_out_of_the_loop(occluded_clip: Path, mesh: FaceMesh) -> None:
    frames, rate = read_video(occluded_clip)
    avatar = build_video_avatar(frames, rate, avatar_id="hand", mesh=mesh)
    counts = avatar.metadata["frames"]
    assert counts["total"] == SECONDS * FPS
    # The hand's first and last frames barely touch the mouth; under it the tracker may lose the face altogether.
    assert counts["dropped_occluded"] + counts["dropped_face_lost"] >= 0.6 * len(HAND)
    assert counts["total"] - counts["used"] <= len(HAND) + 8
    report = build_report(avatar)
    assert report and report[0].startswith(f"used {counts['used']} of {SECONDS * FPS} frames; dropped ")
    assert "covering the face" in report[0]
    loop = avatar.metadata["loop"]
    first = round(loop["start_s"] * FPS)
    shown = set(range(first - 6, first + loop["frames"]))  # the cross-fade's lead-in is shown too
    hand_centre = set(range(HAND.start + 5, HAND.stop - 5))
    assert not shown & hand_centre, f"the idle loop {sorted(shown)[0]}..{sorted(shown)[-1]} replays the hand"

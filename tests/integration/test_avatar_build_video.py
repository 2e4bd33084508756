"""``avaluma avatar build --video`` end to end on a synthetic clip made with the photo path.

The clip is the astronaut photo avatar speaking known mouth shapes (with a little head motion), encoded to H.264, so
the test knows what the atlas must contain. Real face models, real encoder and decoder.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from avaluma.core.errors import InvalidArgument
from avaluma.renderer.builder import build_video_avatar, read_video
from avaluma.renderer.cli import avatar_group
from avaluma.renderer.compositor import Compositor
from avaluma.renderer.expression import ExpressionPose
from avaluma.renderer.facemesh import FaceMesh
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.idle import IdlePose
from avaluma.renderer.lipsync.base import REST_POSE

ROOT = Path(__file__).resolve().parents[2]
FPS = 25


def write_clip(path: Path, frames: list[np.ndarray]) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"crf": "16"})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.time_base = Fraction(1, FPS)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of speech-like mouth motion, then 2 s at rest, from the photo avatar."""
    comp = Compositor(load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia"))
    n = 5 * FPS
    frames = []
    for i in range(n):
        jaw = max(0.0, float(np.sin(i / 2.5))) if i < 3 * FPS else 0.0
        params = np.array([jaw, 1.0 - jaw, 0.0, 0.0], dtype=np.float32)
        frames.append(comp.render(params, pose=IdlePose(head_dx=0.008 * np.sin(i / 11)), press=1.0))
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames)


@pytest.fixture(scope="module")
def mesh() -> FaceMesh:
    return FaceMesh(progress=lambda message: None)


def test_build_save_load_render_from_the_atlas(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "speaker.hvia"
    result = CliRunner().invoke(avatar_group, ["build", "--video", str(clip), "--id", "speaker", "-o", str(out)])
    assert result.exit_code == 0, result.output
    avatar = load_hvia(out)
    assert avatar.kind == "video" and avatar.video is not None and avatar.format_version == 3
    loop, atlas = avatar.video.frames, avatar.video.atlas
    assert 2 * FPS <= len(loop) <= 4 * FPS and not loop.flags.writeable
    # The atlas covers the clip's range of shapes: a closed mouth and a wide-open one.
    assert atlas.params[:, 0].min() < 0.05 and atlas.params[:, 0].max() > 0.5
    # The loop is the quiet part of the clip: its mouth barely moves.
    assert avatar.metadata["loop"]["start_s"] >= 2.0

    comp = Compositor(avatar)
    y0, y1, x0, x1 = comp.roi
    rest = comp.render(REST_POSE, frame=3)
    wide = comp.render(np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32), frame=3)
    cx, cy, width, _ = avatar.video.mouth[3]
    ys = slice(int(cy - 0.1 * width), int(cy + 0.3 * width))
    xs = slice(int(cx - 0.3 * width), int(cx + 0.3 * width))
    assert wide[ys, xs].mean() < rest[ys, xs].mean() - 15  # an open mouth from the atlas: the dark cavity
    # Only the mouth region changes; the rest of the frame is the loop frame.
    mask = np.ones(rest.shape[:2], bool)
    mask[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(wide[mask], loop[3][mask])
    # Frames follow the loop; it wraps around.
    np.testing.assert_array_equal(comp.render(REST_POSE, frame=len(loop) + 3), rest)
    # Expressions: the file carries brow and cheek regions, and a smile bends the loop frame's mouth
    # where the mouth is in that frame.
    assert avatar.face is not None
    smiling = comp.render(REST_POSE, frame=3, expression=ExpressionPose(smile=1.0))
    changed = np.argwhere((smiling != rest).any(axis=2))
    assert changed.size and abs(np.median(changed[:, 1]) - cx) < 0.2 * width

    inspect = CliRunner().invoke(avatar_group, ["inspect", str(out), "--json"])
    assert inspect.exit_code == 0 and '"kind": "video"' in inspect.output and '"atlas_tiles"' in inspect.output


def test_too_short_clip(tmp_path: Path, mesh: FaceMesh) -> None:
    photo = np.array(load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia").base)
    short = write_clip(tmp_path / "short.mp4", [photo] * 25)
    with pytest.raises(InvalidArgument, match=r"the clip is 1\.0 s long; it needs at least 2 s"):
        read_video(short)


def test_unreadable_clip(tmp_path: Path) -> None:
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(InvalidArgument, match="cannot read the video"):
        read_video(bad)
    with pytest.raises(InvalidArgument, match="video not found"):
        read_video(tmp_path / "missing.mp4")


def test_clip_without_a_face(tmp_path: Path, mesh: FaceMesh) -> None:
    frames = [np.full((256, 256, 3), 90 + i % 5, np.uint8) for i in range(3 * FPS)]
    with pytest.raises(InvalidArgument, match="no face found"):
        build_video_avatar(frames, FPS, avatar_id="x", source="wall.mp4", mesh=mesh)


def test_preview_writes_a_contact_sheet(tmp_path: Path) -> None:
    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(avatar_group, ["preview", str(ROOT / "assets/avatars/astronaut.hvia"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    from PIL import Image

    with Image.open(out) as sheet:
        assert sheet.width > 1000 and sheet.height > 400

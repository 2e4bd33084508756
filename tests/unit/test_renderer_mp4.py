"""MP4 writing with the real encoders (libx264 + AAC through PyAV), read back with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from avaluma.core.errors import InvalidArgument
from avaluma.core.media import AudioChunk
from avaluma.renderer.engine import RenderedFrame, RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.energy import EnergyBackend
from avaluma.renderer.mp4 import probe_durations, write_mp4

ROOT = Path(__file__).resolve().parents[2]


def rendered(seconds: float, sr: int = 24_000) -> list[RenderedFrame]:
    avatar = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")
    s = RenderSession(avatar, EnergyBackend(), fps=25, audio_sample_rate=sr)
    t = np.arange(round(seconds * sr)) / sr
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    outputs = s.push_audio(AudioChunk(audio, sr)) + s.end_segment()
    return s.idle_frames(3) + [o for o in outputs if isinstance(o, RenderedFrame)]


@pytest.mark.parametrize("seconds", [1.0, 1.37])
def test_audio_and_video_durations_match_within_one_frame(tmp_path: Path, seconds: float) -> None:
    frames = rendered(seconds)
    path = tmp_path / "nested" / "dir" / "out.mp4"
    summary = write_mp4(path, iter(frames), fps=25, audio_sample_rate=24_000, width=512, height=512)
    assert path.is_file() and summary.frames == len(frames)

    video_s, audio_s = probe_durations(path)
    assert video_s == pytest.approx(len(frames) / 25, abs=1e-6)
    assert abs(video_s - audio_s) <= 1 / 25

    with av.open(str(path)) as container:
        v, a = container.streams.video[0], container.streams.audio[0]
        assert (v.codec_context.name, v.codec_context.pix_fmt, v.average_rate) == ("h264", "yuv420p", 25)
        assert (a.codec_context.name, a.rate, a.channels) == ("aac", 24_000, 1)
    with av.open(str(path)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    assert len(decoded) == len(frames)
    assert abs(samples / 24_000 - len(frames) / 25) <= 1 / 25
    # Lossy, but the picture must be the one we rendered (mean error of a decent H.264 encode is small).
    assert np.abs(decoded[-1].astype(int) - frames[-1].rgb.astype(int)).mean() < 4


def test_odd_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="must be even"):
        write_mp4(tmp_path / "x.mp4", [], fps=25, audio_sample_rate=24_000, width=511, height=512)


def test_frame_of_the_wrong_size_is_rejected(tmp_path: Path) -> None:
    frame = RenderedFrame(0, 0, np.zeros((64, 64, 3), np.uint8), np.zeros(960, np.float32), False)
    with pytest.raises(InvalidArgument, match="expected 512x512"):
        write_mp4(tmp_path / "x.mp4", [frame], fps=25, audio_sample_rate=24_000, width=512, height=512)
    assert list(tmp_path.iterdir()) == []  # nothing truncated left behind, under the final name or the temporary one

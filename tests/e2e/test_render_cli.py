"""`avaluma render --audio`, end to end: a generated WAV in, a real MP4 out, read back and checked."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner

from avaluma.renderer.cli import PAD_S, render_command
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.mp4 import probe_durations

ROOT = Path(__file__).resolve().parents[2]
SR = 44_100
CLI = (sys.executable, "-m", "avaluma.core.cli")


def vowel(seconds: float, f0: float) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    tone = sum(np.exp(-(((k * f0 - 700) / 500) ** 2)) * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 30))
    envelope = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.03)  # 30 ms fades, like a spoken vowel
    return tone / np.abs(tone).max() * envelope * 0.5


def write_wav(path: Path, samples: np.ndarray, *, channels: int = 2, width: int = 2) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(SR)
        if width == 2:
            pcm = (samples * 32767).astype("<i2")
            w.writeframes(np.repeat(pcm[:, None], channels, axis=1).tobytes())
        else:
            w.writeframes(((samples * 127) + 128).astype(np.uint8).tobytes())


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    """0.6 s vowel, 0.8 s silence, 0.6 s vowel: 2.0 s, stereo, 44.1 kHz."""
    gap = np.zeros(round(0.8 * SR))
    path = tmp_path / "speech.wav"
    write_wav(path, np.concatenate([vowel(0.6, 140), gap, vowel(0.6, 210)]))
    return path


def mouth_brightness(frames: list[np.ndarray]) -> np.ndarray:
    """Brightness of the middle of the mouth per frame, where the dark cavity appears when it opens. (Not a difference
    with the photo: idle life moves the head a pixel or two, which a pixel difference would mistake for speech.)"""
    rig = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia").rig
    ys = slice(int(rig.upper_lip_inner[1]), int(rig.lower_lip_bottom[1] + 0.3 * rig.mouth_width))
    xs = slice(int(rig.mouth_left[0] + 0.2 * rig.mouth_width), int(rig.mouth_right[0] - 0.2 * rig.mouth_width))
    return np.array([f[ys, xs].mean() for f in frames])


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]


def test_render_wav_to_mp4_end_to_end(tmp_path: Path, speech_wav: Path) -> None:
    # The input is a synthetic tone, not speech: the loudness baseline has a defined answer for it (open while it
    # sounds), the trained model is checked on real speech in test_render_text_with_offline_tts.
    out = tmp_path / "videos" / "talk.mp4"
    env = {**os.environ, "AVALUMA_PLUGINS": "", "AVALUMA_LOG_LEVEL": "WARNING"}
    env.pop("AVALUMA_CONFIG", None)
    # Run from an unrelated directory: the bundled avatar must still be found (repository-root fallback).
    result = subprocess.run(
        [*CLI, "render", "--audio", str(speech_wav), "--lipsync", "energy", "-o", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    assert "frames at 25 fps" in result.stdout
    assert not list(out.parent.glob(".*partial*"))

    # Rest frames, exactly 2.0 s of speech (50 frames at 25 fps), rest frames.
    pad = round(PAD_S * 25)
    video_s, audio_s = probe_durations(out)
    assert video_s == pytest.approx((2 * pad + 50) / 25)
    assert abs(video_s - audio_s) <= 1 / 25
    frames = decode(out)
    assert len(frames) == 2 * pad + 50

    brightness = mouth_brightness(frames)
    rest = brightness[:pad]
    assert rest.max() - rest.min() < 4
    # Speech frames: vowel 0-15, silence 15-35, vowel 35-50 (the release needs a few frames to close the mouth).
    first_vowel, gap, second_vowel = (
        brightness[pad + 2 : pad + 13],
        brightness[pad + 23 : pad + 34],
        brightness[pad + 37 : pad + 48],
    )
    assert first_vowel.max() < rest.min() - 20  # mouth open while the vowel plays
    assert second_vowel.max() < rest.min() - 20
    assert gap.min() > rest.mean() - 8  # closed again in the silent gap
    assert brightness[-5:].min() > rest.mean() - 4


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(render_command, list(args), env={"AVALUMA_PLUGINS": "", "AVALUMA_CONFIG": None})
    return result.exit_code, result.output


def write_compressed(path: Path, samples: np.ndarray, codec: str) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.astype(np.float32)[None, :], format="flt", layout="mono")
        frame.sample_rate = SR
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)


@pytest.mark.parametrize("kind", ["u8.wav", "mp3", "flac"])
def test_any_audio_ffmpeg_decodes_renders(tmp_path: Path, kind: str) -> None:
    """Not only 16-bit WAV: 8-bit WAV, MP3 and FLAC go through PyAV (FFmpeg), which avaluma depends on anyway."""
    samples = np.concatenate([vowel(0.4, 150), np.zeros(round(0.4 * SR))])
    path = tmp_path / f"speech.{kind}"
    if kind == "u8.wav":
        write_wav(path, samples, channels=1, width=1)
    else:
        write_compressed(path, samples, {"mp3": "libmp3lame", "flac": "flac"}[kind])
    out = tmp_path / "out.mp4"
    code, output = run_cli("--audio", str(path), "--lipsync", "energy", "-o", str(out))
    assert code == 0, output
    video_s, _ = probe_durations(out)
    assert abs(video_s - (0.8 + 2 * PAD_S)) < 0.2  # MP3 adds a few ms of encoder delay


def test_not_audio_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "song.mp3"
    path.write_bytes(b"ID3\x03\x00" + bytes(100))
    code, output = run_cli("--audio", str(path))
    assert code == 1 and "not an audio file FFmpeg can decode" in output


def test_missing_audio_file(tmp_path: Path) -> None:
    code, output = run_cli("--audio", str(tmp_path / "nope.wav"))
    assert code == 1 and "audio file not found" in output


def test_unknown_avatar_lists_the_available_ones(speech_wav: Path, tmp_path: Path) -> None:
    code, output = run_cli("--audio", str(speech_wav), "--avatar", "nobody", "-o", str(tmp_path / "x.mp4"))
    assert code == 1
    assert "unknown avatar 'nobody'; available: astronaut, grace-hopper" in output


def test_unknown_lipsync_backend_names_the_installed_ones(speech_wav: Path, tmp_path: Path) -> None:
    code, output = run_cli("--audio", str(speech_wav), "--lipsync", "magic", "-o", str(tmp_path / "x.mp4"))
    assert code == 1
    assert "unknown lipsync_backend provider 'magic'" in output and "energy" in output


@pytest.mark.parametrize("args", [[], ["--text", "hi", "--audio", "x.wav"]])
def test_exactly_one_input(args: list[str]) -> None:
    code, output = run_cli(*args)
    assert code == 2 and "exactly one of --text" in output


def test_render_text_with_offline_tts(tmp_path: Path) -> None:
    """The demo's path: offline TTS -> the default (trained) lip-sync model -> MP4."""
    from avaluma.core.plugins import load_registry

    if "piper" not in load_registry().names("tts"):
        pytest.skip("the piper TTS plugin is not installed (pip install -e plugins/piper)")
    out = tmp_path / "hello.mp4"
    result = CliRunner().invoke(render_command, ["--text", "Hello there, how are you?", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "lip-sync onnx" in result.output
    video_s, audio_s = probe_durations(out)
    assert video_s > 2 * PAD_S + 0.5  # some real speech between the rest frames
    assert abs(video_s - audio_s) <= 1 / 25

    pad = round(PAD_S * 25)
    brightness = mouth_brightness(decode(out))
    rest = brightness[:pad]
    assert brightness[pad:-pad].min() < rest.min() - 20  # the mouth opens while the sentence is spoken
    assert brightness[-3:].min() > rest.mean() - 4  # and is closed again after it

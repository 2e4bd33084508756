"""The Render stream from a client's side, against the real server on a free port: `avaluma render --server` writes
the same kind of MP4 as a local render, examples/render_stream.py saves frames and audio, errors name the server."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from avaluma.core.cli import cli
from avaluma.renderer.cli import PAD_S
from avaluma.renderer.mp4 import probe_durations

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "render_stream.py"
SR = 16_000


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()  # the CLI group configures the root logger with CliRunner's stream
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    """1.2 s: a voiced tone with syllable-rate loudness changes (the energy backend opens the mouth)."""
    t = np.arange(int(1.2 * SR)) / SR
    samples = 0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * np.sin(2 * np.pi * 180 * t)
    path = tmp_path / "speech.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(SR)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


def render_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["render", *args], env={"AVALUMA_CONFIG": None, "AVALUMA_API_KEY": None})
    return result.exit_code, result.output


async def test_render_on_the_server_writes_an_mp4_of_the_audio(server, api_key, speech_wav, tmp_path) -> None:
    out = tmp_path / "remote.mp4"
    args = ["--server", server.address, "--api-key", api_key, "--audio", str(speech_wav), "-o", str(out)]
    code, output = await asyncio.to_thread(render_cli, *args)
    assert code == 0, output
    assert f"rendered by {server.address}" in output
    video_s, audio_s = probe_durations(out)
    assert abs(video_s - (1.2 + 2 * PAD_S)) < 0.1
    assert abs(audio_s - video_s) < 0.1


async def test_a_wrong_key_and_an_absent_server_are_one_line_each(server, speech_wav, tmp_path) -> None:
    args = ["--api-key", "wrong", "--audio", str(speech_wav), "-o", str(tmp_path / "x.mp4")]
    code, output = await asyncio.to_thread(render_cli, "--server", server.address, *args)
    assert code == 1 and "UNAUTHENTICATED" not in output and "pass --api-key" in output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    code, output = await asyncio.to_thread(render_cli, "--server", closed, *args)
    assert code == 1 and f"Is `avaluma serve` running at {closed}?" in output
    assert not (tmp_path / "x.mp4").exists()


def test_lipsync_is_the_servers_choice_with_server(speech_wav) -> None:
    code, output = render_cli("--server", "127.0.0.1:1", "--lipsync", "energy", "--audio", str(speech_wav))
    assert code == 2 and "--lipsync picks the local backend" in output


async def test_the_python_example_saves_frames_and_audio(server, api_key, speech_wav, tmp_path) -> None:
    spec = importlib.util.spec_from_file_location("render_stream_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example
    spec.loader.exec_module(example)
    frames = await example.render(server.address, api_key, str(speech_wav), tmp_path / "frames", emotion="happy")
    assert frames == round(1.2 * 25)
    assert len(list((tmp_path / "frames").glob("*.jpg"))) == frames
    with wave.open(str(tmp_path / "frames" / "audio.wav"), "rb") as audio:
        assert abs(audio.getnframes() / audio.getframerate() - 1.2) < 0.05

"""The playground in a real headless Chromium (Debian's package), over real WebRTC (aiortc) on loopback.

The page's own self-test (``?autotest=1``) connects, watches what the browser receives (the mouth region of every
presented frame, the loudness of the received audio), says a sentence through the offline TTS, interrupts a second
one with the stop button (``lk.clear_buffer``), uploads a WAV and talks through Chromium's fake microphone, then
posts a report, which this test checks. No timing is asserted: bench/playground.py reports the latencies.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiortc", reason="the playground needs aiortc: pip install -e '.[playground]'")

from avaluma.core.config import Config
from avaluma.core.plugins import load_registry
from avaluma.core.server.playground.app import RunningPlayground, start_playground

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (./scripts/test installs it with apt-get when run as root)"
)

#: Hang guard, not a latency assertion: the page gives up on each step long before this.
REPORT_TIMEOUT_S = 150.0

#: What this machine's Chromium needs to run headless here (see /work/.library/env/machines/python.md), plus media:
#: autoplay with sound, and a fake microphone that needs no permission prompt.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
)


def launch_chromium(url: str, profile: Path) -> subprocess.Popen[bytes]:
    assert CHROMIUM is not None
    return subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
async def playground() -> AsyncIterator[RunningPlayground]:
    registry = load_registry()
    if "piper" not in registry.names("tts"):
        pytest.skip("needs the offline TTS: pip install -e plugins/piper")
    running = await start_playground(Config(), registry, host="127.0.0.1", port=0)
    assert running.warm is not None
    await running.warm  # the voice and the model load before the page asks (as `avaluma playground` starts)
    try:
        yield running
    finally:
        await running.stop()


async def browser_report(running: RunningPlayground, tmp_path: Path, query: str = "autotest=1") -> dict[str, Any]:
    chromium = launch_chromium(f"{running.url}?{query}", tmp_path / "profile")
    try:
        return await asyncio.wait_for(running.playground.reports.get(), REPORT_TIMEOUT_S)
    finally:
        chromium.terminate()
        await asyncio.to_thread(chromium.wait)


async def test_the_page_plays_the_avatar_live_and_every_control_works(
    playground: RunningPlayground, tmp_path: Path
) -> None:
    report = await browser_report(playground, tmp_path)
    assert report["errors"] == []
    assert report["video_playing"] is True
    assert report["video_size"] == [512, 512]
    assert report["audio_track"] is True
    assert report["idle_distinct_frames"] > 1  # idle life: frames change even in silence
    assert report["speech_distinct_frames"] > 5
    # The mouth opened, as seen in received frames, after Say; and sound arrived.
    assert len(report["text_to_first_lip_ms"]) == len(report["text_to_first_audio_ms"]) == 1
    assert report["interrupted_event"] is True  # stop = lk.clear_buffer, answered with an interrupted finish
    assert report["stop_to_closed_ms"] > 0  # the mouth closed again after stop
    assert report["upload_played"] is True
    assert report["mic_played"] is True
    assert report["events"][:2] == ["playback_started", "playback_finished"]

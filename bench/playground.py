"""The playground as a viewer gets it: text-to-first-lip-frame and A/V offset measured in a real headless Chromium.

    .venv/bin/python bench/playground.py [--runs 3] [--lipsync onnx]

Starts the playground in-process on a free port (real WebRTC through aiortc on loopback), opens its page in Debian's
Chromium with ``?autotest=1`` and prints what the page measured from what it received:

1. start-up: seconds from opening the page to the first presented video frame, and from starting the playground
   (``--cold``: the page opens at once, while the voice and the model load);
2. text -> first lip frame: from the Say request to the first presented frame whose mouth region shows an open mouth
   (mean brightness 4 levels below the idle median); text -> first audio: to the first received audio above -34 dBFS;
3. A/V offset as received: first lip frame minus audio onset (> 0: the mouth moves after the sound starts), next to
   the same measure on an offline render of the same avatar and sentences (an MP4 whose tracks are in sync by
   construction): the difference is what the WebRTC path adds;
4. stop -> mouth closed as seen in the browser (lk.clear_buffer).

Needs the playground extra (aiortc), plugins/piper and chromium (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

SENTENCES = (
    "Hello there! I am talking to you live.",
    "Maybe we should meet again on Monday.",
    "Bob bought a big blue boat.",
)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
)  # fmt: skip


def offline_offset_ms(config: Any, registry: Any, runs: int) -> list[float]:
    """The page's measure (mouth 4 levels darker vs audio above 0.02 RMS in 256-sample windows) on offline renders."""
    from avaluma.core.server.playground.app import AUDIO_RATE
    from avaluma.core.speech import synthesize_text_sync
    from avaluma.renderer.cli import PAD_S, chunked, load_avatar_by_id, resolve_avatars_dir
    from avaluma.renderer.engine import RenderedFrame, RenderSession

    avatar = load_avatar_by_id(config.default_avatar, resolve_avatars_dir(config.avatars_dir))
    rig = avatar.rig
    x0, x1 = round(rig.mouth_left[0] + 0.2 * rig.mouth_width), round(rig.mouth_right[0] - 0.2 * rig.mouth_width)
    y0, y1 = round(rig.upper_lip_inner[1] - 2), round(rig.lower_lip_bottom[1] + 3)
    backend = registry.create("lipsync_backend", config.lipsync)
    offsets = []
    for text in SENTENCES[:runs]:
        speech = synthesize_text_sync(text, tts_ref=config.tts, registry=registry)
        session = RenderSession(avatar, backend, fps=config.render.fps, audio_sample_rate=AUDIO_RATE)
        frames: list[RenderedFrame] = session.idle_frames(round(PAD_S * session.fps))
        for chunk in chunked(speech):
            frames += [f for f in session.push_audio(chunk) if isinstance(f, RenderedFrame)]
        frames += [f for f in session.end_segment() if isinstance(f, RenderedFrame)]
        mouth = [f.rgb[y0:y1, x0:x1].astype(float).mean() for f in frames]
        base = float(np.median(mouth[: round(PAD_S * session.fps)]))
        lip_s = next(i for i, m in enumerate(mouth) if m < base - 4) / session.fps
        audio = np.concatenate([f.audio for f in frames])
        windows = audio[: len(audio) // 256 * 256].reshape(-1, 256)
        onset_s = int(np.argmax(np.sqrt((windows**2).mean(axis=1)) > 0.02)) * 256 / AUDIO_RATE
        offsets.append((lip_s - onset_s) * 1000)
    return offsets


async def browser(runs: int, lipsync: str | None, cold: bool) -> tuple[dict[str, Any], float, list[float]]:
    from avaluma.core.config import Config, ProviderRef
    from avaluma.core.plugins import load_registry
    from avaluma.core.server.playground.app import start_playground

    config = Config() if lipsync is None else Config(lipsync=ProviderRef(name=lipsync))
    registry = load_registry()
    started_at = time.time()
    running = await start_playground(config, registry, host="127.0.0.1", port=0)
    assert running.warm is not None
    if not cold:
        await running.warm
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("needs chromium: apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"{running.url}?autotest=1&runs={runs}",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            report = await asyncio.wait_for(running.playground.reports.get(), 300)
        finally:
            process.terminate()
            await process.wait()
            await running.stop()
    launch_s = time.perf_counter() - started
    report["start_to_first_frame_s"] = report["first_frame_epoch_ms"] / 1000 - started_at
    offline = await asyncio.to_thread(offline_offset_ms, config, registry, runs)
    return report, launch_s, offline


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values):.0f} ms (" + ", ".join(f"{v:.0f}" for v in values) + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, choices=range(1, len(SENTENCES) + 1))
    parser.add_argument("--lipsync", default=None, help="lip-sync backend (default: the config's, onnx)")
    parser.add_argument("--cold", action="store_true", help="open the page at once, before the voice and model load")
    args = parser.parse_args()
    print(describe())
    report, launch_s, offline = asyncio.run(browser(args.runs, args.lipsync, args.cold))
    print(f"browser: {report.get('user_agent')}")
    if report["errors"]:
        sys.exit(f"the page failed: {report['errors']}")
    first_s = report["first_frame_ms"] / 1000
    print(f"1. page opened -> first frame presented: {first_s:.2f} s (whole run {launch_s:.1f} s)")
    warm = "cold: page opened at once" if args.cold else "after the warm-up"
    print(f"   playground start -> first frame presented: {report['start_to_first_frame_s']:.2f} s ({warm})")
    print(f"2. text -> first lip frame: {ms(report['text_to_first_lip_ms'])}")
    print(f"   text -> first audio:     {ms(report['text_to_first_audio_ms'])}")
    print(f"3. A/V offset as received (lip - audio): {ms(report['av_offset_ms'])}")
    print(f"   same measure on the offline render:  {ms(offline)}")
    added = [b - o for b, o in zip(report["av_offset_ms"], offline, strict=True)]
    print(f"   added by the WebRTC path:            {ms(added)}")
    print(f"4. stop -> mouth closed in the browser: {report['stop_to_closed_ms']:.0f} ms")
    print(f"frames received: {report['frames_received']}")


if __name__ == "__main__":
    main()

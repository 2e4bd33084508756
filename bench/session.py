"""Live-session benchmark: latency, A/V offset, interruption and capacity of the server's session core.

    .venv/bin/python bench/session.py [--quick] [--capacity] [--sessions N]

``--capacity`` runs only part 4; ``--sessions N`` only runs N sessions at once (20 s, 4 with ``--quick``), the load
to profile, e.g. ``py-spy record --threads -- .venv/bin/python bench/session.py --sessions 12``.

Prints the machine, then, each with a baseline measured in the same run:

1. first lip-moving frame after the first audio chunk (goal <= 100 ms): audio passed through as it arrives (20 ms
   chunks) vs the stock receiver's 100 ms framing (baseline);
2. A/V offset at the output of a real ``rtc.AVSynchronizer`` (goal <= 20 ms) over live speech, and drift over
   10 minutes of simulated speech (virtual clock: audio samples published vs frames published);
3. ``lk.clear_buffer`` -> ``lk.playback_finished`` sent (goal <= 100 ms), while speaking and while idle;
4. concurrent 25 fps sessions without late frames (half the time speaking, each through a real AVSyncSink), vs
   the admission budget's estimate.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from avaluma.core.live.admission import measure_budget
from avaluma.core.live.audio_receiver import AudioStreamReceiver, SenderPolicy
from avaluma.core.live.livekit_session import AVSyncSink
from avaluma.core.live.playout import Playout, VirtualClock
from avaluma.core.media import AudioChunk
from avaluma.renderer.engine import RenderedFrame, RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.energy import EnergyBackend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
FPS, RATE = 25, 24_000
AVATAR = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")


def speech(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t + 1.2))).astype(np.float32)


def new_render() -> RenderSession:
    return RenderSession(AVATAR, EnergyBackend(), fps=FPS, audio_sample_rate=RATE)


class TimedSink:
    def __init__(self, rest: np.ndarray) -> None:
        self.rest = rest
        self.first_moving: float | None = None

    def prepare(self, frame: RenderedFrame) -> None:
        pass  # nothing to convert ahead of push

    async def push(self, frame: RenderedFrame) -> None:
        if self.first_moving is None and frame.speaking and not np.array_equal(frame.rgb, self.rest):
            self.first_moving = time.perf_counter()

    async def clear(self) -> None:
        pass


async def first_frame_latency(chunk_s: float, runs: int) -> list[float]:
    out = []
    for i in range(runs):
        render = new_render()
        rest = render.idle_frames(1)[0].rgb
        sink = TimedSink(rest)
        playout = Playout(render, sink, on_event=lambda e: None)
        task = asyncio.create_task(playout.run())
        await asyncio.sleep(0.2 + 0.013 * i)  # start at different phases of the frame clock
        audio, step = speech(1.0), round(RATE * chunk_s)
        # Measured from when the first chunk reaches the server; a receiver that frames audio in chunk_s pieces
        # only passes it on once the piece is complete, chunk_s after its first sample arrived.
        start = time.perf_counter() - (chunk_s - 0.02)
        for j in range(0, audio.size, step):
            playout.push_audio(AudioChunk(audio[j : j + step], RATE))
            if sink.first_moving is not None:
                break
            await asyncio.sleep(chunk_s)  # audio arrives in real time
        while sink.first_moving is None:
            await asyncio.sleep(0.001)
        out.append((sink.first_moving - start) * 1000)
        playout.close()
        await task
    return out


async def av_offset_live(seconds: float) -> dict[str, tuple[float, float]]:
    """A/V offset through a real ``rtc.AVSynchronizer`` over live speech, two ways:

    - at capture: when the synchronizer hands the k-th video frame to the video source (the moment it is shown),
      the audio heard (audio pushed minus the audio source's queue) vs the frame's start time.
      0 is perfect sync; positive means audio leads;
    - after push (the earlier probe): right after each frame's push, audio heard vs the middle of the last frame
      shown. It samples at one phase of the frame clock, so it mixes the frame's own 40 ms span into the figure.
    """
    render = new_render()
    sink = AVSyncSink(width=render.width, height=render.height, fps=FPS, sample_rate=RATE)
    heard_at_capture: list[float] = []
    capture = sink.video_source.capture_frame

    def capture_and_probe(frame: Any, **kwargs: Any) -> None:
        capture(frame, **kwargs)
        # Audio pushed (its end time) minus what the audio source still queues. Not ``av_sync.last_audio_time``:
        # that is updated only after ``capture_frame`` returns, while the queue already counts the frame, so a
        # capture that runs during that await would read one frame (40 ms) too early.
        heard_at_capture.append(sink._published / FPS - sink.audio_source.queued_duration)

    sink.video_source.capture_frame = capture_and_probe  # type: ignore[method-assign]
    after_push: list[float] = []

    class Probe:
        def prepare(self, frame: RenderedFrame) -> None:
            sink.prepare(frame)

        async def push(self, frame: RenderedFrame) -> None:
            await sink.push(frame)
            if frame.index > FPS:  # after the pipeline filled
                shown = sink.av_sync.last_video_time + 0.5 / FPS
                after_push.append((sink.av_sync.last_audio_time - shown) * 1000)

        async def clear(self) -> None:
            await sink.clear()

    playout = Playout(render, Probe(), on_event=lambda e: None)
    task = asyncio.create_task(playout.run())
    audio = speech(seconds)
    step = RATE // 50
    for j in range(0, audio.size, step):
        playout.push_audio(AudioChunk(audio[j : j + step], RATE))
        await asyncio.sleep(0.02)
    playout.end_segment()
    await asyncio.sleep(0.5)
    playout.close()
    await task
    await sink.aclose()
    # The k-th capture shows the k-th pushed frame (no clear here), whose start time is k / FPS.
    at_capture = [(heard - k / FPS) * 1000 for k, heard in enumerate(heard_at_capture) if k > FPS]
    return {
        "at capture": (max(abs(o) for o in at_capture), statistics.mean(at_capture)),
        "after push (earlier probe)": (max(abs(o) for o in after_push), statistics.mean(after_push)),
    }


async def drift_simulated(minutes: float) -> tuple[int, int, float]:
    clock = VirtualClock()
    frames = 0
    audio_samples = 0

    class Counter:
        def prepare(self, frame: RenderedFrame) -> None:
            pass  # nothing to convert ahead of push

        async def push(self, frame: RenderedFrame) -> None:
            nonlocal frames, audio_samples
            frames += 1
            audio_samples += frame.audio.size

        async def clear(self) -> None:
            pass

    playout = Playout(new_render(), Counter(), on_event=lambda e: None, clock=clock)
    task = asyncio.create_task(playout.run())
    utterance = speech(4.0)
    total = minutes * 60
    while clock.now() < total:
        for j in range(0, utterance.size, RATE // 10):
            playout.push_audio(AudioChunk(utterance[j : j + RATE // 10], RATE))
        playout.end_segment()
        start = clock.now()
        while clock.now() < start + 6.0:  # 4 s of speech, 2 s of silence
            await asyncio.sleep(0)
    playout.close()
    await task
    drift_ms = (audio_samples / RATE - frames / FPS) * 1000
    return frames, audio_samples, drift_ms


async def clear_latency(runs: int, *, speaking: bool) -> list[float]:
    out = []
    for _ in range(runs):
        sent: list[float] = []

        async def send(_d: str, method: str, _p: str) -> str:
            if method == "lk.playback_finished":
                sent.append(time.perf_counter())
            return ""

        class Null:
            def prepare(self, frame: RenderedFrame) -> None:
                pass  # nothing to convert ahead of push

            async def push(self, frame: RenderedFrame) -> None:
                pass

            async def clear(self) -> None:
                pass

        receiver: AudioStreamReceiver
        playout = Playout(new_render(), Null(), on_event=lambda e: receiver.on_playback(e))
        receiver = AudioStreamReceiver(playout, SenderPolicy(["agent"]), send_rpc=send, on_error=lambda e: None)
        receiver.start()
        task = asyncio.create_task(playout.run())
        if speaking:
            playout.push_audio(AudioChunk(speech(3.0), RATE))
            while playout.stats().frames < 15:
                await asyncio.sleep(0.01)
        else:
            await asyncio.sleep(0.1)
        from livekit import rtc

        start = time.perf_counter()
        receiver.on_clear_buffer(rtc.RpcInvocationData("r", "agent", "", 5.0, "lk.clear_buffer"))
        while not sent:
            await asyncio.sleep(0.0005)
        out.append((sent[0] - start) * 1000)
        playout.close()
        await task
        await receiver.aclose()
    return out


async def capacity(n: int, seconds: float) -> tuple[int, int]:
    """Run ``n`` sessions for ``seconds``, each speaking half the time, each publishing through its own real
    ``AVSyncSink`` (rtc sources and synchronizer, no room); returns (late frames, frames)."""
    renders = [new_render() for _ in range(n)]
    sinks = [AVSyncSink(width=r.width, height=r.height, fps=FPS, sample_rate=RATE) for r in renders]
    playouts = [Playout(r, s, on_event=lambda e: None) for r, s in zip(renders, sinks, strict=True)]
    tasks = [asyncio.create_task(p.run()) for p in playouts]

    async def talk(p: Playout, offset: float) -> None:
        await asyncio.sleep(offset)
        while True:
            audio = speech(2.0)
            for j in range(0, audio.size, RATE // 10):
                p.push_audio(AudioChunk(audio[j : j + RATE // 10], RATE))
                await asyncio.sleep(0.1)
            p.end_segment()
            await asyncio.sleep(2.0)

    talkers = [asyncio.create_task(talk(p, i * 0.37 % 4)) for i, p in enumerate(playouts)]
    await asyncio.sleep(1.0)
    base = [(p.stats().late_frames, p.stats().frames) for p in playouts]
    await asyncio.sleep(seconds)
    late = sum(p.stats().late_frames - b[0] for p, b in zip(playouts, base, strict=True))
    frames = sum(p.stats().frames - b[1] for p, b in zip(playouts, base, strict=True))
    for t in talkers:
        t.cancel()
    for p in playouts:
        p.close()
    await asyncio.gather(*tasks, *talkers, return_exceptions=True)
    for sink in sinks:
        await sink.aclose()
    return late, frames


# Benchmarks poll: an Event per condition would only add noise to what is measured.
# ruff: noqa: ASYNC110, B023


def fmt(values: list[float]) -> str:
    return f"median {statistics.median(values):6.1f} ms  max {max(values):6.1f} ms  (n={len(values)})"


async def main(quick: bool, only_capacity: bool, sessions: int | None) -> None:
    print(f"machine: {describe()}")
    print(f"avatar: {AVATAR.id} {AVATAR.width}x{AVATAR.height}, lip-sync: energy, {FPS} fps, {RATE} Hz out\n")
    if sessions is not None:  # one fixed load, e.g. to profile: py-spy record -- python bench/session.py --sessions 6
        late, frames = await capacity(sessions, 4.0 if quick else 20.0)
        print(f"{sessions} sessions: {frames} frames, {late} late ({late / max(frames, 1):.2%})")
        return
    if not only_capacity:
        await latency_and_sync(quick)
    await capacity_search(quick)


async def latency_and_sync(quick: bool) -> None:
    runs = 5 if quick else 15

    ours, stock = await first_frame_latency(0.02, runs), await first_frame_latency(0.1, runs)
    print("1. first lip-moving frame after the first audio chunk (goal <= 100 ms)")
    print(f"   20 ms chunks, passed through (ours)      {fmt(ours)}")
    print(f"   100 ms framing (stock receiver, baseline) {fmt(stock)}\n")

    offsets = await av_offset_live(3.0 if quick else 10.0)
    frames, samples, drift = await drift_simulated(1.0 if quick else 10.0)
    print("2. A/V offset at the AVSynchronizer output (goal <= 20 ms; + means audio leads)")
    for name, (worst, mean) in offsets.items():
        print(f"   live speech, {name:27s} max |offset| {worst:5.1f} ms, mean {mean:+5.1f} ms")
    print(f"   simulated {frames / FPS / 60:.0f} min: {frames} frames, {samples} samples, drift {drift:+.3f} ms\n")

    speaking, idle = await clear_latency(runs, speaking=True), await clear_latency(runs, speaking=False)
    print("3. clear_buffer -> playback_finished sent (goal <= 100 ms)")
    print(f"   while speaking {fmt(speaking)}")
    print(f"   while idle     {fmt(idle)}\n")


async def capacity_search(quick: bool) -> None:
    budget = await asyncio.to_thread(measure_budget, new_render)
    print("4. concurrent 25 fps sessions without late frames (half the time speaking)")
    print(f"   admission budget (calibrated estimate): {budget.describe()}")
    seconds = 4.0 if quick else 10.0
    best = 0
    n = 1
    while True:
        late, frames = await capacity(n, seconds)
        print(f"   {n:3d} sessions: {frames} frames, {late} late ({late / max(frames, 1):.2%})")
        if late:
            break
        best = n
        n += 1 if n < 4 else 2
        if n > 200:
            break
    print(f"   sustained without late frames: {best} sessions")
    print(f"machine after: {describe()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter simulations")
    parser.add_argument("--capacity", action="store_true", help="only part 4 (concurrent sessions)")
    parser.add_argument("--sessions", type=int, help="only run this many concurrent sessions (for a profiler)")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.capacity, args.sessions))

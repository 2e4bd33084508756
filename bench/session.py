"""Live-session benchmark: latency, A/V offset, interruption and capacity of the server's session core.

    .venv/bin/python bench/session.py [--quick] [--capacity] [--sessions N] [--encode vp8] [--encode-cost]
                                      [--avatar grace-hopper] [--size 256x320] [--fps 25]

``--capacity`` runs only part 4; ``--sessions N`` only runs N sessions at once (20 s, 4 with ``--quick``), the load
to profile, e.g. ``py-spy record --threads -- .venv/bin/python bench/session.py --sessions 12``; ``--encode CODEC``
adds the encoder stand-in to those sessions. ``--encode-cost`` only prints the per-frame CPU cost of rendering,
RGB->I420 and the VP8 and H.264 encoders on one core, side by side. ``--size WxH`` publishes the frames scaled to
that size (as a session started with ``render.width/height`` does: the avatar renders at its own size, the sink
scales), ``--fps`` sets the frame rate: what those per-session options cost.

No room is connected, so LiveKit's WebRTC encoder never runs here. Part 4 therefore measures capacity twice in one
run: without an encoder, and with a real encoder per published frame (:class:`Encoder`: PyAV's libvpx VP8 with
WebRTC's realtime settings, and libx264 ultrafast/zerolatency for H.264) in one thread per session, at the layers and
bitrates LiveKit publishes the frame size with by default (:func:`livekit_layers`). The encode-inclusive figure is the
one admission is calibrated from.

Prints the machine, then, each with a baseline measured in the same run:

1. first lip-moving frame after the first audio chunk (goal <= 100 ms): audio passed through as it arrives (20 ms
   chunks) vs the stock receiver's 100 ms framing (baseline);
2. A/V offset at the output of a real ``rtc.AVSynchronizer`` (goal <= 20 ms) over live speech, and drift over
   10 minutes of simulated speech (virtual clock: audio samples published vs frames published);
3. ``lk.clear_buffer`` -> ``lk.playback_finished`` sent (goal <= 100 ms), while speaking and while idle;
4. concurrent 25 fps sessions without late frames (half the time speaking, each through a real AVSyncSink), vs
   the admission budget's estimate, and vs what admission admits as the server runs it, with its runtime lateness
   guard (sessions asked for one by one while the admitted ones play).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from avaluma.core.errors import ResourceExhausted
from avaluma.core.live.admission import PUBLISH_COST, SessionBudget, available_cores, measure_budget
from avaluma.core.live.audio_receiver import AudioStreamReceiver, SenderPolicy
from avaluma.core.live.livekit_session import AVSyncSink
from avaluma.core.live.playout import Playout, VirtualClock
from avaluma.core.live.sessions import SessionSlots, VideoPublishing
from avaluma.core.live.video_encoding import Encoder, rgb_to_i420
from avaluma.core.media import AudioChunk
from avaluma.renderer.engine import RenderedFrame, RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.energy import EnergyBackend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
FPS, RATE = 25, 24_000
#: Published frame size (``--size``); None: the avatar's own.
OUT: tuple[int, int] | None = None
#: The hosted product's frame size, 512x640 (``--avatar astronaut`` for the 512x512 one).
AVATAR = load_hvia(ROOT / "assets" / "avatars" / "grace-hopper.hvia")


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


class EncodingSink:
    """A real session sink plus the encoder stand-in, fed every pushed frame in the session's own thread (WebRTC
    encodes on a thread of its own per track). A frame that arrives while one frame is being encoded and another
    waits is dropped and counted, as WebRTC's encoder queue keeps one pending frame and drops the rest."""

    def __init__(self, sink: AVSyncSink, encoder: Encoder) -> None:
        self.sink, self.encoder = sink, encoder
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="encoder")
        self._pending: list[Future[None]] = []
        self.dropped = 0

    def prepare(self, frame: RenderedFrame) -> None:
        self.sink.prepare(frame)

    async def push(self, frame: RenderedFrame) -> None:
        await self.sink.push(frame)
        self._pending = [f for f in self._pending if not f.done()]
        if len(self._pending) >= 2:  # one being encoded, one waiting: WebRTC would drop a frame here
            self.dropped += 1
        else:
            self._pending.append(self._pool.submit(self.encoder.encode, frame.rgb))

    async def clear(self) -> None:
        await self.sink.clear()

    async def aclose(self) -> None:
        self._pool.shutdown(wait=True)
        await self.sink.aclose()


async def first_frame_latency(chunk_s: float, runs: int) -> list[float]:
    out = []
    for i in range(runs):
        render = new_render()
        rest = render.idle_frames(1)[0].rgb
        sink = TimedSink(rest)
        playout = Playout(render, sink)
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

    playout = Playout(render, Probe())
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

    playout = Playout(new_render(), Counter(), clock=clock)
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

        playout = Playout(new_render(), Null())  # the receiver answers a clear from what clear() returns
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


async def talk(p: Playout, offset: float = 0.0) -> None:
    """Half the time speaking: 2 s of speech in 100 ms chunks, then 2 s of silence, forever (from ``offset`` s)."""
    await asyncio.sleep(offset)
    while True:
        audio = speech(2.0)
        for j in range(0, audio.size, RATE // 10):
            p.push_audio(AudioChunk(audio[j : j + RATE // 10], RATE))
            await asyncio.sleep(0.1)
        p.end_segment()
        await asyncio.sleep(2.0)


async def capacity(n: int, seconds: float, codec: str | None = None) -> tuple[int, int, int, float]:
    """Run ``n`` sessions for ``seconds``, each speaking half the time, each publishing through its own real
    ``AVSyncSink`` (rtc sources and synchronizer, no room) and, with ``codec``, its own :class:`Encoder`; returns
    (late frames, frames, frames the encoders dropped, cores one session kept busy: the process's CPU time over the
    window, every thread's, per session and second)."""
    renders = [new_render() for _ in range(n)]
    size = OUT or (AVATAR.width, AVATAR.height)
    sinks: list[Any] = [AVSyncSink(width=size[0], height=size[1], fps=FPS, sample_rate=RATE) for _ in renders]
    if codec is not None:
        sinks = [EncodingSink(s, Encoder(codec, *size, FPS)) for s in sinks]
    playouts = [Playout(r, s) for r, s in zip(renders, sinks, strict=True)]
    tasks = [asyncio.create_task(p.run()) for p in playouts]

    def dropped() -> int:
        return sum(getattr(s, "dropped", 0) for s in sinks)

    talkers = [asyncio.create_task(talk(p, i * 0.37 % 4)) for i, p in enumerate(playouts)]
    await asyncio.sleep(1.0)
    base = [(p.stats().late_frames, p.stats().frames) for p in playouts]
    base_dropped = dropped()
    cpu = time.process_time()
    await asyncio.sleep(seconds)
    late = sum(p.stats().late_frames - b[0] for p, b in zip(playouts, base, strict=True))
    frames = sum(p.stats().frames - b[1] for p, b in zip(playouts, base, strict=True))
    drops = dropped() - base_dropped
    per_session = (time.process_time() - cpu) / seconds / n
    for t in talkers:
        t.cancel()
    for p in playouts:
        p.close()
    await asyncio.gather(*tasks, *talkers, return_exceptions=True)
    for sink in sinks:
        await sink.aclose()
    return late, frames, drops, per_session


async def guarded_admission(
    budget: SessionBudget, codec: str | None, settle_s: float, measure_s: float
) -> tuple[int, str, int, int]:
    """Admission as the server runs it: a :class:`SessionSlots` with the measured ``budget`` and the runtime lateness
    guard, every session's playout reporting its frames through its slot. One more session is asked for every
    ``settle_s`` seconds until one is refused; the admitted ones then run ``measure_s`` more. Returns (sessions
    admitted, what refused the next one, late frames and frames over those last ``measure_s`` seconds)."""
    size = OUT or (AVATAR.width, AVATAR.height)
    slots = SessionSlots(256)
    slots.set_budget(budget)
    weight = slots.weight(fps=FPS, pixels=size[0] * size[1])
    playouts: list[Playout] = []
    sinks: list[Any] = []
    tasks: list[asyncio.Task[Any]] = []

    refused = ""
    while not refused:
        try:
            slot = slots.take("session", weight)
        except ResourceExhausted as exc:
            refused = "lateness guard (behind)" if "behind" in exc.message else "budget"
            break
        sink: Any = AVSyncSink(width=size[0], height=size[1], fps=FPS, sample_rate=RATE)
        if codec is not None:
            sink = EncodingSink(sink, Encoder(codec, *size, FPS))
        playout = Playout(new_render(), sink, watch=slot)
        playouts.append(playout)
        sinks.append(sink)
        tasks += [asyncio.create_task(playout.run()), asyncio.create_task(talk(playout))]
        await asyncio.sleep(settle_s)
    base = [(p.stats().late_frames, p.stats().frames) for p in playouts]
    await asyncio.sleep(measure_s)
    late = sum(p.stats().late_frames - b[0] for p, b in zip(playouts, base, strict=True))
    frames = sum(p.stats().frames - b[1] for p, b in zip(playouts, base, strict=True))
    for task in tasks:
        task.cancel()
    for p in playouts:
        p.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    for sink in sinks:
        await sink.aclose()
    return len(playouts), refused, late, frames


# Benchmarks poll: an Event per condition would only add noise to what is measured.
# ruff: noqa: ASYNC110, B023


def fmt(values: list[float]) -> str:
    return f"median {statistics.median(values):6.1f} ms  max {max(values):6.1f} ms  (n={len(values)})"


async def main(quick: bool, only_capacity: bool, sessions: int | None, codecs: list[str]) -> None:
    print(f"machine: {describe()}")
    size = OUT or (AVATAR.width, AVATAR.height)
    print(
        f"avatar: {AVATAR.id} {AVATAR.width}x{AVATAR.height}, published {size[0]}x{size[1]}, lip-sync: energy, "
        f"{FPS} fps, {RATE} Hz out\n"
    )
    if sessions is not None:  # one fixed load, e.g. to profile: py-spy record -- python bench/session.py --sessions 6
        codec = next((c for c in codecs if c != "none"), None)
        late, frames, drops, cpu = await capacity(sessions, 4.0 if quick else 20.0, codec)
        print(
            f"{sessions} sessions, encoder {codec or 'none'}: {frames} frames, {late} late "
            f"({late / max(frames, 1):.2%}), {drops} dropped by the encoders, {cpu:.0%} of a core per session"
        )
        return
    if not only_capacity:
        await latency_and_sync(quick)
    await capacity_search(quick, codecs)


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


async def capacity_search(quick: bool, codecs: list[str]) -> None:
    cores = available_cores()
    size = OUT or (AVATAR.width, AVATAR.height)
    print("4. concurrent 25 fps sessions without late frames (half the time speaking), without and with an encoder")
    budgets = {codec: await measure_budget(new_render, publishing=publishing(codec)) for codec in codecs}
    for codec, budget in budgets.items():
        print(f"   admission budget, encoder {codec}: {budget.describe()}")
    seconds = 4.0 if quick else 10.0
    sustained: dict[str, int] = {}
    cost: dict[str, float] = {}  # cores per session at the largest clean count
    for codec in codecs:
        encoder = None if codec == "none" else Encoder(codec, *size, FPS)
        print(f"   encoder: {encoder.describe() if encoder else 'none (no room: publishing without encoding)'}")
        # Double until frames come late or are dropped, then bisect between the last clean and the first failed count.
        best, failed, n = 0, 0, 1
        while n <= 256 and (not failed or failed - best > 1):
            late, frames, drops, cpu = await capacity(n, seconds, None if codec == "none" else codec)
            print(
                f"   {n:3d} sessions: {frames} frames, {late} late ({late / max(frames, 1):.2%}), {drops} dropped, "
                f"{cpu:.1%} of a core per session"
            )
            if late or drops:
                failed = n
            else:
                best, cost[codec] = n, cpu
            n = best * 2 if not failed else (best + failed) // 2
        sustained[codec] = best
    print(f"   sustained without late or dropped frames ({cores} cores, {seconds:g} s each step) vs what admission")
    print("   admits: measured at start-up as the server does now, and the baseline (rendering measured + a constant")
    print(f"   {PUBLISH_COST:.2f} cores of publishing, all {cores} cores counted):")
    for codec, best in sustained.items():
        name = "render + publish, no encoder" if codec == "none" else f"render + publish + {codec.upper()} encode"
        used = cost.get(codec, 0.0)
        fit = f"{1 / used:5.1f} per core at full use" if used else "-"
        budget = budgets[codec]
        baseline = SessionBudget(budget.cpu_per_session, cores, budget.target_utilization, FPS, pixels=budget.pixels)
        print(
            f"     {name:34s} {best:3d} sessions, {best / cores:5.1f} per core; CPU {used:6.1%} per session, {fit}; "
            f"admits {admits(budget, size)} (baseline {admits(baseline, size)})"
        )
    print("   admission as the server runs it, with the runtime lateness guard (one more session every 3 s until one")
    print("   is refused, then 10 s more), against what the same run sustained:")
    for codec in codecs:
        admitted, refused, late, frames = await guarded_admission(
            budgets[codec], None if codec == "none" else codec, 3.0, 4.0 if quick else 10.0
        )
        print(
            f"     encoder {codec:4s}: admitted {admitted:3d} (the next one refused by the {refused}), sustained "
            f"{sustained[codec]:3d}; the admitted ones: {frames} frames, {late} late ({late / max(frames, 1):.2%})"
        )
    print("   on a shared machine (load average below); CPU per session (the process's CPU time, all threads)")
    print("   depends less on other load")
    print(f"machine after: {describe()}")


def admits(budget: SessionBudget, size: tuple[int, int]) -> int:
    """Sessions of ``size`` frames at :data:`FPS` that ``budget`` admits (sessions of another frame size than the
    measured one count as their weight)."""
    weight = budget.weight_of(fps=FPS, pixels=size[0] * size[1])
    return max(1, int(budget.capacity / weight + 1e-9))


def publishing(codec: str) -> VideoPublishing | None:
    """How the bench's encoder stand-in publishes with ``codec`` ("none": no encoder)."""
    return None if codec == "none" else VideoPublishing(codec)


async def encode_cost(frames: int) -> None:
    """CPU time per frame of each step a published frame goes through, on one core (this thread's CPU time)."""
    render = new_render()
    render.idle_frames(2)
    audio = speech(frames / 2 / FPS)
    start = time.thread_time()
    out: list[Any] = []
    for j in range(0, audio.size, RATE // 10):
        out += render.push_audio(AudioChunk(audio[j : j + RATE // 10], RATE))
    out += render.end_segment()
    rgbs = [f.rgb for f in out if isinstance(f, RenderedFrame)]
    rgbs += [f.rgb for f in render.idle_frames(max(1, frames - len(rgbs)))]
    render_ms = (time.thread_time() - start) / len(rgbs) * 1000

    def timed(step: Any, items: list[Any]) -> tuple[float, list[Any]]:
        t0 = time.thread_time()
        out = [step(x) for x in items]
        return (time.thread_time() - t0) / len(items) * 1000, out

    size = OUT or (AVATAR.width, AVATAR.height)
    if OUT is None:
        convert_ms, i420s = timed(rgb_to_i420, rgbs)
        convert = "RGB -> I420 (libyuv, as capture does)"
    else:  # what AVSyncSink does for a session with render.width/height: scale straight to I420
        sink = AVSyncSink(width=size[0], height=size[1], fps=FPS, sample_rate=RATE)
        convert_ms, scaled = timed(sink._scaled, rgbs)
        await sink.aclose()
        i420s = [np.frombuffer(f.data, np.uint8).reshape(size[1] * 3 // 2, size[0]) for f in scaled]
        convert = f"scale to {size[0]}x{size[1]} I420 (swscale)"
    rows = [("render (lip-sync + compositing)", render_ms, ""), (convert, convert_ms, "")]
    for codec in ("vp8", "h264"):
        for simulcast in (False, True):
            encoder = Encoder(codec, *size, FPS, simulcast=simulcast)
            encoder.encode_i420(i420s[0])  # warm-up: the first frame is a key frame
            ms, _ = timed(encoder.encode_i420, i420s[1:])
            kbps = encoder.bytes * 8 / (encoder.frames / FPS) / 1000
            rows.append((f"{codec.upper()} {'simulcast (LiveKit default)' if simulcast else 'one layer'}", ms,
                         f"{encoder.describe()}, {kbps:.0f} kbps out"))  # fmt: skip
    print(
        f"per-frame CPU time on one core, {AVATAR.width}x{AVATAR.height} published at {size[0]}x{size[1]}, "
        f"{len(rgbs)} frames (half speech):"
    )
    for name, ms, note in rows:
        print(f"   {name:38s} {ms:6.2f} ms  ({ms * FPS / 10:4.1f} % of a core at {FPS} fps)  {note}")
    for codec in ("vp8", "h264"):
        total = (
            render_ms + convert_ms + next(ms for name, ms, _ in rows if name.startswith(codec.upper() + " simulcast"))
        )
        print(
            f"   render + I420 + {codec.upper()} simulcast: {total:.2f} ms, {1000 / FPS / total:.1f} sessions per core "
            f"(rendering alone {1000 / FPS / render_ms:.1f}; publishing's own cost not included)"
        )
    print(f"machine after: {describe()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter simulations")
    parser.add_argument("--capacity", action="store_true", help="only part 4 (concurrent sessions)")
    parser.add_argument("--sessions", type=int, help="only run this many concurrent sessions (for a profiler)")
    parser.add_argument(
        "--encode", default="none,vp8,h264", help="encoders part 4 compares, comma-separated: none, vp8, h264"
    )
    parser.add_argument("--encode-cost", action="store_true", help="only the per-frame cost of render and encoders")
    parser.add_argument("--avatar", default="grace-hopper", help="avatar in assets/avatars (grace-hopper: 512x640)")
    parser.add_argument("--size", help="publish frames scaled to WxH (e.g. 256x320), as render.width/height does")
    parser.add_argument("--fps", type=int, default=FPS, help="frames per second of every session")
    args = parser.parse_args()
    FPS = args.fps
    if args.size:
        w, _, h = args.size.partition("x")
        OUT = (int(w), int(h))
    AVATAR = load_hvia(ROOT / "assets" / "avatars" / f"{args.avatar}.hvia")
    codecs = [c.strip() for c in args.encode.split(",") if c.strip()]
    if unknown := set(codecs) - {"none", "vp8", "h264"}:
        parser.error(f"unknown encoder {', '.join(sorted(unknown))}")
    if args.encode_cost:
        print(f"machine: {describe()}")
        asyncio.run(encode_cost(50 if args.quick else 200))
    else:
        asyncio.run(main(args.quick, args.capacity, args.sessions, codecs))

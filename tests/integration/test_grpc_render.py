"""RenderService.Render against a real server on a free port, with the real renderer and the energy backend."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import pytest

from avaluma.core.live.admission import SessionBudget
from avaluma.core.media import MAX_CHUNK_BYTES
from avaluma.proto.v1 import common_pb2, render_service_pb2, render_service_pb2_grpc
from avaluma.renderer.frame_formats import FrameEncoding, decode_frame
from avaluma.renderer.hvia import load_hvia

pytestmark = pytest.mark.integration

AUTH = (("x-api-key", "test-key-integration"),)  # the key of the conftest's servers
FPS = 25
OUT_RATE = 24_000
IN_RATE = 16_000
#: Hang guard for reads (not a latency assertion): a missing answer fails the test instead of blocking it.
READ_TIMEOUT_S = 30.0

Req = render_service_pb2.RenderRequest


def speech_like(pattern: list[tuple[str, float]], rate: int = IN_RATE, seed: int = 0) -> np.ndarray:
    """Bursts of a voiced, syllable-modulated harmonic signal (like speech) separated by exact digital silence."""
    rng = np.random.default_rng(seed)
    parts = []
    for kind, seconds in pattern:
        n = round(seconds * rate)
        if kind == "silence":
            parts.append(np.zeros(n, dtype=np.float32))
            continue
        t = np.arange(n) / rate
        f0 = 140.0 + 20.0 * np.sin(2 * np.pi * 1.3 * t)  # drifting pitch
        phase = 2 * np.pi * np.cumsum(f0) / rate
        voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
        syllables = 0.6 + 0.4 * np.abs(np.sin(2 * np.pi * 3.0 * t))
        noise = 0.05 * rng.standard_normal(n)
        edge = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # 10 ms fades: no clicks
        parts.append((0.35 * voiced * syllables * edge + noise * edge).astype(np.float32))
    return np.concatenate(parts)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def audio_requests(samples: np.ndarray, rate: int = IN_RATE, chunk_s: float = 0.1) -> list[Req]:
    step = round(rate * chunk_s)
    return [
        Req(audio=render_service_pb2.AudioChunk(pcm=pcm16(samples[i : i + step]), sample_rate=rate, num_channels=1))
        for i in range(0, len(samples), step)
    ]


def config(**kw: object) -> Req:
    fields: dict[str, object] = {
        "avatar_id": "astronaut",
        "fps": FPS,
        "audio_sample_rate": OUT_RATE,
        "encoding": common_pb2.VIDEO_ENCODING_RGB24,
    }
    fields.update(kw)
    return Req(config=render_service_pb2.RenderConfig(**fields))  # type: ignore[arg-type]


@dataclass
class Stream:
    """A Render call driven step by step: write requests, read responses (with a hang guard)."""

    call: grpc.aio.StreamStreamCall
    received: list[render_service_pb2.RenderResponse] = field(default_factory=list)

    async def write(self, *requests: Req) -> None:
        for request in requests:
            await self.call.write(request)

    async def read(self) -> render_service_pb2.RenderResponse:
        response = await asyncio.wait_for(self.call.read(), READ_TIMEOUT_S)
        assert response is not grpc.aio.EOF, "the stream ended early"
        self.received.append(response)
        return response

    async def read_until(self, kind: str) -> list[render_service_pb2.RenderResponse]:
        """Responses up to and including the first of ``kind``."""
        out = []
        while True:
            response = await self.read()
            out.append(response)
            if response.WhichOneof("response") == kind:
                return out

    async def read_to_end(self) -> list[render_service_pb2.RenderResponse]:
        out = []
        while (response := await asyncio.wait_for(self.call.read(), READ_TIMEOUT_S)) is not grpc.aio.EOF:
            out.append(response)
        self.received.extend(out)
        return out


async def open_stream(channel: grpc.aio.Channel, first: Req | None = None) -> Stream:
    stub = render_service_pb2_grpc.RenderServiceStub(channel)
    stream = Stream(stub.Render(metadata=AUTH))
    await stream.write(first if first is not None else config())
    started = await stream.read()
    assert started.WhichOneof("response") == "started"
    return stream


def kinds(responses: list[render_service_pb2.RenderResponse]) -> list[str]:
    return [str(r.WhichOneof("response")) for r in responses]


def videos(responses: list[render_service_pb2.RenderResponse]) -> list[render_service_pb2.VideoFrame]:
    return [r.video for r in responses if r.WhichOneof("response") == "video"]


def audios(responses: list[render_service_pb2.RenderResponse]) -> list[render_service_pb2.AudioFrame]:
    return [r.audio for r in responses if r.WhichOneof("response") == "audio"]


@pytest.fixture(scope="module")
def rest_frame(demo_avatar_path: Path) -> np.ndarray:
    # The photo itself: the compositor reproduces it exactly in the rest pose.
    return load_hvia(demo_avatar_path).base


@pytest.fixture(scope="module")
def mouth_box(demo_avatar_path: Path) -> tuple[slice, slice]:
    rig = load_hvia(demo_avatar_path).rig
    x0, x1 = int(rig.mouth_left[0]) - 4, int(rig.mouth_right[0]) + 5
    y0, y1 = int(rig.upper_lip_top[1]) - 4, int(rig.lower_lip_bottom[1]) + 5
    return slice(y0, y1), slice(x0, x1)


def mouth_darkening(frame: np.ndarray, rest_frame: np.ndarray, box: tuple[slice, slice]) -> float:
    """How much darker the mouth box is than in the photo: the cavity shows when the mouth opens. (Idle life moves the
    head a pixel or two, so frames in silence are not pixel-identical to the photo.)"""
    rows, cols = box
    return float(rest_frame[rows, cols].astype(float).mean() - frame[rows, cols].astype(float).mean())


def frame_rgb(video: render_service_pb2.VideoFrame) -> np.ndarray:
    return decode_frame(video.data, FrameEncoding.RGB24, video.width, video.height)


# --- the main path ----------------------------------------------------------------------------------------------


async def test_render_segments_frames_audio_events_and_mouth(channel, rest_frame, mouth_box) -> None:
    pattern = [("speech", 0.6), ("silence", 0.8), ("speech", 0.5), ("silence", 0.5)]
    first = speech_like(pattern, seed=1)
    second = speech_like([("speech", 0.37)], seed=2)  # not a whole number of frames: the last one is padded
    stream = await open_stream(channel)
    await stream.write(*audio_requests(first), Req(segment_end=render_service_pb2.SegmentEnd()))
    seg0 = await stream.read_until("playback_finished")
    await stream.write(*audio_requests(second), Req(segment_end=render_service_pb2.SegmentEnd()))
    seg1 = await stream.read_until("playback_finished")
    await stream.call.done_writing()
    assert await stream.read_to_end() == []

    for responses, samples, segment in ((seg0, first, 0), (seg1, second, 1)):
        expected_frames = math.ceil(len(samples) / IN_RATE * FPS)
        k = kinds(responses)
        # Started comes before the first frame, finished after the last; frames alternate video, audio.
        assert k[0] == "playback_started" and k[-1] == "playback_finished"
        assert k[1:-1] == ["video", "audio"] * expected_frames
        assert responses[0].playback_started.segment == segment
        finished = responses[-1].playback_finished
        assert finished.segment == segment and not finished.interrupted
        assert finished.playback_position_s == pytest.approx(len(samples) / IN_RATE, abs=1 / FPS)
        for video, audio in zip(videos(responses), audios(responses), strict=True):
            assert (audio.index, audio.pts_us) == (video.index, video.pts_us)
            assert audio.sample_rate == OUT_RATE and len(audio.pcm) == 2 * OUT_RATE // FPS
            assert video.speaking and (video.width, video.height) == rest_frame.shape[1::-1]

    # Indices and timestamps run on across segments without gaps.
    all_videos = videos(seg0) + videos(seg1)
    assert [v.index for v in all_videos] == list(range(len(all_videos)))
    assert [v.pts_us for v in all_videos] == [round(i * 1_000_000 / FPS) for i in range(len(all_videos))]

    # The mouth opens while sound plays and is closed late in each silence.
    frames = [frame_rgb(v) for v in videos(seg0)]
    moved = [mouth_darkening(f, rest_frame, mouth_box) > 10 for f in frames]
    burst1 = range(2, 14)  # 0.08 .. 0.56 s
    burst2 = range(37, 48)  # 1.48 .. 1.92 s
    late_silence = [*range(28, 35), *range(55, len(frames))]  # last ~0.3 s of each silence
    assert all(moved[i] for i in burst1) and all(moved[i] for i in burst2)
    for i in late_silence:
        assert abs(mouth_darkening(frames[i], rest_frame, mouth_box)) < 4, f"frame {i} is not at rest in silence"
    # The audio that comes back is the audio that went in: loud in bursts, silent where the mouth rests.
    levels = [np.sqrt(np.mean(np.frombuffer(a.pcm, "<i2").astype(np.float64) ** 2)) for a in audios(seg0)]
    assert min(levels[i] for i in burst1) > 1000
    assert max(levels[i] for i in late_silence) < 50


async def test_clear_mid_segment_and_when_idle_answer_interrupted(channel) -> None:
    stream = await open_stream(channel)
    # Clear with nothing playing: still answered.
    await stream.write(Req(clear=render_service_pb2.Clear()))
    idle = await stream.read()
    assert idle.WhichOneof("response") == "playback_finished"
    assert idle.playback_finished.interrupted and idle.playback_finished.playback_position_s == 0

    # Clear in the middle of a long segment (no segment_end sent).
    # Long enough that the clear lands while the server is still rendering it.
    await stream.write(*audio_requests(speech_like([("speech", 8.0)])))
    before = await stream.read_until("video")
    assert kinds(before)[0] == "playback_started"
    await stream.write(Req(clear=render_service_pb2.Clear()))
    answer = await stream.read_until("playback_finished")
    finished = answer[-1].playback_finished
    assert finished.interrupted and finished.segment == before[0].playback_started.segment
    assert 0 < finished.playback_position_s < 8.0
    # Audio queued before the clear is dropped: nothing about that segment follows, and the stream goes on.
    await stream.write(
        *audio_requests(speech_like([("speech", 0.2)])), Req(segment_end=render_service_pb2.SegmentEnd())
    )
    after = await stream.read_until("playback_finished")
    assert kinds(after)[0] == "playback_started"
    assert after[0].playback_started.segment > finished.segment
    assert len(videos(after)) == math.ceil(0.2 * FPS)
    assert not after[-1].playback_finished.interrupted
    await stream.call.done_writing()
    await stream.read_to_end()


async def test_realtime_stream_fills_silence_with_idle_frames(channel, rest_frame, mouth_box) -> None:
    stream = await open_stream(channel, config(realtime=True))
    idle = [await stream.read() for _ in range(6)]  # 3 frames of idle video+audio, paced by the server
    assert kinds(idle) == ["video", "audio"] * 3
    assert all(not v.speaking and abs(mouth_darkening(frame_rgb(v), rest_frame, mouth_box)) < 4 for v in videos(idle))
    assert all(not any(a.pcm) for a in audios(idle))
    await stream.write(
        *audio_requests(speech_like([("speech", 0.3)])), Req(segment_end=render_service_pb2.SegmentEnd())
    )
    responses = await stream.read_until("playback_finished")
    speaking = [v for v in videos(responses) if v.speaking]
    assert len(speaking) == math.ceil(0.3 * FPS)
    all_videos = videos(idle) + videos(responses)
    assert [v.index for v in all_videos] == list(range(len(all_videos)))
    await stream.write(Req(clear=render_service_pb2.Clear()))
    cleared = await stream.read_until("playback_finished")
    assert cleared[-1].playback_finished.interrupted
    stream.call.cancel()


async def test_half_close_ends_the_open_segment(channel) -> None:
    stream = await open_stream(channel, config(avatar_id=""))
    assert stream.received[0].started.avatar_id == "astronaut"  # empty = the server's default avatar
    await stream.write(*audio_requests(speech_like([("speech", 0.42)])))
    await stream.call.done_writing()
    rest = await stream.read_to_end()
    assert kinds(rest)[-1] == "playback_finished"
    assert len(videos(rest)) == math.ceil(0.42 * FPS)


@pytest.mark.parametrize("encoding", [common_pb2.VIDEO_ENCODING_JPEG, common_pb2.VIDEO_ENCODING_I420])
async def test_encoded_frames_decode_to_the_avatar(channel, rest_frame, encoding) -> None:
    stream = await open_stream(channel, config(encoding=encoding, jpeg_quality=90))
    assert stream.received[0].started.encoding == encoding
    await stream.write(
        *audio_requests(np.zeros(IN_RATE // 5, np.float32)), Req(segment_end=render_service_pb2.SegmentEnd())
    )
    frames = videos(await stream.read_until("playback_finished"))
    assert len(frames) == 5 and all(f.encoding == encoding for f in frames)
    wire = FrameEncoding.JPEG if encoding == common_pb2.VIDEO_ENCODING_JPEG else FrameEncoding.I420
    decoded = decode_frame(frames[0].data, wire, frames[0].width, frames[0].height)
    assert decoded.shape == rest_frame.shape
    assert np.abs(decoded.astype(int) - rest_frame.astype(int)).mean() < 6  # lossy, but the same picture
    stream.call.cancel()


async def test_config_width_and_height_scale_the_frames_and_set_the_admission_weight(make_server, rest_frame) -> None:
    running = await make_server()
    running.slots.set_budget(SessionBudget(cpu_per_session=0.1, cores=2, target_utilization=0.8, fps=FPS))
    height, width = rest_frame.shape[0] // 2, rest_frame.shape[1] // 2
    async with grpc.aio.insecure_channel(running.address) as channel:
        stream = await open_stream(channel, config(width=width, height=height))
        started = stream.received[0].started
        assert (started.width, started.height) == (width, height)
        # Counted as a LiveKit session publishing that frame size: less than a full-size one.
        pixels_weight = running.slots.weight(fps=FPS, pixels=width * height)
        assert running.slots.load == pytest.approx(pixels_weight) and pixels_weight < 0.95
        await stream.write(
            *audio_requests(np.zeros(IN_RATE // 5, np.float32)), Req(segment_end=render_service_pb2.SegmentEnd())
        )
        frames = videos(await stream.read_until("playback_finished"))
        assert len(frames) == 5 and all((f.width, f.height) == (width, height) for f in frames)
        smaller = frame_rgb(frames[0])
        assert smaller.shape == (height, width, 3)
        # The same picture, scaled: compare with the full-size rest frame averaged over 2x2 blocks.
        expected = rest_frame[: 2 * height, : 2 * width].reshape(height, 2, width, 2, 3).mean(axis=(1, 3))
        assert np.abs(smaller.astype(float) - expected).mean() < 8
        stream.call.cancel()

        stretched = await _first_status(channel, config(width=width, height=2 * height))
        assert stretched.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "config.width/height" in stretched.details() and "stretch" in stretched.details()


# --- bad input --------------------------------------------------------------------------------------------------


BAD_AUDIO = {
    "odd byte count": render_service_pb2.AudioChunk(pcm=b"\x00" * 1001, sample_rate=16000, num_channels=1),
    "unsupported sample rate": render_service_pb2.AudioChunk(pcm=b"\x00" * 320, sample_rate=44, num_channels=1),
    "zero-length": render_service_pb2.AudioChunk(pcm=b"", sample_rate=16000, num_channels=1),
    "absurdly large": render_service_pb2.AudioChunk(
        pcm=b"\x00" * (MAX_CHUNK_BYTES + 2), sample_rate=48000, num_channels=1
    ),
    "no channels": render_service_pb2.AudioChunk(pcm=b"\x00" * 320, sample_rate=16000, num_channels=0),
}


async def _healthy_segment(channel: grpc.aio.Channel, seconds: float) -> int:
    stream = await open_stream(channel)
    await stream.write(
        *audio_requests(speech_like([("speech", seconds)])), Req(segment_end=render_service_pb2.SegmentEnd())
    )
    frames = len(videos(await stream.read_until("playback_finished")))
    await stream.call.done_writing()
    await stream.read_to_end()
    return frames


async def test_bad_audio_is_reported_in_band_and_nothing_else_is_lost(channel) -> None:
    async def bad_stream() -> list[str]:
        stream = await open_stream(channel)
        messages = []
        for chunk in BAD_AUDIO.values():
            await stream.write(Req(audio=chunk))
            error = await stream.read()
            assert error.WhichOneof("response") == "error"
            assert error.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            messages.append(error.error.message)
        await stream.write(Req(config=render_service_pb2.RenderConfig(avatar_id="astronaut")), Req())
        assert [r.error.code for r in (await stream.read(), await stream.read())] == [3, 3]
        # The same stream still renders a good segment afterwards.
        await stream.write(
            *audio_requests(speech_like([("speech", 0.2)])), Req(segment_end=render_service_pb2.SegmentEnd())
        )
        assert len(videos(await stream.read_until("playback_finished"))) == 5
        stream.call.cancel()
        return messages

    # A second stream renders concurrently and is untouched by the first one's bad input.
    messages, good_frames = await asyncio.gather(bad_stream(), _healthy_segment(channel, 1.0))
    assert good_frames == FPS
    odd, rate, empty, large, channels = messages
    assert "whole number" in odd and "send complete samples" in odd
    assert "sample rate 44" in rate and "16000" in rate
    assert "empty audio chunk" in empty
    assert "split it" in large
    assert "channel count 0" in channels


async def _first_status(channel: grpc.aio.Channel, first: Req) -> grpc.aio.AioRpcError:
    call = render_service_pb2_grpc.RenderServiceStub(channel).Render(metadata=AUTH)
    await call.write(first)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await asyncio.wait_for(call.read(), READ_TIMEOUT_S)
    return info.value


async def test_stream_setup_errors_end_the_call_with_a_clear_status(channel) -> None:
    not_config = await _first_status(channel, Req(segment_end=render_service_pb2.SegmentEnd()))
    assert not_config.code() == grpc.StatusCode.INVALID_ARGUMENT and "must be `config`" in not_config.details()

    unknown = await _first_status(channel, config(avatar_id="nobody"))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    assert "nobody" in unknown.details() and "available: astronaut" in unknown.details()

    bad_fps = await _first_status(channel, config(fps=500))
    assert bad_fps.code() == grpc.StatusCode.INVALID_ARGUMENT and "config.fps 500" in bad_fps.details()

    bad_rate = await _first_status(channel, config(fps=30, audio_sample_rate=16_000))
    assert bad_rate.code() == grpc.StatusCode.INVALID_ARGUMENT and "divisible" in bad_rate.details()

    bad_quality = await _first_status(channel, config(encoding=common_pb2.VIDEO_ENCODING_JPEG, jpeg_quality=101))
    assert bad_quality.code() == grpc.StatusCode.INVALID_ARGUMENT and "jpeg_quality" in bad_quality.details()

    # The server is still fine after all of that.
    assert await _healthy_segment(channel, 0.2) == 5


async def test_stream_limit_is_resource_exhausted_and_frees_on_close(make_server) -> None:
    running = await make_server(max_sessions=1)
    async with grpc.aio.insecure_channel(running.address) as channel:
        holder = await open_stream(channel)
        refused = await _first_status(channel, config())
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit of 1" in refused.details() and "max_sessions" in refused.details()
        await holder.call.done_writing()
        await holder.read_to_end()
        assert await _healthy_segment(channel, 0.2) == 5


async def test_server_shutdown_ends_open_streams_with_unavailable(make_server) -> None:
    running = await make_server()
    async with grpc.aio.insecure_channel(running.address) as channel:
        stream = await open_stream(channel, config(realtime=True))
        await stream.read()  # an idle frame: the stream is live
        await running.stop(5.0)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                await stream.read()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in info.value.details()

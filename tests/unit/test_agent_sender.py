"""agent-2 (``avaluma send``) up to the network boundary: WAV/PCM reading, segments, byte streams with the stock
attributes, real-time pacing, token grants, and a clear error when LiveKit cannot be reached."""

from __future__ import annotations

import io
import socket
import wave
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from avaluma.agent import sender
from avaluma.agent.cli import send_command
from avaluma.core.errors import InvalidArgument, Unavailable


def wav_bytes(samples: np.ndarray, sample_rate: int = 24_000, channels: int = 1, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(sample_rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


class Pipe(io.RawIOBase):
    """A non-seekable stream, like stdin."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b: Any) -> int:
        chunk = self._buf.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_read_wav_from_file_and_pipe() -> None:
    samples = (np.arange(4800) % 300 - 150).astype(np.int16)
    data = wav_bytes(samples, 16_000)
    for source in (io.BytesIO(data), Pipe(data)):
        pcm = sender.read_wav(source)  # type: ignore[arg-type]
        assert (pcm.sample_rate, pcm.num_channels) == (16_000, 1)
        assert pcm.data == samples.tobytes()
        assert pcm.duration == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFF????not a wav", "not a PCM WAV"),
        (wav_bytes(np.zeros(100, dtype=np.uint8), width=1), "8-bit"),
        (wav_bytes(np.zeros(0, dtype=np.int16)), "no audio"),
        (wav_bytes(np.zeros(100, dtype=np.int16), sample_rate=96_000), "96000 Hz is not supported"),
    ],
)
def test_bad_wav_gets_one_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        sender.read_wav(io.BytesIO(data))


def test_raw_pcm_must_be_whole_samples() -> None:
    with pytest.raises(InvalidArgument, match="not a whole number"):
        sender.read_raw(io.BytesIO(b"\x00\x01\x02"), sample_rate=24_000, num_channels=1)
    pcm = sender.read_raw(io.BytesIO(b"\x00\x01" * 8), sample_rate=24_000, num_channels=2)
    assert pcm.samples_per_channel == 4


def test_segments_and_chunks_cover_the_audio_exactly() -> None:
    stereo = sender.Pcm(np.arange(2 * 25_000, dtype=np.int16).tobytes(), 10_000, 2)  # 2.5 s
    segments = sender.split_segments(stereo, 1.0)
    assert [s.duration for s in segments] == [1.0, 1.0, 0.5]
    assert b"".join(s.data for s in segments) == stereo.data
    pieces = list(sender.chunks(segments[0], chunk_ms=30))
    assert b"".join(pieces) == segments[0].data
    assert all(len(p) % stereo.frame_bytes == 0 for p in pieces)  # never splits a stereo frame
    assert {len(p) for p in pieces[:-1]} == {300 * 4}
    assert sender.split_segments(stereo, None) == [stereo]
    with pytest.raises(InvalidArgument):
        sender.split_segments(stereo, 0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class RecordingWriter:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    async def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(data)

    async def aclose(self) -> None:
        self.closed = True


class RecordingParticipant:
    """Stands in for ``rtc.LocalParticipant`` at the network edge: records the byte streams opened on it."""

    def __init__(self) -> None:
        self.streams: list[tuple[str, dict[str, Any], RecordingWriter]] = []

    async def stream_bytes(self, name: str, **kwargs: Any) -> RecordingWriter:
        writer = RecordingWriter()
        self.streams.append((name, kwargs, writer))
        return writer


async def test_each_segment_is_one_paced_byte_stream_with_stock_attributes() -> None:
    pcm = sender.Pcm(np.ones(24_000, dtype=np.int16).tobytes(), 24_000, 1)  # 1 s
    clock = FakeClock()
    pacer = sender.Pacer(lead_s=0.3, clock=clock, sleep=clock.sleep)
    participant = RecordingParticipant()
    for i, segment in enumerate(sender.split_segments(pcm, 0.5)):
        await sender.send_segment(
            participant, segment, destination="avatar-1", pacer=pacer, name=f"segment-{i}", chunk_ms=100
        )

    assert len(participant.streams) == 2
    for _, kwargs, writer in participant.streams:
        assert kwargs["topic"] == "lk.audio_stream"
        assert kwargs["attributes"] == {"sample_rate": "24000", "num_channels": "1"}
        assert kwargs["destination_identities"] == ["avatar-1"]
        assert writer.closed  # closing the stream ends the segment
        assert [len(w) for w in writer.writes] == [4800] * 5
    assert b"".join(b"".join(w.writes) for _, _, w in participant.streams) == pcm.data

    # Real-time pace: never more than 0.3 s ahead. The first 0.4 s go at once (chunks at 0..0.3 s of audio),
    # then every chunk waits until its audio time minus the lead.
    assert clock.sleeps == pytest.approx([0.1] * 6)
    assert pacer.sent_s == pytest.approx(1.0)


async def test_stream_is_closed_when_sending_is_cancelled() -> None:
    class Boom(Exception):
        pass

    async def failing_sleep(_: float) -> None:
        raise Boom

    pcm = sender.Pcm(np.ones(24_000, dtype=np.int16).tobytes(), 24_000, 1)
    participant = RecordingParticipant()
    with pytest.raises(Boom):
        await sender.send_segment(
            participant, pcm, destination="a", pacer=sender.Pacer(lead_s=0, sleep=failing_sleep), name="s"
        )
    assert participant.streams[0][2].closed


def test_playback_events_only_from_the_avatar() -> None:
    events = sender.PlaybackEvents("avatar-1")
    assert events.on_started("someone-else") == "reject"
    assert events.on_finished("avatar-1", '{"playback_position": 1.5, "interrupted": false}') == "ok"
    assert events.on_finished("avatar-1", "not json") == "ok"
    assert events.finished == [{"playback_position": 1.5, "interrupted": False}, {}]


def test_minted_token_grants_data_only_in_the_room() -> None:
    from livekit import api

    token = sender.mint_token(api_key="key", api_secret="secret" * 6, room="demo", identity="sender-1")
    claims = api.TokenVerifier("key", "secret" * 6).verify(token)
    assert claims.identity == "sender-1"
    assert claims.video is not None
    assert claims.video.room == "demo"
    assert claims.video.room_join
    assert claims.video.can_publish_data
    assert not claims.video.can_publish


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_livekit_is_one_clear_error() -> None:
    token = sender.mint_token(api_key="key", api_secret="secret" * 6, room="demo", identity="s")
    url = f"ws://127.0.0.1:{closed_port()}"
    with pytest.raises(Unavailable, match=r"cannot join the LiveKit room at ws://127\.0\.0\.1:\d+.*Check --url"):
        await sender.send(url=url, token=token, segments=[], avatar_identity="avatar")


def test_cli_requires_one_input_and_credentials(tmp_path: Any) -> None:
    runner = CliRunner()
    result = runner.invoke(send_command, ["--url", "ws://x", "--token", "t"])
    assert result.exit_code == 2
    assert "exactly one input" in result.output
    wav = tmp_path / "a.wav"
    wav.write_bytes(wav_bytes(np.zeros(2400, dtype=np.int16)))
    result = runner.invoke(send_command, ["--wav", str(wav), "--url", "ws://x"], env={"LIVEKIT_API_KEY": ""})
    assert result.exit_code == 2
    assert "--api-key, --api-secret and --room" in result.output


def test_cli_reports_unreachable_server(tmp_path: Any) -> None:
    wav = tmp_path / "a.wav"
    wav.write_bytes(wav_bytes(np.zeros(2400, dtype=np.int16)))
    args = ["--wav", str(wav), "--url", f"ws://127.0.0.1:{closed_port()}", "--room", "demo"]
    args += ["--api-key", "key", "--api-secret", "secret" * 6]
    result = CliRunner().invoke(send_command, args)
    assert result.exit_code == 1
    assert "cannot join the LiveKit room" in result.output

"""Publishing options (``sessions.publish``): codec, bitrate and simulcast reach the avatar_video track's options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from livekit import rtc
from pydantic import ValidationError

from avaluma.core.config import Config, PublishConfig
from avaluma.core.live.livekit_session import VIDEO_TRACK_NAME, VideoPublishing, start_livekit_runtime
from avaluma.core.live.sessions import Session
from avaluma.core.media import RenderOptions
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.energy import EnergyBackend

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_livekits_own() -> None:
    assert Config().sessions.publish == PublishConfig(video_codec="vp8", video_max_bitrate=0, simulcast=True)
    options = VideoPublishing().track_options(fps=25)
    assert options.source == rtc.TrackSource.SOURCE_CAMERA
    assert options.video_codec == rtc.VideoCodec.VP8 and options.simulcast
    assert not options.HasField("video_encoding")  # LiveKit picks the bitrate for the frame size


def test_h264_without_simulcast_at_a_set_bitrate() -> None:
    options = VideoPublishing("h264", 800_000, simulcast=False).track_options(fps=25)
    assert options.video_codec == rtc.VideoCodec.H264 and not options.simulcast
    assert (options.video_encoding.max_bitrate, options.video_encoding.max_framerate) == (800_000, 25.0)


def test_config_refuses_what_livekit_publishing_does_not_offer() -> None:
    with pytest.raises(ValidationError):
        PublishConfig(video_codec="av1")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        PublishConfig(video_max_bitrate=-1)


class Participant:
    """The parts of ``rtc.LocalParticipant`` a session uses; records what is published."""

    def __init__(self) -> None:
        self.published: dict[str, Any] = {}

    async def publish_track(self, track: Any, options: Any) -> None:
        self.published[track.name] = options

    def register_rpc_method(self, _method: str, _handler: Any) -> None:
        pass

    async def perform_rpc(self, **_kwargs: Any) -> str:
        return ""


class Room:
    """The parts of a connected ``rtc.Room`` a session uses (no LiveKit server can run here)."""

    def __init__(self) -> None:
        self.local_participant = Participant()
        self.remote_participants: dict[str, Any] = {}

    def register_byte_stream_handler(self, _topic: str, _handler: Any) -> None:
        pass

    def on(self, _event: str, _handler: Any) -> None:
        pass

    def off(self, _event: str, _handler: Any) -> None:
        pass


async def test_the_session_publishes_its_video_as_configured() -> None:
    avatar = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")
    session = Session("s1", avatar.id, "ws://unused", "room", "avatar", "agent", (), 60, RenderOptions())
    room = Room()
    runtime = await start_livekit_runtime(
        session,
        room,
        avatar,
        EnergyBackend(),
        fps=25,
        audio_sample_rate=24_000,
        end=lambda _reason, _detail: None,
        video=VideoPublishing("h264", 600_000, simulcast=False),
    )
    try:
        video = room.local_participant.published[VIDEO_TRACK_NAME]
        assert video.video_codec == rtc.VideoCodec.H264 and not video.simulcast
        assert video.video_encoding.max_bitrate == 600_000
    finally:
        await runtime.aclose()

"""agent-2 in a real LiveKit room: ``avaluma send``'s streams reach LiveKit's stock avatar receiver and the
receiver's ``lk.playback_finished`` reaches the sender. Needs LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET."""

from __future__ import annotations

import asyncio
import os
import secrets

import numpy as np
import pytest

from avaluma.agent import sender

pytestmark = [pytest.mark.integration, pytest.mark.livekit]

NEEDED = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
if missing := [v for v in NEEDED if not os.environ.get(v)]:
    pytestmark.append(pytest.mark.skip(reason=f"no LiveKit server: {', '.join(missing)} not set"))


async def test_sent_segments_reach_the_stock_receiver_and_playback_is_reported() -> None:
    from livekit import rtc
    from livekit.agents.voice.avatar import AudioSegmentEnd, DataStreamAudioReceiver

    url, key, secret = (os.environ[v] for v in NEEDED)
    room_name = "avaluma-test-" + secrets.token_hex(4)
    avatar = rtc.Room()
    await avatar.connect(
        url, sender.mint_token(api_key=key, api_secret=secret, room=room_name, identity="avatar-under-test")
    )
    receiver = DataStreamAudioReceiver(avatar, sender_identity="sender-under-test")
    await receiver.start()
    received: list[np.ndarray] = []
    segments_done = 0

    async def play() -> None:
        nonlocal segments_done
        async for item in receiver:
            if isinstance(item, AudioSegmentEnd):
                segments_done += 1
                await receiver.notify_playback_finished(playback_position=1.0, interrupted=False)
            else:
                assert (item.sample_rate, item.num_channels) == (16_000, 1)
                received.append(np.frombuffer(item.data, dtype=np.int16).copy())

    player = asyncio.create_task(play())
    try:
        pcm = sender.Pcm((np.arange(32_000) % 200).astype(np.int16).tobytes(), 16_000, 1)  # 2 s
        report = await sender.send(
            url=url,
            token=sender.mint_token(api_key=key, api_secret=secret, room=room_name, identity="sender-under-test"),
            segments=sender.split_segments(pcm, 1.0),
            avatar_identity="avatar-under-test",
        )
        assert report.segments == 2
        assert len(report.finished) == 2
        assert segments_done == 2
        assert np.concatenate(received).tobytes() == pcm.data
    finally:
        player.cancel()
        await receiver.aclose()
        await avatar.disconnect()

"""agent-2: make an Avaluma avatar speak a WAV file, from any program, with its own token and only the LiveKit SDK.

No agent framework and nothing of Avaluma's: the avatar is started through the server's HTTP API (the hosted service's
``POST /v1/livekit/start-avatar``), then the audio goes on LiveKit's stock avatar protocol: a byte stream on topic
``lk.audio_stream`` per segment, answered by ``lk.playback_finished`` (docs/send.md has the whole protocol).

    pip install livekit livekit-api
    set -a; . examples/.env; set +a            # LIVEKIT_*, AVALUMA_HTTP_URL, AVALUMA_API_KEY
    python examples/agent-2.py hello.wav --room demo

Open the room in any LiveKit client (https://agents-playground.livekit.io, or `lk room join`) to see and hear it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import wave
from dataclasses import dataclass
from datetime import timedelta

import aiohttp  # comes with livekit-api
from livekit import api, rtc

SENDER_IDENTITY = "wav-sender"
AVATAR_IDENTITY = "avaluma-avatar"
CHUNK_S = 0.1


@dataclass(frozen=True)
class Settings:
    livekit_url: str
    livekit_api_key: str
    livekit_api_secret: str
    avaluma_http_url: str
    avaluma_api_key: str
    avatar_id: str

    @classmethod
    def from_env(cls) -> Settings:
        missing = [
            name
            for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "AVALUMA_API_KEY")
            if not os.environ.get(name)
        ]
        if missing:
            raise SystemExit(f"set {', '.join(missing)} (see examples/.env.example)")
        return cls(
            livekit_url=os.environ["LIVEKIT_URL"],
            livekit_api_key=os.environ["LIVEKIT_API_KEY"],
            livekit_api_secret=os.environ["LIVEKIT_API_SECRET"],
            avaluma_http_url=os.environ.get("AVALUMA_HTTP_URL", "http://127.0.0.1:8081").rstrip("/"),
            avaluma_api_key=os.environ["AVALUMA_API_KEY"],
            avatar_id=os.environ.get("AVALUMA_AVATAR_ID", ""),
        )


def token(settings: Settings, room: str, identity: str, *, on_behalf_of: str | None = None) -> str:
    """A LiveKit token for ``room``; the avatar's publishes on behalf of the sender, so clients show them together."""
    grants = api.VideoGrants(room_join=True, room=room, can_publish=True, can_subscribe=True, can_publish_data=True)
    built = (
        api.AccessToken(settings.livekit_api_key, settings.livekit_api_secret)
        .with_identity(identity)
        .with_grants(grants)
        .with_ttl(timedelta(hours=1))
    )
    if on_behalf_of is not None:
        built = built.with_kind("agent").with_attributes({"lk.publish_on_behalf": on_behalf_of})
    return built.to_jwt()


async def call(http: aiohttp.ClientSession, settings: Settings, path: str, body: dict[str, object]) -> dict[str, str]:
    """One call of the hosted-service HTTP API; an error answer is raised with the server's message."""
    async with http.post(
        settings.avaluma_http_url + path, json=body, headers={"api-secret": settings.avaluma_api_key}
    ) as response:
        answer = await response.json(content_type=None)
    if response.status >= 400 or answer.get("status") != "success":
        raise RuntimeError(f"{path}: HTTP {response.status}: {answer.get('message', answer)}")
    return answer


async def start_avatar(http: aiohttp.ClientSession, settings: Settings, room: str) -> dict[str, str]:
    return await call(
        http,
        settings,
        "/v1/livekit/start-avatar",
        {
            "livekit_url": settings.livekit_url,
            "livekit_token": token(settings, room, AVATAR_IDENTITY, on_behalf_of=SENDER_IDENTITY),
            "avatar_id": settings.avatar_id,
            "accepted_sender_identities": [SENDER_IDENTITY],
        },
    )


def read_wav(path: str) -> tuple[bytes, int, int]:
    """16-bit PCM from a WAV file: (samples, sample rate, channels)."""
    with wave.open(path, "rb") as wav:
        if wav.getsampwidth() != 2:
            raise SystemExit(f"{path}: {8 * wav.getsampwidth()}-bit samples; send 16-bit PCM")
        return wav.readframes(wav.getnframes()), wav.getframerate(), wav.getnchannels()


async def speak(room: rtc.Room, pcm: bytes, rate: int, channels: int, finished: asyncio.Future[dict]) -> dict:
    """Send one segment at real-time pace and wait for the avatar to finish playing it."""
    writer = await room.local_participant.stream_bytes(
        "segment-0",
        topic="lk.audio_stream",
        destination_identities=[AVATAR_IDENTITY],
        attributes={"sample_rate": str(rate), "num_channels": str(channels)},
    )
    step = int(rate * CHUNK_S) * 2 * channels
    for offset in range(0, len(pcm), step):
        await writer.write(pcm[offset : offset + step])
        await asyncio.sleep(CHUNK_S)
    await writer.aclose()  # the end of the segment
    return await asyncio.wait_for(finished, timeout=len(pcm) / (2 * channels * rate) + 30)


async def main(wav_path: str, room_name: str, settings: Settings) -> None:
    pcm, rate, channels = read_wav(wav_path)
    async with aiohttp.ClientSession() as http:
        started = await start_avatar(http, settings, room_name)
        print(f"avatar {started['avatar_participant_identity']} started in room {room_name!r}")
        room = rtc.Room()
        try:
            await room.connect(settings.livekit_url, token(settings, room_name, SENDER_IDENTITY))
            finished: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

            @room.local_participant.register_rpc_method("lk.playback_finished")
            async def on_finished(data: rtc.RpcInvocationData) -> str:
                if not finished.done():
                    finished.set_result(json.loads(data.payload or "{}"))
                return "ok"

            result = await speak(room, pcm, rate, channels, finished)
            print(f"played {result.get('playback_position', 0):.1f} s, interrupted: {result.get('interrupted')}")
        finally:
            await room.disconnect()
            with contextlib.suppress(Exception):  # the server also ends it when the room empties
                await call(http, settings, "/v1/livekit/stop-avatar", {"session_id": started["session_id"]})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wav", help="16-bit PCM WAV file")
    parser.add_argument("--room", default="demo")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.wav, args.room, Settings.from_env()))
    except (RuntimeError, ConnectionError, rtc.ConnectError, aiohttp.ClientError) as exc:
        sys.exit(f"error: {exc}")

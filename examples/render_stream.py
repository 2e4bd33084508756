"""The Render stream from Python: a WAV file in, the avatar's lip-synced frames (JPEG) and audio out, over gRPC.

For clients that are not in a LiveKit room (a web page, a game engine, a video pipeline). `avaluma render --server`
does the same and writes an MP4; this is the protocol in a few lines, to copy into your own program.

    avaluma serve &                                       # prints its API key at the first start
    python examples/render_stream.py hello.wav --out frames/ --api-key "$AVALUMA_API_KEY"

Any gRPC client works: the API is proto/avaluma/v1/render_service.proto (the generated Python is avaluma.proto.v1).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import wave
from pathlib import Path

import grpc

from avaluma.proto.v1 import common_pb2, render_service_pb2, render_service_pb2_grpc

CHUNK_S = 0.1


async def render(
    target: str, api_key: str, wav_path: str, out_dir: Path, avatar_id: str = "", emotion: str = ""
) -> int:
    """Send the WAV as one segment; save every frame as out_dir/NNNNN.jpg and the returned audio as out_dir/audio.wav.
    With ``emotion`` the avatar starts neutral and eases into it halfway through (docs/expressions.md).
    Returns the number of frames."""
    with wave.open(wav_path, "rb") as wav:
        rate, channels, pcm = wav.getframerate(), wav.getnchannels(), wav.readframes(wav.getnframes())
    started = asyncio.Event()

    async def requests():
        # 1. The config, first and once. realtime=False: frames come as fast as they render, only for the audio.
        config = render_service_pb2.RenderConfig(avatar_id=avatar_id, encoding=common_pb2.VIDEO_ENCODING_JPEG)
        yield render_service_pb2.RenderRequest(config=config)
        await started.wait()  # set-up errors (unknown avatar, wrong key) then arrive with their own status
        # 2. The audio: int16 PCM chunks of ~100 ms, any rate and channel count; 3. the end of the segment.
        step = int(rate * CHUNK_S) * 2 * channels
        for i in range(0, len(pcm), step):
            if emotion and i <= len(pcm) // 2 < i + step:
                # An emotion change applies from here on in the audio (an unknown name comes back as an `error`).
                yield render_service_pb2.RenderRequest(set_emotion=render_service_pb2.SetEmotion(emotion=emotion))
            chunk = render_service_pb2.AudioChunk(pcm=pcm[i : i + step], sample_rate=rate, num_channels=channels)
            yield render_service_pb2.RenderRequest(audio=chunk)
        yield render_service_pb2.RenderRequest(segment_end=render_service_pb2.SegmentEnd())
        # 4. Returning half-closes the stream: the server sends the remaining frames and ends the call.

    os.makedirs(out_dir, exist_ok=True)
    frames = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = render_service_pb2_grpc.RenderServiceStub(channel)
        with wave.open(str(out_dir / "audio.wav"), "wb") as audio_out:
            audio_out.setnchannels(1), audio_out.setsampwidth(2)
            async for response in stub.Render(requests(), metadata=[("x-api-key", api_key)]):
                kind = response.WhichOneof("response")
                if kind == "started":
                    s = response.started
                    print(f"{s.avatar_id}: {s.width}x{s.height} at {s.fps} fps, audio at {s.audio_sample_rate} Hz")
                    audio_out.setframerate(s.audio_sample_rate)
                    started.set()
                elif kind == "video":  # each video frame is followed by the audio frame with the same index
                    (out_dir / f"{response.video.index:05d}.jpg").write_bytes(response.video.data)
                    frames += 1
                elif kind == "audio":
                    audio_out.writeframes(response.audio.pcm)
                elif kind in ("playback_started", "playback_finished", "error"):
                    print(kind, getattr(response, kind))
    return frames


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("wav", help="16-bit PCM WAV file")
    parser.add_argument("--out", type=Path, default=Path("frames"))
    parser.add_argument("--server", default="127.0.0.1:8080")
    parser.add_argument("--api-key", default=os.environ.get("AVALUMA_API_KEY", ""))
    parser.add_argument("--avatar", default="")
    parser.add_argument("--emotion", default="", help="e.g. happy: eased into halfway through the audio")
    args = parser.parse_args()
    count = asyncio.run(render(args.server, args.api_key, args.wav, args.out, args.avatar, args.emotion))
    print(f"{count} frames in {args.out}/")

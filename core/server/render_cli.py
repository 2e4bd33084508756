"""``avaluma render``: the embedded render of :mod:`avaluma.renderer.cli`, plus ``--server HOST:PORT`` to render on an
Avaluma server through its Render stream instead (the same options, the same MP4; the server's avatars and model).

Lives in the server layer because it speaks gRPC; the local path is the renderer's command, unchanged.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from avaluma.core.errors import AvalumaError, ConfigError
from avaluma.core.media import AudioChunk
from avaluma.renderer.cli import PAD_S, chunked, open_audio
from avaluma.renderer.cli import render_command as local_render_command
from avaluma.renderer.engine import RenderedFrame

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "0.0.0.0")


def _api_key(given: str | None, server: str) -> str:
    if given:
        return given
    from avaluma.core.server.serve import dev_key_path

    if server.rsplit(":", 1)[0] in LOCAL_HOSTS and dev_key_path().is_file():
        return dev_key_path().read_text(encoding="utf-8").strip()
    raise ConfigError(f"no API key for {server}: pass --api-key or set AVALUMA_API_KEY (`avaluma serve` prints it)")


def _speech(ctx: click.Context, text: str | None, audio: Path | None) -> Iterator[AudioChunk]:
    if audio is not None:
        reader = open_audio(audio)
        rate, chunks = reader.sample_rate, reader.chunks()
    else:
        from avaluma.core.cli import context_config
        from avaluma.core.plugins import load_registry
        from avaluma.core.speech import synthesize_text_sync

        speech = synthesize_text_sync(text or "", tts_ref=context_config(ctx).tts, registry=load_registry())
        rate, chunks = speech.sample_rate, chunked(speech)
    silence = AudioChunk(np.zeros(round(PAD_S * rate), np.float32), rate)
    yield silence  # the mouth is seen at rest before and after, as in a local render
    yield from chunks
    yield silence


def render_on_server(
    ctx: click.Context,
    *,
    server: str,
    api_key: str | None,
    text: str | None,
    audio: Path | None,
    output: Path,
    avatar_id: str | None,
    fps: int | None,
    emotion: str | None = None,
) -> None:
    from PIL import Image

    from avaluma.core.server.grpc.render_client import render_remote
    from avaluma.renderer.mp4 import write_mp4

    key = _api_key(api_key, server)
    started = time.perf_counter()
    result = asyncio.run(
        render_remote(
            server,
            _speech(ctx, text, audio),
            api_key=key,
            avatar_id=avatar_id or "",
            fps=fps or 0,
            emotion=emotion or "",
        )
    )

    def frames() -> Iterator[RenderedFrame]:
        for f in result.frames:
            rgb = np.asarray(Image.open(io.BytesIO(f.jpeg)).convert("RGB"))
            pcm = np.frombuffer(f.pcm, "<i2").astype(np.float32) / 32768.0
            yield RenderedFrame(f.index, round(f.index * 1e6 / result.fps), rgb, pcm, f.speaking)

    summary = write_mp4(
        output,
        frames(),
        fps=result.fps,
        audio_sample_rate=result.audio_sample_rate,
        width=result.width,
        height=result.height,
    )
    click.echo(f"wrote {output}")
    click.echo(
        f"{summary.video_s:.2f} s of video, {summary.frames} frames at {result.fps} fps, avatar {result.avatar_id}, "
        f"rendered by {server} in {time.perf_counter() - started:.1f} s"
    )


def _render(**kwargs: Any) -> None:
    ctx = click.get_current_context()
    server, api_key = kwargs.pop("server"), kwargs.pop("api_key")
    if server is None:
        ctx.invoke(local_render_command, **kwargs)
        return
    if kwargs["lipsync"] is not None:
        raise click.UsageError("--lipsync picks the local backend: with --server the server's own model renders")
    if (kwargs["text"] is None) == (kwargs["audio"] is None):
        raise click.UsageError('give exactly one of --text "..." or --audio FILE')
    try:
        render_on_server(
            ctx,
            server=server,
            api_key=api_key,
            text=kwargs["text"],
            audio=kwargs["audio"],
            output=kwargs["output"],
            avatar_id=kwargs["avatar_id"],
            fps=kwargs["fps"],
            emotion=kwargs["emotion"],
        )
    except AvalumaError as exc:
        raise click.ClickException(exc.message) from exc


render_command = click.Command(
    "render",
    callback=_render,
    help=(local_render_command.help or "")
    + "\n\nWith --server HOST:PORT the avatar is rendered by that Avaluma server (its Render stream) instead.",
    params=[
        *local_render_command.params,
        click.Option(
            ["--server"],
            default=None,
            metavar="HOST:PORT",
            help="Render on this Avaluma server (gRPC Render stream) instead of in this process.",
        ),
        click.Option(
            ["--api-key"],
            envvar="AVALUMA_API_KEY",
            default=None,
            help="The server's API key [env AVALUMA_API_KEY; a local server's development key is found by itself].",
        ),
    ],
)

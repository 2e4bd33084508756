"""``avaluma render``: text or a WAV file in, an MP4 of the avatar speaking out. No server, no cloud, no GPU.

The same :class:`~avaluma.renderer.engine.RenderSession` the server uses, driven from a file in 100 ms chunks, so this
path exercises exactly what a live session does (minus the network).
"""

from __future__ import annotations

import logging
import os
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from avaluma.core.config import Config, ProviderRef
from avaluma.core.errors import AvalumaError, InvalidArgument, NotFound
from avaluma.core.media import AudioChunk, pcm16_to_mono, validate_format
from avaluma.renderer.avatar import AVATAR_ID_RE, Avatar
from avaluma.renderer.engine import RenderedFrame, RenderSession
from avaluma.renderer.hvia import SUFFIX, load_hvia

if TYPE_CHECKING:
    from avaluma.core.plugins import ProviderRegistry
    from avaluma.renderer.lipsync.base import LipSyncBackend

logger = logging.getLogger(__name__)

#: Silence before and after the speech, so the mouth is seen at rest.
PAD_S = 0.3
CHUNK_S = 0.1
#: Log progress every this many seconds of rendered audio.
PROGRESS_EVERY_S = 10.0
DEFAULT_OUTPUT = Path("out/render.mp4")
#: Where the repository's bundled avatars are when avaluma runs from a checkout (editable install).
REPO_ROOT = Path(__file__).resolve().parent.parent


# --- inputs --------------------------------------------------------------------------------------------------


def resolve_avatars_dir(configured: Path) -> Path:
    """``configured`` as given if it exists (absolute, or relative to the current directory), else relative to the
    repository root, so ``avaluma render`` works from a fresh clone run anywhere inside it."""
    if configured.is_absolute() or configured.is_dir():
        return configured
    in_repo = REPO_ROOT / configured
    return in_repo if in_repo.is_dir() else configured


def available_avatar_ids(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob(f"*{SUFFIX}") if AVATAR_ID_RE.fullmatch(p.stem))


def load_avatar_by_id(avatar_id: str, avatars_dir: Path) -> Avatar:
    """Load ``<avatars_dir>/<avatar_id>.hvia``; :class:`NotFound` lists the ids that exist."""
    path = avatars_dir / f"{avatar_id}{SUFFIX}"
    if not AVATAR_ID_RE.fullmatch(avatar_id) or not path.is_file():
        ids = available_avatar_ids(avatars_dir)
        shown = ", ".join(ids) if ids else f"none (no {SUFFIX} files in {avatars_dir})"
        raise NotFound(f"unknown avatar {avatar_id!r}; available: {shown}; pick one with --avatar")
    return load_hvia(path)


class WavReader:
    """A 16-bit PCM WAV file (any rate and channel count) read as mono chunks. Opening validates the format."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._wav = wave.open(str(path), "rb")  # noqa: SIM115 - closed by chunks() or on a format error
        except FileNotFoundError:
            raise InvalidArgument(f"{path}: audio file not found") from None
        except (wave.Error, EOFError) as e:
            raise InvalidArgument(
                f"{path}: not a PCM WAV file we can read ({e}); convert it to 16-bit PCM, e.g. "
                "`ffmpeg -i input -acodec pcm_s16le output.wav`"
            ) from None
        self.sample_rate = self._wav.getframerate()
        self.channels = self._wav.getnchannels()
        width = self._wav.getsampwidth()
        if width != 2:
            self._wav.close()
            raise InvalidArgument(
                f"{path}: {8 * width}-bit samples are not supported; convert it to 16-bit PCM, e.g. "
                "`ffmpeg -i input -acodec pcm_s16le output.wav`"
            )
        try:
            validate_format(self.sample_rate, self.channels)
        except InvalidArgument as e:
            self._wav.close()
            raise InvalidArgument(f"{path}: {e.message}") from None
        self.duration_s = self._wav.getnframes() / self.sample_rate

    def chunks(self, chunk_s: float = CHUNK_S) -> Iterator[AudioChunk]:
        per_chunk = max(1, round(self.sample_rate * chunk_s))
        frame_bytes = 2 * self.channels
        with self._wav:
            while data := self._wav.readframes(per_chunk):
                whole = len(data) - len(data) % frame_bytes  # a truncated file may end mid-sample
                if whole:
                    yield pcm16_to_mono(data[:whole], self.sample_rate, self.channels)


def chunked(audio: AudioChunk, chunk_s: float = CHUNK_S) -> Iterator[AudioChunk]:
    step = max(1, round(audio.sample_rate * chunk_s))
    for start in range(0, len(audio.samples), step):
        yield AudioChunk(audio.samples[start : start + step], audio.sample_rate)


# --- the render loop -----------------------------------------------------------------------------------------


def render_frames(
    session: RenderSession, chunks: Iterator[AudioChunk], *, pad_s: float = PAD_S
) -> Iterator[RenderedFrame]:
    """Rest frames, the speech, rest frames: every frame of one segment, lazily (fed straight to the encoder)."""
    pad = round(pad_s * session.fps)
    yield from session.idle_frames(pad)
    next_log = PROGRESS_EVERY_S
    for chunk in chunks:
        for out in session.push_audio(chunk):
            if isinstance(out, RenderedFrame):
                yield out
        done_s = session.frames_emitted / session.fps
        if done_s >= next_log:
            logger.info("rendering", extra={"rendered_s": round(done_s, 1)})
            next_log += PROGRESS_EVERY_S
    for out in session.end_segment():
        if isinstance(out, RenderedFrame):
            yield out
    yield from session.idle_frames(pad)


def _build_backend(config: Config, name: str | None) -> tuple[LipSyncBackend, ProviderRegistry]:
    """The lip-sync backend (and the provider registry, reused for TTS)."""
    from avaluma.core.plugins import load_registry

    registry = load_registry()
    ref = config.lipsync if name is None or name == config.lipsync.name else ProviderRef(name=name)
    return registry.create("lipsync_backend", ref), registry


def _config(ctx: click.Context) -> Config:
    try:
        from avaluma.core.cli import context_config
    except ImportError:  # pragma: no cover - only when embedded without the core CLI
        return Config()
    return context_config(ctx)


@click.command("render")
@click.option("--text", help="Text to speak (offline TTS, piper by default).")
@click.option(
    "--audio",
    type=click.Path(dir_okay=False, path_type=Path),
    help="16-bit PCM WAV file to lip-sync (any sample rate, mono or multi-channel).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_OUTPUT,
    show_default=True,
    help="MP4 file to write (parent directories are created).",
)
@click.option("--avatar", "avatar_id", default=None, help="Avatar id (default: config default_avatar, 'astronaut').")
@click.option("--fps", type=click.IntRange(1, 60), default=None, help="Frames per second (default: config, 25).")
@click.option("--lipsync", default=None, help="Lip-sync backend name (default: config lipsync.name, 'energy').")
@click.pass_context
def render_command(
    ctx: click.Context,
    text: str | None,
    audio: Path | None,
    output: Path,
    avatar_id: str | None,
    fps: int | None,
    lipsync: str | None,
) -> None:
    """Render --text or --audio to an MP4 (H.264 + AAC) of the avatar speaking."""
    if (text is None) == (audio is None):
        raise click.UsageError('give exactly one of --text "..." or --audio file.wav')
    try:
        _render(ctx, text=text, audio=audio, output=output, avatar_id=avatar_id, fps=fps, lipsync=lipsync)
    except AvalumaError as e:
        raise click.ClickException(e.message) from e


def _render(
    ctx: click.Context,
    *,
    text: str | None,
    audio: Path | None,
    output: Path,
    avatar_id: str | None,
    fps: int | None,
    lipsync: str | None,
) -> None:
    from avaluma.renderer.mp4 import write_mp4

    config = _config(ctx)
    avatars_dir = resolve_avatars_dir(config.avatars_dir)
    avatar = load_avatar_by_id(avatar_id or config.default_avatar, avatars_dir)
    reader = WavReader(audio) if audio is not None else None  # validate before building anything heavy
    backend, registry = _build_backend(config, lipsync)
    if reader is not None:
        chunks, speech_s = reader.chunks(), reader.duration_s
    else:
        from avaluma.core.speech import synthesize_text_sync

        speech = synthesize_text_sync(text or "", tts_ref=config.tts, registry=registry)
        chunks, speech_s = chunked(speech), speech.duration_s
    session = RenderSession(
        avatar,
        backend,
        fps=fps or config.render.fps,
        audio_sample_rate=config.render.audio_sample_rate,
        seed=config.render.seed,
    )
    logger.info(
        "render started",
        extra={"avatar_id": avatar.id, "speech_s": round(speech_s, 2), "fps": session.fps, "output": str(output)},
    )
    # Encode to a temporary name so an interrupted render never leaves a truncated file under the final name.
    partial = output.with_name(f".{output.name}.partial.mp4")
    started = time.perf_counter()
    try:
        summary = write_mp4(
            partial,
            render_frames(session, chunks),
            fps=session.fps,
            audio_sample_rate=session.audio_sample_rate,
            width=session.width,
            height=session.height,
        )
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    elapsed = max(time.perf_counter() - started, 1e-9)
    click.echo(f"wrote {output}")
    click.echo(
        f"{summary.video_s:.2f} s of video, {summary.frames} frames at {session.fps} fps, avatar {avatar.id}, "
        f"rendered and encoded at {summary.frames / elapsed:.0f} frames/s ({summary.video_s / elapsed:.1f}x real time)"
    )

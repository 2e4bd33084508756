"""``avaluma render``: text or an audio file in, an MP4 of the avatar speaking out. No server, no cloud, no GPU.

The same :class:`~avaluma.renderer.engine.RenderSession` the server uses, driven from a file in 100 ms chunks, so this
path exercises exactly what a live session does (minus the network).
"""

from __future__ import annotations

import logging
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from avaluma.core.config import Config, ProviderRef
from avaluma.core.errors import AvalumaError, InvalidArgument, NotFound
from avaluma.core.media import EMOTIONS, AudioChunk, pcm16_to_mono, validate_format
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


class DecodedAudio:
    """Any audio FFmpeg (PyAV) decodes: MP3, M4A/AAC, OGG/Opus, FLAC, 8/24/32-bit or float WAV, a video's sound
    track. Decoded at once to mono float32 (a render needs all of it anyway) and read as chunks."""

    def __init__(self, path: Path) -> None:
        import av
        import numpy as np

        self.path = path
        try:
            container = av.open(str(path))
        except FileNotFoundError:
            raise InvalidArgument(f"{path}: audio file not found") from None
        except av.error.FFmpegError as e:
            raise InvalidArgument(f"{path}: not an audio file FFmpeg can decode ({e})") from None
        with container:
            if not container.streams.audio:
                raise InvalidArgument(f"{path}: the file has no audio track")
            stream = container.streams.audio[0]
            rate = stream.rate or 48_000
            try:
                validate_format(rate, 1)
            except InvalidArgument:
                rate = 48_000  # e.g. 96 kHz studio audio: resampled, the lip-sync model listens at 16 kHz anyway
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            parts: list[np.ndarray] = []
            try:
                for frame in container.decode(stream):
                    parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
                parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
            except av.error.FFmpegError as e:
                raise InvalidArgument(f"{path}: the audio could not be decoded ({e})") from None
        samples = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
        if not len(samples):
            raise InvalidArgument(f"{path}: the audio track holds no samples")
        self.audio = AudioChunk(samples, rate)
        self.sample_rate = rate
        self.duration_s = len(samples) / rate

    def chunks(self, chunk_s: float = CHUNK_S) -> Iterator[AudioChunk]:
        return chunked(self.audio, chunk_s)


def open_audio(path: Path) -> WavReader | DecodedAudio:
    """A 16-bit PCM WAV is streamed from disk as it is; anything else goes through FFmpeg (PyAV, a dependency)."""
    if not path.is_file():
        raise InvalidArgument(f"{path}: audio file not found")
    try:
        return WavReader(path)
    except InvalidArgument:
        return DecodedAudio(path)


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
    help="Audio file to lip-sync: WAV, MP3, M4A, OGG, FLAC, ... (anything FFmpeg decodes; any rate and channels).",
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
@click.option("--lipsync", default=None, help="Lip-sync backend name (default: config lipsync.name, 'onnx').")
@click.option(
    "--emotion",
    type=click.Choice(EMOTIONS),
    default=None,
    help="The emotion the avatar shows (default: config render.emotion, 'neutral'); docs/expressions.md.",
)
@click.pass_context
def render_command(
    ctx: click.Context,
    text: str | None,
    audio: Path | None,
    output: Path,
    avatar_id: str | None,
    fps: int | None,
    lipsync: str | None,
    emotion: str | None,
) -> None:
    """Render --text or --audio to an MP4 (H.264 + AAC) of the avatar speaking."""
    if (text is None) == (audio is None):
        raise click.UsageError('give exactly one of --text "..." or --audio FILE')
    try:
        _render(
            ctx, text=text, audio=audio, output=output, avatar_id=avatar_id, fps=fps, lipsync=lipsync, emotion=emotion
        )
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
    emotion: str | None = None,
) -> None:
    from avaluma.renderer.mp4 import write_mp4

    config = _config(ctx)
    avatars_dir = resolve_avatars_dir(config.avatars_dir)
    avatar = load_avatar_by_id(avatar_id or config.default_avatar, avatars_dir)
    reader = open_audio(audio) if audio is not None else None  # validate before building anything heavy
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
        emotion=emotion or config.render.emotion,
        expressions=config.render.expressions,
    )
    logger.info(
        "render started",
        extra={
            "avatar_id": avatar.id,
            "speech_s": round(speech_s, 2),
            "fps": session.fps,
            "emotion": session.emotion,
            "output": str(output),
        },
    )
    started = time.perf_counter()
    summary = write_mp4(
        output,
        render_frames(session, chunks),
        fps=session.fps,
        audio_sample_rate=session.audio_sample_rate,
        width=session.width,
        height=session.height,
    )
    elapsed = max(time.perf_counter() - started, 1e-9)
    click.echo(f"wrote {output}")
    click.echo(
        f"{summary.video_s:.2f} s of video, {summary.frames} frames at {session.fps} fps, avatar {avatar.id} "
        f"({session.emotion}), "
        f"lip-sync {backend.name}, rendered and encoded at {summary.frames / elapsed:.0f} frames/s "
        f"({summary.video_s / elapsed:.1f}x real time)"
    )


# --- avaluma avatar ------------------------------------------------------------------------------------------


@click.group("avatar")
def avatar_group() -> None:
    """Build, inspect and preview .hvia avatar files."""


class _Bar:
    """A one-line progress bar on stderr (click's bar needs a known length; builds report fractions)."""

    def __init__(self) -> None:
        self._last = ""
        self._open = False  # the cursor is at the end of an unfinished bar line

    def __call__(self, message: str, fraction: float | None) -> None:
        if fraction is None:
            line = f"  {message}..."
        else:
            filled = round(24 * fraction)
            line = f"  [{'#' * filled}{'.' * (24 - filled)}] {fraction:4.0%} {message}"
        if line != self._last:
            ends = fraction is None or fraction >= 1.0
            click.echo(f"\r{line:<72}", nl=ends, err=True)
            self._last, self._open = line, not ends

    def close(self) -> None:
        """End an unfinished bar line, so what is printed next (an error) starts on its own line."""
        if self._open:
            click.echo("", err=True)
            self._open = False


@avatar_group.command("build")
@click.option("--photo", type=click.Path(dir_okay=False, path_type=Path), help="A photo of one face (JPEG/PNG).")
@click.option("--video", type=click.Path(dir_okay=False, path_type=Path), help="A clip of the person speaking.")
@click.option("--id", "avatar_id", required=True, help="Avatar id: 1-64 of a-z, 0-9, '-', '_'.")
@click.option("--name", default=None, help="Display name (default: the id).")
@click.option("--license", "license_", default="", help="Licence of the source picture, kept in the file.")
@click.option("--size", default="512x512", show_default=True, help="Output WIDTHxHEIGHT, e.g. 512x512 or 512x640.")
@click.option("--fps", type=click.IntRange(1, 60), default=25, show_default=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the .hvia (default: <avatars_dir>/<id>.hvia).",
)
@click.pass_context
def build_command(
    ctx: click.Context,
    photo: Path | None,
    video: Path | None,
    avatar_id: str,
    name: str | None,
    license_: str,
    size: str,
    fps: int,
    output: Path | None,
) -> None:
    """Make a .hvia avatar from --photo face.jpg or --video clip.mp4 (offline face detection and landmarks)."""
    from avaluma.renderer import builder
    from avaluma.renderer.hvia import save_hvia

    if (photo is None) == (video is None):
        raise click.UsageError("give exactly one of --photo face.jpg or --video clip.mp4")
    if not AVATAR_ID_RE.fullmatch(avatar_id):
        raise click.BadParameter("use 1-64 characters of a-z, 0-9, '-' and '_'", param_hint="--id")
    bar = _Bar()
    try:
        dims = builder.parse_size(size)
        if photo is not None:
            avatar = builder.build_photo_avatar(
                builder.read_image(photo), avatar_id=avatar_id, name=name, license=license_, size=dims, fps=fps,
                source=photo.name, progress=bar,
            )  # fmt: skip
        else:
            assert video is not None
            bar("reading the clip", None)
            frames, rate = builder.read_video(video)
            avatar = builder.build_video_avatar(
                frames, rate, avatar_id=avatar_id, name=name, license=license_, size=dims, fps=fps,
                source=video.name, progress=bar,
            )  # fmt: skip
        if output is None:
            output = resolve_avatars_dir(_config(ctx).avatars_dir) / f"{avatar_id}{SUFFIX}"
        path = save_hvia(avatar, output)
    except AvalumaError as e:
        bar.close()
        raise click.ClickException(e.message) from e
    finally:
        bar.close()
    for line in builder.build_report(avatar):
        click.echo(line)
    click.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {avatar.kind} avatar {avatar.width}x{avatar.height})"
    )


def _load_path_or_id(ctx: click.Context, target: str) -> Avatar:
    path = Path(target)
    if path.suffix == SUFFIX or path.exists():
        return load_hvia(path)
    return load_avatar_by_id(target, resolve_avatars_dir(_config(ctx).avatars_dir))


@avatar_group.command("inspect")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def inspect_command(ctx: click.Context, target: str, as_json: bool) -> None:
    """Show what is inside an avatar (a .hvia path or an avatar id)."""
    import json

    try:
        avatar = _load_path_or_id(ctx, target)
    except AvalumaError as e:
        raise click.ClickException(e.message) from e
    info = describe(avatar)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        click.echo(f"{key:>16}: {value}")


def describe(avatar: Avatar) -> dict[str, object]:
    """A summary of an avatar for people and scripts."""
    info: dict[str, object] = {
        "id": avatar.id,
        "name": avatar.name,
        "kind": avatar.kind,
        "size": f"{avatar.width}x{avatar.height}",
        "fps": avatar.fps,
        "format_version": avatar.format_version,
        "license": avatar.license,
        "file_bytes": avatar.size_bytes,
        "memory_bytes": avatar.memory_bytes,
        "mouth_width_px": round(avatar.rig.mouth_width, 1),
        "eyes": len(avatar.eyes),
        "landmarks": 0 if avatar.landmarks is None else len(avatar.landmarks),
        "metadata": avatar.metadata,
    }
    if avatar.video is not None:
        info["loop_frames"] = len(avatar.video.frames)
        info["loop_s"] = round(len(avatar.video.frames) / avatar.fps, 2)
        info["atlas_tiles"] = len(avatar.video.atlas.params)
    return info


@avatar_group.command("preview")
@click.argument("target")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG to write (default: out/<id>-preview.png).",
)
@click.pass_context
def preview_command(ctx: click.Context, target: str, output: Path | None) -> None:
    """Write a contact sheet PNG: key mouth shapes and idle states, each emotion at rest and speaking, mouth close-ups
    at every viseme, a speech strip."""
    from avaluma.renderer.preview import contact_sheet

    try:
        avatar = _load_path_or_id(ctx, target)
    except AvalumaError as e:
        raise click.ClickException(e.message) from e
    output = output or Path("out") / f"{avatar.id}-preview.png"
    output.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet(avatar).save(output, optimize=True)
    click.echo(f"wrote {output}")

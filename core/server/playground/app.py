"""``avaluma playground``: see and hear an avatar live in the browser, with no LiveKit server and no keys.

A plain static page (``static/``, no build step) talks to this aiohttp app:

- ``GET /api/avatars``: the avatars, with where each one's mouth is (the page measures lip movement there);
- ``POST /api/offer`` ``{sdp, type, avatar_id}``: a WebRTC offer; the answer carries one video and one audio track of
  the avatar, and takes the browser's microphone track when it sends one. Media go over real WebRTC (aiortc), so
  latency and A/V sync are what they are in a room;
- ``POST /api/sessions/{id}/say`` ``{text}`` (offline TTS, streamed into the avatar as it is synthesized),
  ``/audio`` (a file in the body: anything FFmpeg decodes), ``/mic`` ``{on}`` (push to talk: the microphone becomes
  one segment), ``/stop`` (the stock ``lk.clear_buffer``: the mouth closes at once), ``/state`` ``{state}`` (idle,
  listening, thinking), ``/emotion`` ``{emotion}`` (neutral, happy, serious, surprised, concerned; eased);
- events (``playback_started``, ``playback_finished``, ``state``, ``emotion``) go to the page on the data channel it
  opens;
- ``POST /api/build?id=...&kind=photo|video`` (the file in the body) builds a new avatar as ``avaluma avatar build``
  does, in a thread; ``GET /api/build/{job}`` is its progress, ``/api/build/{job}/preview.png`` its contact sheet.

Each connection runs the server's own :class:`~avaluma.core.live.playout.Playout` (the clocked player of LiveKit
sessions and Render streams) with a sink that feeds the two WebRTC tracks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import io
import json
import logging
import secrets
import tempfile
import time
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import click
import numpy as np
from aiohttp import web

from avaluma.core.cli import context_config
from avaluma.core.config import Config
from avaluma.core.errors import AvalumaError, InvalidArgument, NotFound
from avaluma.core.live.events import Cleared
from avaluma.core.media import AudioChunk, decode_pcm16, pcm16_to_mono
from avaluma.core.tasks import cancel_and_wait
from avaluma.renderer.engine import PlaybackEvent, RenderedFrame, RenderSession

log = logging.getLogger(__name__)

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
#: WebRTC's audio rate (Opus); the avatar's audio is rendered at it, so nothing is resampled on the way out.
AUDIO_RATE: Final = 48_000
VIDEO_CLOCK: Final = 90_000
#: Frames a track holds before dropping the oldest: the browser must see now, not a backlog.
TRACK_QUEUE: Final = 4
MAX_UPLOAD_BYTES: Final = 50 * 1024 * 1024


def _media_tracks() -> tuple[type[Any], type[Any]]:
    """The two aiortc track classes (aiortc is imported only when the playground runs)."""
    import av
    from aiortc import MediaStreamTrack

    class _QueueTrack(MediaStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self._queue: asyncio.Queue[Any] = asyncio.Queue()

        def put(self, item: Any) -> None:
            while self._queue.qsize() >= TRACK_QUEUE:
                self._queue.get_nowait()
            self._queue.put_nowait(item)

        def clear(self) -> None:
            while not self._queue.empty():
                self._queue.get_nowait()

    class VideoTrack(_QueueTrack):
        kind = "video"

        def __init__(self, fps: int) -> None:
            super().__init__()
            self._fps = fps

        async def recv(self) -> Any:
            frame: RenderedFrame = await self._queue.get()
            out = av.VideoFrame.from_ndarray(frame.rgb, format="rgb24")
            out.pts = frame.index * VIDEO_CLOCK // self._fps
            out.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            return out

    class AudioTrack(_QueueTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._samples = 0

        async def recv(self) -> Any:
            frame: RenderedFrame = await self._queue.get()
            pcm = (np.clip(frame.audio, -1.0, 1.0) * 32767).astype(np.int16)[None, :]
            out = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            out.sample_rate = AUDIO_RATE
            out.pts = self._samples
            out.time_base = fractions.Fraction(1, AUDIO_RATE)
            self._samples += pcm.shape[1]
            return out

    return VideoTrack, AudioTrack


class TrackSink:
    """The :class:`~avaluma.core.live.playout.FrameSink` of a browser: each published frame to both tracks."""

    def __init__(self, video: Any, audio: Any) -> None:
        self.video = video
        self.audio = audio

    def prepare(self, frame: RenderedFrame) -> None:
        pass

    async def push(self, frame: RenderedFrame) -> None:
        self.video.put(frame)
        self.audio.put(frame)

    async def clear(self) -> None:
        self.video.clear()
        self.audio.clear()


@dataclass
class Session:
    """One browser: its peer connection, the playout feeding its tracks, and what its data channel is told."""

    id: str
    pc: Any
    playout: Any
    avatar_id: str
    channel: Any = None
    mic_on: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    #: Say requests whose text is still being synthesized (Stop cancels them).
    speaking: set[asyncio.Task[Any]] = field(default_factory=set)

    def send(self, message: dict[str, Any]) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps({**message, "t": time.time()}))

    async def forward_events(self) -> None:
        """The playout's playback events (also those a Stop answered) to the page."""
        async for event in self.playout.events():
            if isinstance(event, PlaybackEvent):
                self.on_event(event)
            elif isinstance(event, Cleared):
                for finished in event.finished:
                    self.on_event(finished)

    def on_event(self, event: PlaybackEvent) -> None:
        self.send(
            {
                "type": f"playback_{event.kind}",
                "segment": event.segment,
                "position_s": round(event.position_s, 3),
                "interrupted": event.interrupted,
            }
        )


@dataclass
class BuildJob:
    """An avatar being built from an upload: what the page polls (progress, then the preview sheet or the error)."""

    id: str
    avatar_id: str
    status: str = "running"
    message: str = "starting"
    fraction: float = 0.0
    error: str = ""
    preview: bytes | None = None


class Playground:
    """Avatars, the lip-sync backend and the TTS, shared by every browser session; the aiohttp routes."""

    def __init__(self, config: Config, registry: Any) -> None:
        from avaluma.core.live.avatar_store import AvatarStore
        from avaluma.renderer.cli import resolve_avatars_dir

        self.config = config
        self.registry = registry
        self.store = AvatarStore.open(resolve_avatars_dir(config.avatars_dir))
        if not self.store.ids():
            raise NotFound(f"no avatars in {config.avatars_dir}: build one with `avaluma avatar build photo.jpg`")
        self.sessions: dict[str, Session] = {}
        self.builds: dict[str, BuildJob] = {}
        self.build_tasks: set[asyncio.Task[None]] = set()
        self._backend: Any = None
        self._tts: Any = None
        self._lock = asyncio.Lock()
        #: What the page's self-test (``?autotest=1``) reported last, for tests and bench/playground.py.
        self.reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def _lipsync(self) -> Any:
        async with self._lock:
            if self._backend is None:
                self._backend = await asyncio.to_thread(self.registry.create, "lipsync_backend", self.config.lipsync)
            return self._backend

    async def _voice(self) -> Any:
        """The TTS, built in a thread (loading a voice would stall every playout's clock on the event loop) and
        warmed with one word, so the first sentence is not slowed by model loading."""
        async with self._lock:
            if self._tts is None:
                tts = await asyncio.to_thread(self.registry.create, "tts", self.config.tts)
                stream = tts.synthesize("Hello.")
                try:
                    async for _ in stream:
                        pass
                finally:
                    await stream.aclose()
                self._tts = tts
            return self._tts

    async def warm_up(self) -> None:
        """Load the lip-sync model and the voice before the first browser asks (started with the server)."""
        try:
            await self._lipsync()
            await self._voice()
        except AvalumaError as exc:
            log.warning("playground warm-up failed", extra={"error": exc.message})

    def _session(self, request: web.Request) -> Session:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            raise NotFound("no such playground session: reconnect the page")
        return session

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES, middlewares=[_errors])
        app.router.add_get("/", self._index)
        app.router.add_get("/api/avatars", self._avatars)
        app.router.add_post("/api/offer", self._offer)
        app.router.add_post("/api/sessions/{id}/say", self._say)
        app.router.add_post("/api/sessions/{id}/audio", self._audio)
        app.router.add_post("/api/sessions/{id}/mic", self._mic)
        app.router.add_post("/api/sessions/{id}/stop", self._stop)
        app.router.add_post("/api/sessions/{id}/state", self._state)
        app.router.add_post("/api/sessions/{id}/emotion", self._emotion)
        app.router.add_post("/api/report", self._report)
        app.router.add_post("/api/build", self._build)
        app.router.add_get("/api/build/{job}", self._build_status)
        app.router.add_get("/api/build/{job}/preview.png", self._build_preview)
        app.router.add_static("/static/", STATIC_DIR)
        app.on_shutdown.append(lambda _app: self.close())
        return app

    async def _index(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def _avatars(self, _request: web.Request) -> web.Response:
        listed = []
        for avatar_id in self.store.ids():
            avatar = self.store.get(avatar_id)
            entry: dict[str, Any] = {"id": avatar_id, "width": avatar.width, "height": avatar.height}
            rig = getattr(avatar, "rig", None)
            if rig is not None:  # the inner mouth, where an open mouth shows (the page's lip-movement probe)
                entry["mouth"] = [
                    round(rig.mouth_left[0] + 0.2 * rig.mouth_width),
                    round(rig.upper_lip_inner[1] - 2),
                    round(rig.mouth_right[0] - 0.2 * rig.mouth_width),
                    round(rig.lower_lip_bottom[1] + 3),
                ]
            listed.append(entry)
        return web.json_response({"avatars": listed, "default": self.config.default_avatar})

    async def _offer(self, request: web.Request) -> web.Response:
        from aiortc import RTCPeerConnection, RTCSessionDescription

        from avaluma.core.live.playout import Playout

        body = await request.json()
        avatar_id = str(body.get("avatar_id") or self.config.default_avatar)
        avatar = self.store.get(avatar_id)
        fps = self.config.render.fps
        lipsync, expressions = await self._lipsync(), self.config.render.expressions
        render = RenderSession(avatar, lipsync, fps=fps, audio_sample_rate=AUDIO_RATE, expressions=expressions)
        video_cls, audio_cls = _media_tracks()
        video, audio = video_cls(fps), audio_cls()
        pc = RTCPeerConnection()
        session = Session(secrets.token_hex(8), pc, None, avatar_id)
        session.playout = Playout(render, TrackSink(video, audio))
        self.sessions[session.id] = session

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            session.channel = channel

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                session.tasks.append(asyncio.create_task(self._read_mic(session, track)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._end(session)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        # The page's transceivers (video recvonly, audio sendrecv) take our tracks: addTrack fills them and makes
        # them send.
        pc.addTrack(video)
        pc.addTrack(audio)
        await pc.setLocalDescription(await pc.createAnswer())  # aiortc gathers its candidates before returning
        session.tasks.append(asyncio.create_task(session.playout.run()))
        session.tasks.append(asyncio.create_task(session.forward_events()))
        log.info("playground session started", extra={"session_id": session.id, "avatar_id": avatar_id})
        answer = pc.localDescription
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "session_id": session.id})

    async def _read_mic(self, session: Session, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not session.mic_on:
                    continue
                pcm = frame.to_ndarray().astype("<i2").tobytes()
                session.playout.push_audio(pcm16_to_mono(pcm, frame.sample_rate, len(frame.layout.channels)))

    async def _say(self, request: web.Request) -> web.Response:
        session = self._session(request)
        text = str((await request.json()).get("text") or "").strip()
        if not text:
            raise InvalidArgument("text is empty: type something for the avatar to say")
        task = asyncio.create_task(self._speak(session, text))
        session.tasks.append(task)
        session.speaking.add(task)
        task.add_done_callback(session.speaking.discard)
        return web.json_response({"status": "ok"})

    async def _speak(self, session: Session, text: str) -> None:
        """Stream the TTS into the playout as it synthesizes, so the mouth moves before the sentence is done."""
        tts = await self._voice()
        rate = int(tts.sample_rate)
        stream = tts.synthesize(text)
        try:
            async for event in stream:
                samples = decode_pcm16(bytes(event.frame.data), int(event.frame.num_channels))
                session.playout.push_audio(AudioChunk(samples, rate))
        finally:
            await stream.aclose()
        session.playout.end_segment()

    async def _audio(self, request: web.Request) -> web.Response:
        from avaluma.renderer.cli import open_audio

        session = self._session(request)
        data = await request.read()
        if not data:
            raise InvalidArgument("no audio in the request body: upload a file")
        with tempfile.NamedTemporaryFile(suffix=".audio") as file:
            file.write(data)
            file.flush()
            reader = await asyncio.to_thread(open_audio, Path(file.name))
            chunks = await asyncio.to_thread(lambda: list(reader.chunks()))
        for chunk in chunks:
            session.playout.push_audio(chunk)
        session.playout.end_segment()
        return web.json_response({"status": "ok", "duration_s": round(reader.duration_s, 3)})

    async def _mic(self, request: web.Request) -> web.Response:
        session = self._session(request)
        on = bool((await request.json()).get("on"))
        if session.mic_on and not on:
            session.playout.end_segment()
        session.mic_on = on
        return web.json_response({"status": "ok", "on": on})

    async def _stop(self, request: web.Request) -> web.Response:
        session = self._session(request)
        session.mic_on = False
        # Text still being synthesized would start speaking again after the clear: it is dropped too.
        await cancel_and_wait(*session.speaking)
        session.playout.clear()  # lk.clear_buffer: playback_finished{interrupted} goes to the page at once
        return web.json_response({"status": "ok"})

    async def _state(self, request: web.Request) -> web.Response:
        session = self._session(request)
        state = str((await request.json()).get("state"))
        session.playout.set_state(state)
        session.send({"type": "state", "state": state})
        return web.json_response({"status": "ok", "state": state})

    async def _emotion(self, request: web.Request) -> web.Response:
        session = self._session(request)
        emotion = (await request.json()).get("emotion")
        session.playout.set_emotion(emotion if isinstance(emotion, str) else "")  # unknown: 400 listing the names
        session.send({"type": "emotion", "emotion": session.playout.emotion})
        return web.json_response({"status": "ok", "emotion": session.playout.emotion})

    async def _build(self, request: web.Request) -> web.Response:
        """Build an avatar from the uploaded photo (or short clip, ``kind=video``) in a thread; poll its job."""
        from avaluma.renderer.avatar import AVATAR_ID_RE

        avatar_id = request.query.get("id", "")
        kind = request.query.get("kind", "photo")
        if not AVATAR_ID_RE.fullmatch(avatar_id):
            raise InvalidArgument("avatar id: use 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter")
        if kind not in ("photo", "video"):
            raise InvalidArgument("kind must be photo or video")
        data = await request.read()
        if not data:
            raise InvalidArgument("no file in the request body: upload a photo or a short clip")
        job = BuildJob(secrets.token_hex(6), avatar_id)
        self.builds[job.id] = job
        task = asyncio.create_task(asyncio.to_thread(self._run_build, job, kind, data))
        self.build_tasks.add(task)
        task.add_done_callback(self.build_tasks.discard)
        return web.json_response({"job": job.id})

    def _run_build(self, job: BuildJob, kind: str, data: bytes) -> None:
        """The builder of ``avaluma avatar build``, with its progress reported to the page (runs in a thread)."""
        from avaluma.renderer import builder
        from avaluma.renderer.hvia import dump_hvia_bytes
        from avaluma.renderer.preview import contact_sheet

        def progress(message: str, fraction: float | None) -> None:
            job.message, job.fraction = message, fraction if fraction is not None else job.fraction

        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"upload.{'mp4' if kind == 'video' else 'img'}"
                path.write_bytes(data)
                if kind == "photo":
                    avatar = builder.build_photo_avatar(
                        builder.read_image(path), avatar_id=job.avatar_id, source="upload", progress=progress
                    )
                else:
                    progress("reading the clip", 0.0)
                    frames, rate = builder.read_video(path)
                    avatar = builder.build_video_avatar(
                        frames, rate, avatar_id=job.avatar_id, source="upload", progress=progress
                    )
            progress("storing", 1.0)
            self.store.add(dump_hvia_bytes(avatar), job.avatar_id, overwrite=True)
            buffer = io.BytesIO()
            contact_sheet(avatar).save(buffer, format="PNG", optimize=True)
            job.preview = buffer.getvalue()
            job.status, job.message = "done", "done"
        except AvalumaError as exc:
            job.status, job.error = "error", exc.message
        except Exception as exc:  # the page shows it; the playground goes on
            log.exception("avatar build failed", extra={"avatar_id": job.avatar_id})
            job.status, job.error = "error", f"{type(exc).__name__}: {exc}"

    async def _build_status(self, request: web.Request) -> web.Response:
        job = self.builds.get(request.match_info["job"])
        if job is None:
            raise NotFound("no such build")
        return web.json_response(
            {
                "status": job.status,
                "message": job.message,
                "fraction": job.fraction,
                "avatar_id": job.avatar_id,
                "error": job.error,
            }
        )

    async def _build_preview(self, request: web.Request) -> web.Response:
        job = self.builds.get(request.match_info["job"])
        if job is None or job.preview is None:
            raise NotFound("no preview (yet) for this build")
        return web.Response(body=job.preview, content_type="image/png")

    async def _report(self, request: web.Request) -> web.Response:
        await self.reports.put(await request.json())
        return web.json_response({"status": "ok"})

    async def _end(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        session.playout.close()
        for task in session.tasks:
            await cancel_and_wait(task)
        await session.pc.close()
        log.info("playground session ended", extra={"session_id": session.id})

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            await self._end(session)
        for task in list(self.build_tasks):  # a build in its thread finishes; nothing waits for its result
            task.cancel()
        if self._tts is not None:
            await self._tts.aclose()


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except AvalumaError as exc:
        status = {"NOT_FOUND": 404, "INVALID_ARGUMENT": 400}.get(exc.code, 500)
        return web.json_response({"status": "error", "code": exc.code, "message": exc.message}, status=status)


@dataclass
class RunningPlayground:
    playground: Playground
    runner: web.AppRunner
    url: str
    warm: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        await cancel_and_wait(self.warm)
        await self.runner.cleanup()


async def start_playground(config: Config, registry: Any, *, host: str, port: int) -> RunningPlayground:
    """Serve the playground on ``host:port`` (0 = a free port); returns once it listens."""
    playground = Playground(config, registry)
    runner = web.AppRunner(playground.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        from avaluma.core.errors import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}): pick another with --port") from exc
    server: Any = site._server  # aiohttp does not expose the bound port; its server object does
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    running = RunningPlayground(playground, runner, f"http://{host}:{bound}/")
    running.warm = asyncio.create_task(playground.warm_up(), name="avaluma-playground-warm-up")
    return running


@click.command("playground")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8090, show_default=True, help="0 picks a free port.")
@click.option("--open/--no-open", "open_browser", default=True, help="Open the page in the default browser.")
@click.pass_context
def playground_command(ctx: click.Context, host: str, port: int, open_browser: bool) -> None:
    """See and hear an avatar live in the browser (WebRTC, offline TTS, microphone); no LiveKit, no keys."""
    from avaluma.core.plugins import load_registry

    config = context_config(ctx)

    async def main() -> None:
        running = await start_playground(config, load_registry(), host=host, port=port)
        click.echo(f"Avaluma playground listening on {running.url}")
        if open_browser:
            webbrowser.open(running.url)
        try:
            await asyncio.Event().wait()
        finally:
            await running.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())

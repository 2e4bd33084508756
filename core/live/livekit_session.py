"""One avatar session in a LiveKit room: receiver -> :class:`Playout` -> ``rtc.AVSynchronizer`` -> the room.

The parts, outside in:

- :func:`start_livekit_runtime` is the thin room adapter: it publishes ``avatar_video`` (camera) and ``avatar_audio``
  (microphone) — the avatar's token carries ``lk.publish_on_behalf``, so LiveKit shows them as the agent's — wires
  the stream handler and RPCs, and turns room events (everyone left, reconnecting) into session decisions;
- :class:`LiveSession` is the session itself, room-free: a :class:`Playout` fed by an
  :class:`AudioStreamReceiver`; one task reads the player's event stream and fans each event out to the playback
  RPC replies, the session's watchers and the end policy; another publishes per-second stats and applies the idle
  timeout. Tests build it with a recording sink and a scripted ``send_rpc``;
- :class:`AVSyncSink` publishes each frame's video, then exactly its audio, through ``rtc.AVSynchronizer``, and
  records the resulting audio-minus-video offset (``avaluma.av.offset``);
- lip-sync backend faults (Triton died) reach the session from the render threads through the player's event stream
  (:class:`PlayoutEvents`): an ``error`` event, and under the backend's ``end`` policy the session ends with
  ``EndReason.LIPSYNC_UNAVAILABLE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from avaluma.core import telemetry
from avaluma.core.errors import AvalumaError, Unavailable
from avaluma.core.live.audio_receiver import AudioStreamReceiver, SenderPolicy, SendRpc
from avaluma.core.live.events import (
    Cleared,
    EndReason,
    LipSyncFaulted,
    PlayoutEvent,
    PlayoutFailed,
    SessionError,
    SessionStats,
)
from avaluma.core.live.playout import Clock, FrameSink, Playout, PlayoutEvents
from avaluma.core.live.sessions import VideoPublishing, output_size
from avaluma.core.live.telemetry_render import KIND_LIVEKIT, lipsync_instrumentation, stream_telemetry
from avaluma.core.media import float_to_pcm16
from avaluma.core.tasks import cancel_and_wait
from avaluma.renderer.engine import PlaybackEvent, RenderedFrame, RenderSession
from avaluma.renderer.lipsync.base import LipSyncBackend, LipSyncFault

if TYPE_CHECKING:
    from avaluma.core.live.sessions import Session
    from avaluma.renderer.avatar import Avatar

log = logging.getLogger(__name__)

__all__ = [
    "AVSyncSink",
    "LiveKitRuntime",
    "LiveSession",
    "VideoPublishing",
    "build_live_session",
    "start_livekit_runtime",
]

#: Seconds between two ``stats`` events of a session.
STATS_INTERVAL_S: Final = 1.0
#: Media queued in LiveKit's audio source and the synchronizer's video queue (AvatarRunner's default).
MEDIA_QUEUE_MS: Final = 100
VIDEO_TRACK_NAME: Final = "avatar_video"
AUDIO_TRACK_NAME: Final = "avatar_audio"

#: Ends a session: ``(reason, detail)``. Provided by the session registry.
EndSession = Callable[[EndReason, str], None]


class LiveSession:
    """A live session without the room: receiver, playout, events, stats and idle timeout.

    ``session`` receives the events (:meth:`Session.publish`); ``end`` is called once when the session should end
    on its own (idle timeout, a failed playout). :meth:`start` begins playing; :meth:`aclose` stops everything.
    """

    def __init__(
        self,
        session: Session,
        render: RenderSession,
        sink: FrameSink,
        *,
        send_rpc: SendRpc,
        end: EndSession,
        is_agent: Callable[[str], bool] = lambda _identity: False,
        clock: Clock | None = None,
        stats_interval_s: float = STATS_INTERVAL_S,
        events: PlayoutEvents | None = None,
        trace_context: object | None = None,
    ) -> None:
        """``events``: the event stream ``render``'s lip-sync instrumentation reports faults to (the player's).
        ``trace_context``: the parent of the session's segment spans (its ``StartSession`` call's context)."""
        self.session = session
        self._end = end
        self._stats_interval_s = stats_interval_s
        # Its frames count towards the server's lateness watch through the session's slot (admission stops while the
        # sessions are behind).
        self.playout = Playout(render, sink, clock=clock, events=events, watch=session.slot)
        self.playout.telemetry = stream_telemetry(
            KIND_LIVEKIT,
            {telemetry.ATTR_AVATAR_ID: session.avatar_id, telemetry.ATTR_FPS: render.fps},
            self.playout.memory_bytes,
            context=trace_context,
        )
        self.receiver = AudioStreamReceiver(
            self.playout,
            SenderPolicy(session.accepted_senders, agent=session.agent_identity),
            send_rpc=send_rpc,
            on_error=self.report_error,
            is_agent=is_agent,
            set_emotion=self.set_emotion,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._ending = False

    def start(self) -> None:
        self.receiver.start()
        self._tasks = [
            asyncio.create_task(self._play(), name=f"avaluma-playout-{self.session.id}"),
            asyncio.create_task(self._dispatch(), name=f"avaluma-session-events-{self.session.id}"),
            asyncio.create_task(self._watch(), name=f"avaluma-session-watch-{self.session.id}"),
        ]

    async def aclose(self) -> None:
        self.playout.close()
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        await self.receiver.aclose()

    def report_error(self, exc: AvalumaError) -> None:
        """Publish a recoverable error; the session goes on."""
        self.session.publish(SessionError.of(exc))

    def set_emotion(self, emotion: str) -> None:
        """Show ``emotion`` from this point of the audio on (the ``set_emotion`` RPC, ``SetEmotion``, the HTTP API);
        :class:`InvalidArgument` listing the valid names changes nothing."""
        self.playout.set_emotion(emotion)
        self.session.show_emotion(self.playout.emotion)

    def _on_lipsync_fault(self, fault: LipSyncFault) -> None:
        """Tell the watchers; under the ``end`` policy end the session (its renders now fail), else it goes on."""
        log.warning(
            "lip-sync backend fault in a session",
            extra={"event": "lipsync_fault", "session_id": self.session.id, "url": fault.url, "action": fault.action},
        )
        self.session.publish(SessionError.of(Unavailable(fault.describe())))
        if fault.action == "end":
            self._request_end(EndReason.LIPSYNC_UNAVAILABLE, fault.describe())

    def _on_failure(self, exc: Exception) -> None:
        if self._ending and isinstance(exc, AvalumaError):
            # Expected: the lip-sync backend failed under policy `end`; its fault (an earlier event) ended the session.
            log.info("playout stopped by a lip-sync fault", extra={"session_id": self.session.id})
            return
        log.error("playout failed", extra={"session_id": self.session.id}, exc_info=exc)
        self.session.publish(SessionError(AvalumaError.code, f"rendering failed: {exc}"))
        self._request_end(EndReason.ERROR, "rendering failed; see the error event")

    def _request_end(self, reason: EndReason, detail: str) -> None:
        if not self._ending:
            self._ending = True
            self._end(reason, detail)

    async def _play(self) -> None:
        with contextlib.suppress(Exception):  # a failure is an event of the stream (PlayoutFailed)
            await self.playout.run()

    async def _dispatch(self) -> None:
        """The one reader of the player's events: playback RPC replies, watchers, the end policy."""
        async for event in self.playout.events():
            self._on_event(event)

    def _on_event(self, event: PlayoutEvent) -> None:
        if isinstance(event, PlaybackEvent):
            self.receiver.on_playback(event)  # to the segment's sender
            self.session.publish(event)
        elif isinstance(event, Cleared):
            for finished in event.finished:  # the receiver answered the clear itself, from clear()'s return value
                self.session.publish(finished)
        elif isinstance(event, LipSyncFaulted):
            self._on_lipsync_fault(event.fault)
        elif isinstance(event, PlayoutFailed):
            self._on_failure(event.error)
        # FellBehind: the playout logged it; its late frames are in the stats events.

    async def _watch(self) -> None:
        """Per-second stats, and the idle timeout (no audio, no clear, nothing playing)."""
        clock = self.playout.clock
        last_time, last_frames = clock.now(), self.playout.stats().frames
        while True:
            await clock.sleep(self._stats_interval_s)
            now, stats = clock.now(), self.playout.stats()
            elapsed = max(now - last_time, 1e-9)
            self.session.publish(
                SessionStats(
                    fps=(stats.frames - last_frames) / elapsed,
                    late_frames=stats.late_frames,
                    queue_depth=stats.queue_depth,
                )
            )
            last_time, last_frames = now, stats.frames
            idle_s = now - self.playout.last_activity
            if idle_s >= self.session.idle_timeout_s and stats.queue_depth == 0 and stats.backlog_s == 0:
                self._request_end(
                    EndReason.IDLE_TIMEOUT,
                    f"no audio for {self.session.idle_timeout_s} s (the session's idle timeout)",
                )
                return


def build_live_session(
    session: Session,
    avatar: Avatar,
    backend: LipSyncBackend,
    sink: FrameSink,
    *,
    fps: int,
    audio_sample_rate: int,
    send_rpc: SendRpc,
    end: EndSession,
    is_agent: Callable[[str], bool] = lambda _identity: False,
    clock: Clock | None = None,
    stats_interval_s: float = STATS_INTERVAL_S,
) -> LiveSession:
    """A session's runtime rendering with the server's shared ``backend``: inference spans and metrics
    (:func:`lipsync_instrumentation`), backend faults reported to the session through the player's event stream, segment
    spans parented on the ``StartSession`` call (``session.trace_context``). Call on the event loop; then
    :meth:`start`."""
    events = PlayoutEvents()
    render = RenderSession(
        avatar,
        backend,
        fps=fps,
        audio_sample_rate=audio_sample_rate,
        seed=session.render.seed,
        instrumentation=lipsync_instrumentation(backend, on_fault=events.fault_from_worker),
        emotion=session.emotion,
        expressions=session.render.expressions,
    )
    return LiveSession(
        session,
        render,
        sink,
        send_rpc=send_rpc,
        end=end,
        is_agent=is_agent,
        clock=clock,
        stats_interval_s=stats_interval_s,
        events=events,
        trace_context=session.trace_context,
    )


# --- LiveKit ----------------------------------------------------------------------------------------------------


class AVSyncSink:
    """Publishes frames through ``rtc.AVSynchronizer``: the video frame, then exactly the audio that plays with it,
    so audio can lead video by at most the one frame being pushed.

    :meth:`prepare` (called by the playout's render worker thread) does the conversions to ``rtc`` frames, so
    :meth:`push` on the event loop only hands them over. Frames of another size than ``width`` x ``height`` are
    scaled to it there (FFmpeg's swscale, straight to I420 when both sides are even, so capture converts nothing).
    """

    def __init__(self, *, width: int, height: int, fps: int, sample_rate: int) -> None:
        from livekit import rtc

        self._rtc = rtc
        self.width, self.height, self.sample_rate = width, height, sample_rate
        self.audio_source = rtc.AudioSource(sample_rate=sample_rate, num_channels=1, queue_size_ms=MEDIA_QUEUE_MS)
        self.video_source = rtc.VideoSource(width=width, height=height)
        self.av_sync = rtc.AVSynchronizer(
            audio_source=self.audio_source,
            video_source=self.video_source,
            video_fps=fps,
            video_queue_size_ms=MEDIA_QUEUE_MS,
        )
        self._fps = fps
        self._published = 0
        self._metric_attrs: telemetry.Attributes = {telemetry.ATTR_SESSION_KIND: KIND_LIVEKIT}
        #: Converted media by frame index. Written by the render thread, read and pruned on the event loop: single
        #: dict operations are atomic under the GIL, and the two sides never touch the same key at once.
        self._prepared: dict[int, tuple[Any, Any]] = {}

    def prepare(self, frame: RenderedFrame) -> None:
        """Convert ``frame`` to ``rtc`` video and audio frames ahead of :meth:`push` (any thread)."""
        self._prepared[frame.index] = self._convert(frame)

    def _convert(self, frame: RenderedFrame) -> tuple[Any, Any]:
        rtc = self._rtc
        if frame.rgb.shape[:2] != (self.height, self.width):
            video = self._scaled(frame.rgb)
        else:
            rgb = np.ascontiguousarray(frame.rgb)
            video = rtc.VideoFrame(self.width, self.height, rtc.VideoBufferType.RGB24, rgb.tobytes())
        audio = rtc.AudioFrame(float_to_pcm16(frame.audio), self.sample_rate, 1, len(frame.audio))
        return video, audio

    def _scaled(self, rgb: np.ndarray) -> Any:
        """``rgb`` scaled to the published size as an ``rtc.VideoFrame`` (about 0.65 ms from 512x640 to 256x320)."""
        import av

        rtc, width, height = self._rtc, self.width, self.height
        source = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        if width % 2 or height % 2:  # I420 needs even sides
            scaled = source.reformat(width, height, format="rgb24", interpolation="FAST_BILINEAR")
            return rtc.VideoFrame(width, height, rtc.VideoBufferType.RGB24, scaled.to_ndarray().tobytes())
        scaled = source.reformat(width, height, format="yuv420p", interpolation="FAST_BILINEAR")
        return rtc.VideoFrame(width, height, rtc.VideoBufferType.I420, scaled.to_ndarray().tobytes())

    async def push(self, frame: RenderedFrame) -> None:
        media = self._prepared.pop(frame.index, None)
        video, audio = media if media is not None else self._convert(frame)
        # Frames prepared but dropped (a clear, idle frames replaced by speech) are never pushed: forget them.
        for index in [i for i in list(self._prepared) if i < frame.index]:  # list(): the render thread adds keys
            self._prepared.pop(index, None)
        # Timestamps count published frames: frames dropped by a clear leave no gap on the output clock.
        self._published += 1
        end_s = self._published / self._fps
        await self.av_sync.push(video, end_s - 1 / self._fps)
        await self.av_sync.push(audio, end_s)
        if telemetry.metrics_enabled():  # reading the audio queue is an FFI call: skip it while metrics are off
            telemetry.AV_OFFSET.record(self.av_offset_s(), self._metric_attrs)

    def av_offset_s(self) -> float:
        """Audio minus video presentation time at the output now (positive: audio leads), from the synchronizer's
        view: the audio being played out against the last video frame captured."""
        return float(self.av_sync.last_audio_time - self.av_sync.last_video_time)

    async def clear(self) -> None:
        await self.av_sync.clear_queue()

    async def aclose(self) -> None:
        await self.av_sync.aclose()
        await self.audio_source.aclose()
        await self.video_source.aclose()


class LiveKitRuntime:
    """A :class:`LiveSession` joined to its room, with the media tracks published."""

    def __init__(self, runtime: LiveSession, sink: AVSyncSink, room: Any, handlers: dict[str, Any]) -> None:
        self.runtime = runtime
        self._sink = sink
        self._room = room
        self._handlers = handlers

    @property
    def sink(self) -> AVSyncSink:
        """Where the session's frames go: its ``video_source`` publishes ``avatar_video``."""
        return self._sink

    def set_emotion(self, emotion: str) -> None:
        self.runtime.set_emotion(emotion)

    async def aclose(self) -> None:
        for event, handler in self._handlers.items():
            with contextlib.suppress(Exception):
                self._room.off(event, handler)
        await self.runtime.aclose()
        await self._sink.aclose()


async def start_livekit_runtime(
    session: Session,
    room: Any,
    avatar: Avatar,
    backend: LipSyncBackend,
    *,
    fps: int,
    audio_sample_rate: int,
    end: EndSession,
    video: VideoPublishing | None = None,
) -> LiveKitRuntime:
    """Publish the avatar's tracks in the connected ``rtc.Room`` and start the session in it.

    ``video``: codec, bitrate and simulcast of ``avatar_video`` (default: LiveKit's, :class:`VideoPublishing`).

    ``backend`` is the server's shared lip-sync backend; the session renders through it with inference spans
    (:func:`lipsync_instrumentation`) and its faults reported to the session (its player's event stream); its segment
    spans are children of the ``StartSession`` call that started it (``session.trace_context``).
    """
    from livekit import rtc

    width, height = output_size(session.render, avatar)
    sink = AVSyncSink(width=width, height=height, fps=fps, sample_rate=audio_sample_rate)

    async def send_rpc(destination: str, method: str, payload: str) -> str:
        return str(
            await room.local_participant.perform_rpc(destination_identity=destination, method=method, payload=payload)
        )

    def is_agent(identity: str) -> bool:
        participant = room.remote_participants.get(identity)
        return participant is not None and participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT

    runtime = build_live_session(
        session,
        avatar,
        backend,
        sink,
        fps=fps,
        audio_sample_rate=audio_sample_rate,
        send_rpc=send_rpc,
        end=end,
        is_agent=is_agent,
    )
    try:
        local = room.local_participant
        audio_track = rtc.LocalAudioTrack.create_audio_track(AUDIO_TRACK_NAME, sink.audio_source)
        await local.publish_track(audio_track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        video_track = rtc.LocalVideoTrack.create_video_track(VIDEO_TRACK_NAME, sink.video_source)
        await local.publish_track(video_track, (video or VideoPublishing()).track_options(fps=fps))
        runtime.receiver.attach(room)
    except BaseException:
        await sink.aclose()
        raise

    def on_participant_disconnected(_participant: Any) -> None:
        if not room.remote_participants:
            end(EndReason.ROOM_EMPTY, "everyone else left the room")

    def on_reconnecting() -> None:
        log.warning("connection to the room lost; reconnecting", extra={"session_id": session.id})

    def on_reconnected() -> None:
        log.info("reconnected to the room", extra={"session_id": session.id})

    handlers = {
        "participant_disconnected": on_participant_disconnected,
        "reconnecting": on_reconnecting,
        "reconnected": on_reconnected,
    }
    for event, handler in handlers.items():
        room.on(event, handler)
    runtime.start()
    return LiveKitRuntime(runtime, sink, room, handlers)

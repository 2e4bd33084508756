"""``avaluma.v1`` messages to the domain's plain types and back: the AvatarService half of the gRPC edge.

Servicers call these and delegate; the live layer below never sees a protobuf message. Every mapping here is
one-to-one with the wire format, so WatchSession and GetSession clients see exactly the messages they always did.
"""

from __future__ import annotations

from typing import Final

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from avaluma.core.errors import AvalumaError, InvalidArgument
from avaluma.core.live.events import (
    EmotionChanged,
    EndReason,
    SessionError,
    SessionEvent,
    SessionStarted,
    SessionState,
    SessionStats,
)
from avaluma.core.live.sessions import Session, StartRequest, VideoPublishing
from avaluma.core.media import RenderOptions
from avaluma.proto.v1 import avatar_service_pb2, common_pb2, render_service_pb2
from avaluma.renderer.engine import PlaybackEvent

SESSION_STATES: Final[dict[SessionState, avatar_service_pb2.SessionState]] = {
    SessionState.STARTING: avatar_service_pb2.SESSION_STATE_STARTING,
    SessionState.ACTIVE: avatar_service_pb2.SESSION_STATE_ACTIVE,
    SessionState.ENDING: avatar_service_pb2.SESSION_STATE_ENDING,
    SessionState.ENDED: avatar_service_pb2.SESSION_STATE_ENDED,
}
END_REASONS: Final[dict[EndReason, avatar_service_pb2.EndReason]] = {
    EndReason.STOPPED: avatar_service_pb2.END_REASON_STOPPED,
    EndReason.IDLE_TIMEOUT: avatar_service_pb2.END_REASON_IDLE_TIMEOUT,
    EndReason.ROOM_EMPTY: avatar_service_pb2.END_REASON_ROOM_EMPTY,
    EndReason.DISCONNECTED: avatar_service_pb2.END_REASON_DISCONNECTED,
    EndReason.ERROR: avatar_service_pb2.END_REASON_ERROR,
    EndReason.SERVER_SHUTDOWN: avatar_service_pb2.END_REASON_SERVER_SHUTDOWN,
    EndReason.LIPSYNC_UNAVAILABLE: avatar_service_pb2.END_REASON_LIPSYNC_UNAVAILABLE,
}
VIDEO_CODECS: Final[dict[str, avatar_service_pb2.VideoCodec]] = {
    "vp8": avatar_service_pb2.VIDEO_CODEC_VP8,
    "h264": avatar_service_pb2.VIDEO_CODEC_H264,
}


# --- requests ---------------------------------------------------------------------------------------------------


def render_options(
    message: common_pb2.RenderOptions | render_service_pb2.RenderConfig,
    defaults: RenderOptions,
    *,
    field: str = "render",
) -> RenderOptions:
    """``RenderOptions`` from the wire (0 = the server's default), validated with the request's field names
    (``field``: where the message sits in the request, ``render`` of StartSession or a Render stream's ``config``)."""
    return defaults.resolve(
        fps=message.fps,
        audio_sample_rate=message.audio_sample_rate,
        seed=message.seed,
        width=message.width,
        height=message.height,
        field=field,
    )


def start_request(message: avatar_service_pb2.StartSessionRequest, defaults: RenderOptions) -> StartRequest:
    publish = message.publish
    codec = ""
    if publish.video_codec != avatar_service_pb2.VIDEO_CODEC_UNSPECIFIED:
        names = {number: name for name, number in VIDEO_CODECS.items()}
        if publish.video_codec not in names:
            raise InvalidArgument(
                f"publish.video_codec {publish.video_codec} is not a known VideoCodec: use VP8 or H264, or leave it "
                "unset for the server's default"
            )
        codec = names[publish.video_codec]
    return StartRequest(
        livekit_url=message.livekit_url,
        livekit_token=message.livekit_token,
        avatar_id=message.avatar_id,
        render=render_options(message.render, defaults),
        accepted_senders=tuple(message.accepted_sender_identities),
        agent_identity=message.agent_identity if message.HasField("agent_identity") else None,
        idle_timeout_s=message.idle_timeout_s,
        emotion=message.emotion,
        video_codec=codec,
        video_max_bitrate=publish.video_max_bitrate,
        simulcast=publish.simulcast if publish.HasField("simulcast") else None,
    )


# --- responses --------------------------------------------------------------------------------------------------


def timestamp(time_ns: int) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(time_ns)
    return ts


def render_options_message(options: RenderOptions) -> common_pb2.RenderOptions:
    return common_pb2.RenderOptions(
        width=options.width,
        height=options.height,
        fps=options.fps,
        audio_sample_rate=options.audio_sample_rate,
        seed=options.seed,
    )


def publish_options_message(publish: VideoPublishing) -> avatar_service_pb2.PublishOptions:
    return avatar_service_pb2.PublishOptions(
        video_codec=VIDEO_CODECS[publish.codec], video_max_bitrate=publish.max_bitrate, simulcast=publish.simulcast
    )


def session_info(session: Session) -> avatar_service_pb2.SessionInfo:
    return avatar_service_pb2.SessionInfo(
        session_id=session.id,
        avatar_id=session.avatar_id,
        state=SESSION_STATES[session.state],
        livekit_url=session.livekit_url,
        room_name=session.room_name,
        avatar_participant_identity=session.identity,
        agent_identity=session.agent_identity,
        render=render_options_message(session.render),
        started_at=timestamp(session.started_at_ns),
        emotion=session.emotion,
        publish=publish_options_message(session.video),
    )


def stream_error(error: AvalumaError | SessionError) -> common_pb2.StreamError:
    """The in-band error message; its ``code`` is the status number (google.rpc.Code) the error's code name maps to,
    as :func:`~avaluma.core.server.grpc.errors.status_code` maps raised errors (``INTERNAL`` for unknown names)."""
    status = getattr(grpc.StatusCode, error.code, None)
    number: int = (status if isinstance(status, grpc.StatusCode) else grpc.StatusCode.INTERNAL).value[0]
    return common_pb2.StreamError(code=number, message=error.message)


def playback_started(event: PlaybackEvent) -> common_pb2.PlaybackStarted:
    return common_pb2.PlaybackStarted(segment=event.segment)


def playback_finished(event: PlaybackEvent) -> common_pb2.PlaybackFinished:
    return common_pb2.PlaybackFinished(
        segment=event.segment, playback_position_s=event.position_s, interrupted=event.interrupted
    )


def session_event(event: SessionEvent) -> avatar_service_pb2.SessionEvent:
    message = avatar_service_pb2.SessionEvent(session_id=event.session_id, time=timestamp(event.time_ns))
    body = event.body
    if isinstance(body, SessionStarted):
        message.started.CopyFrom(
            avatar_service_pb2.SessionStarted(
                room_name=body.room_name, avatar_participant_identity=body.avatar_participant_identity
            )
        )
    elif isinstance(body, PlaybackEvent) and body.kind == "started":
        message.playback_started.CopyFrom(playback_started(body))
    elif isinstance(body, PlaybackEvent):
        message.playback_finished.CopyFrom(playback_finished(body))
    elif isinstance(body, SessionError):
        message.error.CopyFrom(stream_error(body))
    elif isinstance(body, SessionStats):
        message.stats.CopyFrom(
            avatar_service_pb2.SessionStats(fps=body.fps, late_frames=body.late_frames, queue_depth=body.queue_depth)
        )
    elif isinstance(body, EmotionChanged):
        message.emotion_changed.CopyFrom(avatar_service_pb2.EmotionChanged(emotion=body.emotion))
    else:
        message.ended.CopyFrom(avatar_service_pb2.SessionEnded(reason=END_REASONS[body.reason], detail=body.detail))
    return message

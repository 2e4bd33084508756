import datetime

from avaluma.proto.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VideoCodec(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_CODEC_UNSPECIFIED: _ClassVar[VideoCodec]
    VIDEO_CODEC_VP8: _ClassVar[VideoCodec]
    VIDEO_CODEC_H264: _ClassVar[VideoCodec]

class SessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SESSION_STATE_UNSPECIFIED: _ClassVar[SessionState]
    SESSION_STATE_STARTING: _ClassVar[SessionState]
    SESSION_STATE_ACTIVE: _ClassVar[SessionState]
    SESSION_STATE_ENDING: _ClassVar[SessionState]
    SESSION_STATE_ENDED: _ClassVar[SessionState]

class EndReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    END_REASON_UNSPECIFIED: _ClassVar[EndReason]
    END_REASON_STOPPED: _ClassVar[EndReason]
    END_REASON_IDLE_TIMEOUT: _ClassVar[EndReason]
    END_REASON_ROOM_EMPTY: _ClassVar[EndReason]
    END_REASON_DISCONNECTED: _ClassVar[EndReason]
    END_REASON_ERROR: _ClassVar[EndReason]
    END_REASON_SERVER_SHUTDOWN: _ClassVar[EndReason]
    END_REASON_LIPSYNC_UNAVAILABLE: _ClassVar[EndReason]
VIDEO_CODEC_UNSPECIFIED: VideoCodec
VIDEO_CODEC_VP8: VideoCodec
VIDEO_CODEC_H264: VideoCodec
SESSION_STATE_UNSPECIFIED: SessionState
SESSION_STATE_STARTING: SessionState
SESSION_STATE_ACTIVE: SessionState
SESSION_STATE_ENDING: SessionState
SESSION_STATE_ENDED: SessionState
END_REASON_UNSPECIFIED: EndReason
END_REASON_STOPPED: EndReason
END_REASON_IDLE_TIMEOUT: EndReason
END_REASON_ROOM_EMPTY: EndReason
END_REASON_DISCONNECTED: EndReason
END_REASON_ERROR: EndReason
END_REASON_SERVER_SHUTDOWN: EndReason
END_REASON_LIPSYNC_UNAVAILABLE: EndReason

class StartSessionRequest(_message.Message):
    __slots__ = ("livekit_url", "livekit_token", "avatar_id", "render", "accepted_sender_identities", "agent_identity", "idle_timeout_s", "emotion", "publish")
    LIVEKIT_URL_FIELD_NUMBER: _ClassVar[int]
    LIVEKIT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_SENDER_IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    AGENT_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    livekit_url: str
    livekit_token: str
    avatar_id: str
    render: _common_pb2.RenderOptions
    accepted_sender_identities: _containers.RepeatedScalarFieldContainer[str]
    agent_identity: str
    idle_timeout_s: int
    emotion: str
    publish: PublishOptions
    def __init__(self, livekit_url: _Optional[str] = ..., livekit_token: _Optional[str] = ..., avatar_id: _Optional[str] = ..., render: _Optional[_Union[_common_pb2.RenderOptions, _Mapping]] = ..., accepted_sender_identities: _Optional[_Iterable[str]] = ..., agent_identity: _Optional[str] = ..., idle_timeout_s: _Optional[int] = ..., emotion: _Optional[str] = ..., publish: _Optional[_Union[PublishOptions, _Mapping]] = ...) -> None: ...

class PublishOptions(_message.Message):
    __slots__ = ("video_codec", "video_max_bitrate", "simulcast")
    VIDEO_CODEC_FIELD_NUMBER: _ClassVar[int]
    VIDEO_MAX_BITRATE_FIELD_NUMBER: _ClassVar[int]
    SIMULCAST_FIELD_NUMBER: _ClassVar[int]
    video_codec: VideoCodec
    video_max_bitrate: int
    simulcast: bool
    def __init__(self, video_codec: _Optional[_Union[VideoCodec, str]] = ..., video_max_bitrate: _Optional[int] = ..., simulcast: _Optional[bool] = ...) -> None: ...

class StartSessionResponse(_message.Message):
    __slots__ = ("session_id", "avatar_participant_identity")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AVATAR_PARTICIPANT_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    avatar_participant_identity: str
    def __init__(self, session_id: _Optional[str] = ..., avatar_participant_identity: _Optional[str] = ...) -> None: ...

class StopSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class StopSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionInfo]
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionInfo, _Mapping]]] = ...) -> None: ...

class WatchSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class SetEmotionRequest(_message.Message):
    __slots__ = ("session_id", "emotion")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    emotion: str
    def __init__(self, session_id: _Optional[str] = ..., emotion: _Optional[str] = ...) -> None: ...

class SetEmotionResponse(_message.Message):
    __slots__ = ("emotion",)
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    emotion: str
    def __init__(self, emotion: _Optional[str] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "avatar_id", "state", "livekit_url", "room_name", "avatar_participant_identity", "agent_identity", "render", "started_at", "emotion", "publish")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIVEKIT_URL_FIELD_NUMBER: _ClassVar[int]
    ROOM_NAME_FIELD_NUMBER: _ClassVar[int]
    AVATAR_PARTICIPANT_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    AGENT_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    avatar_id: str
    state: SessionState
    livekit_url: str
    room_name: str
    avatar_participant_identity: str
    agent_identity: str
    render: _common_pb2.RenderOptions
    started_at: _timestamp_pb2.Timestamp
    emotion: str
    publish: PublishOptions
    def __init__(self, session_id: _Optional[str] = ..., avatar_id: _Optional[str] = ..., state: _Optional[_Union[SessionState, str]] = ..., livekit_url: _Optional[str] = ..., room_name: _Optional[str] = ..., avatar_participant_identity: _Optional[str] = ..., agent_identity: _Optional[str] = ..., render: _Optional[_Union[_common_pb2.RenderOptions, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., emotion: _Optional[str] = ..., publish: _Optional[_Union[PublishOptions, _Mapping]] = ...) -> None: ...

class SessionEvent(_message.Message):
    __slots__ = ("session_id", "time", "started", "playback_started", "playback_finished", "error", "stats", "ended", "emotion_changed")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_STARTED_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_FINISHED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    EMOTION_CHANGED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    time: _timestamp_pb2.Timestamp
    started: SessionStarted
    playback_started: _common_pb2.PlaybackStarted
    playback_finished: _common_pb2.PlaybackFinished
    error: _common_pb2.StreamError
    stats: SessionStats
    ended: SessionEnded
    emotion_changed: EmotionChanged
    def __init__(self, session_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started: _Optional[_Union[SessionStarted, _Mapping]] = ..., playback_started: _Optional[_Union[_common_pb2.PlaybackStarted, _Mapping]] = ..., playback_finished: _Optional[_Union[_common_pb2.PlaybackFinished, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.StreamError, _Mapping]] = ..., stats: _Optional[_Union[SessionStats, _Mapping]] = ..., ended: _Optional[_Union[SessionEnded, _Mapping]] = ..., emotion_changed: _Optional[_Union[EmotionChanged, _Mapping]] = ...) -> None: ...

class EmotionChanged(_message.Message):
    __slots__ = ("emotion",)
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    emotion: str
    def __init__(self, emotion: _Optional[str] = ...) -> None: ...

class SessionStarted(_message.Message):
    __slots__ = ("room_name", "avatar_participant_identity")
    ROOM_NAME_FIELD_NUMBER: _ClassVar[int]
    AVATAR_PARTICIPANT_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    room_name: str
    avatar_participant_identity: str
    def __init__(self, room_name: _Optional[str] = ..., avatar_participant_identity: _Optional[str] = ...) -> None: ...

class SessionStats(_message.Message):
    __slots__ = ("fps", "late_frames", "queue_depth")
    FPS_FIELD_NUMBER: _ClassVar[int]
    LATE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    fps: float
    late_frames: int
    queue_depth: int
    def __init__(self, fps: _Optional[float] = ..., late_frames: _Optional[int] = ..., queue_depth: _Optional[int] = ...) -> None: ...

class SessionEnded(_message.Message):
    __slots__ = ("reason", "detail")
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    reason: EndReason
    detail: str
    def __init__(self, reason: _Optional[_Union[EndReason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

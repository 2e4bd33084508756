from avaluma.proto.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RenderRequest(_message.Message):
    __slots__ = ("config", "audio", "segment_end", "clear", "set_emotion")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_END_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    SET_EMOTION_FIELD_NUMBER: _ClassVar[int]
    config: RenderConfig
    audio: AudioChunk
    segment_end: SegmentEnd
    clear: Clear
    set_emotion: SetEmotion
    def __init__(self, config: _Optional[_Union[RenderConfig, _Mapping]] = ..., audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., segment_end: _Optional[_Union[SegmentEnd, _Mapping]] = ..., clear: _Optional[_Union[Clear, _Mapping]] = ..., set_emotion: _Optional[_Union[SetEmotion, _Mapping]] = ...) -> None: ...

class RenderConfig(_message.Message):
    __slots__ = ("avatar_id", "fps", "audio_sample_rate", "encoding", "jpeg_quality", "realtime", "seed", "emotion", "width", "height")
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    JPEG_QUALITY_FIELD_NUMBER: _ClassVar[int]
    REALTIME_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    avatar_id: str
    fps: int
    audio_sample_rate: int
    encoding: _common_pb2.VideoEncoding
    jpeg_quality: int
    realtime: bool
    seed: int
    emotion: str
    width: int
    height: int
    def __init__(self, avatar_id: _Optional[str] = ..., fps: _Optional[int] = ..., audio_sample_rate: _Optional[int] = ..., encoding: _Optional[_Union[_common_pb2.VideoEncoding, str]] = ..., jpeg_quality: _Optional[int] = ..., realtime: _Optional[bool] = ..., seed: _Optional[int] = ..., emotion: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("pcm", "sample_rate", "num_channels")
    PCM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    NUM_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    pcm: bytes
    sample_rate: int
    num_channels: int
    def __init__(self, pcm: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., num_channels: _Optional[int] = ...) -> None: ...

class SegmentEnd(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Clear(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetEmotion(_message.Message):
    __slots__ = ("emotion",)
    EMOTION_FIELD_NUMBER: _ClassVar[int]
    emotion: str
    def __init__(self, emotion: _Optional[str] = ...) -> None: ...

class RenderResponse(_message.Message):
    __slots__ = ("started", "video", "audio", "playback_started", "playback_finished", "error")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_STARTED_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_FINISHED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    started: RenderStarted
    video: VideoFrame
    audio: AudioFrame
    playback_started: _common_pb2.PlaybackStarted
    playback_finished: _common_pb2.PlaybackFinished
    error: _common_pb2.StreamError
    def __init__(self, started: _Optional[_Union[RenderStarted, _Mapping]] = ..., video: _Optional[_Union[VideoFrame, _Mapping]] = ..., audio: _Optional[_Union[AudioFrame, _Mapping]] = ..., playback_started: _Optional[_Union[_common_pb2.PlaybackStarted, _Mapping]] = ..., playback_finished: _Optional[_Union[_common_pb2.PlaybackFinished, _Mapping]] = ..., error: _Optional[_Union[_common_pb2.StreamError, _Mapping]] = ...) -> None: ...

class RenderStarted(_message.Message):
    __slots__ = ("width", "height", "fps", "audio_sample_rate", "encoding", "avatar_id")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    AVATAR_ID_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    fps: int
    audio_sample_rate: int
    encoding: _common_pb2.VideoEncoding
    avatar_id: str
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[int] = ..., audio_sample_rate: _Optional[int] = ..., encoding: _Optional[_Union[_common_pb2.VideoEncoding, str]] = ..., avatar_id: _Optional[str] = ...) -> None: ...

class VideoFrame(_message.Message):
    __slots__ = ("index", "pts_us", "width", "height", "encoding", "data", "speaking")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PTS_US_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SPEAKING_FIELD_NUMBER: _ClassVar[int]
    index: int
    pts_us: int
    width: int
    height: int
    encoding: _common_pb2.VideoEncoding
    data: bytes
    speaking: bool
    def __init__(self, index: _Optional[int] = ..., pts_us: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., encoding: _Optional[_Union[_common_pb2.VideoEncoding, str]] = ..., data: _Optional[bytes] = ..., speaking: _Optional[bool] = ...) -> None: ...

class AudioFrame(_message.Message):
    __slots__ = ("index", "pts_us", "sample_rate", "pcm")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PTS_US_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    PCM_FIELD_NUMBER: _ClassVar[int]
    index: int
    pts_us: int
    sample_rate: int
    pcm: bytes
    def __init__(self, index: _Optional[int] = ..., pts_us: _Optional[int] = ..., sample_rate: _Optional[int] = ..., pcm: _Optional[bytes] = ...) -> None: ...

from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VideoEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_ENCODING_UNSPECIFIED: _ClassVar[VideoEncoding]
    VIDEO_ENCODING_JPEG: _ClassVar[VideoEncoding]
    VIDEO_ENCODING_I420: _ClassVar[VideoEncoding]
    VIDEO_ENCODING_RGB24: _ClassVar[VideoEncoding]

class AvatarKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AVATAR_KIND_UNSPECIFIED: _ClassVar[AvatarKind]
    AVATAR_KIND_PHOTO: _ClassVar[AvatarKind]
    AVATAR_KIND_VIDEO: _ClassVar[AvatarKind]
VIDEO_ENCODING_UNSPECIFIED: VideoEncoding
VIDEO_ENCODING_JPEG: VideoEncoding
VIDEO_ENCODING_I420: VideoEncoding
VIDEO_ENCODING_RGB24: VideoEncoding
AVATAR_KIND_UNSPECIFIED: AvatarKind
AVATAR_KIND_PHOTO: AvatarKind
AVATAR_KIND_VIDEO: AvatarKind

class RenderOptions(_message.Message):
    __slots__ = ("width", "height", "fps", "audio_sample_rate", "seed")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    fps: int
    audio_sample_rate: int
    seed: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[int] = ..., audio_sample_rate: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class AvatarInfo(_message.Message):
    __slots__ = ("id", "name", "kind", "width", "height", "fps", "format_version", "size_bytes", "license")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    kind: AvatarKind
    width: int
    height: int
    fps: int
    format_version: int
    size_bytes: int
    license: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[AvatarKind, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[int] = ..., format_version: _Optional[int] = ..., size_bytes: _Optional[int] = ..., license: _Optional[str] = ...) -> None: ...

class StreamError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class PlaybackStarted(_message.Message):
    __slots__ = ("segment",)
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    segment: int
    def __init__(self, segment: _Optional[int] = ...) -> None: ...

class PlaybackFinished(_message.Message):
    __slots__ = ("segment", "playback_position_s", "interrupted")
    SEGMENT_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_POSITION_S_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    segment: int
    playback_position_s: float
    interrupted: bool
    def __init__(self, segment: _Optional[int] = ..., playback_position_s: _Optional[float] = ..., interrupted: _Optional[bool] = ...) -> None: ...

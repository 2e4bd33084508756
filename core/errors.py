"""Domain errors. One place (the gRPC error interceptor) maps them to status codes; nothing else should.

Every message says what went wrong *and* what to do about it, because it reaches a user unchanged.
"""

from __future__ import annotations


class AvalumaError(Exception):
    """Base of every error Avaluma raises on purpose. ``code`` names the gRPC status it maps to."""

    code: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(AvalumaError):
    """The caller sent something malformed (bad audio, bad options)."""

    code = "INVALID_ARGUMENT"


class NotFound(AvalumaError):
    """A named thing (avatar, session, plugin provider) does not exist."""

    code = "NOT_FOUND"


class AlreadyExists(AvalumaError):
    code = "ALREADY_EXISTS"


class Unauthenticated(AvalumaError):
    code = "UNAUTHENTICATED"


class PermissionDenied(AvalumaError):
    code = "PERMISSION_DENIED"


class ResourceExhausted(AvalumaError):
    """A limit was reached (sessions, chunk size, rate)."""

    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(AvalumaError):
    code = "FAILED_PRECONDITION"


class DeadlineExceeded(AvalumaError):
    """A time limit of the server passed (a stream that stopped sending, a client that never started)."""

    code = "DEADLINE_EXCEEDED"


class Unavailable(AvalumaError):
    """A dependency (LiveKit, Triton) cannot be reached."""

    code = "UNAVAILABLE"


class ConfigError(AvalumaError):
    """Configuration is invalid: raised at start-up, before anything is served."""

    code = "FAILED_PRECONDITION"


class AvatarFileError(InvalidArgument):
    """An avatar file is corrupt, truncated, too large or of an unsupported version."""

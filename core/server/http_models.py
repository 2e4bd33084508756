"""The HTTP API's request and response bodies as typed models, and the OpenAPI 3.1 document made from them.

The server answers with these models (:mod:`avaluma.core.server.http_api`), serves the document at
``GET /openapi.json``, and ``docs/openapi.json`` is the committed copy (``python -m avaluma.core.server.http_models``
rewrites it; a test fails when it drifts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

API_TITLE: Final = "Avaluma HTTP API"
#: The emotions an avatar shows (``avaluma.core.media.EMOTIONS``; a unit test keeps the two equal).
Emotion = Literal["neutral", "happy", "serious", "surprised", "concerned"]
#: gRPC status names, the ``code`` of every error body (both APIs report the same thing).
ErrorCode = Literal[
    "INVALID_ARGUMENT",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "FAILED_PRECONDITION",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
    "INTERNAL",
]


class PublishOptions(BaseModel):
    """How the avatar's video is published; omitted fields use the server's sessions.publish. Admission counts VP8
    with simulcast whatever is chosen (docs/livekit.md, Capacity)."""

    model_config = ConfigDict(extra="forbid")

    video_codec: Literal["vp8", "h264"] | None = Field(None, description="vp8 (LiveKit's default) or h264.")
    video_max_bitrate: int = Field(
        0, ge=0, description="Bits/s of the full layer (50000..50000000); 0 = the server's default."
    )
    simulcast: bool | None = Field(None, description="Also publish a lower layer; omitted = the server's default.")


class StartRenderOptions(BaseModel):
    """The frames a session publishes; omitted or 0 fields use the server's render config and the avatar's size.
    Admission counts a session by its pixels and fps (docs/livekit.md, Capacity)."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(
        0, ge=0, description="Published frame width in pixels, with height; 0 = the avatar's own. Same aspect ratio "
        "as the avatar (within 2 %), 16 px up to twice its size."
    )  # fmt: skip
    height: int = Field(0, ge=0, description="Published frame height in pixels, with width; 0 = the avatar's own.")
    fps: int = Field(0, ge=0, le=60, description="Frames per second (1..60); 0 = the server's render.fps (25).")


class StartAvatarRequest(BaseModel):
    """Start an avatar in a LiveKit room. Fields other clients of the hosted API send are ignored."""

    model_config = ConfigDict(extra="allow")

    livekit_url: str = Field(description="LiveKit server URL: ws://, wss://, http:// or https://.")
    livekit_token: str = Field(
        description="Access token for the avatar participant: its identity becomes the avatar's; it should carry the "
        "lk.publish_on_behalf attribute naming the agent."
    )
    avatar_id: str = Field("", description="Which avatar; empty = the server's default.")
    accepted_sender_identities: list[str] = Field(
        default_factory=list, description="Participants allowed to send audio on lk.audio_stream."
    )
    agent_identity: str | None = Field(
        None, description="Whom the avatar publishes on behalf of; default: the token's lk.publish_on_behalf."
    )
    idle_timeout_s: int = Field(0, ge=0, description="End after this many seconds without audio; 0 = server default.")
    emotion: Emotion | Literal[""] = Field(
        "",
        description="The emotion the avatar shows; empty = the server's default (render.emotion, neutral). Change it "
        "later with set-emotion.",
    )
    publish: PublishOptions | None = Field(None, description="Video codec, bitrate, simulcast of this session.")
    render: StartRenderOptions | None = Field(None, description="Frame size and fps of this session.")


class StartAvatarResponse(BaseModel):
    status: Literal["success"] = "success"
    session_id: str = Field(description="Opaque id for stop-avatar.")
    avatar_participant_identity: str = Field(description="The avatar's identity in the room.")


class StopAvatarRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    session_id: str = Field(description="The id start-avatar returned.")


class StopAvatarResponse(BaseModel):
    status: Literal["success"] = "success"


class SetEmotionRequest(BaseModel):
    """Change the emotion of a running avatar: it applies from this point of the session's audio on (speech already
    received keeps its emotion) and the face eases into it over about 0.4 s."""

    model_config = ConfigDict(extra="allow")

    session_id: str = Field(description="The id start-avatar returned.")
    emotion: Emotion


class SetEmotionResponse(BaseModel):
    status: Literal["success"] = "success"
    session_id: str
    emotion: Emotion = Field(description="The emotion the avatar shows from now on.")


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    active_sessions: int
    max_sessions: int = Field(description="Sessions this server admits (measured capacity, or server.max_sessions).")
    free_sessions: int = Field(
        0, description="Sessions and render streams it would still admit now (0 when full, behind or draining)."
    )
    behind: bool = Field(
        False,
        description="Its running sessions are missing frame deadlines (other work taking the CPU): it admits nothing "
        "new until they catch up.",
    )
    draining: bool = Field(False, description="Shutting down: it admits nothing new and lets running sessions end.")
    ready: bool = Field(True, description="Whether it admits a new session now (GET /ready answers 503 when not).")


class ErrorResponse(BaseModel):
    status: Literal["error"] = "error"
    code: ErrorCode
    message: str = Field(description="What went wrong and what to do.")


MODELS: Final = (
    StartAvatarRequest,
    StartAvatarResponse,
    StopAvatarRequest,
    StopAvatarResponse,
    SetEmotionRequest,
    SetEmotionResponse,
    HealthResponse,
    ErrorResponse,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "Bad body (code INVALID_ARGUMENT)",
        401: "Missing or wrong API key",
        404: "Unknown avatar or session",
        429: "Rate limit of this key reached (see Retry-After)",
        503: "Server full or LiveKit unreachable",
    }
    return {str(s): _json(ErrorResponse, texts[s]) for s in statuses}


def openapi(version: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the HTTP API."""
    schemas: dict[str, Any] = {}
    for model in MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    secured: list[dict[str, list[str]]] = [{"apiSecret": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": API_TITLE,
            "version": version or "1",
            "description": "Compatible with the hosted avatar service: an agent written for it can point at this "
            "server. Errors carry the gRPC status name in `code`, as the gRPC API reports them.",
        },
        "paths": {
            "/v1/livekit/start-avatar": {
                "post": {
                    "operationId": "startAvatar",
                    "summary": "Start an avatar in a LiveKit room",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(StartAvatarRequest)}},
                    },
                    "responses": {"200": _json(StartAvatarResponse, "Started"), **_errors(400, 401, 404, 429, 503)},
                }
            },
            "/v1/livekit/stop-avatar": {
                "post": {
                    "operationId": "stopAvatar",
                    "summary": "Stop an avatar session",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(StopAvatarRequest)}},
                    },
                    "responses": {"200": _json(StopAvatarResponse, "Stopped"), **_errors(400, 401, 404, 429)},
                }
            },
            "/v1/livekit/set-emotion": {
                "post": {
                    "operationId": "setEmotion",
                    "summary": "Change the emotion of a running avatar (eased over about 0.4 s)",
                    "security": secured,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(SetEmotionRequest)}},
                    },
                    "responses": {"200": _json(SetEmotionResponse, "Set"), **_errors(400, 401, 404, 429)},
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness and load, without a key (for load balancers)",
                    "responses": {"200": _json(HealthResponse, "Serving")},
                }
            },
            "/ready": {
                "get": {
                    "operationId": "ready",
                    "summary": "Readiness, without a key: 200 while the server admits new sessions, 503 when it is "
                    "full, draining, or behind on its sessions' frames (Kubernetes then sends new sessions to other "
                    "replicas)",
                    "responses": {
                        "200": _json(HealthResponse, "Admits new sessions"),
                        "503": _json(HealthResponse, "Full, draining or behind"),
                    },
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiSecret": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "api-secret",
                    "description": "One of the server's API keys (x-api-key and Authorization: Bearer work too).",
                }
            },
        },
    }


DOCUMENT_PATH: Final = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def render_document() -> str:
    return json.dumps(openapi(), indent=2) + "\n"


if __name__ == "__main__":
    DOCUMENT_PATH.write_text(render_document(), encoding="utf-8")
    print(f"wrote {DOCUMENT_PATH}", file=sys.stderr)

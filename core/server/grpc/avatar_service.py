"""``AvatarService``: a thin gRPC adapter over :class:`avaluma.core.live.sessions.SessionRegistry`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc.aio

from avaluma.core.live.sessions import SessionRegistry
from avaluma.core.server.grpc import convert
from avaluma.proto.v1 import avatar_service_pb2, avatar_service_pb2_grpc


class AvatarServiceServicer(avatar_service_pb2_grpc.AvatarServiceServicer):
    """``avaluma.v1.AvatarService``. Domain errors are mapped to status codes by the error interceptor."""

    def __init__(self, sessions: SessionRegistry) -> None:
        self._sessions = sessions

    async def StartSession(
        self, request: avatar_service_pb2.StartSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> avatar_service_pb2.StartSessionResponse:
        session = await self._sessions.start(convert.start_request(request, self._sessions.render_defaults))
        return avatar_service_pb2.StartSessionResponse(
            session_id=session.id, avatar_participant_identity=session.identity
        )

    async def StopSession(
        self, request: avatar_service_pb2.StopSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> avatar_service_pb2.StopSessionResponse:
        await self._sessions.stop(request.session_id)
        return avatar_service_pb2.StopSessionResponse()

    async def GetSession(
        self, request: avatar_service_pb2.GetSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> avatar_service_pb2.SessionInfo:
        return convert.session_info(self._sessions.get(request.session_id))

    async def ListSessions(
        self, request: avatar_service_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> avatar_service_pb2.ListSessionsResponse:
        return avatar_service_pb2.ListSessionsResponse(
            sessions=[convert.session_info(s) for s in self._sessions.list()]
        )

    async def SetEmotion(
        self, request: avatar_service_pb2.SetEmotionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> avatar_service_pb2.SetEmotionResponse:
        session = self._sessions.set_emotion(request.session_id, request.emotion)
        return avatar_service_pb2.SetEmotionResponse(emotion=session.emotion)

    async def WatchSession(
        self, request: avatar_service_pb2.WatchSessionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[avatar_service_pb2.SessionEvent]:
        session = self._sessions.get(request.session_id)
        async for event in session.watch():
            yield convert.session_event(event)

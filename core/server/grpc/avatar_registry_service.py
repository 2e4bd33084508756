"""``AvatarRegistry``: a thin gRPC adapter over :class:`avaluma.core.live.avatar_store.AvatarStore`.

Uploads are bounded: at most :data:`MAX_CONCURRENT_UPLOADS` calls at once (each buffers up to the file size limit
and then decodes the avatar, which the ``.hvia`` reader caps; see docs/hvia.md), more are ``RESOURCE_EXHAUSTED``; an
upload that sends nothing for :data:`UPLOAD_IDLE_TIMEOUT_S` ends with ``DEADLINE_EXCEEDED`` (it would hold a slot).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio

from avaluma.core.errors import AvalumaError, DeadlineExceeded, InvalidArgument, ResourceExhausted
from avaluma.core.live.avatar_store import AvatarStore, check_avatar_id
from avaluma.proto.v1 import avatar_registry_pb2, avatar_registry_pb2_grpc, common_pb2
from avaluma.renderer.avatar import Avatar
from avaluma.renderer.hvia import MAX_HVIA_BYTES

#: Upload calls served at once (buffering and decoding are the memory an upload costs).
MAX_CONCURRENT_UPLOADS = 2
#: Seconds an upload may go without a message before it is ended.
UPLOAD_IDLE_TIMEOUT_S = 30.0


async def _paced(
    requests: AsyncIterator[avatar_registry_pb2.UploadAvatarRequest],
) -> AsyncIterator[avatar_registry_pb2.UploadAvatarRequest]:
    """``requests``, ending with :class:`DeadlineExceeded` when the client stalls for UPLOAD_IDLE_TIMEOUT_S."""
    iterator = aiter(requests)
    while True:
        try:
            request = await asyncio.wait_for(anext(iterator), UPLOAD_IDLE_TIMEOUT_S)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise DeadlineExceeded(
                f"the upload sent nothing for {UPLOAD_IDLE_TIMEOUT_S:g} s: send the whole file, then close the stream"
            ) from None
        yield request


_KINDS = {"photo": common_pb2.AVATAR_KIND_PHOTO, "video": common_pb2.AVATAR_KIND_VIDEO}


def avatar_info(avatar: Avatar) -> common_pb2.AvatarInfo:
    """The wire form of an avatar's metadata."""
    return common_pb2.AvatarInfo(
        id=avatar.id,
        name=avatar.name,
        kind=_KINDS.get(avatar.kind, common_pb2.AVATAR_KIND_UNSPECIFIED),
        width=avatar.width,
        height=avatar.height,
        fps=avatar.fps,
        format_version=avatar.format_version,
        size_bytes=avatar.size_bytes,
        license=avatar.license,
    )


class AvatarRegistryServicer(avatar_registry_pb2_grpc.AvatarRegistryServicer):
    """``avaluma.v1.AvatarRegistry``. Domain errors are mapped to status codes by the error interceptor."""

    def __init__(self, store: AvatarStore) -> None:
        self._store = store
        self._uploads = 0

    async def ListAvatars(
        self, request: avatar_registry_pb2.ListAvatarsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> avatar_registry_pb2.ListAvatarsResponse:
        return avatar_registry_pb2.ListAvatarsResponse(
            avatars=[avatar_info(a) for a in self._store.list()],
            skipped=[
                avatar_registry_pb2.SkippedAvatarFile(file=name, reason=reason)
                for name, reason in sorted(self._store.skipped.items())
            ],
        )

    async def GetAvatar(
        self, request: avatar_registry_pb2.GetAvatarRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> common_pb2.AvatarInfo:
        return avatar_info(self._store.get(request.avatar_id))

    async def UploadAvatar(
        self,
        request_iterator: AsyncIterator[avatar_registry_pb2.UploadAvatarRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> common_pb2.AvatarInfo:
        if self._uploads >= MAX_CONCURRENT_UPLOADS:
            # Drained without buffering, and refused after the client's last message (see the note below).
            busy: AvalumaError = ResourceExhausted(
                f"the server is validating {MAX_CONCURRENT_UPLOADS} avatar uploads already (its limit for concurrent "
                "uploads): retry in a few seconds"
            )
            drained = 0
            async for request in _paced(request_iterator):
                drained += len(request.chunk)
                if drained > MAX_HVIA_BYTES:
                    break
            raise busy
        self._uploads += 1
        try:
            return await self._upload(request_iterator)
        finally:
            self._uploads -= 1

    async def _upload(
        self, request_iterator: AsyncIterator[avatar_registry_pb2.UploadAvatarRequest]
    ) -> common_pb2.AvatarInfo:
        metadata: avatar_registry_pb2.UploadAvatarMetadata | None = None
        parts: list[bytes] = []
        size = 0
        # A malformed upload is reported after the client's last message, not at the first bad one: grpc-python's
        # asyncio client reports INTERNAL instead of the real status when the call ends while it is still writing
        # (grpc/grpc#36066). Only the size limit ends the call early, so an endless stream cannot tie up the server.
        problem: InvalidArgument | None = None
        async for request in _paced(request_iterator):
            kind = request.WhichOneof("request")
            size += len(request.chunk)
            if size > MAX_HVIA_BYTES:
                raise InvalidArgument(f"the avatar file is larger than the {MAX_HVIA_BYTES} byte limit for .hvia files")
            if problem is not None:
                continue
            if metadata is None:
                if kind != "metadata":
                    problem = InvalidArgument(
                        "the first UploadAvatar message must be `metadata` (avatar_id, overwrite)"
                    )
                    continue
                metadata = request.metadata
                if metadata.avatar_id:
                    try:
                        check_avatar_id(metadata.avatar_id)
                    except InvalidArgument as exc:
                        problem = exc
                continue
            if kind != "chunk":
                problem = InvalidArgument("metadata may only be sent once, as the first UploadAvatar message")
                continue
            parts.append(request.chunk)
        if problem is not None:
            raise problem
        if metadata is None:
            raise InvalidArgument("empty upload: send a `metadata` message, then the .hvia file in `chunk` messages")
        if not size:
            raise InvalidArgument("the upload has no data: send the .hvia file in `chunk` messages after the metadata")
        data = b"".join(parts)
        # Validation decodes images: keep it off the event loop.
        avatar_id = metadata.avatar_id or await asyncio.to_thread(_manifest_id, data)
        avatar = await asyncio.to_thread(self._store.add, data, avatar_id, overwrite=metadata.overwrite)
        return avatar_info(avatar)

    async def DeleteAvatar(
        self, request: avatar_registry_pb2.DeleteAvatarRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> avatar_registry_pb2.DeleteAvatarResponse:
        self._store.delete(request.avatar_id)
        return avatar_registry_pb2.DeleteAvatarResponse()


def _manifest_id(data: bytes) -> str:
    """The id recorded in the file, for uploads that leave avatar_id empty."""
    from avaluma.renderer.hvia import load_hvia_bytes

    return load_hvia_bytes(data, source="upload").id

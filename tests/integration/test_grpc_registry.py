"""AvatarRegistry on a real server: list, get, upload (valid, corrupt, existing, bad id), delete."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio
import pytest

from avaluma.core.live.avatar_store import AvatarStore
from avaluma.proto.v1 import (
    avatar_registry_pb2,
    avatar_registry_pb2_grpc,
    common_pb2,
    render_service_pb2,
    render_service_pb2_grpc,
)

pytestmark = pytest.mark.integration

Upload = avatar_registry_pb2.UploadAvatarRequest
CHUNK = 64 * 1024


@pytest.fixture
def demo_bytes(demo_avatar_path: Path) -> bytes:
    return demo_avatar_path.read_bytes()


@pytest.fixture
def stub(channel) -> avatar_registry_pb2_grpc.AvatarRegistryStub:
    return avatar_registry_pb2_grpc.AvatarRegistryStub(channel)


async def upload(stub, auth, data: bytes, avatar_id: str, *, overwrite: bool = False) -> common_pb2.AvatarInfo:
    requests = [Upload(metadata=avatar_registry_pb2.UploadAvatarMetadata(avatar_id=avatar_id, overwrite=overwrite))]
    requests += [Upload(chunk=data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]
    return await stub.UploadAvatar(iter(requests), metadata=auth)


async def expect_error(awaitable, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    assert info.value.code() == code, info.value.details()
    return str(info.value.details())


async def test_list_and_get(stub, auth) -> None:
    listed = await stub.ListAvatars(avatar_registry_pb2.ListAvatarsRequest(), metadata=auth)
    assert [a.id for a in listed.avatars] == ["astronaut"]
    info = await stub.GetAvatar(avatar_registry_pb2.GetAvatarRequest(avatar_id="astronaut"), metadata=auth)
    assert info == listed.avatars[0]
    assert info.kind == common_pb2.AVATAR_KIND_PHOTO
    assert (info.width, info.height, info.fps, info.format_version) == (512, 512, 25, 3)
    assert info.size_bytes > 0 and info.license and info.name

    missing = await expect_error(
        stub.GetAvatar(avatar_registry_pb2.GetAvatarRequest(avatar_id="nobody"), metadata=auth),
        grpc.StatusCode.NOT_FOUND,
    )
    assert "nobody" in missing and "available: astronaut" in missing


async def test_upload_render_overwrite_delete(server, channel, stub, auth, demo_bytes: bytes) -> None:
    data = demo_bytes
    info = await upload(stub, auth, data, "copy")
    assert info.id == "copy" and info.size_bytes == len(data)
    listed = await stub.ListAvatars(avatar_registry_pb2.ListAvatarsRequest(), metadata=auth)
    assert [a.id for a in listed.avatars] == ["astronaut", "copy"]
    # Stored on disk: a fresh store over the same directory (a restarted server) has it.
    assert AvatarStore.open(server.store.directory).ids() == ["astronaut", "copy"]

    # The uploaded avatar renders.
    call = render_service_pb2_grpc.RenderServiceStub(channel).Render(metadata=auth)
    await call.write(render_service_pb2.RenderRequest(config=render_service_pb2.RenderConfig(avatar_id="copy")))
    started = await call.read()
    assert started.started.avatar_id == "copy"
    call.cancel()

    exists = await expect_error(upload(stub, auth, data, "copy"), grpc.StatusCode.ALREADY_EXISTS)
    assert "overwrite" in exists
    assert (await upload(stub, auth, data, "copy", overwrite=True)).id == "copy"

    await stub.DeleteAvatar(avatar_registry_pb2.DeleteAvatarRequest(avatar_id="copy"), metadata=auth)
    await expect_error(
        stub.GetAvatar(avatar_registry_pb2.GetAvatarRequest(avatar_id="copy"), metadata=auth), grpc.StatusCode.NOT_FOUND
    )
    await expect_error(
        stub.DeleteAvatar(avatar_registry_pb2.DeleteAvatarRequest(avatar_id="copy"), metadata=auth),
        grpc.StatusCode.NOT_FOUND,
    )
    assert sorted(p.name for p in server.store.directory.iterdir()) == ["astronaut.hvia"]


async def test_bad_uploads_are_rejected_and_nothing_is_stored(server, stub, auth, demo_bytes: bytes) -> None:
    data = demo_bytes
    corrupt = await expect_error(upload(stub, auth, b"not a zip file at all", "junk"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "not a .hvia file" in corrupt
    truncated = await expect_error(upload(stub, auth, data[: len(data) // 2], "half"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "half" in truncated
    for bad_id in ("../escape", "UPPER", "a/b", "-dash-first", "x" * 65):
        message = await expect_error(upload(stub, auth, data, bad_id), grpc.StatusCode.INVALID_ARGUMENT)
        assert "invalid avatar id" in message
    chunk_first = await expect_error(
        stub.UploadAvatar(iter([Upload(chunk=data[:100])]), metadata=auth), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "first UploadAvatar message must be `metadata`" in chunk_first
    no_data = await expect_error(upload(stub, auth, b"", "empty"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "no data" in no_data

    assert server.store.ids() == ["astronaut"]
    assert sorted(p.name for p in server.store.directory.iterdir()) == ["astronaut.hvia"]
    # The server still serves.
    listed = await stub.ListAvatars(avatar_registry_pb2.ListAvatarsRequest(), metadata=auth)
    assert [a.id for a in listed.avatars] == ["astronaut"]

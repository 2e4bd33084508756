"""Bad ``.hvia`` files in the avatars folder and over ``UploadAvatar``: the server
starts with the good ones and reports the rest, uploads are refused with the project's own status naming the reason,
and concurrent uploads are bounded."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import grpc.aio
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import server_config
from hvia_samples import (
    corrupt_deflate,
    entries,
    npy_header_only,
    patch_entry_header,
    photo_bytes,
    png_header_only,
    rebuild,
    video_bytes,
)

from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.server.app import RunningServer, start_server
from avaluma.core.server.grpc.avatar_registry_service import MAX_CONCURRENT_UPLOADS
from avaluma.proto.v1 import avatar_registry_pb2, avatar_registry_pb2_grpc
from avaluma.renderer.lipsync.energy import EnergyBackend

pytestmark = pytest.mark.integration

Upload = avatar_registry_pb2.UploadAvatarRequest
CHUNK = 64 * 1024


def bad_files() -> dict[str, bytes]:
    """One file per way the loader used to fail with something other than its own error."""
    good = rebuild(photo_bytes(), replace={"landmarks.npy": npy_header_only((468, 3))})
    atlas = json.loads(entries(video_bytes())["atlas.json"])
    atlas.update(tile=[1024, 1024], anchor=[512, 400], params=[[0.0, 1.0, 0.0, 0.0]] * 160)
    return {
        "zlib": corrupt_deflate(photo_bytes(), "rig.json"),
        "method": patch_entry_header(photo_bytes(), "rig.json", method=99),
        "encrypted": patch_entry_header(photo_bytes(), "rig.json", flags=1),
        "deep-json": rebuild(photo_bytes(), replace={"rig.json": b"[" * 100_000 + b"]" * 100_000}),
        "huge-npy": rebuild(good, replace={"landmarks.npy": npy_header_only((2**40, 3))}),
        "atlas-bomb": rebuild(
            video_bytes(),
            replace={"atlas.json": json.dumps(atlas).encode(), "atlas.png": png_header_only(1024, 163840)},
        ),
        "off-image-mouth": video_bytes(np.array([[-40.0, -40.0, 20.0, 0.0]] * 2, dtype=np.float32)),
    }


@pytest.fixture
async def mixed_server(tmp_path: Path, demo_avatar_path: Path) -> AsyncIterator[RunningServer]:
    directory = tmp_path / "avatars"
    directory.mkdir()
    shutil.copy(demo_avatar_path, directory / demo_avatar_path.name)
    for name, data in bad_files().items():
        (directory / f"{name}.hvia").write_bytes(data)
    running = await start_server(
        server_config(directory), store=AvatarStore.open(directory), lipsync_backend=EnergyBackend
    )
    yield running
    await running.stop(0.5)


async def test_server_starts_with_the_good_avatars_and_lists_the_skipped_files(mixed_server, auth) -> None:
    async with grpc.aio.insecure_channel(mixed_server.address) as channel:
        stub = avatar_registry_pb2_grpc.AvatarRegistryStub(channel)
        listed = await stub.ListAvatars(avatar_registry_pb2.ListAvatarsRequest(), metadata=auth)
    assert [a.id for a in listed.avatars] == ["astronaut"]
    skipped = {s.file: s.reason for s in listed.skipped}
    assert sorted(skipped) == sorted(f"{name}.hvia" for name in bad_files())
    for file, reason in skipped.items():
        assert file in reason, reason  # the reason names the file


async def test_bad_uploads_are_invalid_argument_never_internal(channel, auth) -> None:
    stub = avatar_registry_pb2_grpc.AvatarRegistryStub(channel)
    for name, data in bad_files().items():
        requests = [Upload(metadata=avatar_registry_pb2.UploadAvatarMetadata(avatar_id=name))]
        requests += [Upload(chunk=data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.UploadAvatar(iter(requests), metadata=auth)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, info.value.details())
        if name == "atlas-bomb":
            assert "byte limit for decoded atlases" in info.value.details()
    listed = await stub.ListAvatars(avatar_registry_pb2.ListAvatarsRequest(), metadata=auth)
    assert [a.id for a in listed.avatars] == ["astronaut"]


async def test_concurrent_uploads_are_bounded(channel, auth) -> None:
    stub = avatar_registry_pb2_grpc.AvatarRegistryStub(channel)
    data = photo_bytes()
    # Uploads that have started and not finished hold the server's upload capacity ...
    holders = []
    for i in range(MAX_CONCURRENT_UPLOADS):
        call = stub.UploadAvatar(metadata=auth)
        await call.write(Upload(metadata=avatar_registry_pb2.UploadAvatarMetadata(avatar_id=f"held-{i}")))
        await call.write(Upload(chunk=data[:100]))
        holders.append(call)
    # ... so one more is refused, naming the limit (retried until the holders have reached the server).
    for _attempt in range(100):
        requests = [Upload(metadata=avatar_registry_pb2.UploadAvatarMetadata(avatar_id="extra", overwrite=True))]
        try:
            await stub.UploadAvatar(iter([*requests, Upload(chunk=data)]), metadata=auth)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
            assert "concurrent uploads" in exc.details()
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the extra upload was never refused")
    # The held uploads finish normally, and then uploads are accepted again.
    for i, call in enumerate(holders):
        await call.write(Upload(chunk=data[100:]))
        await call.done_writing()
        assert (await call).id == f"held-{i}"
    again = [Upload(metadata=avatar_registry_pb2.UploadAvatarMetadata(avatar_id="after")), Upload(chunk=data)]
    assert (await stub.UploadAvatar(iter(again), metadata=auth)).id == "after"


async def test_a_stalled_upload_is_ended_and_frees_its_slot(channel, auth, monkeypatch) -> None:
    from avaluma.core.server.grpc import avatar_registry_service

    monkeypatch.setattr(avatar_registry_service, "UPLOAD_IDLE_TIMEOUT_S", 0.5)
    stub = avatar_registry_pb2_grpc.AvatarRegistryStub(channel)
    stalled = []
    for i in range(MAX_CONCURRENT_UPLOADS):
        call = stub.UploadAvatar(metadata=auth)
        await call.write(Upload(metadata=avatar_registry_pb2.UploadAvatarMetadata(avatar_id=f"stalled-{i}")))
        stalled.append(call)  # ... and nothing more
    for call in stalled:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await asyncio.wait_for(call, 30)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "sent nothing" in info.value.details()
    data = photo_bytes()
    again = [Upload(metadata=avatar_registry_pb2.UploadAvatarMetadata(avatar_id="after")), Upload(chunk=data)]
    assert (await stub.UploadAvatar(iter(again), metadata=auth)).id == "after"


def test_avatar_inspect_reports_a_corrupt_file_without_a_traceback(tmp_path: Path) -> None:
    from avaluma.core.cli import cli

    for name, data in bad_files().items():
        path = tmp_path / f"{name}.hvia"
        path.write_bytes(data)
        result = CliRunner().invoke(cli, ["avatar", "inspect", str(path)])
        assert result.exit_code == 1, (name, result.output)
        assert f"{name}.hvia" in result.output and "Traceback" not in result.output
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)

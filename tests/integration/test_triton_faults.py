"""Triton dying mid-session (SIGKILL, a real crash): error event, then the configured policy; the process stays up and
nothing is left behind. Also: an unreachable address fails at start with an error naming it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from triton_support import assert_frames_equal, copy_repository, require_triton, speech_like

from avaluma.core.errors import Unavailable
from avaluma.core.media import AudioChunk
from avaluma.core.ops.triton.server import free_port, list_shm_regions, start_triton
from avaluma.renderer.engine import RenderedFrame, RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.base import MouthFrames
from avaluma.renderer.lipsync.onnx_backend import OnnxBackend
from avaluma.renderer.lipsync.triton_backend import LipSyncFault, TritonBackend, TritonOptions

pytestmark = pytest.mark.integration


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # After the parenthesised command name: state, ppid, pgrp. Zombies hold nothing and are not counted.
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


# lipsync: one request per session and chunk; lipsync_multi: the sessions of a backend share requests.
@pytest.mark.parametrize("model", ["lipsync", "lipsync_multi"])
def test_triton_killed_mid_session(tmp_path: Path, model: str) -> None:
    require_triton()
    server = start_triton(copy_repository(tmp_path), models=[model])
    faults: list[LipSyncFault] = []
    audio = speech_like(1.6, seed=11)
    expected = OnnxBackend().analyze(audio, fps=25)
    try:
        options = TritonOptions(url=server.grpc_url, model=model)
        fallback = TritonBackend(options.model_copy(update={"on_failure": "fallback"}), on_fault=faults.append)
        ending = TritonBackend(options.model_copy(update={"on_failure": "end"}), on_fault=faults.append)
        assert (fallback.coalescer is not None) == (model == "lipsync_multi")
        with pytest.raises(Unavailable, match="no ready model 'nope'"):
            TritonBackend(TritonOptions(url=server.grpc_url, model="nope"))
        s_fallback, s_end = fallback.open_stream(fps=25), ending.open_stream(fps=25)
        parts = [s_fallback.push(audio[:12000])]
        assert len(parts[0]) > 0 and not s_fallback.using_fallback
        assert len(s_end.push(audio[:12000])) > 0

        server.kill()  # SIGKILL: the stubs are orphaned, their shared memory stays behind

        parts += [s_fallback.push(audio[12000:20000]), s_fallback.push(audio[20000:]), s_fallback.flush()]
        # Fallback: the session goes on in-process, and the frames are exactly the ones the whole segment yields.
        assert_frames_equal(MouthFrames.concat(parts), expected)
        assert s_fallback.using_fallback and s_fallback.fault is not None
        # ... and keeps working for the next segment.
        assert_frames_equal(MouthFrames.concat([s_fallback.push(audio), s_fallback.flush()]), expected)

        # End: the session's next call raises a clear error naming the address, and keeps raising it.
        with pytest.raises(Unavailable, match=f"Triton at {server.grpc_url} failed mid-session"):
            s_end.push(audio[12000:])
        with pytest.raises(Unavailable):
            s_end.flush()

        # One error event per affected session, each with its action.
        assert sorted(f.action for f in faults) == ["end", "fallback"]
        assert all(f.url == server.grpc_url for f in faults)
        fallback.close()
        ending.close()
    finally:
        server.stop()
    assert not server.is_running()
    assert _group_members(server.pid) == []  # no orphaned python stubs
    assert list_shm_regions(server.shm_prefix) == []  # the crashed stubs' shared memory was removed
    assert not server.workdir.exists()


def test_render_session_survives_triton_death_with_fallback(tmp_path: Path, demo_avatar_path: Path) -> None:
    """The renderer keeps producing frames (a server's session goes on) when Triton dies under it."""
    require_triton()
    server = start_triton(copy_repository(tmp_path))
    try:
        backend = TritonBackend(TritonOptions(url=server.grpc_url, on_failure="fallback"))
        session = RenderSession(load_hvia(demo_avatar_path), backend, fps=25, audio_sample_rate=16000)
        audio = speech_like(1.2, seed=12)
        out = list(session.push_audio(AudioChunk(audio[:8000], 16000)))
        server.kill()
        out += session.push_audio(AudioChunk(audio[8000:], 16000))
        out += session.end_segment()
        frames = [o for o in out if isinstance(o, RenderedFrame)]
        assert len(frames) == 30  # ceil(1.2 s * 25 fps): no frame lost to the crash
        assert backend.faults and backend.faults[0].action == "fallback"
        backend.close()
    finally:
        server.stop()


def test_unreachable_triton_fails_at_start_naming_the_address() -> None:
    pytest.importorskip("tritonclient.grpc.aio", reason="tritonclient is not installed")
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(Unavailable, match=f"Triton at {address} is unreachable") as info:
        TritonBackend(TritonOptions(url=address, connect_timeout_s=2))
    assert "avaluma triton start" in info.value.message

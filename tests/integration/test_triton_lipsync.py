"""The ``triton`` lip-sync backend against a real tritonserver (from the nvidia-pytriton wheel) serving our repository:
equality with the in-process backend, session isolation, `avaluma models push` under load, slow answers; each for
one request per session (``lipsync``) and for requests shared by the sessions of a backend (``lipsync_multi``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
from click.testing import CliRunner
from triton_support import (
    assert_frames_equal,
    copy_repository,
    require_triton,
    speech_like,
    stream_frames,
)

from avaluma.core.cli import cli
from avaluma.core.errors import Unavailable
from avaluma.core.ops.triton.server import TritonServer, start_triton
from avaluma.renderer.lipsync.base import MouthFrames
from avaluma.renderer.lipsync.onnx_backend import DEFAULT_MODEL, OnnxBackend
from avaluma.renderer.lipsync.triton_backend import LipSyncFault, TritonBackend, TritonOptions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    require_triton()
    repo = copy_repository(tmp_path_factory.mktemp("triton"), slow_model=True)
    models = ["lipsync", "lipsync_slow", "lipsync_multi", "lipsync_multi_slow"]
    with start_triton(repo, models=models) as server:
        yield server


@pytest.fixture(scope="module")
def in_process() -> OnnxBackend:
    return OnnxBackend()


@pytest.fixture(scope="module", params=["lipsync", "lipsync_multi"])
def backend(triton: TritonServer, request: pytest.FixtureRequest) -> Iterator[TritonBackend]:
    b = TritonBackend(TritonOptions(url=triton.grpc_url, model=request.param, timeout_s=10))
    assert (b.coalescer is not None) == (request.param == "lipsync_multi")
    yield b
    b.close()


@pytest.mark.parametrize(("chunk", "fps"), [(640, 25), (1280, 25), (333, 30), (16000, 25)])
def test_output_equals_in_process_backend(
    backend: TritonBackend, in_process: OnnxBackend, chunk: int, fps: float
) -> None:
    audio = speech_like(2.3, seed=1)
    expected = in_process.analyze(audio, fps=fps)
    assert_frames_equal(stream_frames(backend, audio, chunk, fps), expected)
    # The mouth really moves: the comparison is not between two constant outputs.
    assert expected.params[:, 0].std() > 0.01


def test_interleaved_sessions_keep_their_own_state(backend: TritonBackend, in_process: OnnxBackend) -> None:
    audios = [speech_like(1.5, seed=s) for s in (2, 3, 4)]
    streams = [backend.open_stream(fps=25) for _ in audios]
    parts: list[list[MouthFrames]] = [[] for _ in audios]
    for start in range(0, len(audios[0]), 800):
        for i, stream in enumerate(streams):
            parts[i].append(stream.push(audios[i][start : start + 800]))
    for i, stream in enumerate(streams):
        parts[i].append(stream.flush())
        assert_frames_equal(MouthFrames.concat(parts[i]), in_process.analyze(audios[i], fps=25))


def test_segments_and_reset_start_fresh(backend: TritonBackend, in_process: OnnxBackend) -> None:
    stream = backend.open_stream(fps=25)
    first, second = speech_like(1.0, seed=5), speech_like(1.2, seed=6)
    stream.push(first[:7000])
    stream.reset()  # interrupted mid-segment: nothing of it may leak into the next one
    assert stream.flush().params.shape[0] == 0
    for audio in (first, second):  # two segments back to back on one stream
        got = MouthFrames.concat([stream.push(audio[:9000]), stream.push(audio[9000:]), stream.flush()])
        assert_frames_equal(got, in_process.analyze(audio, fps=25))


@pytest.mark.parametrize("model", ["lipsync", "lipsync_multi"])
def test_models_push_under_load(triton: TritonServer, in_process: OnnxBackend, model: str) -> None:
    faults: list[LipSyncFault] = []
    backend = TritonBackend(TritonOptions(url=triton.grpc_url, model=model, timeout_s=10), on_fault=faults.append)
    audio = speech_like(1.2, seed=7)
    expected = in_process.analyze(audio, fps=25)
    pushed = threading.Event()
    stop = threading.Event()
    errors: list[BaseException] = []
    versions_seen: list[set[str]] = [set() for _ in range(6)]
    results: list[list[MouthFrames]] = [[] for _ in range(6)]

    def session(i: int) -> None:
        stream = backend.open_stream(fps=25)
        try:
            # Keep streaming segments until the swap is done and one more segment has run on the new version.
            rounds_after = 0
            while rounds_after < 2 and not stop.is_set():
                if pushed.is_set():
                    rounds_after += 1
                parts = []
                for start in range(0, len(audio), 640):
                    parts.append(stream.push(audio[start : start + 640]))
                    versions_seen[i].add(stream.primary.model_version)  # the Triton stream inside the fallback
                parts.append(stream.flush())
                results[i].append(MouthFrames.concat(parts))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        for _ in range(2):  # two swaps in a row, with sessions mid-segment each time
            result = CliRunner().invoke(
                cli,
                [
                    "models",
                    "push",
                    str(DEFAULT_MODEL),
                    "--repository",
                    str(triton.repository),
                    "--url",
                    triton.grpc_url,
                    "--model",
                    model,
                ],
            )
            assert result.exit_code == 0, result.output
    finally:
        pushed.set()
        for t in threads:
            t.join(timeout=120)
        stop.set()
        backend.close()
    assert not errors, errors
    assert not faults, faults
    assert "version 3" in result.output
    for i in range(6):
        assert len(results[i]) >= 2
        for frames in results[i]:
            assert_frames_equal(frames, expected)
        assert "3" in versions_seen[i], versions_seen[i]  # the last segments ran on the newest version
    assert sorted(p.name for p in (triton.repository / model).iterdir()) == ["1", "2", "3", "config.pbtxt"]


@pytest.mark.parametrize("model", ["lipsync_slow", "lipsync_multi_slow"])
def test_slow_answers_are_bounded_by_the_timeout(triton: TritonServer, in_process: OnnxBackend, model: str) -> None:
    flag = triton.repository / model / "1" / "SLOW"
    audio = speech_like(1.0, seed=8)
    expected = in_process.analyze(audio, fps=25)
    faults: list[LipSyncFault] = []
    fallback = TritonBackend(
        TritonOptions(url=triton.grpc_url, model=model, timeout_s=0.5, on_failure="fallback"),
        on_fault=faults.append,
    )
    ending = TritonBackend(TritonOptions(url=triton.grpc_url, model=model, timeout_s=0.5, on_failure="end"))
    try:
        s1, s2 = fallback.open_stream(fps=25), ending.open_stream(fps=25)
        first = [s1.push(audio[:4000])]
        s2.push(audio[:4000])
        flag.write_text("3")
        first.append(s1.push(audio[4000:]))  # times out after 0.5 s, continues in-process
        first.append(s1.flush())
        assert_frames_equal(MouthFrames.concat(first), expected)
        assert s1.using_fallback
        assert len(faults) == 1 and faults[0].action == "fallback" and "timeout" in faults[0].error
        with pytest.raises(Unavailable, match=triton.grpc_url.replace(".", r"\.")):
            s2.push(audio[4000:])
        with pytest.raises(Unavailable):  # the session stays ended
            s2.flush()
        s2.reset()  # clearing an ended session is harmless
    finally:
        flag.unlink(missing_ok=True)
        fallback.close()
        ending.close()


def test_fps_and_empty_pushes(backend: TritonBackend, in_process: OnnxBackend) -> None:
    stream = backend.open_stream(fps=25)
    assert len(stream.push(np.zeros(0, np.float32))) == 0
    assert len(stream.flush()) == 0  # a segment without audio asks Triton nothing and yields nothing
    with pytest.raises(ValueError, match="fps"):
        backend.open_stream(fps=0)

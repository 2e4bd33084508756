"""Batching across sessions in the Triton model: concurrent sessions whose requests Triton hands to one execute()
share the network calls, and every session gets the same frames, bit for bit, as from the same model run with
``batch_windows: "false"`` (each request on its own). The same holds when the sessions of a backend share requests
(``lipsync_multi``: one request carries the chunks of many sessions)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
from triton_support import copy_repository, require_triton, speech_like, stream_frames

from avaluma.core.ops.triton.server import TritonServer, start_triton
from avaluma.renderer.lipsync.base import MouthFrames
from avaluma.renderer.lipsync.triton_backend import TritonBackend, TritonOptions

pytestmark = pytest.mark.integration

SESSIONS = 12


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    require_triton()
    repo = copy_repository(tmp_path_factory.mktemp("triton"))
    unbatched = repo / "lipsync_unbatched"
    unbatched.mkdir()
    (unbatched / "1").mkdir()
    (unbatched / "1" / "model.py").write_text((repo / "lipsync" / "1" / "model.py").read_text())
    config = (repo / "lipsync" / "config.pbtxt").read_text()
    batched_param = 'key: "batch_windows" value: { string_value: "true" }'
    assert batched_param in config
    config = config.replace('name: "lipsync"', 'name: "lipsync_unbatched"')
    (unbatched / "config.pbtxt").write_text(config.replace(batched_param, batched_param.replace("true", "false")))
    with start_triton(repo, models=["lipsync", "lipsync_unbatched", "lipsync_multi"]) as server:
        yield server


def concurrent_sessions(
    url: str, model: str, audios: list[np.ndarray], chunk: int, shared: list[int] | None = None
) -> list[MouthFrames]:
    """Every session streams its audio from its own thread; ``shared`` gets (requests, chunks) of a coalescing
    backend."""
    backend = TritonBackend(TritonOptions(url=url, model=model, timeout_s=30, on_failure="end"))
    results: list[MouthFrames | None] = [None] * len(audios)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(audios))

    def session(i: int) -> None:
        try:
            barrier.wait()
            results[i] = stream_frames(backend, audios[i], chunk)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(audios))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if shared is not None:
        assert backend.coalescer is not None
        shared += [backend.coalescer.requests, backend.coalescer.entries]
    backend.close()
    assert not errors, errors[0]
    return [r for r in results if r is not None]


def batching_counts(url: str, model: str) -> tuple[int, int]:
    """(requests answered, execute() calls) of ``model`` according to Triton's statistics."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        stats = client.get_inference_statistics(model, as_json=True)["model_stats"]
    finally:
        client.close()
    return (
        sum(int(s.get("inference_count", 0)) for s in stats),
        sum(int(s.get("execution_count", 0)) for s in stats),
    )


def assert_same_frames(sessions: list[MouthFrames], unbatched: list[MouthFrames]) -> None:
    """Every session's mouth parameters and visemes equal the unbatched model's, bit for bit."""
    for got, expected in zip(sessions, unbatched, strict=True):
        assert len(got) == len(expected) > 20
        assert np.array_equal(got.params, expected.params)
        assert got.visemes is not None and expected.visemes is not None
        assert np.array_equal(got.visemes, expected.visemes)


@pytest.mark.parametrize("chunk", [640, 333])
def test_batched_sessions_equal_unbatched_bit_for_bit(triton: TritonServer, chunk: int) -> None:
    audios = [speech_like(1.0 + 0.1 * i, seed=40 + i) for i in range(SESSIONS)]
    before = batching_counts(triton.grpc_url, "lipsync")
    batched = concurrent_sessions(triton.grpc_url, "lipsync", audios, chunk)
    after = batching_counts(triton.grpc_url, "lipsync")
    unbatched = concurrent_sessions(triton.grpc_url, "lipsync_unbatched", audios, chunk)
    assert_same_frames(batched, unbatched)
    requests, executions = after[0] - before[0], after[1] - before[1]
    # Triton did hand several sessions' requests to one execute(): the equality above covered real batches.
    assert requests > executions, f"{requests} requests in {executions} execute() calls: nothing was batched"


@pytest.mark.parametrize("chunk", [640, 333])
def test_sessions_sharing_requests_equal_unbatched_bit_for_bit(triton: TritonServer, chunk: int) -> None:
    audios = [speech_like(1.0 + 0.1 * i, seed=60 + i) for i in range(SESSIONS)]
    shared: list[int] = []
    coalesced = concurrent_sessions(triton.grpc_url, "lipsync_multi", audios, chunk, shared)
    unbatched = concurrent_sessions(triton.grpc_url, "lipsync_unbatched", audios, chunk)
    assert_same_frames(coalesced, unbatched)
    requests, chunks = shared
    # Requests did carry the chunks of several sessions: the equality above covered shared requests.
    assert chunks > requests, f"{chunks} chunks in {requests} requests: no request was shared"

"""One Triton request for many sessions: the client side of the multi contract (model ``lipsync_multi``).

Every Triton request costs about a millisecond on top of the model's own work (the gRPC round trip, the python
backend's hop into its stub process and back, the response), whatever its size. A :class:`Coalescer` is shared by all
sessions of one :class:`~avaluma.renderer.lipsync.triton_backend.TritonBackend`: the chunks sessions push while a
request is in flight wait, and the next request carries all of them, one entry per session
(:func:`~avaluma.renderer.lipsync.triton_model.decode_multi` on the server). Each session gets its own slice of the
answer, or its own error; the streaming state on the server is the per-session :class:`SequenceStates`, so the frames
are the same, bit for bit, as over the per-session ``lipsync`` model.

Sessions wait in their own threads; requests are sent and answered on the backend's event-loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.base import MouthFrames
from avaluma.renderer.lipsync.triton_model import (
    INPUT_AUDIO,
    INPUT_CORRID,
    INPUT_END,
    INPUT_FLUSH,
    INPUT_FPS,
    INPUT_LENGTH,
    INPUT_START,
    OUTPUT_COUNT,
    OUTPUT_ERROR,
    OUTPUT_PARAMS,
    OUTPUT_VISEMES,
    split_multi,
)

F32 = npt.NDArray[np.float32]

#: Requests one backend keeps in flight at once. Two: while Triton computes one, the next is already on its way, so
#: the model never waits for the answer to travel back and the next request to be built (at 32 sessions on the
#: 2-core dev machine 630-840 frames/s against 380-480 with one; three or four made smaller batches and less).
MAX_IN_FLIGHT = 2


class EntryFailed(Exception):
    """Triton answered the request, but this entry failed (e.g. its sequence is unknown to the serving version)."""


@dataclass(eq=False)
class Entry:
    """One session's chunk: the fields of one entry of a multi request."""

    corrid: int
    start: bool
    end: bool
    flush: bool
    fps: float
    audio: F32
    headers: dict[str, str] | None = None
    future: Future[tuple[MouthFrames, str]] = field(default_factory=Future)


class Coalescer:
    """Gathers the entries of many sessions into one request to ``model`` at a time (see the module docstring).

    Sessions call :meth:`call` from their own threads (the render workers) and wait there: no coroutine or task per
    chunk, the event loop only sends the requests and hands the answers out."""

    def __init__(
        self,
        client: Any,
        model: str,
        timeout_s: float,
        loop: asyncio.AbstractEventLoop,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._client = client
        self._model = model
        self._timeout_s = timeout_s
        self._loop = loop
        self._max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._pending: list[Entry] = []
        self._in_flight = 0
        self._woken = False  # a _send_pending is scheduled on the loop
        self._tasks: dict[asyncio.Task[None], list[Entry]] = {}
        #: Requests sent and entries they carried (for the benchmark and tests).
        self.requests = 0
        self.entries = 0

    def call(self, entry: Entry) -> tuple[MouthFrames, str]:
        """Send ``entry`` with the next request and wait for its frames and the model version that answered (any
        thread but the loop's). Raises :class:`EntryFailed` when the server failed this entry, ``TimeoutError``
        after ``timeout_s`` without an answer, or the request's error when the request as a whole failed."""
        with self._lock:
            self._pending.append(entry)
            wake = not self._woken and self._in_flight < self._max_in_flight
            self._woken = self._woken or wake
        if wake:
            self._loop.call_soon_threadsafe(self._send_pending)
        try:
            return entry.future.result(timeout=self._timeout_s)
        except FutureTimeout:
            entry.future.cancel()  # still pending: it is left out; in flight: its answer is ignored
            self._loop.call_soon_threadsafe(self._drop_abandoned)
            raise TimeoutError(f"no answer within timeout_s={self._timeout_s}") from None

    def _send_pending(self) -> None:
        with self._lock:
            self._woken = False
            if self._in_flight >= self._max_in_flight:
                return  # the request in flight sends the rest when it is answered
            batch = [entry for entry in self._pending if not entry.future.done()]
            self._pending = []
            if not batch:
                return
            self._in_flight += 1
        task = self._loop.create_task(self._send(batch))
        self._tasks[task] = batch
        task.add_done_callback(lambda done: self._tasks.pop(done, None))

    def _drop_abandoned(self) -> None:
        for task, batch in list(self._tasks.items()):
            if all(e.future.done() for e in batch):  # nobody waits for that request any more: free its slot
                task.cancel()

    async def _send(self, batch: list[Entry]) -> None:
        try:
            answers = await self._infer(batch)
        except asyncio.CancelledError:
            for entry in batch:
                entry.future.cancel()
            raise
        except Exception as exc:
            for entry in batch:
                _settle(entry.future, error=exc)
        else:
            for entry, answer in zip(batch, answers, strict=True):
                if isinstance(answer, Exception):
                    _settle(entry.future, error=answer)
                else:
                    _settle(entry.future, result=answer)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._send_pending()

    async def _infer(self, batch: list[Entry]) -> list[tuple[MouthFrames, str] | Exception]:
        from tritonclient.grpc import InferInput, InferRequestedOutput

        columns: list[tuple[str, str, npt.NDArray[Any]]] = [
            (INPUT_CORRID, "UINT64", np.array([e.corrid for e in batch], dtype=np.uint64)),
            (INPUT_START, "BOOL", np.array([e.start for e in batch], dtype=np.bool_)),
            (INPUT_END, "BOOL", np.array([e.end for e in batch], dtype=np.bool_)),
            (INPUT_FLUSH, "BOOL", np.array([e.flush for e in batch], dtype=np.bool_)),
            (INPUT_FPS, "FP32", np.array([e.fps for e in batch], dtype=np.float32)),
            (INPUT_LENGTH, "INT32", np.array([e.audio.size for e in batch], dtype=np.int32)),
            (INPUT_AUDIO, "FP32", np.concatenate([e.audio.reshape(-1) for e in batch]).astype(np.float32, copy=False)),
        ]
        inputs = []
        for name, dtype, values in columns:
            tensor = InferInput(name, [int(values.size)], dtype)
            tensor.set_data_from_numpy(values)
            inputs.append(tensor)
        outputs = [InferRequestedOutput(n) for n in (OUTPUT_COUNT, OUTPUT_PARAMS, OUTPUT_VISEMES, OUTPUT_ERROR)]
        headers = next((e.headers for e in batch if e.headers), None)
        self.requests += 1
        self.entries += len(batch)
        result = await self._client.infer(
            self._model, inputs, outputs=outputs, client_timeout=self._timeout_s + 1, headers=headers
        )
        version = str(result.get_response().model_version)
        counts, params = result.as_numpy(OUTPUT_COUNT), result.as_numpy(OUTPUT_PARAMS)
        frames = split_multi(counts, params, result.as_numpy(OUTPUT_VISEMES))
        errors = result.as_numpy(OUTPUT_ERROR).reshape(-1)
        if len(frames) != len(batch) or len(errors) != len(batch):
            raise RuntimeError(f"Triton answered {len(frames)} entries for a request of {len(batch)}")
        return [EntryFailed(_text(error)) if _text(error) else (frames[i], version) for i, error in enumerate(errors)]

    async def close(self) -> None:
        with self._lock:
            self._max_in_flight = 0  # nothing new is sent
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


def _settle(
    future: Future[tuple[MouthFrames, str]],
    *,
    result: tuple[MouthFrames, str] | None = None,
    error: BaseException | None = None,
) -> None:
    """Hand an answer to the waiting session, unless it stopped waiting (timed out) meanwhile."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        elif result is not None:
            future.set_result(result)


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value or "")

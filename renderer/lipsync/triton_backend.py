"""The ``triton`` lip-sync backend: the streaming model served by NVIDIA Triton, reached with ``tritonclient.grpc.aio``.

Config: ``lipsync: {name: triton, options: {url: "triton:8001", on_failure: fallback}}`` (see :class:`TritonOptions`).

How a session maps onto Triton (the wire contract is in :mod:`.triton_model`):

- one Triton *sequence* per audio segment, with a random uint64 correlation id: the segment's first chunk carries
  START, the flush carries END, so an idle session holds nothing on the server;
- one bidirectional gRPC stream (``ModelStreamInfer``) per segment, one request per :meth:`~TritonStream.push`, one
  request in flight at a time, so responses come back in order;
- a sequence is pinned to the model version that answered its START: ``avaluma models push`` loads a new version
  while the old one (kept loaded by ``version_policy latest 2``) finishes the segments already under way.

The renderer is synchronous (it runs in worker threads), so the backend owns one event-loop thread running the
shared ``grpc.aio`` channel; a stream's methods submit coroutines to it and wait for the answer.

Faults (Triton dies, a request errors, or an answer takes longer than ``timeout_s``): the stream logs an error event
(``event=lipsync_fault``), records a :class:`LipSyncFault` (also passed to the backend's ``on_fault`` callback) and
then follows ``on_failure``:

- ``fallback``: the stream raises :class:`LipSyncFailed` and the :class:`FallbackStream` that
  :meth:`TritonBackend.open_stream` composed around it switches to the in-process ONNX model for the rest of the
  session, replaying the current segment's audio so no frame is lost or duplicated;
- ``end``: this and every later call raise :class:`~avaluma.core.errors.Unavailable` naming the address; the
  session ends, the process and the other sessions stay up.

A server that answers "unknown sequence" (the model was reloaded by ``models push``, or the pinned version was
unloaded) is not a fault: the stream replays the segment on a fresh sequence and drops the frames it already
delivered, so output is unchanged. Replays need the segment's audio, which a stream keeps while the segment is open
(64 kB per second of segment).

Triton unreachable when the backend is created is always an error naming the address (``check_on_start``).

Against a model of the *multi* contract (``lipsync_multi``; ``protocol: auto`` reads it from the model's inputs) the
sessions share requests instead (:mod:`.triton_multi`): the chunks pushed while a request is in flight go together
in the next one. Sequences, faults and replays behave as above; every request asks for the newest version, and a
segment that a new version does not know is replayed on it like any lost sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from avaluma.core import telemetry
from avaluma.core.errors import Unavailable
from avaluma.renderer.lipsync.base import (
    MOUTH_PARAMS,
    LipSyncBackend,
    LipSyncFailed,
    LipSyncFault,
    LipSyncStream,
    MouthFrames,
)
from avaluma.renderer.lipsync.fallback import FallbackStream
from avaluma.renderer.lipsync.framing import MAX_FPS
from avaluma.renderer.lipsync.onnx_backend import DEFAULT_MODEL, OnnxModel, OnnxStream
from avaluma.renderer.lipsync.triton_model import (
    INPUT_AUDIO,
    INPUT_FLUSH,
    INPUT_FPS,
    INPUT_LENGTH,
    OUTPUT_PARAMS,
    OUTPUT_VISEMES,
    arrays_to_frames,
)
from avaluma.renderer.lipsync.triton_multi import Coalescer, Entry, EntryFailed
from avaluma.renderer.lipsync.visemes import VISEMES

logger = logging.getLogger(__name__)

__all__ = ["FAULT_EVENT", "LipSyncFault", "TritonBackend", "TritonOptions", "TritonStream"]

F32 = npt.NDArray[np.float32]
T = TypeVar("T")

#: Event name of the structured log record a fault produces.
FAULT_EVENT = "lipsync_fault"
#: Faults kept on the backend for inspection (``TritonBackend.faults``).
MAX_RECORDED_FAULTS = 100


class TritonOptions(BaseModel):
    """Options of the ``triton`` backend (config ``lipsync: {name: triton, options: {...}}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field("127.0.0.1:8001", description="Triton gRPC address, host:port.")
    model: str = Field("lipsync", description="Model name in the Triton repository.")
    timeout_s: float = Field(1.0, gt=0, le=60, description="Longest wait for one answer before it counts as a fault.")
    connect_timeout_s: float = Field(5.0, gt=0, le=120, description="Start-up readiness check deadline.")
    on_failure: Literal["fallback", "end"] = Field(
        "fallback", description="When Triton fails mid-session: continue in-process, or end the session."
    )
    fallback_model_path: str | None = Field(
        None, description="ONNX file for the in-process fallback (default: the bundled model, as Triton serves)."
    )
    check_on_start: bool = Field(True, description="Fail at start-up when Triton or the model is not ready.")
    protocol: Literal["auto", "sequence", "multi"] = Field(
        "auto",
        description="`sequence`: one request per session and chunk (model `lipsync`); `multi`: one request for the "
        "chunks of many sessions (model `lipsync_multi`); `auto`: read it from the model's inputs at start.",
    )


class TritonBackend(LipSyncBackend):
    """Shared connection to one Triton model; :meth:`open_stream` creates a session's stream."""

    name = "triton"

    def __init__(
        self, options: TritonOptions | None = None, *, on_fault: Callable[[LipSyncFault], None] | None = None
    ) -> None:
        self.options = options or TritonOptions()
        self.on_fault = on_fault
        self.faults: list[LipSyncFault] = []
        self._local_model: OnnxModel | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="triton-client", daemon=True)
        self._thread.start()
        self._client: Any = None
        self._closed = False
        #: Shared by all streams when the model speaks the multi contract; ``None`` for one request per session.
        self.coalescer: Coalescer | None = None
        try:
            self._client = self.run(self._make_client(), timeout_s=self.options.connect_timeout_s + 1)
            if self.options.check_on_start:
                self.check_ready()
            if self._speaks_multi():
                self.coalescer = Coalescer(self._client, self.options.model, self.options.timeout_s, self._loop)
            # Loaded now so a fault mid-session switches at once (a few MB, the same file Triton serves); streams
            # also read their lookahead from it.
            path = Path(self.options.fallback_model_path) if self.options.fallback_model_path else DEFAULT_MODEL
            self._local_model = OnnxModel(path)
        except BaseException:
            self.close()
            raise
        logger.info(
            "lip-sync backend connected to Triton",
            extra={"url": self.options.url, "model": self.options.model, "on_failure": self.options.on_failure,
                   "protocol": "multi" if self.coalescer is not None else "sequence"},
        )  # fmt: skip

    # --- the event-loop thread ------------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], *, timeout_s: float) -> T:
        """Run ``coro`` on the client's loop from any other thread and wait at most ``timeout_s`` for it."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    async def _make_client(self) -> Any:
        from tritonclient.grpc.aio import InferenceServerClient

        return InferenceServerClient(self.options.url)

    def _speaks_multi(self) -> bool:
        if self.options.protocol != "auto":
            return self.options.protocol == "multi"

        async def inputs() -> set[str]:
            meta = await self._client.get_model_metadata(
                self.options.model, as_json=True, client_timeout=self.options.connect_timeout_s
            )
            return {str(i.get("name")) for i in meta.get("inputs", [])}

        try:
            names = self.run(inputs(), timeout_s=self.options.connect_timeout_s + 1)
        except Exception as exc:
            logger.warning(
                "could not read the Triton model's inputs; assuming one request per session (set protocol)",
                extra={"url": self.options.url, "model": self.options.model, "error": _describe(exc)},
            )
            return False
        return INPUT_LENGTH in names

    def check_ready(self) -> None:
        """Raise :class:`Unavailable` naming the address unless the server and the model are ready."""
        url, model = self.options.url, self.options.model

        async def probe() -> tuple[bool, bool]:
            # Liveness, not server readiness: with strict readiness one unready model (e.g. a version being unloaded
            # after `models push`) makes the whole server "not ready" although ours serves fine.
            timeout = self.options.connect_timeout_s
            live = bool(await self._client.is_server_live(client_timeout=timeout))
            return live, live and bool(await self._client.is_model_ready(model, client_timeout=timeout))

        try:
            server_live, model_ready = self.run(probe(), timeout_s=self.options.connect_timeout_s * 2 + 1)
        except Exception as exc:
            raise Unavailable(
                f"Triton at {url} is unreachable ({_describe(exc)}): start it (`avaluma triton start`) or fix "
                "lipsync.options.url"
            ) from None
        if not server_live:
            raise Unavailable(f"Triton at {url} answers but is not live (shutting down?): restart it, then retry")
        if not model_ready:
            raise Unavailable(
                f"Triton at {url} has no ready model {model!r}: load it (`avaluma models push` or --load-model) or "
                "fix lipsync.options.model"
            )

    # --- LipSyncBackend -------------------------------------------------------------------------------------------

    def open_stream(self, *, fps: float) -> LipSyncStream:
        """A :class:`TritonStream`; under ``on_failure: fallback`` inside a :class:`FallbackStream` to the in-process
        model (loaded at start, the same file Triton serves)."""
        if self._closed:
            raise RuntimeError("the Triton lip-sync backend is closed")
        stream = TritonStream(self, fps)
        local = self._local_model
        if self.options.on_failure != "fallback" or local is None:
            return stream
        return FallbackStream(stream, lambda: OnnxStream(local, fps))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._client is not None and self._loop.is_running():
            if self.coalescer is not None:
                with contextlib.suppress(Exception):
                    self.run(self.coalescer.close(), timeout_s=5)
            with contextlib.suppress(Exception):
                self.run(self._client.close(), timeout_s=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    # --- used by streams ------------------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        return self._client

    @property
    def local_model(self) -> OnnxModel | None:
        """The in-process copy of the model (loaded at start): stream geometry, and the fallback."""
        return self._local_model

    def report(self, fault: LipSyncFault) -> None:
        self.faults.append(fault)
        del self.faults[:-MAX_RECORDED_FAULTS]
        logger.error(
            "lip-sync backend failed mid-session",
            extra={"event": FAULT_EVENT, "url": fault.url, "model": fault.model, "error": fault.error,
                   "action": fault.action},
        )  # fmt: skip
        if self.on_fault is not None:
            try:
                self.on_fault(fault)
            except Exception:  # a broken listener must not break the session it reports on
                logger.exception("lip-sync fault listener failed")


class _ServerError(Exception):
    """Triton answered a request with an error (as opposed to not answering)."""


class _Sequence:
    """One open Triton sequence (one audio segment) and its bidirectional gRPC stream."""

    def __init__(self, corrid: int) -> None:
        self.corrid = corrid
        self.version = ""  # pinned after the first answer
        self.started = False
        self.requests: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.responses: Any = None

    async def _request_iter(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            item = await self.requests.get()
            if item is None:
                return
            yield item

    def open(self, client: Any, headers: dict[str, str] | None) -> None:
        self.responses = client.stream_infer(inputs_iterator=self._request_iter(), headers=headers)

    def cancel(self) -> None:
        if self.responses is not None:
            with contextlib.suppress(Exception):
                self.responses.cancel()


class TritonStream(LipSyncStream):
    """Per-session stream over Triton; see the module docstring for sequences, versions and faults."""

    def __init__(self, backend: TritonBackend, fps: float) -> None:
        if not 0 < fps <= MAX_FPS:
            raise ValueError(f"fps must be in (0, {MAX_FPS}], got {fps}")
        self._backend = backend
        self._options = backend.options
        self._fps = float(fps)
        local = backend.local_model
        assert local is not None  # loaded by TritonBackend.__init__
        # Same streaming geometry as the in-process stream of the same model.
        self.lookahead_s = OnnxStream(local, fps).lookahead_s
        self._seq: _Sequence | None = None
        self._segment_audio: list[F32] = []
        self._emitted = 0
        self._failure: Unavailable | None = None
        self.fault: LipSyncFault | None = None
        #: Triton model version that answered the current (or last) segment; "" before the first answer.
        self.model_version = ""

    # --- LipSyncStream --------------------------------------------------------------------------------------------

    def _push(self, audio: F32) -> MouthFrames:
        self._raise_if_failed()
        self._segment_audio.append(audio)
        if not audio.size and self._seq is None:
            return _no_frames()
        return self._request(audio, flush=False)

    def _flush(self) -> MouthFrames:
        self._raise_if_failed()
        if self._seq is None:  # no audio in this segment: nothing to ask for
            self._end_segment()
            return _no_frames()
        frames = self._request(np.zeros(0, dtype=np.float32), flush=True)
        self._end_segment()
        return frames

    def _reset(self) -> None:
        seq, self._seq = self._seq, None
        self._end_segment()
        if seq is not None and self._failure is None:
            # Free the server-side state now instead of at the idle timeout; a failure here is harmless (the next
            # segment starts a new sequence) so it is only logged.
            try:
                self._send(seq, np.zeros(0, dtype=np.float32), flush=False, end=True)
            except Exception as exc:
                seq.cancel()
                logger.warning("could not end a Triton sequence on reset", extra={"error": _describe(exc)})

    # --- internals ------------------------------------------------------------------------------------------------

    def _request(self, audio: F32, *, flush: bool) -> MouthFrames:
        """Send one chunk; on a lost sequence replay the segment once; on any other failure apply the policy."""
        try:
            frames = self._call(audio, flush=flush)
        except _ServerError as exc:
            # The server is up but no longer knows this sequence: `models push` reloaded the model, or the version
            # it was pinned to was unloaded. Replaying the segment on a fresh sequence loses nothing.
            logger.info("Triton lost a sequence; replaying the segment", extra={"error": _describe(exc)})
            self._cancel_sequence()
            try:
                frames = _drop_first(self._call(np.concatenate(self._segment_audio), flush=flush), self._emitted)
            except Exception as again:
                return self._fault(again)
        except Exception as exc:
            return self._fault(exc)
        self._emitted += len(frames)
        return frames

    def _cancel_sequence(self) -> None:
        if self._seq is not None:
            self._backend._loop.call_soon_threadsafe(self._seq.cancel)
            self._seq = None

    def _call(self, audio: F32, *, flush: bool) -> MouthFrames:
        if self._seq is None:
            self._seq = _Sequence(_new_corrid())
        seq = self._seq
        # Trace context (traceparent) goes with the request that opens the sequence's stream, so Triton's own
        # traces join the caller's; read here, in the caller's thread. Tracing off: one flag check, no headers.
        headers = telemetry.inject_headers() if seq.responses is None and telemetry.tracing_enabled() else None
        frames = self._send(seq, audio, flush=flush, end=flush, headers=headers)
        self.model_version = seq.version
        return frames

    def _send(
        self, seq: _Sequence, audio: F32, *, flush: bool, end: bool, headers: dict[str, str] | None = None
    ) -> MouthFrames:
        """One chunk of ``seq`` to Triton and its frames back: shared with other sessions' chunks in one request
        when the model speaks the multi contract, else on the sequence's own stream."""
        coalescer = self._backend.coalescer
        if coalescer is None:
            return self._backend.run(
                self._exchange(seq, audio, flush=flush, end=end, headers=headers),
                timeout_s=self._options.timeout_s + 1,
            )
        entry = Entry(seq.corrid, not seq.started, end, flush, self._fps, audio, headers)
        seq.started = True
        try:
            frames, version = coalescer.call(entry)
        except EntryFailed as exc:
            raise _ServerError(str(exc)) from None
        seq.version = seq.version or version
        return frames

    async def _exchange(
        self, seq: _Sequence, audio: F32, *, flush: bool, end: bool, headers: dict[str, str] | None = None
    ) -> MouthFrames:
        from tritonclient.grpc import InferInput, InferRequestedOutput

        client = self._backend.client
        if seq.responses is None:
            seq.open(client, headers or None)
        inputs = [
            InferInput(INPUT_AUDIO, [1, int(audio.size)], "FP32"),
            InferInput(INPUT_FPS, [1, 1], "FP32"),
            InferInput(INPUT_FLUSH, [1, 1], "BOOL"),
        ]
        inputs[0].set_data_from_numpy(audio.reshape(1, -1))
        inputs[1].set_data_from_numpy(np.array([[self._fps]], dtype=np.float32))
        inputs[2].set_data_from_numpy(np.array([[flush]], dtype=np.bool_))
        request = {
            "model_name": self._options.model,
            "model_version": seq.version,
            "inputs": inputs,
            "outputs": [InferRequestedOutput(OUTPUT_PARAMS), InferRequestedOutput(OUTPUT_VISEMES)],
            "sequence_id": seq.corrid,
            "sequence_start": not seq.started,
            "sequence_end": end,
        }
        seq.started = True
        await seq.requests.put(request)
        try:
            result, error = await asyncio.wait_for(anext(seq.responses), self._options.timeout_s)
        except TimeoutError:
            seq.cancel()
            raise TimeoutError(f"no answer within timeout_s={self._options.timeout_s}") from None
        except BaseException:
            seq.cancel()
            raise
        if error is not None:
            seq.cancel()
            raise _ServerError(str(error.message() if hasattr(error, "message") else error))
        if not seq.version:
            seq.version = str(result.get_response().model_version)
        if end:
            await seq.requests.put(None)  # half-close: the call completes once the server has answered
        return arrays_to_frames(result.as_numpy(OUTPUT_PARAMS), result.as_numpy(OUTPUT_VISEMES))

    def _end_segment(self) -> None:
        self._seq = None
        self._segment_audio = []
        self._emitted = 0

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _fault(self, exc: BaseException) -> NoReturn:
        """Record and report the fault, then give up on the session: :class:`LipSyncFailed` for the composed
        fallback to take over, or (policy ``end``) :class:`Unavailable` now and on every later call."""
        self._cancel_sequence()
        action = self._options.on_failure
        fault = LipSyncFault(
            self._options.url, self._options.model, _describe(exc), action, time.time(), backend=TritonBackend.name
        )
        self.fault = fault
        self._backend.report(fault)
        self._end_segment()
        if action == "fallback":
            raise LipSyncFailed(fault)
        self._failure = Unavailable(
            f"Triton at {self._options.url} failed mid-session ({fault.error}); the session ends because "
            "lipsync.options.on_failure is 'end' (use 'fallback' to continue in-process)"
        )
        raise self._failure


def _drop_first(frames: MouthFrames, n: int) -> MouthFrames:
    if n <= 0:
        return frames
    return MouthFrames(frames.params[n:], None if frames.visemes is None else frames.visemes[n:])


def _no_frames() -> MouthFrames:
    # With an empty viseme array, like the in-process stream, so MouthFrames.concat keeps the others' visemes.
    return MouthFrames(np.zeros((0, len(MOUTH_PARAMS)), np.float32), np.zeros((0, len(VISEMES)), np.float32))


def _new_corrid() -> int:
    # uint64 on the server, but tritonclient sends the id as int64: stay below 2**63; never 0 (= "no sequence").
    return secrets.randbits(63) | 1


def _describe(exc: BaseException) -> str:
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):  # a gRPC error: its str() is a multi-line dump
        with contextlib.suppress(Exception):
            name = getattr(code(), "name", str(code()))
            lines = str(details() or "").strip().splitlines()
            return f"{type(exc).__name__}: {name}" + (f" {lines[0]}" if lines else "")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

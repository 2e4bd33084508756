"""What the Triton ``lipsync`` model computes, importable without Triton: per-sequence streaming state keyed by the
correlation id, on top of the in-process ONNX backend's :class:`~avaluma.renderer.lipsync.onnx_backend.OnnxStream`.

``deploy/triton/model_repository/lipsync/<version>/model.py`` only translates Triton requests to :class:`Step` s and
:class:`MouthFrames` back to tensors; everything here is unit-tested directly, and running the same
:class:`OnnxStream` code on both sides is what makes the Triton backend's output equal the in-process one.

The wire contract (shared with :mod:`.triton_backend`), one request per pushed chunk of audio:

- ``AUDIO``  FP32 ``[1, n]`` mono 16 kHz samples (``n`` may be 0);
- ``FPS``    FP32 ``[1, 1]`` video frame rate of the stream (read on START, must not change within a sequence);
- ``FLUSH``  BOOL ``[1, 1]`` end of the audio segment: return every remaining frame;
- sequence controls START (new state), END (drop the state after this request), CORRID (uint64);
- outputs ``PARAMS`` FP32 ``[1, k, 4]`` and ``VISEMES`` FP32 ``[1, k, 15]``, the frames completed by this request.

A sequence is one audio segment: the client STARTs it with the segment's first chunk and ENDs it with the FLUSH, so
an idle session holds no state and no sequence slot on the server.

The *multi* contract (model ``lipsync_multi``, config parameter ``protocol: "multi"``, no sequence batcher) carries the
chunks of many sessions in ONE request, so the per-request cost of Triton (gRPC, the python backend's hop) is paid
once per batch instead of once per session (:func:`decode_multi`, :func:`encode_multi`). For ``B`` entries:

- inputs ``CORRID`` UINT64 ``[B]``, ``START``/``END``/``FLUSH`` BOOL ``[B]``, ``FPS`` FP32 ``[B]``, ``LENGTH`` INT32
  ``[B]`` and ``AUDIO`` FP32 ``[sum(LENGTH)]`` (the entries' samples one after another);
- outputs ``COUNT`` INT32 ``[B]`` (frames per entry), ``PARAMS`` FP32 ``[sum(COUNT), 4]``, ``VISEMES`` FP32
  ``[sum(COUNT), 15]`` and ``ERROR`` BYTES ``[B]`` (empty, or why that entry failed: only that entry's session sees it).

START/END/CORRID mean what they mean in the sequence contract; the state is the same :class:`SequenceStates`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from avaluma.renderer.lipsync.base import MOUTH_PARAMS, MouthFrames
from avaluma.renderer.lipsync.onnx_backend import (
    CPU_PROVIDERS,
    DEFAULT_MODEL,
    OnnxModel,
    OnnxStream,
    Provider,
    StreamStep,
    run_batched,
)
from avaluma.renderer.lipsync.visemes import VISEMES

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

# Tensor names of the wire contract (model.py, config.pbtxt and the client use these).
INPUT_AUDIO = "AUDIO"
INPUT_FPS = "FPS"
INPUT_FLUSH = "FLUSH"
OUTPUT_PARAMS = "PARAMS"
OUTPUT_VISEMES = "VISEMES"

# Names only the multi contract uses (see the module docstring).
INPUT_CORRID = "CORRID"
INPUT_START = "START"
INPUT_END = "END"
INPUT_LENGTH = "LENGTH"
OUTPUT_COUNT = "COUNT"
OUTPUT_ERROR = "ERROR"

#: File a pushed model version carries next to its model.py.
MODEL_FILENAME = "model.onnx"
#: Sequences not seen for this long are dropped (a client that vanished without END must not leak state).
DEFAULT_STATE_TTL_S = 300.0


class SequenceError(ValueError):
    """A request that does not fit its sequence (no START first, missing FPS, changed FPS). Sent back to the client
    as that request's error; the other sequences are unaffected."""


@dataclass(frozen=True, slots=True)
class Step:
    """One request of a sequence, decoded."""

    corrid: int
    start: bool
    end: bool
    audio: F32
    fps: float
    flush: bool


def resolve_model_path(version_dir: Path | None) -> Path:
    """The ONNX file a model version serves: ``<version_dir>/model.onnx`` if it was pushed with one, else the model
    bundled in the installed ``avaluma`` package (version 1 of the shipped repository carries no copy)."""
    if version_dir is not None and (version_dir / MODEL_FILENAME).is_file():
        return version_dir / MODEL_FILENAME
    return DEFAULT_MODEL


class SequenceStates:
    """Streaming state per correlation id over one shared :class:`OnnxModel`.

    Thread-safe for distinct ids (Triton may call ``execute`` for several sequences at once when the model has
    several instances; each instance has its own :class:`SequenceStates`, and Triton routes a sequence to one instance).
    """

    def __init__(
        self, model: OnnxModel, *, ttl_s: float = DEFAULT_STATE_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.model = model
        self._ttl_s = ttl_s
        self._clock = clock
        self._streams: dict[int, tuple[OnnxStream, float]] = {}
        self._last_seen: dict[int, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, corrid: int) -> bool:
        return corrid in self._streams

    def step(self, step: Step) -> MouthFrames:
        """Apply one request: START makes fresh state, FLUSH returns the segment's last frames, END drops the state."""
        stream = self._stream_for(step)
        try:
            frames = stream.push(step.audio)
            if step.flush:
                frames = MouthFrames.concat([frames, stream.flush()])
        finally:
            if step.end:
                self.drop(step.corrid)
        return frames

    def step_many(self, steps: list[Step]) -> list[MouthFrames | Exception]:
        """:meth:`step` for the requests of one Triton ``execute`` call, the sessions' network windows run together
        (:func:`~avaluma.renderer.lipsync.onnx_backend.run_batched`): the same frames as one :meth:`step` after the
        other, bit for bit. Each result is that request's frames or its error; an error fails only its request."""
        results: list[MouthFrames | Exception] = [MouthFrames.empty()] * len(steps)
        i = 0
        while i < len(steps):
            # One round holds each sequence at most once (Triton sends one request per sequence slot per batch;
            # a repeated id waits for the next round so its requests apply in order).
            round_ids: set[int] = set()
            batch: list[tuple[int, Step, StreamStep]] = []
            while i < len(steps) and steps[i].corrid not in round_ids:
                step = steps[i]
                round_ids.add(step.corrid)
                try:
                    stream = self._stream_for(step)
                except Exception as exc:
                    results[i] = exc
                    if step.end:
                        self.drop(step.corrid)
                else:
                    batch.append((i, step, stream.step_frames(step.audio, flush=step.flush)))
                i += 1
            try:
                outcomes = run_batched(self.model, [work for _, _, work in batch])
            except Exception as exc:  # the network itself failed: every request of the round gets the error
                outcomes = [exc] * len(batch)
            for (index, step, _), outcome in zip(batch, outcomes, strict=True):
                results[index] = outcome
                if step.end:
                    self.drop(step.corrid)
        return results

    def _stream_for(self, step: Step) -> OnnxStream:
        """The state a request applies to: fresh on START, else the sequence's (checked against the request)."""
        now = self._clock()
        with self._lock:
            self._evict_idle(now)
            if step.start:
                if not step.fps > 0:
                    raise SequenceError("the START request of a sequence must carry FPS > 0")
                entry = (OnnxStream(self.model, step.fps), step.fps)
                self._streams[step.corrid] = entry
            else:
                found = self._streams.get(step.corrid)
                if found is None:
                    raise SequenceError(
                        f"sequence {step.corrid} has no state on this model instance (never STARTed, already ENDed, "
                        f"or idle for more than {self._ttl_s:.0f} s): start a new sequence"
                    )
                entry = found
            self._last_seen[step.corrid] = now
        stream, fps = entry
        if step.fps and abs(step.fps - fps) > 1e-6:
            if step.end:
                self.drop(step.corrid)
            raise SequenceError(f"FPS changed from {fps} to {step.fps} within sequence {step.corrid}")
        return stream

    def drop(self, corrid: int) -> None:
        with self._lock:
            self._streams.pop(corrid, None)
            self._last_seen.pop(corrid, None)

    def _evict_idle(self, now: float) -> None:
        stale = [c for c, seen in self._last_seen.items() if now - seen > self._ttl_s]
        for corrid in stale:
            self._streams.pop(corrid, None)
            self._last_seen.pop(corrid, None)
        if stale:
            logger.warning("dropped idle lip-sync sequences", extra={"count": len(stale), "ttl_s": self._ttl_s})


def frames_to_arrays(frames: MouthFrames) -> tuple[F32, F32]:
    """``MouthFrames`` -> the ``PARAMS [1, k, 4]`` and ``VISEMES [1, k, 15]`` output tensors."""
    params = np.array(frames.params[None], dtype=np.float32, order="C", copy=True)
    if frames.visemes is None:
        visemes = np.zeros((1, len(frames), 0), dtype=np.float32)
    else:
        visemes = np.array(frames.visemes[None], dtype=np.float32, order="C", copy=True)
    return params, visemes


def arrays_to_frames(params: F32, visemes: F32) -> MouthFrames:
    """Inverse of :func:`frames_to_arrays` (the client side)."""
    p = np.asarray(params, dtype=np.float32).reshape(-1, params.shape[-1])
    v = np.asarray(visemes, dtype=np.float32).reshape(-1, visemes.shape[-1])
    return MouthFrames(p, v if v.shape[-1] else None)


def decode_multi(
    corrids: npt.ArrayLike,
    starts: npt.ArrayLike,
    ends: npt.ArrayLike,
    flushes: npt.ArrayLike,
    fps: npt.ArrayLike,
    lengths: npt.ArrayLike,
    audio: npt.ArrayLike,
) -> list[Step]:
    """The tensors of one multi request -> one :class:`Step` per entry, in order. Raises :class:`SequenceError` when
    the tensors do not fit together (then the whole request fails: it came from a broken client)."""
    ids = np.asarray(corrids).reshape(-1)
    columns = [np.asarray(x).reshape(-1) for x in (starts, ends, flushes, fps, lengths)]
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    if any(len(c) != len(ids) for c in columns):
        raise SequenceError(f"multi request: CORRID, START, END, FLUSH, FPS, LENGTH must all have {len(ids)} entries")
    start, end, flush, rate, length = columns
    if (length < 0).any() or int(length.sum()) != len(samples):
        raise SequenceError(f"multi request: LENGTH adds up to {int(length.sum())}, AUDIO holds {len(samples)} samples")
    offsets = np.concatenate([[0], np.cumsum(length)]).astype(np.int64)
    return [
        Step(int(ids[i]), bool(start[i]), bool(end[i]), samples[offsets[i] : offsets[i + 1]], float(rate[i]),
             bool(flush[i]))
        for i in range(len(ids))
    ]  # fmt: skip


def encode_multi(results: list[MouthFrames | Exception]) -> tuple[npt.NDArray[np.int32], F32, F32, list[bytes]]:
    """Per-entry results -> ``COUNT``, ``PARAMS``, ``VISEMES`` and ``ERROR`` of the multi contract."""
    counts = np.zeros(len(results), dtype=np.int32)
    params: list[F32] = [np.zeros((0, len(MOUTH_PARAMS)), np.float32)]
    visemes: list[F32] = [np.zeros((0, len(VISEMES)), np.float32)]
    errors: list[bytes] = []
    for i, result in enumerate(results):
        if isinstance(result, Exception):
            errors.append(f"{type(result).__name__}: {result}".encode() or b"error")
            continue
        errors.append(b"")
        counts[i] = len(result)
        params.append(result.params.astype(np.float32, copy=False))
        visemes.append(np.zeros((len(result), len(VISEMES)), np.float32) if result.visemes is None else result.visemes)
    return counts, np.concatenate(params), np.concatenate(visemes).astype(np.float32, copy=False), errors


def split_multi(counts: npt.ArrayLike, params: F32, visemes: F32) -> list[MouthFrames]:
    """Inverse of the frame part of :func:`encode_multi` (the client side): one :class:`MouthFrames` per entry."""
    n = np.asarray(counts).reshape(-1).astype(np.int64)
    p = np.asarray(params, dtype=np.float32).reshape(-1, len(MOUTH_PARAMS))
    v = np.asarray(visemes, dtype=np.float32).reshape(-1, len(VISEMES))
    bounds = np.concatenate([[0], np.cumsum(n)])
    return [MouthFrames(p[bounds[i] : bounds[i + 1]], v[bounds[i] : bounds[i + 1]]) for i in range(len(n))]


def decode_step(corrid: int, start: bool, end: bool, audio: F32, fps: F32 | None, flush: F32 | None) -> Step:
    """Tensors of one request -> :class:`Step` (shapes are loose: anything that flattens to what is expected)."""
    return Step(
        corrid=int(corrid),
        start=bool(start),
        end=bool(end),
        audio=np.asarray(audio, dtype=np.float32).reshape(-1),
        fps=float(np.asarray(fps).reshape(-1)[0]) if fps is not None and np.asarray(fps).size else 0.0,
        flush=bool(np.asarray(flush).reshape(-1)[0]) if flush is not None and np.asarray(flush).size else False,
    )


def load_states(
    version_dir: Path | None,
    *,
    threads: int = 1,
    ttl_s: float = DEFAULT_STATE_TTL_S,
    gpu: int | None = None,
    batch: bool = False,
) -> SequenceStates:
    """Load the model a version serves (see :func:`resolve_model_path`) and wrap it in fresh :class:`SequenceStates`.

    ``gpu``: device id of a ``KIND_GPU`` instance; the network then runs on onnxruntime's CUDA provider (needs
    ``onnxruntime-gpu`` in the serving environment, e.g. the NGC container). Streaming state stays in host memory
    either way: a few kilobytes per session. ``batch``: load the network so that :meth:`SequenceStates.step_many`
    stacks the windows of concurrent sessions (see :class:`OnnxModel`).
    """
    path = resolve_model_path(version_dir)
    model = OnnxModel(
        path, threads=threads, providers=CPU_PROVIDERS if gpu is None else cuda_providers(gpu), batch=batch
    )
    logger.info(
        "lip-sync model loaded for Triton",
        extra={"model_path": str(path), "model_version": model.version, "gpu": gpu, "batch": model.batches},
    )
    return SequenceStates(model, ttl_s=ttl_s)


def cuda_providers(device_id: int) -> list[Provider]:
    """onnxruntime providers for a ``KIND_GPU`` instance on ``device_id`` (CPU kept as the fallback for any operator
    CUDA lacks). Raises when this onnxruntime has no CUDA provider, naming what to install."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError(
            "this Triton instance is KIND_GPU but onnxruntime has no CUDA provider: install onnxruntime-gpu in the "
            "serving environment, or use the CPU config.pbtxt"
        )
    return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]

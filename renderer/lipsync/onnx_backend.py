"""The ``onnx`` lip-sync backend: the trained model (``models/lipsync.onnx``) run in-process with onnxruntime.

Pipeline per stream: 16 kHz audio -> 100 Hz log-mel (:mod:`.features`) -> the network, which sees a fixed window of
``past`` frames before and ``lookahead`` frames after the frame it predicts -> pooled to video frames (:mod:`.framing`)
and read per frame as :class:`Decoding` says (lips closed where p/b/m is heard, jaw partly from the visemes).

Streaming equals offline: the network is a pure function of its window (valid convolutions, no recurrent state), a
segment starts from ``past`` frames of silence and ends padded with ``lookahead`` frames of silence, both in
streaming and offline use, so any chunking yields the same frames (to float rounding). Lookahead: 6 feature frames
plus half a frame and the analysis window's reach, 72.5 ms with the shipped model (<= 80 ms by design).

One :class:`OnnxBackend` (one onnxruntime session, a few MB) is shared by all sessions; a stream holds only a few
kilobytes of buffered audio and features.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from avaluma.renderer.lipsync.base import (
    JAW_OPEN,
    LIPS_CLOSED,
    LIPSYNC_SAMPLE_RATE,
    MOUTH_PARAMS,
    LipSyncBackend,
    LipSyncStream,
    MouthFrames,
    clean_mono,
)
from avaluma.renderer.lipsync.features import HOP, N_MELS, RIGHT_REACH, SILENCE_VALUE, StreamingLogMel
from avaluma.renderer.lipsync.framing import MAX_FPS, feature_range, n_video_frames
from avaluma.renderer.lipsync.visemes import PP, VISEME_SHAPES, VISEMES

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

#: The model shipped in the package.
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "lipsync.onnx"

#: An onnxruntime execution provider: its name, or ``(name, provider options)``.
Provider = str | tuple[str, dict[str, Any]]
#: What :class:`OnnxModel` runs on unless told otherwise.
CPU_PROVIDERS: Final[tuple[Provider, ...]] = ("CPUExecutionProvider",)

#: A stream's computation as a coroutine: it yields each feature window the network must run on, is sent back that
#: window's ``(visemes, params)``, and returns the frames. :meth:`OnnxStream.step_frames` makes one; one stream drives
#: it with :meth:`OnnxModel.run`, :func:`run_batched` drives many together with one network call per window length.
StreamStep = Generator[F32, tuple[F32, F32], MouthFrames]


@dataclass(frozen=True)
class Decoding:
    """How a video frame's mouth is read from the network's 100 Hz outputs beyond pooling them. Per frame, no state:
    streaming still equals offline, and the Triton model (which runs :class:`OnnxStream`) gives the same frames.

    Calibrated on the human dev speakers with model v2 (``bench/lipsync_eval.py`` compares with :attr:`RAW`).
    """

    #: Where the network's p/b/m probability closes the lips: a frame whose peak 100 Hz P(PP) is at most the first value
    #: keeps the lips-closed head's value, from the second on its lips close fully, linearly between (half closed at
    #: 0.2). The viseme head often hears a brief p/b/m (30-40 ms) that the lips-closed head misses: bilabial closure
    #: 0.893 -> 0.915 for 0.3 % more closed frames on other speech sounds. ``None``: the lips-closed head alone.
    bilabial_ramp: tuple[float, float] | None = (0.1, 0.3)
    #: Share of ``jaw_open`` taken from the visemes (their canonical jaw opening weighed by probability) instead of the
    #: jaw head: mouth-open r 0.824 -> 0.832.
    jaw_from_visemes: float = 0.75

    #: What models up to v2 shipped with: the heads' pooled outputs as they are.
    RAW: ClassVar[Decoding]


Decoding.RAW = Decoding(bilabial_ramp=None, jaw_from_visemes=0.0)
_VISEME_JAW = VISEME_SHAPES[:, JAW_OPEN].astype(np.float32)


class OnnxOptions(BaseModel):
    """Options of the ``onnx`` backend (config ``lipsync: {name: onnx, options: {...}}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: str | None = Field(None, description="ONNX file to load instead of the bundled model.")
    threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads (1 = one core per call).")


class OnnxModel:
    """The loaded network plus its streaming geometry (read from the ONNX metadata).

    ``providers`` are onnxruntime execution providers in order of preference, as ``ort.InferenceSession`` takes
    them (e.g. ``[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]``); the default is the CPU.
    ``batch``: make :meth:`run_batch` stack windows of concurrent streams into one call (the Triton model does; a
    file exported with its batch axis fixed to 1 is then loaded with that axis made dynamic).
    """

    def __init__(
        self, path: Path, threads: int = 1, *, providers: Sequence[Provider] = CPU_PROVIDERS, batch: bool = False
    ) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise FileNotFoundError(
                f"lip-sync model {path} not found: reinstall avaluma, or retrain it with "
                "`python -m avaluma.renderer.lipsync.training`"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))
        #: Whether :meth:`run_batch` stacks windows (asked for, and the batch axis is dynamic or was made so).
        self.batches = batch and not isinstance(self._session.get_inputs()[0].shape[0], int)
        if batch and not self.batches:
            patched = _batch_dynamic(path)
            if patched is not None:
                self._session = ort.InferenceSession(patched, sess_options=opts, providers=list(providers))
                self.batches = True
        meta: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        self.path = path
        self.version = meta.get("avaluma.version", "?")
        self.past = int(meta["avaluma.past_frames"])
        self.lookahead = int(meta["avaluma.lookahead_frames"])
        visemes = tuple(meta.get("avaluma.visemes", "").split(","))
        params = tuple(meta.get("avaluma.params", "").split(","))
        if visemes != VISEMES or params != MOUTH_PARAMS:
            raise ValueError(f"lip-sync model {path} was trained for other visemes/parameters: retrain it")

    def run(self, features: F32) -> tuple[F32, F32]:
        """Features ``[past + k + lookahead, N_MELS]`` -> visemes ``[k, 15]`` and params ``[k, 4]``."""
        vis, par = self._session.run(None, {"features": features[None].astype(np.float32, copy=False)})
        return vis[0], par[0]

    def run_batch(self, windows: Sequence[F32]) -> list[tuple[F32, F32]]:
        """:meth:`run` on many windows: one network call per distinct window length, each answer equal to what
        :meth:`run` gives for that window alone, bit for bit (measured with onnxruntime 1.32's CPU kernels).

        Windows are grouped by length rather than padded to one: the valid convolutions would let the padded tail's
        extra outputs be dropped, but onnxruntime's results for a frame change in the last bit (~1e-7) with the
        input's length, and streams must give the same frames whether their requests were batched or not. Sessions
        pushing equal chunks (40 ms at 25 fps) ask for equal lengths, so they still share one call.
        """
        out: list[tuple[F32, F32]] = [(np.empty(0, np.float32), np.empty(0, np.float32))] * len(windows)
        by_length: dict[int, list[int]] = {}
        for i, window in enumerate(windows):
            by_length.setdefault(len(window), []).append(i)
        for group in by_length.values():
            if len(group) == 1 or not self.batches:
                for i in group:
                    out[i] = self.run(windows[i])
                continue
            stacked = np.stack([windows[i] for i in group]).astype(np.float32, copy=False)
            vis, par = self._session.run(None, {"features": stacked})
            for row, i in enumerate(group):
                out[i] = (vis[row], par[row])
        return out


def _batch_dynamic(path: Path) -> bytes | None:
    """The model with its batch axis made dynamic in memory, for files exported with it fixed to 1 (models up to
    version 1): dimension 0 of the inputs and outputs renamed to ``batch``; the network is a stack of convolutions,
    so nothing inside depends on it. ``None`` without the ``onnx`` package (``pip install 'avaluma[triton]'``): the
    windows then run one by one."""
    try:
        import onnx
    except ImportError:
        logger.warning("the onnx package is missing: lip-sync windows of concurrent streams run one by one")
        return None

    proto = onnx.load(str(path))
    fixed = [
        v
        for v in [*proto.graph.input, *proto.graph.output]
        if v.type.tensor_type.shape.dim and v.type.tensor_type.shape.dim[0].HasField("dim_value")
    ]
    for value in fixed:
        value.type.tensor_type.shape.dim[0].dim_param = "batch"  # replaces dim_value (a oneof)
    del proto.graph.value_info[:]  # inferred intermediate shapes would still say 1
    return bytes(proto.SerializeToString())


def run_batched(model: OnnxModel, steps: Sequence[StreamStep]) -> list[MouthFrames | Exception]:
    """Drive the steps of many streams together: each round, the windows all pending steps wait for go through
    :meth:`OnnxModel.run_batch` at once. A step that raises fails alone (its exception is its result)."""
    results: list[MouthFrames | Exception] = [MouthFrames.empty()] * len(steps)
    pending: list[tuple[int, F32]] = []

    def advance(i: int, answer: tuple[F32, F32] | None) -> None:
        try:
            window = next(steps[i]) if answer is None else steps[i].send(answer)
        except StopIteration as done:
            results[i] = done.value
        except Exception as exc:  # one bad stream fails alone; the others go on
            results[i] = exc
        else:
            pending.append((i, window))

    for i in range(len(steps)):
        advance(i, None)
    while pending:
        batch, pending = pending, []
        answers = model.run_batch([window for _, window in batch])
        for (i, _), answer in zip(batch, answers, strict=True):
            advance(i, answer)
    return results


def _drive(step: StreamStep, model: OnnxModel) -> MouthFrames:
    """Run one stream's step on its own, one network call per window."""
    try:
        window = next(step)
        while True:
            window = step.send(model.run(window))
    except StopIteration as done:
        frames: MouthFrames = done.value
        return frames


class OnnxStream(LipSyncStream):
    """Per-session state: audio not yet featurized, the feature window, model outputs not yet pooled."""

    def __init__(
        self,
        model: OnnxModel,
        fps: float,
        *,
        decoding: Decoding = Decoding(),
    ) -> None:
        if not 0 < fps <= MAX_FPS:
            raise ValueError(f"fps must be in (0, {MAX_FPS}], got {fps}")
        self._model = model
        self._fps = float(fps)
        self._decoding = decoding
        # A video frame ends <= half a feature frame after its last feature frame's centre; that frame then needs
        # ``lookahead`` more frames, the last of which reaches RIGHT_REACH samples past its slot.
        self.lookahead_s = (model.lookahead * HOP + HOP // 2 + RIGHT_REACH) / LIPSYNC_SAMPLE_RATE
        self._mel = StreamingLogMel()
        self._reset()

    def _reset(self) -> None:
        self._mel.reset()
        self._n_samples = 0
        # Features from frame ``self._next_out - past`` on; the segment starts after ``past`` frames of silence.
        self._feats = np.full((self._model.past, N_MELS), SILENCE_VALUE, dtype=np.float32)
        self._n_feats = 0  # real feature frames of this segment seen so far
        self._next_out = 0  # next 100 Hz output frame to compute
        self._out_base = 0  # 100 Hz index of the first row in _vis/_par
        self._vis = np.zeros((0, len(VISEMES)), dtype=np.float32)
        self._par = np.zeros((0, len(MOUTH_PARAMS)), dtype=np.float32)
        self._next_video = 0

    def _push(self, audio: F32) -> MouthFrames:
        return _drive(self._push_step(audio), self._model)

    def _flush(self) -> MouthFrames:
        return _drive(self._flush_step(), self._model)

    def step_frames(self, audio: F32, *, flush: bool = False) -> StreamStep:
        """``push(audio)`` (then ``flush()`` if asked) as a :data:`StreamStep`, for a caller that batches the network
        calls of many streams (:func:`run_batched`, the Triton model). Same frames as the calls; no instrumentation
        (the caller owns it), and the stream must not be used otherwise until the step has returned."""
        frames = yield from self._push_step(clean_mono(audio))
        if flush:
            frames = MouthFrames.concat([frames, (yield from self._flush_step())])
        return frames

    def _push_step(self, audio: F32) -> StreamStep:
        self._n_samples += len(audio)
        self._add_features(self._mel.push(audio))
        yield from self._run(self._n_feats - self._model.lookahead)
        return self._emit(None)

    def _flush_step(self) -> StreamStep:
        total = n_video_frames(self._n_samples, self._fps)
        self._add_features(self._mel.flush())
        if total > 0:
            need_out = feature_range(total - 1, self._fps)[1]
            pad = need_out + self._model.lookahead - self._n_feats
            if pad > 0:
                self._add_features(np.full((pad, N_MELS), SILENCE_VALUE, dtype=np.float32))
            yield from self._run(need_out)
        frames = self._emit(total)
        self._reset()
        return frames

    def _add_features(self, feats: F32) -> None:
        if len(feats):
            self._feats = np.concatenate([self._feats, feats])
            self._n_feats += len(feats)

    def _run(self, until: int) -> Generator[F32, tuple[F32, F32], None]:
        """Compute 100 Hz outputs for frames ``[_next_out, until)``: yields the window, is sent the network's answer."""
        k = until - self._next_out
        if k <= 0:
            return
        window = self._feats[: self._model.past + k + self._model.lookahead]
        vis, par = yield window
        self._vis = np.concatenate([self._vis, vis])
        self._par = np.concatenate([self._par, par])
        self._next_out = until
        self._feats = self._feats[k:]

    def _emit(self, limit: int | None) -> MouthFrames:
        vis_rows: list[F32] = []
        par_rows: list[F32] = []
        while limit is None or self._next_video < limit:
            lo, hi = feature_range(self._next_video, self._fps)
            if hi > self._next_out:
                break
            v = self._vis[lo - self._out_base : hi - self._out_base]
            p = self._par[lo - self._out_base : hi - self._out_base]
            pooled = p.mean(axis=0)
            # A closure shorter than a video frame must still show: p/b/m last 20-60 ms, a frame 33-40 ms.
            pooled[LIPS_CLOSED] = p[:, LIPS_CLOSED].max()
            pooled_vis = v.mean(axis=0)
            ramp, w = self._decoding.bilabial_ramp, self._decoding.jaw_from_visemes
            if ramp is not None:
                pooled[LIPS_CLOSED] = max(pooled[LIPS_CLOSED], bilabial_closure(float(v[:, PP].max()), ramp))
            if w:
                pooled[JAW_OPEN] = w * float(pooled_vis @ _VISEME_JAW) + (1 - w) * pooled[JAW_OPEN]
            vis_rows.append(pooled_vis)
            par_rows.append(pooled)
            self._next_video += 1
        if self._next_video:
            drop = feature_range(self._next_video - 1, self._fps)[1] - self._out_base
            if drop > 0:
                self._vis, self._par = self._vis[drop:], self._par[drop:]
                self._out_base += drop
        if not par_rows:
            # Empty but with a viseme array, so MouthFrames.concat keeps the visemes of the other parts.
            return MouthFrames(
                np.zeros((0, len(MOUTH_PARAMS)), dtype=np.float32), np.zeros((0, len(VISEMES)), dtype=np.float32)
            )
        return MouthFrames(np.stack(par_rows).astype(np.float32), np.stack(vis_rows).astype(np.float32))


def bilabial_closure(peak: float, ramp: tuple[float, float]) -> float:
    """How far a frame whose 100 Hz P(PP) peaks at ``peak`` closes the lips (see :attr:`Decoding.bilabial_ramp`)."""
    lo, hi = ramp
    return float(min(1.0, max(0.0, (peak - lo) / (hi - lo))))


class OnnxBackend(LipSyncBackend):
    """The trained audio-to-mouth model. Load once, share across sessions; each stream is one session."""

    name = "onnx"

    def __init__(self, options: OnnxOptions | None = None) -> None:
        self.options = options or OnnxOptions()
        path = Path(self.options.model_path) if self.options.model_path else DEFAULT_MODEL
        self.model = OnnxModel(path, threads=self.options.threads)
        logger.info(
            "loaded lip-sync model",
            extra={
                "model_path": str(path),
                "model_version": self.model.version,
                "lookahead_frames": self.model.lookahead,
            },
        )

    def open_stream(self, *, fps: float) -> OnnxStream:
        return OnnxStream(self.model, fps)

    def analyze(self, audio: F32, *, fps: float) -> MouthFrames:
        """Offline convenience: all frames of one segment of 16 kHz audio."""
        stream = self.open_stream(fps=fps)
        return MouthFrames.concat([stream.push(audio), stream.flush()])

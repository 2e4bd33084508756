"""The ``onnx`` lip-sync backend: the trained model (``models/lipsync.onnx``) run in-process with onnxruntime.

Pipeline per stream: 16 kHz audio -> 100 Hz log-mel (:mod:`.features`) -> the network, which sees a fixed window of
``past`` frames before and ``lookahead`` frames after the frame it predicts -> pooled to video frames (:mod:`.framing`).

Streaming equals offline: the network is a pure function of its window (valid convolutions, no recurrent state), a
segment starts from ``past`` frames of silence and ends padded with ``lookahead`` frames of silence, both in
streaming and offline use, so any chunking yields the same frames (to float rounding). Lookahead: 6 feature frames
plus the analysis window's reach, 67.5 ms with the shipped model (<= 80 ms by design).

One :class:`OnnxBackend` (one onnxruntime session, a few MB) is shared by all sessions; a stream holds only a few
kilobytes of buffered audio and features.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from avaluma.renderer.lipsync.base import (
    LIPS_CLOSED,
    LIPSYNC_SAMPLE_RATE,
    MOUTH_PARAMS,
    LipSyncBackend,
    LipSyncStream,
    MouthFrames,
)
from avaluma.renderer.lipsync.features import HOP, N_MELS, RIGHT_REACH, SILENCE_VALUE, StreamingLogMel
from avaluma.renderer.lipsync.framing import MAX_FPS, feature_range, n_video_frames
from avaluma.renderer.lipsync.visemes import VISEMES

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]

#: The model shipped in the package.
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "lipsync.onnx"

#: An onnxruntime execution provider: its name, or ``(name, provider options)``.
Provider = str | tuple[str, dict[str, Any]]
#: What :class:`OnnxModel` runs on unless told otherwise.
CPU_PROVIDERS: Final[tuple[Provider, ...]] = ("CPUExecutionProvider",)


class OnnxOptions(BaseModel):
    """Options of the ``onnx`` backend (config ``lipsync: {name: onnx, options: {...}}``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: str | None = Field(None, description="ONNX file to load instead of the bundled model.")
    threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads (1 = one core per call).")


class OnnxModel:
    """The loaded network plus its streaming geometry (read from the ONNX metadata).

    ``providers`` are onnxruntime execution providers in order of preference, as ``ort.InferenceSession`` takes
    them (e.g. ``[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]``); the default is the CPU.
    """

    def __init__(self, path: Path, threads: int = 1, *, providers: Sequence[Provider] = CPU_PROVIDERS) -> None:
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


class OnnxStream(LipSyncStream):
    """Per-session state: audio not yet featurized, the feature window, model outputs not yet pooled."""

    def __init__(self, model: OnnxModel, fps: float) -> None:
        if not 0 < fps <= MAX_FPS:
            raise ValueError(f"fps must be in (0, {MAX_FPS}], got {fps}")
        self._model = model
        self._fps = float(fps)
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
        self._n_samples += len(audio)
        self._add_features(self._mel.push(audio))
        self._run(self._n_feats - self._model.lookahead)
        return self._emit(None)

    def _flush(self) -> MouthFrames:
        total = n_video_frames(self._n_samples, self._fps)
        self._add_features(self._mel.flush())
        if total > 0:
            need_out = feature_range(total - 1, self._fps)[1]
            pad = need_out + self._model.lookahead - self._n_feats
            if pad > 0:
                self._add_features(np.full((pad, N_MELS), SILENCE_VALUE, dtype=np.float32))
            self._run(need_out)
        frames = self._emit(total)
        self._reset()
        return frames

    def _add_features(self, feats: F32) -> None:
        if len(feats):
            self._feats = np.concatenate([self._feats, feats])
            self._n_feats += len(feats)

    def _run(self, until: int) -> None:
        """Compute 100 Hz outputs for frames ``[_next_out, until)``."""
        k = until - self._next_out
        if k <= 0:
            return
        window = self._feats[: self._model.past + k + self._model.lookahead]
        vis, par = self._model.run(window)
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
            vis_rows.append(v.mean(axis=0))
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

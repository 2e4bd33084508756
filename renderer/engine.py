"""The render engine of one stream: audio in, lip-synced frames with their matching audio out.

Pure and synchronous (no I/O, no asyncio), so the CLI, the gRPC ``RenderService`` and LiveKit sessions all drive the
same code. A/V alignment holds by construction: every :class:`RenderedFrame` carries exactly
``audio_sample_rate / fps`` samples of the audio that plays during that frame (silence when idle).

Playback events mirror LiveKit's avatar contract: ``started`` when the first frame of a segment is emitted,
``finished`` after its last frame (``interrupted=True`` when cut short by :meth:`RenderSession.clear`).

The names here are what the server's player (``avaluma.core.live.playout``) codes against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import soxr

from avaluma.core.errors import InvalidArgument
from avaluma.core.media import AudioChunk, RenderOptions, validate_format
from avaluma.renderer.animator import Animator
from avaluma.renderer.avatar import Avatar
from avaluma.renderer.idle import IdleConfig
from avaluma.renderer.lipsync.base import (
    LIPSYNC_SAMPLE_RATE,
    MOUTH_PARAMS,
    NO_INSTRUMENTATION,
    REST_POSE,
    LipSyncBackend,
    LipSyncInstrumentation,
    MouthFrames,
    clean_mono,
)
from avaluma.renderer.lipsync.visemes import SIL
from avaluma.renderer.prosody import ProsodyAnalyzer, ProsodyFrame


@dataclass(frozen=True, slots=True)
class RenderedFrame:
    index: int  #: frame number since the stream started (idle frames included)
    pts_us: int  #: presentation time in microseconds, ``index * 1e6 / fps`` rounded
    rgb: npt.NDArray[np.uint8]  #: H x W x 3
    audio: npt.NDArray[np.float32]  #: mono, ``audio_sample_rate / fps`` samples
    speaking: bool  #: True while the frame belongs to an audio segment


@dataclass(frozen=True, slots=True)
class PlaybackEvent:
    kind: Literal["started", "finished"]
    segment: int  #: segment number since the stream started, from 0
    position_s: float  #: seconds of the segment played when the event happened
    interrupted: bool = False
    #: Who sent the segment, where a live player knows it (playback replies go there); the engine leaves it empty.
    sender: str = ""


RenderOutput = RenderedFrame | PlaybackEvent


F32 = npt.NDArray[np.float32]

#: soxr quality of the resampler feeding lip-sync (the output audio keeps soxr's default, HQ).
#: The model was trained on HQ-resampled audio; measured on the 276 held-out utterances (sentences and voices unseen
#: in training, synthesised afresh at 22.05 kHz, brought to 24 kHz with HQ, streamed to 16 kHz in 100 ms chunks, onnx
#: model at 25 fps), viseme accuracy / speech-frame accuracy / mouth-open r:
#:   HQ 0.879 / 0.851 / 0.951 (same as the training pipeline's own 16 kHz audio), streaming lag 21 ms mean, 37 ms max;
#:   LQ 0.874 / 0.844 / 0.947 (-0.5 point; 95.8 % of frames pick the same viseme as HQ), lag 11 ms mean, 20 ms max;
#:   QQ 0.876 / 0.847 / 0.950 (-0.3 point; 97.7 % agree), lag ~0. Same within 0.01 point from 48 kHz input.
#: QQ is the closest to HQ *and* adds no lag, so it is the one used. Measured by bench/lipsync_resampler.py.
LIPSYNC_RESAMPLER_QUALITY = "QQ"


class _Resampler:
    """Streaming mono resampler; a pass-through when the rates are equal (exact, and no filter delay)."""

    def __init__(self, in_rate: int, out_rate: int, *, quality: str = "HQ") -> None:
        self._stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
        )

    def __call__(self, samples: F32, *, last: bool = False) -> F32:
        if self._stream is None:
            return samples
        return np.asarray(self._stream.resample_chunk(samples, last=last), dtype=np.float32)


class RenderSession:
    """Audio in, lip-synced :class:`RenderedFrame` s and :class:`PlaybackEvent` s out, for one stream.

    Drive it with :meth:`push_audio` while a segment (one utterance) arrives, then :meth:`end_segment`; call
    :meth:`clear` to interrupt, and :meth:`idle_frames` to fill time when nothing is playing. Frames are returned as
    soon as both their mouth parameters and their audio are complete, so latency is the backend's lookahead plus the
    resampler's few milliseconds. Output audio is exactly ``audio_sample_rate / fps`` samples per frame; the last frame
    of a segment is padded with silence.

    The face also follows the speech (:mod:`avaluma.renderer.expression_motion`: brow raises on pitch accents, nods,
    tilts and glances at phrase ends, blinks in pauses) and shows ``emotion`` (:meth:`set_emotion`, eased). The
    prosody is measured on the lip-sync audio per frame and is ready before the frame's mouth, so it adds no latency.
    ``expressions=False`` renders exactly the frames of a renderer without expressions (the emotion is still
    validated and reported).

    Not thread-safe: one owner drives it (the CLI loop, a gRPC stream handler, a LiveKit session task).
    """

    _in_rate: int | None
    _to_lipsync: _Resampler | None
    _to_output: _Resampler | None
    _mouth: list[F32]
    _voice: list[F32]
    _prosody: list[ProsodyFrame]
    _audio: list[F32]

    def __init__(
        self,
        avatar: Avatar,
        backend: LipSyncBackend,
        *,
        fps: int = 25,
        audio_sample_rate: int = 24000,
        seed: int = 0,
        idle: IdleConfig | None = None,
        instrumentation: LipSyncInstrumentation = NO_INSTRUMENTATION,
        emotion: str = "neutral",
        expressions: bool = True,
    ) -> None:
        #: Validated here as everywhere else: one value type, one set of bounds (core.media.RenderOptions).
        self.options = RenderOptions(fps=fps, audio_sample_rate=audio_sample_rate, seed=seed, expressions=expressions)
        self._avatar = avatar
        self._fps = fps
        self._sr = audio_sample_rate
        self._spf = audio_sample_rate // fps
        self._animator = Animator(avatar, fps=fps, seed=seed, idle=idle, expressions=expressions, emotion=emotion)
        #: Pitch and energy of the lip-sync audio, per video frame, for the expression motion (none when it is off).
        self._analyzer = ProsodyAnalyzer(fps) if expressions else None
        self._lipsync = backend.open_stream(fps=fps)
        #: The owner's inference spans, latency and fault listener around every lip-sync call of this session.
        self._lipsync.instrumentation = instrumentation
        self._index = 0
        self._segment = 0
        self._reset_segment()

    # --- properties -------------------------------------------------------------------------------------------

    @property
    def fps(self) -> int:
        return self._fps

    @property
    def audio_sample_rate(self) -> int:
        return self._sr

    @property
    def width(self) -> int:
        return self._avatar.width

    @property
    def height(self) -> int:
        return self._avatar.height

    @property
    def frames_emitted(self) -> int:
        """Frames returned so far (speech and idle), i.e. the index of the next frame."""
        return self._index

    @property
    def state(self) -> str:
        """The idle state: ``idle``, ``listening`` or ``thinking``."""
        return self._animator.state

    def set_state(self, state: str) -> None:
        """Switch the avatar's idle behaviour (``idle``, ``listening``, ``thinking``); eased, takes effect on the next
        frame. Speech frames keep rendering lip-sync in any state. Unknown names raise :class:`InvalidArgument`."""
        self._animator.set_state(state)

    @property
    def emotion(self) -> str:
        """The emotion the face shows (one of :data:`~avaluma.core.media.EMOTIONS`)."""
        return self._animator.emotion

    def set_emotion(self, emotion: str) -> None:
        """Change the emotion (eased over ~0.4 s, never jumps); unknown names raise :class:`InvalidArgument` listing
        the valid ones."""
        self._animator.set_emotion(emotion)

    @property
    def expressions(self) -> bool:
        """Whether the face follows the speech's prosody and the emotion (``RenderSession(expressions=False)``:
        exactly the frames of a renderer without expressions)."""
        return self._animator.expressions

    @property
    def in_segment(self) -> bool:
        """True between the first audio of a segment and its :meth:`end_segment` or :meth:`clear`."""
        return self._active

    # --- driving ----------------------------------------------------------------------------------------------

    def push_audio(self, chunk: AudioChunk) -> list[RenderOutput]:
        """Add audio to the current segment (starting one if needed); return the frames it completed.

        A chunk may use a different sample rate than the previous one; the resamplers are replaced without losing
        audio. Empty chunks are accepted and return nothing.
        """
        validate_format(chunk.sample_rate, 1)
        # Lip-sync, prosody and the published audio all read these: NaN/inf and samples beyond full scale (a float
        # caller's bug) would otherwise reach the room as they are.
        samples = clean_mono(chunk.samples)
        if samples.size == 0:
            return []
        if chunk.sample_rate != self._in_rate:
            self._flush_resamplers()
            self._in_rate = chunk.sample_rate
            # soxr's HQ filter releases output in ~30 ms blocks behind its input, which delayed the first
            # lip-moving frame by a frame or two; see LIPSYNC_RESAMPLER_QUALITY for the measured choice.
            self._to_lipsync = _Resampler(chunk.sample_rate, LIPSYNC_SAMPLE_RATE, quality=LIPSYNC_RESAMPLER_QUALITY)
            self._to_output = _Resampler(chunk.sample_rate, self._sr)
        self._active = True
        assert self._to_lipsync is not None and self._to_output is not None
        self._feed(self._to_lipsync(samples), self._to_output(samples))
        return self._drain(final=False)

    def end_segment(self) -> list[RenderOutput]:
        """Finish the segment: its remaining frames, then ``finished``. Returns ``[]`` when no audio was pushed."""
        if not self._active:
            return []
        self._flush_resamplers()
        self._add_mouth(self._lipsync.flush())
        if self._analyzer is not None:
            self._prosody += self._analyzer.flush()
        out = self._drain(final=True)
        out.append(PlaybackEvent("finished", self._segment, self._real_samples / self._sr))
        self._segment += 1
        self._reset_segment()
        return out

    def clear(self) -> list[RenderOutput]:
        """Interrupt: drop buffered audio and frames, reset lip-sync, mouth back to rest.

        Returns ``finished(interrupted=True)`` (with the duration actually played) if a segment was in progress, else
        ``[]``; answering a clear when idle is the caller's decision.
        """
        self._lipsync.reset()
        if self._analyzer is not None:
            self._analyzer.reset()
        self._animator.reset_mouth()
        if not self._active:
            self._reset_segment()
            return []
        played = min(self._segment_frames * self._spf, self._real_samples) / self._sr
        event = PlaybackEvent("finished", self._segment, played, interrupted=True)
        self._segment += 1
        self._reset_segment()
        return [event]

    def idle_frames(self, n: int) -> list[RenderedFrame]:
        """``n`` silent frames continuing the index/pts sequence (for time with nothing to play): the mouth eases to
        rest, and idle life (blinks, breathing, head motion, the current state) goes on."""
        if n < 0:
            raise InvalidArgument(f"idle frame count must be >= 0, got {n}")
        silence = np.zeros(self._spf, dtype=np.float32)
        silence.flags.writeable = False
        return [self._frame(None, silence, speaking=False) for _ in range(n)]

    # --- internals --------------------------------------------------------------------------------------------

    def _reset_segment(self) -> None:
        self._active = False
        self._started = False
        self._segment_frames = 0
        self._real_samples = 0
        self._in_rate = None
        self._to_lipsync = None
        self._to_output = None
        self._mouth = []
        self._voice = []
        self._prosody = []
        self._audio = []

    def _flush_resamplers(self) -> None:
        if self._to_lipsync is None or self._to_output is None:
            return
        empty = np.zeros(0, dtype=np.float32)
        self._feed(self._to_lipsync(empty, last=True), self._to_output(empty, last=True))

    def _feed(self, lipsync_audio: F32, output_audio: F32) -> None:
        if lipsync_audio.size:
            self._add_mouth(self._lipsync.push(lipsync_audio))
            if self._analyzer is not None:
                # The frames' own audio and what came before it: ready no later than the mouth (which also needs
                # the backend's lookahead), so expressions add no latency.
                self._prosody += self._analyzer.push(lipsync_audio)
        if output_audio.size:
            self._audio.append(output_audio)
            self._real_samples += int(output_audio.size)

    def _add_mouth(self, frames: MouthFrames) -> None:
        if not len(frames):
            return
        self._mouth.append(frames.params)
        # The model's speech probability drives the expression motion's voice activity; NaN: none (energy backend),
        # the animator reads the jaw instead.
        if frames.visemes is not None and frames.visemes.shape[0] == len(frames):
            self._voice.append((1.0 - frames.visemes[:, SIL]).astype(np.float32))
        else:
            self._voice.append(np.full(len(frames), np.nan, np.float32))

    def _drain(self, *, final: bool) -> list[RenderOutput]:
        mouth = np.concatenate(self._mouth) if self._mouth else np.zeros((0, len(MOUTH_PARAMS)), np.float32)
        voice = np.concatenate(self._voice) if self._voice else np.zeros(0, np.float32)
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)
        if final:
            n = max(len(mouth), math.ceil(audio.size / self._spf))
            # Rounding in the two resamplers can leave the video or the audio a frame short: pad, never drop.
            if len(mouth) < n:
                mouth = np.concatenate([mouth, np.tile(REST_POSE, (n - len(mouth), 1))])
                voice = np.concatenate([voice, np.zeros(n - len(voice), np.float32)])
            if audio.size < n * self._spf:
                audio = np.concatenate([audio, np.zeros(n * self._spf - audio.size, np.float32)])
        else:
            n = min(len(mouth), audio.size // self._spf)
        out: list[RenderOutput] = []
        if n and not self._started:
            self._started = True
            out.append(PlaybackEvent("started", self._segment, 0.0))
        for i in range(n):
            prosody = self._prosody[i] if i < len(self._prosody) else None
            v = float(voice[i])
            out.append(
                self._frame(
                    mouth[i],
                    audio[i * self._spf : (i + 1) * self._spf].copy(),
                    speaking=True,
                    prosody=prosody,
                    voice=None if math.isnan(v) else v,
                )
            )
        self._segment_frames += n
        self._mouth = [mouth[n:]] if len(mouth) > n else []
        self._voice = [voice[n:]] if len(voice) > n else []
        self._prosody = self._prosody[n:]
        rest = audio[n * self._spf :]
        self._audio = [rest] if rest.size else []
        return out

    def _frame(
        self,
        params: F32 | None,
        audio: F32,
        *,
        speaking: bool,
        prosody: ProsodyFrame | None = None,
        voice: float | None = None,
    ) -> RenderedFrame:
        frame = RenderedFrame(
            index=self._index,
            pts_us=round(self._index * 1_000_000 / self._fps),
            rgb=self._animator.next_frame(params, speaking=speaking, prosody=prosody, voice=voice),
            audio=audio,
            speaking=speaking,
        )
        self._index += 1
        return frame

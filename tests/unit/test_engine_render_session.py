"""RenderSession: frame and audio accounting, event order, interruption, idle frames, resampling."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from avaluma.core.errors import InvalidArgument
from avaluma.core.media import AudioChunk
from avaluma.renderer.avatar import Avatar
from avaluma.renderer.engine import PlaybackEvent, RenderedFrame, RenderOutput, RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.idle import IdleConfig
from avaluma.renderer.lipsync.energy import EnergyBackend

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def avatar() -> Avatar:
    return load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")


def session(avatar: Avatar, **kwargs: int) -> RenderSession:
    """A session with idle life off, so frames can be compared with the photo pixel for pixel."""
    return RenderSession(avatar, EnergyBackend(), idle=IdleConfig(enabled=False), **kwargs)


def vowel(seconds: float, sr: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * k * 150.0 * t) / k for k in range(1, 8))
    return (amplitude * tone / 2.6).astype(np.float32)


def push_all(s: RenderSession, audio: np.ndarray, sr: int, chunk_s: float = 0.1) -> list[RenderOutput]:
    step = max(1, round(sr * chunk_s))
    out: list[RenderOutput] = []
    for i in range(0, len(audio), step):
        out += s.push_audio(AudioChunk(audio[i : i + step], sr))
    return out


def frames_of(outputs: list[RenderOutput]) -> list[RenderedFrame]:
    return [o for o in outputs if isinstance(o, RenderedFrame)]


def events_of(outputs: list[RenderOutput]) -> list[PlaybackEvent]:
    return [o for o in outputs if isinstance(o, PlaybackEvent)]


def mouth_change(frame: RenderedFrame, avatar: Avatar) -> float:
    rig = avatar.rig
    ys = slice(int(rig.upper_lip_inner[1]), int(rig.chin[1]))
    xs = slice(int(rig.mouth_left[0]), int(rig.mouth_right[0]))
    return float(np.abs(frame.rgb[ys, xs].astype(int) - avatar.base[ys, xs].astype(int)).mean())


@pytest.mark.parametrize("input_rate", [16_000, 22_050, 24_000, 48_000])
def test_segment_frame_and_audio_counts(avatar: Avatar, input_rate: int) -> None:
    s = session(avatar)
    audio = vowel(1.3, input_rate)
    outputs = push_all(s, audio, input_rate) + s.end_segment()
    frames, events = frames_of(outputs), events_of(outputs)
    assert math.ceil(1.3 * 25) <= len(frames) <= math.ceil(1.3 * 25) + 1
    assert all(f.audio.shape == (960,) and f.audio.dtype == np.float32 for f in frames)
    assert all(f.rgb.shape == (512, 512, 3) for f in frames)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [f.pts_us for f in frames] == [i * 40_000 for i in range(len(frames))]
    # started before the first frame, finished after the last, nothing else.
    assert isinstance(outputs[0], PlaybackEvent) and outputs[0].kind == "started"
    assert isinstance(outputs[-1], PlaybackEvent) and outputs[-1].kind == "finished"
    assert [(e.kind, e.segment, e.interrupted) for e in events] == [("started", 0, False), ("finished", 0, False)]
    assert events[1].position_s == pytest.approx(1.3, abs=0.002)
    assert s.frames_emitted == len(frames) and not s.in_segment


def test_output_audio_is_the_input_when_rates_match(avatar: Avatar) -> None:
    s = session(avatar, audio_sample_rate=24_000)
    audio = vowel(0.5, 24_000)[:11_111]
    frames = frames_of(push_all(s, audio, 24_000, chunk_s=0.037) + s.end_segment())
    played = np.concatenate([f.audio for f in frames])
    assert len(frames) == math.ceil(11_111 / 960)
    np.testing.assert_array_equal(played[:11_111], audio)
    assert not played[11_111:].any()  # the last frame is padded with silence


def test_frames_stream_out_while_audio_arrives(avatar: Avatar) -> None:
    s = session(avatar)
    during = frames_of(push_all(s, vowel(1.0, 24_000), 24_000))
    assert len(during) >= 24  # all but the frame still waiting on resampler delay / the segment end
    assert all(f.speaking for f in during)


def test_mouth_moves_with_speech_and_rests_in_silence(avatar: Avatar) -> None:
    s = session(avatar)
    sr = 16_000
    audio = np.concatenate([np.zeros(sr // 2, np.float32), vowel(0.6, sr), np.zeros(sr // 2, np.float32)])
    frames = frames_of(push_all(s, audio, sr) + s.end_segment())
    change = [mouth_change(f, avatar) for f in frames]
    assert max(change[:10]) == 0.0  # leading silence: exactly the rest pose
    assert min(change[16:26]) > 5.0  # during the vowel the mouth is open
    # Silence afterwards: within half a second the frame is the rest pose again, exactly.
    assert [mouth_change(f, avatar) for f in s.idle_frames(13)][-1] == 0.0


def test_clear_mid_segment_interrupts_and_next_segment_starts_fresh(avatar: Avatar) -> None:
    s = session(avatar)
    during = push_all(s, vowel(0.6, 24_000), 24_000)
    played = len(frames_of(during))
    cleared = s.clear()
    assert cleared == [PlaybackEvent("finished", 0, pytest.approx(played * 0.04), interrupted=True)]  # type: ignore[arg-type]
    assert not s.in_segment
    assert s.end_segment() == []  # nothing left to flush after a clear
    assert s.clear() == []  # clearing while idle: the caller decides how to answer
    rest = s.idle_frames(1)[0]
    np.testing.assert_array_equal(rest.rgb, avatar.base)
    after = push_all(s, vowel(0.2, 24_000), 24_000) + s.end_segment()
    events = events_of(after)
    assert [(e.kind, e.segment) for e in events] == [("started", 1), ("finished", 1)]
    first = frames_of(after)[0]
    assert first.index == played + 1  # indices continue across the clear and the idle frame


def test_idle_frames_continue_the_sequence(avatar: Avatar) -> None:
    s = session(avatar, fps=30, audio_sample_rate=48_000)
    idle = s.idle_frames(3)
    assert [f.index for f in idle] == [0, 1, 2]
    assert [f.pts_us for f in idle] == [0, 33_333, 66_667]
    assert all(not f.speaking and f.audio.shape == (1600,) and not f.audio.any() for f in idle)
    speech = frames_of(push_all(s, vowel(0.2, 48_000), 48_000) + s.end_segment())
    assert speech[0].index == 3
    assert s.idle_frames(0) == []
    with pytest.raises(InvalidArgument):
        s.idle_frames(-1)


def test_empty_pushes_and_empty_segments_produce_nothing(avatar: Avatar) -> None:
    s = session(avatar)
    assert s.push_audio(AudioChunk(np.zeros(0, np.float32), 24_000)) == []
    assert not s.in_segment
    assert s.end_segment() == []
    assert s.frames_emitted == 0


def test_one_sample_segment_still_plays_one_frame(avatar: Avatar) -> None:
    s = session(avatar)
    outputs = s.push_audio(AudioChunk(np.full(1, 0.1, np.float32), 24_000)) + s.end_segment()
    assert [type(o).__name__ for o in outputs] == ["PlaybackEvent", "RenderedFrame", "PlaybackEvent"]


def test_sample_rate_may_change_within_and_between_segments(avatar: Avatar) -> None:
    s = session(avatar)
    outputs = push_all(s, vowel(0.5, 16_000), 16_000) + push_all(s, vowel(0.5, 48_000), 48_000) + s.end_segment()
    frames = frames_of(outputs)
    assert 25 <= len(frames) <= 26  # 1.0 s of audio: nothing lost or duplicated at the switch
    assert events_of(outputs)[-1].position_s == pytest.approx(1.0, abs=0.002)
    outputs = push_all(s, vowel(0.2, 22_050), 22_050) + s.end_segment()
    assert 5 <= len(frames_of(outputs)) <= 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fps": 24, "audio_sample_rate": 22_050}, "not a multiple of fps"),
        ({"fps": 0}, "fps 0 is out of range"),
        ({"audio_sample_rate": 1_000}, "out of range"),
    ],
)
def test_invalid_settings(avatar: Avatar, kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        session(avatar, **kwargs)


def test_invalid_input_rate_is_rejected_and_the_session_survives(avatar: Avatar) -> None:
    s = session(avatar)
    with pytest.raises(InvalidArgument, match="unsupported sample rate"):
        s.push_audio(AudioChunk(np.zeros(10, np.float32), 44))
    assert len(frames_of(push_all(s, vowel(0.2, 24_000), 24_000) + s.end_segment())) == 5


def test_properties(avatar: Avatar) -> None:
    s = session(avatar, fps=20, audio_sample_rate=16_000)
    assert (s.fps, s.audio_sample_rate, s.width, s.height, s.frames_emitted) == (20, 16_000, 512, 512, 0)


def test_states_switch_and_unknown_states_are_rejected(avatar: Avatar) -> None:
    s = RenderSession(avatar, EnergyBackend(), seed=3)
    assert s.state == "idle"
    s.set_state("thinking")
    assert s.state == "thinking"
    thinking = s.idle_frames(25)[-1].rgb
    with pytest.raises(InvalidArgument, match="listening"):
        s.set_state("dancing")
    assert s.state == "thinking"  # a bad request changes nothing
    s.set_state("idle")
    assert s.idle_frames(1)[0].rgb.shape == thinking.shape


def test_idle_life_is_deterministic_for_a_seed(avatar: Avatar) -> None:
    a = [f.rgb for f in RenderSession(avatar, EnergyBackend(), seed=7).idle_frames(30)]
    b = [f.rgb for f in RenderSession(avatar, EnergyBackend(), seed=7).idle_frames(30)]
    c = [f.rgb for f in RenderSession(avatar, EnergyBackend(), seed=8).idle_frames(30)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert not np.array_equal(a[0], a[-1])  # the face is alive when nobody speaks


# --- expressions ------------------------------------------------------------------------------------------------


def words(n: int, sr: int, word_s: float = 0.5, gap_s: float = 0.3) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """``n`` voiced two-syllable words with pauses between them, and each word's (start, end) in seconds."""
    from speech_signals import phrase

    gap = np.zeros(round(gap_s * sr), np.float32)
    parts, spans, t = [gap], [], gap_s
    for k in range(n):
        word = phrase([120.0, 140.0 if k % 3 else 160.0], seconds=word_s / 2 - 0.01, gap_s=0.02, seed=k)
        if sr != 16_000:
            import soxr

            word = np.asarray(soxr.resample(word, 16_000, sr), np.float32)
        parts += [word, gap]
        spans.append((t, t + len(word) / sr))
        t += (len(word) + len(gap)) / sr
    return np.concatenate(parts), spans


def test_blinks_wait_for_the_pauses_between_words() -> None:
    from hvia_samples import photo_avatar

    audio, spans = words(24, 16_000)
    tiny = photo_avatar()  # timing only: the small face renders 20 s of frames in a blink

    def blinks(expressions: bool) -> list[float]:
        s = RenderSession(tiny, EnergyBackend(), audio_sample_rate=16_000, seed=2, expressions=expressions)
        push_all(s, audio, 16_000)
        s.end_segment()
        return [i / 25 for i in s._animator.idle.blink_frames]

    def mid_word(t: float) -> bool:  # a blink starting inside a word (its edges' 80 ms of onset/decay aside)
        return any(a + 0.08 < t < b - 0.08 for a, b in spans)

    with_expressions = blinks(True)
    assert len(with_expressions) >= 3
    assert not any(mid_word(t) for t in with_expressions)
    assert any(mid_word(t) for t in blinks(False))  # the plain timer does blink mid-word for this seed


def test_expressions_off_renders_exactly_the_frames_without_them(avatar: Avatar) -> None:
    from avaluma.renderer.animator import ACTIVITY_DECAY_S, SILENCE_DECAY_S
    from avaluma.renderer.compositor import Compositor
    from avaluma.renderer.idle import IdleMotion
    from avaluma.renderer.lipsync.base import JAW_OPEN, REST_POSE
    from avaluma.renderer.smoothing import MouthSmoother

    audio, _ = words(4, 16_000)
    s = RenderSession(avatar, EnergyBackend(), audio_sample_rate=16_000, seed=9, expressions=False, emotion="happy")
    assert not s.expressions and s.emotion == "happy"  # the emotion is kept (and reported), not rendered
    frames = frames_of(push_all(s, audio, 16_000) + s.end_segment()) + s.idle_frames(10)

    # The renderer before expressions: mouth smoothing, lip press, idle life, compositor; nothing else.
    params = EnergyBackend().open_stream(fps=25)
    track = np.concatenate([params.push(audio).params, params.flush().params])
    comp, idle, smoother = Compositor(avatar), IdleMotion(fps=25, seed=9), MouthSmoother(fps=25)
    activity = 0.0
    for i, frame in enumerate(frames):
        speaking = i < len(track)
        smoothed = smoother(track[i] if speaking else REST_POSE)
        decay = np.exp(-1 / ((ACTIVITY_DECAY_S if speaking else SILENCE_DECAY_S) * 25))
        activity = max(float(smoothed[JAW_OPEN]), activity * decay)
        activity = 0.0 if activity < 0.02 else activity
        expected = comp.render(smoothed, pose=idle.step(speaking=speaking), press=min(1.0, 4 * activity), frame=i)
        np.testing.assert_array_equal(frame.rgb, expected)


def test_expressions_are_deterministic_and_follow_the_speech(avatar: Avatar) -> None:
    audio, _ = words(6, 16_000)
    audio = audio[: len(audio) // 640 * 640]

    def run(seed: int) -> tuple[list[np.ndarray], list[object]]:
        s = RenderSession(avatar, EnergyBackend(), audio_sample_rate=16_000, seed=seed, emotion="happy")
        poses: list[object] = []
        rgb: list[np.ndarray] = []
        for i in range(0, len(audio), 640):  # one frame's audio per push: one frame out (no lookahead)
            frames = frames_of(s.push_audio(AudioChunk(audio[i : i + 640], 16_000)))
            assert len(frames) == 1
            rgb.append(frames[0].rgb)
            poses.append((s._animator.last_expression, s._animator.last_pose))
        return rgb, poses

    a, b = run(3), run(3)
    assert a[1] == b[1] and all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    smiles = [p[0].smile for p in a[1]]  # type: ignore[attr-defined]
    assert min(smiles) == pytest.approx(0.7, abs=0.01)  # held from the first frame through the speech
    assert any(p[0].head_roll != 0.0 for p in a[1])  # type: ignore[attr-defined]


def test_emotion_switches_are_eased_and_unknown_ones_refused(avatar: Avatar) -> None:
    with pytest.raises(InvalidArgument, match="neutral, happy, serious, surprised, concerned"):
        RenderSession(avatar, EnergyBackend(), emotion="angry")
    s = RenderSession(avatar, EnergyBackend(), seed=1)
    s.idle_frames(2)
    with pytest.raises(InvalidArgument, match="surprised"):
        s.set_emotion("bored")
    assert s.emotion == "neutral"
    s.set_emotion("serious")
    inner = []
    for _ in range(20):
        s.idle_frames(1)
        inner.append(s._animator.last_expression.brow_inner)
    assert -0.2 < inner[0] < 0.0  # on its way, not there
    assert inner[-1] == pytest.approx(-0.6, abs=0.02)  # there within 0.8 s, held while idle
    assert max(np.abs(np.diff(inner))) <= 0.15


def test_non_finite_and_out_of_range_samples_are_sanitised_before_anything_reads_them(avatar: Avatar) -> None:
    """A float caller's bug (NaN, inf, samples beyond full scale) must not reach the published audio, nor warn from
    the prosody tracker: NaN becomes silence, the rest full scale."""
    s = RenderSession(avatar, EnergyBackend(), audio_sample_rate=24_000)
    audio = np.full(2400, np.inf, np.float32)
    audio[::3], audio[1::3] = np.nan, 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frames = frames_of(s.push_audio(AudioChunk(audio, 24_000)) + s.end_segment())
    played = np.concatenate([f.audio for f in frames])
    assert len(frames) == 3 and np.isfinite(played).all() and np.abs(played).max() <= 1.0

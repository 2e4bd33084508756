"""Idle life and mouth smoothing: blink timing, determinism, states, closing in silence without lag."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from avaluma.core.errors import InvalidArgument
from avaluma.renderer.idle import BLINK_WAIT_MAX_S, IdleConfig, IdleMotion
from avaluma.renderer.lipsync.base import REST_POSE
from avaluma.renderer.smoothing import MouthSmoother

FPS = 25


def run(motion: IdleMotion, seconds: float) -> list:  # type: ignore[type-arg]
    return [motion.step() for _ in range(int(seconds * FPS))]


@pytest.mark.parametrize(("seed", "interval"), [(0, (2.0, 6.0)), (1, (2.0, 6.0)), (2, (1.0, 1.5)), (3, (4.0, 5.0))])
def test_blinks_happen_within_the_configured_interval(seed: int, interval: tuple[float, float]) -> None:
    motion = IdleMotion(IdleConfig(blink_interval_s=interval), fps=FPS, seed=seed)
    poses = run(motion, 60)
    starts = motion.blink_frames
    assert len(starts) >= 60 / interval[1] - 1
    gaps = [(b - a) / FPS for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= interval[0] - 1 / FPS and max(gaps) <= interval[1] + 0.3  # + one blink's duration
    assert starts[0] / FPS <= interval[1]
    # A blink shuts the eye (almost) fully, then opens it again.
    assert max(p.blink for p in poses) > 0.9 and poses[starts[0] + 10].blink == 0.0


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    a, b, c = (run(IdleMotion(fps=FPS, seed=s), 10) for s in (5, 5, 6))
    assert a == b
    assert a != c


def test_head_motion_is_small_and_smooth() -> None:
    poses = run(IdleMotion(fps=FPS, seed=0), 30)
    dx = np.array([p.head_dx for p in poses])
    dy = np.array([p.head_dy for p in poses])
    assert 0 < np.abs(dx).max() < 0.03 and 0 < np.abs(dy).max() < 0.03  # fractions of the face width
    assert np.abs(np.diff(dx)).max() < 0.002  # no jumps from one frame to the next


def test_states_shift_the_pose_gradually() -> None:
    motion = IdleMotion(IdleConfig(head_motion=0.0, breath_amount=0.0, blink_interval_s=(30, 30)), fps=FPS, seed=0)
    run(motion, 1)
    motion.set_state("thinking")
    poses = run(motion, 2)
    assert poses[0].head_dy > -0.005  # eased, not a jump
    assert poses[-1].head_dy < -0.01 and poses[-1].blink > 0.15  # looks up with narrowed eyes
    motion.set_state("listening")
    assert run(motion, 2)[-1].head_dy > 0.005  # leans in
    with pytest.raises(InvalidArgument, match="idle, listening, thinking"):
        motion.set_state("sleeping")


def test_disabled_idle_is_still() -> None:
    poses = run(IdleMotion(IdleConfig(enabled=False), fps=FPS, seed=0), 10)
    assert all(p.is_still for p in poses)


def test_config_rejects_a_reversed_interval() -> None:
    with pytest.raises(ValidationError, match="blink_interval_s"):
        IdleConfig(blink_interval_s=(5.0, 2.0))


def test_smoothing_follows_a_step_without_lag_and_closes_to_rest_exactly() -> None:
    smoother = MouthSmoother(fps=FPS)
    target = np.array([0.8, 0.2, 0.1, 0.0], dtype=np.float32)
    first = smoother(target)
    assert first[0] > 0.8 * 0.8  # 80 % of a jaw opening in the very first frame
    out = [smoother(REST_POSE) for _ in range(3)]
    np.testing.assert_array_equal(out[-1], REST_POSE)  # silence: exactly the rest pose within 3 frames


def test_smoothing_damps_jitter_and_never_delays_a_closure() -> None:
    smoother = MouthSmoother(fps=FPS)
    rng = np.random.default_rng(0)
    raw = np.clip(0.5 + rng.normal(0, 0.05, size=(50, 4)), 0, 1).astype(np.float32)
    out = np.stack([smoother(r) for r in raw])
    assert np.diff(out[10:, 0]).std() < 0.8 * np.diff(raw[10:, 0]).std()
    closure = np.array([0.1, 1.0, 0.0, 0.0], dtype=np.float32)
    assert smoother(closure)[1] == 1.0  # a "p" closes the lips in its own frame


def test_a_due_blink_waits_out_a_word_but_not_for_ever() -> None:
    plain = IdleMotion(IdleConfig(blink_interval_s=(2.0, 3.0)), fps=FPS, seed=4)
    run(plain, 10)
    first = plain.blink_frames[0]
    # Mid-word until 0.4 s after the plain timer's blink: the blink comes right after the word.
    held = IdleMotion(IdleConfig(blink_interval_s=(2.0, 3.0)), fps=FPS, seed=4)
    for i in range(10 * FPS):
        held.step(speaking=True, blink_ok=i >= first + 10)
    assert held.blink_frames[0] == first + 10
    # Speaking without a pause: it still comes, BLINK_WAIT_MAX_S late at most.
    talker = IdleMotion(IdleConfig(blink_interval_s=(2.0, 3.0)), fps=FPS, seed=4)
    for _ in range(10 * FPS):
        talker.step(speaking=True, blink_ok=False)
    assert talker.blink_frames[0] == first + round(BLINK_WAIT_MAX_S * FPS)
    gaps = [(b - a) / FPS for a, b in itertools.pairwise(talker.blink_frames)]
    assert max(gaps) <= 3.0 + BLINK_WAIT_MAX_S + 0.3


def test_a_pause_brings_a_nearly_due_blink_forward() -> None:
    plain = IdleMotion(IdleConfig(blink_interval_s=(2.0, 3.0)), fps=FPS, seed=4)
    run(plain, 10)
    second = plain.blink_frames[1]
    paused = IdleMotion(IdleConfig(blink_interval_s=(2.0, 3.0)), fps=FPS, seed=4)
    pause_at = second - round(0.5 * FPS)
    for i in range(10 * FPS):
        paused.step(blink_prefer=pause_at <= i < pause_at + 5)
    assert paused.blink_frames[0] == plain.blink_frames[0]  # too early in the interval: the pause changes nothing
    assert paused.blink_frames[1] == pause_at
    # The defaults are the plain timer.
    again = IdleMotion(IdleConfig(blink_interval_s=(2.0, 3.0)), fps=FPS, seed=4)
    assert [again.step(blink_ok=True, blink_prefer=False) for _ in range(10 * FPS)] == run(
        IdleMotion(IdleConfig(blink_interval_s=(2.0, 3.0)), fps=FPS, seed=4), 10
    )


def test_head_gain_scales_only_the_sway() -> None:
    config = IdleConfig(breath_amount=0.0, blink_interval_s=(30, 30))
    plain = IdleMotion(config, fps=FPS, seed=3)
    full = [plain.step() for _ in range(100)]
    motion = IdleMotion(config, fps=FPS, seed=3)
    calm = [motion.step(head_gain=0.5) for _ in range(100)]
    assert [c.head_dx for c in calm] == pytest.approx([0.5 * f.head_dx for f in full])
    assert [c.blink for c in calm] == [f.blink for f in full]

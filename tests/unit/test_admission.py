"""Admission budget: the measured cost of rendering and publishing a session, and the cores that really run in
parallel, decide the limit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from avaluma.core.errors import ResourceExhausted
from avaluma.core.live.admission import (
    PUBLISH_PER_SECOND_SHARE,
    PUBLISH_PIXEL_SHARE,
    SessionBudget,
    available_cores,
    cgroup_cpu_quota,
    measure_budget,
)
from avaluma.core.live.sessions import SessionSlots, VideoPublishing
from avaluma.renderer.engine import RenderSession
from avaluma.renderer.hvia import load_hvia
from avaluma.renderer.lipsync.energy import EnergyBackend

ROOT = Path(__file__).resolve().parents[2]


def test_limit_counts_the_whole_session_not_only_rendering() -> None:
    budget = SessionBudget(cpu_per_session=0.08, cores=2, target_utilization=0.8, fps=25, publish_cost=0.12)
    # 2 cores * 0.8 / (0.08 + 0.12) = 8; rendering alone would have claimed 20.
    assert budget.session_cost == pytest.approx(0.2)
    assert budget.max_sessions == 8
    assert "hold 8" in budget.describe() and "+12 %" in budget.describe()


def test_a_machine_too_slow_for_one_session_still_admits_one() -> None:
    budget = SessionBudget(cpu_per_session=3.0, cores=1, target_utilization=0.8, fps=25)
    assert budget.max_sessions == 1


async def test_measured_budget_counts_publishing_the_encoder_and_the_machines_parallelism() -> None:
    avatar = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")
    budget = await measure_budget(
        lambda: RenderSession(avatar, EnergyBackend(), fps=25), publishing=VideoPublishing("vp8"), cores=2
    )
    assert budget.cpu_per_session > 0 and budget.publish_cost > 0 and budget.fps == 25
    assert budget.parallelism is not None and 0 < budget.parallelism <= 2
    assert "measured, VP8 simulcast encoding included" in budget.describe()
    usable = max(1.0, min(2.0, budget.parallelism))
    assert budget.max_sessions == max(1, int(usable * 0.8 / (budget.cpu_per_session + budget.publish_cost)))


def test_cores_that_do_not_render_side_by_side_are_not_counted() -> None:
    # 8 cores, but rendering with 8 threads got only 2x one thread done (the GIL, a VM's shared cores, a quota).
    budget = SessionBudget(
        cpu_per_session=0.1, cores=8, target_utilization=0.8, fps=25, publish_cost=0.3, parallelism=2.0
    )
    assert budget.usable_cores == 2.0 and budget.max_sessions == 4  # 2 * 0.8 / 0.4, not 8 * 0.8 / 0.4 = 16
    assert "rendering 2.00x one thread with 8" in budget.describe()
    slower = SessionBudget(cpu_per_session=0.1, cores=2, target_utilization=0.8, fps=25, parallelism=0.9)
    assert slower.usable_cores == 1.0  # one core is always there


def test_a_session_costs_by_its_fps_and_published_pixels() -> None:
    budget = SessionBudget(
        cpu_per_session=0.1, cores=2, target_utilization=1.0, fps=25, publish_cost=0.9, pixels=512 * 640
    )
    assert budget.weight_of(fps=25, pixels=512 * 640) == pytest.approx(1.0)
    # Rendering stays (the avatar renders at its own size); only publishing's pixel-bound share shrinks, by the
    # square root of the pixels (scaling down reads every rendered pixel).
    quarter = budget.weight_of(fps=25, pixels=256 * 320)
    assert quarter == pytest.approx(0.1 + 0.9 * (1 - PUBLISH_PIXEL_SHARE / 2))
    assert 0.5 < quarter < 1.0
    # Audio and upkeep go on per second: half the frames cost more than half.
    half_rate = budget.weight_of(fps=12, pixels=512 * 640)
    assert half_rate == pytest.approx(
        0.1 * 12 / 25 + 0.9 * (PUBLISH_PER_SECOND_SHARE + (1 - PUBLISH_PER_SECOND_SHARE) * 12 / 25)
    )
    assert 12 / 25 < half_rate < 1.0
    assert budget.weight_of(fps=50, pixels=512 * 640) == pytest.approx(
        0.2 + 0.9 * (PUBLISH_PER_SECOND_SHARE + (1 - PUBLISH_PER_SECOND_SHARE) * 2)
    )
    # Larger than measured: the pixel-bound share grows with the pixels themselves.
    assert budget.weight_of(fps=25, pixels=1024 * 1280) == pytest.approx(1.0 + 0.9 * PUBLISH_PIXEL_SHARE * 3)


def test_slots_admit_by_weight_under_a_budget_and_by_count_without() -> None:
    slots = SessionSlots(limit=10)
    assert slots.weight(fps=50, pixels=10**7) == 1.0  # no budget: every slot counts as one
    slots.set_budget(
        SessionBudget(cpu_per_session=0.1, cores=5, target_utilization=0.5, fps=25, publish_cost=0.9, pixels=100)
    )
    assert slots.budget is not None and slots.budget.capacity == pytest.approx(2.5)
    full = [slots.take("session", slots.weight(fps=25, pixels=100)) for _ in range(2)]
    assert slots.free == 0
    with pytest.raises(ResourceExhausted, match="smaller frame"):
        slots.take("session", slots.weight(fps=25, pixels=25))
    for slot in full:
        slot.release()
    assert slots.load == 0.0 and slots.free == 2
    small = [slots.take("session", slots.weight(fps=25, pixels=25)) for _ in range(3)]  # 0.82 each
    with pytest.raises(ResourceExhausted, match=r"counts as 0\.\d+ sessions"):
        slots.take("session", slots.weight(fps=25, pixels=25))
    for slot in small:
        slot.release()
    heavy = slots.take("session", slots.weight(fps=50, pixels=400))  # alone it is still admitted
    assert heavy.weight > 2.5 and slots.free == 0
    with pytest.raises(ResourceExhausted):
        slots.take("render stream")
    heavy.release()
    slots.set_budget(None)
    assert len([slots.take("session", 1.0) for _ in range(10)]) == 10
    with pytest.raises(ResourceExhausted, match="max_sessions"):
        slots.take("session")


def test_while_the_budget_is_being_measured_one_session_runs() -> None:
    slots = SessionSlots(8)
    slots.measuring = True
    assert slots.free == 1
    first = slots.take("session")
    assert slots.free == 0
    with pytest.raises(ResourceExhausted, match="still measuring"):
        slots.take("render stream")
    slots.measuring = False  # measured (or the measurement failed): the limits apply again
    assert slots.free == 7
    slots.take("session").release()
    first.release()


def test_a_containers_cpu_limit_caps_the_cores(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")  # a Kubernetes limit of 1.5 CPUs
    assert cgroup_cpu_quota(v2) == pytest.approx(1.5)
    assert available_cores(v2) == min(2, len(os.sched_getaffinity(0)))  # part of a core counts as one
    (v2 / "cpu.max").write_text("max 100000\n")  # no limit
    assert cgroup_cpu_quota(v2) is None and available_cores(v2) == len(os.sched_getaffinity(0))
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1) == 1.0 and available_cores(v1) == 1
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # v1's "no limit"
    assert cgroup_cpu_quota(v1) is None
    assert cgroup_cpu_quota(tmp_path / "none") is None  # no cgroup files: the affinity mask alone

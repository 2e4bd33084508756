"""Admission budget: the measured render cost plus the calibrated publishing cost decides the limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from avaluma.core.live.admission import PUBLISH_COST, SessionBudget, measure_budget
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


def test_measured_budget_adds_the_calibrated_publishing_cost() -> None:
    avatar = load_hvia(ROOT / "assets" / "avatars" / "astronaut.hvia")
    budget = measure_budget(lambda: RenderSession(avatar, EnergyBackend(), fps=25), cores=2)
    assert budget.cpu_per_session > 0 and budget.publish_cost == PUBLISH_COST and budget.fps == 25
    expected = max(1, int(2 * 0.8 / (budget.cpu_per_session + PUBLISH_COST)))
    assert budget.max_sessions == expected

"""Shared fixtures. Kept small: each test module builds what it needs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

UNIT_DIR = Path(__file__).resolve().parent / "unit"


@pytest.fixture(autouse=True)
def _hermetic_unit_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Unit tests never see the developer's ``AVALUMA_*`` variables and never autoload installed plugins.

    ``AVALUMA_PLUGINS=none`` makes every ``load_plugin_manager()`` skip third-party entry points, so a unit test that
    forgets ``entry_points=False`` still only sees built-ins plus the plugins it registers itself. Integration tests
    load installed plugins on purpose and are left alone.
    """
    if Path(str(request.node.path)).resolve().is_relative_to(UNIT_DIR):
        for var in [v for v in os.environ if v.startswith("AVALUMA_")]:
            monkeypatch.delenv(var)
        monkeypatch.setenv("AVALUMA_PLUGINS", "none")
    yield

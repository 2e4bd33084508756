"""A server measures its session budget at start-up (rendering, publishing through the real LiveKit sink, the
configured codec's encoder, the cores that render side by side) and runs one session at most until it knows it.
Real server on a free port, real measurement."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import server_config

from avaluma.core.config import PublishConfig, SessionsConfig
from avaluma.core.errors import ResourceExhausted
from avaluma.core.live.avatar_store import AvatarStore
from avaluma.core.server.app import start_server
from avaluma.renderer.lipsync.energy import EnergyBackend

pytestmark = pytest.mark.integration

#: Hang guard, not a latency assertion: the measurement takes a few seconds, more on a busy CI machine.
MEASURE_TIMEOUT_S = 120.0


async def test_a_server_runs_one_session_until_it_has_measured_what_a_session_costs(avatars_dir: Path) -> None:
    config = server_config(avatars_dir).model_copy(
        update={"sessions": SessionsConfig(measure_budget=True, publish=PublishConfig(video_codec="h264"))}
    )
    running = await start_server(config, store=AvatarStore.open(avatars_dir), lipsync_backend=EnergyBackend)
    try:
        slots = running.slots
        assert slots is not None and slots.measuring and slots.budget is None
        assert slots.free == 1
        first = slots.take("session")
        assert slots.free == 0
        with pytest.raises(ResourceExhausted) as refused:
            slots.take("session")
        assert "still measuring what a session costs" in refused.value.message
        assert "start it on another server instance" in refused.value.message
        first.release()

        async def measured() -> None:
            while slots.measuring:  # noqa: ASYNC110 - a plain attribute the server's task clears
                await asyncio.sleep(0.05)

        await asyncio.wait_for(measured(), MEASURE_TIMEOUT_S)
        budget = slots.budget
        assert budget is not None, "the measurement failed: see the log"
        assert budget.cpu_per_session > 0 and budget.publish_cost > 0
        assert budget.parallelism is not None and 0 < budget.parallelism <= budget.cores
        assert "H264 simulcast encoding included" in budget.describe()  # the configured codec was measured
        assert slots.effective_limit == min(config.server.max_sessions, budget.max_sessions)
        assert slots.free == slots.effective_limit
    finally:
        await running.stop(0.5)

"""``avaluma serve`` with ``server.drain_timeout_s``: on SIGTERM it drains (nothing admitted, running sessions may
end by themselves) and, with no session left, stops at once instead of waiting out the drain deadline. The drain
itself, with sessions, is covered against a real server in test_capacity_drain.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_grpc_serve import serve_env, start_serve, stop_and_wait

pytestmark = pytest.mark.integration


async def test_sigterm_drains_then_stops_without_waiting_out_an_idle_deadline(
    avatars_dir: Path, tmp_path: Path
) -> None:
    # stop_and_wait allows the shutdown grace plus 10 s, far below this deadline: only a drain that returns as soon
    # as no session is left lets the process exit in time.
    env = serve_env(tmp_path, AVALUMA_SERVER__DRAIN_TIMEOUT_S="600")
    process, _address, _lines = await start_serve(avatars_dir, env)
    assert await stop_and_wait(process) == 0
    stderr = (await process.stderr.read()).decode() if process.stderr else ""
    assert "draining sessions before shutdown" in stderr and "drain finished" in stderr
    assert "server stopped" in stderr

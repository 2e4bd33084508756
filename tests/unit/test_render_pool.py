"""Publishing many sessions in one process: the render threads of all playouts are one shared pool of about a thread
per core (more threads only hand the GIL around and make frames late)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

from avaluma.core.live.playout import render_pool, run_in_render_pool


async def test_render_jobs_run_in_one_shared_pool_with_the_callers_context() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    marker.set("segment")
    seen: list[tuple[str, str]] = []

    def job() -> list[Any]:
        seen.append((threading.current_thread().name, marker.get()))
        return []

    await asyncio.gather(*(run_in_render_pool(job) for _ in range(8)))
    assert render_pool() is render_pool()
    assert render_pool()._max_workers >= 2
    assert all(name.startswith("avaluma-render") and value == "segment" for name, value in seen)

"""Waiting in async tests for a condition whose changes an ``asyncio.Event`` announces, with a hang guard."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def wait_until(changed: asyncio.Event, predicate: Callable[[], bool], timeout_s: float) -> None:
    """Return once ``predicate()`` holds, re-checking it each time ``changed`` is set; ``TimeoutError`` after
    ``timeout_s`` (a hang guard, not a timing assertion)."""

    async def loop() -> None:
        while not predicate():
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(loop(), timeout_s)

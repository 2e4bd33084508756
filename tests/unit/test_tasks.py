"""cancel_and_wait: an owner's tasks end before its aclose returns; their failures are swallowed unless asked."""

from __future__ import annotations

import asyncio

import pytest

from avaluma.core.tasks import cancel_and_wait


async def test_every_task_is_cancelled_and_finished() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks = [asyncio.create_task(forever()) for _ in range(3)]
    await started.wait()
    await cancel_and_wait(*tasks, None)
    assert all(task.cancelled() for task in tasks)


async def test_a_failed_task_is_swallowed_unless_errors_are_kept() -> None:
    async def fails() -> None:
        raise RuntimeError("render failed")

    swallowed = asyncio.create_task(fails())
    await asyncio.sleep(0)  # let it fail before it is cancelled
    await cancel_and_wait(swallowed)
    assert isinstance(swallowed.exception(), RuntimeError)

    kept = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="render failed"):
        await cancel_and_wait(kept, keep_errors=True)

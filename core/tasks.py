"""Ending the background tasks an owner started (STYLE.md 9: every task has an owner that cancels it in ``aclose``)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None, keep_errors: bool = False) -> None:
    """Cancel every task first, then wait for each to finish, so none outlives its owner.

    A task's own failure is swallowed too (the owner is closing and has nothing left to do with it), unless
    ``keep_errors``: then an exception the task ended with propagates, as when awaiting it directly. ``None`` entries
    are skipped.
    """
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    suppressed: tuple[type[BaseException], ...] = (
        (asyncio.CancelledError,) if keep_errors else (asyncio.CancelledError, Exception)
    )
    for task in pending:
        with contextlib.suppress(*suppressed):
            await task

"""A service's background work (firing due jobs, running replays, clean-ups): one loop for all of it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from shared.errors import is_transient

log = structlog.get_logger(__name__)


async def repeat(
    step: Callable[[], Awaitable[float | None]], stopping: asyncio.Event, *, idle_s: float, name: str
) -> None:
    """Run ``step`` until ``stopping`` is set.

    ``step`` returns how long to wait before running again (0: at once, there is more to do; None:
    ``idle_s``). A failure is logged and waited out for ``idle_s``, never fatal: a dependency that is
    down (Postgres, the broker) comes back, and the work is still there.
    """
    while not stopping.is_set():
        try:
            wait = await step()
        except Exception as error:
            if is_transient(error):
                log.warning("background_dependency_failed", work=name, error=repr(error))
            else:
                log.exception("background_failed", work=name)
            wait = None
        if wait == 0:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), idle_s if wait is None else wait)

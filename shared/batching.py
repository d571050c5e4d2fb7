"""Group commit: concurrent callers share one write instead of each paying a round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupWriter(Generic[T]):
    """Collects items from concurrent callers and writes them together.

    While one write is in flight, new items wait; when it finishes, the next write takes all of them
    (up to ``max_batch``). Under light load an item is written at once, alone; under heavy load the
    batches grow by themselves, with no timer adding latency. Each caller returns once the write that
    carried its item succeeded, or raises what that write raised.
    """

    def __init__(self, write: Callable[[Sequence[T]], Awaitable[object]], max_batch: int = 1000) -> None:
        self._write = write
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Write ``item`` with whatever else is waiting; returns once it is written."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
                try:
                    await self._write([item for item, _ in batch])
                except Exception as error:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(error)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writer = None

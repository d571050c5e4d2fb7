"""GroupWriter: concurrent callers share writes, each learns the fate of its own write."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shared.batching import GroupWriter

pytestmark = pytest.mark.unit


async def test_callers_arriving_during_a_write_share_the_next_one() -> None:
    writes: list[list[int]] = []
    first_write_started = asyncio.Event()
    release_first_write = asyncio.Event()

    async def write(items: Sequence[int]) -> None:
        writes.append(list(items))
        if len(writes) == 1:
            first_write_started.set()
            await release_first_write.wait()

    writer = GroupWriter(write)
    first = asyncio.create_task(writer.submit(0))
    await first_write_started.wait()
    later = [asyncio.create_task(writer.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)  # let them queue behind the write in flight
    release_first_write.set()
    await asyncio.gather(first, *later)
    assert writes == [[0], [1, 2, 3, 4, 5]]


async def test_batches_never_exceed_the_limit() -> None:
    writes: list[int] = []

    async def write(items: Sequence[int]) -> None:
        writes.append(len(items))
        await asyncio.sleep(0)

    writer = GroupWriter(write, max_batch=3)
    await asyncio.gather(*(writer.submit(i) for i in range(10)))
    assert sum(writes) == 10
    assert max(writes) <= 3


async def test_a_failed_write_fails_exactly_its_callers() -> None:
    async def write(items: Sequence[int]) -> None:
        if 3 in items:
            raise ConnectionError("database down")

    writer = GroupWriter(write, max_batch=2)
    results = await asyncio.gather(*(writer.submit(i) for i in range(6)), return_exceptions=True)
    failed = [i for i, result in enumerate(results) if isinstance(result, ConnectionError)]
    assert failed == [2, 3]
    assert all(result is None for i, result in enumerate(results) if i not in failed)

"""The retry service's scheduler on a real Postgres and broker: how late its jobs are, as Prometheus sees it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from services.retry.scheduler import DelayedJobScheduler
from shared.config import HeraldSettings
from shared.kafka.producer import MessageProducer
from shared.storage.database import Pool
from shared.storage.delayed_jobs import DelayedJobStore
from shared.topics import Topics
from tests.conftest import ENCRYPTOR
from tests.integration.test_storage import job

pytestmark = pytest.mark.integration

LATE_BY_S = 120


def overdue_s() -> float:
    value = REGISTRY.get_sample_value("herald_delayed_jobs_overdue_seconds")
    assert value is not None, "the retry service exports herald_delayed_jobs_overdue_seconds"
    return value


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_jobs_the_scheduler_cannot_fire_show_as_overdue_until_they_fire(
    db_pool: Pool, settings: HeraldSettings
) -> None:
    store = DelayedJobStore(db_pool, ENCRYPTOR)
    await store.add(
        [job(datetime.now(UTC) - timedelta(seconds=LATE_BY_S), topic=Topics(settings.topic_prefix).send("email"))]
    )
    # Not started yet: every produce fails, as when the broker is away.
    producer = MessageProducer(settings, client_id="test-scheduler")
    scheduler = DelayedJobScheduler(store, producer, batch_size=10, max_idle_s=0.05)
    stopping = asyncio.Event()
    running = asyncio.create_task(scheduler.run(stopping))
    try:
        await wait_for(lambda: overdue_s() >= LATE_BY_S, "a job that cannot be fired shows as overdue")
        await producer.start()
        await wait_for(lambda: overdue_s() == 0, "once the job fires nothing is overdue")
        assert await store.next_due_at() is None
    finally:
        stopping.set()
        await running
        await producer.stop()

"""Firing delayed jobs when they fall due: produce each to its target topic, then forget it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from services.retry.store import DelayedJobStore, DueJob
from shared.errors import is_transient
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Consumed, Output, Produce
from shared.messages import DelayedMessage
from shared.observability import metrics

log = structlog.get_logger(__name__)


class DelayedJobIntake:
    """The consumer loop's handler: store each delayed message durably (the offset commits after)."""

    def __init__(self, store: DelayedJobStore) -> None:
        self._store = store

    async def __call__(self, batch: Sequence[Consumed[DelayedMessage]]) -> list[Output]:
        await self._store.add([message.value for message in batch])
        return []


class DelayedJobScheduler:
    """Fires due jobs; several replicas may run it at once, the store never gives a job to two."""

    def __init__(self, store: DelayedJobStore, producer: MessageProducer, batch_size: int, max_idle_s: float):
        self._store = store
        self._producer = producer
        self._batch_size = batch_size
        self._max_idle_s = max_idle_s

    async def run(self, stopping: asyncio.Event) -> None:
        """Fire due jobs until ``stopping`` is set; a dependency failure is waited out, never fatal."""
        while not stopping.is_set():
            try:
                fired = await self.fire_due()
                if fired == self._batch_size:
                    continue
                idle = await self._idle_time()
            except Exception as error:
                if not is_transient(error):
                    log.exception("scheduler_failed")
                else:
                    log.warning("scheduler_dependency_failed", error=repr(error))
                idle = self._max_idle_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), idle)

    async def fire_due(self) -> int:
        """Fire one batch of due jobs; returns how many fired."""
        fired = await self._store.claim_due(datetime.now(UTC), self._batch_size, self._produce)
        metrics.DELAYED_JOBS_FIRED.inc(fired)
        return fired

    async def _produce(self, jobs: list[DueJob]) -> None:
        await self._producer.produce(
            Produce(job.target_topic, job.payload, key=job.key, headers=tuple(job.headers.items())) for job in jobs
        )

    async def _idle_time(self) -> float:
        next_due = await self._store.next_due_at()
        if next_due is None:
            return self._max_idle_s
        return min(self._max_idle_s, max(0.0, (next_due - datetime.now(UTC)).total_seconds()))

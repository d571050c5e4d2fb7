"""Firing delayed jobs when they fall due: produce each to its target topic, then forget it (or, for a
recurring series, move it to its next time)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog

from services.retry.recurrence import occurrence
from shared.background import repeat
from shared.kafka.producer import MessageProducer
from shared.kafka.records import SIGNATURE, TRACEPARENT, Consumed, Output, Produce
from shared.messages import DelayedMessage
from shared.observability import metrics, tracing
from shared.producer_keys import ProducerKey
from shared.storage.delayed_jobs import DelayedJobStore, DueJob

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

    def __init__(
        self,
        store: DelayedJobStore,
        producer: MessageProducer,
        batch_size: int,
        max_idle_s: float,
        signing_key: bytes | None = None,
    ):
        self._store = store
        self._producer = producer
        self._batch_size = batch_size
        self._max_idle_s = max_idle_s
        # The producer keys' master key: an occurrence is a new request, signed as Herald's own for ingest.
        self._signing_key = signing_key
        # When the earliest waiting job is due, as last read: overdue time is measured at scrape time from it,
        # so it keeps growing while the store cannot be read or the loop is stuck.
        self._earliest_due: datetime | None = None
        metrics.DELAYED_JOBS_OVERDUE.set_function(self.overdue_s)

    async def run(self, stopping: asyncio.Event) -> None:
        """Fire due jobs until ``stopping`` is set; a dependency failure is waited out, never fatal."""

        async def step() -> float:
            try:
                fired = await self.fire_due()
            finally:
                # Read when firing failed too: jobs a broker outage holds back are late, and the gauge says so.
                self._earliest_due = await self._store.next_due_at()
            return 0 if fired == self._batch_size else self._idle_time()

        await repeat(step, stopping, idle_s=self._max_idle_s, name="scheduler")

    def overdue_s(self) -> float:
        """How long the earliest job has been due and not fired, as last read (0 when none is late)."""
        if self._earliest_due is None:
            return 0.0
        return max(0.0, (datetime.now(UTC) - self._earliest_due).total_seconds())

    async def fire_due(self) -> int:
        """Fire one batch of due jobs; returns how many fired."""
        fired = await self._store.claim_due(datetime.now(UTC), self._batch_size, self._produce)
        metrics.DELAYED_JOBS_FIRED.inc(fired)
        return fired

    async def _produce(self, jobs: list[DueJob]) -> dict[str, datetime]:
        """Produce every job (a recurring one as its occurrence); the next due time of those that recur."""
        now = datetime.now(UTC)
        records: list[Produce] = []
        again: dict[str, datetime] = {}
        for job in jobs:
            payload, headers = job.payload, dict(job.headers)
            if job.recurring:
                try:
                    payload, tenant_id, next_due = occurrence(job.payload, job.due_at, now)
                except Exception:
                    # A series that cannot be read would fail every claim and stall the others: drop it.
                    log.exception("recurring_job_unreadable", job_id=job.job_id)
                    continue
                if next_due is not None:
                    again[job.job_id] = next_due
                headers.pop(SIGNATURE, None)
                signer = ProducerKey.internal(self._signing_key, tenant_id)
                if signer is not None:
                    headers[SIGNATURE] = signer.sign(payload)
            if TRACEPARENT in headers:
                # Fired in the trace of the message that made the job, from a span of this service.
                headers[TRACEPARENT] = tracing.sent_on(headers[TRACEPARENT], job.target_topic)
            records.append(Produce(job.target_topic, payload, key=job.key, headers=tuple(headers.items())))
        await self._producer.produce(records)
        return again

    def _idle_time(self) -> float:
        if self._earliest_due is None:
            return self._max_idle_s
        return min(self._max_idle_s, max(0.0, (self._earliest_due - datetime.now(UTC)).total_seconds()))

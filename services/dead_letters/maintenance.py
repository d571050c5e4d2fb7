"""The dead-letters service's background task: expire old entries and export the DLQ's size."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog

from shared.background import repeat
from shared.errors import DeadLetterReason
from shared.observability import metrics
from shared.storage.dead_letters import DeadLetterFilter, DeadLetterRepository

log = structlog.get_logger(__name__)

# Rows per DELETE: short statements, so the API's reads and writes are never held up for long.
EXPIRE_BATCH = 5000


class DeadLetterMaintenance:
    """Every ``interval_s``: delete dead letters older than ``retention``, then refresh ``herald_dead_letters_stored``.

    Every replica runs it; concurrent deletes skip each other's rows, so that is safe and cheap.
    """

    def __init__(self, repository: DeadLetterRepository, *, retention: timedelta, interval_s: float) -> None:
        self._repository = repository
        self._retention = retention
        self._interval_s = interval_s
        # Every known reason reports, 0 when there is none: an absent series is harder to alert on.
        self._reported = {reason.value for reason in DeadLetterReason}

    async def expire(self, now: datetime | None = None, stopping: asyncio.Event | None = None) -> int:
        """Delete the dead letters dead-lettered before ``now`` minus the retention; returns how many."""
        cutoff = (now or datetime.now(UTC)) - self._retention
        expired = DeadLetterFilter(tenant_id=None, created_before=cutoff, live=None)
        deleted = await self._repository.purge(expired, EXPIRE_BATCH, stopping)
        if deleted:
            metrics.DEAD_LETTERS_EXPIRED.inc(deleted)
            log.info("dead_letters_expired", deleted=deleted, cutoff=cutoff.isoformat())
        return deleted

    async def refresh_size(self) -> dict[str, int]:
        """Set ``herald_dead_letters_stored`` per reason from the table; returns the counts."""
        counts = await self._repository.count_by_reason()
        self._reported |= counts.keys()
        for reason in self._reported:
            metrics.DEAD_LETTERS_STORED.labels(reason=reason).set(counts.get(reason, 0))
        return counts

    async def run(self, stopping: asyncio.Event) -> None:
        """Expire and refresh every ``interval_s`` until ``stopping`` is set."""

        async def step() -> None:
            await self.expire(stopping=stopping)
            await self.refresh_size()

        # Postgres may be down: the consumer loop waits that out, this tries again next round.
        await repeat(step, stopping, idle_s=self._interval_s, name="dead_letter_maintenance")

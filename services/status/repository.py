"""The status store: every status event, and each notification's current status, moved only forward."""

from __future__ import annotations

from collections.abc import Sequence

from shared.messages import StatusEvent
from shared.status import TERMINAL, rank
from shared.storage.database import Pool

# True when the incoming status may replace the stored one; the same rule as shared.status.advances.
_ADVANCES = "(NOT n.status = ANY($13::text[]) AND excluded.status_rank > n.status_rank)"

# One statement for the whole batch. The events are unnested from parallel arrays and inserted once
# each; only the events new to the store move notifications. Per notification, the batch's
# highest-ranked event is its candidate status (ties go to the earliest), applied only if it advances.
_APPLY = f"""
WITH incoming AS (
    SELECT *
    FROM unnest(
        $1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::smallint[], $6::timestamptz[],
        $7::text[], $8::text[], $9::int[], $10::text[], $11::text[], $12::text[]
    ) AS e(event_id, notification_id, tenant_id, status, status_rank, occurred_at,
           service, channel, attempt, provider, reason, detail)
),
inserted AS (
    INSERT INTO notification_events (event_id, notification_id, tenant_id, status, occurred_at,
                                     service, channel, attempt, provider, reason, detail)
    SELECT event_id, notification_id, tenant_id, status, occurred_at,
           service, channel, attempt, provider, reason, detail
    FROM incoming
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
),
fresh AS (
    SELECT DISTINCT ON (event_id) incoming.*
    FROM incoming JOIN inserted USING (event_id)
    ORDER BY event_id
),
winner AS (
    SELECT DISTINCT ON (notification_id) notification_id, tenant_id, status, status_rank, reason, detail
    FROM fresh
    ORDER BY notification_id, status_rank DESC, occurred_at, event_id
),
summary AS (
    SELECT notification_id,
           min(occurred_at) AS first_at,
           max(occurred_at) AS last_at,
           coalesce(max(attempt), 0) AS attempts,
           (array_agg(channel ORDER BY occurred_at DESC) FILTER (WHERE channel IS NOT NULL))[1] AS channel
    FROM fresh
    GROUP BY notification_id
)
INSERT INTO notifications AS n (id, tenant_id, status, status_rank, channel, attempts,
                                last_reason, last_detail, created_at, updated_at)
SELECT w.notification_id, w.tenant_id, w.status, w.status_rank, s.channel, s.attempts,
       w.reason, w.detail, s.first_at, s.last_at
FROM winner AS w JOIN summary AS s USING (notification_id)
ORDER BY w.notification_id
ON CONFLICT (id) DO UPDATE SET
    status = CASE WHEN {_ADVANCES} THEN excluded.status ELSE n.status END,
    status_rank = CASE WHEN {_ADVANCES} THEN excluded.status_rank ELSE n.status_rank END,
    last_reason = CASE WHEN {_ADVANCES} THEN excluded.last_reason ELSE n.last_reason END,
    last_detail = CASE WHEN {_ADVANCES} THEN excluded.last_detail ELSE n.last_detail END,
    channel = coalesce(excluded.channel, n.channel),
    attempts = greatest(n.attempts, excluded.attempts),
    created_at = least(n.created_at, excluded.created_at),
    updated_at = greatest(n.updated_at, excluded.updated_at)
WHERE n.tenant_id = excluded.tenant_id
"""


class StatusRepository:
    """Writes status events and keeps each notification's status monotonic."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def apply(self, events: Sequence[StatusEvent]) -> None:
        """Store ``events`` (redeliveries once) and advance their notifications, in one transaction.

        Raises ValueError, before touching the database, if an event's status is not in
        ``shared.status``; callers validate events first so one bad event cannot sink a batch.
        """
        if not events:
            return
        ranks = [rank(event["status"]) for event in events]
        # One statement, hence one transaction: events and notifications commit together or not at all.
        await self._pool.execute(
            _APPLY,
            [event["event_id"] for event in events],
            [event["notification_id"] for event in events],
            [event["tenant_id"] for event in events],
            [event["status"] for event in events],
            ranks,
            [event["occurred_at"] for event in events],
            [event["service"] for event in events],
            [event["channel"] for event in events],
            [event["attempt"] for event in events],
            [event["provider"] for event in events],
            [event["reason"] for event in events],
            [event["detail"] for event in events],
            sorted(TERMINAL),
        )

"""The status store: every status event, and each notification's current status, moved only forward."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.crypto import Encryptor
from shared.messages import StatusEvent
from shared.status import ENGAGEMENT, FINAL, REACHED, REQUEUED, ROUTED, SCHEDULED, rank
from shared.storage.database import Pool
from shared.storage.notifications import EVENT_DETAIL
from shared.storage.webhook_endpoints import PooledConnection


def _advances(row: str) -> str:
    """SQL: the incoming (``excluded``) status may replace ``row``'s; the rule of shared.status.advances."""
    reached_only_engagement = f"(NOT {row}.status = ANY($19::text[]) OR excluded.status = ANY($20::text[]))"
    movable = f"NOT {row}.status = ANY($15::text[]) AND {reached_only_engagement}"
    # A requeue re-opens a failure, for itself and for what the same batch says happened after it (its
    # attempt's `sent` may share the batch, and then outranks it as the batch's candidate).
    requeued_after_failure = f"({row}.status = ANY($15::text[]) AND {row}.id IN (SELECT id FROM reopened))"
    return f"({requeued_after_failure} OR ({movable} AND excluded.status_rank > {row}.status_rank))"


# One statement for the whole batch, hence one transaction. The events are unnested from parallel
# arrays and inserted once each; only the events new to the store move anything. Details arrive sealed
# (shared.storage.notifications) and are copied as they are to deliveries and notifications.
#
# Senders' events name a delivery. Each delivery's status moves forward on its own (``deliveries``),
# and the notification follows its deliveries: the best of those not failed (sent beats retrying),
# or ``failed`` once as many deliveries failed as the notification has. A delivery failure short of
# that reads as ``routed``: one dead device token must not fail a push another device received.
# The other events (accepted, routed, rejected, engagement) are the notification's own candidates.
# Per notification the highest-ranked candidate wins, applied only if it advances.
_APPLY = f"""
WITH incoming AS (
    SELECT *
    FROM unnest(
        $1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::smallint[], $6::timestamptz[],
        $7::text[], $8::text[], $9::int[], $10::text[], $11::text[], $12::bytea[], $13::uuid[], $14::int[]
    ) AS e(event_id, notification_id, tenant_id, status, status_rank, occurred_at,
           service, channel, attempt, provider, reason, detail_sealed, delivery_id, deliveries)
),
inserted AS (
    INSERT INTO notification_events (event_id, notification_id, tenant_id, status, occurred_at,
                                     service, channel, attempt, provider, reason, detail_sealed, delivery_id)
    SELECT event_id, notification_id, tenant_id, status, occurred_at,
           service, channel, attempt, provider, reason, detail_sealed, delivery_id
    FROM incoming
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
),
fresh AS (
    SELECT DISTINCT ON (event_id) incoming.*
    FROM incoming JOIN inserted USING (event_id)
    ORDER BY event_id
),
reopened AS (
    SELECT delivery_id AS id FROM fresh WHERE status = $21 AND delivery_id IS NOT NULL
    UNION
    SELECT notification_id FROM fresh WHERE status = $21
),
delivery_winner AS (
    SELECT DISTINCT ON (delivery_id) delivery_id, notification_id, tenant_id, channel, status, status_rank,
                                     provider, reason, detail_sealed
    FROM fresh
    WHERE delivery_id IS NOT NULL
    ORDER BY delivery_id, status_rank DESC, occurred_at, event_id
),
delivery_summary AS (
    SELECT delivery_id, min(occurred_at) AS first_at, max(occurred_at) AS last_at,
           coalesce(max(attempt), 0) AS attempts
    FROM fresh
    WHERE delivery_id IS NOT NULL
    GROUP BY delivery_id
),
upserted AS (
    INSERT INTO deliveries AS d (id, notification_id, tenant_id, channel, status, status_rank, attempts,
                                 provider, last_reason, last_detail_sealed, created_at, updated_at)
    SELECT w.delivery_id, w.notification_id, w.tenant_id, w.channel, w.status, w.status_rank, s.attempts,
           w.provider, w.reason, w.detail_sealed, s.first_at, s.last_at
    FROM delivery_winner AS w JOIN delivery_summary AS s USING (delivery_id)
    ORDER BY w.delivery_id
    ON CONFLICT (id) DO UPDATE SET
        status = CASE WHEN {_advances("d")} THEN excluded.status ELSE d.status END,
        status_rank = CASE WHEN {_advances("d")} THEN excluded.status_rank ELSE d.status_rank END,
        provider = CASE WHEN {_advances("d")} THEN excluded.provider ELSE d.provider END,
        last_reason = CASE WHEN {_advances("d")} THEN excluded.last_reason ELSE d.last_reason END,
        -- The detail in clear from before migration 0022 goes with the status it explained.
        last_detail = CASE WHEN {_advances("d")} THEN NULL ELSE d.last_detail END,
        last_detail_sealed = CASE WHEN {_advances("d")} THEN excluded.last_detail_sealed ELSE d.last_detail_sealed END,
        attempts = greatest(d.attempts, excluded.attempts),
        created_at = least(d.created_at, excluded.created_at),
        updated_at = greatest(d.updated_at, excluded.updated_at)
    WHERE d.tenant_id = excluded.tenant_id
    RETURNING d.id, d.notification_id, d.tenant_id, d.status, d.status_rank, d.last_reason, d.last_detail,
              d.last_detail_sealed, d.updated_at
),
-- Every delivery of the notifications this batch touched, as it stands after the batch (a statement
-- does not see its own writes: the rows it changed come from RETURNING, the others from the table).
current_deliveries AS (
    SELECT * FROM upserted
    UNION ALL
    SELECT d.id, d.notification_id, d.tenant_id, d.status, d.status_rank, d.last_reason, d.last_detail,
           d.last_detail_sealed, d.updated_at
    FROM deliveries AS d
    WHERE d.notification_id IN (SELECT notification_id FROM delivery_winner)
      AND d.id NOT IN (SELECT id FROM upserted)
),
expected AS (
    SELECT fresh.notification_id, greatest(max(fresh.deliveries), max(n.deliveries)) AS deliveries
    FROM fresh LEFT JOIN notifications AS n ON n.id = fresh.notification_id
    GROUP BY fresh.notification_id
),
delivery_best AS (
    SELECT DISTINCT ON (notification_id) notification_id, tenant_id, status, status_rank, last_reason,
                                         last_detail, last_detail_sealed, updated_at,
                                         status = ANY($16::text[]) AS failure
    FROM current_deliveries
    ORDER BY notification_id, status = ANY($16::text[]), status_rank DESC, updated_at DESC
),
delivery_failures AS (
    SELECT notification_id, count(*) FILTER (WHERE status = ANY($16::text[])) AS failed
    FROM current_deliveries
    GROUP BY notification_id
),
candidates AS (
    SELECT notification_id, tenant_id, status, status_rank, reason, NULL::text AS detail, detail_sealed, occurred_at,
           event_id::text AS tiebreak
    FROM fresh
    WHERE delivery_id IS NULL
    UNION ALL
    SELECT b.notification_id, b.tenant_id,
           CASE WHEN b.failure AND f.failed < coalesce(x.deliveries, 1) THEN $17 ELSE b.status END,
           CASE WHEN b.failure AND f.failed < coalesce(x.deliveries, 1) THEN $18 ELSE b.status_rank END,
           b.last_reason, b.last_detail, b.last_detail_sealed, b.updated_at, ''
    FROM delivery_best AS b
    JOIN delivery_failures AS f USING (notification_id)
    LEFT JOIN expected AS x USING (notification_id)
),
winner AS (
    SELECT DISTINCT ON (notification_id) notification_id, tenant_id, status, status_rank, reason, detail,
                                         detail_sealed
    FROM candidates
    ORDER BY notification_id, status_rank DESC, occurred_at, tiebreak
),
summary AS (
    SELECT notification_id,
           min(occurred_at) AS first_at,
           max(occurred_at) AS last_at,
           coalesce(max(attempt), 0) AS attempts,
           max(deliveries) AS deliveries,
           (array_agg(channel ORDER BY occurred_at DESC) FILTER (WHERE channel IS NOT NULL))[1] AS channel
    FROM fresh
    GROUP BY notification_id
),
-- The statuses before this statement (it sees the table as it was), of the notifications of the tenants
-- with webhook endpoints ($22), so the caller can tell which changed.
before AS (
    SELECT id, status, status_rank FROM notifications
    WHERE id IN (SELECT notification_id FROM fresh WHERE tenant_id = ANY($22::text[]))
),
applied AS (
INSERT INTO notifications AS n (id, tenant_id, status, status_rank, channel, attempts, deliveries,
                                last_reason, last_detail, last_detail_sealed, created_at, updated_at)
SELECT w.notification_id, w.tenant_id, w.status, w.status_rank, s.channel, s.attempts, s.deliveries,
       w.reason, w.detail, w.detail_sealed, s.first_at, s.last_at
FROM winner AS w JOIN summary AS s USING (notification_id)
ORDER BY w.notification_id
ON CONFLICT (id) DO UPDATE SET
    status = CASE WHEN {_advances("n")} THEN excluded.status ELSE n.status END,
    status_rank = CASE WHEN {_advances("n")} THEN excluded.status_rank ELSE n.status_rank END,
    last_reason = CASE WHEN {_advances("n")} THEN excluded.last_reason ELSE n.last_reason END,
    last_detail = CASE WHEN {_advances("n")} THEN excluded.last_detail ELSE n.last_detail END,
    last_detail_sealed = CASE WHEN {_advances("n")} THEN excluded.last_detail_sealed ELSE n.last_detail_sealed END,
    channel = coalesce(excluded.channel, n.channel),
    attempts = greatest(n.attempts, excluded.attempts),
    deliveries = greatest(n.deliveries, excluded.deliveries),
    created_at = least(n.created_at, excluded.created_at),
    updated_at = greatest(n.updated_at, excluded.updated_at)
WHERE n.tenant_id = excluded.tenant_id
RETURNING n.id, n.status, n.status_rank
)
-- The new events of each watched notification whose status changed, with its status before and after.
SELECT f.event_id::text, f.notification_id::text, f.tenant_id, f.status, f.status_rank, f.occurred_at,
       f.channel, f.reason, coalesce(b.status_rank, 0) AS before_rank, a.status AS after,
       a.status_rank AS after_rank
FROM fresh AS f
JOIN applied AS a ON a.id = f.notification_id
LEFT JOIN before AS b ON b.id = f.notification_id
WHERE f.tenant_id = ANY($22::text[]) AND a.status IS DISTINCT FROM b.status
ORDER BY f.occurred_at, f.event_id
"""


@dataclass(frozen=True)
class Change:
    """A new event of a notification whose status its batch changed, with the status before and after."""

    event_id: str
    notification_id: str
    tenant_id: str
    status: str
    status_rank: int
    occurred_at: datetime
    channel: str | None
    reason: str | None
    before_rank: int
    after: str
    after_rank: int

    @property
    def is_step(self) -> bool:
        """The event is a step of the change: the new status, or one passed on the way to it (a batch may
        hold a notification's ``sent`` and ``delivered``); not one that lost (a late ``sent``)."""
        return self.status == self.after or self.before_rank < self.status_rank < self.after_rank


# Called in the transaction that stores a batch, with the changes of the watched tenants' notifications.
OnChanges = Callable[[PooledConnection, Sequence[Change]], Awaitable[None]]


class StatusRepository:
    """Writes status events and keeps each notification's status monotonic; details are stored sealed."""

    def __init__(self, pool: Pool, encryptor: Encryptor) -> None:
        self._pool = pool
        self._encryptor = encryptor

    async def apply(
        self, events: Sequence[StatusEvent], *, watched: Collection[str] = (), on_changes: OnChanges | None = None
    ) -> None:
        """Store ``events`` (redeliveries once) and advance their notifications, in one transaction.

        ``on_changes`` gets, in that transaction, the new events of the notifications of ``watched``
        tenants whose status changed (none for a redelivered batch).

        Raises ValueError, before touching the database, if an event's status is not in
        ``shared.status``; callers validate events first so one bad event cannot sink a batch.
        """
        if not events:
            return
        arguments = self._arguments(events, watched)
        if on_changes is None or not watched:
            # One statement, hence one transaction: events and notifications commit together or not at all.
            await self._pool.execute(_APPLY, *arguments)
            return
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(_APPLY, *arguments)
            if rows:
                await on_changes(connection, [Change(**dict(row)) for row in rows])

    def _arguments(self, events: Sequence[StatusEvent], watched: Collection[str]) -> list[object]:
        ranks = [rank(event["status"]) for event in events]
        return [
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
            [EVENT_DETAIL.seal_text(self._encryptor, event["detail"], event["tenant_id"]) for event in events],
            [event.get("delivery_id") for event in events],
            [event.get("deliveries") for event in events],
            sorted(FINAL),
            sorted(FINAL),
            ROUTED,
            rank(ROUTED),
            sorted(REACHED),
            sorted(ENGAGEMENT),
            REQUEUED,
            sorted(watched),
        ]

    async def accepted_at(self, notification_ids: Collection[str]) -> dict[str, datetime]:
        """When each of these notifications was accepted, for those not scheduled (whose clock starts when
        they fall due, which the store does not keep)."""
        rows = await self._pool.fetch(
            """
            SELECT n.id::text, n.created_at FROM notifications AS n
            WHERE n.id = ANY($1::uuid[])
              AND NOT EXISTS (SELECT 1 FROM notification_events AS e WHERE e.notification_id = n.id AND e.status = $2)
            """,
            list(notification_ids),
            SCHEDULED,
        )
        return {row["id"]: row["created_at"] for row in rows}

    async def record_duplicates(self, events: Sequence[StatusEvent]) -> None:
        """Count ``duplicate`` events against their notifications; a redelivered event counts once.

        Kept apart from :meth:`apply`: a duplicate moves no status and may arrive before its
        notification's first event (a repeat keyed to another partition), so it is never lost.
        """
        if not events:
            return
        await self._pool.execute(
            """
            INSERT INTO notification_duplicates (event_id, notification_id, tenant_id, occurred_at)
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[])
            ON CONFLICT (event_id) DO NOTHING
            """,
            [event["event_id"] for event in events],
            [event["notification_id"] for event in events],
            [event["tenant_id"] for event in events],
            [event["occurred_at"] for event in events],
        )

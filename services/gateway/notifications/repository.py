"""The gateway's own Postgres access for notifications: recording accepted ones, and the read API's views."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from shared.crypto import Encryptor
from shared.status import ACCEPTED, rank
from shared.storage.database import Pool
from shared.storage.notifications import DELIVERY_DETAIL, EVENT_DETAIL, IDEMPOTENCY_KEY, NOTIFICATION_DETAIL
from shared.storage.pagination import CREATED_AFTER, CREATED_BEFORE, PageCursor, SqlFilter, newest_first, sql


@dataclass(frozen=True)
class EventView:
    """One status event of a notification, as the read API shows it."""

    event_id: str
    status: str
    occurred_at: datetime
    service: str
    channel: str | None
    attempt: int | None
    provider: str | None
    reason: str | None
    detail: str | None
    delivery_id: str | None


@dataclass(frozen=True)
class DeliveryView:
    """One delivery of a notification (one per push device, else one): its own status and attempts."""

    id: str
    channel: str | None
    status: str
    attempts: int
    provider: str | None
    last_reason: str | None
    last_detail: str | None
    updated_at: datetime


@dataclass(frozen=True)
class NotificationView:
    """A notification's current status and its history, oldest event first."""

    id: str
    tenant_id: str
    status: str
    channel: str | None
    attempts: int
    last_reason: str | None
    last_detail: str | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    events: tuple[EventView, ...]
    deliveries: tuple[DeliveryView, ...]
    # Repeats of its idempotency key that ingest dropped.
    duplicates: int = 0


@dataclass(frozen=True)
class AcceptedNotification:
    """A notification the gateway just made durable in Kafka."""

    notification_id: str
    tenant_id: str
    idempotency_key: str | None
    created_at: datetime
    # What the listing filters on: RecipientIndex.of its person (shared.storage.recipient_index), its metadata.type.
    recipient_hash: bytes | None = None
    message_type: str | None = None
    # The stored template it names (content.template.id), if any.
    template_id: str | None = None


@dataclass(frozen=True)
class NotificationSummary:
    """A notification as the listing shows it."""

    id: str
    status: str
    channel: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class NotificationFilter(SqlFilter):
    """Which of a tenant's notifications a listing shows; None (or no statuses) matches anything."""

    tenant_id: str
    statuses: tuple[str, ...] = field(default=(), metadata=sql("status = ANY({}::text[])"))
    channel: str | None = None
    # Any of them: the keyed hash and the legacy unkeyed one (shared.storage.recipient_index).
    recipient_hashes: tuple[bytes, ...] = field(default=(), metadata=sql("recipient_hash = ANY({}::bytea[])"))
    message_type: str | None = None
    template_id: str | None = None
    created_after: datetime | None = field(default=None, metadata=CREATED_AFTER)
    created_before: datetime | None = field(default=None, metadata=CREATED_BEFORE)


class NotificationRepository:
    """Records accepted notifications and reads them back for their tenant; the idempotency key and the
    providers' details are sealed (shared.storage.notifications)."""

    def __init__(self, pool: Pool, encryptor: Encryptor) -> None:
        self._pool = pool
        self._encryptor = encryptor

    async def record_accepted(self, notifications: Sequence[AcceptedNotification]) -> int:
        """Store new notifications as ``accepted`` in one statement; returns how many were new.

        A row the status service created first (its events can overtake this write) keeps its status
        and gets only what events do not carry: the idempotency key and the listing's filter columns.
        """
        inserted = await self._pool.fetchval(
            """
            WITH new AS (
                INSERT INTO notifications AS n (id, tenant_id, status, status_rank, channel, idempotency_key_sealed,
                                                recipient_hash, message_type, template_id, created_at, updated_at)
                -- One row per id: ON CONFLICT DO UPDATE may not touch a row twice in a statement.
                SELECT DISTINCT ON (id) id, tenant_id, $8, $9, NULL, idempotency_key_sealed, recipient_hash,
                       message_type, template_id, created_at, created_at
                FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::bytea[], $5::text[], $6::text[], $7::timestamptz[])
                    AS a(id, tenant_id, idempotency_key_sealed, recipient_hash, message_type, template_id, created_at)
                ON CONFLICT (id) DO UPDATE SET
                    idempotency_key_sealed = coalesce(n.idempotency_key_sealed, excluded.idempotency_key_sealed),
                    recipient_hash = coalesce(n.recipient_hash, excluded.recipient_hash),
                    message_type = coalesce(n.message_type, excluded.message_type),
                    template_id = coalesce(n.template_id, excluded.template_id)
                WHERE n.tenant_id = excluded.tenant_id
                  AND (n.idempotency_key_sealed IS NULL AND excluded.idempotency_key_sealed IS NOT NULL
                       OR n.recipient_hash IS NULL AND excluded.recipient_hash IS NOT NULL
                       OR n.message_type IS NULL AND excluded.message_type IS NOT NULL
                       OR n.template_id IS NULL AND excluded.template_id IS NOT NULL)
                -- xmax is 0 on a freshly inserted row version, not on an updated one.
                RETURNING xmax = 0 AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted) FROM new
            """,
            [n.notification_id for n in notifications],
            [n.tenant_id for n in notifications],
            [IDEMPOTENCY_KEY.seal_text(self._encryptor, n.idempotency_key, n.tenant_id) for n in notifications],
            [n.recipient_hash for n in notifications],
            [n.message_type for n in notifications],
            [n.template_id for n in notifications],
            [n.created_at for n in notifications],
            ACCEPTED,
            rank(ACCEPTED),
        )
        return int(inserted)

    async def page(
        self, where: NotificationFilter, limit: int, after: PageCursor | None = None
    ) -> list[NotificationSummary]:
        """Up to ``limit`` of the tenant's matching notifications, newest first, starting after ``after``."""
        rows = await newest_first(
            self._pool,
            columns="id::text, status, channel, attempts, created_at, updated_at",
            table="notifications",
            where=where,
            limit=limit,
            after=after,
        )
        return [NotificationSummary(*row.values()) for row in rows]

    async def get(self, tenant_id: str, notification_id: str) -> NotificationView | None:
        """The notification and its events, or None if it does not exist or belongs to another tenant."""
        try:
            key = uuid.UUID(notification_id)
        except ValueError:
            return None
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(
                f"""
                SELECT id, tenant_id, status, channel, attempts, last_reason, {NOTIFICATION_DETAIL.selected()},
                       {IDEMPOTENCY_KEY.selected()}, created_at, updated_at,
                       (SELECT count(*) FROM notification_duplicates AS d
                        WHERE d.notification_id = n.id AND d.tenant_id = n.tenant_id) AS duplicates
                FROM notifications AS n
                WHERE id = $1 AND tenant_id = $2
                """,
                key,
                tenant_id,
            )
            if row is None:
                return None
            events = await connection.fetch(
                f"""
                SELECT event_id::text, status, occurred_at, service, channel, attempt, provider, reason,
                       {EVENT_DETAIL.selected()}, delivery_id::text
                FROM notification_events
                WHERE notification_id = $1 AND tenant_id = $2
                ORDER BY occurred_at, id
                """,
                key,
                tenant_id,
            )
            deliveries = await connection.fetch(
                f"""
                SELECT id::text, channel, status, attempts, provider, last_reason, {DELIVERY_DETAIL.selected()},
                       updated_at
                FROM deliveries
                WHERE notification_id = $1 AND tenant_id = $2
                ORDER BY created_at, id
                """,
                key,
                tenant_id,
            )
        return NotificationView(
            id=str(row["id"]),
            tenant_id=row["tenant_id"],
            status=row["status"],
            channel=row["channel"],
            attempts=row["attempts"],
            last_reason=row["last_reason"],
            last_detail=NOTIFICATION_DETAIL.read_text(self._encryptor, row, tenant_id),
            idempotency_key=IDEMPOTENCY_KEY.read_text(self._encryptor, row, tenant_id),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            events=tuple(EventView(**EVENT_DETAIL.opened_row(self._encryptor, e, tenant_id)) for e in events),
            deliveries=tuple(
                DeliveryView(**DELIVERY_DETAIL.opened_row(self._encryptor, d, tenant_id)) for d in deliveries
            ),
            duplicates=row["duplicates"],
        )

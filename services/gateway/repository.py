"""The gateway's Postgres access: accepted notifications, the read API's views, tenants and API keys."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.status import ACCEPTED, rank
from shared.storage.database import Pool

# The prefix is stored in clear so an operator can tell keys apart without seeing the secret.
KEY_PREFIX_LENGTH = 12


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


class NotificationRepository:
    """Records accepted notifications and reads them back for their tenant."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def record_accepted(self, notifications: Sequence[AcceptedNotification]) -> int:
        """Store new notifications as ``accepted`` in one statement; returns how many were new."""
        inserted = await self._pool.fetchval(
            """
            WITH new AS (
                INSERT INTO notifications (id, tenant_id, status, status_rank, channel, idempotency_key,
                                           created_at, updated_at)
                SELECT id, tenant_id, $5, $6, NULL, idempotency_key, created_at, created_at
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[])
                    AS n(id, tenant_id, idempotency_key, created_at)
                ON CONFLICT (id) DO NOTHING
                RETURNING 1
            )
            SELECT count(*) FROM new
            """,
            [n.notification_id for n in notifications],
            [n.tenant_id for n in notifications],
            [n.idempotency_key for n in notifications],
            [n.created_at for n in notifications],
            ACCEPTED,
            rank(ACCEPTED),
        )
        return int(inserted)

    async def get(self, tenant_id: str, notification_id: str) -> NotificationView | None:
        """The notification and its events, or None if it does not exist or belongs to another tenant."""
        try:
            key = uuid.UUID(notification_id)
        except ValueError:
            return None
        async with self._pool.acquire() as connection:
            row = await connection.fetchrow(
                """
                SELECT id, tenant_id, status, channel, attempts, last_reason, last_detail,
                       idempotency_key, created_at, updated_at,
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
                """
                SELECT event_id::text, status, occurred_at, service, channel, attempt, provider, reason, detail,
                       delivery_id::text
                FROM notification_events
                WHERE notification_id = $1 AND tenant_id = $2
                ORDER BY occurred_at, id
                """,
                key,
                tenant_id,
            )
            deliveries = await connection.fetch(
                """
                SELECT id::text, channel, status, attempts, provider, last_reason, last_detail, updated_at
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
            last_detail=row["last_detail"],
            idempotency_key=row["idempotency_key"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            events=tuple(EventView(*event.values()) for event in events),
            deliveries=tuple(DeliveryView(*delivery.values()) for delivery in deliveries),
            duplicates=row["duplicates"],
        )


def hash_secret(secret: str) -> bytes:
    """The stored form of an API key: its SHA-256 (keys are long random strings, so no salt or stretching)."""
    return hashlib.sha256(secret.encode()).digest()


class ApiKeyRepository:
    """Tenants and their hashed API keys."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def ensure_tenant(self, tenant_id: str, name: str) -> None:
        """Create the tenant unless it exists (an existing tenant keeps its name)."""
        await self._pool.execute(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            tenant_id,
            name,
        )

    async def create_key(self, tenant_id: str, name: str, secret: str) -> None:
        """Store an API key for ``tenant_id``; storing the same secret again changes nothing."""
        await self._pool.execute(
            """
            INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (key_hash) DO NOTHING
            """,
            uuid.uuid4(),
            tenant_id,
            name,
            secret[:KEY_PREFIX_LENGTH],
            hash_secret(secret),
        )

    async def revoke_key(self, secret: str) -> bool:
        """Revoke the key with this secret; False if there is no such live key."""
        revoked = await self._pool.fetchval(
            "UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1 AND revoked_at IS NULL RETURNING true",
            hash_secret(secret),
        )
        return revoked is not None

    async def find_tenant(self, secret: str) -> str | None:
        """The tenant owning this secret if it is a live (non-revoked) key, else None."""
        tenant_id: str | None = await self._pool.fetchval(
            "SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            hash_secret(secret),
        )
        return tenant_id

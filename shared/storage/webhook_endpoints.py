"""Webhook endpoints and their delivery log (migration 0014): the gateway registers and lists them, the
status service plans each status change's delivery to them, and records what sender-webhook reports.

An endpoint's URL may carry a token, so it is stored sealed (``url_sealed``) and only this module
opens it; so is a delivery's detail (``detail_sealed``: an unreachable endpoint's error names the URL).
Its signing secret is never stored: see :mod:`shared.webhook_secrets`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TypeAlias

import asyncpg

from shared import status
from shared.crypto import Encryptor
from shared.messages import StatusEvent
from shared.storage.database import Pool
from shared.storage.pagination import PageCursor, SqlFilter, newest_first
from shared.storage.sealed import SealedColumn, reseal

# A connection of the pool, as ``Pool.acquire`` gives it (a transaction runs on one).
PooledConnection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
URL = SealedColumn("webhook_endpoints", "url", legacy=False)
DELIVERY_DETAIL = SealedColumn("webhook_endpoint_deliveries", "detail")
DELIVERY_NAMESPACE = uuid.UUID("5d0c7a52-9a0e-4d6b-9f3e-2b8f1c4e6a17")
_ENDPOINT_COLUMNS = (
    f"id::text, tenant_id, {URL.selected()}, description, event_types, secret_version, previous_secret_version, "
    "previous_secret_expires_at, rotated_at, created_at, updated_at"
)
_PLANNED_COLUMNS = (
    "d.id::text, d.endpoint_id::text, d.tenant_id, d.event_id::text, d.notification_id::text, d.status, d.channel, "
    "d.reason, d.occurred_at"
)
# What sender-webhook's status events mean for a delivery, and their order: a later report of the same
# attempt only moves the outcome forward (a redelivered ``retrying`` never overwrites ``sent``).
OUTCOMES = {status.REQUEUED: "retrying", status.RETRYING: "retrying", status.SENT: "sent", status.FAILED: "failed"}
_OUTCOME_RANK = "CASE {} WHEN 'pending' THEN 0 WHEN 'retrying' THEN 1 ELSE 2 END"


@dataclass(frozen=True)
class Endpoint:
    """A registered endpoint; ``event_types`` empty means every status."""

    id: str
    tenant_id: str
    url: str
    description: str | None
    event_types: list[str]
    secret_version: int
    previous_secret_version: int | None
    previous_secret_expires_at: datetime | None
    rotated_at: datetime | None
    created_at: datetime
    updated_at: datetime


_ENDPOINT_FIELDS = [f.name for f in fields(Endpoint) if f.name != "url"]


@dataclass(frozen=True)
class Subscription:
    """What the status service needs to decide which endpoints an event goes to."""

    endpoint_id: str
    event_types: frozenset[str]

    def wants(self, event_status: str) -> bool:
        return not self.event_types or event_status in self.event_types


def delivery_id(endpoint_id: str, event_id: str) -> str:
    """Deterministic: the same event planned again (a redelivered batch) is the same delivery."""
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{endpoint_id}:{event_id}"))


@dataclass(frozen=True, kw_only=True)
class PlannedDelivery:
    """A status change to send to an endpoint (its log row, written ``pending``); ``id``: :func:`delivery_id`."""

    id: str
    endpoint_id: str
    tenant_id: str
    event_id: str
    notification_id: str
    status: str
    channel: str | None
    reason: str | None
    occurred_at: datetime


@dataclass(frozen=True, kw_only=True)
class EndpointDelivery(PlannedDelivery):
    """One event's delivery to one endpoint, as the delivery log shows it."""

    attempt: int
    outcome: str
    detail: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class PendingDelivery(PlannedDelivery):
    """A planned delivery about to be produced: where to, and which secret versions sign it."""

    url: str
    secret_versions: list[int]


_PLANNED_FIELDS = [f.name for f in fields(PlannedDelivery)]


@dataclass(frozen=True)
class DeliveryFilter(SqlFilter):
    """Which of an endpoint's deliveries a listing shows."""

    tenant_id: str
    endpoint_id: uuid.UUID
    outcome: str | None = None
    status: str | None = None


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class WebhookEndpointRepository:
    """Every query of the API's methods is scoped to one tenant."""

    def __init__(self, pool: Pool, encryptor: Encryptor) -> None:
        self._pool = pool
        self._encryptor = encryptor

    def _endpoint(self, row: asyncpg.Record) -> Endpoint:
        url = URL.read(self._encryptor, row, row["tenant_id"])
        assert url is not None
        return Endpoint(**{name: row[name] for name in _ENDPOINT_FIELDS}, url=url.decode())

    def _seal(self, tenant_id: str, url: str) -> bytes | None:
        return URL.seal(self._encryptor, url.encode(), tenant_id)

    async def create(self, tenant_id: str, url: str, description: str | None, event_types: Sequence[str]) -> Endpoint:
        """Register an endpoint (secret version 1)."""
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO webhook_endpoints (id, tenant_id, url_sealed, description, event_types)
            VALUES ($1, $2, $3, $4, $5) RETURNING {_ENDPOINT_COLUMNS}
            """,
            uuid.uuid4(),
            tenant_id,
            self._seal(tenant_id, url),
            description,
            sorted(set(event_types)),
        )
        assert row is not None
        return self._endpoint(row)

    async def live(self, tenant_id: str) -> list[Endpoint]:
        """The tenant's live endpoints, newest first."""
        rows = await self._pool.fetch(
            f"""
            SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints
            WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC
            """,
            tenant_id,
        )
        return [self._endpoint(row) for row in rows]

    async def get(self, tenant_id: str, endpoint_id: str) -> Endpoint | None:
        """The live endpoint, or None (unknown, deleted, or another tenant's)."""
        key = _uuid(endpoint_id)
        if key is None:
            return None
        row = await self._pool.fetchrow(
            f"""
            SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints
            WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
            """,
            tenant_id,
            key,
        )
        return None if row is None else self._endpoint(row)

    async def update(
        self,
        tenant_id: str,
        endpoint_id: str,
        *,
        url: str | None = None,
        description: str | None = None,
        event_types: Sequence[str] | None = None,
        clear_description: bool = False,
    ) -> Endpoint | None:
        """Change what is given (None: unchanged; ``clear_description`` removes it); None if no such live endpoint."""
        return await self._change(
            tenant_id,
            endpoint_id,
            """url_sealed = coalesce($3, url_sealed),
               description = CASE WHEN $6 THEN NULL ELSE coalesce($4, description) END,
               event_types = coalesce($5, event_types)""",
            None if url is None else self._seal(tenant_id, url),
            description,
            None if event_types is None else sorted(set(event_types)),
            clear_description,
        )

    async def rotate(self, tenant_id: str, endpoint_id: str, grace: timedelta) -> Endpoint | None:
        """Move to the next secret version; the current one keeps signing too for ``grace``."""
        return await self._change(
            tenant_id,
            endpoint_id,
            """previous_secret_version = secret_version,
               previous_secret_expires_at = now() + $3::interval,
               secret_version = secret_version + 1,
               rotated_at = now()""",
            grace,
        )

    async def delete(self, tenant_id: str, endpoint_id: str) -> bool:
        """Soft delete: nothing more is sent to it, and the API no longer shows it or its log."""
        return await self._change(tenant_id, endpoint_id, "deleted_at = now()") is not None

    async def _change(self, tenant_id: str, endpoint_id: str, assignments: str, *values: object) -> Endpoint | None:
        """``UPDATE ... SET <assignments>`` (``$3`` on: ``values``) of the live endpoint; None if there is none."""
        key = _uuid(endpoint_id)
        if key is None:
            return None
        row = await self._pool.fetchrow(
            f"""
            UPDATE webhook_endpoints SET {assignments}, updated_at = now()
            WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
            RETURNING {_ENDPOINT_COLUMNS}
            """,
            tenant_id,
            key,
            *values,
        )
        return None if row is None else self._endpoint(row)

    async def deliveries(
        self, where: DeliveryFilter, limit: int, after: PageCursor | None = None
    ) -> list[EndpointDelivery]:
        """Up to ``limit`` of an endpoint's deliveries, newest first, starting after ``after``."""
        rows = await newest_first(
            self._pool,
            columns=f"{_PLANNED_COLUMNS}, attempt, outcome, {DELIVERY_DETAIL.selected()}, created_at, updated_at",
            table="webhook_endpoint_deliveries AS d",
            where=where,
            limit=limit,
            after=after,
        )
        return [EndpointDelivery(**DELIVERY_DETAIL.opened_row(self._encryptor, row, row["tenant_id"])) for row in rows]

    async def subscriptions(self, tenants: Collection[str]) -> dict[str, list[Subscription]]:
        """Every given tenant's live endpoints (an empty list for a tenant without any)."""
        found: dict[str, list[Subscription]] = {tenant: [] for tenant in tenants}
        if not found:
            return found
        rows = await self._pool.fetch(
            """
            SELECT tenant_id, id::text, event_types FROM webhook_endpoints
            WHERE tenant_id = ANY($1::text[]) AND deleted_at IS NULL
            """,
            list(found),
        )
        for row in rows:
            found[row["tenant_id"]].append(Subscription(row["id"], frozenset(row["event_types"])))
        return found

    @staticmethod
    async def plan(connection: PooledConnection, deliveries: Sequence[PlannedDelivery]) -> None:
        """Log ``deliveries`` as pending, in the caller's transaction (the one storing their events)."""
        if not deliveries:
            return
        await connection.execute(
            """
            INSERT INTO webhook_endpoint_deliveries
                (id, tenant_id, endpoint_id, event_id, notification_id, status, channel, reason, occurred_at)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[],
                                 $7::text[], $8::text[], $9::timestamptz[])
            ON CONFLICT (id) DO NOTHING
            """,
            [d.id for d in deliveries],
            [d.tenant_id for d in deliveries],
            [d.endpoint_id for d in deliveries],
            [d.event_id for d in deliveries],
            [d.notification_id for d in deliveries],
            [d.status for d in deliveries],
            [d.channel for d in deliveries],
            [d.reason for d in deliveries],
            [d.occurred_at for d in deliveries],
        )

    async def pending(self, event_ids: Collection[str]) -> list[PendingDelivery]:
        """The deliveries of these events not attempted yet, to live endpoints, oldest event first."""
        if not event_ids:
            return []
        rows = await self._pool.fetch(
            f"""
            SELECT {_PLANNED_COLUMNS}, {URL.selected()},
                   CASE WHEN e.previous_secret_expires_at > now()
                        THEN ARRAY[e.secret_version, e.previous_secret_version]
                        ELSE ARRAY[e.secret_version] END AS secret_versions
            FROM webhook_endpoint_deliveries AS d
            JOIN webhook_endpoints AS e ON e.id = d.endpoint_id AND e.tenant_id = d.tenant_id
            WHERE d.event_id = ANY($1::uuid[]) AND d.outcome = 'pending' AND e.deleted_at IS NULL
            ORDER BY d.occurred_at, d.id
            """,
            list(event_ids),
        )
        found = []
        for row in rows:
            url = URL.read(self._encryptor, row, row["tenant_id"])
            assert url is not None
            planned = {name: row[name] for name in _PLANNED_FIELDS}
            found.append(PendingDelivery(**planned, url=url.decode(), secret_versions=row["secret_versions"]))
        return found

    async def record_outcomes(self, events: Sequence[StatusEvent]) -> None:
        """Move deliveries on by sender-webhook's reports: a later attempt, or the same attempt's later
        outcome; a redelivered report changes nothing."""
        reported = [e for e in events if e["status"] in OUTCOMES and e.get("delivery_id")]
        if not reported:
            return
        incoming = _OUTCOME_RANK.format("e.outcome")
        stored = _OUTCOME_RANK.format("d.outcome")
        await self._pool.execute(
            f"""
            UPDATE webhook_endpoint_deliveries AS d SET
                outcome = e.outcome, attempt = e.attempt, detail = NULL, detail_sealed = e.detail_sealed,
                updated_at = greatest(d.updated_at, e.at)
            FROM (
                SELECT DISTINCT ON (id) *
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bytea[], $6::timestamptz[])
                    AS u(id, tenant_id, outcome, attempt, detail_sealed, at)
                ORDER BY id, attempt DESC, {_OUTCOME_RANK.format("u.outcome")} DESC
            ) AS e
            WHERE d.id = e.id AND d.tenant_id = e.tenant_id
              AND (e.attempt, {incoming}) > (d.attempt, {stored})
            """,
            [e["delivery_id"] for e in reported],
            [e["tenant_id"] for e in reported],
            [OUTCOMES[e["status"]] for e in reported],
            [e["attempt"] or 1 for e in reported],
            [DELIVERY_DETAIL.seal_text(self._encryptor, e["detail"], e["tenant_id"]) for e in reported],
            [e["occurred_at"] for e in reported],
        )

    async def reseal(self, batch_size: int = 500) -> int:
        """Re-encrypt every URL not yet under the primary key; returns how many."""
        return await reseal(self._pool, self._encryptor, [URL], "uuid", batch_size)

    async def reseal_deliveries(self, batch_size: int = 500) -> int:
        """Re-encrypt every delivery's detail not yet under the primary key (or still in clear); returns how many."""
        return await reseal(self._pool, self._encryptor, [DELIVERY_DETAIL], "uuid", batch_size)

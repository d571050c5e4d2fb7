"""Moving old notifications out of Postgres into archive objects, a batch per transaction.

A notification is archived once its last update is older than the retention and no delayed job
waits for it (a retry, a scheduled send, a recurring series: those stay however old they are).
With it go the rows of every table that names it: its status events, deliveries, counted
duplicates, dead letters and webhook deliveries. No table has a foreign key to ``notifications``
(the retry service finds a job's notification with a LEFT JOIN, and jobs hold theirs back anyway),
so nothing else breaks when they go.

Each batch, in one transaction:

1. lock up to ``batch_size`` of the oldest such notifications, ``FOR UPDATE SKIP LOCKED``, so
   archivers running at once take different ones;
2. read their related rows, also locked (rows a writer holds right now are skipped: they stay in
   Postgres, and that writer's status update makes the notification anew);
3. write the objects and wait until each is durable (fsynced and renamed, or acknowledged by S3);
4. delete exactly the rows read (by primary key), and commit.

A crash, a failed write or a failed commit anywhere before the commit deletes nothing: the rows are
archived again by a later pass, so an archive may hold a notification twice (readers keep one line
per id) but Postgres never loses a row that is in no archive.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
import structlog

from services.archiver.archive import ArchivedNotification, Row, archived_row, build_objects
from services.archiver.store import ArchiveStore
from shared.background import repeat
from shared.crypto import Encryptor
from shared.observability import metrics
from shared.storage.database import Pool
from shared.storage.dead_letters import SEALED as DEAD_LETTER_SEALED
from shared.storage.notifications import DELIVERY_DETAIL, EVENT_DETAIL, NOTIFICATION_COLUMNS
from shared.storage.sealed import SealedColumn
from shared.storage.webhook_endpoints import DELIVERY_DETAIL as WEBHOOK_DELIVERY_DETAIL

log = structlog.get_logger(__name__)

# What pool.acquire() hands out.
_Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

# Oldest first, after the previous batch's last row: one index range scan (migration 0015).
_CLAIM = """
SELECT n.* FROM notifications AS n
WHERE n.created_at < $1 AND n.updated_at < $1 AND (n.created_at, n.id) > ($2, $3)
  AND NOT EXISTS (
      SELECT 1 FROM delayed_jobs AS d WHERE d.notification_id = n.id AND d.tenant_id = n.tenant_id
  )
ORDER BY n.created_at, n.id
LIMIT $4
FOR UPDATE OF n SKIP LOCKED
"""
# Where a pass starts: before any notification.
_START = (datetime(1, 1, 1, tzinfo=UTC), UUID(int=0))


@dataclass(frozen=True)
class _Related:
    """A table whose rows belong to a notification: archived and deleted with it."""

    table: str
    # The archive line's field.
    field: str
    # The primary key, the rows read are deleted by, and its SQL type.
    key: str
    key_type: str
    order: str
    # Its personal columns: archived sealed (services.archiver.archive.archived_row).
    sealed: tuple[SealedColumn, ...]
    # dead_letters.notification_id is text (a dead letter of an invalid request may name anything).
    notification_id: str = "a.id"

    def select(self) -> str:
        return f"""
        SELECT r.* FROM {self.table} AS r
        JOIN unnest($1::uuid[], $2::text[]) AS a(id, tenant_id)
          ON r.notification_id = {self.notification_id} AND r.tenant_id = a.tenant_id
        ORDER BY {self.order}
        FOR UPDATE OF r SKIP LOCKED
        """

    def delete(self) -> str:
        return f"DELETE FROM {self.table} WHERE {self.key} = ANY($1::{self.key_type}[])"


_RELATED = (
    _Related("notification_events", "events", "id", "bigint", "r.occurred_at, r.id", (EVENT_DETAIL,)),
    _Related("deliveries", "deliveries", "id", "uuid", "r.created_at, r.id", (DELIVERY_DETAIL,)),
    _Related("notification_duplicates", "duplicates", "event_id", "uuid", "r.occurred_at, r.event_id", ()),
    _Related(
        "dead_letters",
        "dead_letters",
        "id",
        "uuid",
        "r.created_at, r.id",
        DEAD_LETTER_SEALED,
        notification_id="a.id::text",
    ),
    # Each status event's delivery to each of the tenant's webhook endpoints (the endpoints stay).
    _Related(
        "webhook_endpoint_deliveries",
        "webhook_deliveries",
        "id",
        "uuid",
        "r.occurred_at, r.id",
        (WEBHOOK_DELIVERY_DETAIL,),
    ),
)


def _deleted(status: str) -> int:
    # asyncpg answers a DELETE with its command tag, "DELETE <rows>".
    return int(status.rsplit(" ", 1)[-1])


@dataclass(frozen=True)
class Batch:
    """What one batch archived: how many notifications, and where the pass goes on from."""

    notifications: int
    after: tuple[datetime, UUID]


class Archiver:
    """Archives notifications older than ``retention`` to ``store``, ``batch_size`` per transaction."""

    def __init__(
        self, pool: Pool, store: ArchiveStore, encryptor: Encryptor, *, retention: timedelta, batch_size: int
    ) -> None:
        self._pool = pool
        self._store = store
        self._encryptor = encryptor
        self._retention = retention
        self._batch_size = batch_size

    async def archive(self, now: datetime | None = None, stopping: asyncio.Event | None = None) -> int:
        """One pass: archive every notification due at ``now``, batch by batch; returns how many.

        Once ``stopping`` is set it returns after the batch in hand (the rest waits for the next pass).
        """
        cutoff = (now or datetime.now(UTC)) - self._retention
        after = _START
        total = 0
        try:
            while True:
                batch = await self.archive_batch(cutoff, after)
                if batch is None:
                    break
                total += batch.notifications
                after = batch.after
                if batch.notifications < self._batch_size or (stopping is not None and stopping.is_set()):
                    break
        except Exception:
            metrics.ARCHIVE_FAILURES.inc()
            raise
        log.info("archive_pass_done", notifications=total, cutoff=cutoff.isoformat())
        return total

    async def archive_batch(self, cutoff: datetime, after: tuple[datetime, UUID]) -> Batch | None:
        """Archive up to ``batch_size`` notifications last updated before ``cutoff``, oldest first from
        after ``after`` (created_at, id); None when there is none."""
        async with self._pool.acquire() as connection, connection.transaction():
            claimed = await connection.fetch(_CLAIM, cutoff, *after, self._batch_size)
            if not claimed:
                return None
            items, keys = await self._gather(connection, claimed)
            objects = await asyncio.to_thread(build_objects, items)
            for item in objects:
                where = await asyncio.to_thread(self._store.put, item.name, item.data)
                metrics.ARCHIVE_OBJECTS.inc()
                log.info("archive_written", object=where, notifications=item.notifications, bytes=len(item.data))
            rows: dict[str, int] = {}
            for related in _RELATED:
                rows[related.table] = _deleted(await connection.execute(related.delete(), keys[related.table]))
            rows["notifications"] = _deleted(
                await connection.execute(
                    "DELETE FROM notifications WHERE id = ANY($1::uuid[])", [row["id"] for row in claimed]
                )
            )
        for table, count in rows.items():
            metrics.ARCHIVED_ROWS.labels(table=table).inc(count)
        log.info("archive_batch_done", notifications=len(claimed), rows=rows)
        last = claimed[-1]
        return Batch(len(claimed), (last["created_at"], last["id"]))

    async def _gather(
        self, connection: _Connection, claimed: list[asyncpg.Record]
    ) -> tuple[list[ArchivedNotification], dict[str, list[Any]]]:
        """The claimed notifications with their related rows, and the keys of those rows per table."""
        ids = [row["id"] for row in claimed]
        tenants = [row["tenant_id"] for row in claimed]
        related: dict[str, dict[str, list[Row]]] = {}
        keys: dict[str, list[Any]] = {}
        for table in _RELATED:
            found = await connection.fetch(table.select(), ids, tenants)
            keys[table.table] = [row[table.key] for row in found]
            by_notification: dict[str, list[Row]] = defaultdict(list)
            for row in found:
                by_notification[str(row["notification_id"])].append(
                    archived_row(dict(row), table.sealed, self._encryptor)
                )
            related[table.field] = by_notification
        items = []
        for row in claimed:
            notification_id = str(row["id"])
            items.append(
                ArchivedNotification(
                    notification=archived_row(dict(row), NOTIFICATION_COLUMNS, self._encryptor),
                    events=related["events"].get(notification_id, []),
                    deliveries=related["deliveries"].get(notification_id, []),
                    duplicates=related["duplicates"].get(notification_id, []),
                    dead_letters=related["dead_letters"].get(notification_id, []),
                    webhook_deliveries=related["webhook_deliveries"].get(notification_id, []),
                )
            )
        return items, keys

    async def run(self, stopping: asyncio.Event, interval_s: float) -> None:
        """A pass every ``interval_s`` until ``stopping`` is set; a failed pass is retried at the next."""

        async def step() -> None:
            await self.archive(stopping=stopping)

        await repeat(step, stopping, idle_s=interval_s, name="archive")

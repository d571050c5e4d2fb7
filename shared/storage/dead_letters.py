"""Dead letters in Postgres: stored by the dead-letters service, listed, read and purged per tenant by the API.

Every read and delete the API makes names its tenant; only the retention clean-up (``tenant_id``
None in :class:`DeadLetterFilter`) and the size gauge look across tenants.

The original key and payload hold recipients' addresses and contents, and the detail (why it was
dead-lettered, often a provider's answer) can quote them: all three are stored sealed
(``original_key_sealed``, ``original_payload_sealed``, ``detail_sealed``) and opened here only
(:mod:`shared.storage.sealed`).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

import asyncpg

from shared.crypto import Encryptor
from shared.kafka.records import Headers
from shared.storage.database import Pool
from shared.storage.pagination import CREATED_AFTER, CREATED_BEFORE, PageCursor, SqlFilter, newest_first, sql
from shared.storage.sealed import SealedColumn, reseal

ORIGINAL_KEY = SealedColumn("dead_letters", "original_key")
ORIGINAL_PAYLOAD = SealedColumn("dead_letters", "original_payload")
DETAIL = SealedColumn("dead_letters", "detail")
SEALED = (ORIGINAL_KEY, ORIGINAL_PAYLOAD, DETAIL)
_SUMMARY = f"""id::text, tenant_id, notification_id, reason, {DETAIL.selected()}, service, channel, original_topic,
               original_partition, original_offset, created_at"""
_ORIGINAL = f"original_topic, {ORIGINAL_KEY.selected()}, original_headers, {ORIGINAL_PAYLOAD.selected()}"

# One statement per batch: the rows come in as parallel arrays; a DLQ record already stored is skipped.
_STORE = """
WITH stored AS (
    INSERT INTO dead_letters (tenant_id, notification_id, reason, detail_sealed, service, channel, original_topic,
                              original_partition, original_offset, original_key_sealed, original_headers,
                              original_payload_sealed, created_at, dlq_topic, dlq_partition, dlq_offset)
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[], $7::text[], $8::int[],
                $9::bigint[], $10::bytea[], $11::jsonb[], $12::bytea[], $13::timestamptz[], $14::text[],
                $15::int[], $16::bigint[])
    ON CONFLICT ON CONSTRAINT dead_letters_dlq_record_key DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM stored
"""


@dataclass(frozen=True, kw_only=True)
class DeadLetterFacts:
    """What every view of a dead letter tells: which notification, why, who gave up, where it failed."""

    notification_id: str | None
    reason: str
    detail: str
    service: str
    channel: str | None
    original_topic: str
    original_partition: int
    original_offset: int
    # When it was dead-lettered.
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class NewDeadLetter(DeadLetterFacts):
    """A record of the DLQ topic to store: the dead letter, its original message, where the DLQ record is."""

    tenant_id: str | None
    original_key: bytes | None
    original_headers: Mapping[str, bytes]
    original_payload: bytes
    dlq_topic: str
    dlq_partition: int
    dlq_offset: int


@dataclass(frozen=True, kw_only=True)
class DeadLetterEntry(DeadLetterFacts):
    """A stored dead letter as the API lists it."""

    id: str


@dataclass(frozen=True)
class OriginalMessage:
    """The dead-lettered message as it was consumed: what producing it again (a replay) needs."""

    topic: str
    key: bytes | None
    headers: Headers
    payload: bytes


@dataclass(frozen=True)
class DeadLetterDetail:
    """One dead letter with its original message."""

    entry: DeadLetterEntry
    original: OriginalMessage


@dataclass(frozen=True)
class DeadLetterFilter(SqlFilter):
    """Which dead letters a listing or purge is about; None matches anything."""

    # Always set by the API; None only for the retention clean-up, which spans every tenant.
    tenant_id: str | None
    reason: str | None = None
    original_topic: str | None = None
    channel: str | None = None
    notification_id: str | None = None
    created_after: datetime | None = field(default=None, metadata=CREATED_AFTER)
    created_before: datetime | None = field(default=None, metadata=CREATED_BEFORE)
    # True: only those not deleted through the API (what the API shows); None: deleted ones too (retention).
    live: bool | None = field(default=True, metadata=sql("(deleted_at IS NULL) = {}"))


def _text(value: str) -> str:
    # Postgres text takes neither NUL nor unpaired surrogates. Refusing the row would dead-letter the
    # DLQ record again, onto the very topic this service consumes: store what can be stored instead.
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _optional_text(value: str | None) -> str | None:
    return None if value is None else _text(value)


def _entry_id(entry_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(entry_id)
    except ValueError:
        return None


class DeadLetterRepository:
    """Stores, lists, reads and deletes dead letters; every API query is scoped to one tenant."""

    def __init__(self, pool: Pool, encryptor: Encryptor) -> None:
        self._pool = pool
        self._encryptor = encryptor

    def _entry(self, row: asyncpg.Record) -> DeadLetterEntry:
        opened = DETAIL.opened_row(self._encryptor, row, row["tenant_id"])
        return DeadLetterEntry(**{f.name: opened[f.name] for f in fields(DeadLetterEntry)})

    def _original(self, row: asyncpg.Record) -> OriginalMessage:
        headers = tuple((name, base64.b64decode(value)) for name, value in row["original_headers"].items())
        payload = ORIGINAL_PAYLOAD.read(self._encryptor, row, row["tenant_id"])
        assert payload is not None
        key = ORIGINAL_KEY.read(self._encryptor, row, row["tenant_id"])
        return OriginalMessage(row["original_topic"], key, headers, payload)

    async def store(self, letters: Sequence[NewDeadLetter]) -> int:
        """Store ``letters`` in one statement (DLQ records already stored are skipped); returns how many were new."""
        if not letters:
            return 0
        stored = await self._pool.fetchval(
            _STORE,
            [_optional_text(x.tenant_id) for x in letters],
            [_optional_text(x.notification_id) for x in letters],
            [_text(x.reason) for x in letters],
            [DETAIL.seal_text(self._encryptor, _text(x.detail), _optional_text(x.tenant_id)) for x in letters],
            [_text(x.service) for x in letters],
            [_optional_text(x.channel) for x in letters],
            [_text(x.original_topic) for x in letters],
            [x.original_partition for x in letters],
            [x.original_offset for x in letters],
            [ORIGINAL_KEY.seal(self._encryptor, x.original_key, _optional_text(x.tenant_id)) for x in letters],
            [{_text(k): base64.b64encode(v).decode() for k, v in x.original_headers.items()} for x in letters],
            [ORIGINAL_PAYLOAD.seal(self._encryptor, x.original_payload, _optional_text(x.tenant_id)) for x in letters],
            [x.created_at for x in letters],
            [_text(x.dlq_topic) for x in letters],
            [x.dlq_partition for x in letters],
            [x.dlq_offset for x in letters],
        )
        return int(stored)

    async def page(self, where: DeadLetterFilter, limit: int, after: PageCursor | None = None) -> list[DeadLetterEntry]:
        """Up to ``limit`` matching dead letters, newest first, starting after ``after``."""
        rows = await newest_first(
            self._pool, columns=_SUMMARY, table="dead_letters", where=where, limit=limit, after=after
        )
        return [self._entry(row) for row in rows]

    async def get(self, tenant_id: str, entry_id: str) -> DeadLetterDetail | None:
        """The dead letter with its original message, or None if there is none with this id for this tenant."""
        key = _entry_id(entry_id)
        if key is None:
            return None
        row = await self._pool.fetchrow(
            f"SELECT {_SUMMARY}, {_ORIGINAL} FROM dead_letters WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
            tenant_id,
            key,
        )
        if row is None:
            return None
        return DeadLetterDetail(self._entry(row), self._original(row))

    async def original(self, tenant_id: str, entry_id: str) -> OriginalMessage | None:
        """Just the original message (the topic, key, headers and payload a replay produces again)."""
        found = await self.get(tenant_id, entry_id)
        return None if found is None else found.original

    async def requeue_one(
        self, tenant_id: str, entry_id: str, send: Callable[[OriginalMessage], Awaitable[None]]
    ) -> bool | None:
        """Send one dead letter again with ``send``, once: None if there is no such entry, False if it
        was already sent again. Marked first, so two concurrent requests cannot both send it; unmarked
        again if ``send`` raises."""
        key = _entry_id(entry_id)
        if key is None:
            return None
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                f"""
                UPDATE dead_letters SET requeued_at = now()
                WHERE tenant_id = $1 AND id = $2 AND requeued_at IS NULL AND deleted_at IS NULL
                RETURNING tenant_id, {_ORIGINAL}
                """,
                tenant_id,
                key,
            )
            if row is None:
                exists = await connection.fetchval(
                    "SELECT true FROM dead_letters WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
                    tenant_id,
                    key,
                )
                return False if exists else None
            await send(self._original(row))
        return True

    async def latest_unsent(self, tenant_id: str, notification_id: str) -> str | None:
        """The id of the notification's newest dead letter not sent again yet, if any."""
        found: uuid.UUID | None = await self._pool.fetchval(
            """
            SELECT id FROM dead_letters
            WHERE tenant_id = $1 AND notification_id = $2 AND requeued_at IS NULL AND deleted_at IS NULL
            ORDER BY created_at DESC, id DESC
            LIMIT 1
            """,
            tenant_id,
            notification_id,
        )
        return None if found is None else str(found)

    async def requeue_batch(
        self,
        where: DeadLetterFilter,
        up_to: datetime,
        limit: int,
        send: Callable[[list[OriginalMessage]], Awaitable[None]],
    ) -> int:
        """Send up to ``limit`` matching dead letters (dead-lettered by ``up_to``, not sent again yet) with
        ``send``, oldest first, and mark them; in one transaction, so a failed ``send`` marks none.
        Returns how many were taken (0: none left)."""
        params: list[object] = []
        condition = where.where(params)
        params += [up_to, limit]
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                f"""
                UPDATE dead_letters SET requeued_at = now()
                WHERE id IN (
                    SELECT id FROM dead_letters
                    WHERE {condition} AND created_at <= ${len(params) - 1} AND requeued_at IS NULL
                    ORDER BY created_at, id
                    LIMIT ${len(params)}
                    FOR UPDATE SKIP LOCKED
                )
                RETURNING tenant_id, {_ORIGINAL}
                """,
                *params,
            )
            if rows:
                await send([self._original(row) for row in rows])
        return len(rows)

    async def delete(self, tenant_id: str, entry_id: str) -> bool:
        """Soft-delete one dead letter (hidden from the API, removed by retention); False if there is none
        with this id for this tenant."""
        key = _entry_id(entry_id)
        if key is None:
            return False
        deleted = await self._pool.fetchval(
            """
            UPDATE dead_letters SET deleted_at = now()
            WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
            RETURNING true
            """,
            tenant_id,
            key,
        )
        return deleted is not None

    async def delete_batch(self, where: DeadLetterFilter, limit: int, *, soft: bool = False) -> int:
        """Delete up to ``limit`` matching dead letters, oldest first (``soft``: mark them deleted); returns how many.

        Rows another replica is deleting at the same time are skipped, not waited for.
        """
        if soft and where.live is not True:
            raise ValueError("a soft delete takes only live dead letters, or it would never finish")
        params: list[object] = []
        condition = where.where(params)
        params.append(limit)
        gone = (
            "UPDATE dead_letters AS d SET deleted_at = now() FROM doomed WHERE d.id = doomed.id RETURNING 1"
            if soft
            else "DELETE FROM dead_letters AS d USING doomed WHERE d.id = doomed.id RETURNING 1"
        )
        deleted = await self._pool.fetchval(
            f"""
            WITH doomed AS (
                SELECT id FROM dead_letters WHERE {condition}
                ORDER BY created_at LIMIT ${len(params)} FOR UPDATE SKIP LOCKED
            ),
            gone AS ({gone})
            SELECT count(*) FROM gone
            """,
            *params,
        )
        return int(deleted)

    async def purge(
        self,
        where: DeadLetterFilter,
        batch_size: int = 5000,
        stopping: asyncio.Event | None = None,
        *,
        soft: bool = False,
    ) -> int:
        """Delete every matching dead letter (``soft``: mark them deleted), ``batch_size`` rows per statement
        (short locks); returns how many.

        Once ``stopping`` is set it returns after the statement in hand (the rest waits for next time).
        """
        total = 0
        while True:
            deleted = await self.delete_batch(where, batch_size, soft=soft)
            total += deleted
            if deleted < batch_size or (stopping is not None and stopping.is_set()):
                return total

    async def reseal(self, batch_size: int = 500) -> int:
        """Re-encrypt every original key, payload and detail not yet under the primary key (or still in clear)."""
        return await reseal(self._pool, self._encryptor, SEALED, "uuid", batch_size)

    async def count_by_reason(self) -> dict[str, int]:
        """How many dead letters are stored for each reason, across tenants."""
        rows = await self._pool.fetch(
            "SELECT reason, count(*) FROM dead_letters WHERE deleted_at IS NULL GROUP BY reason"
        )
        return {row["reason"]: int(row["count"]) for row in rows}

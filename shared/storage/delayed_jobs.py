"""Durable delayed jobs in Postgres, claimed safely by any number of retry replicas.

A job's Kafka key (``tenant:recipient``) and payload hold addresses and contents: they are stored
sealed (``key_sealed``, ``payload_sealed``, :mod:`shared.storage.sealed`) and opened only to fire.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from shared.crypto import Encryptor
from shared.messages import DelayedMessage
from shared.status import CANCELLED
from shared.storage.database import Pool
from shared.storage.sealed import SealedColumn, reseal

KEY = SealedColumn("delayed_jobs", "key")
PAYLOAD = SealedColumn("delayed_jobs", "payload")


@dataclass(frozen=True)
class DueJob:
    """A delayed message whose time has come: produce ``payload`` to ``target_topic``."""

    job_id: str
    target_topic: str
    key: bytes | None
    payload: bytes
    headers: dict[str, bytes]
    due_at: datetime
    # A recurring series: firing produces an occurrence and the job moves to its next time.
    recurring: bool = False


# Header values are bytes and JSON has no bytes, so they are stored base64-encoded.
def _encode_headers(headers: dict[str, bytes]) -> dict[str, str]:
    return {name: base64.b64encode(value).decode("ascii") for name, value in headers.items()}


def _decode_headers(headers: dict[str, str]) -> dict[str, bytes]:
    return {name: base64.b64decode(value) for name, value in headers.items()}


class DelayedJobStore:
    """Adds delayed jobs and hands due ones to a caller that produces them."""

    def __init__(self, pool: Pool, encryptor: Encryptor) -> None:
        self._pool = pool
        self._encryptor = encryptor

    async def add(self, jobs: Sequence[DelayedMessage]) -> None:
        """Store ``jobs`` in one statement; a job id already stored is kept as it is."""
        if not jobs:
            return
        await self._pool.execute(
            """
            INSERT INTO delayed_jobs (job_id, tenant_id, notification_id, due_at, target_topic,
                                      key_sealed, payload_sealed, headers, reason, recurring)
            SELECT *
            FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::timestamptz[], $5::text[],
                        $6::bytea[], $7::bytea[], $8::jsonb[], $9::text[], $10::boolean[])
            ON CONFLICT (job_id) DO NOTHING
            """,
            [job["job_id"] for job in jobs],
            [job["tenant_id"] for job in jobs],
            [job["notification_id"] for job in jobs],
            [job["due_at"] for job in jobs],
            [job["target_topic"] for job in jobs],
            [KEY.seal(self._encryptor, job["key"], job["tenant_id"]) for job in jobs],
            [PAYLOAD.seal(self._encryptor, job["payload"], job["tenant_id"]) for job in jobs],
            [_encode_headers(job["headers"]) for job in jobs],
            [job["reason"] for job in jobs],
            [job["recurring"] for job in jobs],
        )

    async def next_due_at(self) -> datetime | None:
        """When the earliest job is due, or None if there are no jobs."""
        due_at: datetime | None = await self._pool.fetchval("SELECT min(due_at) FROM delayed_jobs")
        return due_at

    async def claim_due(
        self,
        now: datetime,
        limit: int,
        fire: Callable[[list[DueJob]], Awaitable[Mapping[str, datetime]]],
    ) -> int:
        """Fire up to ``limit`` jobs due at ``now``, oldest first; returns how many were fired.

        ``fire`` produces the jobs and returns the next due time of those that recur (a recurring
        series); those move to it, the others are deleted. The jobs stay row-locked while ``fire``
        runs, so other replicas skip them rather than fire them twice. ``fire`` must return only once
        the jobs are durably produced; if it raises, the transaction rolls back, the jobs stay for a
        later claim and the error propagates. Jobs of a cancelled notification are deleted unfired.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                """
                SELECT d.job_id, d.tenant_id, d.target_topic, d.key_sealed, d.key, d.payload_sealed, d.payload,
                       d.headers, d.due_at, d.recurring,
                       coalesce(n.status = $3, false) AS cancelled
                FROM delayed_jobs AS d
                LEFT JOIN notifications AS n ON n.id = d.notification_id AND n.tenant_id = d.tenant_id
                WHERE d.due_at <= $1
                ORDER BY d.due_at
                LIMIT $2
                FOR UPDATE OF d SKIP LOCKED
                """,
                now,
                limit,
                CANCELLED,
            )
            if not rows:
                return 0
            jobs = [self._due_job(row) for row in rows if not row["cancelled"]]
            again = await fire(jobs) if jobs else {}
            await connection.execute(
                """
                WITH moved AS (
                    UPDATE delayed_jobs AS d SET due_at = a.due_at
                    FROM unnest($2::uuid[], $3::timestamptz[]) AS a(job_id, due_at)
                    WHERE d.job_id = a.job_id
                    RETURNING d.job_id
                )
                DELETE FROM delayed_jobs
                WHERE job_id = ANY($1::uuid[]) AND job_id NOT IN (SELECT job_id FROM moved)
                """,
                [row["job_id"] for row in rows],
                list(again),
                list(again.values()),
            )
        return len(jobs)

    def _due_job(self, row: asyncpg.Record) -> DueJob:
        payload = PAYLOAD.read(self._encryptor, row, row["tenant_id"])
        assert payload is not None
        return DueJob(
            job_id=str(row["job_id"]),
            target_topic=row["target_topic"],
            key=KEY.read(self._encryptor, row, row["tenant_id"]),
            payload=payload,
            headers=_decode_headers(row["headers"]),
            due_at=row["due_at"],
            recurring=row["recurring"],
        )

    async def reseal(self, batch_size: int = 500) -> int:
        """Re-encrypt every job's key and payload not yet under the primary key (or still in clear)."""
        return await reseal(self._pool, self._encryptor, [KEY, PAYLOAD], "uuid", batch_size, id_column="job_id")

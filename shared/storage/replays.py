"""Bulk replays of dead letters: asked for through the API, run by the dead-letters service, with progress."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from shared.storage.database import Pool
from shared.storage.dead_letters import DeadLetterFilter

ReplayStatus = Literal["pending", "running", "done"]
_COLUMNS = "id::text, tenant_id, filter, up_to, status, requeued, skipped, created_at, finished_at"


@dataclass(frozen=True)
class Replay:
    """One bulk replay: what it sends again (``where``, dead-lettered by ``up_to``) and how far it got."""

    id: str
    tenant_id: str
    where: DeadLetterFilter
    up_to: datetime
    status: ReplayStatus
    requeued: int
    skipped: int
    created_at: datetime
    finished_at: datetime | None


def _filter_json(where: DeadLetterFilter) -> dict[str, object]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(where).items() if v is not None}


def _replay(row: asyncpg.Record) -> Replay:
    stored = dict(row["filter"])
    for moment in ("created_after", "created_before"):
        if moment in stored:
            stored[moment] = datetime.fromisoformat(stored[moment])
    return Replay(
        id=row["id"],
        tenant_id=row["tenant_id"],
        where=DeadLetterFilter(**stored),
        up_to=row["up_to"],
        status=row["status"],
        requeued=row["requeued"],
        skipped=row["skipped"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
    )


class ReplayStore:
    """The replays table: created by the gateway, claimed and advanced by one dead-letters replica at a time."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create(self, where: DeadLetterFilter) -> Replay:
        """A pending replay of the tenant's dead letters matching ``where``, up to now."""
        if where.tenant_id is None:
            raise ValueError("a replay belongs to one tenant")
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO dead_letter_replays (id, tenant_id, filter, up_to)
            VALUES ($1, $2, $3, now())
            RETURNING {_COLUMNS}
            """,
            uuid.uuid4(),
            where.tenant_id,
            _filter_json(where),
        )
        assert row is not None
        return _replay(row)

    async def get(self, tenant_id: str, replay_id: str) -> Replay | None:
        """The tenant's replay, or None."""
        try:
            key = uuid.UUID(replay_id)
        except ValueError:
            return None
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM dead_letter_replays WHERE tenant_id = $1 AND id = $2", tenant_id, key
        )
        return None if row is None else _replay(row)

    async def claim(self, stale_after_s: float) -> Replay | None:
        """The oldest replay to run: a pending one, or a running one whose runner stopped beating."""
        row = await self._pool.fetchrow(
            f"""
            UPDATE dead_letter_replays SET status = 'running', heartbeat_at = now()
            WHERE id = (
                SELECT id FROM dead_letter_replays
                WHERE status = 'pending'
                   OR (status = 'running' AND heartbeat_at < now() - make_interval(secs => $1))
                ORDER BY created_at
                LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
            RETURNING {_COLUMNS}
            """,
            stale_after_s,
        )
        return None if row is None else _replay(row)

    async def advance(self, replay_id: str, requeued: int, skipped: int, *, done: bool) -> None:
        """Count a batch's progress (and beat the heart); ``done`` ends the replay."""
        await self._pool.execute(
            """
            UPDATE dead_letter_replays
            SET requeued = requeued + $2, skipped = skipped + $3, heartbeat_at = now(),
                status = CASE WHEN $4 THEN 'done' ELSE status END,
                finished_at = CASE WHEN $4 THEN now() ELSE finished_at END
            WHERE id = $1
            """,
            uuid.UUID(replay_id),
            requeued,
            skipped,
            done,
        )

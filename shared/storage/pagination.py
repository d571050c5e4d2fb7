"""Newest-first keyset pagination and filter conditions, shared by the API's listings.

A page is ordered by ``(created_at, id)`` descending and the next one starts strictly after the last
row shown, so rows arriving meanwhile never shift a page (no duplicates, no gaps, unlike OFFSET).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, fields
from datetime import datetime

import asyncpg
import orjson

from shared.storage.database import Pool


@dataclass(frozen=True)
class PageCursor:
    """Where a page of a newest-first listing ended: the last entry's time and id (keyset pagination)."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        """An opaque, URL-safe token for the ``cursor`` parameter."""
        return base64.urlsafe_b64encode(orjson.dumps([self.created_at.isoformat(), self.id])).decode()

    @classmethod
    def decode(cls, token: str) -> PageCursor:
        """The cursor in ``token``; raises ValueError if it is not one :meth:`encode` made."""
        try:
            created_at, entry_id = orjson.loads(base64.urlsafe_b64decode(token.encode()))
            return cls(datetime.fromisoformat(created_at), str(uuid.UUID(entry_id)))
        except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError) as error:
            raise ValueError(f"not a cursor this API made: {token!r}") from error


def sql(condition: str) -> dict[str, str]:
    """A :class:`SqlFilter` field's metadata: its condition, ``{}`` standing for the value's placeholder."""
    return {"sql": condition}


CREATED_AFTER = sql("created_at > {}")
CREATED_BEFORE = sql("created_at < {}")


class SqlFilter:
    """Base of a listing's filters, a dataclass: each field set (not None, not empty) adds ``<field> = value``
    to the condition, or the condition in the field's :func:`sql` metadata."""

    def where(self, params: list[object]) -> str:
        """The SQL condition, appending its values to ``params`` (placeholders only: no value is inlined)."""
        parts = []
        for each in fields(self):  # type: ignore[arg-type]
            value = getattr(self, each.name)
            if value is None or value == ():
                continue
            params.append(list(value) if isinstance(value, tuple) else value)
            parts.append(each.metadata.get("sql", f"{each.name} = {{}}").format(f"${len(params)}"))
        return " AND ".join(parts) or "TRUE"


async def newest_first(
    pool: Pool, *, columns: str, table: str, where: SqlFilter, limit: int, after: PageCursor | None
) -> list[asyncpg.Record]:
    """Up to ``limit`` rows of ``table`` matching ``where``, newest first, starting after ``after``.

    ``table`` needs ``created_at`` and a uuid ``id``, and an index ``(tenant_id, ..., created_at DESC,
    id DESC)`` per filter to stay fast.
    """
    params: list[object] = []
    condition = where.where(params)
    if after is not None:
        params += [after.created_at, uuid.UUID(after.id)]
        condition += f" AND (created_at, id) < (${len(params) - 1}, ${len(params)})"
    params.append(limit)
    return await pool.fetch(
        f"SELECT {columns} FROM {table} WHERE {condition} ORDER BY created_at DESC, id DESC LIMIT ${len(params)}",
        *params,
    )

"""Sealed (encrypted) columns, read and re-sealed the same way for every table holding personal data.

Each repository describes its personal columns with a :class:`SealedColumn`; :func:`reseal` walks a
table and rewrites every value that is still in clear (written before the migration that sealed its
column, or by a replica of that era) or sealed under a key other than the primary one. It is how a new
key takes over (see the README's "Data at rest"), and it is safe to run while the services write: each
row is rewritten only if it did not change meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from shared.crypto import Context, Encryptor
from shared.storage.database import Pool

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SealedColumn:
    """A value kept sealed in ``<name>_sealed``, optionally with a blind index in ``<name>_index``.

    ``<name>`` itself held it in clear before the migration that sealed it, and is NULL once the row is
    resealed; columns created later never had it (``legacy=False``). ``index_only``: only the blind index
    is kept, no sealed value (a device's user id: whoever reads the row already knows it). Columns that
    hold one value copied between them in SQL share a ``context`` (by default ``<table>.<name>``), so the
    sealed bytes open in each of them and their indexes are equal.
    """

    table: str
    name: str
    indexed: bool = False
    legacy: bool = True
    index_only: bool = False
    context_name: str | None = None

    @property
    def sealed(self) -> str:
        return f"{self.name}_sealed"

    @property
    def index(self) -> str:
        return f"{self.name}_index"

    def context(self, tenant_id: str | None) -> Context:
        return Context(self.context_name or f"{self.table}.{self.name}", tenant_id)

    def read(self, encryptor: Encryptor, row: asyncpg.Record, tenant_id: str | None) -> bytes | None:
        """The value in ``row`` (which selected :attr:`sealed` and the legacy column), opened."""
        sealed: bytes | None = None if self.index_only else row[self.sealed]
        if sealed is not None:
            return encryptor.open(sealed, self.context(tenant_id))
        return self.in_clear(row)

    def in_clear(self, row: asyncpg.Record | Mapping[str, Any]) -> bytes | None:
        """The value ``row`` still holds in clear (written before this column was sealed), if any."""
        legacy: str | bytes | None = row[self.name] if self.legacy else None
        return legacy.encode() if isinstance(legacy, str) else legacy

    def read_text(self, encryptor: Encryptor, row: asyncpg.Record, tenant_id: str | None) -> str | None:
        """:meth:`read` for text."""
        value = self.read(encryptor, row, tenant_id)
        return None if value is None else value.decode()

    def opened_row(self, encryptor: Encryptor, row: asyncpg.Record, tenant_id: str | None) -> dict[str, Any]:
        """``row`` as a dict with this (text) column opened under its own name, its sealed form left out."""
        opened = {name: value for name, value in row.items() if name != self.sealed}
        opened[self.name] = self.read_text(encryptor, row, tenant_id)
        return opened

    def seal(self, encryptor: Encryptor, value: bytes | None, tenant_id: str | None) -> bytes | None:
        return None if value is None else encryptor.seal(value, self.context(tenant_id))

    def seal_text(self, encryptor: Encryptor, value: str | None, tenant_id: str | None) -> bytes | None:
        """:meth:`seal` for text."""
        return None if value is None else encryptor.seal(value.encode(), self.context(tenant_id))

    def blind_index(self, encryptor: Encryptor, value: str, tenant_id: str | None) -> bytes:
        return encryptor.blind_index(value, self.context(tenant_id))

    def stored(self) -> list[str]:
        """The columns holding the value itself, not its index: the sealed one, the one in clear before."""
        return ([] if self.index_only else [self.sealed]) + ([self.name] if self.legacy else [])

    def selected(self) -> str:
        """The columns :meth:`read` needs, for a SELECT list."""
        return ", ".join(self.stored())

    def stale(self, primary_key_id: str) -> str:
        """SQL: this column of the row needs resealing (``primary_key_id``: a placeholder for the bytes of
        the primary key's id). The key id is read from the sealed value's header (see shared.crypto)."""
        conditions = [f"{self.name} IS NOT NULL"] if self.legacy else []
        if not self.index_only:
            key_id = f"substring({self.sealed} from 3 for get_byte({self.sealed}, 1))"
            conditions.append(f"({self.sealed} IS NOT NULL AND {key_id} <> {primary_key_id})")
        return " OR ".join(conditions)


def _update(columns: Sequence[SealedColumn], id_column: str) -> str:
    """``UPDATE``: $1 the row's id, then each column's new sealed value (and index), then each one's old
    sealed (and legacy) value, which the row must still hold (compare-and-set: a row a service rewrote
    meanwhile is already sealed under the primary key)."""
    assignments: list[str] = []
    n = 2
    for column in columns:
        if not column.index_only:
            assignments.append(f"{column.sealed} = ${n}")
            n += 1
        if column.legacy:
            assignments.append(f"{column.name} = NULL")
        if column.indexed:
            # NULL when there is no value to index (erased): the index stays, as erasure left it.
            assignments.append(f"{column.index} = coalesce(${n}, {column.index})")
            n += 1
    stored = [name for column in columns for name in column.stored()]
    unchanged = [f"{name} IS NOT DISTINCT FROM ${n + i}" for i, name in enumerate(stored)]
    return (
        f"UPDATE {columns[0].table} SET {', '.join(assignments)} WHERE {id_column} = $1 AND {' AND '.join(unchanged)}"
    )


def _parameters(
    encryptor: Encryptor, columns: Sequence[SealedColumn], row: asyncpg.Record, id_column: str
) -> list[object]:
    tenant_id = row["tenant_id"]
    params: list[object] = [row[id_column]]
    for column in columns:
        value = column.read(encryptor, row, tenant_id)
        if not column.index_only:
            params.append(column.seal(encryptor, value, tenant_id))
        if column.indexed:
            params.append(None if value is None else column.blind_index(encryptor, value.decode(), tenant_id))
    return params + [row[stored] for column in columns for stored in column.stored()]


async def _rewrite(pool: Pool, update: str, table: str, updates: list[list[object]]) -> int:
    """Run ``update`` for each row; returns how many were rewritten."""
    try:
        await pool.executemany(update, updates)
        return len(updates)
    except asyncpg.UniqueViolationError:
        pass
    # A value already taken by a row the current release wrote (the same user id, token or address written
    # by both releases during a rolling upgrade): that row is left as it is, for an operator to resolve,
    # and the others go on.
    rewritten = 0
    for params in updates:
        try:
            await pool.execute(update, *params)
            rewritten += 1
        except asyncpg.UniqueViolationError as error:
            logger.warning("reseal_conflict", table=table, id=str(params[0]), constraint=error.constraint_name)
    return rewritten


async def reseal(
    pool: Pool,
    encryptor: Encryptor,
    columns: Sequence[SealedColumn],
    id_type: str,
    batch_size: int = 500,
    *,
    id_column: str = "id",
) -> int:
    """Seal every value of one table's ``columns`` under the primary key, indexes recomputed; returns
    how many rows were rewritten. ``id_column`` is the table's primary key, of type ``id_type``.
    Values that do not open (a key already removed) raise DecryptionError."""
    table = columns[0].table
    selected = ", ".join(column.selected() for column in columns)
    # Postgres picks the stale rows: a table already sealed under the primary key is scanned, not shipped.
    stale = " OR ".join(f"({column.stale('$3')})" for column in columns)
    # $3, the primary key's id, only where a column keeps sealed values (an unused parameter has no type).
    primary = [encryptor.primary_key_id.encode()] if any(not column.index_only for column in columns) else []
    update = _update(columns, id_column)
    rewritten = 0
    last: object = None
    while True:
        rows = await pool.fetch(
            f"""
            SELECT {id_column}, tenant_id, {selected} FROM {table}
            WHERE ($1::{id_type} IS NULL OR {id_column} > $1) AND ({stale}) ORDER BY {id_column} LIMIT $2
            """,
            last,
            batch_size,
            *primary,
        )
        if not rows:
            return rewritten
        last = rows[-1][id_column]
        done = await _rewrite(pool, update, table, [_parameters(encryptor, columns, row, id_column) for row in rows])
        rewritten += done
        logger.info("rows_resealed", table=table, rows=done)

"""Sealed (encrypted) columns, read and re-sealed the same way for every table holding personal data.

Each repository (devices, suppressions, dead letters) describes its sealed columns with a
:class:`SealedColumn`; :func:`reseal` walks a table and rewrites every value that is still in clear
(written before migration 0011, or by a replica of that era) or sealed under a key other than the
primary one. It is how a new key takes over (see the README's "Data at rest"), and it is safe to run
while the services write: each row is rewritten only if it did not change meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import structlog

from shared.crypto import Context, Encryptor
from shared.storage.database import Pool

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SealedColumn:
    """A value kept sealed in ``<name>_sealed``, optionally with a blind index in ``<name>_index``.

    ``<name>`` itself held it in clear before migration 0011, and is NULL once the row is resealed;
    tables created later never had it (``legacy=False``).
    """

    table: str
    name: str
    indexed: bool = False
    legacy: bool = True

    @property
    def sealed(self) -> str:
        return f"{self.name}_sealed"

    @property
    def index(self) -> str:
        return f"{self.name}_index"

    def context(self, tenant_id: str | None) -> Context:
        return Context(f"{self.table}.{self.name}", tenant_id)

    def read(self, encryptor: Encryptor, row: asyncpg.Record, tenant_id: str | None) -> bytes | None:
        """The value in ``row`` (which selected :attr:`sealed` and the legacy column), opened."""
        sealed: bytes | None = row[self.sealed]
        if sealed is not None:
            return encryptor.open(sealed, self.context(tenant_id))
        legacy: str | bytes | None = row[self.name] if self.legacy else None
        return legacy.encode() if isinstance(legacy, str) else legacy

    def seal(self, encryptor: Encryptor, value: bytes | None, tenant_id: str | None) -> bytes | None:
        return None if value is None else encryptor.seal(value, self.context(tenant_id))

    def blind_index(self, encryptor: Encryptor, value: str, tenant_id: str | None) -> bytes:
        return encryptor.blind_index(value, self.context(tenant_id))

    def selected(self) -> str:
        """The columns :meth:`read` needs, for a SELECT list."""
        return f"{self.sealed}, {self.name}" if self.legacy else self.sealed


def _stale(encryptor: Encryptor, column: SealedColumn, row: asyncpg.Record) -> bool:
    sealed: bytes | None = row[column.sealed]
    in_clear = column.legacy and row[column.name] is not None
    return in_clear or (sealed is not None and not encryptor.is_current(sealed))


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
    assignments: list[str] = []
    unchanged: list[str] = []
    # Parameters: $1 the id, then each column's new sealed value (and index), then each one's old value.
    n = 2
    for column in columns:
        assignments.append(f"{column.sealed} = ${n}" + (f", {column.name} = NULL" if column.legacy else ""))
        n += 1
        if column.indexed:
            assignments.append(f"{column.index} = ${n}")
            n += 1
    for column in columns:
        # Compare-and-set: a row a service rewrote meanwhile is already sealed under the primary key.
        unchanged.append(f"{column.sealed} IS NOT DISTINCT FROM ${n}")
        n += 1
    update = f"UPDATE {table} SET {', '.join(assignments)} WHERE {id_column} = $1 AND {' AND '.join(unchanged)}"
    rewritten = 0
    last: object = None
    while True:
        rows = await pool.fetch(
            f"""
            SELECT {id_column}, tenant_id, {selected} FROM {table}
            WHERE $1::{id_type} IS NULL OR {id_column} > $1 ORDER BY {id_column} LIMIT $2
            """,
            last,
            batch_size,
        )
        if not rows:
            return rewritten
        last = rows[-1][id_column]
        updates: list[list[object]] = []
        for row in rows:
            if not any(_stale(encryptor, column, row) for column in columns):
                continue
            params: list[object] = [row[id_column]]
            for column in columns:
                value = column.read(encryptor, row, row["tenant_id"])
                params.append(column.seal(encryptor, value, row["tenant_id"]))
                if column.indexed:
                    assert value is not None
                    params.append(column.blind_index(encryptor, value.decode(), row["tenant_id"]))
            params += [row[column.sealed] for column in columns]
            updates.append(params)
        if updates:
            await pool.executemany(update, updates)
            rewritten += len(updates)
            logger.info("rows_resealed", table=table, rows=len(updates))

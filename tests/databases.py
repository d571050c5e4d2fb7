"""Throwaway Postgres databases for tests, and migrated ones handed out again once emptied.

Creating a database and running every migration took about 2.5 s a test here (336 integration tests
ask for one), copying a migrated template about 2.4 s with its drop: creating a database copies and
syncs a whole catalog. Emptying a used database's tables takes milliseconds, so each worker keeps the
migrated databases its tests gave back and hands them out again, as empty as a fresh one: every table
but ``schema_migrations`` emptied, every sequence restarted. A database whose schema a test changed
is dropped instead of handed out again.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from graphlib import TopologicalSorter
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.storage.migrate import migrate

# Everything a migration defines, in one value: a test that changed it gave back a database that
# would not be as a fresh one.
_SCHEMA_FINGERPRINT = """
SELECT md5(string_agg(item, ',' ORDER BY item)) FROM (
    SELECT format('%s.%s:%s', n.nspname, c.relname, c.relkind) AS item
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
    UNION ALL
    SELECT format('%s.%s:%s:%s', a.attrelid::regclass, a.attname, a.atttypid, a.attnotnull)
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('%s:%s:%s', conrelid::regclass, conname, pg_get_constraintdef(oid)) FROM pg_constraint
    WHERE connamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
    UNION ALL
    SELECT format('%s:%s:%s', tgrelid::regclass, tgname, tgenabled) FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL
    SELECT format('%s:%s', p.oid::regprocedure, md5(p.prosrc)) FROM pg_proc p
    WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
) AS schema
"""
_TABLES = """
SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> 'schema_migrations'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
"""
_FOREIGN_KEYS = "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint WHERE contype = 'f'"
_SEQUENCES = "SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences"


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _on_server(server_url: str, statement: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def create_database(server_url: str, name: str) -> str:
    """Create an empty database ``name`` on the server of ``server_url``; its URL."""
    await _on_server(server_url, f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """Drop database ``name``, cutting the connections still open on it (a leaked pool cannot keep it)."""
    await _on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def throwaway_database(server_url: str) -> AsyncIterator[str]:
    """A fresh, empty ``herald_test_<hex>`` database's URL, dropped afterwards."""
    name = f"herald_test_{uuid.uuid4().hex}"
    url = await create_database(server_url, name)
    try:
        yield url
    finally:
        await drop_database(server_url, name)


class MigratedDatabases:
    """Migrated test databases on one server: new ones while none is spare, given back ones emptied."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._spare: list[str] = []
        self._created: list[str] = []
        self._fingerprint: str | None = None
        self._delete_order: list[str] = []
        self._sequences: list[str] = []

    @asynccontextmanager
    async def database(self) -> AsyncIterator[str]:
        """The URL of a migrated database with empty tables, for one test."""
        name = self._spare.pop() if self._spare else await self._create()
        try:
            yield with_database(self.server_url, name)
        finally:
            await self._give_back(name)

    async def _create(self) -> str:
        name = f"herald_test_{uuid.uuid4().hex}"
        self._created.append(name)
        url = await create_database(self.server_url, name)
        await migrate(url)
        if self._fingerprint is None:
            connection = await asyncpg.connect(url)
            try:
                self._fingerprint = await connection.fetchval(_SCHEMA_FINGERPRINT)
                self._delete_order = await _delete_order(connection)
                self._sequences = [row[0] for row in await connection.fetch(_SEQUENCES)]
            finally:
                await connection.close()
        return name

    async def _give_back(self, name: str) -> None:
        connection = await asyncpg.connect(with_database(self.server_url, name))
        try:
            # Whatever the test left connected (a service's pool) could still write after the reset.
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            if await connection.fetchval(_SCHEMA_FINGERPRINT) != self._fingerprint:
                reusable = False
            else:
                async with connection.transaction():
                    for table in self._delete_order:
                        await connection.execute(f"DELETE FROM {table}")
                    for sequence in self._sequences:
                        await connection.execute(f"ALTER SEQUENCE {sequence} RESTART")
                reusable = True
        finally:
            await connection.close()
        if reusable:
            self._spare.append(name)
        else:
            self._created.remove(name)
            await drop_database(self.server_url, name)

    async def drop_all(self) -> None:
        """Drop every database this handed out."""
        for name in self._created:
            await drop_database(self.server_url, name)
        self._created.clear()
        self._spare.clear()


async def _delete_order(connection: asyncpg.Connection) -> list[str]:
    """Every table (but ``schema_migrations``), referencing tables before the tables they reference."""
    tables = {row[0] for row in await connection.fetch(_TABLES)}
    sorter: TopologicalSorter[str] = TopologicalSorter({table: () for table in tables})
    for referencing, referenced in await connection.fetch(_FOREIGN_KEYS):
        if referencing != referenced and referencing in tables and referenced in tables:
            sorter.add(referenced, referencing)
    return list(sorter.static_order())

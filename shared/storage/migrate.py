"""Versioned schema migrations: ``migrations/NNNN_name.sql`` applied once each, in order.

Each file runs in its own transaction and is recorded in ``schema_migrations``. A session-level
advisory lock serialises migrators, so several services starting at once apply each file once.

Run ``python -m shared.storage.migrate`` to create the database named by ``HERALD_DATABASE_URL``
if it is missing and bring its schema up to date.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import structlog

from shared.config import HeraldSettings, load_settings
from shared.storage.reseal import reseal_database

logger = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary but fixed: every Herald migrator must contend for the same advisory lock.
ADVISORY_LOCK_ID = 0x48455241_4C440001
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     int PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One migration file: its version, its name (the file name without ``.sql``) and its SQL."""

    version: int
    name: str
    sql: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in ``directory`` ordered by version; raises ValueError for a misnamed or duplicate file."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
        version = int(match["version"])
        if version in migrations:
            raise ValueError(f"two migrations share version {version}: {migrations[version].name}, {path.stem}")
        migrations[version] = Migration(version=version, name=path.stem, sql=path.read_text())
    return [migrations[version] for version in sorted(migrations)]


async def migrate(dsn: str) -> list[str]:
    """Apply every pending migration to the database at ``dsn``; returns the names applied, in order."""
    migrations = load_migrations()
    applied: list[str] = []
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_ID)
        try:
            await connection.execute(_CREATE_TABLE)
            done = {row["version"] for row in await connection.fetch("SELECT version FROM schema_migrations")}
            for migration in migrations:
                if migration.version in done:
                    continue
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await connection.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                logger.info("migration_applied", version=migration.version, name=migration.name)
                applied.append(migration.name)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_ID)
    finally:
        await connection.close()
    return applied


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def ensure_database(dsn: str) -> bool:
    """Create the database named in ``dsn`` unless it exists (via the ``postgres`` database); True if created."""
    parts = urlsplit(dsn)
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError("the database URL names no database")
    admin_dsn = urlunsplit(parts._replace(path="/postgres"))
    connection = await asyncpg.connect(admin_dsn)
    try:
        if await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        # CREATE DATABASE takes no parameters; the name is quoted as an identifier instead.
        try:
            await connection.execute(f"CREATE DATABASE {_quote_identifier(name)}")
        except asyncpg.DuplicateDatabaseError:
            return False
    finally:
        await connection.close()
    logger.info("database_created", database=name)
    return True


async def _main(dsn: str) -> None:
    await ensure_database(dsn)
    applied = await migrate(dsn)
    logger.info("migrations_done", applied=applied)


def main() -> None:
    """Command-line entry point: create the database if needed and apply pending migrations."""
    settings = load_settings(HeraldSettings)
    asyncio.run(_main(settings.database_url))
    # Values stored in clear before migration 0011 (or under a retired key) are sealed now, before the
    # services that only look rows up by blind index start.
    if settings.encryption_keys is not None:
        logger.info("reseal_done", rewritten=asyncio.run(reseal_database(settings)))


if __name__ == "__main__":
    main()

"""Dump a Herald database with a manifest, verify a dump, restore one into an empty database."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import structlog

from infra.backup.libpq import BackupError, Connection, Refused, run
from shared.storage.migrate import ensure_database

logger = structlog.get_logger(__name__)

MANIFEST_FORMAT = 1
MANIFEST_SUFFIX = ".manifest.json"
# Every ordinary table outside the system schemas: what pg_dump dumps the rows of.
_TABLES = """
SELECT n.nspname, c.relname, format('%I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2
"""
# Any relation at all outside the system schemas: a database with one is not empty.
_RELATIONS = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
"""
# A line of `pg_restore --list` for a table's rows: "<id>; <oid> <oid> TABLE DATA <schema> <table> <owner>".
_TABLE_DATA = re.compile(r"^\d+; \d+ \d+ TABLE DATA (\S+) (\S+) ", re.MULTILINE)
_HASH_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Manifest:
    """What a dump holds, written next to it once it is complete."""

    format: int
    created_at: str
    database: str
    server_version: str
    # The latest migration applied (shared.storage.migrate), None for a database Herald never migrated.
    schema_version: int | None
    sha256: str
    # "schema.table" -> rows, counted in the snapshot pg_dump dumped.
    tables: dict[str, int]

    @staticmethod
    def path_of(dump: Path) -> Path:
        return dump.with_name(dump.name + MANIFEST_SUFFIX)

    @classmethod
    def load(cls, dump: Path) -> Manifest:
        path = cls.path_of(dump)
        if not path.is_file():
            raise BackupError(f"{path} is missing: the dump is incomplete, or was not made by infra.backup")
        manifest = cls(**json.loads(path.read_text()))
        if manifest.format != MANIFEST_FORMAT:
            raise BackupError(f"{path} has manifest format {manifest.format}; this tool reads {MANIFEST_FORMAT}")
        return manifest

    def save(self, dump: Path) -> None:
        path = self.path_of(dump)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(asdict(self), indent=2) + "\n")
        partial.replace(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


async def row_counts(connection: asyncpg.Connection) -> dict[str, int]:
    """Rows of every table, by "schema.table"."""
    counts: dict[str, int] = {}
    for schema, table, quoted in await connection.fetch(_TABLES):
        counts[f"{schema}.{table}"] = await connection.fetchval(f"SELECT count(*) FROM ONLY {quoted}")
    return counts


async def dump(database_url: str, path: Path, *, bin_dir: Path | None = None) -> Manifest:
    """pg_dump the database into ``path`` (custom format), write its manifest, and verify both."""
    source = Connection.of(database_url)
    # Written under another name and renamed once whole: an interrupted dump never passes for a backup.
    partial = path.with_name(path.name + ".partial")
    connection = await asyncpg.connect(database_url)
    try:
        # pg_dump joins this transaction's snapshot, so the counts are those of the rows it dumps.
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await connection.fetchval("SELECT pg_export_snapshot()")
            tables = await row_counts(connection)
            schema_version = (
                await connection.fetchval("SELECT max(version) FROM public.schema_migrations")
                if "public.schema_migrations" in tables
                else None
            )
            server_version = await connection.fetchval("SHOW server_version")
            await run(
                "pg_dump",
                ["--format=custom", f"--snapshot={snapshot}", f"--file={partial}", f"--dbname={source.url}"],
                bin_dir=bin_dir,
                password=source.password,
            )
    finally:
        await connection.close()
    partial.replace(path)
    manifest = Manifest(
        format=MANIFEST_FORMAT,
        created_at=datetime.now(UTC).isoformat(),
        database=source.database,
        server_version=server_version,
        schema_version=schema_version,
        sha256=sha256_of(path),
        tables=tables,
    )
    manifest.save(path)
    await verify(path, bin_dir=bin_dir)
    logger.info("backup_written", path=str(path), rows=sum(tables.values()), schema_version=schema_version)
    return manifest


async def verify(path: Path, *, bin_dir: Path | None = None) -> Manifest:
    """Check that ``path`` is the dump its manifest describes: same SHA-256, readable by pg_restore, rows
    of every table in it."""
    manifest = Manifest.load(path)
    if sha256_of(path) != manifest.sha256:
        raise BackupError(f"{path} does not match the SHA-256 in its manifest: it is damaged or was replaced")
    listing = await run("pg_restore", ["--list", str(path)], bin_dir=bin_dir)
    dumped = {f"{schema}.{table}" for schema, table in _TABLE_DATA.findall(listing)}
    missing = sorted(manifest.tables.keys() - dumped)
    if missing:
        raise BackupError(f"{path} lacks the rows of {', '.join(missing)}")
    logger.info("backup_verified", path=str(path), tables=len(manifest.tables), sha256=manifest.sha256)
    return manifest


async def restore(
    path: Path,
    database_url: str,
    *,
    force: bool = False,
    no_owner: bool = False,
    jobs: int = 1,
    bin_dir: Path | None = None,
) -> Manifest:
    """Verify the dump at ``path``, restore it into the database (created if missing), and check that every
    table holds the rows the manifest counted.

    Refuses a database that already holds any table, view or sequence unless ``force``; then the dump's
    objects are dropped and created again (other objects stay).
    """
    manifest = await verify(path, bin_dir=bin_dir)
    target = Connection.of(database_url)
    await ensure_database(database_url)
    connection = await asyncpg.connect(database_url)
    try:
        relations = await connection.fetchval(_RELATIONS)
    finally:
        await connection.close()
    if relations and not force:
        raise Refused(
            f"database {target.database!r} is not empty ({relations} relations): restore into a new database, "
            "or pass --force to replace what the dump holds"
        )
    arguments = ["--exit-on-error", f"--dbname={target.url}"]
    if relations:
        arguments += ["--clean", "--if-exists"]
    if no_owner:
        arguments += ["--no-owner", "--no-privileges"]
    # One transaction: a failed restore leaves the database as it was. Parallel jobs cannot share one.
    arguments += [f"--jobs={jobs}"] if jobs > 1 else ["--single-transaction"]
    await run("pg_restore", [*arguments, str(path)], bin_dir=bin_dir, password=target.password)
    connection = await asyncpg.connect(database_url)
    try:
        restored = await row_counts(connection)
    finally:
        await connection.close()
    wrong = [
        f"{table}: {restored.get(table, 'missing')} rows, the dump has {rows}"
        for table, rows in manifest.tables.items()
        if restored.get(table) != rows
    ]
    if wrong:
        raise BackupError("the restored database differs from the dump: " + "; ".join(wrong))
    logger.info(
        "backup_restored",
        path=str(path),
        database=target.database,
        rows=sum(manifest.tables.values()),
        schema_version=manifest.schema_version,
    )
    return manifest

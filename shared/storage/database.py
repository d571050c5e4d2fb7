"""The asyncpg connection pool every service uses, and its readiness check."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
import orjson

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

# A statement running longer than this is a bug or an overloaded server; fail it rather than hang a consumer.
COMMAND_TIMEOUT_SECONDS = 30.0
# jsonb's binary wire format is a version byte followed by the JSON text.
_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(connection: Connection) -> None:
    await connection.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=_decode_jsonb, format="binary"
    )
    await connection.set_type_codec(
        "json", schema="pg_catalog", encoder=orjson.dumps, decoder=orjson.loads, format="binary"
    )


async def create_pool(dsn: str, size: int) -> Pool:
    """Open a pool of ``size`` connections that encode and decode json/jsonb with orjson."""
    # A fixed size keeps the server's connection budget predictable: replicas x size.
    return await asyncpg.create_pool(
        dsn,
        min_size=size,
        max_size=size,
        command_timeout=COMMAND_TIMEOUT_SECONDS,
        init=_init_connection,
    )


async def check(pool: Pool) -> None:
    """Raise unless the database answers a trivial query (readiness probe)."""
    await pool.fetchval("SELECT 1")

"""Producer keys in Postgres (migration 0023): the gateway creates, lists and revokes them; ingest asks
which keys are live. The secrets are never stored (see :mod:`shared.producer_keys`)."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from shared.storage.database import Pool

KEY_ID_ALPHABET = string.ascii_letters + string.digits
# 20 base62 characters: ids are not secret, only unique and unguessable enough not to collide.
KEY_ID_LENGTH = 20
# Answers kept at most: the key ids come from producers, so a flood of made-up ones must not grow memory.
MAX_CACHED_KEYS = 10_000
_COLUMNS = "id, tenant_id, name, created_at, revoked_at"


@dataclass(frozen=True)
class ProducerKeyView:
    """A producer key as its tenant's admins see it."""

    id: str
    tenant_id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


def new_key_id() -> str:
    return "pk" + "".join(secrets.choice(KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH))


class ProducerKeyRepository:
    """The tenants' producer keys."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def create(self, tenant_id: str, name: str) -> ProducerKeyView:
        row = await self._pool.fetchrow(
            f"INSERT INTO producer_keys (id, tenant_id, name) VALUES ($1, $2, $3) RETURNING {_COLUMNS}",
            new_key_id(),
            tenant_id,
            name,
        )
        assert row is not None
        return ProducerKeyView(**row)

    async def list_keys(self, tenant_id: str) -> list[ProducerKeyView]:
        """The tenant's keys, revoked ones included, newest first."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM producer_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id", tenant_id
        )
        return [ProducerKeyView(**row) for row in rows]

    async def revoke(self, tenant_id: str, key_id: str) -> bool:
        """Revoke a live key of the tenant; False when there is none."""
        revoked = await self._pool.fetchval(
            "UPDATE producer_keys SET revoked_at = now() WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL "
            "RETURNING id",
            tenant_id,
            key_id,
        )
        return revoked is not None

    async def live(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the ``(tenant id, key id)`` pairs are live keys (one query for a batch)."""
        if not keys:
            return set()
        tenants, ids = zip(*keys, strict=True)
        rows = await self._pool.fetch(
            "SELECT k.tenant_id, k.id FROM producer_keys k "
            "JOIN unnest($1::text[], $2::text[]) AS wanted(tenant_id, id) USING (tenant_id, id) "
            "WHERE k.revoked_at IS NULL",
            list(tenants),
            list(ids),
        )
        return {(row["tenant_id"], row["id"]) for row in rows}


class LiveProducerKeys:
    """:meth:`ProducerKeyRepository.live` with answers kept for ``ttl_s``: a revocation takes effect
    within that long, and a busy ingest asks Postgres about each key once per period, not per batch."""

    def __init__(self, keys: ProducerKeyRepository, ttl_s: float) -> None:
        self._keys = keys
        self._ttl_s = ttl_s
        self._known: dict[tuple[str, str], tuple[bool, float]] = {}

    async def live(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        now = time.monotonic()
        fresh = {key: entry[0] for key in keys if (entry := self._known.get(key)) and entry[1] > now}
        asked = [key for key in set(keys) if key not in fresh]
        answered = await self._keys.live(asked)
        if len(self._known) + len(asked) > MAX_CACHED_KEYS:
            self._known.clear()
        for key in asked:
            self._known[key] = (key in answered, now + self._ttl_s)
        return {key for key, is_live in fresh.items() if is_live} | answered

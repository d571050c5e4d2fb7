"""Tenants and their API keys in Postgres (stored hashed)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from shared.storage.database import Pool

# The prefix is stored in clear so an operator can tell keys apart without seeing the secret.
KEY_PREFIX_LENGTH = 12


def hash_secret(secret: str) -> bytes:
    """The stored form of an API key: its SHA-256 (keys are long random strings, so no salt or stretching)."""
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class ApiKeyView:
    """An API key as its tenant's admins see it: never the secret, only its first characters."""

    id: str
    name: str
    role: str
    # None: everything the role allows.
    scopes: list[str] | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class LiveKey:
    """What authenticating a live API key yields."""

    id: str
    tenant_id: str
    role: str
    scopes: frozenset[str] | None


_KEY_COLUMNS = "id::text, name, role, scopes, prefix, created_at, last_used_at, revoked_at"


class ApiKeyRepository:
    """Tenants and their hashed API keys."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def ensure_tenant(self, tenant_id: str, name: str) -> None:
        """Create the tenant unless it exists (an existing tenant keeps its name)."""
        await self._pool.execute(
            "INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            tenant_id,
            name,
        )

    async def create_key(
        self, tenant_id: str, name: str, secret: str, role: str = "admin", scopes: Sequence[str] | None = None
    ) -> ApiKeyView | None:
        """Store an API key for ``tenant_id``; storing the same secret again changes nothing (None).

        A tenant known only from its JWTs (no row yet) gets one, named by its id: its admins may
        create keys from their first request on.
        """
        row = await self._pool.fetchrow(
            f"""
            WITH tenant AS (INSERT INTO tenants (id, name) VALUES ($2, $2) ON CONFLICT (id) DO NOTHING)
            INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, role, scopes)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (key_hash) DO NOTHING
            RETURNING {_KEY_COLUMNS}
            """,
            uuid.uuid4(),
            tenant_id,
            name,
            secret[:KEY_PREFIX_LENGTH],
            hash_secret(secret),
            role,
            None if scopes is None else sorted(set(scopes)),
        )
        return None if row is None else ApiKeyView(*row.values())

    async def list_keys(self, tenant_id: str) -> list[ApiKeyView]:
        """The tenant's keys, revoked ones included, newest first."""
        rows = await self._pool.fetch(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id",
            tenant_id,
        )
        return [ApiKeyView(*row.values()) for row in rows]

    async def revoke_key(self, secret: str) -> bool:
        """Revoke the key with this secret; False if there is no such live key."""
        revoked = await self._pool.fetchval(
            "UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1 AND revoked_at IS NULL RETURNING true",
            hash_secret(secret),
        )
        return revoked is not None

    async def revoke_by_id(self, tenant_id: str, key_id: str) -> bytes | None:
        """Revoke the tenant's live key ``key_id``; its hash (to evict it from caches), or None if none."""
        try:
            parsed = uuid.UUID(key_id)
        except ValueError:
            return None
        key_hash: bytes | None = await self._pool.fetchval(
            """
            UPDATE api_keys SET revoked_at = now()
            WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL
            RETURNING key_hash
            """,
            parsed,
            tenant_id,
        )
        return key_hash

    async def find_key(self, secret: str) -> LiveKey | None:
        """The live (non-revoked) key with this secret, marked as used now; None if there is none."""
        row = await self._pool.fetchrow(
            """
            UPDATE api_keys SET last_used_at = now()
            WHERE key_hash = $1 AND revoked_at IS NULL
            RETURNING id::text, tenant_id, role, scopes
            """,
            hash_secret(secret),
        )
        if row is None:
            return None
        scopes = row["scopes"]
        return LiveKey(row["id"], row["tenant_id"], row["role"], None if scopes is None else frozenset(scopes))

    async def find_tenant(self, secret: str) -> str | None:
        """The tenant owning this secret if it is a live (non-revoked) key, else None."""
        key = await self.find_key(secret)
        return None if key is None else key.tenant_id

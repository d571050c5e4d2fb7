"""Push devices: registered through the API, looked up by the router, disabled by the push sender.

The token is personal data: it is stored sealed (``token_sealed``), found by its blind index
(``token_index``, unique per tenant), and this module alone opens it (see :mod:`shared.storage.sealed`).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from shared.crypto import Encryptor
from shared.storage.database import Pool
from shared.storage.sealed import SealedColumn, reseal

Platform = Literal["android", "ios", "web"]
TOKEN = SealedColumn("devices", "token", indexed=True)
_COLUMNS = (
    f"id::text, tenant_id, user_id, platform, {TOKEN.selected()}, disabled_at, disabled_reason, created_at, updated_at"
)


@dataclass(frozen=True)
class Device:
    """One device of one user; ``disabled_at`` is set once it must never be used again."""

    id: str
    user_id: str
    platform: Platform
    token: str
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class DeviceRepository:
    """Every query is scoped to one tenant."""

    def __init__(self, pool: Pool, encryptor: Encryptor) -> None:
        self._pool = pool
        self._encryptor = encryptor

    def _device(self, row: asyncpg.Record) -> Device:
        token = TOKEN.read(self._encryptor, row, row["tenant_id"])
        assert token is not None
        return Device(
            id=row["id"],
            user_id=row["user_id"],
            platform=row["platform"],
            token=token.decode(),
            disabled_at=row["disabled_at"],
            disabled_reason=row["disabled_reason"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def _index(self, tenant_id: str, token: str) -> bytes:
        return TOKEN.blind_index(self._encryptor, token, tenant_id)

    async def register(self, tenant_id: str, user_id: str, platform: Platform, token: str) -> Device:
        """Register a token for a user; registering a known token again moves it here and re-enables it."""
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO devices (id, tenant_id, user_id, platform, token_sealed, token_index)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (tenant_id, token_index) DO UPDATE
                SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
                    disabled_at = NULL, disabled_reason = NULL, updated_at = now()
            RETURNING {_COLUMNS}
            """,
            uuid.uuid4(),
            tenant_id,
            user_id,
            platform,
            TOKEN.seal(self._encryptor, token.encode(), tenant_id),
            self._index(tenant_id, token),
        )
        assert row is not None
        return self._device(row)

    async def for_user(self, tenant_id: str, user_id: str, *, active_only: bool = True) -> list[Device]:
        """A user's devices, oldest first."""
        rows = await self._pool.fetch(
            f"""
            SELECT {_COLUMNS} FROM devices
            WHERE tenant_id = $1 AND user_id = $2 AND (NOT $3 OR disabled_at IS NULL)
            ORDER BY created_at, id
            """,
            tenant_id,
            user_id,
            active_only,
        )
        return [self._device(row) for row in rows]

    async def active_for_users(self, users: Collection[tuple[str, str]]) -> dict[tuple[str, str], list[Device]]:
        """The active devices of many ``(tenant_id, user_id)`` pairs in one query, oldest first."""
        if not users:
            return {}
        tenants, user_ids = zip(*users, strict=True)
        rows = await self._pool.fetch(
            f"""
            SELECT {_COLUMNS} FROM devices
            WHERE (tenant_id, user_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
              AND disabled_at IS NULL
            ORDER BY created_at, id
            """,
            list(tenants),
            list(user_ids),
        )
        found: dict[tuple[str, str], list[Device]] = {}
        for row in rows:
            found.setdefault((row["tenant_id"], row["user_id"]), []).append(self._device(row))
        return found

    async def remove(self, tenant_id: str, user_id: str, device_id: str) -> bool:
        """Disable one of the user's devices (soft delete); False if there is no such active device."""
        try:
            device_uuid = uuid.UUID(device_id)
        except ValueError:
            return False
        removed = await self._pool.fetchval(
            """
            UPDATE devices SET disabled_at = now(), disabled_reason = 'removed through the API', updated_at = now()
            WHERE tenant_id = $1 AND user_id = $2 AND id = $3 AND disabled_at IS NULL
            RETURNING true
            """,
            tenant_id,
            user_id,
            device_uuid,
        )
        return removed is not None

    async def disable_token(self, tenant_id: str, token: str, reason: str) -> bool:
        """Never use this token again (the provider said it is unregistered or invalid)."""
        disabled = await self._pool.fetchval(
            """
            UPDATE devices SET disabled_at = now(), disabled_reason = $3, updated_at = now()
            WHERE tenant_id = $1 AND token_index = $2 AND disabled_at IS NULL
            RETURNING true
            """,
            tenant_id,
            self._index(tenant_id, token),
            reason,
        )
        return disabled is not None

    async def reseal(self, batch_size: int = 500) -> int:
        """Re-encrypt every token not yet under the primary key (or still in clear); returns how many."""
        return await reseal(self._pool, self._encryptor, [TOKEN], "uuid", batch_size)

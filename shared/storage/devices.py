"""Push devices: registered through the API, looked up by the router, disabled by the push sender."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from shared.storage.database import Pool

Platform = Literal["android", "ios", "web"]
_COLUMNS = "id::text, user_id, platform, token, disabled_at, disabled_reason, created_at, updated_at"


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


def _device(row: asyncpg.Record) -> Device:
    return Device(*row.values())


class DeviceRepository:
    """Every query is scoped to one tenant."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def register(self, tenant_id: str, user_id: str, platform: Platform, token: str) -> Device:
        """Register a token for a user; registering a known token again moves it here and re-enables it."""
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO devices (id, tenant_id, user_id, platform, token)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (tenant_id, token) DO UPDATE
                SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform,
                    disabled_at = NULL, disabled_reason = NULL, updated_at = now()
            RETURNING {_COLUMNS}
            """,
            uuid.uuid4(),
            tenant_id,
            user_id,
            platform,
            token,
        )
        assert row is not None
        return _device(row)

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
        return [_device(row) for row in rows]

    async def active_for_users(self, users: Collection[tuple[str, str]]) -> dict[tuple[str, str], list[Device]]:
        """The active devices of many ``(tenant_id, user_id)`` pairs in one query, oldest first."""
        if not users:
            return {}
        tenants, user_ids = zip(*users, strict=True)
        rows = await self._pool.fetch(
            f"""
            SELECT tenant_id, {_COLUMNS} FROM devices
            WHERE (tenant_id, user_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
              AND disabled_at IS NULL
            ORDER BY created_at, id
            """,
            list(tenants),
            list(user_ids),
        )
        found: dict[tuple[str, str], list[Device]] = {}
        for row in rows:
            tenant_id, *device = row.values()
            found.setdefault((tenant_id, row["user_id"]), []).append(Device(*device))
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
            WHERE tenant_id = $1 AND token = $2 AND disabled_at IS NULL
            RETURNING true
            """,
            tenant_id,
            token,
            reason,
        )
        return disabled is not None

"""Push devices: registered through the API, looked up by the router, disabled by the push sender.

The token is personal data: it is stored sealed (``token_sealed``), found by its blind index
(``token_index``, unique per tenant), and this module alone opens it (see :mod:`shared.storage.sealed`).
The user id is kept only as its blind index (``user_id_index``, in the context recipients index theirs):
every lookup names the user, so the id is never read back. Why a device was disabled (a provider's answer, which can
quote the token) is sealed too (``disabled_reason_sealed``).
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
from shared.storage.recipients import USER_ID_CONTEXT
from shared.storage.sealed import SealedColumn, reseal

Platform = Literal["android", "ios", "web"]
TOKEN = SealedColumn("devices", "token", indexed=True)
USER_ID = SealedColumn("devices", "user_id", indexed=True, index_only=True, context_name=USER_ID_CONTEXT)
DISABLED_REASON = SealedColumn("devices", "disabled_reason")
_COLUMNS = (
    f"id::text, tenant_id, user_id_index, platform, {TOKEN.selected()}, disabled_at, "
    f"{DISABLED_REASON.selected()}, created_at, updated_at"
)
REMOVED = "removed through the API"


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

    def _device(self, row: asyncpg.Record, user_id: str) -> Device:
        """The device of ``row``, which belongs to ``user_id`` (the caller looked it up by that id)."""
        token = TOKEN.read_text(self._encryptor, row, row["tenant_id"])
        assert token is not None
        return Device(
            id=row["id"],
            user_id=user_id,
            platform=row["platform"],
            token=token,
            disabled_at=row["disabled_at"],
            disabled_reason=DISABLED_REASON.read_text(self._encryptor, row, row["tenant_id"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def _index(self, tenant_id: str, token: str) -> bytes:
        return TOKEN.blind_index(self._encryptor, token, tenant_id)

    def _user(self, tenant_id: str, user_id: str) -> bytes:
        return USER_ID.blind_index(self._encryptor, user_id, tenant_id)

    async def register(self, tenant_id: str, user_id: str, platform: Platform, token: str) -> Device:
        """Register a token for a user; registering a known token again moves it here and re-enables it."""
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO devices (id, tenant_id, user_id_index, platform, token_sealed, token_index)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (tenant_id, token_index) DO UPDATE
                SET user_id_index = EXCLUDED.user_id_index, user_id = NULL, platform = EXCLUDED.platform,
                    disabled_at = NULL, disabled_reason = NULL, disabled_reason_sealed = NULL, updated_at = now()
            RETURNING {_COLUMNS}
            """,
            uuid.uuid4(),
            tenant_id,
            self._user(tenant_id, user_id),
            platform,
            TOKEN.seal_text(self._encryptor, token, tenant_id),
            self._index(tenant_id, token),
        )
        assert row is not None
        return self._device(row, user_id)

    async def for_user(self, tenant_id: str, user_id: str, *, active_only: bool = True) -> list[Device]:
        """A user's devices, oldest first."""
        rows = await self._pool.fetch(
            f"""
            SELECT {_COLUMNS} FROM devices
            WHERE tenant_id = $1 AND user_id_index = $2 AND (NOT $3 OR disabled_at IS NULL)
            ORDER BY created_at, id
            """,
            tenant_id,
            self._user(tenant_id, user_id),
            active_only,
        )
        return [self._device(row, user_id) for row in rows]

    async def active_for_users(self, users: Collection[tuple[str, str]]) -> dict[tuple[str, str], list[Device]]:
        """The active devices of many ``(tenant_id, user_id)`` pairs in one query, oldest first."""
        by_index = {(tenant_id, self._user(tenant_id, user_id)): (tenant_id, user_id) for tenant_id, user_id in users}
        if not by_index:
            return {}
        tenants, indexes = zip(*by_index, strict=True)
        rows = await self._pool.fetch(
            f"""
            SELECT {_COLUMNS} FROM devices
            WHERE (tenant_id, user_id_index) IN (SELECT * FROM unnest($1::text[], $2::bytea[]))
              AND disabled_at IS NULL
            ORDER BY created_at, id
            """,
            list(tenants),
            list(indexes),
        )
        found: dict[tuple[str, str], list[Device]] = {}
        for row in rows:
            user = by_index[(row["tenant_id"], row["user_id_index"])]
            found.setdefault(user, []).append(self._device(row, user[1]))
        return found

    async def remove(self, tenant_id: str, user_id: str, device_id: str) -> bool:
        """Disable one of the user's devices (soft delete); False if there is no such active device."""
        try:
            device_uuid = uuid.UUID(device_id)
        except ValueError:
            return False
        removed = await self._pool.fetchval(
            """
            UPDATE devices SET disabled_at = now(), disabled_reason_sealed = $4, updated_at = now()
            WHERE tenant_id = $1 AND user_id_index = $2 AND id = $3 AND disabled_at IS NULL
            RETURNING true
            """,
            tenant_id,
            self._user(tenant_id, user_id),
            device_uuid,
            DISABLED_REASON.seal_text(self._encryptor, REMOVED, tenant_id),
        )
        return removed is not None

    async def disable_token(self, tenant_id: str, token: str, reason: str) -> bool:
        """Never use this token again (the provider said it is unregistered or invalid)."""
        disabled = await self._pool.fetchval(
            """
            UPDATE devices SET disabled_at = now(), disabled_reason_sealed = $3, updated_at = now()
            WHERE tenant_id = $1 AND token_index = $2 AND disabled_at IS NULL
            RETURNING true
            """,
            tenant_id,
            self._index(tenant_id, token),
            DISABLED_REASON.seal_text(self._encryptor, reason, tenant_id),
        )
        return disabled is not None

    async def reseal(self, batch_size: int = 500) -> int:
        """Re-encrypt every token and reason not yet under the primary key (or still in clear), and index user
        ids still in clear; returns how many."""
        return await reseal(self._pool, self._encryptor, [TOKEN, USER_ID, DISABLED_REASON], "uuid", batch_size)

"""Recipients: the contact details and channel preferences the API stores and the router reads.

Email and phone are personal data: stored sealed (``email_sealed``, ``phone_sealed``), as :data:`EMAIL`
and :data:`PHONE` describe (see :mod:`shared.storage.sealed`). So is the user id (:data:`USER_ID`): sealed
for the listing, and every lookup by it goes through its keyed blind index (``user_id_index``), which
preferences and devices keep instead of the id. A deleted recipient (``deleted_at``) is hidden from the
API and ignored by the router; its preferences stay, so that creating it again brings its opt-outs back.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

import asyncpg

from shared.crypto import Encryptor
from shared.storage.database import Pool
from shared.storage.pagination import PageCursor, SqlFilter, newest_first, sql
from shared.storage.sealed import SealedColumn, reseal

# Added after migration 0011: these columns were never in clear.
EMAIL = SealedColumn("recipients", "email", legacy=False)
PHONE = SealedColumn("recipients", "phone", legacy=False)
# One context for a user id in every table (recipients, preferences, devices), so a user id has one
# index in its tenant: preferences' foreign key compares theirs with their recipient's.
USER_ID_CONTEXT = "user_id"
USER_ID = SealedColumn("recipients", "user_id", indexed=True, context_name=USER_ID_CONTEXT)
PREFERENCE_USER_ID = SealedColumn("preferences", "user_id", indexed=True, index_only=True, context_name=USER_ID_CONTEXT)
# A rule for every category, or every channel.
ANY = "*"
_Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
_COLUMNS = (
    f"id::text, tenant_id, {USER_ID.selected()}, {EMAIL.selected()}, {PHONE.selected()}, locale, timezone, "
    "created_at, updated_at"
)
# The user's rules by category then channel, as [[category, channel, enabled], ...].
_PREFERENCES = """
    COALESCE((
        SELECT jsonb_agg(jsonb_build_array(p.category, p.channel, p.enabled) ORDER BY p.category, p.channel)
        FROM preferences p WHERE p.tenant_id = r.tenant_id AND p.user_id_index = r.user_id_index
    ), '[]'::jsonb) AS preferences
"""


@dataclass(frozen=True)
class Contact:
    """What the API stores about a recipient; None: not known."""

    email: str | None = None
    # E.164.
    phone: str | None = None
    locale: str | None = None
    # An IANA time zone.
    timezone: str | None = None


@dataclass(frozen=True)
class Profile:
    """A stored recipient: their contact details under their user id."""

    id: str
    user_id: str
    contact: Contact
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Preference:
    """Whether the user wants ``category`` on ``channel``; either may be :data:`ANY`."""

    category: str
    channel: str
    enabled: bool


@dataclass(frozen=True)
class StoredRecipient:
    """What routing knows of a user: their profile and their preferences."""

    profile: Profile
    preferences: Sequence[Preference]


@dataclass(frozen=True)
class _Live(SqlFilter):
    tenant_id: str
    live: bool = field(default=True, metadata=sql("(deleted_at IS NULL) = {}"))


def _preferences(rows: Sequence[Sequence[object]]) -> list[Preference]:
    return [Preference(str(category), str(channel), bool(enabled)) for category, channel, enabled in rows]


class RecipientRepository:
    """Every query is scoped to one tenant (the router's batch lookup names each pair's tenant)."""

    def __init__(self, pool: Pool, encryptor: Encryptor) -> None:
        self._pool = pool
        self._encryptor = encryptor

    def _open(self, column: SealedColumn, row: asyncpg.Record) -> str | None:
        return column.read_text(self._encryptor, row, row["tenant_id"])

    def _profile(self, row: asyncpg.Record) -> Profile:
        contact = Contact(
            email=self._open(EMAIL, row), phone=self._open(PHONE, row), locale=row["locale"], timezone=row["timezone"]
        )
        user_id = self._open(USER_ID, row)
        assert user_id is not None
        return Profile(row["id"], user_id, contact, row["created_at"], row["updated_at"])

    def _user(self, tenant_id: str, user_id: str) -> bytes:
        return USER_ID.blind_index(self._encryptor, user_id, tenant_id)

    async def put(self, tenant_id: str, user_id: str, contact: Contact) -> tuple[Profile, bool]:
        """Store the user's contact details, replacing any; returns the profile and whether it is new
        (a deleted recipient stored again is new: a new id, its preferences back)."""
        row = await self._pool.fetchrow(
            f"""
            INSERT INTO recipients AS r (id, tenant_id, user_id_sealed, user_id_index, email_sealed, phone_sealed,
                                         locale, timezone)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (tenant_id, user_id_index) DO UPDATE
                SET user_id_sealed = EXCLUDED.user_id_sealed,
                    email_sealed = EXCLUDED.email_sealed, phone_sealed = EXCLUDED.phone_sealed,
                    locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, updated_at = now(), deleted_at = NULL,
                    id = CASE WHEN r.deleted_at IS NULL THEN r.id ELSE EXCLUDED.id END,
                    created_at = CASE WHEN r.deleted_at IS NULL THEN r.created_at ELSE now() END
            -- now() is the transaction's start: equal to created_at only when this statement created the row.
            RETURNING {_COLUMNS}, created_at = updated_at AS created
            """,
            uuid.uuid4(),
            tenant_id,
            USER_ID.seal_text(self._encryptor, user_id, tenant_id),
            self._user(tenant_id, user_id),
            self._seal(EMAIL, contact.email, tenant_id),
            self._seal(PHONE, contact.phone, tenant_id),
            contact.locale,
            contact.timezone,
        )
        assert row is not None
        return self._profile(row), row["created"]

    def _seal(self, column: SealedColumn, value: str | None, tenant_id: str) -> bytes | None:
        return column.seal_text(self._encryptor, value, tenant_id)

    async def get(self, tenant_id: str, user_id: str) -> Profile | None:
        """The user's profile, or None (never stored, or deleted)."""
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM recipients WHERE tenant_id = $1 AND user_id_index = $2 AND deleted_at IS NULL",
            tenant_id,
            self._user(tenant_id, user_id),
        )
        return None if row is None else self._profile(row)

    async def page(self, tenant_id: str, limit: int, after: PageCursor | None = None) -> list[Profile]:
        """Up to ``limit`` of the tenant's recipients, newest first (by when they were stored, then id: user
        ids are sealed, so nothing can be ordered by them), starting after ``after``."""
        rows = await newest_first(
            self._pool, columns=_COLUMNS, table="recipients", where=_Live(tenant_id), limit=limit, after=after
        )
        return [self._profile(row) for row in rows]

    async def delete(self, tenant_id: str, user_id: str) -> bool:
        """Hide the recipient and stop routing with it (soft delete); False if there is none."""
        deleted = await self._pool.fetchval(
            """
            UPDATE recipients SET deleted_at = now(), updated_at = now()
            WHERE tenant_id = $1 AND user_id_index = $2 AND deleted_at IS NULL
            RETURNING true
            """,
            tenant_id,
            self._user(tenant_id, user_id),
        )
        return deleted is not None

    async def preferences(self, tenant_id: str, user_id: str) -> list[Preference] | None:
        """The user's rules by category then channel, or None if there is no such recipient."""
        return await self._preferences_of(self._pool, tenant_id, self._user(tenant_id, user_id))

    async def replace_preferences(
        self, tenant_id: str, user_id: str, preferences: Collection[Preference]
    ) -> list[Preference] | None:
        """Make ``preferences`` the user's whole set of rules; None if there is no such recipient."""
        user = self._user(tenant_id, user_id)
        async with self._pool.acquire() as connection, connection.transaction():
            # Locked, so a concurrent replacement or delete waits rather than interleaves.
            if not await self._lock(connection, tenant_id, user):
                return None
            await connection.execute(
                "DELETE FROM preferences WHERE tenant_id = $1 AND user_id_index = $2", tenant_id, user
            )
            await connection.execute(
                """
                INSERT INTO preferences (tenant_id, user_id_index, category, channel, enabled)
                SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::boolean[])
                """,
                tenant_id,
                user,
                [p.category for p in preferences],
                [p.channel for p in preferences],
                [p.enabled for p in preferences],
            )
            return await self._preferences_of(connection, tenant_id, user)

    async def set_preference(self, tenant_id: str, user_id: str, preference: Preference) -> list[Preference] | None:
        """Add or change one rule; returns the user's whole set, or None if there is no such recipient."""
        user = self._user(tenant_id, user_id)
        async with self._pool.acquire() as connection, connection.transaction():
            if not await self._lock(connection, tenant_id, user):
                return None
            await connection.execute(
                """
                INSERT INTO preferences (tenant_id, user_id_index, category, channel, enabled)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (tenant_id, user_id_index, category, channel) DO UPDATE
                    SET enabled = EXCLUDED.enabled, updated_at = now()
                """,
                tenant_id,
                user,
                preference.category,
                preference.channel,
                preference.enabled,
            )
            return await self._preferences_of(connection, tenant_id, user)

    @staticmethod
    async def _lock(connection: _Connection, tenant_id: str, user: bytes) -> bool:
        locked = await connection.fetchval(
            """
            SELECT true FROM recipients WHERE tenant_id = $1 AND user_id_index = $2 AND deleted_at IS NULL
            FOR UPDATE
            """,
            tenant_id,
            user,
        )
        return locked is not None

    @staticmethod
    async def _preferences_of(connection: Pool | _Connection, tenant_id: str, user: bytes) -> list[Preference] | None:
        found = await connection.fetchval(
            f"""
            SELECT {_PREFERENCES} FROM recipients r
            WHERE tenant_id = $1 AND user_id_index = $2 AND deleted_at IS NULL
            """,
            tenant_id,
            user,
        )
        return None if found is None else _preferences(found)

    async def for_routing(self, users: Collection[tuple[str, str]]) -> dict[tuple[str, str], StoredRecipient]:
        """The profiles and preferences of many ``(tenant_id, user_id)`` pairs in one query; deleted
        recipients and unknown users are left out."""
        by_index = {(tenant_id, self._user(tenant_id, user_id)): (tenant_id, user_id) for tenant_id, user_id in users}
        if not by_index:
            return {}
        tenants, indexes = zip(*by_index, strict=True)
        rows = await self._pool.fetch(
            f"""
            SELECT {_COLUMNS}, user_id_index, {_PREFERENCES} FROM recipients r
            WHERE (tenant_id, user_id_index) IN (SELECT * FROM unnest($1::text[], $2::bytea[])) AND deleted_at IS NULL
            """,
            list(tenants),
            list(indexes),
        )
        return {
            by_index[(row["tenant_id"], row["user_id_index"])]: StoredRecipient(
                self._profile(row), _preferences(row["preferences"])
            )
            for row in rows
        }

    async def reseal(self, batch_size: int = 500) -> int:
        """Re-encrypt every user id, email and phone not yet under the primary key (indexing user ids still in
        clear); returns how many rows."""
        return await reseal(self._pool, self._encryptor, [USER_ID, EMAIL, PHONE], "uuid", batch_size)

    async def reseal_preferences(self, batch_size: int = 500) -> int:
        """Index the user id of every preference still naming it in clear (after :meth:`reseal`: the index
        must name a recipient); returns how many rows."""
        return await reseal(self._pool, self._encryptor, [PREFERENCE_USER_ID], "bigint", batch_size)

"""Suppressed addresses: written by the gateway's provider callbacks, read by the router and the API.

The address is personal data. This module is the only one that stores or reads it: sealed
(``address_sealed``, AES-GCM) for the listing, found by its blind index (``address_index``, a keyed
hash) for the lookups; see :mod:`shared.storage.sealed`. The provider's detail (a bounce quotes the
address) is sealed too (``detail_sealed``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from shared.crypto import Encryptor
from shared.errors import InvalidRequest
from shared.phone import normalize_e164
from shared.storage.database import Pool
from shared.storage.sealed import SealedColumn, reseal

Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")
# (tenant_id, channel, normalised address)
Target = tuple[str, str, str]
ADDRESS = SealedColumn("suppressions", "address", indexed=True)
DETAIL = SealedColumn("suppressions", "detail")
_COLUMNS = f"tenant_id, channel, {ADDRESS.selected()}, reason, {DETAIL.selected()}, provider, created_at"


def normalise(channel: str, address: str) -> str:
    """The stored form of ``address``: what a provider reports and a request names must match.

    Email addresses are lower-cased (no provider treats the local part as case-sensitive), phone
    numbers put in E.164 (kept as given when they cannot be: they then only match themselves).
    """
    address = address.strip()
    if channel == "email":
        return address.lower()
    try:
        return normalize_e164(address)
    except InvalidRequest:
        return address


@dataclass(frozen=True)
class Suppression:
    """One address of one tenant that is not sent to, and why."""

    tenant_id: str
    channel: str
    # None once its owner was erased (shared/storage/erasure.py): the blind index still suppresses it.
    address: str | None
    reason: str
    detail: str | None = None
    provider: str | None = None
    created_at: datetime | None = None


class SuppressionRepository:
    """Every read is scoped to tenants; addresses go through :func:`normalise` on the way in."""

    def __init__(self, pool: Pool, encryptor: Encryptor) -> None:
        self._pool = pool
        self._encryptor = encryptor

    def _index(self, tenant_id: str, normalised: str) -> bytes:
        return ADDRESS.blind_index(self._encryptor, normalised, tenant_id)

    def _suppression(self, row: asyncpg.Record) -> Suppression:
        address = ADDRESS.read(self._encryptor, row, row["tenant_id"])
        return Suppression(
            tenant_id=row["tenant_id"],
            channel=row["channel"],
            address=None if address is None else address.decode(),
            reason=row["reason"],
            detail=DETAIL.read_text(self._encryptor, row, row["tenant_id"]),
            provider=row["provider"],
            created_at=row["created_at"],
        )

    async def add(self, entries: Sequence[Suppression]) -> None:
        """Suppress each address (one statement); one already suppressed keeps its first reason, one whose
        suppression was deleted is suppressed again with this reason."""
        # One row per address: an upsert may not touch the same row twice in one statement.
        unique = {(e.tenant_id, e.channel, normalise(e.channel, e.address)): e for e in reversed(entries) if e.address}
        if not unique:
            return
        entries = list(unique.values())
        addresses = [address for _, _, address in unique]
        await self._pool.execute(
            """
            INSERT INTO suppressions (tenant_id, channel, address_sealed, address_index, reason, detail_sealed,
                                      provider)
            SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[], $5::text[], $6::bytea[], $7::text[])
            ON CONFLICT (tenant_id, channel, address_index) DO UPDATE
            SET reason = excluded.reason, detail_sealed = excluded.detail_sealed, detail = NULL,
                provider = excluded.provider, created_at = now(), deleted_at = NULL
            WHERE suppressions.deleted_at IS NOT NULL
            """,
            [e.tenant_id for e in entries],
            [e.channel for e in entries],
            [ADDRESS.seal(self._encryptor, a.encode(), e.tenant_id) for e, a in zip(entries, addresses, strict=True)],
            [self._index(e.tenant_id, a) for e, a in zip(entries, addresses, strict=True)],
            [e.reason for e in entries],
            [DETAIL.seal_text(self._encryptor, e.detail, e.tenant_id) for e in entries],
            [e.provider for e in entries],
        )

    async def for_tenant(
        self, tenant_id: str, *, channel: str | None = None, address: str | None = None, limit: int = 100
    ) -> list[Suppression]:
        """The tenant's suppressions, newest first, optionally of one channel or one address."""
        wanted = self._index(tenant_id, normalise(channel or "email", address)) if address is not None else None
        rows = await self._pool.fetch(
            f"""
            SELECT {_COLUMNS} FROM suppressions
            WHERE tenant_id = $1 AND ($2::text IS NULL OR channel = $2) AND ($3::bytea IS NULL OR address_index = $3)
                AND deleted_at IS NULL
            ORDER BY created_at DESC, channel, id
            LIMIT $4
            """,
            tenant_id,
            channel,
            wanted,
            limit,
        )
        return [self._suppression(row) for row in rows]

    async def remove(self, tenant_id: str, channel: str, address: str) -> bool:
        """Send to the address again (the suppression is kept, marked deleted); False if it was not suppressed."""
        removed = await self._pool.fetchval(
            """
            UPDATE suppressions SET deleted_at = now()
            WHERE tenant_id = $1 AND channel = $2 AND address_index = $3 AND deleted_at IS NULL
            RETURNING true
            """,
            tenant_id,
            channel,
            self._index(tenant_id, normalise(channel, address)),
        )
        return removed is not None

    async def suppressed(self, targets: Collection[Target]) -> set[Target]:
        """Which of ``targets`` (addresses normalised with :func:`normalise`) are suppressed, in one query."""
        if not targets:
            return set()
        by_index = {
            (tenant, channel, self._index(tenant, address)): (tenant, channel, address)
            for tenant, channel, address in targets
        }
        tenants, channels, indexes = zip(*by_index, strict=True)
        rows = await self._pool.fetch(
            """
            SELECT tenant_id, channel, address_index FROM suppressions
            WHERE (tenant_id, channel, address_index) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]))
                AND deleted_at IS NULL
            """,
            list(tenants),
            list(channels),
            list(indexes),
        )
        return {by_index[(row["tenant_id"], row["channel"], row["address_index"])] for row in rows}

    async def reseal(self, batch_size: int = 500) -> int:
        """Re-encrypt every address and detail not yet under the primary key (or still in clear); returns how many."""
        return await reseal(self._pool, self._encryptor, [ADDRESS, DETAIL], "bigint", batch_size)

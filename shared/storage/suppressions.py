"""Suppressed addresses: written by the gateway's provider callbacks, read by the router and the API.

The address is personal data. This module is the only one that stores or reads it, so encrypting it
(issue 5) happens here: a deterministic keyed hash (a blind index) for the lookups, the address
itself encrypted for the listing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared.errors import InvalidRequest
from shared.phone import normalize_e164
from shared.storage.database import Pool

Channel = Literal["email", "sms"]
CHANNELS: tuple[Channel, ...] = ("email", "sms")
# (tenant_id, channel, normalised address)
Target = tuple[str, str, str]
_COLUMNS = "tenant_id, channel, address, reason, detail, provider, created_at"


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
    address: str
    reason: str
    detail: str | None = None
    provider: str | None = None
    created_at: datetime | None = None


class SuppressionRepository:
    """Every read is scoped to tenants; addresses go through :func:`normalise` on the way in."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def add(self, entries: Sequence[Suppression]) -> None:
        """Suppress each address (one statement); one already suppressed keeps its first reason."""
        if not entries:
            return
        await self._pool.execute(
            """
            INSERT INTO suppressions (tenant_id, channel, address, reason, detail, provider)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
            ON CONFLICT DO NOTHING
            """,
            [e.tenant_id for e in entries],
            [e.channel for e in entries],
            [normalise(e.channel, e.address) for e in entries],
            [e.reason for e in entries],
            [e.detail for e in entries],
            [e.provider for e in entries],
        )

    async def for_tenant(
        self, tenant_id: str, *, channel: str | None = None, address: str | None = None, limit: int = 100
    ) -> list[Suppression]:
        """The tenant's suppressions, newest first, optionally of one channel or one address."""
        wanted = normalise(channel or "email", address) if address is not None else None
        rows = await self._pool.fetch(
            f"""
            SELECT {_COLUMNS} FROM suppressions
            WHERE tenant_id = $1 AND ($2::text IS NULL OR channel = $2) AND ($3::text IS NULL OR address = $3)
            ORDER BY created_at DESC, channel, address
            LIMIT $4
            """,
            tenant_id,
            channel,
            wanted,
            limit,
        )
        return [Suppression(*row.values()) for row in rows]

    async def remove(self, tenant_id: str, channel: str, address: str) -> bool:
        """Send to the address again; False if it was not suppressed."""
        removed = await self._pool.fetchval(
            "DELETE FROM suppressions WHERE tenant_id = $1 AND channel = $2 AND address = $3 RETURNING true",
            tenant_id,
            channel,
            normalise(channel, address),
        )
        return removed is not None

    async def suppressed(self, targets: Collection[Target]) -> set[Target]:
        """Which of ``targets`` (addresses normalised with :func:`normalise`) are suppressed, in one query."""
        if not targets:
            return set()
        tenants, channels, addresses = zip(*targets, strict=True)
        rows = await self._pool.fetch(
            """
            SELECT tenant_id, channel, address FROM suppressions
            WHERE (tenant_id, channel, address) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))
            """,
            list(tenants),
            list(channels),
            list(addresses),
        )
        return {(row["tenant_id"], row["channel"], row["address"]) for row in rows}

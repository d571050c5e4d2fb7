"""GDPR erasure of one recipient: their personal data removed or anonymised wherever Herald keeps it.

In one transaction, for a tenant's user (and the email addresses and phone numbers named with them, or
found in their stored profile):

- their notifications stay, for the tenant's statistics, but lose what ties them to the person: the
  recipient hash, the idempotency key and every provider detail (an answer may quote the address);
- their dead letters (whose payloads hold the request) and scheduled sends are deleted;
- their profile, preferences and push devices are deleted;
- a suppression of one of their addresses keeps only its keyed blind index, so the address is still
  never sent to, while the address itself is gone.

An audit row (``erasures``) records that it happened, by whom and what it removed; it names the user by
a blind index only. What this cannot reach is said in the README ("Erasing a recipient"): records still
in Kafka topics until their retention passes, and archives already written.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg
import orjson

from shared.crypto import Context, Encryptor
from shared.errors import InvalidRequest
from shared.phone import normalize_e164
from shared.storage.database import Pool
from shared.storage.notifications import DELIVERY_DETAIL, EVENT_DETAIL, IDEMPOTENCY_KEY, NOTIFICATION_DETAIL
from shared.storage.recipient_index import RecipientIndex
from shared.storage.recipients import EMAIL, PHONE, USER_ID
from shared.storage.sealed import SealedColumn
from shared.storage.suppressions import ADDRESS
from shared.storage.suppressions import DETAIL as SUPPRESSION_DETAIL

_Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
# The blind index's context: the same user id gives a different index in another tenant.
SUBJECT_COLUMN = "erasures.subject"


@dataclass(frozen=True)
class Erasure:
    """The audit of one erasure: when, by whom, and how many of each kind of record it touched."""

    id: str
    requested_by: str
    requested_at: datetime
    counts: dict[str, int]


def _email_forms(address: str) -> set[str]:
    address = address.strip()
    return {address, address.lower()}


def _phone_forms(number: str) -> set[str]:
    forms = {number.strip()}
    with contextlib.suppress(InvalidRequest):  # not a valid number: only the forms as given can match
        forms.add(normalize_e164(number))
    return forms


def routing_keys(user_id: str, emails: Iterable[str], phones: Iterable[str]) -> set[str]:
    """Every form in which a notification's recipient hash may have named this person: a request is
    keyed by its user id, else its email address, else its phone number, as the caller wrote them."""
    keys = {user_id}
    for email in emails:
        keys |= _email_forms(email)
    for phone in phones:
        keys |= _phone_forms(phone)
    return keys


class RecipientEraser:
    """Erases a recipient in one transaction, and answers which erasures were made for a user."""

    def __init__(self, pool: Pool, encryptor: Encryptor) -> None:
        self._pool = pool
        self._encryptor = encryptor
        self._index = RecipientIndex(encryptor)

    def _subject(self, tenant_id: str, user_id: str) -> bytes:
        return self._encryptor.blind_index(user_id, Context(SUBJECT_COLUMN, tenant_id))

    async def erase(
        self,
        tenant_id: str,
        user_id: str,
        *,
        emails: Collection[str] = (),
        phones: Collection[str] = (),
        requested_by: str,
    ) -> Erasure:
        """Erase ``user_id`` of ``tenant_id`` and the addresses named with it; returns the audit row."""
        # One index finds the profile and the devices: a user id has one context in every table.
        user = USER_ID.blind_index(self._encryptor, user_id, tenant_id)
        async with self._pool.acquire() as connection, connection.transaction():
            stored_email, stored_phone = await self._profile_addresses(connection, tenant_id, user)
            all_emails = {*emails, *([stored_email] if stored_email else [])}
            all_phones = {*phones, *([stored_phone] if stored_phone else [])}
            keys = routing_keys(user_id, all_emails, all_phones)
            hashes = [found for key in keys for found in self._index.matching(tenant_id, key)]
            counts = {
                "notifications": await self._anonymise_notifications(connection, tenant_id, hashes),
                "dead_letters": await _count(connection, _DELETE_DEAD_LETTERS, tenant_id),
                "scheduled": await _count(connection, _DELETE_SCHEDULED, tenant_id),
                "devices": await _count(
                    connection, "DELETE FROM devices WHERE tenant_id = $1 AND user_id_index = $2", tenant_id, user
                ),
                # Its preferences go with it (their foreign key cascades).
                "profiles": await _count(
                    connection, "DELETE FROM recipients WHERE tenant_id = $1 AND user_id_index = $2", tenant_id, user
                ),
                "suppressions": await self._anonymise_suppressions(connection, tenant_id, all_emails, all_phones),
            }
            row = await connection.fetchrow(
                """
                INSERT INTO erasures (id, tenant_id, subject_index, requested_by, counts)
                VALUES ($1, $2, $3, $4, $5::jsonb)
                RETURNING id::text, requested_by, requested_at, counts
                """,
                uuid.uuid4(),
                tenant_id,
                self._subject(tenant_id, user_id),
                requested_by,
                orjson.dumps(counts).decode(),
            )
        assert row is not None
        return _erasure(row)

    async def erasures(self, tenant_id: str, user_id: str) -> list[Erasure]:
        """The erasures made for ``user_id``, newest first."""
        rows = await self._pool.fetch(
            """
            SELECT id::text, requested_by, requested_at, counts FROM erasures
            WHERE tenant_id = $1 AND subject_index = $2
            ORDER BY requested_at DESC
            """,
            tenant_id,
            self._subject(tenant_id, user_id),
        )
        return [_erasure(row) for row in rows]

    async def _profile_addresses(
        self, connection: _Connection, tenant_id: str, user: bytes
    ) -> tuple[str | None, str | None]:
        # A profile deleted through the API (soft) still holds its addresses: it is erased too.
        row = await connection.fetchrow(
            f"""
            SELECT tenant_id, {EMAIL.selected()}, {PHONE.selected()} FROM recipients
            WHERE tenant_id = $1 AND user_id_index = $2
            FOR UPDATE
            """,
            tenant_id,
            user,
        )
        if row is None:
            return None, None
        email, phone = (column.read(self._encryptor, row, tenant_id) for column in (EMAIL, PHONE))
        return (email.decode() if email else None), (phone.decode() if phone else None)

    @staticmethod
    async def _anonymise_notifications(connection: _Connection, tenant_id: str, hashes: list[bytes]) -> int:
        # The ids go to a temporary table: the dead letters and scheduled sends are found by them next.
        await connection.execute(
            """
            CREATE TEMPORARY TABLE erased_notifications ON COMMIT DROP AS
            SELECT id FROM notifications WHERE tenant_id = $1 AND recipient_hash = ANY($2::bytea[])
            """,
            tenant_id,
            hashes,
        )
        erased = "notification_id IN (SELECT id FROM erased_notifications)"
        await connection.execute(f"UPDATE notification_events SET {_cleared(EVENT_DETAIL)} WHERE {erased}")
        await connection.execute(f"UPDATE deliveries SET {_cleared(DELIVERY_DETAIL)} WHERE {erased}")
        return await _count(
            connection,
            f"""
            UPDATE notifications
            SET recipient_hash = NULL, {_cleared(IDEMPOTENCY_KEY)}, {_cleared(NOTIFICATION_DETAIL)}
            WHERE id IN (SELECT id FROM erased_notifications)
            """,
        )

    async def _anonymise_suppressions(
        self, connection: _Connection, tenant_id: str, emails: Collection[str], phones: Collection[str]
    ) -> int:
        targets = [("email", form) for email in emails for form in _email_forms(email)]
        targets += [("sms", form) for phone in phones for form in _phone_forms(phone)]
        if not targets:
            return 0
        channels = [channel for channel, _ in targets]
        indexes = [ADDRESS.blind_index(self._encryptor, address, tenant_id) for _, address in targets]
        return await _count(
            connection,
            f"""
            UPDATE suppressions SET {_cleared(ADDRESS)}, {_cleared(SUPPRESSION_DETAIL)}
            WHERE tenant_id = $1 AND (channel, {ADDRESS.index}) IN (SELECT * FROM unnest($2::text[], $3::bytea[]))
                AND ({ADDRESS.sealed} IS NOT NULL OR {ADDRESS.name} IS NOT NULL)
            """,
            tenant_id,
            channels,
            indexes,
        )


_DELETE_DEAD_LETTERS = """
    DELETE FROM dead_letters
    WHERE tenant_id = $1 AND notification_id IN (SELECT id::text FROM erased_notifications)
"""
_DELETE_SCHEDULED = """
    DELETE FROM delayed_jobs WHERE tenant_id = $1 AND notification_id IN (SELECT id FROM erased_notifications)
"""


def _cleared(column: SealedColumn) -> str:
    """SQL assignments: ``column`` holds nothing any more, sealed or in clear (its blind index stays)."""
    return f"{column.sealed} = NULL, {column.name} = NULL"


async def _count(connection: _Connection, statement: str, *args: object) -> int:
    """Run an INSERT/UPDATE/DELETE; how many rows it touched (from asyncpg's status tag, e.g. ``UPDATE 3``)."""
    status = await connection.execute(statement, *args)
    return int(status.rsplit(" ", 1)[-1])


def _erasure(row: asyncpg.Record) -> Erasure:
    counts = row["counts"]
    return Erasure(
        id=row["id"],
        requested_by=row["requested_by"],
        requested_at=row["requested_at"],
        counts=orjson.loads(counts) if isinstance(counts, str) else dict(counts),
    )

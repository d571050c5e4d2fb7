"""What an archive holds, and how its objects are named.

An archive object is a gzip file of JSON lines, one line per notification with every row Postgres
held about it::

    {"notification": {...}, "events": [...], "deliveries": [...], "duplicates": [...], "dead_letters": [...],
     "webhook_deliveries": [...]}

Each row keeps its table's column names. Timestamps are RFC 3339, ``bytea`` values base64. Personal
data stays sealed, exactly as stored (a dead letter's ``original_key_sealed``, ``original_payload_sealed``
and ``detail_sealed``, a notification's ``idempotency_key_sealed``, every provider detail: open them with
``HERALD_ENCRYPTION_KEYS``); an archive never holds it in clear.

Objects are per tenant and per day of the notifications' creation (UTC), named
``<tenant>/<yyyy>/<mm>/<dd>/<first notification id>-<count>-<digest>.jsonl.gz``: the digest (of the
object's bytes) means the same rows archived again make the same object, and other rows never
overwrite an object.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

import orjson

from shared.crypto import Encryptor
from shared.storage.sealed import SealedColumn

# A row as asyncpg gave it, made a dict (orjson serialises dicts, not mappings).
Row = dict[str, Any]


@dataclass(frozen=True)
class ArchivedNotification:
    """A notification row and the rows of the other tables that belong to it."""

    notification: Row
    events: Sequence[Row] = ()
    deliveries: Sequence[Row] = ()
    duplicates: Sequence[Row] = ()
    dead_letters: Sequence[Row] = ()
    webhook_deliveries: Sequence[Row] = ()

    @property
    def id(self) -> UUID:
        notification_id: UUID = self.notification["id"]
        return notification_id

    @property
    def tenant_id(self) -> str:
        tenant_id: str = self.notification["tenant_id"]
        return tenant_id

    @property
    def day(self) -> date:
        """The day (UTC) it was created: the folder its archive goes to."""
        created_at: datetime = self.notification["created_at"]
        return created_at.astimezone(UTC).date()


@dataclass(frozen=True)
class ArchiveObject:
    """One object of an archive: its name, its gzip bytes and how many notifications it holds."""

    name: str
    data: bytes
    notifications: int


def archived_row(row: Row, sealed: Sequence[SealedColumn], encryptor: Encryptor) -> Row:
    """A row as archived: its ``sealed`` columns as stored, never in clear.

    A value still in its pre-encryption column (not resealed yet) is sealed now, as the reseal would.
    """
    archived = {name: value for name, value in row.items() if name not in {column.name for column in sealed}}
    for column in sealed:
        if row[column.sealed] is None:
            archived[column.sealed] = column.seal(encryptor, column.in_clear(row), row["tenant_id"])
    return archived


def _encode(value: object) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    # asyncpg's own UUID subclass, which orjson (serialising uuid.UUID itself) does not take.
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot archive a {type(value).__name__}")


def serialise(item: ArchivedNotification) -> bytes:
    """One JSON line (newline included)."""
    line = {
        "notification": item.notification,
        "events": item.events,
        "deliveries": item.deliveries,
        "duplicates": item.duplicates,
        "dead_letters": item.dead_letters,
        "webhook_deliveries": item.webhook_deliveries,
    }
    return orjson.dumps(line, default=_encode, option=orjson.OPT_APPEND_NEWLINE)


def tenant_segment(tenant_id: str) -> str:
    """The tenant as one path segment: percent-encoded, so it can neither nest nor climb folders."""
    segment = quote(tenant_id, safe="")
    if segment.strip("."):
        return segment
    # "." and ".." would name the folder itself or its parent; "" no folder at all.
    return "%2E" * len(segment) or "%00"


def object_name(tenant_id: str, day: date, first_id: UUID, count: int, data: bytes) -> str:
    """``<tenant>/<yyyy>/<mm>/<dd>/<first id>-<count>-<digest of data>.jsonl.gz``."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    return f"{tenant_segment(tenant_id)}/{day:%Y/%m/%d}/{first_id}-{count}-{digest}.jsonl.gz"


def build_objects(items: Sequence[ArchivedNotification]) -> list[ArchiveObject]:
    """The objects ``items`` are archived in: one per tenant and day, lines in the order given."""
    groups: dict[tuple[str, date], list[ArchivedNotification]] = {}
    for item in items:
        groups.setdefault((item.tenant_id, item.day), []).append(item)
    objects = []
    for (tenant_id, day), group in groups.items():
        # mtime=0: the same rows always make the same bytes, hence the same name.
        data = gzip.compress(b"".join(serialise(item) for item in group), mtime=0)
        objects.append(ArchiveObject(object_name(tenant_id, day, group[0].id, len(group), data), data, len(group)))
    return objects


def read_object(data: bytes) -> Iterator[dict[str, Any]]:
    """The lines of an archive object (its gzip bytes), decoded."""
    for line in gzip.decompress(data).splitlines():
        if line:
            yield orjson.loads(line)

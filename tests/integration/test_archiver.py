"""The archiver against a real Postgres, a real folder and S3 (moto over HTTP): old notifications leave
Postgres with everything about them only once their archive is durable; nothing else moves."""

from __future__ import annotations

import asyncio
import base64
import gzip
import itertools
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY

from infra.standins.aws import MotoServer
from services.archiver.archive import read_object
from services.archiver.archiver import Archiver
from services.archiver.store import ArchiveStore, FolderStore, open_store
from services.gateway.notifications.repository import AcceptedNotification, NotificationRepository
from services.status.repository import StatusRepository
from shared.storage.database import Pool
from shared.storage.dead_letters import DETAIL as DEAD_LETTER_DETAIL
from shared.storage.dead_letters import ORIGINAL_PAYLOAD, DeadLetterRepository, NewDeadLetter
from shared.storage.notifications import DELIVERY_DETAIL, EVENT_DETAIL, NOTIFICATION_DETAIL
from shared.storage.notifications import IDEMPOTENCY_KEY as IDEMPOTENCY
from shared.storage.sealed import SealedColumn
from shared.storage.webhook_endpoints import DELIVERY_DETAIL as WEBHOOK_DELIVERY_DETAIL
from tests.conftest import ENCRYPTOR
from tests.factories import REGION, status_event

pytestmark = pytest.mark.integration

RETENTION = timedelta(days=90)
NOW = datetime.now(UTC)
# At noon: the minutes and seconds tests add to it never carry a notification into the next day's folder
# (a run just before midnight UTC did).
OLD = (NOW - timedelta(days=100)).replace(hour=12, minute=0, second=0, microsecond=0)
RECENT = NOW - timedelta(days=1)
# What a dead letter's original message holds: a person's address, never to be seen in an archive.
PAYLOAD = b'{"to": "ada@example.com", "subject": "Your code"}'
LEGACY_PAYLOAD = b'{"to": "grace@example.com"}'
# Free text and a caller's key quoting the person: sealed as stored, or on the way (LEGACY_DETAIL: in clear).
SENT_DETAIL = "250 2.0.0 queued for ada@example.com"
LEGACY_DETAIL = "rejected grace@example.com"
IDEMPOTENCY_KEY = "welcome-ada@example.com"
TABLES = (
    "notifications",
    "notification_events",
    "deliveries",
    "notification_duplicates",
    "dead_letters",
    "webhook_endpoint_deliveries",
)
BUCKET = "herald-archive"
_offsets = itertools.count()


@dataclass(frozen=True)
class Seeded:
    """Notifications due for archiving (by tenant), and those that must stay."""

    old: dict[str, list[str]]
    kept: list[str]
    # The old notification with a row in every related table.
    rich: str

    @property
    def old_ids(self) -> set[str]:
        return {notification_id for ids in self.old.values() for notification_id in ids}


async def notify(pool: Pool, tenant_id: str, at: datetime) -> str:
    """A notification accepted, routed and sent (one delivery) from ``at`` on."""
    notification_id = str(uuid.uuid4())
    delivery_id = str(uuid.uuid4())
    await StatusRepository(pool, ENCRYPTOR).apply(
        [
            status_event(notification_id, "accepted", at, tenant_id=tenant_id),
            status_event(notification_id, "routed", at + timedelta(seconds=1), tenant_id=tenant_id, channel="email"),
            status_event(
                notification_id,
                "sent",
                at + timedelta(seconds=2),
                tenant_id=tenant_id,
                channel="email",
                attempt=1,
                detail=SENT_DETAIL,
                delivery_id=delivery_id,
                deliveries=1,
            ),
        ]
    )
    return notification_id


async def add_related_rows(pool: Pool, notification_id: str) -> None:
    """The gateway's acceptance (with an idempotency key), a duplicate, a dead letter (sealed), a dead letter
    from before encryption (in clear), a webhook delivery from before its detail was sealed."""
    await NotificationRepository(pool, ENCRYPTOR).record_accepted(
        [AcceptedNotification(notification_id, "acme", IDEMPOTENCY_KEY, OLD)]
    )
    await StatusRepository(pool, ENCRYPTOR).record_duplicates(
        [status_event(notification_id, "duplicate", OLD, tenant_id="acme")]
    )
    await DeadLetterRepository(pool, ENCRYPTOR).store(
        [
            NewDeadLetter(
                tenant_id="acme",
                notification_id=notification_id,
                reason="max_attempts_exceeded",
                detail="gave up",
                service="sender-email",
                channel="email",
                original_topic="herald.send.email.v1",
                original_partition=0,
                original_offset=next(_offsets),
                original_key=b"acme:ada@example.com",
                original_headers={"tenant": b"acme"},
                original_payload=PAYLOAD,
                created_at=OLD,
                dlq_topic="herald.dlq.v1",
                dlq_partition=0,
                dlq_offset=next(_offsets),
            )
        ]
    )
    await pool.execute(
        """
        INSERT INTO dead_letters (tenant_id, notification_id, reason, detail, service, original_topic,
                                  original_partition, original_offset, original_payload, created_at,
                                  dlq_topic, dlq_partition, dlq_offset)
        VALUES ('acme', $1, 'invalid_payload', $5, 'router', 'herald.routable.v1', 0, $2, $3, $4,
                'herald.dlq.v1', 0, $2)
        """,
        notification_id,
        next(_offsets),
        LEGACY_PAYLOAD,
        OLD,
        LEGACY_DETAIL,
    )
    endpoint = uuid.uuid4()
    await pool.execute(
        "INSERT INTO webhook_endpoints (id, tenant_id, url_sealed) VALUES ($1, 'acme', $2)", endpoint, b"sealed"
    )
    await pool.execute(
        """
        INSERT INTO webhook_endpoint_deliveries (id, tenant_id, endpoint_id, event_id, notification_id, status,
                                                 occurred_at, outcome, detail)
        VALUES ($1, 'acme', $2, $3, $4, 'sent', $5, 'sent', $6)
        """,
        uuid.uuid4(),
        endpoint,
        uuid.uuid4(),
        uuid.UUID(notification_id),
        OLD,
        LEGACY_DETAIL,
    )


async def seed(pool: Pool) -> Seeded:
    """Old notifications of two tenants (acme's first), a recent one, and an old one a delayed job waits for."""
    acme = [await notify(pool, "acme", OLD + timedelta(minutes=i)) for i in range(3)]
    globex = [await notify(pool, "globex", OLD + timedelta(minutes=10))]
    await add_related_rows(pool, acme[0])
    recent = await notify(pool, "acme", RECENT)
    waiting = await notify(pool, "acme", OLD)
    await pool.execute(
        """
        INSERT INTO delayed_jobs (job_id, tenant_id, notification_id, due_at, target_topic, payload, recurring)
        VALUES ($1, 'acme', $2, $3, 'herald.requests.v1', '\\x00', true)
        """,
        uuid.uuid4(),
        uuid.UUID(waiting),
        NOW + timedelta(days=7),
    )
    return Seeded(old={"acme": acme, "globex": globex}, kept=[recent, waiting], rich=acme[0])


async def row_counts(pool: Pool, notification_ids: set[str]) -> dict[str, int]:
    """How many rows of each table name one of ``notification_ids``."""
    ids = [uuid.UUID(i) for i in notification_ids]
    counts = {}
    for table in TABLES:
        column = "id" if table == "notifications" else "notification_id"
        counts[table] = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE {column}::text = ANY($1::text[])", [str(i) for i in ids]
        )
    return counts


def archiver(pool: Pool, store: ArchiveStore, batch_size: int = 1000) -> Archiver:
    return Archiver(pool, store, ENCRYPTOR, retention=RETENTION, batch_size=batch_size)


def folder_objects(root: Path) -> dict[str, bytes]:
    """Every archive object under ``root`` by its name; fails on a temporary file left behind."""
    files = [path for path in root.rglob("*") if path.is_file()]
    assert all(path.name.endswith(".jsonl.gz") for path in files), files
    return {str(path.relative_to(root)): path.read_bytes() for path in files}


def lines_of(objects: dict[str, bytes]) -> list[dict[str, Any]]:
    return [line for data in objects.values() for line in read_object(data)]


def archived_rows(table: str) -> float:
    return REGISTRY.get_sample_value("herald_archived_rows_total", {"table": table}) or 0.0


def archive_failures() -> float:
    return REGISTRY.get_sample_value("herald_archive_failures_total") or 0.0


def opened(row: dict[str, Any], column: SealedColumn) -> str | None:
    """An archived row's value of ``column``, opened; the row holds it only sealed."""
    assert column.name not in row
    sealed = row[column.sealed]
    return (
        None if sealed is None else ENCRYPTOR.open(base64.b64decode(sealed), column.context(row["tenant_id"])).decode()
    )


def assert_archived(seeded: Seeded, objects: dict[str, bytes], at_most: int = 1) -> None:
    """The archive holds each old notification (once, or up to ``at_most`` times), in its tenant's
    folder for its day, with every related row; personal data only sealed."""
    day = f"{OLD:%Y/%m/%d}"
    lines = lines_of(objects)
    by_id = {line["notification"]["id"]: line for line in lines}
    assert set(by_id) == seeded.old_ids
    assert max(Counter(line["notification"]["id"] for line in lines).values()) <= at_most
    for name, data in objects.items():
        (tenant_id,) = {line["notification"]["tenant_id"] for line in read_object(data)}
        assert name.startswith(f"{tenant_id}/{day}/")
    rich = by_id[seeded.rich]
    assert rich["notification"]["status"] == "sent"
    assert [event["status"] for event in rich["events"]] == ["accepted", "routed", "sent"]
    assert [delivery["status"] for delivery in rich["deliveries"]] == ["sent"]
    assert len(rich["duplicates"]) == 1
    assert [hook["status"] for hook in rich["webhook_deliveries"]] == ["sent"]
    letters = {letter["reason"]: letter for letter in rich["dead_letters"]}
    assert set(letters) == {"max_attempts_exceeded", "invalid_payload"}
    # Sealed as stored (or sealed on the way, for the one written before encryption): readable with the keys.
    for reason, payload in (("max_attempts_exceeded", PAYLOAD), ("invalid_payload", LEGACY_PAYLOAD)):
        letter = letters[reason]
        assert "original_payload" not in letter
        sealed = base64.b64decode(letter["original_payload_sealed"])
        assert ENCRYPTOR.open(sealed, ORIGINAL_PAYLOAD.context("acme")) == payload
    assert opened(letters["invalid_payload"], DEAD_LETTER_DETAIL) == LEGACY_DETAIL
    assert opened(rich["notification"], IDEMPOTENCY) == IDEMPOTENCY_KEY
    assert opened(rich["notification"], NOTIFICATION_DETAIL) == SENT_DETAIL
    assert [opened(event, EVENT_DETAIL) for event in rich["events"]] == [None, None, SENT_DETAIL]
    assert [opened(delivery, DELIVERY_DETAIL) for delivery in rich["deliveries"]] == [SENT_DETAIL]
    assert [opened(hook, WEBHOOK_DELIVERY_DETAIL) for hook in rich["webhook_deliveries"]] == [LEGACY_DETAIL]
    text = b"".join(gzip.decompress(data) for data in objects.values())
    assert b"queued for" not in text
    for clear in (b"ada@example.com", b"grace@example.com"):
        assert clear not in text
    for payload in (PAYLOAD, LEGACY_PAYLOAD):
        assert base64.b64encode(payload) not in text


async def test_old_notifications_move_to_a_folder_with_everything_about_them(db_pool: Pool, tmp_path: Path) -> None:
    seeded = await seed(db_pool)
    kept_before = await row_counts(db_pool, set(seeded.kept))
    archived_before = {table: archived_rows(table) for table in TABLES}

    # Two per batch: the pass goes on batch after batch until none is left.
    archived = await archiver(db_pool, FolderStore(tmp_path), batch_size=2).archive(now=NOW)

    assert archived == len(seeded.old_ids)
    assert await row_counts(db_pool, seeded.old_ids) == dict.fromkeys(TABLES, 0)
    # The recent one and the one a recurring job waits for are untouched.
    assert await row_counts(db_pool, set(seeded.kept)) == kept_before
    objects = folder_objects(tmp_path)
    assert_archived(seeded, objects)
    deleted = {table: archived_rows(table) - archived_before[table] for table in TABLES}
    assert deleted == {
        "notifications": 4,
        "notification_events": 12,
        "deliveries": 4,
        "notification_duplicates": 1,
        "dead_letters": 2,
        "webhook_endpoint_deliveries": 1,
    }

    # Nothing is due any more: the next pass writes nothing.
    assert await archiver(db_pool, FolderStore(tmp_path)).archive(now=NOW) == 0
    assert folder_objects(tmp_path) == objects


@pytest.fixture
def s3(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A client of moto's S3; the archiver finds the same dummy credentials in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return boto3.client("s3", endpoint_url=aws.url, region_name=REGION)


def bucket_objects(s3: Any, prefix: str) -> dict[str, bytes]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {
        item["Key"].removeprefix(prefix): s3.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        for item in listing
    }


async def test_old_notifications_move_to_an_s3_bucket(db_pool: Pool, aws: MotoServer, s3: Any) -> None:
    s3.create_bucket(Bucket=BUCKET)
    seeded = await seed(db_pool)
    store = open_store(f"s3://{BUCKET}/prod/notifications", endpoint_url=aws.url, region=REGION)

    assert await archiver(db_pool, store).archive(now=NOW) == len(seeded.old_ids)

    assert await row_counts(db_pool, seeded.old_ids) == dict.fromkeys(TABLES, 0)
    assert await db_pool.fetchval("SELECT count(*) FROM notifications") == len(seeded.kept)
    objects = bucket_objects(s3, "prod/notifications/")
    assert len(objects) == 2
    assert_archived(seeded, objects)
    head = s3.head_object(Bucket=BUCKET, Key=f"prod/notifications/{next(iter(objects))}")
    assert head["ContentType"] == "application/gzip"


async def test_a_failed_upload_deletes_nothing(db_pool: Pool, aws: MotoServer, s3: Any) -> None:
    seeded = await seed(db_pool)
    before = await row_counts(db_pool, seeded.old_ids | set(seeded.kept))
    failures = archive_failures()
    store = open_store(f"s3://{BUCKET}/prod", endpoint_url=aws.url, region=REGION)

    with pytest.raises(ClientError, match="NoSuchBucket"):
        await archiver(db_pool, store).archive(now=NOW)

    assert await row_counts(db_pool, seeded.old_ids | set(seeded.kept)) == before
    assert archive_failures() == failures + 1
    # Once the bucket is there, the next pass archives them.
    s3.create_bucket(Bucket=BUCKET)
    assert await archiver(db_pool, store).archive(now=NOW) == len(seeded.old_ids)
    assert_archived(seeded, bucket_objects(s3, "prod/"))


async def test_a_crash_between_writing_and_deleting_archives_again_and_loses_nothing(
    db_pool: Pool, tmp_path: Path
) -> None:
    seeded = await seed(db_pool)
    before = await row_counts(db_pool, seeded.old_ids)
    # A file where globex's folder goes: acme's object is written, then globex's fails, in one batch.
    (tmp_path / "globex").write_bytes(b"")

    with pytest.raises(OSError, match="globex"):
        await archiver(db_pool, FolderStore(tmp_path)).archive(now=NOW)

    assert await row_counts(db_pool, seeded.old_ids) == before
    (tmp_path / "globex").unlink()
    first = folder_objects(tmp_path)
    assert [name.split("/")[0] for name in first] == ["acme"]

    assert await archiver(db_pool, FolderStore(tmp_path)).archive(now=NOW) == len(seeded.old_ids)

    # acme's are archived twice: the dead letter from before encryption was sealed anew (another
    # nonce), so the second object differs from the first. Twice at worst, never lost.
    objects = folder_objects(tmp_path)
    assert objects.items() >= first.items()
    assert len(objects) == 3
    assert await row_counts(db_pool, seeded.old_ids) == dict.fromkeys(TABLES, 0)
    assert_archived(seeded, objects, at_most=2)


async def test_the_same_rows_archived_again_make_the_same_object(db_pool: Pool, tmp_path: Path) -> None:
    ids = {await notify(db_pool, tenant, OLD + timedelta(seconds=i)) for i, tenant in enumerate(["acme", "globex"])}
    (tmp_path / "globex").write_bytes(b"")
    with pytest.raises(OSError, match="globex"):
        await archiver(db_pool, FolderStore(tmp_path)).archive(now=NOW)
    (tmp_path / "globex").unlink()
    first = folder_objects(tmp_path)

    assert await archiver(db_pool, FolderStore(tmp_path)).archive(now=NOW) == 2

    objects = folder_objects(tmp_path)
    assert len(objects) == 2
    assert objects.items() >= first.items()
    assert Counter(line["notification"]["id"] for line in lines_of(objects)) == dict.fromkeys(ids, 1)


async def test_archivers_running_at_once_share_the_work(db_pool: Pool, tmp_path: Path) -> None:
    ids = {await notify(db_pool, "acme", OLD + timedelta(seconds=i)) for i in range(8)}
    store = FolderStore(tmp_path)

    counts = await asyncio.gather(*(archiver(db_pool, store, batch_size=1).archive(now=NOW) for _ in range(3)))

    assert sum(counts) == len(ids)
    archived = Counter(line["notification"]["id"] for line in lines_of(folder_objects(tmp_path)))
    assert archived == dict.fromkeys(ids, 1)
    assert await db_pool.fetchval("SELECT count(*) FROM notifications") == 0

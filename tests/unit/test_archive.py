"""Archives without a database: where they go, how objects are named, what a line holds, the folder store."""

from __future__ import annotations

import base64
import gzip
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.archiver.archive import (
    ArchivedNotification,
    archived_row,
    build_objects,
    object_name,
    read_object,
    serialise,
    tenant_segment,
)
from services.archiver.settings import ArchiverSettings
from services.archiver.store import ArchiveLocation, FolderStore, open_store, parse_archive_url
from shared.storage.dead_letters import ORIGINAL_KEY, ORIGINAL_PAYLOAD, SEALED
from shared.storage.notifications import IDEMPOTENCY_KEY, NOTIFICATION_COLUMNS, NOTIFICATION_DETAIL
from tests.conftest import ENCRYPTOR

pytestmark = pytest.mark.unit

CREATED = datetime(2024, 3, 5, 23, 30, tzinfo=UTC)


def notification(tenant_id: str = "acme", created_at: datetime = CREATED, **columns: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "status": "delivered",
        "recipient_hash": b"\x00\x01\xfe",
        "created_at": created_at,
        "updated_at": created_at + timedelta(minutes=1),
        **columns,
    }


def dead_letter(tenant_id: str = "acme", **columns: Any) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "reason": "max_attempts_exceeded",
        "original_headers": {"tenant": "YWNtZQ=="},
        "original_key": None,
        "original_key_sealed": None,
        "original_payload": None,
        "original_payload_sealed": None,
        "detail": None,
        "detail_sealed": None,
        **columns,
    }


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("file:///var/lib/herald/archives", ArchiveLocation("file", "/var/lib/herald/archives")),
        ("file:///var/lib/herald/archives/", ArchiveLocation("file", "/var/lib/herald/archives")),
        ("file://localhost/srv/a%20b", ArchiveLocation("file", "/srv/a b")),
        ("s3://herald-archive", ArchiveLocation("s3", "herald-archive", "")),
        ("s3://herald-archive/prod/notifications/", ArchiveLocation("s3", "herald-archive", "prod/notifications")),
    ],
)
def test_archive_urls_name_a_folder_or_a_bucket_and_prefix(url: str, location: ArchiveLocation) -> None:
    assert parse_archive_url(url) == location


@pytest.mark.parametrize(
    "url", ["var/archives", "file:var/archives", "file://host/archives", "s3:///prefix", "gs://bucket", ""]
)
def test_other_archive_urls_are_refused_at_start_up(url: str) -> None:
    with pytest.raises(ValueError, match=r"archive URL|file URL|S3 URL"):
        parse_archive_url(url)
    with pytest.raises(ValidationError, match="archive_url"):
        ArchiverSettings(archive_url=url)


def test_settings_default_to_one_pass_of_90_days_in_batches_of_1000() -> None:
    settings = ArchiverSettings(archive_url="s3://bucket/prefix")
    assert (settings.retention_days, settings.archive_batch_size, settings.archive_interval_s) == (90, 1000, 0.0)
    assert isinstance(open_store("file:///tmp/archives"), FolderStore)


@pytest.mark.parametrize(
    ("tenant_id", "segment"),
    [("acme", "acme"), ("a/b", "a%2Fb"), ("a b%", "a%20b%25"), ("..", "%2E%2E"), (".", "%2E"), ("", "%00")],
)
def test_a_tenant_is_one_folder_that_cannot_climb(tenant_id: str, segment: str) -> None:
    assert tenant_segment(tenant_id) == segment


def test_an_object_is_named_by_tenant_day_first_id_count_and_digest() -> None:
    first = uuid.UUID("0190f6a2-7b1c-7cde-8f00-0123456789ab")
    name = object_name("acme", date(2024, 3, 5), first, 3, b"data")
    assert name.startswith(f"acme/2024/03/05/{first}-3-")
    assert name.endswith(".jsonl.gz")
    assert name != object_name("acme", date(2024, 3, 5), first, 3, b"other data")


def test_a_line_holds_every_row_with_bytes_in_base64_and_times_in_rfc3339() -> None:
    row = notification(created_at=datetime(2024, 3, 5, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    event = {"id": 7, "event_id": uuid.uuid4(), "status": "sent", "occurred_at": CREATED}
    line = serialise(ArchivedNotification(row, events=[event]))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    (decoded,) = read_object(gzip.compress(line))
    assert decoded["notification"]["id"] == str(row["id"])
    assert decoded["notification"]["recipient_hash"] == base64.b64encode(b"\x00\x01\xfe").decode()
    assert decoded["notification"]["created_at"] == "2024-03-05T12:00:00+02:00"
    assert decoded["events"] == [{"id": 7, "event_id": str(event["event_id"]), "status": "sent",
                                  "occurred_at": "2024-03-05T23:30:00+00:00"}]  # fmt: skip
    assert decoded["deliveries"] == decoded["duplicates"] == decoded["dead_letters"] == []
    assert decoded["webhook_deliveries"] == []


def test_a_batch_makes_one_object_per_tenant_and_utc_day_in_order() -> None:
    # 23:30 UTC on the 5th is already the 6th in UTC+2: the folder is the UTC day.
    acme_5th = [notification(), notification(created_at=CREATED + timedelta(minutes=10))]
    acme_6th = [notification(created_at=CREATED + timedelta(hours=1))]
    globex_5th = [notification("globex")]
    items = [ArchivedNotification(row) for row in (*acme_5th, *globex_5th, *acme_6th)]
    objects = build_objects(items)
    assert [(o.name.rsplit("/", 1)[0], o.notifications) for o in objects] == [
        ("acme/2024/03/05", 2),
        ("globex/2024/03/05", 1),
        ("acme/2024/03/06", 1),
    ]
    assert objects[0].name.split("/")[-1].startswith(f"{acme_5th[0]['id']}-2-")
    assert [line["notification"]["id"] for line in read_object(objects[0].data)] == [str(r["id"]) for r in acme_5th]
    # The same rows make the same bytes, so archiving them again rewrites the same object.
    assert build_objects(items) == objects


def test_a_dead_letter_is_archived_sealed_as_stored() -> None:
    payload = b"to: ada@example.com"
    sealed = ORIGINAL_PAYLOAD.seal(ENCRYPTOR, payload, "acme")
    row = dead_letter(original_payload_sealed=sealed)
    archived = archived_row(row, SEALED, ENCRYPTOR)
    assert archived["original_payload_sealed"] == sealed
    assert archived["original_key_sealed"] is None
    assert "original_payload" not in archived
    assert "original_key" not in archived
    assert archived["original_headers"] == row["original_headers"]


def test_a_dead_letter_still_in_clear_is_sealed_before_it_is_archived() -> None:
    row = dead_letter(original_key=b"acme:ada", original_payload=b"to: ada@example.com")
    archived = archived_row(row, SEALED, ENCRYPTOR)
    assert "original_payload" not in archived
    assert "original_key" not in archived
    assert (
        ENCRYPTOR.open(archived["original_payload_sealed"], ORIGINAL_PAYLOAD.context("acme")) == row["original_payload"]
    )
    assert ENCRYPTOR.open(archived["original_key_sealed"], ORIGINAL_KEY.context("acme")) == b"acme:ada"
    line = serialise(ArchivedNotification(notification(), dead_letters=[archived]))
    assert b"ada@example.com" not in line
    assert base64.b64encode(row["original_payload"]) not in line


def test_a_notifications_text_still_in_clear_is_sealed_before_it_is_archived() -> None:
    row = notification(
        idempotency_key="welcome-ada@example.com",
        idempotency_key_sealed=None,
        last_detail="550 <ada@example.com> unknown",
        last_detail_sealed=None,
    )
    archived = archived_row(row, NOTIFICATION_COLUMNS, ENCRYPTOR)
    assert {"idempotency_key", "last_detail"}.isdisjoint(archived)
    for column, text in (
        (IDEMPOTENCY_KEY, b"welcome-ada@example.com"),
        (NOTIFICATION_DETAIL, b"550 <ada@example.com> unknown"),
    ):
        assert ENCRYPTOR.open(archived[column.sealed], column.context("acme")) == text
    assert b"ada@example.com" not in serialise(ArchivedNotification(archived))


def test_the_folder_store_writes_whole_files_and_leaves_no_temporary_one(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "archives")
    where = store.put("acme/2024/03/05/x-1-abc.jsonl.gz", b"first")
    assert Path(where) == tmp_path / "archives/acme/2024/03/05/x-1-abc.jsonl.gz"
    assert Path(where).read_bytes() == b"first"
    store.put("acme/2024/03/05/x-1-abc.jsonl.gz", b"again")
    assert Path(where).read_bytes() == b"again"
    assert [p.name for p in Path(where).parent.iterdir()] == ["x-1-abc.jsonl.gz"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    # A folder where the file should go: the rename fails after the data was written and synced.
    (tmp_path / "acme/x-1-abc.jsonl.gz").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        FolderStore(tmp_path).put("acme/x-1-abc.jsonl.gz", b"data")
    assert [p.name for p in (tmp_path / "acme").iterdir()] == ["x-1-abc.jsonl.gz"]
    assert (tmp_path / "acme/x-1-abc.jsonl.gz").is_dir()

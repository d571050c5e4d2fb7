"""Dead letters on a real broker and Postgres: the dead-letters service stores each DLQ record once, and
the API lists, filters, pages, shows and purges them per tenant; old ones expire; the size is a gauge."""

from __future__ import annotations

import asyncio
import base64
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from services.dead_letters.main import SERVICE, dead_letter_consumer
from services.dead_letters.maintenance import DeadLetterMaintenance
from services.dead_letters.writer import DeadLetterWriter, stored_form
from shared.config import HeraldSettings
from shared.kafka.consumer import ConsumerConfig, ConsumerLoop
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Consumed
from shared.messages import DEAD_LETTER, DELAYED_MESSAGE, EMAIL_DELIVERY, DeadLetter, DelayedMessage
from shared.observability import metrics
from shared.storage.database import Pool, create_pool
from shared.storage.dead_letters import (
    ORIGINAL_KEY,
    ORIGINAL_PAYLOAD,
    DeadLetterFilter,
    DeadLetterRepository,
    NewDeadLetter,
)
from shared.topics import Topics
from tests.conftest import ENCRYPTOR
from tests.e2e.conftest import eventually
from tests.factories import email_delivery
from tests.integration.conftest import DEV_TENANT, assert_problem, auth
from tests.integration.test_gateway_api import add_tenant_with_key
from tests.kafka_helpers import high_watermarks, produce_raw, wait_until_drained

pytestmark = pytest.mark.integration

API = "/api/v1/dead-letters"
OTHER_KEY = "globex-key-0123456789abcdef"
_dlq_offsets = itertools.count()


def dead_letter(**overrides: Any) -> DeadLetter:
    """A dead letter as a sender makes it: an email delivery the provider refused."""
    delivery = email_delivery(tenant_id=DEV_TENANT)
    value: dict[str, Any] = {
        "original_topic": "herald.send.email.v1",
        "original_partition": 3,
        "original_offset": 41,
        "original_key": b"dev:ada@example.com",
        "original_payload": EMAIL_DELIVERY.encode(delivery),
        "reason_category": "invalid_address",
        "reason": "550 5.1.1 no such mailbox",
        "service": "sender-email",
        "failed_at": datetime.now(UTC),
        "tenant_id": DEV_TENANT,
        "notification_id": delivery["notification_id"],
        "original_headers": {"herald-tenant": b"dev", "herald-kind": b"email_delivery"},
    }
    value.update(overrides)
    return value  # type: ignore[return-value]


def stored_letter(**overrides: Any) -> NewDeadLetter:
    """A row as the service stores :func:`dead_letter`, at a DLQ offset of its own."""
    topics = Topics("herald")
    record = Consumed(topics.dlq, 0, next(_dlq_offsets), None, dead_letter(), b"")
    return replace(stored_form(record, topics), **overrides)


def seed(database_url: str, letters: Sequence[NewDeadLetter]) -> None:
    async def store() -> None:
        pool = await create_pool(database_url, 1)
        try:
            await DeadLetterRepository(pool, ENCRYPTOR).store(letters)
        finally:
            await pool.close()

    asyncio.run(store())


async def deleted_at_by_notification(database_url: str) -> dict[str | None, datetime | None]:
    """Each stored dead letter's deletion mark (None: not deleted), by notification id."""
    pool = await create_pool(database_url, 1)
    try:
        found = await pool.fetch("SELECT notification_id, deleted_at FROM dead_letters")
    finally:
        await pool.close()
    return {row["notification_id"]: row["deleted_at"] for row in found}


async def rows(pool: Pool) -> list[dict[str, Any]]:
    """Every stored dead letter, across tenants, in DLQ order, its sealed original key and payload opened."""
    found = []
    for row in await pool.fetch("SELECT * FROM dead_letters ORDER BY dlq_partition, dlq_offset"):
        opened = dict(row)
        for column in (ORIGINAL_KEY, ORIGINAL_PAYLOAD):
            opened[column.name] = column.read(ENCRYPTOR, row, row["tenant_id"])
        found.append(opened)
    return found


async def stored_count(pool: Pool, count: int) -> bool | None:
    """True once at least ``count`` dead letters are stored (None until then, for ``eventually``)."""
    return int(await pool.fetchval("SELECT count(*) FROM dead_letters")) >= count or None


@asynccontextmanager
async def running(
    settings: HeraldSettings, build: Callable[[MessageProducer], ConsumerLoop[Any]]
) -> AsyncIterator[str]:
    """Run the consumer loop ``build`` makes until the block ends; yields the DLQ topic."""
    producer = MessageProducer(settings, client_id="test")
    await producer.start()
    loop = build(producer)
    await loop.start()
    task = asyncio.create_task(loop.run())
    try:
        yield Topics(settings.topic_prefix).dlq
    finally:
        loop.stop()
        await asyncio.wait_for(task, 30)
        await producer.stop()


def writer_loop(settings: HeraldSettings, writer: DeadLetterWriter, group: str) -> Callable[[MessageProducer], Any]:
    """A loop like the service's, with another handler or consumer group."""
    topics = Topics(settings.topic_prefix)
    return lambda producer: ConsumerLoop(
        settings=settings,
        service=SERVICE,
        config=ConsumerConfig(group_id=group, topics=[topics.dlq]),
        contract=DEAD_LETTER,
        handler=writer,
        producer=producer,
        dlq_topic=topics.dlq,
    )


# --- the service ---------------------------------------------------------------------------------


async def test_dlq_records_are_stored_once_even_when_read_again(settings: HeraldSettings, db_pool: Pool) -> None:
    topics = Topics(settings.topic_prefix)
    repository = DeadLetterRepository(db_pool, ENCRYPTOR)
    # Any fields added to DelayedMessage since take their defaults.
    retry_payload = DELAYED_MESSAGE.encode(
        cast(
            DelayedMessage,
            {
                "job_id": str(uuid.uuid4()),
                "tenant_id": DEV_TENANT,
                "notification_id": None,
                "due_at": datetime.now(UTC),
                "target_topic": topics.send("webhook"),
                "key": None,
                "payload": b"{}",
                "headers": {},
                "reason": None,
            },
        )
    )
    letters = [
        dead_letter(original_topic=topics.send("email")),
        dead_letter(original_topic=topics.delay, original_payload=retry_payload, service="retry"),
        dead_letter(original_topic=topics.requests, tenant_id=None, reason_category="invalid_payload"),
    ]
    bootstrap = settings.kafka_bootstrap_servers
    await produce_raw(bootstrap, topics.dlq, [DEAD_LETTER.encode(letter) for letter in letters])
    async with running(settings, lambda producer: dead_letter_consumer(settings, repository, producer)):
        await eventually(lambda: stored_count(db_pool, 3), 30, "3 stored dead letters")
        await wait_until_drained(bootstrap, topics.group(SERVICE), topics.dlq)
    # A second consumer group reads every record again, as a member would after a crash before its commit.
    again = DeadLetterWriter(repository, topics, SERVICE)
    async with running(settings, writer_loop(settings, again, f"{settings.topic_prefix}.again")):
        await wait_until_drained(bootstrap, f"{settings.topic_prefix}.again", topics.dlq)

    stored = {row["original_topic"]: row for row in await rows(db_pool)}
    assert len(await rows(db_pool)) == 3
    assert stored[topics.send("email")]["channel"] == "email"
    assert stored[topics.send("email")]["original_payload"] == letters[0]["original_payload"]
    assert stored[topics.delay]["channel"] == "webhook", "a delayed message's channel is its target's"
    assert stored[topics.requests]["channel"] is None
    # No tenant in the record: the one in the DLQ record's header (none here) or none at all.
    assert stored[topics.requests]["tenant_id"] is None
    assert stored[topics.send("email")]["tenant_id"] == DEV_TENANT


async def test_an_undecodable_dlq_record_is_stored_once_and_never_comes_back(
    settings: HeraldSettings, db_pool: Pool
) -> None:
    topics = Topics(settings.topic_prefix)
    bootstrap = settings.kafka_bootstrap_servers
    good = dead_letter()
    # One key, one partition: the garbage first, so a stalled loop would never store the good one.
    await produce_raw(bootstrap, topics.dlq, [b"\x00garbage", DEAD_LETTER.encode(good)], key=b"k")
    repository = DeadLetterRepository(db_pool, ENCRYPTOR)
    async with running(settings, lambda producer: dead_letter_consumer(settings, repository, producer)):
        # The garbage comes back once, wrapped in a well-formed dead letter, which is stored.
        await eventually(lambda: stored_count(db_pool, 2), 30, "the good record and the wrapped garbage")
        await wait_until_drained(bootstrap, topics.group(SERVICE), topics.dlq)
        # Everything in the topic is committed, and the topic holds the two records and one wrapper:
        # the wrapper was stored, not dead-lettered again.
        assert sum((await high_watermarks(bootstrap, topics.dlq)).values()) == 3

    by_reason = {row["reason"]: row for row in await rows(db_pool)}
    assert set(by_reason) == {"undecodable", "invalid_address"}
    wrapped = by_reason["undecodable"]
    assert (wrapped["original_topic"], wrapped["service"], wrapped["original_payload"]) == (
        topics.dlq,
        SERVICE,
        b"\x00garbage",
    )
    assert wrapped["tenant_id"] is None, "bytes naming no tenant are for operators only"


class BrokenRepository(DeadLetterRepository):
    """Every store fails the way a bug or a missing table would (not a transient failure)."""

    async def store(self, letters: Sequence[NewDeadLetter]) -> int:
        raise ValueError("relation dead_letters does not exist")


async def test_a_record_that_cannot_be_stored_is_dead_lettered_once_then_dropped(
    settings: HeraldSettings, db_pool: Pool
) -> None:
    topics = Topics(settings.topic_prefix)
    bootstrap = settings.kafka_bootstrap_servers
    dropped_before = metrics.DEAD_LETTERS_DROPPED._value.get()
    await produce_raw(bootstrap, topics.dlq, [DEAD_LETTER.encode(dead_letter())])
    writer = DeadLetterWriter(BrokenRepository(db_pool, ENCRYPTOR), topics, SERVICE)
    group = topics.group(SERVICE)
    async with running(settings, writer_loop(settings, writer, group)):
        dropped = metrics.DEAD_LETTERS_DROPPED._value
        await eventually(lambda: dropped.get() > dropped_before or None, 30, "the wrapper to be dropped")
        await wait_until_drained(bootstrap, group, topics.dlq)
        # The record, and its one processing_error wrapper; nothing more.
        assert sum((await high_watermarks(bootstrap, topics.dlq)).values()) == 2
    assert metrics.DEAD_LETTERS_DROPPED._value.get() - dropped_before == 1


async def test_text_postgres_cannot_hold_is_cleaned_rather_than_refused(db_pool: Pool) -> None:
    # Refusing it would dead-letter the record again, onto the topic the service consumes.
    letter = stored_letter(detail="bad\x00byte \ud800", tenant_id="ac\x00me")
    repository = DeadLetterRepository(db_pool, ENCRYPTOR)
    assert await repository.store([letter]) == 1
    [entry] = await repository.page(DeadLetterFilter("acme"), 10)
    assert entry.detail == "badbyte ?"


async def test_the_original_message_comes_back_byte_for_byte_for_a_replay(db_pool: Pool) -> None:
    repository = DeadLetterRepository(db_pool, ENCRYPTOR)
    headers = {"traceparent": b"00-4bf92f3577b34da6-00f067aa0ba902b7-01", "binary": b"\x00\xff"}
    letter = stored_letter(original_headers=headers)
    await repository.store([letter])
    (entry,) = await repository.page(DeadLetterFilter(DEV_TENANT), 10)

    original = await repository.original(DEV_TENANT, entry.id)
    assert original is not None
    assert (original.topic, original.key, original.payload) == (
        letter.original_topic,
        letter.original_key,
        letter.original_payload,
    )
    assert dict(original.headers) == headers
    assert await repository.original("globex", entry.id) is None


# --- retention and the size gauge ---------------------------------------------------------------


async def test_expired_dead_letters_are_deleted_and_recent_ones_kept(db_pool: Pool) -> None:
    now = datetime.now(UTC)
    old = [stored_letter(created_at=now - timedelta(days=15, minutes=i)) for i in range(7)]
    recent = [stored_letter(created_at=now - timedelta(days=13)), stored_letter(created_at=now)]
    repository = DeadLetterRepository(db_pool, ENCRYPTOR)
    assert await repository.store([*old, *recent]) == 9
    # One deleted through the API: retention removes it with the rest once it is old enough, not before.
    (deleted, *_) = await repository.page(DeadLetterFilter(DEV_TENANT, created_before=now - timedelta(days=14)), 1)
    assert await repository.delete(DEV_TENANT, deleted.id)
    maintenance = DeadLetterMaintenance(repository, retention=timedelta(days=14), interval_s=60)

    assert await maintenance.expire(now) == 7
    assert sorted(row["created_at"] for row in await rows(db_pool)) == sorted(x.created_at for x in recent)
    assert await maintenance.expire(now) == 0


async def test_purge_deletes_in_bounded_batches_until_none_match(db_pool: Pool) -> None:
    repository = DeadLetterRepository(db_pool, ENCRYPTOR)
    await repository.store([stored_letter(reason="processing_error") for _ in range(5)] + [stored_letter()])
    where = DeadLetterFilter(DEV_TENANT, reason="processing_error")
    assert await repository.delete_batch(where, 2) == 2
    assert await repository.purge(where, batch_size=2) == 3
    assert [row["reason"] for row in await rows(db_pool)] == ["invalid_address"]


async def test_the_size_gauge_counts_stored_dead_letters_per_reason(db_pool: Pool) -> None:
    repository = DeadLetterRepository(db_pool, ENCRYPTOR)
    maintenance = DeadLetterMaintenance(repository, retention=timedelta(days=14), interval_s=60)
    await repository.store([stored_letter(reason="processing_error") for _ in range(3)] + [stored_letter()])
    # A reason from a newer Herald than this one still counts.
    await repository.store([stored_letter(reason="quota_exceeded", tenant_id=None)])

    def gauge(reason: str) -> float:
        value: float = metrics.DEAD_LETTERS_STORED.labels(reason=reason)._value.get()
        return value

    assert await maintenance.refresh_size() == {"processing_error": 3, "invalid_address": 1, "quota_exceeded": 1}
    assert (gauge("processing_error"), gauge("invalid_address"), gauge("quota_exceeded")) == (3, 1, 1)
    assert gauge("undecodable") == 0, "every known reason reports, 0 when there is none"

    await repository.purge(DeadLetterFilter(None, reason="quota_exceeded"))
    await maintenance.refresh_size()
    assert gauge("quota_exceeded") == 0, "a reason that is gone drops to 0"


# --- the API -------------------------------------------------------------------------------------


def test_listing_is_newest_first_filtered_and_paged(client: TestClient, database_url: str) -> None:
    now = datetime.now(UTC)
    letters = [
        stored_letter(created_at=now - timedelta(minutes=i), reason="processing_error" if i % 2 else "invalid_address")
        for i in range(7)
    ]
    sms = stored_letter(created_at=now - timedelta(hours=2), channel="sms", original_topic="herald.send.sms.v1")
    seed(database_url, [*letters, sms])

    seen: list[str] = []
    url: str | None = f"{API}?reason=processing_error&limit=2"
    while url is not None:
        page = client.get(url, headers=auth())
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        assert all(item["reason"] == "processing_error" for item in page.json()["items"])
        url = page.json()["links"]["next"]
    expected = [x for x in letters if x.reason == "processing_error"]
    assert len(seen) == len(expected) == 3
    created = [client.get(f"{API}/{i}", headers=auth()).json()["created_at"] for i in seen]
    assert created == sorted(created, reverse=True), "newest first across pages"

    def ids(**params: str) -> list[str]:
        response = client.get(API, params=params, headers=auth())
        assert response.status_code == 200, response.text
        return [item["notification_id"] for item in response.json()["items"]]

    assert ids(channel="sms") == [sms.notification_id]
    assert ids(original_topic="herald.send.sms.v1") == [sms.notification_id]
    assert ids(notification_id=letters[3].notification_id or "") == [letters[3].notification_id]
    window = {"created_after": (now - timedelta(minutes=2, seconds=30)).isoformat(), "created_before": now.isoformat()}
    assert ids(**window) == [letters[1].notification_id, letters[2].notification_id]
    assert len(ids()) == 8
    assert client.get(API, params={"limit": 8}, headers=auth()).json()["links"]["next"] is None


def test_a_dead_letter_shows_its_original_message(client: TestClient, database_url: str) -> None:
    known = stored_letter()
    unknown = stored_letter(original_payload=b"\x00\xffnot avro", original_key=None, original_headers={})
    seed(database_url, [known, unknown])
    listed = {item["notification_id"]: item for item in client.get(API, headers=auth()).json()["items"]}

    detail = client.get(listed[known.notification_id]["links"]["self"], headers=auth()).json()
    assert (detail["reason"], detail["detail"], detail["service"], detail["channel"]) == (
        "invalid_address",
        "550 5.1.1 no such mailbox",
        "sender-email",
        "email",
    )
    assert detail["original_key"] == "dev:ada@example.com"
    assert detail["original_headers"] == {"herald-tenant": "dev", "herald-kind": "email_delivery"}
    payload = detail["original_payload"]
    assert (payload["encoding"], payload["contract"]) == ("json", "EmailDelivery")
    assert payload["value"]["notification_id"] == known.notification_id
    assert payload["value"]["to"] == "ada@example.com"

    raw = client.get(f"{API}/{listed[unknown.notification_id]['id']}", headers=auth()).json()["original_payload"]
    assert raw == {"encoding": "base64", "contract": None, "value": base64.b64encode(b"\x00\xffnot avro").decode()}


def test_another_tenants_dead_letters_are_out_of_reach(client: TestClient, database_url: str) -> None:
    asyncio.run(add_tenant_with_key(database_url, "globex", OTHER_KEY))
    mine, theirs = stored_letter(), stored_letter(tenant_id="globex", reason="processing_error")
    seed(database_url, [mine, theirs])
    their_id = client.get(API, headers=auth(OTHER_KEY)).json()["items"][0]["id"]

    assert [item["notification_id"] for item in client.get(API, headers=auth()).json()["items"]] == [
        mine.notification_id
    ]
    assert_problem(client.get(f"{API}/{their_id}", headers=auth()), 404)
    assert_problem(client.delete(f"{API}/{their_id}", headers=auth()), 404)
    purged = client.delete(API, params={"reason": "processing_error"}, headers=auth())
    assert purged.json() == {"deleted": 0}
    assert client.get(f"{API}/{their_id}", headers=auth(OTHER_KEY)).status_code == 200
    assert_problem(client.get(API), 401)


def test_dead_letters_are_deleted_one_by_one_or_by_filter(client: TestClient, database_url: str) -> None:
    now = datetime.now(UTC)
    old_errors = [stored_letter(reason="processing_error", created_at=now - timedelta(days=2)) for _ in range(3)]
    new_error = stored_letter(reason="processing_error", created_at=now)
    other = stored_letter(created_at=now - timedelta(days=3))
    seed(database_url, [*old_errors, new_error, other])
    one = client.get(API, params={"notification_id": other.notification_id}, headers=auth()).json()["items"][0]

    assert client.delete(f"{API}/{one['id']}", headers=auth()).status_code == 204
    assert_problem(client.get(f"{API}/{one['id']}", headers=auth()), 404)
    assert_problem(client.delete(f"{API}/{one['id']}", headers=auth()), 404)
    assert_problem(client.post(f"{API}/{one['id']}/retry", headers=auth()), 404)

    before = (now - timedelta(days=1)).isoformat()
    purged = client.delete(API, params={"reason": "processing_error", "created_before": before}, headers=auth())
    assert purged.status_code == 200, purged.text
    assert purged.json() == {"deleted": 3}
    assert [i["notification_id"] for i in client.get(API, headers=auth()).json()["items"]] == [
        new_error.notification_id
    ]
    # Soft deletes: hidden from the API, kept (until retention) for the record.
    kept = asyncio.run(deleted_at_by_notification(database_url))
    assert {n for n, at in kept.items() if at is not None} == {other.notification_id} | {
        x.notification_id for x in old_errors
    }
    assert kept[new_error.notification_id] is None
    problem = assert_problem(client.delete(API, headers=auth()), 422)
    assert "at least one filter" in problem["detail"]


@pytest.mark.parametrize(
    ("params", "pointer"),
    [
        pytest.param({"cursor": "not-a-cursor"}, "#/query/cursor", id="cursor"),
        pytest.param({"created_before": "2026-01-01T00:00:00"}, "#/query/created_before", id="no-utc-offset"),
        pytest.param({"limit": "0"}, "#/query/limit", id="limit"),
        pytest.param({"channel": "fax"}, "#/query/channel", id="channel"),
    ],
)
def test_bad_parameters_are_422_naming_them(client: TestClient, params: dict[str, str], pointer: str) -> None:
    problem = assert_problem(client.get(API, params=params, headers=auth()), 422)
    assert problem["errors"][0]["pointer"] == pointer


def test_an_unknown_or_malformed_id_is_404(client: TestClient) -> None:
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        assert missing in assert_problem(client.get(f"{API}/{missing}", headers=auth()), 404)["detail"]

"""The Postgres layer against a real server: migrations, status store, read API, API keys, delayed jobs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.gateway.api_keys.repository import ApiKeyRepository, hash_secret
from services.gateway.notifications.repository import AcceptedNotification, NotificationRepository
from services.status.repository import StatusRepository
from shared import status
from shared.messages import DelayedMessage, StatusEvent
from shared.storage.database import Pool, check, create_pool
from shared.storage.delayed_jobs import DelayedJobStore, DueJob
from shared.storage.migrate import ensure_database, load_migrations, migrate
from tests.conftest import ENCRYPTOR
from tests.factories import status_event as event

pytestmark = pytest.mark.integration

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


# Migrations and the pool


async def test_migrate_applies_each_migration_once_and_records_it(empty_database_url: str) -> None:
    expected = [migration.name for migration in load_migrations()]
    assert expected[0] == "0001_initial"

    assert await migrate(empty_database_url) == expected
    assert await migrate(empty_database_url) == []

    connection = await asyncpg.connect(empty_database_url)
    try:
        rows = await connection.fetch("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
        tables = {
            row["tablename"]
            for row in await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    finally:
        await connection.close()
    assert [(row["version"], row["name"]) for row in rows] == [(m.version, m.name) for m in load_migrations()]
    assert all(row["applied_at"] is not None for row in rows)
    assert {"tenants", "api_keys", "notifications", "notification_events", "delayed_jobs", "devices", "deliveries"} <= (
        tables
    )


async def test_concurrent_migrators_apply_each_migration_once(empty_database_url: str) -> None:
    results = await asyncio.gather(*(migrate(empty_database_url) for _ in range(4)))

    applied = [name for result in results for name in result]
    assert applied == [migration.name for migration in load_migrations()]


async def test_ensure_database_leaves_an_existing_database_alone(empty_database_url: str) -> None:
    assert await ensure_database(empty_database_url) is False


async def test_pool_check_and_jsonb_codec(database_url: str) -> None:
    pool = await create_pool(database_url, size=1)
    try:
        await check(pool)
        value = {"a": [1, 2], "b": None, "c": "é"}
        assert await pool.fetchval("SELECT $1::jsonb", value) == value
        assert await pool.fetchval("SELECT $1::json", value) == value
    finally:
        await pool.close()


# Status store


async def test_late_sent_never_overwrites_delivered(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    notifications = NotificationRepository(db_pool, ENCRYPTOR)
    nid = new_id()

    await repository.apply([event(nid, status.DELIVERED, T0, channel="email", attempt=1)])
    await repository.apply([event(nid, status.SENT, T0 - timedelta(seconds=1), attempt=1)])
    await repository.apply([event(nid, status.FAILED, T0 + timedelta(seconds=1), reason="bounce")])

    view = await notifications.get("acme", nid)
    assert view is not None
    assert view.status == status.DELIVERED
    assert view.last_reason is None
    assert [e.status for e in view.events] == [status.SENT, status.DELIVERED, status.FAILED]


async def test_a_delivered_mail_is_still_opened_and_clicked(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid = new_id()

    await repository.apply([event(nid, status.DELIVERED, T0, channel="email", attempt=1)])
    await repository.apply([event(nid, status.OPENED, T0 + timedelta(seconds=1), channel="email")])
    await repository.apply([event(nid, status.FAILED, T0 + timedelta(seconds=2), reason="bounce")])
    await repository.apply([event(nid, status.CLICKED, T0 + timedelta(seconds=3), channel="email")])

    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert view.status == status.CLICKED


async def test_out_of_order_batch_keeps_highest_rank(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid = new_id()
    batch = [
        event(nid, status.SENT, T0 + timedelta(seconds=3), channel="email", attempt=2),
        event(nid, status.RETRYING, T0 + timedelta(seconds=2), channel="sms", attempt=1, reason="timeout"),
        event(nid, status.FAILED, T0 + timedelta(seconds=4), reason="hard_bounce", detail="550 no such user"),
        event(nid, status.ACCEPTED, T0),
        event(nid, status.ROUTED, T0 + timedelta(seconds=1), channel="sms"),
    ]

    await repository.apply(batch)

    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert view.status == status.FAILED
    assert (view.last_reason, view.last_detail) == ("hard_bounce", "550 no such user")
    assert view.channel == "email"
    assert view.attempts == 2
    assert view.created_at == T0
    assert view.updated_at == T0 + timedelta(seconds=4)
    assert [e.status for e in view.events] == [
        status.ACCEPTED,
        status.ROUTED,
        status.RETRYING,
        status.SENT,
        status.FAILED,
    ]


async def test_status_advances_across_batches_and_keeps_channel_and_attempts(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid = new_id()

    await repository.apply([event(nid, status.RETRYING, T0, channel="email", attempt=3, reason="timeout")])
    await repository.apply([event(nid, status.ROUTED, T0 - timedelta(seconds=5))])
    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert (view.status, view.last_reason, view.channel, view.attempts) == (
        status.RETRYING,
        "timeout",
        "email",
        3,
    )
    assert view.created_at == T0 - timedelta(seconds=5)
    assert view.updated_at == T0

    await repository.apply([event(nid, status.SENT, T0 + timedelta(seconds=5), attempt=1)])
    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert (view.status, view.last_reason, view.channel, view.attempts) == (status.SENT, None, "email", 3)


async def test_redelivered_events_are_stored_once(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid = new_id()
    accepted = event(nid, status.ACCEPTED, T0)
    sent = event(nid, status.SENT, T0 + timedelta(seconds=1), attempt=1)

    await repository.apply([accepted, sent, sent])
    await repository.apply([accepted, sent])

    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert [e.event_id for e in view.events] == [accepted["event_id"], sent["event_id"]]
    assert view.status == status.SENT


async def test_event_for_unknown_notification_creates_it(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    notifications = NotificationRepository(db_pool, ENCRYPTOR)
    nid = new_id()

    await repository.apply([event(nid, status.SENT, T0, channel="push", attempt=1, tenant_id="globex")])

    view = await notifications.get("globex", nid)
    assert view is not None
    assert (view.tenant_id, view.status, view.channel, view.attempts) == ("globex", status.SENT, "push", 1)
    assert view.created_at == T0
    # The gateway's own record of the acceptance arrives late: the row exists, nothing changes.
    inserted = await notifications.record_accepted([AcceptedNotification(nid, "globex", None, T0)])
    assert inserted == 0
    view = await notifications.get("globex", nid)
    assert view is not None
    assert view.status == status.SENT


async def test_event_from_another_tenant_does_not_touch_the_notification(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid = new_id()
    await repository.apply([event(nid, status.ROUTED, T0, tenant_id="acme")])

    await repository.apply([event(nid, status.DELIVERED, T0 + timedelta(seconds=1), tenant_id="evil")])

    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert view.status == status.ROUTED
    assert [e.status for e in view.events] == [status.ROUTED]


async def test_unknown_status_is_refused_before_writing(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid = new_id()

    with pytest.raises(ValueError, match="bogus"):
        await repository.apply([event(nid, status.ACCEPTED, T0), event(nid, "bogus", T0)])

    assert await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid) is None


async def test_large_batch_in_one_call(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    ids = [new_id() for _ in range(2_000)]
    batch = [event(nid, status.SENT, T0 + timedelta(seconds=1), attempt=1) for nid in ids]
    batch += [event(nid, status.ACCEPTED, T0) for nid in ids]

    await repository.apply(batch)

    assert await db_pool.fetchval("SELECT count(*) FROM notifications WHERE status = 'sent'") == 2_000
    assert await db_pool.fetchval("SELECT count(*) FROM notification_events") == 4_000


# Notifications split into deliveries (one per push device)


def device_event(
    nid: str,
    delivery_id: str,
    status_name: str,
    at: datetime,
    *,
    deliveries: int,
    attempt: int = 1,
    reason: str | None = None,
    detail: str | None = None,
) -> StatusEvent:
    return event(
        nid,
        status_name,
        at,
        channel="push",
        attempt=attempt,
        reason=reason,
        detail=detail,
        delivery_id=delivery_id,
        deliveries=deliveries,
    )


async def test_a_dead_token_does_not_fail_a_push_another_device_received(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid, phone, tablet, laptop = new_id(), new_id(), new_id(), new_id()
    await repository.apply([event(nid, status.ROUTED, T0, channel="push")])

    await repository.apply([device_event(nid, phone, status.FAILED, T0 + timedelta(seconds=1), deliveries=3)])
    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert view.status == status.ROUTED

    await repository.apply(
        [
            device_event(nid, tablet, status.SENT, T0 + timedelta(seconds=2), deliveries=3),
            device_event(nid, laptop, status.RETRYING, T0 + timedelta(seconds=2), deliveries=3, reason="timeout"),
        ]
    )
    await repository.apply(
        [device_event(nid, laptop, status.FAILED, T0 + timedelta(seconds=9), deliveries=3, attempt=5)]
    )

    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert (view.status, view.attempts) == (status.SENT, 5)
    assert {(d.id, d.status, d.attempts) for d in view.deliveries} == {
        (phone, status.FAILED, 1),
        (tablet, status.SENT, 1),
        (laptop, status.FAILED, 5),
    }
    assert [e.delivery_id for e in view.events] == [None, phone, tablet, laptop, laptop]


async def test_a_push_fails_once_every_device_failed(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid, phone, tablet = new_id(), new_id(), new_id()
    reason, detail = "unregistered_token", "unregistered token: 410"

    # The failures arrive before the router's own event: each carries how many deliveries there are.
    await repository.apply(
        [device_event(nid, phone, status.FAILED, T0 + timedelta(seconds=1), deliveries=2, reason=reason, detail=detail)]
    )
    await repository.apply([event(nid, status.ROUTED, T0, channel="push")])
    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert view.status == status.ROUTED

    await repository.apply(
        [
            device_event(
                nid, tablet, status.FAILED, T0 + timedelta(seconds=2), deliveries=2, reason=reason, detail=detail
            )
        ]
    )

    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert (view.status, view.last_reason, view.last_detail) == (status.FAILED, reason, detail)


async def test_a_failed_delivery_requeued_by_hand_can_still_be_sent(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid, delivery = new_id(), new_id()
    await repository.apply(
        [
            event(nid, status.ROUTED, T0, channel="email"),
            device_event(nid, delivery, status.FAILED, T0 + timedelta(seconds=1), deliveries=1, attempt=5),
        ]
    )

    await repository.apply([device_event(nid, delivery, status.REQUEUED, T0 + timedelta(minutes=5), deliveries=1)])
    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert (view.status, [d.status for d in view.deliveries]) == (status.REQUEUED, [status.REQUEUED])

    await repository.apply(
        [device_event(nid, delivery, status.SENT, T0 + timedelta(minutes=6), deliveries=1, attempt=6)]
    )
    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert (view.status, [d.status for d in view.deliveries], view.attempts) == (status.SENT, [status.SENT], 6)


async def test_a_requeue_and_its_send_in_one_batch_move_a_failed_notification_to_sent(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid, delivery = new_id(), new_id()
    await repository.apply([device_event(nid, delivery, status.FAILED, T0, deliveries=1, attempt=3)])

    await repository.apply(
        [
            device_event(nid, delivery, status.REQUEUED, T0 + timedelta(minutes=1), deliveries=1, attempt=4),
            device_event(nid, delivery, status.SENT, T0 + timedelta(minutes=2), deliveries=1, attempt=4),
        ]
    )

    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert (view.status, [d.status for d in view.deliveries]) == (status.SENT, [status.SENT])


async def test_a_single_delivery_failure_fails_the_notification(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid = new_id()

    await repository.apply(
        [
            event(nid, status.ROUTED, T0, channel="email"),
            device_event(nid, new_id(), status.FAILED, T0 + timedelta(seconds=1), deliveries=1, reason="bounce"),
        ]
    )

    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert (view.status, view.last_reason) == (status.FAILED, "bounce")


async def test_a_delivery_status_only_moves_forward(db_pool: Pool) -> None:
    repository = StatusRepository(db_pool, ENCRYPTOR)
    nid, delivery = new_id(), new_id()

    await repository.apply([device_event(nid, delivery, status.SENT, T0 + timedelta(seconds=2), deliveries=1)])
    await repository.apply(
        [device_event(nid, delivery, status.RETRYING, T0 + timedelta(seconds=1), deliveries=1, reason="timeout")]
    )

    view = await NotificationRepository(db_pool, ENCRYPTOR).get("acme", nid)
    assert view is not None
    assert [(d.status, d.last_reason) for d in view.deliveries] == [(status.SENT, None)]
    assert view.status == status.SENT


# Gateway: notifications and API keys


async def test_record_accepted_then_get(db_pool: Pool) -> None:
    notifications = NotificationRepository(db_pool, ENCRYPTOR)
    nid = new_id()

    inserted = await notifications.record_accepted([AcceptedNotification(nid, "acme", "order-42", T0)])

    assert inserted == 1
    view = await notifications.get("acme", nid)
    assert view is not None
    assert (view.id, view.tenant_id, view.status, view.channel, view.idempotency_key, view.attempts) == (
        nid,
        "acme",
        status.ACCEPTED,
        None,
        "order-42",
        0,
    )
    assert (view.created_at, view.updated_at, view.events) == (T0, T0, ())
    assert await notifications.record_accepted([AcceptedNotification(nid, "acme", None, T0)]) == 0


async def test_get_is_scoped_to_the_tenant(db_pool: Pool) -> None:
    notifications = NotificationRepository(db_pool, ENCRYPTOR)
    nid = new_id()
    await notifications.record_accepted([AcceptedNotification(nid, "acme", None, T0)])
    await StatusRepository(db_pool, ENCRYPTOR).apply([event(nid, status.ROUTED, T0, tenant_id="acme")])

    assert await notifications.get("globex", nid) is None
    assert await notifications.get("acme", new_id()) is None
    assert await notifications.get("acme", "not-a-uuid") is None
    view = await notifications.get("acme", nid)
    assert view is not None
    assert view.status == status.ROUTED


async def test_api_keys(db_pool: Pool) -> None:
    keys = ApiKeyRepository(db_pool)
    secret = "hk_live_" + uuid.uuid4().hex
    other = "hk_live_" + uuid.uuid4().hex
    await keys.ensure_tenant("acme", "Acme Corp")
    await keys.ensure_tenant("acme", "Renamed")

    await keys.create_key("acme", "ci", secret)
    await keys.create_key("acme", "ci", secret)

    assert await keys.find_tenant(secret) == "acme"
    assert await keys.find_tenant(other) is None
    row = await db_pool.fetchrow("SELECT prefix, key_hash FROM api_keys")
    assert row is not None
    assert (row["prefix"], row["key_hash"]) == (secret[:12], hash_secret(secret))
    assert await db_pool.fetchval("SELECT count(*) FROM api_keys") == 1
    assert await db_pool.fetchval("SELECT name FROM tenants WHERE id = 'acme'") == "Acme Corp"

    assert await keys.revoke_key(secret) is True
    assert await keys.revoke_key(secret) is False
    assert await keys.find_tenant(secret) is None


async def test_a_key_for_a_tenant_known_only_from_its_tokens_creates_the_tenant(db_pool: Pool) -> None:
    """A JWT names a tenant Herald may not have a row for yet; its first key creates the row, named by its id."""
    created = await ApiKeyRepository(db_pool).create_key("newcomer", "ci", "hk_live_x")
    assert created is not None
    assert await db_pool.fetchval("SELECT name FROM tenants WHERE id = 'newcomer'") == "newcomer"


# Delayed jobs


def job(due_at: datetime, *, topic: str = "herald.send.email.v1") -> DelayedMessage:
    return DelayedMessage(
        job_id=new_id(),
        tenant_id="acme",
        notification_id=new_id(),
        due_at=due_at,
        target_topic=topic,
        key=b"acme:user-1",
        payload=b"\xc3\x01payload",
        headers={"traceparent": b"00-abc-def-01", "binary": b"\x00\xff"},
        reason="retry",
        recurring=False,
    )


async def test_claim_due_fires_only_due_jobs_and_deletes_them(db_pool: Pool) -> None:
    store = DelayedJobStore(db_pool, ENCRYPTOR)
    now = datetime.now(UTC)
    late, early, future = (
        job(now - timedelta(seconds=1)),
        job(now - timedelta(minutes=1)),
        job(now + timedelta(hours=1)),
    )
    await store.add([late, early, future])
    await store.add([late])
    assert await store.next_due_at() == early["due_at"]
    fired: list[DueJob] = []

    async def fire(jobs: list[DueJob]) -> dict[str, datetime]:
        fired.extend(jobs)
        return {}

    assert await store.claim_due(now, 10, fire) == 2

    assert [j.job_id for j in fired] == [early["job_id"], late["job_id"]]
    assert fired[0] == DueJob(
        job_id=early["job_id"],
        target_topic="herald.send.email.v1",
        key=b"acme:user-1",
        payload=b"\xc3\x01payload",
        headers={"traceparent": b"00-abc-def-01", "binary": b"\x00\xff"},
        due_at=early["due_at"],
    )
    assert await store.next_due_at() == future["due_at"]
    assert await store.claim_due(now, 10, fire) == 0
    assert len(fired) == 2


async def test_claim_due_respects_limit_and_empty_store(db_pool: Pool) -> None:
    store = DelayedJobStore(db_pool, ENCRYPTOR)
    now = datetime.now(UTC)
    assert await store.next_due_at() is None
    jobs = [job(now - timedelta(seconds=i)) for i in range(5)]
    await store.add(jobs)
    fired: list[DueJob] = []

    async def fire(batch: list[DueJob]) -> dict[str, datetime]:
        fired.extend(batch)
        return {}

    assert await store.claim_due(now, 3, fire) == 3
    assert [j.job_id for j in fired] == [j["job_id"] for j in reversed(jobs)][:3]


async def test_concurrent_claimers_never_fire_the_same_job(db_pool: Pool) -> None:
    store = DelayedJobStore(db_pool, ENCRYPTOR)
    now = datetime.now(UTC)
    jobs = [job(now - timedelta(seconds=i)) for i in range(10)]
    await store.add(jobs)
    first_started, release = asyncio.Event(), asyncio.Event()
    first_fired: list[DueJob] = []
    second_fired: list[DueJob] = []

    async def fire_first(batch: list[DueJob]) -> dict[str, datetime]:
        first_fired.extend(batch)
        first_started.set()
        await release.wait()
        return {}

    async def fire_second(batch: list[DueJob]) -> dict[str, datetime]:
        second_fired.extend(batch)
        return {}

    first = asyncio.create_task(store.claim_due(now, 6, fire_first))
    try:
        await asyncio.wait_for(first_started.wait(), timeout=10)
        # While the first claimer holds its jobs, the second must skip them rather than wait.
        second_count = await asyncio.wait_for(store.claim_due(now, 10, fire_second), timeout=5)
    finally:
        release.set()
    first_count = await first

    first_ids = {j.job_id for j in first_fired}
    second_ids = {j.job_id for j in second_fired}
    assert (first_count, second_count) == (6, 4)
    assert first_ids.isdisjoint(second_ids)
    assert first_ids | second_ids == {j["job_id"] for j in jobs}
    assert await store.next_due_at() is None


async def test_failed_fire_leaves_the_jobs(db_pool: Pool) -> None:
    store = DelayedJobStore(db_pool, ENCRYPTOR)
    now = datetime.now(UTC)
    jobs = [job(now - timedelta(seconds=1)), job(now - timedelta(seconds=2))]
    await store.add(jobs)

    async def broken(batch: list[DueJob]) -> dict[str, datetime]:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        await store.claim_due(now, 10, broken)

    fired: list[DueJob] = []

    async def fire(batch: list[DueJob]) -> dict[str, datetime]:
        fired.extend(batch)
        return {}

    assert await store.claim_due(now, 10, fire) == 2
    assert {j.job_id for j in fired} == {j["job_id"] for j in jobs}


async def test_a_recurring_job_moves_to_its_next_time_and_a_cancelled_one_is_dropped(db_pool: Pool) -> None:
    store = DelayedJobStore(db_pool, ENCRYPTOR)
    now = datetime.now(UTC)
    series = {**job(now - timedelta(seconds=1)), "recurring": True}
    cancelled = job(now - timedelta(seconds=2))
    await store.add([series, cancelled])  # type: ignore[list-item]
    assert cancelled["notification_id"] is not None
    await StatusRepository(db_pool, ENCRYPTOR).apply([event(cancelled["notification_id"], status.CANCELLED, now)])
    fired: list[DueJob] = []
    tomorrow = now + timedelta(days=1)

    async def fire(batch: list[DueJob]) -> dict[str, datetime]:
        fired.extend(batch)
        return {j.job_id: tomorrow for j in batch if j.recurring}

    assert await store.claim_due(now, 10, fire) == 1

    assert [(j.job_id, j.recurring) for j in fired] == [(series["job_id"], True)]
    assert await store.next_due_at() == tomorrow
    assert await db_pool.fetchval("SELECT count(*) FROM delayed_jobs") == 1

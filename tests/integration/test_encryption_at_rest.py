"""Personal data at rest: Postgres holds only sealed values and blind indexes, the repositories give
plaintext and find rows by value, and resealing moves every row under a new key (and backfills rows
written in clear before migrations 0011, 0019 and 0022)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from structlog.testing import capture_logs

from services.gateway.notifications.repository import AcceptedNotification, NotificationRepository
from services.status.main import status_writer
from shared import status
from shared.crypto import DecryptionError, Encryptor, generate_key, parse_keys
from shared.kafka.records import Consumed, Produce
from shared.messages import WEBHOOK_DELIVERY, DelayedMessage, StatusEvent
from shared.storage.database import Pool, create_pool
from shared.storage.dead_letters import DeadLetterFilter, DeadLetterRepository
from shared.storage.delayed_jobs import DelayedJobStore, DueJob
from shared.storage.devices import DeviceRepository
from shared.storage.migrate import load_migrations
from shared.storage.recipients import Contact, Preference, RecipientRepository
from shared.storage.reseal import reseal_all
from shared.storage.suppressions import Suppression, SuppressionRepository
from shared.storage.webhook_endpoints import DeliveryFilter, WebhookEndpointRepository
from shared.topics import Topics
from tests.factories import status_event
from tests.integration.test_dead_letters import stored_letter

pytestmark = pytest.mark.integration

INDEX_KEY = base64.b64decode(generate_key())
OLD, NEW = generate_key(), generate_key()
TOKEN = "fcm-token-of-ada-0123456789"
DEAD_TOKEN = "webpush-endpoint-of-ada-9876543210"
ADDRESS = "ada@example.com"
PHONE = "+14155550100"
USER = "user-ada-4711"
# A Kafka key as Herald makes it (tenant:recipient), kept by dead letters and delayed jobs.
KAFKA_KEY = f"acme:{ADDRESS}".encode()
# Caller-chosen and free text: each quotes the person.
IDEMPOTENCY_KEY = f"welcome-{ADDRESS}"
BOUNCE = f"550 5.1.1 <{ADDRESS}>: Recipient address rejected"
SMS_ANSWER = f"21614: 'To' number {PHONE} is not a mobile number"
DISABLED = f"webpush: 410 Gone for {DEAD_TOKEN}"
HOOK_TOKEN = "s3cr3t-hook-token"
HOOK_URL = f"https://hooks.example.com/in?token={HOOK_TOKEN}"
UNREACHABLE = f"cannot reach {HOOK_URL}: ConnectError()"
TABLES = (
    "devices",
    "suppressions",
    "dead_letters",
    "recipients",
    "preferences",
    "delayed_jobs",
    "notifications",
    "notification_events",
    "deliveries",
    "webhook_endpoint_deliveries",
)
NOW = datetime.now(UTC)


def encryptor(keys: str) -> Encryptor:
    return Encryptor(parse_keys(keys), INDEX_KEY)


async def raw_bytes(pool: Pool) -> bytes:
    """Every byte of the tables holding personal data as Postgres returns it, in one blob to search for plaintext."""
    dump = b""
    for table in TABLES:
        for row in await pool.fetch(f"SELECT * FROM {table}"):
            dump += b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    return dump


async def assert_no_plaintext(pool: Pool, *payloads: bytes) -> None:
    dump = await raw_bytes(pool)
    for plaintext in (TOKEN, DEAD_TOKEN, ADDRESS, PHONE, PHONE.removeprefix("+"), USER, HOOK_TOKEN):
        assert plaintext.encode() not in dump, plaintext
    for payload in payloads:
        assert payload not in dump


def recurring_send(payload: bytes) -> DelayedMessage:
    """A recurring series waiting in the retry service: due now, and still there after each firing."""
    return DelayedMessage(
        job_id=str(uuid.uuid4()),
        tenant_id="acme",
        notification_id=None,
        due_at=datetime.now(UTC),
        target_topic="herald.send.email.v1",
        key=KAFKA_KEY,
        payload=payload,
        headers={},
        reason="scheduled",
        recurring=True,
    )


async def fired(pool: Pool, keys: Encryptor) -> list[tuple[bytes | None, bytes]]:
    """The key and payload of each due job as the retry service produces them; each series stays due."""
    jobs: list[DueJob] = []

    async def fire(batch: list[DueJob]) -> dict[str, datetime]:
        jobs.extend(batch)
        return {job.job_id: job.due_at for job in batch}

    await DelayedJobStore(pool, keys).claim_due(datetime.now(UTC), 10, fire)
    return [(job.key, job.payload) for job in jobs]


async def through_the_status_service(pool: Pool, keys: Encryptor, events: list[StatusEvent]) -> list[Produce]:
    """``events`` handled by the status service's own handler, as one consumed batch."""
    writer = status_writer(pool, keys, Topics("herald"), endpoints_cache_s=0)
    outputs = await writer([Consumed("herald.status.v1", 0, n, None, event, b"") for n, event in enumerate(events)])
    return [output for output in outputs if isinstance(output, Produce)]


async def notify(pool: Pool, keys: Encryptor) -> str:
    """A notification the gateway accepted under a caller's idempotency key, whose email bounced and whose
    SMS the provider refused, with a webhook endpoint that could not be reached about it."""
    notification_id = str(uuid.uuid4())
    await NotificationRepository(pool, keys).record_accepted(
        [AcceptedNotification(notification_id, "acme", IDEMPOTENCY_KEY, NOW)]
    )
    endpoint = await WebhookEndpointRepository(pool, keys).create("acme", HOOK_URL, None, [status.FAILED])
    events = [
        status_event(notification_id, status.ACCEPTED, NOW, tenant_id="acme"),
        status_event(notification_id, status.ROUTED, NOW + timedelta(seconds=1), tenant_id="acme"),
    ]
    # One delivery by email, one by SMS: the notification fails once both have.
    for seconds, (channel, answer) in enumerate((("email", BOUNCE), ("sms", SMS_ANSWER)), start=2):
        events.append(
            status_event(
                notification_id,
                status.FAILED,
                NOW + timedelta(seconds=seconds),
                tenant_id="acme",
                channel=channel,
                attempt=1,
                reason="invalid_address",
                detail=answer,
                delivery_id=str(uuid.uuid4()),
                deliveries=2,
            )
        )
    [planned] = await through_the_status_service(pool, keys, events)
    delivery = WEBHOOK_DELIVERY.decode(planned.value)
    report = status_event(
        notification_id,
        status.RETRYING,
        NOW,
        tenant_id="acme",
        channel="webhook",
        attempt=1,
        detail=UNREACHABLE,
        delivery_id=delivery["delivery_id"],
    )
    report["endpoint_id"] = endpoint.id
    assert await through_the_status_service(pool, keys, [report]) == []
    return notification_id


async def fill(pool: Pool, keys: Encryptor) -> bytes:
    """Through the repositories and the status service: a device and a disabled one, a recipient with a
    preference, a suppression, a dead letter, a delayed job (whose payload is the letter's) and a
    notification; returns that payload."""
    devices = DeviceRepository(pool, keys)
    await devices.register("acme", USER, "android", TOKEN)
    await devices.register("acme", USER, "web", DEAD_TOKEN)
    assert await devices.disable_token("acme", DEAD_TOKEN, DISABLED)
    recipients = RecipientRepository(pool, keys)
    await recipients.put("acme", USER, Contact(email=ADDRESS, phone=PHONE))
    assert await recipients.set_preference("acme", USER, Preference("marketing", "email", False))
    await SuppressionRepository(pool, keys).add([Suppression("acme", "email", ADDRESS.upper(), "bounced", BOUNCE)])
    letter = stored_letter(tenant_id="acme", original_key=KAFKA_KEY, detail=BOUNCE)
    await DeadLetterRepository(pool, keys).store([letter])
    await DelayedJobStore(pool, keys).add([recurring_send(letter.original_payload)])
    await notify(pool, keys)
    return letter.original_payload


async def assert_displayed(pool: Pool, keys: Encryptor, payload: bytes) -> None:
    """What the API shows: every value in clear, from the rows it lists or reads by id."""
    suppressions = SuppressionRepository(pool, keys)
    assert [(s.address, s.detail) for s in await suppressions.for_tenant("acme")] == [(ADDRESS, BOUNCE)]
    letters = DeadLetterRepository(pool, keys)
    [entry] = await letters.page(DeadLetterFilter("acme"), 10)
    assert entry.detail == BOUNCE
    detail = await letters.get("acme", entry.id)
    assert detail is not None
    assert (detail.entry.detail, detail.original.payload, detail.original.key) == (BOUNCE, payload, KAFKA_KEY)
    assert [profile.user_id for profile in await RecipientRepository(pool, keys).page("acme", 10)] == [USER]
    notification_id = str(await pool.fetchval("SELECT id FROM notifications"))
    view = await NotificationRepository(pool, keys).get("acme", notification_id)
    assert view is not None
    assert (view.idempotency_key, view.status, view.last_detail) == (IDEMPOTENCY_KEY, status.FAILED, SMS_ANSWER)
    assert [event.detail for event in view.events] == [None, None, BOUNCE, SMS_ANSWER]
    assert sorted((d.channel, d.last_detail) for d in view.deliveries) == [("email", BOUNCE), ("sms", SMS_ANSWER)]
    endpoints = WebhookEndpointRepository(pool, keys)
    [endpoint] = await endpoints.live("acme")
    [logged] = await endpoints.deliveries(DeliveryFilter("acme", uuid.UUID(endpoint.id)), 10)
    assert (logged.outcome, logged.detail) == ("retrying", UNREACHABLE)
    assert await fired(pool, keys) == [(KAFKA_KEY, payload)]


async def assert_found(pool: Pool, keys: Encryptor) -> None:
    """Rows found by value (a token, an address, a user id), in their own tenant only."""
    devices = DeviceRepository(pool, keys)
    assert [(d.user_id, d.token) for d in await devices.for_user("acme", USER)] == [(USER, TOKEN)]
    assert [(d.token, d.disabled_reason) for d in await devices.for_user("acme", USER, active_only=False)] == [
        (TOKEN, None),
        (DEAD_TOKEN, DISABLED),
    ]
    routed = await devices.active_for_users({("acme", USER), ("globex", USER)})
    assert {user: [d.token for d in found] for user, found in routed.items()} == {("acme", USER): [TOKEN]}
    suppressions = SuppressionRepository(pool, keys)
    assert [s.address for s in await suppressions.for_tenant("acme", address=ADDRESS)] == [ADDRESS]
    assert await suppressions.suppressed([("acme", "email", ADDRESS), ("globex", "email", ADDRESS)]) == {
        ("acme", "email", ADDRESS)
    }
    recipients = RecipientRepository(pool, keys)
    profile = await recipients.get("acme", USER)
    assert profile is not None
    assert (profile.user_id, profile.contact.email, profile.contact.phone) == (USER, ADDRESS, PHONE)
    assert await recipients.get("globex", USER) is None
    assert await recipients.preferences("acme", USER) == [Preference("marketing", "email", False)]
    stored = await recipients.for_routing({("acme", USER), ("globex", USER)})
    assert list(stored) == [("acme", USER)]
    assert stored["acme", USER].preferences == [Preference("marketing", "email", False)]


async def assert_readable(pool: Pool, keys: Encryptor, payload: bytes) -> None:
    await assert_displayed(pool, keys, payload)
    await assert_found(pool, keys)


async def test_postgres_holds_no_plaintext_while_the_repositories_return_it(db_pool: Pool) -> None:
    keys = encryptor(f"k1:{OLD}")
    payload = await fill(db_pool, keys)

    await assert_no_plaintext(db_pool, payload)
    await assert_readable(db_pool, keys, payload)
    # Lookups and writes by value: a known token is registered again, not twice; disabled by value.
    devices = DeviceRepository(db_pool, keys)
    await devices.register("acme", "bob", "android", TOKEN)
    assert [d.user_id for d in await devices.for_user("acme", "bob")] == ["bob"]
    assert await devices.disable_token("acme", TOKEN, "fcm: UNREGISTERED")
    assert await devices.for_user("acme", "bob") == []
    assert await SuppressionRepository(db_pool, keys).remove("acme", "email", ADDRESS)
    # A recipient stored again under its user id is the same one; deleted by user id.
    recipients = RecipientRepository(db_pool, keys)
    _, created = await recipients.put("acme", USER, Contact(email="ada@example.org"))
    assert created is False
    assert await recipients.delete("acme", USER)
    assert await recipients.get("acme", USER) is None


async def test_rotation_leaves_every_row_readable_with_only_the_new_key(db_pool: Pool) -> None:
    payload = await fill(db_pool, encryptor(f"k1:{OLD}"))
    rotating = encryptor(f"k2:{NEW},k1:{OLD}")
    # Step 1: the new key in front; old rows still open, new ones are sealed under it.
    await assert_readable(db_pool, rotating, payload)

    # Step 2: reseal; a second run has nothing left to do. Preferences keep only a blind index, which
    # no key rotation touches.
    assert await reseal_all(db_pool, rotating) == {
        "devices": 2,
        "suppressions": 1,
        "dead_letters": 1,
        "delayed_jobs": 1,
        "webhook_endpoints": 1,
        "webhook_endpoint_deliveries": 1,
        "recipients": 1,
        "preferences": 0,
        "notifications": 1,
        "notification_events": 2,
        "deliveries": 2,
    }
    assert set((await reseal_all(db_pool, rotating)).values()) == {0}

    # Step 3: the old key removed.
    await assert_readable(db_pool, encryptor(f"k2:{NEW}"), payload)
    with pytest.raises(DecryptionError):
        await DeviceRepository(db_pool, encryptor(f"k1:{OLD}")).for_user("acme", USER)


async def write_in_clear(pool: Pool, payload: bytes) -> None:
    """Every row as the release before the migration sealing its column wrote it: plaintext in the old
    columns, nothing sealed or indexed."""
    for statement, *values in (
        ("UPDATE preferences SET user_id = $1, user_id_index = NULL", USER),
        ("UPDATE recipients SET user_id = $1, user_id_sealed = NULL, user_id_index = NULL", USER),
        (
            """UPDATE devices SET token = CASE WHEN disabled_at IS NULL THEN $1 ELSE $2 END, user_id = $3,
                                  disabled_reason = CASE WHEN disabled_at IS NULL THEN NULL ELSE $4 END,
                                  token_sealed = NULL, token_index = NULL, user_id_index = NULL,
                                  disabled_reason_sealed = NULL""",
            TOKEN,
            DEAD_TOKEN,
            USER,
            DISABLED,
        ),
        (
            "UPDATE suppressions SET address = $1, detail = $2, address_sealed = NULL, address_index = NULL, "
            "detail_sealed = NULL",
            ADDRESS,
            BOUNCE,
        ),
        (
            """UPDATE dead_letters SET original_payload = $1, original_key = $2, detail = $3,
                                       original_payload_sealed = NULL, original_key_sealed = NULL,
                                       detail_sealed = NULL""",
            payload,
            KAFKA_KEY,
            BOUNCE,
        ),
        (
            "UPDATE delayed_jobs SET payload = $1, key = $2, payload_sealed = NULL, key_sealed = NULL",
            payload,
            KAFKA_KEY,
        ),
        (
            """UPDATE notifications SET idempotency_key = $1, last_detail = $2, idempotency_key_sealed = NULL,
                                        last_detail_sealed = NULL""",
            IDEMPOTENCY_KEY,
            SMS_ANSWER,
        ),
        (
            """UPDATE notification_events
               SET detail = CASE channel WHEN 'email' THEN $1 WHEN 'sms' THEN $2 END, detail_sealed = NULL""",
            BOUNCE,
            SMS_ANSWER,
        ),
        (
            """UPDATE deliveries SET last_detail = CASE channel WHEN 'email' THEN $1 ELSE $2 END,
                                     last_detail_sealed = NULL""",
            BOUNCE,
            SMS_ANSWER,
        ),
        ("UPDATE webhook_endpoint_deliveries SET detail = $1, detail_sealed = NULL", UNREACHABLE),
    ):
        await pool.execute(statement, *values)


async def test_rows_written_in_clear_before_migrations_0011_0019_and_0022_are_sealed_by_the_backfill(
    db_pool: Pool,
) -> None:
    keys = encryptor(f"k1:{OLD}")
    payload = await fill(db_pool, keys)
    await write_in_clear(db_pool, payload)
    # Until the backfill, what the API shows is still shown (jobs waiting since before 0019 fire with
    # their original bytes); lookups by value miss those rows.
    await assert_displayed(db_pool, keys, payload)
    assert await RecipientRepository(db_pool, keys).get("acme", USER) is None

    # Webhook endpoints and recipients' addresses came after 0011: never in clear, only the user id is.
    assert await reseal_all(db_pool, keys) == {
        "devices": 2,
        "suppressions": 1,
        "dead_letters": 1,
        "delayed_jobs": 1,
        "webhook_endpoints": 0,
        "webhook_endpoint_deliveries": 1,
        "recipients": 1,
        "preferences": 1,
        "notifications": 1,
        "notification_events": 2,
        "deliveries": 2,
    }

    await assert_no_plaintext(db_pool, payload)
    await assert_readable(db_pool, keys, payload)


async def test_a_row_in_clear_whose_user_id_was_stored_again_since_is_left_for_an_operator(db_pool: Pool) -> None:
    keys = encryptor(f"k1:{OLD}")
    recipients = RecipientRepository(db_pool, keys)
    # During a rolling upgrade, the previous release stored the same user in clear as the new one sealed.
    await recipients.put("acme", USER, Contact(email=ADDRESS))
    for user_id in (USER, "user-grace"):
        await db_pool.execute(
            "INSERT INTO recipients (id, tenant_id, user_id) VALUES ($1, 'acme', $2)", uuid.uuid4(), user_id
        )

    with capture_logs() as logs:
        assert (await reseal_all(db_pool, keys))["recipients"] == 1

    [conflict] = [log for log in logs if log["event"] == "reseal_conflict"]
    assert (conflict["table"], conflict["constraint"]) == ("recipients", "recipients_tenant_user_index_key")
    assert await db_pool.fetchval("SELECT id::text FROM recipients WHERE user_id IS NOT NULL") == conflict["id"]
    assert await recipients.get("acme", "user-grace") is not None
    profile = await recipients.get("acme", USER)
    assert profile is not None
    assert profile.contact.email == ADDRESS


async def test_migration_0022_keeps_the_previous_releases_rows_and_the_backfill_makes_them_found(
    empty_database_url: str,
) -> None:
    migrations = load_migrations()
    position = next(index for index, migration in enumerate(migrations) if migration.name.startswith("0022_"))
    before, sealing = migrations[:position], migrations[position]
    assert sealing.name == "0022_seal_details_keys_and_user_ids"
    keys = encryptor(f"k1:{OLD}")
    connection = await asyncpg.connect(empty_database_url)
    try:
        for migration in before:
            await connection.execute(migration.sql)
        # A recipient with a preference and a device, as the release before 0022 stored them.
        await connection.execute(
            "INSERT INTO recipients (id, tenant_id, user_id) VALUES ($1, 'acme', $2)", uuid.uuid4(), USER
        )
        await connection.execute(
            """
            INSERT INTO preferences (tenant_id, user_id, category, channel, enabled)
            VALUES ('acme', $1, 'marketing', 'email', false)
            """,
            USER,
        )
        await connection.execute(
            "INSERT INTO devices (id, tenant_id, user_id, platform, token) VALUES ($1, 'acme', $2, 'android', $3)",
            uuid.uuid4(),
            USER,
            TOKEN,
        )
        await connection.execute(sealing.sql)
    finally:
        await connection.close()

    pool = await create_pool(empty_database_url, 2)
    try:
        await reseal_all(pool, keys)
        await assert_no_plaintext(pool)
        recipients = RecipientRepository(pool, keys)
        assert await recipients.preferences("acme", USER) == [Preference("marketing", "email", False)]
        assert [d.token for d in await DeviceRepository(pool, keys).for_user("acme", USER)] == [TOKEN]
    finally:
        await pool.close()

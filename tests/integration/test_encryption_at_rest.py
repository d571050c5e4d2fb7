"""Personal data at rest: Postgres holds only sealed values and blind indexes, the repositories give
plaintext and find rows by value, and resealing moves every row under a new key (and backfills rows
written in clear before migrations 0011 and 0019)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from shared.crypto import DecryptionError, Encryptor, generate_key, parse_keys
from shared.messages import DelayedMessage
from shared.storage.database import Pool
from shared.storage.dead_letters import DeadLetterRepository
from shared.storage.delayed_jobs import DelayedJobStore, DueJob
from shared.storage.devices import DeviceRepository
from shared.storage.recipients import Contact, RecipientRepository
from shared.storage.reseal import reseal_all
from shared.storage.suppressions import Suppression, SuppressionRepository
from tests.integration.test_dead_letters import stored_letter

INDEX_KEY = base64.b64decode(generate_key())
OLD, NEW = generate_key(), generate_key()
TOKEN = "fcm-token-of-ada-0123456789"
ADDRESS = "ada@example.com"
# A Kafka key as Herald makes it (tenant:recipient), kept by dead letters and delayed jobs.
KAFKA_KEY = f"acme:{ADDRESS}".encode()


def encryptor(keys: str) -> Encryptor:
    return Encryptor(parse_keys(keys), INDEX_KEY)


async def raw_bytes(pool: Pool) -> bytes:
    """Every byte of the tables holding personal data as Postgres returns it, in one blob to search for plaintext."""
    dump = b""
    for table in ("devices", "suppressions", "dead_letters", "recipients", "delayed_jobs"):
        for row in await pool.fetch(f"SELECT * FROM {table}"):
            dump += b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    return dump


async def assert_no_plaintext(pool: Pool, payload: bytes) -> None:
    dump = await raw_bytes(pool)
    for plaintext in (TOKEN.encode(), ADDRESS.encode(), payload):
        assert plaintext not in dump


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


async def fill(pool: Pool, keys: Encryptor) -> bytes:
    """A device, a suppression, a dead letter, a recipient and a delayed job (whose payload is the
    letter's) through the repositories; returns that payload."""
    await DeviceRepository(pool, keys).register("acme", "ada", "android", TOKEN)
    await RecipientRepository(pool, keys).put("acme", "ada", Contact(email=ADDRESS))
    await SuppressionRepository(pool, keys).add([Suppression("acme", "email", ADDRESS.upper(), "bounced")])
    letter = stored_letter(tenant_id="acme", original_key=KAFKA_KEY)
    await DeadLetterRepository(pool, keys).store([letter])
    await DelayedJobStore(pool, keys).add([recurring_send(letter.original_payload)])
    return letter.original_payload


async def assert_readable(pool: Pool, keys: Encryptor, payload: bytes) -> None:
    """The repositories return the plaintext and find each row by its value."""
    devices = DeviceRepository(pool, keys)
    assert [d.token for d in await devices.for_user("acme", "ada")] == [TOKEN]
    suppressions = SuppressionRepository(pool, keys)
    assert [s.address for s in await suppressions.for_tenant("acme", address=ADDRESS)] == [ADDRESS]
    assert await suppressions.suppressed([("acme", "email", ADDRESS), ("globex", "email", ADDRESS)]) == {
        ("acme", "email", ADDRESS)
    }
    letters = DeadLetterRepository(pool, keys)
    entry_id = str(await pool.fetchval("SELECT id FROM dead_letters"))
    detail = await letters.get("acme", entry_id)
    assert detail is not None
    assert (detail.original.payload, detail.original.key) == (payload, KAFKA_KEY)
    profile = await RecipientRepository(pool, keys).get("acme", "ada")
    assert profile is not None
    assert profile.contact.email == ADDRESS
    assert await fired(pool, keys) == [(KAFKA_KEY, payload)]


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


async def test_rotation_leaves_every_row_readable_with_only_the_new_key(db_pool: Pool) -> None:
    payload = await fill(db_pool, encryptor(f"k1:{OLD}"))
    rotating = encryptor(f"k2:{NEW},k1:{OLD}")
    # Step 1: the new key in front; old rows still open, new ones are sealed under it.
    await assert_readable(db_pool, rotating, payload)

    # Step 2: reseal; a second run has nothing left to do.
    assert await reseal_all(db_pool, rotating) == {
        "devices": 1,
        "suppressions": 1,
        "dead_letters": 1,
        "delayed_jobs": 1,
        "recipients": 1,
        "webhook_endpoints": 0,
    }
    assert await reseal_all(db_pool, rotating) == {
        "devices": 0,
        "suppressions": 0,
        "dead_letters": 0,
        "delayed_jobs": 0,
        "recipients": 0,
        "webhook_endpoints": 0,
    }

    # Step 3: the old key removed.
    await assert_readable(db_pool, encryptor(f"k2:{NEW}"), payload)
    with pytest.raises(DecryptionError):
        await DeviceRepository(db_pool, encryptor(f"k1:{OLD}")).for_user("acme", "ada")


async def test_rows_written_in_clear_before_migrations_0011_and_0019_are_sealed_by_the_backfill(db_pool: Pool) -> None:
    keys = encryptor(f"k1:{OLD}")
    payload = await fill(db_pool, keys)
    # As an older release wrote them: plaintext in the old columns, nothing sealed or indexed.
    await db_pool.execute("UPDATE devices SET token = $1, token_sealed = NULL, token_index = NULL", TOKEN)
    await db_pool.execute("UPDATE suppressions SET address = $1, address_sealed = NULL, address_index = NULL", ADDRESS)
    await db_pool.execute(
        """UPDATE dead_letters SET original_payload = $1, original_key = $2, original_payload_sealed = NULL,
                                   original_key_sealed = NULL""",
        payload,
        KAFKA_KEY,
    )
    await db_pool.execute(
        "UPDATE delayed_jobs SET payload = $1, key = $2, payload_sealed = NULL, key_sealed = NULL", payload, KAFKA_KEY
    )
    # Jobs waiting since before 0019 still fire with their original bytes.
    assert await fired(db_pool, keys) == [(KAFKA_KEY, payload)]

    # Recipients came after 0011: never in clear, so nothing to backfill.
    assert await reseal_all(db_pool, keys) == {
        "devices": 1,
        "suppressions": 1,
        "dead_letters": 1,
        "delayed_jobs": 1,
        "recipients": 0,
        "webhook_endpoints": 0,
    }

    await assert_no_plaintext(db_pool, payload)
    await assert_readable(db_pool, keys, payload)

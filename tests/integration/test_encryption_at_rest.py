"""Personal data at rest: Postgres holds only sealed values and blind indexes, the repositories give
plaintext and find rows by value, and resealing moves every row under a new key (and backfills rows
written in clear before migration 0011)."""

from __future__ import annotations

import base64

import pytest

from shared.crypto import DecryptionError, Encryptor, generate_key, parse_keys
from shared.storage.database import Pool
from shared.storage.dead_letters import DeadLetterRepository
from shared.storage.devices import DeviceRepository
from shared.storage.reseal import reseal_all
from shared.storage.suppressions import Suppression, SuppressionRepository
from tests.integration.test_dead_letters import stored_letter

INDEX_KEY = base64.b64decode(generate_key())
OLD, NEW = generate_key(), generate_key()
TOKEN = "fcm-token-of-ada-0123456789"
ADDRESS = "ada@example.com"


def encryptor(keys: str) -> Encryptor:
    return Encryptor(parse_keys(keys), INDEX_KEY)


async def raw_bytes(pool: Pool) -> bytes:
    """Every byte of the three tables as Postgres returns it, in one blob to search for plaintext."""
    dump = b""
    for table in ("devices", "suppressions", "dead_letters"):
        for row in await pool.fetch(f"SELECT * FROM {table}"):
            dump += b"|".join(v if isinstance(v, bytes) else str(v).encode() for v in row.values())
    return dump


async def assert_no_plaintext(pool: Pool, payload: bytes) -> None:
    dump = await raw_bytes(pool)
    for plaintext in (TOKEN.encode(), ADDRESS.encode(), payload):
        assert plaintext not in dump


async def fill(pool: Pool, keys: Encryptor) -> bytes:
    """A device, a suppression and a dead letter through the repositories; returns the letter's payload."""
    await DeviceRepository(pool, keys).register("acme", "ada", "android", TOKEN)
    await SuppressionRepository(pool, keys).add([Suppression("acme", "email", ADDRESS.upper(), "bounced")])
    letter = stored_letter(tenant_id="acme", original_key=f"acme:{ADDRESS}".encode())
    await DeadLetterRepository(pool, keys).store([letter])
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
    assert (detail.original.payload, detail.original.key) == (payload, f"acme:{ADDRESS}".encode())


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
    assert await reseal_all(db_pool, rotating) == {"devices": 1, "suppressions": 1, "dead_letters": 1}
    assert await reseal_all(db_pool, rotating) == {"devices": 0, "suppressions": 0, "dead_letters": 0}

    # Step 3: the old key removed.
    await assert_readable(db_pool, encryptor(f"k2:{NEW}"), payload)
    with pytest.raises(DecryptionError):
        await DeviceRepository(db_pool, encryptor(f"k1:{OLD}")).for_user("acme", "ada")


async def test_rows_written_in_clear_before_migration_0011_are_sealed_by_the_backfill(db_pool: Pool) -> None:
    keys = encryptor(f"k1:{OLD}")
    payload = await fill(db_pool, keys)
    # As an older release wrote them: plaintext in the old columns, nothing sealed or indexed.
    await db_pool.execute("UPDATE devices SET token = $1, token_sealed = NULL, token_index = NULL", TOKEN)
    await db_pool.execute("UPDATE suppressions SET address = $1, address_sealed = NULL, address_index = NULL", ADDRESS)
    await db_pool.execute(
        """UPDATE dead_letters SET original_payload = $1, original_key = $2, original_payload_sealed = NULL,
                                   original_key_sealed = NULL""",
        payload,
        f"acme:{ADDRESS}".encode(),
    )

    assert await reseal_all(db_pool, keys) == {"devices": 1, "suppressions": 1, "dead_letters": 1}

    await assert_no_plaintext(db_pool, payload)
    await assert_readable(db_pool, keys, payload)

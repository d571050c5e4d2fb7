"""GDPR erasure on real Postgres: what it removes, what it anonymises, what it keeps, and its API."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.gateway.notifications.repository import AcceptedNotification, NotificationRepository
from services.status.repository import StatusRepository
from shared.storage.database import Pool, create_pool
from shared.storage.dead_letters import DeadLetterRepository
from shared.storage.devices import DeviceRepository
from shared.storage.erasure import RecipientEraser
from shared.storage.recipient_index import RecipientIndex
from shared.storage.recipients import Contact, Preference, RecipientRepository
from shared.storage.suppressions import Suppression, SuppressionRepository
from tests.conftest import ENCRYPTOR
from tests.factories import status_event
from tests.integration.conftest import DEV_TENANT, assert_problem, auth
from tests.integration.test_auth import create_key
from tests.integration.test_dead_letters import stored_letter

pytestmark = pytest.mark.integration

USER = "user-erase"
EMAIL = "ada@example.com"
PHONE = "+14155550100"


async def accepted(pool: Pool, tenant_id: str, person: str) -> str:
    """A notification as the gateway records it, to ``person``, failed with a provider answer quoting the address."""
    notification_id = str(uuid.uuid4())
    await NotificationRepository(pool, ENCRYPTOR).record_accepted(
        [
            AcceptedNotification(
                notification_id,
                tenant_id,
                f"key-{person}",
                datetime.now(UTC),
                RecipientIndex(ENCRYPTOR).of(tenant_id, person),
            )
        ]
    )
    await StatusRepository(pool, ENCRYPTOR).apply(
        [
            status_event(
                notification_id,
                "failed",
                datetime.now(UTC),
                tenant_id=tenant_id,
                channel="email",
                attempt=1,
                detail=f"550 {person} unknown",
                delivery_id=str(uuid.uuid4()),
                deliveries=1,
            )
        ]
    )
    return notification_id


async def seed_person(pool: Pool, tenant_id: str) -> dict[str, str]:
    """The person's profile, device, suppression and notifications (by user id, by email alone), a dead
    letter and a scheduled send of one of them; returns the notification ids by how they were addressed."""
    recipients = RecipientRepository(pool, ENCRYPTOR)
    await recipients.put(tenant_id, USER, Contact(email=EMAIL, phone=PHONE))
    await recipients.set_preference(tenant_id, USER, Preference("marketing", "*", False))
    await DeviceRepository(pool, ENCRYPTOR).register(tenant_id, USER, "android", f"fcm-token-{tenant_id}")
    await SuppressionRepository(pool, ENCRYPTOR).add([Suppression(tenant_id, "email", EMAIL, "bounced", "550 gone")])
    by_user, by_email = await accepted(pool, tenant_id, USER), await accepted(pool, tenant_id, EMAIL)
    await DeadLetterRepository(pool, ENCRYPTOR).store(
        [replace(stored_letter(), tenant_id=tenant_id, notification_id=by_email)]
    )
    await pool.execute(
        """
        INSERT INTO delayed_jobs (job_id, tenant_id, notification_id, due_at, target_topic, payload)
        VALUES ($1, $2, $3, now() + interval '1 day', 'herald.routable.v1', '\\x00')
        """,
        uuid.uuid4(),
        tenant_id,
        uuid.UUID(by_user),
    )
    return {"user": by_user, "email": by_email}


async def notification_row(pool: Pool, notification_id: str) -> dict[str, Any]:
    """What Postgres holds of the notification: its recipient hash, every form (sealed, in clear) of its
    idempotency key and provider details, and how many dead letters and scheduled sends it has."""
    row = await pool.fetchrow(
        """
        SELECT n.recipient_hash, n.status,
               ARRAY[n.idempotency_key_sealed, n.idempotency_key::bytea, n.last_detail_sealed, n.last_detail::bytea]
               || (SELECT array_agg(e.detail_sealed) || array_agg(e.detail::bytea)
                   FROM notification_events e WHERE e.notification_id = n.id)
               || (SELECT array_agg(d.last_detail_sealed) || array_agg(d.last_detail::bytea)
                   FROM deliveries d WHERE d.notification_id = n.id) AS personal,
               (SELECT count(*) FROM dead_letters d WHERE d.notification_id = n.id::text) AS dead_letters,
               (SELECT count(*) FROM delayed_jobs j WHERE j.notification_id = n.id) AS scheduled
        FROM notifications n WHERE n.id = $1
        """,
        uuid.UUID(notification_id),
    )
    assert row is not None
    return dict(row)


async def test_erasure_removes_or_anonymises_the_persons_data_and_keeps_an_audit(db_pool: Pool) -> None:
    mine = await seed_person(db_pool, DEV_TENANT)
    theirs = await seed_person(db_pool, "globex")
    someone_else = await accepted(db_pool, DEV_TENANT, "grace@example.com")
    eraser = RecipientEraser(db_pool, ENCRYPTOR)

    # The profile knows the email, so the notification addressed by email alone is found too.
    erasure = await eraser.erase(DEV_TENANT, USER, requested_by="api_key:k-1")

    assert erasure.counts == {
        "notifications": 2,
        "dead_letters": 1,
        "scheduled": 1,
        "devices": 1,
        "profiles": 1,
        "suppressions": 1,
    }
    for notification_id in mine.values():
        row = await notification_row(db_pool, notification_id)
        assert row["recipient_hash"] is None
        assert set(row["personal"]) == {None}
        assert (row["dead_letters"], row["scheduled"]) == (0, 0)
        # The notification itself stays, for the tenant's figures.
        assert row["status"] == "failed"
    assert await RecipientRepository(db_pool, ENCRYPTOR).get(DEV_TENANT, USER) is None
    # Its preferences went with the profile: only the other tenant's are left.
    assert await db_pool.fetchval("SELECT array_agg(tenant_id) FROM preferences") == ["globex"]
    assert await DeviceRepository(db_pool, ENCRYPTOR).for_user(DEV_TENANT, USER, active_only=False) == []
    # The address is gone from the suppression, which still applies.
    suppressions = SuppressionRepository(db_pool, ENCRYPTOR)
    assert [(s.address, s.detail) for s in await suppressions.for_tenant(DEV_TENANT)] == [(None, None)]
    assert await suppressions.suppressed({(DEV_TENANT, "email", EMAIL)}) == {(DEV_TENANT, "email", EMAIL)}

    # Nothing of another person or another tenant changed.
    view = await NotificationRepository(db_pool, ENCRYPTOR).get(DEV_TENANT, someone_else)
    assert view is not None
    assert (view.idempotency_key, view.last_detail) == ("key-grace@example.com", "550 grace@example.com unknown")
    for notification_id in theirs.values():
        assert (await notification_row(db_pool, notification_id))["recipient_hash"] is not None
    assert await RecipientRepository(db_pool, ENCRYPTOR).get("globex", USER) is not None
    assert [s.address for s in await suppressions.for_tenant("globex")] == [EMAIL]

    # The audit names the user by a blind index: found by the user id, in its own tenant only.
    assert [e.id for e in await eraser.erasures(DEV_TENANT, USER)] == [erasure.id]
    assert await eraser.erasures("globex", USER) == []
    stored = await db_pool.fetchval("SELECT subject_index FROM erasures WHERE id = $1", uuid.UUID(erasure.id))
    assert USER.encode() not in stored


async def test_addresses_named_with_the_erasure_are_erased_without_a_profile(db_pool: Pool) -> None:
    by_phone = await accepted(db_pool, DEV_TENANT, PHONE)
    eraser = RecipientEraser(db_pool, ENCRYPTOR)

    # A national-format number is matched in E.164, as requests store it.
    erasure = await eraser.erase(DEV_TENANT, "no-profile", phones=["(415) 555-0100", PHONE], requested_by="jwt:dpo")

    assert erasure.counts["notifications"] == 1
    assert erasure.counts["profiles"] == 0
    assert (await notification_row(db_pool, by_phone))["recipient_hash"] is None


def test_the_api_erases_for_admins_only_and_lists_the_audit(client: TestClient, database_url: str) -> None:
    async def seed() -> None:
        pool = await create_pool(database_url, 1)
        try:
            await seed_person(pool, DEV_TENANT)
        finally:
            await pool.close()

    asyncio.run(seed())
    path = f"/api/v1/recipients/{USER}/erasures"
    sender = auth(create_key(client, "sender")["secret"])
    assert_problem(client.post(path, json={}, headers=sender), 403)
    assert_problem(client.get(path, headers=sender), 403)
    problem = assert_problem(client.post(path, json={"emails": ["not-an-address"]}, headers=auth()), 422)
    assert problem["errors"][0]["pointer"] == "#/emails/0"

    erased = client.post(path, json={"emails": [EMAIL]}, headers=auth())
    assert erased.status_code == 201, erased.text
    assert erased.json()["counts"]["profiles"] == 1
    assert erased.json()["requested_by"].startswith("api_key:")
    assert client.get(f"/api/v1/recipients/{USER}", headers=auth()).status_code == 404
    # Erasing again finds nothing left, and both erasures are on record.
    again = client.post(path, json={}, headers=auth())
    assert set(again.json()["counts"].values()) == {0}
    assert [e["id"] for e in client.get(path, headers=auth()).json()] == [again.json()["id"], erased.json()["id"]]

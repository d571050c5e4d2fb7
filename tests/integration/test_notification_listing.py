"""``GET /api/v1/notifications`` on the real gateway app, Postgres and broker: order, filters, keyset pages,
tenant isolation, problems naming the bad parameter, and the recipient stored only as a hash."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.gateway.notifications.repository import AcceptedNotification, NotificationRepository
from services.status.repository import StatusRepository
from shared import status
from shared.messages import StatusEvent
from shared.storage.database import Pool, create_pool
from shared.storage.notifications import IDEMPOTENCY_KEY
from shared.storage.recipient_index import RecipientIndex
from tests.conftest import ENCRYPTOR
from tests.factories import status_event
from tests.integration.conftest import DEV_TENANT, assert_problem, auth
from tests.integration.test_gateway_api import add_tenant_with_key, body

pytestmark = pytest.mark.integration

NOTIFICATIONS = "/api/v1/notifications"


def post(client: TestClient, **overrides: Any) -> str:
    response = client.post(NOTIFICATIONS, json=body(**overrides), headers=auth())
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["id"]
    return notification_id


def listed(client: TestClient, **params: Any) -> list[str]:
    """The ids of one page."""
    response = client.get(NOTIFICATIONS, params=params, headers=auth())
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def apply(database_url: str, events: Sequence[StatusEvent]) -> None:
    """Move notifications on as the status service would."""

    async def run() -> None:
        pool = await create_pool(database_url, size=1)
        try:
            await StatusRepository(pool, ENCRYPTOR).apply(events)
        finally:
            await pool.close()

    asyncio.run(run())


def test_newest_first_with_each_items_fields_and_link(client: TestClient) -> None:
    ids = [post(client) for _ in range(3)]

    response = client.get(NOTIFICATIONS, headers=auth())

    assert response.status_code == 200, response.text
    page = response.json()
    assert [item["id"] for item in page["items"]] == ids[::-1]
    assert page["links"] == {"next": None}
    item = page["items"][0]
    assert set(item) == {"id", "status", "channel", "attempts", "created_at", "updated_at", "links"}
    assert (item["status"], item["channel"], item["attempts"]) == ("accepted", None, 0)
    assert item["links"] == {"self": f"{NOTIFICATIONS}/{ids[-1]}"}
    assert client.get(item["links"]["self"], headers=auth()).status_code == 200


def test_pages_cover_every_notification_once_while_new_ones_arrive(client: TestClient) -> None:
    ids = [post(client) for _ in range(7)]
    seen: list[str] = []
    link: str | None = f"{NOTIFICATIONS}?limit=3&status=accepted&status=sent"
    arrived = []
    while link is not None:
        response = client.get(link, headers=auth())
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 3
        seen += [item["id"] for item in page["items"]]
        link = page["links"]["next"]
        if link is not None:
            # The repeated filter travels on; a notification arriving meanwhile shifts no later page.
            assert link.count("status=") == 2
            arrived.append(post(client))

    assert seen == ids[::-1]
    assert len(arrived) == 2
    assert listed(client, limit=500)[:2] == arrived[::-1]


def test_every_filter(client: TestClient, database_url: str) -> None:
    ada = post(client, recipient={"email": "ada@example.com"}, metadata={"type": "otp"})
    between = datetime.now(UTC)
    time.sleep(0.01)
    sms = post(client, channels=["sms"], recipient={"phone": "+14155550100"}, content={"text": "Hi"})
    grace = post(client, recipient={"user_id": "u-7", "email": "grace@example.com"}, metadata={"type": "marketing"})
    now = datetime.now(UTC)
    apply(
        database_url,
        [
            status_event(ada, status.SENT, now, tenant_id=DEV_TENANT, channel="email", attempt=1),
            status_event(sms, status.FAILED, now, tenant_id=DEV_TENANT, channel="sms", attempt=1),
        ],
    )

    assert listed(client, status="sent") == [ada]
    assert listed(client, status=["sent", "failed"]) == [sms, ada]
    assert listed(client, status="accepted") == [grace]
    assert listed(client, channel="sms") == [sms]
    assert listed(client, channel="email") == [ada]
    assert listed(client, recipient="ada@example.com") == [ada]
    assert listed(client, recipient="+14155550100") == [sms]
    # The recipient is the person as routing keys them: the user id when the request gave one.
    assert listed(client, recipient="u-7") == [grace]
    assert listed(client, recipient="grace@example.com") == []
    assert listed(client, type="otp") == [ada]
    assert listed(client, type="marketing", status="accepted") == [grace]
    assert listed(client, created_after=between.isoformat()) == [grace, sms]
    assert listed(client, created_before=between.isoformat()) == [ada]
    assert listed(client, created_after=between.isoformat(), created_before=now.isoformat(), channel="sms") == [sms]


def test_the_recipient_is_stored_as_a_hash_only(client: TestClient, database_url: str) -> None:
    notification_id = post(client, recipient={"email": "ada@example.com"})

    async def row() -> dict[str, Any]:
        pool = await create_pool(database_url, size=1)
        try:
            found = await pool.fetchrow("SELECT * FROM notifications WHERE id = $1::uuid", notification_id)
            assert found is not None
            return dict(found)
        finally:
            await pool.close()

    stored = asyncio.run(row())
    # Keyed: hashing a guessed address without the blind-index key does not find the row.
    assert stored["recipient_hash"] == RecipientIndex(ENCRYPTOR).of(DEV_TENANT, "ada@example.com")
    assert stored["recipient_hash"] != hashlib.sha256(f"{DEV_TENANT}:ada@example.com".encode()).digest()
    assert not any("ada@" in str(value) for value in stored.values())


def test_rows_hashed_before_the_key_are_still_found(client: TestClient, database_url: str) -> None:
    keyed = post(client, recipient={"email": "ada@example.com"})
    legacy = post(client, recipient={"email": "ada@example.com"})
    post(client, recipient={"email": "grace@example.com"})

    async def unkey() -> None:
        pool = await create_pool(database_url, size=1)
        try:
            unkeyed = hashlib.sha256(f"{DEV_TENANT}:ada@example.com".encode()).digest()
            await pool.execute("UPDATE notifications SET recipient_hash = $2 WHERE id = $1::uuid", legacy, unkeyed)
        finally:
            await pool.close()

    asyncio.run(unkey())
    assert listed(client, recipient="ada@example.com") == [legacy, keyed]


def test_another_tenant_sees_none_of_them(client: TestClient, database_url: str) -> None:
    post(client, recipient={"email": "ada@example.com"})
    other = "other-tenant-key-0123456789"
    asyncio.run(add_tenant_with_key(database_url, "globex", other))

    for params in ({}, {"recipient": "ada@example.com"}, {"status": "accepted"}):
        response = client.get(NOTIFICATIONS, params=params, headers=auth(other))
        assert response.status_code == 200, response.text
        assert response.json() == {"items": [], "links": {"next": None}}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": ["sent", "posted"]}, "status"),
        ({"channel": "pigeon"}, "channel"),
        ({"created_after": "yesterday"}, "created_after"),
        # Without a UTC offset a time is ambiguous: refused rather than guessed.
        ({"created_before": "2026-01-01T00:00:00"}, "created_before"),
        ({"type": ""}, "type"),
        ({"recipient": "x" * 321}, "recipient"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_a_bad_parameter_is_a_problem_naming_it(client: TestClient, params: dict[str, Any], parameter: str) -> None:
    response = client.get(NOTIFICATIONS, params=params, headers=auth())

    problem = assert_problem(response, 422)
    assert [error["pointer"] for error in problem["errors"]] == [f"#/query/{parameter}"]


def test_listing_needs_an_api_key(client: TestClient) -> None:
    assert_problem(client.get(NOTIFICATIONS), 401)


async def test_a_late_acceptance_record_fills_the_filter_columns_only(db_pool: Pool) -> None:
    # The status service may create the row first (its events can overtake the gateway's write).
    notifications = NotificationRepository(db_pool, ENCRYPTOR)
    nid = "0b0c9a8e-8d43-4d8f-9a4e-2f3c1a0b7e55"
    at = datetime(2026, 1, 1, tzinfo=UTC)
    await StatusRepository(db_pool, ENCRYPTOR).apply(
        [status_event(nid, status.SENT, at, tenant_id="acme", channel="email")]
    )

    late = AcceptedNotification(
        nid, "acme", "key-1", at, recipient_hash=b"h" * 32, message_type="otp", template_id="welcome"
    )
    assert await notifications.record_accepted([late, late]) == 0

    row = await db_pool.fetchrow(
        f"SELECT status, {IDEMPOTENCY_KEY.selected()}, recipient_hash, message_type, template_id FROM notifications"
    )
    assert row is not None
    assert IDEMPOTENCY_KEY.read_text(ENCRYPTOR, row, "acme") == "key-1"
    assert (row["status"], row["recipient_hash"], row["message_type"], row["template_id"]) == (
        "sent",
        b"h" * 32,
        "otp",
        "welcome",
    )

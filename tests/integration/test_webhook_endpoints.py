"""Webhook endpoints on a real Postgres: the API registers, lists, changes, rotates and deletes them per
tenant and shows their delivery logs; the status service sends each stored status change to the
subscribed live endpoints (once, with stable delivery ids) and logs sender-webhook's reports without
touching the notification's status."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.status.main import status_writer
from shared import status
from shared.crypto import Encryptor, generate_key, parse_index_key, parse_keys
from shared.kafka.records import Consumed, Output, Produce
from shared.messages import WEBHOOK_DELIVERY, StatusEvent, WebhookDelivery
from shared.storage.database import Pool, create_pool
from shared.storage.webhook_endpoints import (
    DeliveryFilter,
    PlannedDelivery,
    WebhookEndpointRepository,
    delivery_id,
)
from shared.topics import Topics
from shared.webhook_secrets import endpoint_secret
from tests.conftest import ENCRYPTOR
from tests.factories import status_event
from tests.integration.conftest import DEV_TENANT, assert_problem, auth
from tests.integration.test_gateway_api import add_tenant_with_key

pytestmark = pytest.mark.integration

API = "/api/v1/webhook-endpoints"
KEY = "test-webhook-signing-key-0123456789abcdef"
OTHER_KEY = "globex-key-0123456789abcdef"
URL = "https://hooks.example.com/herald?token=s3cr3t"
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SEND_WEBHOOK = "herald.send.webhook.v1"


@pytest.fixture
def api(gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    """The gateway with a webhook signing key, refusing private URLs (as in production)."""
    settings = gateway_settings.model_copy(
        update={"webhook_signing_key": SecretStr(KEY), "webhook_allow_private_networks": False}
    )
    with TestClient(create_app(settings)) as running:
        yield running


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(API, json={"url": URL, **body}, headers=auth())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# --- the API --------------------------------------------------------------------------------------


def test_an_endpoint_is_registered_with_its_secret_shown_once(api: TestClient, database_url: str) -> None:
    created = create(api, description="orders", events=["sent", "delivered"])
    assert created["secret"] == endpoint_secret(KEY.encode(), DEV_TENANT, created["id"], 1)
    assert (created["url"], created["description"], created["events"], created["secret_version"]) == (
        URL,
        "orders",
        ["delivered", "sent"],
        1,
    )
    shown = api.get(f"{API}/{created['id']}", headers=auth()).json()
    listed = api.get(API, headers=auth()).json()
    assert "secret" not in shown
    assert all("secret" not in item for item in listed)
    assert shown == {k: v for k, v in created.items() if k != "secret"}
    assert [item["id"] for item in listed] == [created["id"]]
    # The URL may carry a token: stored sealed, never in clear.
    assert b"s3cr3t" not in asyncio.run(_sealed_url(database_url, created["id"]))


async def _sealed_url(database_url: str, endpoint_id: str) -> bytes:
    pool = await create_pool(database_url, 1)
    try:
        sealed: bytes = await pool.fetchval("SELECT url_sealed FROM webhook_endpoints WHERE id = $1", endpoint_id)
        return sealed
    finally:
        await pool.close()


def test_the_list_is_newest_first(api: TestClient) -> None:
    first, second = create(api), create(api)
    assert [item["id"] for item in api.get(API, headers=auth()).json()] == [second["id"], first["id"]]


def test_an_endpoint_is_changed_field_by_field(api: TestClient) -> None:
    created = create(api, description="orders", events=["failed"])
    path = f"{API}/{created['id']}"
    changed = api.patch(path, json={"events": []}, headers=auth()).json()
    assert (changed["events"], changed["description"], changed["url"]) == ([], "orders", URL)
    changed = api.patch(path, json={"url": "https://other.example.com/in", "description": None}, headers=auth())
    assert (changed.json()["url"], changed.json()["description"]) == ("https://other.example.com/in", None)
    assert api.get(path, headers=auth()).json()["secret_version"] == 1


def test_rotating_answers_a_new_secret_and_keeps_the_old_one_for_the_grace_period(api: TestClient) -> None:
    created = create(api)
    before = datetime.now(UTC)
    rotated = api.post(f"{API}/{created['id']}/rotate-secret", headers=auth())
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["secret_version"] == 2
    assert body["secret"] == endpoint_secret(KEY.encode(), DEV_TENANT, created["id"], 2) != created["secret"]
    expires = datetime.fromisoformat(body["previous_secret_expires_at"])
    assert before + timedelta(hours=24) - timedelta(minutes=1) < expires < before + timedelta(hours=24, minutes=1)
    assert "secret" not in api.get(f"{API}/{created['id']}", headers=auth()).json()


def test_a_replayed_rotation_rotates_once(api: TestClient) -> None:
    created = create(api)
    headers = auth() | {"Idempotency-Key": "rotate-1"}
    first = api.post(f"{API}/{created['id']}/rotate-secret", headers=headers)
    again = api.post(f"{API}/{created['id']}/rotate-secret", headers=headers)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert api.get(f"{API}/{created['id']}", headers=auth()).json()["secret_version"] == 2


def test_a_deleted_endpoint_is_gone_from_the_api_but_kept(api: TestClient, database_url: str) -> None:
    created = create(api)
    path = f"{API}/{created['id']}"
    assert api.delete(path, headers=auth()).status_code == 204
    assert_problem(api.get(path, headers=auth()), 404)
    assert_problem(api.get(f"{path}/deliveries", headers=auth()), 404)
    assert_problem(api.delete(path, headers=auth()), 404)
    assert api.get(API, headers=auth()).json() == []
    assert asyncio.run(_sealed_url(database_url, created["id"]))


def test_another_tenants_endpoint_is_not_found(api: TestClient, database_url: str) -> None:
    created = create(api)
    asyncio.run(add_tenant_with_key(database_url, "globex", OTHER_KEY))
    other = auth(OTHER_KEY)
    path = f"{API}/{created['id']}"
    assert api.get(API, headers=other).json() == []
    for response in (
        api.get(path, headers=other),
        api.patch(path, json={"events": []}, headers=other),
        api.post(f"{path}/rotate-secret", headers=other),
        api.get(f"{path}/deliveries", headers=other),
        api.delete(path, headers=other),
    ):
        assert_problem(response, 404)
    assert api.get(path, headers=auth()).json()["secret_version"] == 1


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"url": "ftp://hooks.example.com/in"}, "#/url"),
        ({"url": "/relative"}, "#/url"),
        ({"url": "http://127.0.0.1:8080/in"}, "#/url"),
        ({"url": "http://localhost/in"}, "#/url"),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "#/url"),
        ({"url": "http://[::ffff:127.0.0.1]/in"}, "#/url"),
        ({"url": "http://100.64.0.1/in"}, "#/url"),
        ({"url": "http://224.0.0.1/in"}, "#/url"),
        ({"url": URL, "events": ["bogus"]}, "#/events/0"),
        ({"url": URL, "secret": "mine"}, "#/secret"),
        ({"description": "no url"}, "#/url"),
    ],
)
def test_an_invalid_endpoint_is_a_problem_naming_the_field(api: TestClient, body: dict[str, Any], pointer: str) -> None:
    problem = assert_problem(api.post(API, json=body, headers=auth()), 422)
    assert pointer in [error["pointer"] for error in problem["errors"]]


def test_unknown_ids_are_not_found(api: TestClient) -> None:
    for endpoint_id in ("not-a-uuid", str(uuid.uuid4())):
        assert_problem(api.get(f"{API}/{endpoint_id}", headers=auth()), 404)
        assert_problem(api.post(f"{API}/{endpoint_id}/rotate-secret", headers=auth()), 404)


def test_without_a_signing_key_no_endpoint_is_registered(client: TestClient) -> None:
    assert_problem(client.post(API, json={"url": URL}, headers=auth()), 503)


def test_the_delivery_log_pages_newest_first_and_filters(api: TestClient, database_url: str) -> None:
    created = create(api)
    planned = asyncio.run(_log(database_url, created["id"], [status.ACCEPTED, status.ROUTED, status.SENT]))
    path = f"{API}/{created['id']}/deliveries"
    first = api.get(path, params={"limit": 2}, headers=auth()).json()
    assert [item["type"] for item in first["items"]] == ["notification.sent", "notification.routed"]
    second = api.get(first["links"]["next"], headers=auth()).json()
    assert [item["type"] for item in second["items"]] == ["notification.accepted"]
    assert second["links"]["next"] is None
    item = second["items"][0]
    assert (item["id"], item["outcome"], item["attempt"], item["notification_id"]) == (
        planned[0].id,
        "pending",
        0,
        planned[0].notification_id,
    )
    only_sent = api.get(path, params={"event": "sent"}, headers=auth()).json()["items"]
    assert [item["status"] for item in only_sent] == ["sent"]
    assert api.get(path, params={"outcome": "failed"}, headers=auth()).json()["items"] == []
    assert_problem(api.get(path, params={"outcome": "lost"}, headers=auth()), 422)


async def _log(database_url: str, endpoint_id: str, statuses: Sequence[str]) -> list[PlannedDelivery]:
    """Log one pending delivery per status (one notification), each logged a moment after the last."""
    notification_id = str(uuid.uuid4())
    planned = [
        PlannedDelivery(
            id=delivery_id(endpoint_id, event_id),
            endpoint_id=endpoint_id,
            tenant_id=DEV_TENANT,
            event_id=event_id,
            notification_id=notification_id,
            status=name,
            channel="email",
            reason=None,
            occurred_at=T0,
        )
        for name, event_id in ((name, str(uuid.uuid4())) for name in statuses)
    ]
    pool = await create_pool(database_url, 1)
    try:
        for delivery in planned:
            async with pool.acquire() as connection, connection.transaction():
                await WebhookEndpointRepository.plan(connection, [delivery])
    finally:
        await pool.close()
    return planned


# --- the status service ---------------------------------------------------------------------------


class StatusService:
    """The status service's handler on a real Postgres, fed batches by hand."""

    def __init__(self, pool: Pool) -> None:
        self.endpoints = WebhookEndpointRepository(pool, ENCRYPTOR)
        self.writer = status_writer(pool, ENCRYPTOR, Topics("herald"), endpoints_cache_s=0)
        self.pool = pool

    async def handle(self, events: Sequence[StatusEvent]) -> list[WebhookDelivery]:
        batch = [Consumed("herald.status.v1", 0, offset, None, event, b"") for offset, event in enumerate(events)]
        return deliveries(await self.writer(batch))


def deliveries(outputs: Sequence[Output]) -> list[WebhookDelivery]:
    produced = [output for output in outputs if isinstance(output, Produce)]
    assert all(output.topic == SEND_WEBHOOK for output in produced)
    return [WEBHOOK_DELIVERY.decode(output.value) for output in produced]


def sent(found: Sequence[WebhookDelivery]) -> list[tuple[str | None, str]]:
    """(endpoint, event type) of each delivery."""
    return [(d.get("endpoint_id"), orjson.loads(d["payload_json"])["type"]) for d in found]


@pytest.fixture
def service(db_pool: Pool) -> StatusService:
    return StatusService(db_pool)


async def test_a_stored_change_goes_to_the_subscribed_live_endpoints_only(service: StatusService) -> None:
    every = await service.endpoints.create("acme", URL, None, [])
    delivered_only = await service.endpoints.create("acme", "https://b.example.com/in", None, ["delivered"])
    deleted = await service.endpoints.create("acme", "https://c.example.com/in", None, [])
    await service.endpoints.delete("acme", deleted.id)
    await service.endpoints.create("globex", "https://d.example.com/in", None, [])
    nid = str(uuid.uuid4())

    found = await service.handle(
        [
            status_event(nid, status.ACCEPTED, T0),
            status_event(nid, status.ROUTED, T0 + timedelta(seconds=1)),
            status_event(nid, status.SENT, T0 + timedelta(seconds=2), channel="email"),
        ]
    )
    assert sent(found) == [
        (every.id, "notification.accepted"),
        (every.id, "notification.routed"),
        (every.id, "notification.sent"),
    ]
    delivery = found[-1]
    assert (delivery["url"], delivery["tenant_id"], delivery["notification_id"], delivery["secret_versions"]) == (
        URL,
        "acme",
        nid,
        [1],
    )
    payload = orjson.loads(delivery["payload_json"])
    assert payload == {
        "type": "notification.sent",
        "event_id": payload["event_id"],
        "notification_id": nid,
        "status": "sent",
        "channel": "email",
        "reason": None,
        "occurred_at": (T0 + timedelta(seconds=2)).isoformat(),
    }
    assert delivery["delivery_id"] == delivery_id(every.id, payload["event_id"])

    found = await service.handle([status_event(nid, status.DELIVERED, T0 + timedelta(seconds=3))])
    assert sorted(sent(found)) == sorted(
        [(every.id, "notification.delivered"), (delivered_only.id, "notification.delivered")]
    )


async def test_a_status_that_changes_nothing_is_not_sent(service: StatusService) -> None:
    endpoint = await service.endpoints.create("acme", URL, None, [])
    nid = str(uuid.uuid4())
    await service.handle([status_event(nid, status.DELIVERED, T0)])
    # A late `sent`; a second push device's `sent` in one batch: one change, told once.
    assert await service.handle([status_event(nid, status.SENT, T0 - timedelta(seconds=1))]) == []
    other = str(uuid.uuid4())
    two_devices = [
        status_event(other, status.SENT, T0, delivery_id=str(uuid.uuid4()), deliveries=2, channel="push")
        for _ in range(2)
    ]
    assert sent(await service.handle(two_devices)) == [(endpoint.id, "notification.sent")]
    # One device failing while the other got it: the notification is sent, and only that is told.
    third = str(uuid.uuid4())
    one_failed = [
        status_event(third, name, T0, delivery_id=str(uuid.uuid4()), deliveries=2, channel="push")
        for name in (status.FAILED, status.SENT)
    ]
    assert sent(await service.handle(one_failed)) == [(endpoint.id, "notification.sent")]


async def test_a_redelivered_batch_sends_its_pending_deliveries_again_with_the_same_ids(
    service: StatusService,
) -> None:
    await service.endpoints.create("acme", URL, None, [])
    batch = [status_event(str(uuid.uuid4()), status.ACCEPTED, T0)]
    first = await service.handle(batch)
    again = await service.handle(batch)
    assert [d["delivery_id"] for d in again] == [d["delivery_id"] for d in first] != []

    # Once sender-webhook reports it sent, a redelivery has nothing left to send.
    await service.handle([report(first[0], status.SENT, attempt=1, detail="200 OK")])
    assert await service.handle(batch) == []


def report(delivery: WebhookDelivery, name: str, *, attempt: int, detail: str) -> StatusEvent:
    """sender-webhook's status event about an endpoint delivery."""
    event = status_event(
        delivery["notification_id"],
        name,
        datetime.now(UTC),
        tenant_id=delivery["tenant_id"],
        channel="webhook",
        attempt=attempt,
        detail=detail,
        delivery_id=delivery["delivery_id"],
    )
    event["endpoint_id"] = delivery.get("endpoint_id")
    return event


async def test_endpoint_delivery_reports_fill_the_log_and_never_move_the_notification(
    service: StatusService,
) -> None:
    endpoint = await service.endpoints.create("acme", URL, None, [])
    nid = str(uuid.uuid4())
    [delivery] = await service.handle([status_event(nid, status.ROUTED, T0)])

    assert await service.handle([report(delivery, status.RETRYING, attempt=1, detail="503 Service Unavailable")]) == []
    await service.handle([report(delivery, status.FAILED, attempt=2, detail="410 Gone")])
    # A redelivered earlier report moves nothing back.
    await service.handle([report(delivery, status.RETRYING, attempt=1, detail="503 Service Unavailable")])

    [logged] = await service.endpoints.deliveries(DeliveryFilter("acme", uuid.UUID(endpoint.id)), 10)
    assert (logged.id, logged.outcome, logged.attempt, logged.detail) == (
        delivery["delivery_id"],
        "failed",
        2,
        "410 Gone",
    )
    row = await service.pool.fetchrow("SELECT status FROM notifications WHERE id = $1", nid)
    assert row is not None
    assert row["status"] == status.ROUTED
    events = await service.pool.fetchval("SELECT count(*) FROM notification_events WHERE notification_id = $1", nid)
    assert events == 1


async def test_after_a_rotation_deliveries_are_signed_with_both_secrets_until_the_grace_period_ends(
    service: StatusService,
) -> None:
    endpoint = await service.endpoints.create("acme", URL, None, [])
    await service.endpoints.rotate("acme", endpoint.id, timedelta(hours=1))
    [during] = await service.handle([status_event(str(uuid.uuid4()), status.ACCEPTED, T0)])
    assert during["secret_versions"] == [2, 1]

    await service.endpoints.rotate("acme", endpoint.id, timedelta(0))
    [after] = await service.handle([status_event(str(uuid.uuid4()), status.ACCEPTED, T0)])
    assert after["secret_versions"] == [3]


async def test_urls_are_resealed_under_a_new_key(db_pool: Pool) -> None:
    old, new, index = generate_key(), generate_key(), parse_index_key(generate_key())
    created = await WebhookEndpointRepository(db_pool, Encryptor(parse_keys(f"k1:{old}"), index)).create(
        "acme", URL, None, []
    )
    rotating = WebhookEndpointRepository(db_pool, Encryptor(parse_keys(f"k2:{new},k1:{old}"), index))
    assert (await rotating.reseal(), await rotating.reseal()) == (1, 0)
    only_new = WebhookEndpointRepository(db_pool, Encryptor(parse_keys(f"k2:{new}"), index))
    endpoint = await only_new.get("acme", created.id)
    assert endpoint is not None
    assert endpoint.url == URL

"""``POST /api/v1/notifications/bulk`` on the real gateway app, broker, Postgres and Redis: per-item results
in request order, the valid items on the requests topic exactly once, stable ids from per-item keys,
the route's own Idempotency-Key, its limits, and its latency for 1,000 items (printed, not asserted)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from shared.messages import NOTIFICATION_REQUEST, NotificationRequest
from shared.requests import notification_id_for, recipient_key
from tests.integration.conftest import DEV_TENANT, MAX_BODY_BYTES, assert_problem, auth
from tests.integration.test_gateway_api import body
from tests.kafka_helpers import high_watermarks, read_topic

pytestmark = pytest.mark.integration

BULK = "/api/v1/notifications/bulk"
SMALL_BULK_BODY_BYTES = 3 * MAX_BODY_BYTES


@pytest.fixture
def small_client(gateway_settings: GatewaySettings) -> Iterator[TestClient]:
    """A gateway taking at most 3 notifications, in a body of at most 3 times the usual limit."""
    settings = gateway_settings.model_copy(update={"bulk_max_items": 3, "bulk_max_body_bytes": SMALL_BULK_BODY_BYTES})
    with TestClient(create_app(settings)) as running:
        yield running


def requests_on_topic(settings: GatewaySettings, count: int) -> list[NotificationRequest]:
    """The requests topic's records, once ``count`` arrived, checking that no more are there."""
    topic = f"{settings.topic_prefix}.requests.v1"
    records = asyncio.run(read_topic(settings.kafka_bootstrap_servers, topic, count))
    assert sum(asyncio.run(high_watermarks(settings.kafka_bootstrap_servers, topic)).values()) == count
    decoded = [NOTIFICATION_REQUEST.decode(record.value) for record in records]
    for record, request in zip(records, decoded, strict=True):
        assert record.key == recipient_key(DEV_TENANT, request["recipient"], request["notification_id"])
    return decoded


def test_each_item_is_accepted_or_refused_on_its_own_in_request_order(
    client: TestClient, gateway_settings: GatewaySettings
) -> None:
    items: list[Any] = [
        body(recipient={"email": "ada@example.com"}),
        body(recipient={"email": "not-an-address"}),
        body(channels=["sms"], recipient={"phone": "+14155550100"}, content={"text": "Hi"}),
        42,
        body(colour="blue"),
        body(content={"subject": "No body"}),
        body(recipient={"email": "grace@example.com"}, metadata={"type": "otp"}),
    ]

    response = client.post(BULK, json={"notifications": items}, headers=auth())

    assert response.status_code == 200, response.text
    outcome = response.json()
    assert (outcome["accepted"], outcome["rejected"]) == (3, 4)
    results = outcome["results"]
    assert [result["index"] for result in results] == list(range(len(items)))
    accepted = [result["id"] for result in results if "id" in result]
    assert [("id" in result) for result in results] == [True, False, True, False, False, False, True]
    for result in results:
        if "id" in result:
            assert result["links"] == {"self": f"/api/v1/notifications/{result['id']}"}
            assert "error" not in result
    errors = {result["index"]: result["error"] for result in results if "error" in result}
    assert {index: [e["pointer"] for e in error["errors"]] for index, error in errors.items()} == {
        1: ["#/notifications/1/recipient/email"],
        3: ["#/notifications/3"],
        4: ["#/notifications/4/colour"],
        5: ["#/notifications/5/content/text"],
    }
    for error in errors.values():
        assert (error["status"], error["title"], error["instance"]) == (422, "Invalid request", BULK)
        assert error["type"].startswith("https://")

    # The valid ones are on the requests topic exactly once, and readable (and listed) right away.
    on_topic = requests_on_topic(gateway_settings, 3)
    assert Counter(request["notification_id"] for request in on_topic) == Counter(accepted)
    for notification_id in accepted:
        found = client.get(f"/api/v1/notifications/{notification_id}", headers=auth())
        assert (found.status_code, found.json()["status"]) == (200, "accepted")
    listed = client.get("/api/v1/notifications", headers=auth()).json()["items"]
    assert sorted(item["id"] for item in listed) == sorted(accepted)
    otp = client.get("/api/v1/notifications", params={"type": "otp"}, headers=auth()).json()["items"]
    assert [item["id"] for item in otp] == [accepted[2]]


def test_per_item_idempotency_keys_give_stable_ids(client: TestClient) -> None:
    items = [
        body(idempotency_key="order-1"),
        body(),
        body(idempotency_key='order 2, quoted: "x"'),
        body(idempotency_key="order-1"),
        body(idempotency_key="caf\u00e9"),
    ]
    expected = [notification_id_for(DEV_TENANT, "order-1"), notification_id_for(DEV_TENANT, 'order 2, quoted: "x"')]

    first = client.post(BULK, json={"notifications": items}, headers=auth()).json()
    again = client.post(BULK, json={"notifications": items}, headers=auth()).json()

    for outcome in (first, again):
        results = outcome["results"]
        assert [results[0]["id"], results[2]["id"]] == expected
        # Two items naming one notification: the first has it, the other is refused.
        assert [e["pointer"] for e in results[3]["error"]["errors"]] == ["#/notifications/3/idempotency_key"]
        assert [e["pointer"] for e in results[4]["error"]["errors"]] == ["#/notifications/4/idempotency_key"]
    # Without a key an item is a new notification each time.
    assert first["results"][1]["id"] != again["results"][1]["id"]


def test_the_route_takes_an_idempotency_key_of_its_own(client: TestClient, gateway_settings: GatewaySettings) -> None:
    request = {"notifications": [body(), body(recipient={"email": "grace@example.com"})]}
    headers = {**auth(), "Idempotency-Key": "bulk-1"}

    first = client.post(BULK, json=request, headers=headers)
    replayed = client.post(BULK, json=request, headers=headers)

    assert first.status_code == 200, first.text
    assert (replayed.content, replayed.headers["idempotent-replayed"]) == (first.content, "true")
    requests_on_topic(gateway_settings, 2)
    other = client.post(BULK, json={"notifications": [body()]}, headers=headers)
    assert_problem(other, 422)


def test_more_items_than_allowed_is_a_problem(small_client: TestClient) -> None:
    response = small_client.post(BULK, json={"notifications": [body()] * 4}, headers=auth())

    problem = assert_problem(response, 422)
    assert [e["pointer"] for e in problem["errors"]] == ["#/notifications"]
    assert "at most 3" in problem["detail"]


def test_no_items_is_a_problem(client: TestClient) -> None:
    problem = assert_problem(client.post(BULK, json={"notifications": []}, headers=auth()), 422)
    assert [e["pointer"] for e in problem["errors"]] == ["#/notifications"]


def test_the_bulk_route_has_its_own_larger_body_limit(small_client: TestClient) -> None:
    half = {"padding": "x" * (MAX_BODY_BYTES // 2 + 100)}
    larger_than_a_single_post = {"notifications": [body(variables=half), body(variables=half)]}
    too_large = {"notifications": [body(variables={"padding": "x" * SMALL_BULK_BODY_BYTES})]}

    accepted = small_client.post(BULK, json=larger_than_a_single_post, headers=auth())
    refused = small_client.post(BULK, json=too_large, headers=auth())
    single = small_client.post(
        "/api/v1/notifications", json=body(variables={"padding": "x" * MAX_BODY_BYTES}), headers=auth()
    )

    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["accepted"] == 2
    assert str(SMALL_BULK_BODY_BYTES) in assert_problem(refused, 413)["detail"]
    assert_problem(single, 413)


def test_a_thousand_items_in_one_request(client: TestClient, gateway_settings: GatewaySettings) -> None:
    items = [body(recipient={"email": f"user-{i}@example.com"}, idempotency_key=f"k-{i}") for i in range(1000)]
    client.post(BULK, json={"notifications": [body()]}, headers=auth())  # warm: connections, caches

    started = time.perf_counter()
    response = client.post(BULK, json={"notifications": items}, headers=auth())
    elapsed = time.perf_counter() - started

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1000
    print(f"\nbulk of 1,000 emails: {elapsed * 1000:.0f} ms ({1000 / elapsed:.0f} notifications/s)")
    assert len(requests_on_topic(gateway_settings, 1001)) == 1001
    listed = client.get("/api/v1/notifications", params={"limit": 500}, headers=auth()).json()
    assert len(listed["items"]) == 500
    assert listed["links"]["next"] is not None

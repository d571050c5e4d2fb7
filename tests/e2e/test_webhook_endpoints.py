"""A registered webhook endpoint through every service: the status service sends each status change it
stores to the endpoint, sender-webhook signs it with the endpoint's secret, and the delivery log shows it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from shared import status
from shared.status_events import StatusReporter
from tests.e2e.conftest import Pipeline, eventually
from tests.kafka_helpers import produce_raw
from tests.scripted_http import Recorded, Reply, ScriptedServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TENANT = "dev"  # the tenant of the gateway's dev key
PATH = "/herald-events"


def events_for(receiver: ScriptedServer, notification_ids: set[str], event_type: str) -> list[Recorded]:
    return [
        request
        for request in list(receiver.requests)
        if request.path == PATH
        and (payload := orjson.loads(request.body))["type"] == event_type
        and payload["notification_id"] in notification_ids
    ]


def headers(request: Recorded) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def webhook_id(request: Recorded) -> str:
    return headers(request)["webhook-id"]


def verified(secret: str, request: Recorded) -> dict[str, Any]:
    """The payload, once the reference Standard Webhooks library verified its signature."""
    payload: dict[str, Any] = Webhook(secret).verify(request.body, headers(request))
    return payload


async def test_a_registered_endpoint_receives_signed_status_changes_and_logs_them(pipeline: Pipeline) -> None:
    with ScriptedServer().serving() as receiver:
        async with pipeline.client() as client:
            await _register_and_follow(pipeline, receiver, client)


async def _register_and_follow(pipeline: Pipeline, receiver: ScriptedServer, client: httpx.AsyncClient) -> None:
    receiver.reply = Reply(200)
    created = await client.post(
        "/api/v1/webhook-endpoints",
        json={"url": receiver.url + PATH, "description": "e2e", "events": ["sent", "delivered"]},
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()

    # The status service reads a tenant's endpoints again within HERALD_WEBHOOK_ENDPOINTS_CACHE_S (5 s):
    # send a notification a second until one's `sent` reaches the endpoint.
    sent_ids: set[str] = set()
    deadline = time.monotonic() + 60
    while True:
        accepted = await client.post(
            "/api/v1/notifications",
            json={
                "channels": ["email"],
                "recipient": {"email": f"user-{uuid.uuid4().hex[:8]}@example.com"},
                "content": {"subject": "Hi", "text": "Hello"},
            },
        )
        assert accepted.status_code == 202, accepted.text
        sent_ids.add(accepted.json()["id"])
        try:
            [sent, *_] = await eventually(
                lambda: events_for(receiver, sent_ids, "notification.sent") or None, 1, "notification.sent"
            )
            break
        except AssertionError:
            assert time.monotonic() < deadline, "no notification.sent reached the endpoint"

    payload = verified(endpoint["secret"], sent)
    notification_id = payload["notification_id"]
    assert (payload["status"], payload["channel"]) == ("sent", "email")

    # A provider reports the mail delivered (as the gateway's callback routes do).
    delivered = StatusReporter(pipeline.topics.status, "test").event(
        notification_id=notification_id, tenant_id=TENANT, status=status.DELIVERED, key=None, channel="email"
    )
    await produce_raw(pipeline.broker.bootstrap_servers, delivered.topic, [delivered.value])
    [arrived] = await eventually(
        lambda: events_for(receiver, {notification_id}, "notification.delivered") or None,
        30,
        "notification.delivered at the endpoint",
    )
    assert verified(endpoint["secret"], arrived)["status"] == "delivered"
    # Subscribed to sent and delivered only.
    assert {orjson.loads(r.body)["type"] for r in receiver.requests if r.path == PATH} <= {
        "notification.sent",
        "notification.delivered",
    }

    async def logged() -> list[dict[str, Any]] | None:
        response = await client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries")
        items = [i for i in response.json()["items"] if i["notification_id"] == notification_id]
        return items if len(items) == 2 and all(i["outcome"] == "sent" for i in items) else None

    log = await eventually(logged, 30, "both deliveries logged as sent")
    assert [(i["type"], i["attempt"], i["detail"]) for i in log] == [
        ("notification.delivered", 1, "200 OK"),
        ("notification.sent", 1, "200 OK"),
    ]
    assert {i["id"] for i in log} == {webhook_id(sent), webhook_id(arrived)}
    # The endpoint's deliveries are not the notification's: none of their events is in its history.
    notification = await pipeline.wait_for_status(notification_id, "delivered")
    assert [event["channel"] for event in notification["history"] if event["channel"] == "webhook"] == []

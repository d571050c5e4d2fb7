"""One idempotency rule on both doors: a key names one notification, whether it comes over Kafka or HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.messages import NotificationRequest
from shared.requests import build_request
from tests.e2e.conftest import Pipeline, eventually
from tests.kafka_helpers import produce_raw

pytestmark = pytest.mark.e2e

TENANT = "dev"  # the tenant of the gateway's dev key
CONTENT = {"subject": "Order shipped", "text": "It ships today."}


async def test_a_key_names_one_notification_through_either_door_and_a_repeat_shows_on_it(pipeline: Pipeline) -> None:
    key = f"order-{uuid.uuid4().hex[:8]}-shipped"
    address = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    request = build_request(
        tenant_id=TENANT, channels=["email"], recipient={"email": address}, content=CONTENT, idempotency_key=key
    )
    keyed_id = request["notification_id"]

    # Over Kafka with an id of its own choosing: refused, naming the id the key gives.
    own_id = str(uuid.uuid4())
    own: NotificationRequest = {**request, "notification_id": own_id}
    chosen = pipeline.request_record(own)
    await produce_raw(pipeline.broker.bootstrap_servers, chosen.topic, [chosen.value], headers=[chosen.headers])
    refused = await pipeline.wait_for_status(own_id, "rejected", timeout=60)
    assert refused["last_reason"] == "invalid_payload"
    assert keyed_id in refused["last_detail"]

    # Over Kafka by the rule, then the same key over HTTP: one notification, one mail.
    async with pipeline.kafka_client(TENANT) as producer:
        sent_id = await producer.send(
            channels=["email"], recipient={"email": address}, content=CONTENT, idempotency_key=key
        )
    assert sent_id == keyed_id
    await pipeline.wait_for_status(keyed_id, "sent", timeout=60)
    async with pipeline.client() as client:
        body = {"channels": ["email"], "recipient": {"email": address}, "content": CONTENT}
        again = await client.post("/api/v1/notifications", json=body, headers={"Idempotency-Key": key})
        assert again.status_code == 202, again.text
        assert again.json()["id"] == keyed_id

        async def repeat_recorded() -> dict[str, Any] | None:
            view: dict[str, Any] = (await client.get(f"/api/v1/notifications/{keyed_id}")).json()
            return view if view["duplicates"] == 1 else None

        # The dropped repeat counts on the notification it repeats, which stays sent.
        view = await eventually(repeat_recorded, 60, "the repeat in the notification's history")
    assert view["status"] == "sent"
    assert len(pipeline.mails_for(keyed_id)) == 1

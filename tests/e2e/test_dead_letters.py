"""A message the pipeline dead-letters becomes readable, with its reason and original, through the API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from shared.requests import build_request
from tests.e2e.conftest import Pipeline, eventually
from tests.kafka_helpers import produce_raw

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TENANT = "dev"  # the tenant of the gateway's dev key


async def test_an_invalid_request_from_kafka_is_listed_as_a_dead_letter(pipeline: Pipeline) -> None:
    request = build_request(
        tenant_id=TENANT,
        channels=["email"],
        recipient={"email": "not-an-address"},
        content={"subject": "s", "text": "t"},
    )
    notification_id = request["notification_id"]
    record = pipeline.request_record(request)
    await produce_raw(pipeline.broker.bootstrap_servers, record.topic, [record.value], headers=[record.headers])
    async with pipeline.client() as client:

        async def listed() -> list[dict[str, Any]] | None:
            response = await client.get("/api/v1/dead-letters", params={"notification_id": notification_id})
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["items"]
            return items or None

        (item,) = await eventually(listed, 60, f"a dead letter for {notification_id}")
        detail: httpx.Response = await client.get(item["links"]["self"])

    assert (item["reason"], item["service"], item["original_topic"]) == (
        "invalid_payload",
        "ingest",
        pipeline.topics.requests,
    )
    assert "recipient/email" in item["detail"]
    payload = detail.json()["original_payload"]
    assert (payload["encoding"], payload["contract"]) == ("json", "NotificationRequest")
    assert payload["value"]["recipient"]["email"] == "not-an-address"


async def test_a_failed_delivery_sent_again_by_hand_arrives_and_the_notification_is_sent(pipeline: Pipeline) -> None:
    address = f"gone-{uuid.uuid4().hex[:8]}@example.com"
    pipeline.sink.refuse_recipients(address)
    body = {"channels": ["email"], "recipient": {"email": address}, "content": {"subject": "Again", "text": "Hi"}}
    async with pipeline.client() as client:
        notification_id = (await client.post("/api/v1/notifications", json=body)).json()["id"]
        failed = await pipeline.wait_for_status(notification_id, "failed")
        assert failed["last_reason"] == "invalid_address"
        # The mailbox exists now; the DLQ record reaches the table, then the delivery is sent again.
        pipeline.sink.store.reset_refusals()
        retried = await eventually(
            lambda: _accepted(client.post(f"/api/v1/notifications/{notification_id}/retry")), 30, "a retry"
        )
        assert retried["status"] == "requeued"

        mail = await pipeline.wait_for_mail(notification_id)
        assert mail.rcpt_tos == (address,)
        final = await pipeline.wait_for_status(notification_id, "sent")
        [delivery] = final["deliveries"]
        assert [(a["attempt"], a["outcome"]) for a in delivery["attempt_history"]] == [
            (1, "failed"),
            (2, "requeued"),
            (2, "sent"),
        ]


async def _accepted(sending: Any) -> dict[str, Any] | None:
    """The answer of a retry once the dead letter was stored (409 until then: nothing to send again)."""
    response: httpx.Response = await sending
    answer: dict[str, Any] | None = response.json() if response.status_code == 202 else None
    return answer


async def test_a_request_ingest_fails_on_is_failed_with_its_reason_and_dead_lettered(pipeline: Pipeline) -> None:
    """A processing error in ingest (here Redis refusing the dedup claim: its key holds a list) marks the
    notification ``failed`` saying why, instead of leaving it ``accepted`` for ever."""
    idempotency_key = f"poisoned-{uuid.uuid4().hex[:8]}"
    namespace = pipeline.environment["HERALD_REDIS_NAMESPACE"]
    redis = Redis.from_url(pipeline.environment["HERALD_REDIS_URL"])
    try:
        await redis.rpush(f"{namespace}:idempotency:{TENANT}:{idempotency_key}", "not a claim")
        body = {
            "channels": ["email"],
            "recipient": {"email": "ada@example.com"},
            "content": {"subject": "Hi", "text": "Hi"},
        }
        async with pipeline.client() as client:
            accepted = await client.post(
                "/api/v1/notifications", json=body, headers={"Idempotency-Key": idempotency_key}
            )
            assert accepted.status_code == 202, accepted.text
            notification_id = accepted.json()["id"]
            failed = await pipeline.wait_for_status(notification_id, "failed", timeout=60)
            assert failed["last_reason"] == "processing_error"

            async def listed() -> list[dict[str, Any]] | None:
                response = await client.get("/api/v1/dead-letters", params={"notification_id": notification_id})
                items: list[dict[str, Any]] = response.json()["items"]
                return items or None

            (item,) = await eventually(listed, 60, f"a dead letter for {notification_id}")
    finally:
        await redis.aclose()
    assert (item["reason"], item["service"]) == ("processing_error", "ingest")
    assert "ResponseError" in item["detail"]
    assert pipeline.mails_for(notification_id) == []

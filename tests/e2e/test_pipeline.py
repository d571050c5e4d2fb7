"""One notification at a time through every service: HTTP or Kafka in, mail out, status readable back."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from standardwebhooks.webhooks import Webhook

from infra.local.stack import LOCAL_ENVIRONMENT
from shared.client import NotificationClient
from shared.kafka.records import message_key
from shared.messages import (
    DEAD_LETTER,
    DELAYED_MESSAGE,
    EMAIL_DELIVERY,
    NOTIFICATION_REQUEST,
    ROUTABLE_NOTIFICATION,
    STATUS_EVENT,
    EmailDelivery,
)
from shared.requests import build_request
from shared.webhook_secrets import tenant_secret
from tests.e2e.conftest import Pipeline, eventually
from tests.factories import email_delivery
from tests.kafka_helpers import find_record, produce_raw, read_until
from tests.scripted_http import Reply, ScriptedServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

TENANT = "dev"  # the tenant of the gateway's dev key


def email_request(address: str, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "channels": ["email"],
        "recipient": {"email": address},
        "content": {
            "subject": "Hello {{ name }}",
            "text": "Hi {{ name }}, your code is {{ code }}.",
            "html": "<p>Hi {{ name }}</p>",
        },
        "variables": {"name": "<b>Ada</b>", "code": 1234},
    }
    body.update(overrides)
    return body


def unique_address() -> str:
    return f"user-{uuid.uuid4().hex[:8]}@example.com"


def kafka_client(pipeline: Pipeline) -> NotificationClient:
    """The producer client an upstream service uses, on the pipeline's broker and topics."""
    return pipeline.kafka_client(TENANT)


SENT_SLI_COUNT = 'herald_accepted_to_sent_seconds_count{channel="email"}'


async def test_an_http_request_is_delivered_and_its_status_and_history_read_back(pipeline: Pipeline) -> None:
    address = unique_address()
    sent_before = await pipeline.metric("sender-email", SENT_SLI_COUNT)
    async with pipeline.client() as client:
        accepted = await client.post("/api/v1/notifications", json=email_request(address))
        assert accepted.status_code == 202, accepted.text
        notification_id = accepted.json()["id"]
        assert accepted.headers["location"] == f"/api/v1/notifications/{notification_id}"
        right_after = await client.get(f"/api/v1/notifications/{notification_id}")
        assert right_after.status_code == 200

    mail = await pipeline.wait_for_mail(notification_id)
    assert mail.rcpt_tos == (address,)
    assert mail.subject == "Hello <b>Ada</b>"
    assert mail.text is not None
    assert "your code is 1234." in mail.text
    assert mail.html is not None
    assert "&lt;b&gt;Ada&lt;/b&gt;" in mail.html

    final = await pipeline.wait_for_status(notification_id, "sent")
    assert final["channel"] == "email"
    assert final["attempts"] == 1
    history = [change["status"] for change in final["history"]]
    assert history == ["accepted", "routed", "sent"]
    assert final["history"][-1]["provider"] == "smtp"
    # The service level indicator saw it: accepted -> sent, clocked from ingest's header through the router.
    assert await pipeline.metric("sender-email", SENT_SLI_COUNT) >= sent_before + 1
    assert await pipeline.metric("sender-email", 'herald_build_info{commit="unknown",service="sender-email"') == 1


async def test_a_request_produced_to_kafka_with_the_client_is_delivered(pipeline: Pipeline) -> None:
    address = unique_address()
    async with kafka_client(pipeline) as herald:
        notification_id = await herald.send(
            channels=["email"],
            recipient={"email": address},
            content={"subject": "Order {{ order }}", "text": "Your order {{ order }} ships today."},
            variables={"order": "A-1001"},
        )
    mail = await pipeline.wait_for_mail(notification_id)
    assert (mail.rcpt_tos, mail.subject) == ((address,), "Order A-1001")
    final = await pipeline.wait_for_status(notification_id, "sent")
    assert [change["status"] for change in final["history"]] == ["accepted", "routed", "sent"]


async def test_the_same_idempotency_key_twice_delivers_one_mail(pipeline: Pipeline) -> None:
    """Retried over HTTP, the gateway answers again; produced again to Kafka, ingest drops it and the
    notification counts the duplicate."""
    address = unique_address()
    key = f"welcome-{uuid.uuid4()}"
    duplicates_before = await pipeline.metric("ingest", "herald_notifications_duplicate_total")
    async with pipeline.client() as client:
        first = await client.post(
            "/api/v1/notifications", json=email_request(address), headers={"Idempotency-Key": key}
        )
        second = await client.post(
            "/api/v1/notifications", json=email_request(address), headers={"Idempotency-Key": key}
        )
        assert first.status_code == second.status_code == 202
        assert second.headers["idempotent-replayed"] == "true"
        assert first.json()["id"] == second.json()["id"]
    notification_id = first.json()["id"]
    # An upstream service sends it again straight to Kafka: no gateway in between, ingest drops it.
    async with kafka_client(pipeline) as herald:
        again = await herald.send(
            channels=["email"],
            recipient={"email": address},
            content={"subject": "Hi", "text": "Hi"},
            idempotency_key=key,
        )
    assert again == notification_id
    async with pipeline.client() as client:
        # A later notification to the same person travels the same partitions behind the duplicate.
        marker = await client.post("/api/v1/notifications", json=email_request(address))
    await pipeline.wait_for_mail(marker.json()["id"])
    await pipeline.wait_for_status(notification_id, "sent")
    await eventually(
        lambda: True if pipeline.mails_for(notification_id) else None, 10, "the idempotent notification's mail"
    )
    assert len(pipeline.mails_for(notification_id)) == 1
    assert await pipeline.metric("ingest", "herald_notifications_duplicate_total") == duplicates_before + 1

    async def counted() -> dict[str, object] | None:
        async with pipeline.client() as client:
            view: dict[str, object] = (await client.get(f"/api/v1/notifications/{notification_id}")).json()
        return view if view["duplicates"] == 1 else None

    view = await eventually(counted, 10, "the duplicate counted on the notification")
    assert view["status"] == "sent"


async def test_an_smtp_refusal_is_retried_once_and_delivered_once(pipeline: Pipeline) -> None:
    address = unique_address()
    pipeline.sink.refuse_next(1)
    async with pipeline.client() as client:
        accepted = await client.post("/api/v1/notifications", json=email_request(address))
    notification_id = accepted.json()["id"]
    await pipeline.wait_for_mail(notification_id)
    final = await pipeline.wait_for_status(notification_id, "sent")
    assert final["attempts"] == 2
    changes = [(change["status"], change["attempt"]) for change in final["history"]]
    assert changes == [("accepted", None), ("routed", None), ("retrying", 1), ("sent", 2)]
    retrying = final["history"][2]
    assert retrying["reason"] == "provider_deferred"
    assert retrying["detail"].startswith("451")
    async with pipeline.client() as client:
        marker = await client.post("/api/v1/notifications", json=email_request(address))
    await pipeline.wait_for_mail(marker.json()["id"])
    assert len(pipeline.mails_for(notification_id)) == 1

    # The sender logged the refusal as JSON, bound to the notification and its trace.
    logged = [
        orjson.loads(line) for line in pipeline.processes["sender-email"].output_tail(200) if line.startswith("{")
    ]
    refusal = [entry for entry in logged if entry.get("event") == "send_failed"]
    assert any(entry["notification_id"] == notification_id and entry["trace_id"] for entry in refusal), refusal


async def test_the_trace_started_at_the_gateway_reaches_the_sender(pipeline: Pipeline) -> None:
    async with pipeline.client() as client:
        accepted = await client.post("/api/v1/notifications", json=email_request(unique_address()))
    notification_id = accepted.json()["id"]
    await pipeline.wait_for_mail(notification_id)

    def trace_id(record: ConsumerRecord) -> str:
        return str(dict(record.headers)["traceparent"].decode().split("-")[1])

    def of_this(decode: Callable[[bytes], Mapping[str, object]]) -> Callable[[ConsumerRecord], bool]:
        return lambda record: decode(record.value)["notification_id"] == notification_id

    bootstrap, topics = pipeline.broker.bootstrap_servers, pipeline.topics
    at_gateway = trace_id(await find_record(bootstrap, topics.requests, of_this(NOTIFICATION_REQUEST.decode)))
    at_sender = trace_id(await find_record(bootstrap, topics.send("email"), of_this(EMAIL_DELIVERY.decode)))
    assert int(at_gateway, 16) != 0
    assert at_sender == at_gateway


async def test_an_invalid_request_from_kafka_is_rejected_to_the_dlq(pipeline: Pipeline) -> None:
    request = build_request(
        tenant_id=TENANT,
        channels=["email"],
        recipient={"email": "not-an-address"},
        content={"subject": "s", "text": "t"},
    )
    record = pipeline.request_record(request)
    await produce_raw(pipeline.broker.bootstrap_servers, record.topic, [record.value], headers=[record.headers])
    final = await pipeline.wait_for_status(request["notification_id"], "rejected")
    assert final["last_reason"] == "invalid_payload"
    assert "recipient/email" in final["last_detail"]
    letter = DEAD_LETTER.decode(
        (
            await find_record(
                pipeline.broker.bootstrap_servers,
                pipeline.topics.dlq,
                lambda record: DEAD_LETTER.decode(record.value)["notification_id"] == request["notification_id"],
            )
        ).value
    )
    assert letter["reason_category"] == "invalid_payload"


def direct_delivery(notification_id: str) -> EmailDelivery:
    """A rendered delivery, as if the router had made it."""
    return email_delivery(notification_id=notification_id, tenant_id=TENANT, to=unique_address(), html=None)


async def test_undecodable_bytes_on_every_consumed_topic_go_to_the_dlq_and_the_next_message_still_flows(
    pipeline: Pipeline,
) -> None:
    topics = pipeline.topics
    bootstrap = pipeline.broker.bootstrap_servers
    now = datetime.now(UTC)
    good: dict[str, tuple[str, bytes]] = {}  # topic -> (notification id, a valid message)

    request = build_request(
        tenant_id=TENANT,
        channels=["email"],
        recipient={"email": unique_address()},
        content={"subject": "r", "text": "r"},
    )
    good[topics.requests] = (request["notification_id"], pipeline.request_record(request).value)

    routable_id = str(uuid.uuid4())
    good[topics.routable] = (
        routable_id,
        ROUTABLE_NOTIFICATION.encode(
            {
                "notification_id": routable_id,
                "tenant_id": TENANT,
                "accepted_at": now,
                "priority": "normal",
                "channels": ["email"],
                "recipient": {
                    "user_id": None,
                    "email": unique_address(),
                    "phone": None,
                    "locale": None,
                    "webhook_url": None,
                },
                "content": {
                    "subject": "routable",
                    "text": "routable",
                    "html": None,
                    "attachments": [],
                    "provider_templates": {},
                    "template": None,
                },
                "variables_json": "{}",
                "metadata": {},
                "tracking": {"opens": False, "clicks": False},
            }
        ),
    )

    send_id = str(uuid.uuid4())
    good[topics.send("email")] = (send_id, EMAIL_DELIVERY.encode(direct_delivery(send_id)))

    delayed_id = str(uuid.uuid4())
    good[topics.delay] = (
        delayed_id,
        DELAYED_MESSAGE.encode(
            {
                "job_id": str(uuid.uuid4()),
                "tenant_id": TENANT,
                "notification_id": delayed_id,
                "due_at": now,
                "target_topic": topics.send("email"),
                "key": None,
                "payload": EMAIL_DELIVERY.encode(direct_delivery(delayed_id)),
                "headers": {},
                "reason": "test",
                "recurring": False,
            }
        ),
    )

    status_id = str(uuid.uuid4())
    good[topics.status] = (
        status_id,
        STATUS_EVENT.encode(
            {
                "event_id": str(uuid.uuid4()),
                "notification_id": status_id,
                "tenant_id": TENANT,
                "status": "accepted",
                "occurred_at": now,
                "service": "test",
                "channel": None,
                "attempt": None,
                "provider": None,
                "reason": None,
                "detail": None,
                "delivery_id": None,
                "deliveries": None,
            }
        ),
    )

    for topic, (notification_id, value) in good.items():
        key = message_key(TENANT, notification_id)
        # Garbage first, then a good message on the same partition (same key); only a request needs headers, its
        # signature (the other helpers produce without any, as a foreign producer might).
        signed = pipeline.request_record(NOTIFICATION_REQUEST.decode(value)).headers if topic == topics.requests else ()
        await produce_raw(bootstrap, topic, [b"\xde\xad\xbe\xef not avro", value], key=key, headers=[(), signed])

    for topic, (notification_id, _) in good.items():
        if topic == topics.status:
            await pipeline.wait_for_status(notification_id, "accepted")
        else:
            await pipeline.wait_for_mail(notification_id)

    def undecodable_from(records: list[ConsumerRecord]) -> set[str]:
        letters = [DEAD_LETTER.decode(record.value) for record in records]
        return {letter["original_topic"] for letter in letters if letter["reason_category"] == "undecodable"}

    records = await read_until(
        bootstrap, topics.dlq, lambda found: undecodable_from(found) >= set(good), 30, "a letter per topic"
    )
    assert undecodable_from(records) == set(good)
    for record in records:
        letter = DEAD_LETTER.decode(record.value)
        if letter["reason_category"] == "undecodable":
            assert letter["original_payload"] == b"\xde\xad\xbe\xef not avro"


async def test_an_sms_request_is_delivered_through_the_sms_sender(pipeline: Pipeline) -> None:
    phone = f"+1415555{uuid.uuid4().int % 10_000:04d}"
    body = {
        "channels": ["sms"],
        "recipient": {"phone": phone.replace("+1", "+1 ")},
        "content": {"text": "Your code is {{ code }}"},
        "variables": {"code": "4321"},
    }
    async with pipeline.client() as client:
        accepted = await client.post("/api/v1/notifications", json=body)
    assert accepted.status_code == 202, accepted.text
    sms = await pipeline.wait_for_sms(phone)
    assert sms["message"] == "Your code is 4321"
    final = await pipeline.wait_for_status(accepted.json()["id"], "sent")
    assert (final["channel"], final["history"][-1]["provider"]) == ("sms", "sns")


async def test_a_webhook_request_is_posted_signed_to_the_customer_url(pipeline: Pipeline) -> None:
    with ScriptedServer().serving() as receiver:
        receiver.reply = Reply(200)
        body = {
            "channels": ["webhook"],
            "recipient": {"webhook_url": f"{receiver.url}/hooks/orders"},
            "content": {"text": "Order {{ order }} shipped"},
            "variables": {"order": "A-7"},
        }
        async with pipeline.client() as client:
            accepted = await client.post("/api/v1/notifications", json=body)
        assert accepted.status_code == 202, accepted.text
        notification_id = accepted.json()["id"]
        final = await pipeline.wait_for_status(notification_id, "sent")
        assert final["channel"] == "webhook"
        [request] = [r for r in receiver.requests if r.path == "/hooks/orders"]
        headers = {k.lower(): v for k, v in request.headers.items()}
        secret = tenant_secret(LOCAL_ENVIRONMENT["HERALD_WEBHOOK_SIGNING_KEY"].encode(), TENANT)
        payload = Webhook(secret).verify(request.body, headers)
        assert (payload["notification_id"], payload["text"], payload["data"]) == (
            notification_id,
            "Order A-7 shipped",
            {"order": "A-7"},
        )


def webhook_request(url: str) -> dict[str, object]:
    return {"channels": ["webhook"], "recipient": {"webhook_url": url}, "content": {"text": "ping"}}


async def test_a_webhook_refused_with_a_4xx_fails_at_once_and_goes_to_the_dlq(pipeline: Pipeline) -> None:
    with ScriptedServer().serving() as receiver:
        receiver.reply = Reply(400)
        async with pipeline.client() as client:
            accepted = await client.post("/api/v1/notifications", json=webhook_request(f"{receiver.url}/refuses"))
        notification_id = accepted.json()["id"]
        final = await pipeline.wait_for_status(notification_id, "failed")
    assert (final["attempts"], final["last_reason"], final["last_detail"]) == (
        1,
        "provider_rejected",
        "400 Bad Request",
    )
    letter = await find_record(
        pipeline.broker.bootstrap_servers,
        pipeline.topics.dlq,
        lambda record: DEAD_LETTER.decode(record.value)["notification_id"] == notification_id,
    )
    assert DEAD_LETTER.decode(letter.value)["reason_category"] == "provider_rejected"
    assert len(receiver.requests) == 1


async def test_a_webhook_answered_503_is_retried_then_delivered_with_the_same_id(pipeline: Pipeline) -> None:
    with ScriptedServer().serving() as receiver:
        receiver.script("/flaky", Reply(503))
        receiver.reply = Reply(200)
        async with pipeline.client() as client:
            accepted = await client.post("/api/v1/notifications", json=webhook_request(f"{receiver.url}/flaky"))
        notification_id = accepted.json()["id"]
        final = await pipeline.wait_for_status(notification_id, "sent")
    changes = [(change["status"], change["attempt"], change["reason"]) for change in final["history"]]
    assert changes[-2:] == [("retrying", 1, "endpoint_unavailable"), ("sent", 2, None)]
    assert len({request.headers["webhook-id"] for request in receiver.requests}) == 1
    assert len(receiver.requests) == 2

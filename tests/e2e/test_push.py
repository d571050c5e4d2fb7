"""Push end to end: devices registered over HTTP, one delivery per device through the platform's
provider (FCM, APNs over HTTP/2, Web Push decrypted by the stand-in), dead tokens disabled for good."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.messages import DEAD_LETTER
from tests.e2e.conftest import Pipeline, eventually
from tests.kafka_helpers import find_record

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:Message.token is deprecated:DeprecationWarning"),
]


def push_request(user: str, channels: list[str] | None = None, **recipient: str) -> dict[str, Any]:
    return {
        "channels": channels or ["push"],
        "recipient": {"user_id": user, **recipient},
        "content": {"subject": "Hello {{ name }}", "text": "Your order {{ order }} shipped"},
        "variables": {"name": "Ada", "order": "42"},
    }


async def register(pipeline: Pipeline, user: str, platform: str, token: str) -> dict[str, Any]:
    async with pipeline.client() as client:
        response = await client.post(f"/api/v1/recipients/{user}/devices", json={"platform": platform, "token": token})
    assert response.status_code == 201, response.text
    device: dict[str, Any] = response.json()
    return device


async def send(pipeline: Pipeline, body: dict[str, Any]) -> str:
    async with pipeline.client() as client:
        response = await client.post("/api/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["id"]
    return notification_id


def fcm_tokens(pipeline: Pipeline) -> list[str]:
    return [m.message["token"] for m in pipeline.push.fcm.messages]


async def test_a_push_reaches_every_device_of_the_user_through_its_platform(pipeline: Pipeline) -> None:
    user = f"ada-{uuid.uuid4().hex[:8]}"
    android, ios = f"fcm-{uuid.uuid4().hex}", uuid.uuid4().hex * 2
    subscription = pipeline.push.web_subscription()
    for platform, token in (("android", android), ("ios", ios), ("web", subscription)):
        await register(pipeline, user, platform, token)

    notification_id = await send(pipeline, push_request(user))

    [pushed] = await eventually(lambda: pipeline.push.web.received(subscription) or None, 30, "the web push")
    assert pushed.json()["title"] == "Hello Ada"
    assert pushed.json()["body"] == "Your order 42 shipped"
    await eventually(lambda: android in fcm_tokens(pipeline) or None, 30, "the android push")
    apns = await eventually(
        lambda: [n for n in pipeline.push.apns.notifications if n.device_token == ios] or None, 30, "the iOS push"
    )
    assert apns[0].payload["aps"]["alert"] == {"title": "Hello Ada", "body": "Your order 42 shipped"}
    final = await pipeline.wait_for_status(notification_id, "sent")
    deliveries = await deliveries_when(pipeline, notification_id, lambda d: len(d) == 3 and all_sent(d))
    assert final["channel"] == "push"
    assert sorted(d["provider"] for d in deliveries) == ["apns", "fcm", "webpush"]


def all_sent(deliveries: list[dict[str, Any]]) -> bool:
    return all(d["status"] == "sent" for d in deliveries)


async def deliveries_when(pipeline: Pipeline, notification_id: str, ready: Any) -> list[dict[str, Any]]:
    """The notification's deliveries once ``ready`` accepts them."""
    async with pipeline.client() as client:

        async def fetch() -> list[dict[str, Any]] | None:
            deliveries: list[dict[str, Any]] = (await client.get(f"/api/v1/notifications/{notification_id}")).json()[
                "deliveries"
            ]
            return deliveries if ready(deliveries) else None

        found: list[dict[str, Any]] = await eventually(fetch, 30, f"the deliveries of {notification_id}")
        return found


async def test_a_dead_token_is_disabled_and_the_notification_still_counts_as_sent(pipeline: Pipeline) -> None:
    user = f"bob-{uuid.uuid4().hex[:8]}"
    subscription = pipeline.push.web_subscription()
    dead_tablet = await register(pipeline, user, "web", subscription)
    await register(pipeline, user, "ios", uuid.uuid4().hex * 2)
    pipeline.push.web.expire(subscription)

    first = await send(pipeline, push_request(user))

    deliveries = await deliveries_when(
        pipeline, first, lambda d: {x["status"] for x in d} == {"sent", "failed"} and len(d) == 2
    )
    [failed] = [d for d in deliveries if d["status"] == "failed"]
    assert (failed["provider"], failed["last_reason"]) == ("webpush", "unregistered_token")
    final = await pipeline.wait_for_status(first, "sent")
    assert final["status"] == "sent"
    async with pipeline.client() as client:
        devices = (await client.get(f"/api/v1/recipients/{user}/devices", params={"include_disabled": True})).json()
    [disabled] = [d for d in devices if d["id"] == dead_tablet["id"]]
    assert disabled["active"] is False
    assert "webpush" in disabled["disabled_reason"]

    second = await send(pipeline, push_request(user))

    [only] = await deliveries_when(pipeline, second, lambda d: len(d) == 1 and all_sent(d))
    assert only["provider"] == "apns"


async def test_a_push_whose_every_token_is_dead_fails_to_the_dlq_with_the_reason(pipeline: Pipeline) -> None:
    user = f"cy-{uuid.uuid4().hex[:8]}"
    await register(pipeline, user, "android", "not a token!")

    notification_id = await send(pipeline, push_request(user))

    final = await pipeline.wait_for_status(notification_id, "failed")
    assert final["last_reason"] == "invalid_token"
    letter = DEAD_LETTER.decode(
        (
            await find_record(
                pipeline.broker.bootstrap_servers,
                pipeline.topics.dlq,
                lambda record: DEAD_LETTER.decode(record.value)["notification_id"] == notification_id,
            )
        ).value
    )
    assert letter["reason_category"] == "invalid_token"


async def test_a_user_without_devices_gets_the_next_channel(pipeline: Pipeline) -> None:
    user = f"dee-{uuid.uuid4().hex[:8]}"

    notification_id = await send(pipeline, push_request(user, ["push", "email"], email=f"{user}@example.com"))

    mail = await pipeline.wait_for_mail(notification_id)
    assert mail.header("Subject") == "Hello Ada"
    final = await pipeline.wait_for_status(notification_id, "sent")
    assert final["channel"] == "email"


async def test_a_push_fcm_refuses_for_now_is_retried_and_delivered(pipeline: Pipeline) -> None:
    user = f"eve-{uuid.uuid4().hex[:8]}"
    token = f"fcm-{uuid.uuid4().hex}"
    await register(pipeline, user, "android", token)
    pipeline.push.fcm.fail_next(503, "UNAVAILABLE")

    notification_id = await send(pipeline, push_request(user))

    await eventually(lambda: token in fcm_tokens(pipeline) or None, 30, "the android push")
    final = await pipeline.wait_for_status(notification_id, "sent")
    assert [e["status"] for e in final["history"]][-2:] == ["retrying", "sent"]
    [delivery] = await deliveries_when(pipeline, notification_id, all_sent)
    assert (delivery["attempts"], delivery["provider"]) == (2, "fcm")
    assert [(a["attempt"], a["outcome"], a["provider"], a["reason"]) for a in delivery["attempt_history"]] == [
        (1, "retrying", "fcm", "provider_unavailable"),
        (2, "sent", "fcm", None),
    ]

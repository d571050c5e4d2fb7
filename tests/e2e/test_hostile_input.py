"""Hostile input on the whole pipeline: what one tenant's requests make (huge renders, costly or
failing templates) is that tenant's notifications' fate, and another tenant's mail goes on."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from shared.client import NotificationClient
from tests.e2e.conftest import Pipeline, eventually

pytestmark = pytest.mark.e2e

ATTACKER = "mallory"
# Each fails when rendered, or costs more than the render limits allow: none may pause the router.
HOSTILE_TEXTS = [
    "{{ 1/0 }}",
    "{{ '%d' % 'a' }}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{{ 7**5000000 }}",
    "{{ 'A' * 1100000 }}",
    "{{ range(10**9) }}",
]


def attacker_client(pipeline: Pipeline) -> NotificationClient:
    """An upstream service of another tenant, producing straight to Kafka (nothing checks its templates)."""
    return pipeline.kafka_client(ATTACKER)


async def statuses(pipeline: Pipeline, notification_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    connection = await asyncpg.connect(pipeline.database_url)
    try:
        rows = await connection.fetch(
            "SELECT id, status, last_reason FROM notifications WHERE id = ANY($1::uuid[])", notification_ids
        )
    finally:
        await connection.close()
    return {str(row["id"]): (row["status"], row["last_reason"]) for row in rows}


async def send_ordinary(pipeline: Pipeline, count: int) -> list[str]:
    async with pipeline.client() as client:
        ids = []
        for n in range(count):
            body = {
                "channels": ["email"],
                "recipient": {"email": f"ok-{uuid.uuid4().hex[:8]}@example.com"},
                "content": {"subject": f"Ordinary {n}", "text": "Nothing to see."},
            }
            accepted = await client.post("/api/v1/notifications", json=body)
            assert accepted.status_code == 202, accepted.text
            ids.append(accepted.json()["id"])
        return ids


def sent_after_accepted_s(notification: dict[str, Any]) -> float:
    at = {change["status"]: datetime.fromisoformat(change["occurred_at"]) for change in notification["history"]}
    return (at["sent"] - at["accepted"]).total_seconds()


async def test_a_burst_of_hostile_templates_fails_alone_while_another_tenants_mail_flows(pipeline: Pipeline) -> None:
    """60 failing or costly templates in one burst (they once paused the router for every tenant for
    30 s, the notifications left `accepted` for ever) beside another tenant's ordinary mail."""
    async with attacker_client(pipeline) as attacker:
        hostile = [
            await attacker.send(
                channels=["email"],
                recipient={"email": f"victim-{n}@example.com"},
                content={"subject": "Hi", "text": HOSTILE_TEXTS[n % len(HOSTILE_TEXTS)]},
            )
            for n in range(60)
        ]
    ordinary = await send_ordinary(pipeline, 10)
    for notification_id in ordinary:
        await pipeline.wait_for_mail(notification_id, timeout=20)
    for notification_id in ordinary:
        sent = await pipeline.wait_for_status(notification_id, "sent")
        # Generous (0.5 s is usual here): the router's dead-letter guard pause it once caused is 30 s.
        assert sent_after_accepted_s(sent) < 10, sent["history"]

    async def all_failed() -> dict[str, tuple[str, str | None]] | None:
        found = await statuses(pipeline, hostile)
        return found if len(found) == 60 and all(status == "failed" for status, _ in found.values()) else None

    failed = await eventually(all_failed, 60, "every hostile notification to be failed")
    assert {reason for _, reason in failed.values()} == {"invalid_payload"}
    assert not [m for m in pipeline.sink.messages if m.rcpt_tos[0].startswith("victim-")]
    assert await pipeline.metric("router", 'herald_consumer_pauses_total{reason="processing_error"}') == 0


async def test_a_render_too_large_for_kafka_fails_its_notification_and_the_router_goes_on(pipeline: Pipeline) -> None:
    """Each part within the render limits, together over what Kafka takes: the router once crashed
    producing it, and again on every restart, as its offset was never committed."""
    router_pid = pipeline.processes["router"].pid
    async with attacker_client(pipeline) as attacker:
        # 20,000 characters of variables (60 kB) times ten, in the text and in the html: 1.2 MB.
        too_large = await attacker.send(
            channels=["email"],
            recipient={"email": "victim-large@example.com"},
            content={"subject": "Hi", "text": "{{ w * 10 }}", "html": "<p>{{ w * 10 }}</p>"},
            variables={"w": "€" * 20_000},
        )
    [after] = await send_ordinary(pipeline, 1)
    await pipeline.wait_for_mail(after, timeout=30)
    assert pipeline.processes["router"].running
    assert pipeline.processes["router"].pid == router_pid

    async def fate() -> tuple[str, str | None] | None:
        found = (await statuses(pipeline, [too_large])).get(too_large)
        return found if found is not None and found[0] == "failed" else None

    assert await eventually(fate, 30, "the notification to be failed") == ("failed", "message_too_large")

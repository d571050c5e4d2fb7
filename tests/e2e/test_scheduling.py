"""Scheduling end to end: send_at, recurring series, and cancelling what still waits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from infra.local.mail_sink import ReceivedMessage
from tests.e2e.conftest import Pipeline, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ZONE = ZoneInfo("Europe/Paris")


def mail(subject: str, **schedule: Any) -> dict[str, Any]:
    return {
        "channels": ["email"],
        "recipient": {"email": "ada@example.com"},
        "content": {"subject": subject, "text": "Hi"},
        **schedule,
    }


def whole_second(ahead_s: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=ahead_s)).replace(microsecond=0)


def mails_titled(pipeline: Pipeline, subject: str) -> list[ReceivedMessage]:
    return [m for m in pipeline.sink.messages if m.subject == subject]


async def post(pipeline: Pipeline, body: dict[str, Any]) -> str:
    async with pipeline.client() as client:
        response = await client.post("/api/v1/notifications", json=body)
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["id"]
    return notification_id


async def jobs_waiting(pipeline: Pipeline, notification_id: str) -> int:
    connection = await asyncpg.connect(pipeline.database_url)
    try:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM delayed_jobs WHERE notification_id = $1", uuid.UUID(notification_id)
        )
        return count
    finally:
        await connection.close()


async def test_a_notification_with_send_at_waits_until_then(pipeline: Pipeline) -> None:
    subject = f"later {uuid.uuid4()}"
    send_at = whole_second(3)

    notification_id = await post(pipeline, mail(subject, send_at=send_at.isoformat()))

    await pipeline.wait_for_status(notification_id, "scheduled")
    [arrived] = await eventually(lambda: mails_titled(pipeline, subject) or None, 30, "the scheduled mail")
    assert arrived.received_at >= send_at
    final = await pipeline.wait_for_status(notification_id, "sent")
    assert [e["status"] for e in final["history"]][:3] == ["accepted", "scheduled", "routed"]


async def test_a_local_send_at_is_read_in_its_time_zone(pipeline: Pipeline) -> None:
    subject = f"paris {uuid.uuid4()}"
    send_at = whole_second(2)
    local = send_at.astimezone(ZONE).replace(tzinfo=None)

    notification_id = await post(pipeline, mail(subject, send_at=local.isoformat(), timezone="Europe/Paris"))

    [arrived] = await eventually(lambda: mails_titled(pipeline, subject) or None, 30, "the scheduled mail")
    assert arrived.received_at >= send_at
    await pipeline.wait_for_status(notification_id, "sent")


async def test_a_recurring_notification_sends_each_occurrence_as_its_own_notification(pipeline: Pipeline) -> None:
    subject = f"every second {uuid.uuid4()}"
    start = whole_second(2)
    recurrence = {"cron": "* * * * * *", "until": (start + timedelta(seconds=2)).isoformat()}

    series_id = await post(pipeline, mail(subject, send_at=start.isoformat(), recurrence=recurrence))

    mails = await eventually(lambda: m if len(m := mails_titled(pipeline, subject)) >= 3 else None, 30, "3 mails")
    ids = {m.header("X-Herald-Notification-Id") for m in mails}
    assert len(ids) == 3
    assert series_id not in ids
    assert all(m.received_at >= start for m in mails)
    # The series ended at `until`: its job is gone, so no fourth occurrence can come.
    await eventually(lambda: _none_waiting(pipeline, series_id), 30, "the series to end")
    assert len(mails_titled(pipeline, subject)) == 3
    for occurrence in ids:
        assert occurrence is not None
        await pipeline.wait_for_status(occurrence, "sent")


async def _none_waiting(pipeline: Pipeline, notification_id: str) -> bool | None:
    return True if await jobs_waiting(pipeline, notification_id) == 0 else None


async def test_a_cancelled_scheduled_notification_is_never_sent(pipeline: Pipeline) -> None:
    subject = f"cancelled {uuid.uuid4()}"
    notification_id = await post(pipeline, mail(subject, send_at=whole_second(3).isoformat()))
    await pipeline.wait_for_status(notification_id, "scheduled")

    async with pipeline.client() as client:
        response = await client.delete(f"/api/v1/notifications/{notification_id}")
    assert response.status_code == 202, response.text
    assert response.json() == {"id": notification_id, "status": "cancelled"}

    await pipeline.wait_for_status(notification_id, "cancelled")
    # Once due, the retry service drops the job instead of firing it.
    await eventually(lambda: _none_waiting(pipeline, notification_id), 30, "the job to be dropped")
    assert mails_titled(pipeline, subject) == []


async def test_cancelling_a_series_stops_the_rest_of_it(pipeline: Pipeline) -> None:
    subject = f"series {uuid.uuid4()}"
    series_id = await post(pipeline, mail(subject, recurrence={"cron": "* * * * * *"}))
    await eventually(lambda: mails_titled(pipeline, subject) or None, 30, "the first occurrence")

    async with pipeline.client() as client:
        response = await client.delete(f"/api/v1/notifications/{series_id}")
    assert response.status_code == 202, response.text

    await eventually(lambda: _none_waiting(pipeline, series_id), 30, "the series job to be dropped")
    stopped_at = len(mails_titled(pipeline, subject))
    final = await pipeline.wait_for_status(series_id, "cancelled")
    assert final["status"] == "cancelled"
    # An occurrence already produced before the drop may still arrive; none after it.
    assert len(mails_titled(pipeline, subject)) <= stopped_at + 1


async def test_a_sent_notification_cannot_be_cancelled(pipeline: Pipeline) -> None:
    notification_id = await post(pipeline, mail(f"now {uuid.uuid4()}"))
    await pipeline.wait_for_status(notification_id, "sent")

    async with pipeline.client() as client:
        sent = await client.delete(f"/api/v1/notifications/{notification_id}")
        unknown = await client.delete(f"/api/v1/notifications/{uuid.uuid4()}")

    assert sent.status_code == 409
    assert sent.headers["content-type"] == "application/problem+json"
    assert unknown.status_code == 404

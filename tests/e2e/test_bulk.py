"""A bulk request through the whole pipeline: every notification in it delivered once and listed as sent."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import Pipeline, eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

COUNT = 200


async def test_a_bulk_of_emails_is_delivered_and_listed_as_sent(pipeline: Pipeline) -> None:
    # A message type of its own: the listing then shows this test's notifications only.
    batch = f"bulk-{uuid.uuid4().hex[:8]}"
    items = [
        {
            "channels": ["email"],
            "recipient": {"email": f"{batch}-{i}@example.com"},
            "content": {"subject": "Hello {{ n }}", "text": "Number {{ n }}"},
            "variables": {"n": i},
            "metadata": {"type": batch},
        }
        for i in range(COUNT)
    ]
    async with pipeline.client() as client:
        started = time.perf_counter()
        response = await client.post("/api/v1/notifications/bulk", json={"notifications": items})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, response.text
        print(f"\nbulk of {COUNT} emails over HTTP, whole pipeline running: {elapsed * 1000:.0f} ms")
        outcome = response.json()
        assert (outcome["accepted"], outcome["rejected"]) == (COUNT, 0)
        ids = [result["id"] for result in outcome["results"]]

        def delivered() -> Counter[str] | None:
            mails = pipeline.mailed()
            arrived = Counter({i: mails[i] for i in ids if mails[i]})
            return arrived if len(arrived) == COUNT else None

        arrived = await eventually(delivered, 120, f"{COUNT} mails")
        assert set(arrived.values()) == {1}

        async def listed_as_sent() -> list[dict[str, Any]] | None:
            page = await client.get("/api/v1/notifications", params={"type": batch, "status": "sent", "limit": 500})
            assert page.status_code == 200, page.text
            items: list[dict[str, Any]] = page.json()["items"]
            return items if len(items) == COUNT else None

        listed = await eventually(listed_as_sent, 60, f"{COUNT} notifications listed as sent")
    assert sorted(item["id"] for item in listed) == sorted(ids)
    assert {(item["status"], item["channel"]) for item in listed} == {("sent", "email")}

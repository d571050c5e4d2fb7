"""Stored recipients through every service: a notification addressed by user id alone reaches the
stored address, and a channel the user opted out of gives way to the next one (or fails the notification)."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_stored_contact_details_and_preferences_route_by_user_id(pipeline: Pipeline) -> None:
    user_id = f"user-{uuid.uuid4().hex[:8]}"
    address = f"{user_id}@example.com"
    phone = f"+1415555{uuid.uuid4().int % 10_000:04d}"
    opt_out = {"category": "marketing", "channel": "email", "enabled": False}

    def notification(category: str, channels: list[str]) -> dict[str, object]:
        return {
            "channels": channels,
            "recipient": {"user_id": user_id},
            "content": {"subject": f"About {category}", "text": f"News about {category}"},
            "metadata": {"category": category},
        }

    async with pipeline.client() as client:
        stored = await client.put(f"/api/v1/recipients/{user_id}", json={"email": address, "phone": phone})
        assert stored.status_code == 201, stored.text
        preferences = await client.put(f"/api/v1/recipients/{user_id}/preferences", json={"preferences": [opt_out]})
        assert preferences.status_code == 200, preferences.text
        ids: dict[str, str] = {}
        for name, body in {
            "receipt": notification("receipts", ["email", "sms"]),
            "marketing": notification("marketing", ["email", "sms"]),
            "marketing_by_email": notification("marketing", ["email"]),
        }.items():
            accepted = await client.post("/api/v1/notifications", json=body)
            assert accepted.status_code == 202, accepted.text
            ids[name] = accepted.json()["id"]

    mail = await pipeline.wait_for_mail(ids["receipt"])
    assert mail.rcpt_tos == (address,)
    sms = await pipeline.wait_for_sms(phone)
    assert sms["message"] == "News about marketing"
    assert (await pipeline.wait_for_status(ids["marketing"], "sent"))["channel"] == "sms"
    failed = await pipeline.wait_for_status(ids["marketing_by_email"], "failed")
    assert failed["last_reason"] == "recipient_opted_out"
    assert "opted out of category 'marketing' on email" in failed["last_detail"]
    assert pipeline.mails_for(ids["marketing"]) == pipeline.mails_for(ids["marketing_by_email"]) == []

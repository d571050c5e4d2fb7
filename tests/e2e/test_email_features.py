"""Email attachments and tracking through the whole pipeline: HTTP request to the mail, then the reader's clicks."""

from __future__ import annotations

import base64
import email
import email.policy
import re
import uuid

import httpx
import pytest

from tests.e2e.conftest import Pipeline
from tests.scripted_http import Reply, ScriptedServer

pytestmark = pytest.mark.e2e

CSV = b"order,total\n42,9.99\n"
SHOP = "https://shop.example.com/orders/42"


async def test_a_tracked_mail_with_attachments_arrives_and_records_the_reader(pipeline: Pipeline) -> None:
    with ScriptedServer().serving() as files:
        files.script("/report.csv", Reply(200, {"Content-Type": "text/csv"}, CSV))
        request = {
            "channels": ["email"],
            "recipient": {"email": f"ada+{uuid.uuid4().hex[:8]}@example.com"},
            "content": {
                "subject": "Your report",
                "text": "Attached, {{ name }}.",
                "html": '<html><body><p>Hi {{ name }}</p><a href="{{ link }}">Your order</a>'
                ' <a href="mailto:help@example.com">help</a></body></html>',
                "attachments": [
                    {"filename": "report.csv", "content_type": "text/csv", "url": f"{files.url}/report.csv"},
                    {"filename": "note.txt", "content_type": "text/plain", "content_base64": "aGk="},
                ],
            },
            "variables": {"name": "Ada", "link": SHOP},
            "tracking": {"opens": True, "clicks": True},
        }
        async with pipeline.client() as client:
            accepted = await client.post("/api/v1/notifications", json=request)
        assert accepted.status_code == 202, accepted.text
        notification_id = accepted.json()["id"]
        mail = await pipeline.wait_for_mail(notification_id)

    message = email.message_from_bytes(mail.raw, policy=email.policy.default)
    assert [(part.get_filename(), part.get_payload(decode=True)) for part in message.iter_attachments()] == [
        ("report.csv", CSV),
        ("note.txt", base64.b64decode("aGk=")),
    ]
    assert mail.html is not None
    assert 'href="mailto:help@example.com"' in mail.html
    [pixel] = re.findall(r'<img src="([^"]+)"', mail.html)
    [link] = [href for href in re.findall(r'<a href="([^"]+)"', mail.html) if not href.startswith("mailto:")]
    assert pixel.startswith(f"{pipeline.gateway}/t/o/")
    assert link.startswith(f"{pipeline.gateway}/t/c/")

    # The reader's mail client, without an API key.
    async with httpx.AsyncClient(timeout=10) as reader:
        shown = await reader.get(pixel)
        assert (shown.status_code, shown.headers["content-type"]) == (200, "image/gif")
        await pipeline.wait_for_status(notification_id, "opened")
        followed = await reader.get(link, follow_redirects=False)
        assert (followed.status_code, followed.headers["location"]) == (302, SHOP)
    view = await pipeline.wait_for_status(notification_id, "clicked")
    history = [(change["status"], change["detail"]) for change in view["history"]]
    assert ("opened", None) in history
    assert ("clicked", SHOP) in history

"""The MIME bytes the email sender hands to SMTP, read back with the standard library's modern parser."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest

from services.sender_email.mime import build_message
from shared.messages import EmailDelivery
from tests.factories import email_delivery

pytestmark = pytest.mark.unit

SENDER = "Herald <noreply@herald.local>"


def delivery(**overrides: Any) -> EmailDelivery:
    return email_delivery(**{"text": "Plain body", "html": "<p>HTML body</p>", **overrides})


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_text_and_html_become_alternatives() -> None:
    item = delivery()
    message = parse(build_message(item, SENDER))
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert text.get_content().rstrip("\n") == "Plain body"
    assert html.get_content().rstrip("\n") == "<p>HTML body</p>"


def test_headers() -> None:
    item = delivery()
    message = parse(build_message(item, SENDER))
    assert message["From"] == SENDER
    assert message["To"] == "ada@example.com"
    assert message["Subject"] == "Your order shipped"
    assert message["X-Herald-Notification-Id"] == item["notification_id"]
    assert message["Date"] is not None
    assert message["Date"].datetime is not None


def test_message_id_is_stable_per_delivery() -> None:
    item = delivery()
    first = parse(build_message(item, SENDER))
    again = parse(build_message(item, SENDER))
    assert first["Message-ID"] == f"<{item['delivery_id']}@herald>"
    assert again["Message-ID"] == first["Message-ID"]
    other = parse(build_message(delivery(), SENDER))
    assert other["Message-ID"] != first["Message-ID"]


@pytest.mark.parametrize("subject", ["Grüße aus Köln", "Заказ отправлен", "注文が発送されました ✓"])
def test_non_ascii_subject_decodes(subject: str) -> None:
    raw = build_message(delivery(subject=subject), SENDER)
    # On the wire the header is RFC 2047-encoded ASCII.
    header_block = raw.split(b"\n\n", 1)[0]
    assert subject.encode() not in header_block
    assert parse(raw)["Subject"] == subject


def test_non_ascii_bodies_survive() -> None:
    message = parse(build_message(delivery(text="Grüße 👋", html="<p>Grüße 👋</p>"), SENDER))
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert "Grüße 👋" in text.get_content()
    assert "<p>Grüße 👋</p>" in html.get_content()


def test_text_only_message_is_single_part() -> None:
    message = parse(build_message(delivery(html=None), SENDER))
    assert not message.is_multipart()
    assert message.get_content_type() == "text/plain"
    assert message.get_content().rstrip("\n") == "Plain body"


def test_html_only_message_is_single_part() -> None:
    message = parse(build_message(delivery(text=None), SENDER))
    assert not message.is_multipart()
    assert message.get_content_type() == "text/html"
    assert message.get_content().rstrip("\n") == "<p>HTML body</p>"

"""The MIME bytes the email sender hands to SMTP, read back with the standard library's modern parser."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

import pytest

from services.sender_email.mime import build_message
from shared.messages import Attachment, EmailDelivery
from tests.factories import email_delivery
from tests.factories import inline_attachment as attachment

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


# --- attachments ----------------------------------------------------------------------------------


def test_attachments_follow_the_body_in_a_mixed_message() -> None:
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 40
    raw = build_message(
        delivery(attachments=[attachment("invoice.pdf", pdf, "application/pdf"), attachment("a.txt", b"hi")]), SENDER
    )
    message = parse(raw)
    assert message.get_content_type() == "multipart/mixed"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "multipart/alternative",
        "application/pdf",
        "application/octet-stream",
    ]
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    assert text.get_content().rstrip("\n") == "Plain body"
    files = [
        (part.get_filename(), part.get_content_disposition(), part.get_content()) for part in message.iter_attachments()
    ]
    assert files == [("invoice.pdf", "attachment", pdf), ("a.txt", "attachment", b"hi")]
    # SMTP's limit is 998 characters a line; base64 is written in lines of 76.
    assert max(len(line) for line in raw.split(b"\r\n")) <= 100


def test_a_single_body_part_is_nested_under_mixed() -> None:
    message = parse(build_message(delivery(html=None, attachments=[attachment("a.bin", b"\x00\x01")]), SENDER))
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "application/octet-stream"]


@pytest.mark.parametrize(
    "filename",
    [
        "Rechnung für März.pdf",
        "請求書.pdf",
        'a "quoted" \\ name.txt',
        "x" * 200 + ".txt",
        "€" * 80 + ".txt",
        "spaces and ;semicolons=.txt",
    ],
)
def test_filenames_survive_encoding(filename: str) -> None:
    raw = build_message(delivery(attachments=[attachment(filename, b"data")]), SENDER)
    [part] = parse(raw).iter_attachments()
    assert part.get_filename() == filename
    assert part.get_param("name") == filename
    # Non-ASCII names travel RFC 2231-encoded: the headers stay ASCII.
    head = raw.split(b"\r\n\r\n--", 1)[0]
    assert head.isascii()


def test_an_attachment_not_fetched_cannot_be_built() -> None:
    unfetched: Attachment = {
        "filename": "a.pdf",
        "content_type": "application/pdf",
        "url": "https://files.example.com/a.pdf",
        "content_base64": None,
    }
    with pytest.raises(ValueError, match="not fetched"):
        build_message(delivery(attachments=[unfetched]), SENDER)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("content_base64", "not base64 at all\r\n--boundary", "base64"),
        ("content_type", "text/plain\r\nBcc: evil@example.com", "single line"),
    ],
)
def test_an_attachment_that_would_break_the_message_is_refused(field: str, value: str, error: str) -> None:
    """The request rules refuse these already; the builder does not rely on it."""
    broken: Any = {**attachment("a.txt", b"hi"), field: value}
    with pytest.raises(ValueError, match=error):
        build_message(delivery(attachments=[broken]), SENDER)

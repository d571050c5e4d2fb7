"""Building and validating notification requests: ids from idempotency keys and every validation rule."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from shared.errors import InvalidRequest
from shared.messages import NotificationRequest
from shared.requests import (
    MAX_ATTACHMENTS,
    MAX_INLINE_ATTACHMENT_BYTES,
    MAX_VARIABLES_BYTES,
    build_request,
    validate_request,
)

pytestmark = pytest.mark.unit


def email_request(**overrides: Any) -> NotificationRequest:
    """A valid email request; keyword arguments replace its building blocks."""
    arguments: dict[str, Any] = {
        "tenant_id": "acme",
        "channels": ["email"],
        "recipient": {"email": "ada@example.com"},
        "content": {"subject": "Hello {{ name }}", "text": "Hi {{ name }}", "html": None},
        "variables": {"name": "Ada"},
    }
    arguments.update(overrides)
    return build_request(**arguments)


def test_build_request_copies_fields() -> None:
    request = email_request(priority="high", metadata={"campaign": "welcome"}, idempotency_key="k-1")
    assert request["tenant_id"] == "acme"
    assert request["channels"] == ["email"]
    assert request["recipient"] == {
        "user_id": None,
        "email": "ada@example.com",
        "phone": None,
        "locale": None,
        "webhook_url": None,
    }
    assert request["content"] == {
        "subject": "Hello {{ name }}",
        "text": "Hi {{ name }}",
        "html": None,
        "attachments": [],
        "provider_templates": {},
        "template": None,
    }
    assert request["tracking"] == {"opens": False, "clicks": False}
    assert orjson.loads(request["variables_json"]) == {"name": "Ada"}
    assert request["priority"] == "high"
    assert request["metadata"] == {"campaign": "welcome"}
    assert request["idempotency_key"] == "k-1"
    assert request["created_at"].tzinfo is not None


def test_id_from_idempotency_key_is_stable_per_tenant_and_key() -> None:
    first = email_request(idempotency_key="order-42")
    again = email_request(idempotency_key="order-42")
    assert first["notification_id"] == again["notification_id"]
    assert uuid.UUID(first["notification_id"]).version == 5


def test_id_from_idempotency_key_differs_across_tenants_and_keys() -> None:
    acme = email_request(idempotency_key="order-42")["notification_id"]
    other_tenant = email_request(tenant_id="globex", idempotency_key="order-42")["notification_id"]
    other_key = email_request(idempotency_key="order-43")["notification_id"]
    assert len({acme, other_tenant, other_key}) == 3


def test_id_without_idempotency_key_is_random() -> None:
    ids = {email_request()["notification_id"] for _ in range(5)}
    assert len(ids) == 5
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_valid_request_passes() -> None:
    validate_request(email_request())


def test_html_only_body_is_enough() -> None:
    validate_request(email_request(content={"subject": "s", "text": None, "html": "<p>hi</p>"}))


def _set(path: tuple[str, ...], value: Any) -> Callable[[NotificationRequest], None]:
    def change(request: NotificationRequest) -> None:
        target: Any = request
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param(_set(("notification_id",), "not-a-uuid"), "notification_id", id="bad-uuid"),
        pytest.param(_set(("tenant_id",), ""), "tenant_id", id="empty-tenant"),
        pytest.param(_set(("channels",), []), "channels", id="no-channels"),
        pytest.param(_set(("channels",), ["email", "pigeon"]), "channels/1", id="unknown-channel-index"),
        pytest.param(_set(("recipient", "email"), None), "recipient/email", id="email-required"),
        pytest.param(_set(("recipient", "email"), "not-an-address"), "recipient/email", id="email-invalid"),
        pytest.param(_set(("content", "subject"), ""), "content/subject", id="subject-required"),
        pytest.param(_set(("content", "subject"), None), "content/subject", id="subject-none"),
        pytest.param(
            lambda r: (_set(("content", "text"), None)(r), _set(("content", "html"), None)(r)),
            "content/text",
            id="no-body",
        ),
        pytest.param(
            _set(("content", "provider_templates"), {"mailgun": "welcome"}),
            "content/provider_templates/mailgun",
            id="template-at-a-provider-without-templates",
        ),
        pytest.param(
            _set(("content", "provider_templates"), {"sendgrid": "d-1 OR 1=1"}),
            "content/provider_templates/sendgrid",
            id="template-id-malformed",
        ),
        pytest.param(_set(("variables_json",), "{not json"), "variables", id="variables-not-json"),
        pytest.param(_set(("variables_json",), "[1, 2]"), "variables", id="variables-not-object"),
        pytest.param(
            _set(("variables_json",), orjson.dumps({"v": "x" * MAX_VARIABLES_BYTES}).decode()),
            "variables",
            id="variables-too-large",
        ),
    ],
)
def test_invalid_request_names_the_field(change: Callable[[NotificationRequest], object], field: str) -> None:
    request = email_request()
    change(request)
    with pytest.raises(InvalidRequest) as caught:
        validate_request(request)
    assert caught.value.field == field
    assert caught.value.detail
    assert str(caught.value).startswith(f"{field}: ")


def test_a_sendgrid_template_is_accepted_with_fallback_content() -> None:
    request = email_request()
    request["content"]["provider_templates"] = {"sendgrid": "d-13b8f94fbcae4ec6b75270d6cb59f932"}
    validate_request(request)


def test_unknown_channel_detail_names_it() -> None:
    request = email_request(channels=["pigeon"])
    with pytest.raises(InvalidRequest, match="pigeon") as caught:
        validate_request(request)
    assert caught.value.field == "channels/0"


def test_variables_just_under_the_limit_pass() -> None:
    padding = MAX_VARIABLES_BYTES - len(orjson.dumps({"v": ""}))
    request = email_request(variables={"v": "x" * padding})
    assert len(request["variables_json"]) == MAX_VARIABLES_BYTES
    validate_request(request)


def test_variables_limit_counts_bytes_not_characters() -> None:
    """40,000 'é' are 40,008 characters of JSON but 80,008 UTF-8 bytes: over the 64 KiB limit."""
    request = email_request(variables={"v": "é" * 40_000})
    assert len(request["variables_json"]) < MAX_VARIABLES_BYTES < len(request["variables_json"].encode())
    with pytest.raises(InvalidRequest) as caught:
        validate_request(request)
    assert caught.value.field == "variables"


def sms_request(phone: str | None, text: str | None = "Your code is 1234") -> NotificationRequest:
    return build_request(tenant_id="acme", channels=["sms"], recipient={"phone": phone}, content={"text": text})


@pytest.mark.parametrize(
    ("phone", "text", "field"),
    [
        (None, "hi", "recipient/phone"),
        ("12", "hi", "recipient/phone"),
        ("+1 202 555 0199", None, "content/text"),
    ],
)
def test_sms_rules(phone: str | None, text: str | None, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(sms_request(phone, text))
    assert caught.value.field == field


def test_a_valid_sms_request_passes() -> None:
    validate_request(sms_request("+44 20 7946 0958"))


# --- attachments and tracking ---------------------------------------------------------------------

PDF = {"filename": "invoice.pdf", "content_type": "application/pdf", "url": "https://files.example.com/i.pdf"}


def inline(data: bytes, filename: str = "note.txt") -> dict[str, str]:
    return {"filename": filename, "content_type": "text/plain", "content_base64": base64.b64encode(data).decode()}


def with_attachments(*attachments: dict[str, Any]) -> NotificationRequest:
    return email_request(content={"subject": "Your invoice", "text": "Attached.", "attachments": list(attachments)})


def test_build_request_copies_attachments_and_tracking() -> None:
    request = email_request(
        content={"subject": "s", "text": "t", "attachments": [PDF, inline(b"hi")]},
        tracking={"opens": True, "clicks": False},
    )
    assert request["content"]["attachments"] == [
        {**PDF, "content_base64": None},
        {"filename": "note.txt", "content_type": "text/plain", "url": None, "content_base64": "aGk="},
    ]
    assert request["tracking"] == {"opens": True, "clicks": False}


def test_valid_attachments_pass() -> None:
    validate_request(with_attachments(PDF, inline(b"%PDF-1.7"), {**PDF, "url": "http://files.example.com/x"}))


def test_inline_attachments_up_to_the_limit_pass() -> None:
    half = MAX_INLINE_ATTACHMENT_BYTES // 2
    validate_request(with_attachments(inline(b"a" * half, "a.txt"), inline(b"b" * half, "b.txt")))


@pytest.mark.parametrize(
    ("attachment", "field", "detail"),
    [
        pytest.param({**PDF, "content_base64": "aGk="}, "content/attachments/0", "exactly one", id="both"),
        pytest.param({**PDF, "url": None}, "content/attachments/0", "exactly one", id="neither"),
        pytest.param({**PDF, "filename": ""}, "content/attachments/0/filename", "required", id="no-filename"),
        pytest.param({**PDF, "filename": "x" * 256}, "content/attachments/0/filename", "255", id="long-filename"),
        pytest.param({**PDF, "filename": "../etc/passwd"}, "content/attachments/0/filename", "path", id="slash"),
        pytest.param({**PDF, "filename": "a\\b.pdf"}, "content/attachments/0/filename", "path", id="backslash"),
        pytest.param({**PDF, "filename": ".."}, "content/attachments/0/filename", "path", id="dot-dot"),
        pytest.param({**PDF, "filename": "a\r\nBcc: x.pdf"}, "content/attachments/0/filename", "control", id="crlf"),
        pytest.param(
            {**PDF, "filename": "invoice\u202efdp.exe"}, "content/attachments/0/filename", "control", id="rtl-override"
        ),
        pytest.param(
            {**PDF, "content_type": "pdf"}, "content/attachments/0/content_type", "type/subtype", id="no-slash"
        ),
        pytest.param(
            {**PDF, "content_type": "text/plain; charset=utf-8"},
            "content/attachments/0/content_type",
            "type/subtype",
            id="parameters",
        ),
        pytest.param(
            {**PDF, "content_type": "text/plain\r\nBcc: x"},
            "content/attachments/0/content_type",
            "type",
            id="crlf-type",
        ),
        pytest.param({**PDF, "url": "ftp://files.example.com/i.pdf"}, "content/attachments/0/url", "http", id="ftp"),
        pytest.param({**PDF, "url": "/i.pdf"}, "content/attachments/0/url", "absolute", id="relative"),
        pytest.param({**PDF, "url": "https://[::1/i.pdf"}, "content/attachments/0/url", "absolute", id="bad-host"),
        pytest.param({**PDF, "url": "https://x.io:99999/"}, "content/attachments/0/url", "absolute", id="bad-port"),
        pytest.param(
            {**PDF, "url": "https://u:p@example.com/i"}, "content/attachments/0/url", "credentials", id="creds"
        ),
        pytest.param(
            {**PDF, "url": "https://example.com/" + "a" * 2048}, "content/attachments/0/url", "2048", id="long-url"
        ),
        pytest.param(
            {**inline(b""), "content_base64": "not base64!"},
            "content/attachments/0/content_base64",
            "base64",
            id="bad-base64",
        ),
        pytest.param(
            {**inline(b""), "content_base64": "aGk"}, "content/attachments/0/content_base64", "base64", id="unpadded"
        ),
        pytest.param(
            {**inline(b""), "content_base64": "aGVs\nbG8="},
            "content/attachments/0/content_base64",
            "base64",
            id="line-break",
        ),
    ],
)
def test_invalid_attachment_names_the_field(attachment: dict[str, Any], field: str, detail: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(with_attachments(attachment))
    assert caught.value.field == field
    assert detail in caught.value.detail


def test_at_most_ten_attachments() -> None:
    validate_request(with_attachments(*[PDF] * MAX_ATTACHMENTS))
    with pytest.raises(InvalidRequest) as caught:
        validate_request(with_attachments(*[PDF] * (MAX_ATTACHMENTS + 1)))
    assert caught.value.field == "content/attachments"


def test_inline_bytes_are_counted_across_attachments() -> None:
    """Each fits alone; the one that takes the total past 256 KiB is named, and the detail says why."""
    half = MAX_INLINE_ATTACHMENT_BYTES // 2
    request = with_attachments(inline(b"a" * half, "a"), PDF, inline(b"b" * half, "b"), inline(b"c", "c"))
    with pytest.raises(InvalidRequest) as caught:
        validate_request(request)
    assert caught.value.field == "content/attachments/3/content_base64"
    assert "256 KiB" in caught.value.detail
    assert "Kafka" in caught.value.detail
    assert "url" in caught.value.detail


def test_a_huge_inline_attachment_is_refused_by_its_length() -> None:
    request = with_attachments({**inline(b""), "content_base64": "A" * (4 * MAX_INLINE_ATTACHMENT_BYTES)})
    with pytest.raises(InvalidRequest, match="256 KiB"):
        validate_request(request)


def test_attachments_are_checked_for_every_channel() -> None:
    """Only email sends them, but a bad one is refused on any channel: every request must fit in Kafka."""
    request = build_request(
        tenant_id="acme",
        channels=["sms"],
        recipient={"phone": "+44 20 7946 0958"},
        content={"text": "hi", "attachments": [{**PDF, "url": None}]},
    )
    with pytest.raises(InvalidRequest) as caught:
        validate_request(request)
    assert caught.value.field == "content/attachments/0"

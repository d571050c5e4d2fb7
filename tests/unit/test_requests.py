"""Building and validating notification requests: ids from idempotency keys and every validation rule."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from shared.errors import InvalidRequest
from shared.messages import NotificationRequest, Recipient
from shared.requests import (
    MAX_ATTACHMENTS,
    MAX_DEDUP_WINDOW_S,
    MAX_FILENAME_CHARACTERS,
    MAX_INLINE_ATTACHMENT_BYTES,
    MAX_TEMPLATE_VERSION,
    MAX_URL_CHARACTERS,
    MAX_VARIABLES_BYTES,
    MIN_DEDUP_WINDOW_S,
    build_request,
    recipient_key,
    recipient_of,
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


def test_with_an_idempotency_key_only_the_id_it_gives_is_valid() -> None:
    request = email_request(idempotency_key="order-42")
    validate_request(request)
    chosen = {**request, "notification_id": str(uuid.uuid4())}
    with pytest.raises(InvalidRequest, match=f"must be the id the key gives, {request['notification_id']}") as error:
        validate_request(chosen)  # type: ignore[arg-type]
    assert error.value.field == "notification_id"
    # The README's worked example, so a producer in any language can check its own derivation.
    worked = email_request(tenant_id="dev", idempotency_key="welcome-ada-1")
    assert worked["notification_id"] == "6589297e-ce10-5927-8686-aa102a7a972d"


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
    ("change", "field", "detail"),
    [
        pytest.param(_set(("notification_id",), "not-a-uuid"), "notification_id", "must be a UUID", id="bad-uuid"),
        pytest.param(_set(("tenant_id",), ""), "tenant_id", "must not be empty", id="empty-tenant"),
        pytest.param(_set(("channels",), []), "channels", "name at least one channel", id="no-channels"),
        pytest.param(
            _set(("channels",), ["email", "pigeon"]),
            "channels/1",
            "unknown channel 'pigeon'; supported: email, sms, push, webhook",
            id="unknown-channel-index",
        ),
        pytest.param(
            _set(("recipient", "email"), None),
            "recipient/email",
            "required for the email channel (or a recipient.user_id)",
            id="email-required",
        ),
        pytest.param(
            _set(("recipient", "email"), "not-an-address"),
            "recipient/email",
            "An email address must have an @-sign.",
            id="email-invalid",
        ),
        pytest.param(
            _set(("content", "subject"), ""), "content/subject", "required for the email channel", id="subject-required"
        ),
        pytest.param(
            _set(("content", "subject"), None), "content/subject", "required for the email channel", id="subject-none"
        ),
        pytest.param(
            lambda r: (_set(("content", "text"), None)(r), _set(("content", "html"), None)(r)),
            "content/text",
            "give a text or an html body",
            id="no-body",
        ),
        pytest.param(
            _set(("content", "provider_templates"), {"mailgun": "welcome"}),
            "content/provider_templates/mailgun",
            "no stored templates at 'mailgun'; supported: sendgrid",
            id="template-at-a-provider-without-templates",
        ),
        pytest.param(
            _set(("content", "provider_templates"), {"sendgrid": "d-1 OR 1=1"}),
            "content/provider_templates/sendgrid",
            "a template id is 1 to 64 letters, digits, '-' or '_'",
            id="template-id-malformed",
        ),
        pytest.param(_set(("variables_json",), "{not json"), "variables", "not valid JSON", id="variables-not-json"),
        pytest.param(
            _set(("variables_json",), "[1, 2]"), "variables", "must be a JSON object", id="variables-not-object"
        ),
        pytest.param(
            _set(("variables_json",), orjson.dumps({"v": "x" * MAX_VARIABLES_BYTES}).decode()),
            "variables",
            "larger than 65536 bytes",
            id="variables-too-large",
        ),
        pytest.param(_set(("dedup", "window_s"), 0), "dedup/window_s", "from 1 to 604800 seconds", id="window-zero"),
        pytest.param(
            _set(("dedup", "window_s"), MAX_DEDUP_WINDOW_S + 1),
            "dedup/window_s",
            "from 1 to 604800 seconds",
            id="window-over-a-week",
        ),
    ],
)
def test_invalid_request_names_the_field(
    change: Callable[[NotificationRequest], object], field: str, detail: str
) -> None:
    request = email_request()
    change(request)
    with pytest.raises(InvalidRequest) as caught:
        validate_request(request)
    assert (caught.value.field, caught.value.detail) == (field, detail)
    assert str(caught.value) == f"{field}: {detail}"


@pytest.mark.parametrize("window_s", [None, MIN_DEDUP_WINDOW_S, 3600, MAX_DEDUP_WINDOW_S])
def test_dedup_windows_from_one_second_to_a_week_pass(window_s: int | None) -> None:
    validate_request(email_request(idempotency_key="k-1", dedup={"window_s": window_s}))


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
    ("phone", "text", "field", "detail"),
    [
        (None, "hi", "recipient/phone", "required for the sms channel (or a recipient.user_id)"),
        ("12", "hi", "recipient/phone", "not a phone number: (0) Missing or invalid default region."),
        ("+1 202 555 0199", None, "content/text", "required for the sms channel (the message body)"),
    ],
)
def test_sms_rules(phone: str | None, text: str | None, field: str, detail: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(sms_request(phone, text))
    assert (caught.value.field, caught.value.detail) == (field, detail)


def test_an_sms_to_a_user_takes_the_number_from_their_profile() -> None:
    validate_request(
        build_request(tenant_id="acme", channels=["sms"], recipient={"user_id": "u-1"}, content={"text": "hi"})
    )


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


EXACTLY_ONE = "give exactly one of url and content_base64"
FILENAME_RULE = "required, at most 255 characters"
NO_PATH = "a file name, without a path"
NO_CONTROL = "must not contain control or formatting characters"
MEDIA_TYPE = "must be a media type, type/subtype (application/pdf)"
HTTP_URL = "must be an absolute http(s) URL"
NO_CREDENTIALS = "must not carry credentials"
NOT_BASE64 = "not base64 (RFC 4648, standard alphabet, padded, no line breaks)"
TOO_LARGE = (
    "inline attachments may total 256 KiB: they travel in Kafka records, which must stay small; "
    "give larger files by url"
)


@pytest.mark.parametrize(
    ("attachment", "field", "detail"),
    [
        pytest.param({**PDF, "content_base64": "aGk="}, "content/attachments/0", EXACTLY_ONE, id="both"),
        pytest.param({**PDF, "url": None}, "content/attachments/0", EXACTLY_ONE, id="neither"),
        pytest.param({**PDF, "filename": ""}, "content/attachments/0/filename", FILENAME_RULE, id="no-filename"),
        pytest.param(
            {**PDF, "filename": "x" * 256}, "content/attachments/0/filename", FILENAME_RULE, id="long-filename"
        ),
        pytest.param({**PDF, "filename": "../etc/passwd"}, "content/attachments/0/filename", NO_PATH, id="slash"),
        pytest.param({**PDF, "filename": "a\\b.pdf"}, "content/attachments/0/filename", NO_PATH, id="backslash"),
        pytest.param({**PDF, "filename": ".."}, "content/attachments/0/filename", NO_PATH, id="dot-dot"),
        pytest.param({**PDF, "filename": "."}, "content/attachments/0/filename", NO_PATH, id="dot"),
        pytest.param({**PDF, "filename": "a\r\nBcc: x.pdf"}, "content/attachments/0/filename", NO_CONTROL, id="crlf"),
        pytest.param(
            {**PDF, "filename": "invoice\u202efdp.exe"}, "content/attachments/0/filename", NO_CONTROL, id="rtl-override"
        ),
        pytest.param({**PDF, "content_type": "pdf"}, "content/attachments/0/content_type", MEDIA_TYPE, id="no-slash"),
        pytest.param(
            {**PDF, "content_type": "text/plain; charset=utf-8"},
            "content/attachments/0/content_type",
            MEDIA_TYPE,
            id="parameters",
        ),
        pytest.param(
            {**PDF, "content_type": "text/plain\r\nBcc: x"},
            "content/attachments/0/content_type",
            MEDIA_TYPE,
            id="crlf-type",
        ),
        pytest.param({**PDF, "url": "ftp://files.example.com/i.pdf"}, "content/attachments/0/url", HTTP_URL, id="ftp"),
        pytest.param({**PDF, "url": "/i.pdf"}, "content/attachments/0/url", HTTP_URL, id="relative"),
        pytest.param({**PDF, "url": "https://[::1/i.pdf"}, "content/attachments/0/url", HTTP_URL, id="bad-host"),
        pytest.param({**PDF, "url": "https://x.io:99999/"}, "content/attachments/0/url", HTTP_URL, id="bad-port"),
        pytest.param(
            {**PDF, "url": "https://u:p@example.com/i"}, "content/attachments/0/url", NO_CREDENTIALS, id="creds"
        ),
        pytest.param(
            {**PDF, "url": "https://u@example.com/i"}, "content/attachments/0/url", NO_CREDENTIALS, id="user-only"
        ),
        pytest.param(
            {**PDF, "url": "https://:p@example.com/i"}, "content/attachments/0/url", NO_CREDENTIALS, id="password-only"
        ),
        pytest.param(
            {"filename": "x.pdf", "url": PDF["url"]}, "content/attachments/0/content_type", MEDIA_TYPE, id="no-type"
        ),
        pytest.param(
            {"content_type": "application/pdf", "url": PDF["url"]},
            "content/attachments/0/filename",
            FILENAME_RULE,
            id="no-filename-field",
        ),
        pytest.param(
            {**PDF, "url": "https://example.com/" + "a" * 2048},
            "content/attachments/0/url",
            "longer than 2048 characters",
            id="long-url",
        ),
        pytest.param(
            {**inline(b""), "content_base64": "not base64!"},
            "content/attachments/0/content_base64",
            NOT_BASE64,
            id="bad-base64",
        ),
        pytest.param(
            {**inline(b""), "content_base64": "aGk"}, "content/attachments/0/content_base64", NOT_BASE64, id="unpadded"
        ),
        pytest.param(
            {**inline(b""), "content_base64": "aGVs\nbG8="},
            "content/attachments/0/content_base64",
            NOT_BASE64,
            id="line-break",
        ),
    ],
)
def test_invalid_attachment_names_the_field(attachment: dict[str, Any], field: str, detail: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(with_attachments(attachment))
    assert (caught.value.field, caught.value.detail) == (field, detail)


def test_at_most_ten_attachments() -> None:
    validate_request(with_attachments(*[PDF] * MAX_ATTACHMENTS))
    with pytest.raises(InvalidRequest) as caught:
        validate_request(with_attachments(*[PDF] * (MAX_ATTACHMENTS + 1)))
    assert (caught.value.field, caught.value.detail) == ("content/attachments", "at most 10 attachments")


def test_a_filename_and_a_url_of_exactly_the_longest_length_pass() -> None:
    url = "https://files.example.com/" + "a" * (MAX_URL_CHARACTERS - len("https://files.example.com/"))
    assert len(url) == MAX_URL_CHARACTERS
    validate_request(with_attachments({**PDF, "filename": "x" * MAX_FILENAME_CHARACTERS, "url": url}))


def test_an_inline_attachment_of_exactly_the_maximum_passes() -> None:
    validate_request(with_attachments(inline(b"a" * MAX_INLINE_ATTACHMENT_BYTES)))
    with pytest.raises(InvalidRequest) as caught:
        validate_request(with_attachments(inline(b"a" * (MAX_INLINE_ATTACHMENT_BYTES + 1))))
    assert (caught.value.field, caught.value.detail) == ("content/attachments/0/content_base64", TOO_LARGE)


def test_an_empty_inline_attachment_takes_nothing_from_the_total() -> None:
    validate_request(with_attachments(inline(b"", "empty.txt"), inline(b"a" * MAX_INLINE_ATTACHMENT_BYTES)))


def test_a_string_longer_than_what_is_left_is_refused_by_its_length_before_decoding() -> None:
    """After a 1-byte attachment 262,143 bytes are left, which base64 spells in 349,524 characters: one
    more is refused as too large, not decoded (which would call it "not base64", being no multiple of 4)."""
    left = MAX_INLINE_ATTACHMENT_BYTES - 1
    longest = (left + 2) // 3 * 4
    assert longest == 349_524
    request = with_attachments(inline(b"a", "a.txt"), {**inline(b""), "content_base64": "A" * (longest + 1)})
    with pytest.raises(InvalidRequest) as caught:
        validate_request(request)
    assert (caught.value.field, caught.value.detail) == ("content/attachments/1/content_base64", TOO_LARGE)


def test_inline_bytes_are_counted_across_attachments() -> None:
    """Each fits alone; the one that takes the total past 256 KiB is named, and the detail says why."""
    half = MAX_INLINE_ATTACHMENT_BYTES // 2
    request = with_attachments(inline(b"a" * half, "a"), PDF, inline(b"b" * half, "b"), inline(b"c", "c"))
    with pytest.raises(InvalidRequest) as caught:
        validate_request(request)
    assert (caught.value.field, caught.value.detail) == ("content/attachments/3/content_base64", TOO_LARGE)


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


# --- what build_request keeps ---------------------------------------------------------------------


def test_build_request_keeps_every_recipient_field_and_option() -> None:
    request = build_request(
        tenant_id="acme",
        channels=["email", "webhook"],
        recipient={
            "user_id": "u-1",
            "email": "ada@example.com",
            "phone": "+442079460958",
            "locale": "fr-CA",
            "webhook_url": "https://hooks.example.com/herald",
        },
        content={"template": {"id": "welcome", "version": 3}, "provider_templates": {"sendgrid": "d-1"}},
        tracking={"opens": False, "clicks": True},
        dedup={"window_s": 600, "bypass": True},
    )
    assert request["recipient"] == {
        "user_id": "u-1",
        "email": "ada@example.com",
        "phone": "+442079460958",
        "locale": "fr-CA",
        "webhook_url": "https://hooks.example.com/herald",
    }
    assert request["content"]["template"] == {"id": "welcome", "version": 3}
    assert request["content"]["provider_templates"] == {"sendgrid": "d-1"}
    assert request["tracking"] == {"opens": False, "clicks": True}
    assert request["dedup"] == {"window_s": 600, "bypass": True}


def test_build_request_defaults() -> None:
    request = build_request(
        tenant_id="acme",
        channels=["email"],
        recipient={"email": "ada@example.com"},
        content={"template": {"version": None}, "attachments": [{"url": PDF["url"]}]},
    )
    assert request["content"]["template"] == {"id": "", "version": None}
    assert request["content"]["attachments"] == [
        {"filename": "", "content_type": "", "url": PDF["url"], "content_base64": None}
    ]
    assert request["dedup"] == {"window_s": None, "bypass": False}
    assert request["tracking"] == {"opens": False, "clicks": False}


# --- who a notification is for --------------------------------------------------------------------


def person(user_id: str | None = None, email: str | None = None, phone: str | None = None) -> Recipient:
    return {"user_id": user_id, "email": email, "phone": phone, "locale": None, "webhook_url": None}


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        (person("u-1", "ada@example.com", "+442079460958"), "u-1"),
        (person(None, "ada@example.com", "+442079460958"), "ada@example.com"),
        (person(None, "ada@example.com"), "ada@example.com"),
        (person(None, None, "+442079460958"), "+442079460958"),
        (person("u-1"), "u-1"),
        (person(), None),
    ],
)
def test_a_notification_is_for_the_user_else_the_address_else_the_phone(
    recipient: Recipient, expected: str | None
) -> None:
    assert recipient_of(recipient) == expected


def test_one_persons_notifications_share_a_key_within_a_tenant() -> None:
    ada = person("u-1", "ada@example.com")
    assert recipient_key("acme", ada, "n-1") == recipient_key("acme", person("u-1", "other@example.com"), "n-2")
    assert recipient_key("acme", ada, "n-1") == b"acme:u-1"
    assert recipient_key("globex", ada, "n-1") == b"globex:u-1"


def test_a_notification_for_nobody_in_particular_is_keyed_by_its_id() -> None:
    assert recipient_key("acme", person(), "n-1") == b"acme:n-1"


# --- stored templates -----------------------------------------------------------------------------

TEMPLATE_ID_RULE = "a template id is 1 to 64 letters, digits, '-' or '_'"


def templated(
    template: dict[str, Any], content: dict[str, str] | None = None, channels: tuple[str, ...] = ("email",)
) -> NotificationRequest:
    return build_request(
        tenant_id="acme",
        channels=list(channels),
        recipient={"user_id": "u-1", "email": "ada@example.com", "phone": "+442079460958"},
        content={"template": template, **(content or {})},
    )


@pytest.mark.parametrize("version", [None, 1, 7, MAX_TEMPLATE_VERSION])
def test_a_stored_template_replaces_the_inline_content_on_every_channel(version: int | None) -> None:
    """No subject, text or html needed: the template has them (whether it does is looked up later)."""
    validate_request(templated({"id": "welcome", "version": version}, channels=("email", "sms", "push")))


@pytest.mark.parametrize(
    ("template", "content", "field", "detail"),
    [
        ({"id": "welcome", "version": 0}, {}, "content/template/version", "versions are numbered from 1 to 2147483647"),
        (
            {"id": "welcome", "version": MAX_TEMPLATE_VERSION + 1},
            {},
            "content/template/version",
            "versions are numbered from 1 to 2147483647",
        ),
        ({"version": 1}, {}, "content/template/id", TEMPLATE_ID_RULE),
        ({"id": "we lcome"}, {}, "content/template/id", TEMPLATE_ID_RULE),
        ({"id": "x" * 65}, {}, "content/template/id", TEMPLATE_ID_RULE),
        *(
            (
                {"id": "welcome"},
                {part: "inline"},
                "content/template",
                "give a stored template or inline subject, text and html, not both",
            )
            for part in ("subject", "text", "html")
        ),
    ],
)
def test_a_stored_template_is_refused(
    template: dict[str, Any], content: dict[str, str], field: str, detail: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(templated(template, content))
    assert (caught.value.field, caught.value.detail) == (field, detail)


# --- webhook and push -----------------------------------------------------------------------------


def webhook_request(url: str | None) -> NotificationRequest:
    return build_request(tenant_id="acme", channels=["webhook"], recipient={"webhook_url": url}, content={"text": "hi"})


@pytest.mark.parametrize("url", ["https://hooks.example.com/herald", "http://10.0.0.5:8080/in?x=1"])
def test_a_webhook_request_with_an_http_url_passes(url: str) -> None:
    validate_request(webhook_request(url))


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        (None, "required for the webhook channel"),
        ("", "required for the webhook channel"),
        ("ftp://hooks.example.com/in", HTTP_URL),
        ("hooks.example.com/in", HTTP_URL),
        ("https://hooks.example.com:0x50/in", HTTP_URL),
        ("https://hook@hooks.example.com/in", NO_CREDENTIALS),
    ],
)
def test_a_webhook_request_needs_an_http_url_without_credentials(url: str | None, detail: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(webhook_request(url))
    assert (caught.value.field, caught.value.detail) == ("recipient/webhook_url", detail)


def push_request(user_id: str | None, text: str | None = "Your order shipped") -> NotificationRequest:
    return build_request(tenant_id="acme", channels=["push"], recipient={"user_id": user_id}, content={"text": text})


def test_a_push_request_to_a_user_with_a_text_passes() -> None:
    validate_request(push_request("u-1"))


@pytest.mark.parametrize(
    ("user_id", "text", "field", "detail"),
    [
        (None, "hi", "recipient/user_id", "required for the push channel (its devices are registered by user)"),
        ("", "hi", "recipient/user_id", "required for the push channel (its devices are registered by user)"),
        ("u-1", None, "content/text", "required for the push channel (the notification body)"),
        ("u-1", "", "content/text", "required for the push channel (the notification body)"),
    ],
)
def test_push_rules(user_id: str | None, text: str | None, field: str, detail: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(push_request(user_id, text))
    assert (caught.value.field, caught.value.detail) == (field, detail)

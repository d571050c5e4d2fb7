"""Building and validating notification requests: ids from idempotency keys and every validation rule."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from shared.errors import InvalidRequest
from shared.messages import NotificationRequest
from shared.requests import MAX_VARIABLES_BYTES, build_request, validate_request

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
    assert request["content"] == {"subject": "Hello {{ name }}", "text": "Hi {{ name }}", "html": None}
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

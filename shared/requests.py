"""Building and validating notification requests: one set of rules for HTTP and Kafka callers.

The gateway, the producer client and ingest all go through these functions, so a request that the
gateway accepts is one that ingest accepts, and an upstream service producing straight to Kafka
gets the same rules (its bad requests go to the DLQ and are marked ``rejected``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
from email_validator import EmailNotValidError, validate_email

from shared.errors import InvalidRequest
from shared.kafka.records import message_key
from shared.messages import Content, NotificationRequest, Priority, Recipient
from shared.phone import normalize_e164
from shared.topics import CHANNELS

# Fixed namespace for ids derived from idempotency keys: the same tenant and key give the same id.
IDEMPOTENCY_NAMESPACE = uuid.UUID("5f0c6a4e-8d0e-4c36-9a53-2a8f1f7b9c11")
MAX_VARIABLES_BYTES = 64 * 1024


def notification_id_for(tenant_id: str, idempotency_key: str | None) -> str:
    """A new random id, or the id derived from the tenant's idempotency key."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{tenant_id}\x00{idempotency_key}"))


def recipient_key(tenant_id: str, recipient: Recipient, notification_id: str) -> bytes:
    """The Kafka key of a notification: one person's notifications share a partition and stay in order."""
    person = recipient["user_id"] or recipient["email"] or recipient["phone"] or notification_id
    return message_key(tenant_id, person)


def build_request(
    *,
    tenant_id: str,
    channels: Sequence[str],
    recipient: Mapping[str, str | None],
    content: Mapping[str, str | None],
    variables: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    priority: Priority = "normal",
    metadata: Mapping[str, str] | None = None,
    created_at: datetime | None = None,
) -> NotificationRequest:
    """Assemble a :class:`NotificationRequest` record (not yet validated)."""
    return {
        "notification_id": notification_id_for(tenant_id, idempotency_key),
        "tenant_id": tenant_id,
        "idempotency_key": idempotency_key,
        "created_at": created_at or datetime.now(UTC),
        "priority": priority,
        "channels": list(channels),
        "recipient": Recipient(
            user_id=recipient.get("user_id"),
            email=recipient.get("email"),
            phone=recipient.get("phone"),
            locale=recipient.get("locale"),
            webhook_url=recipient.get("webhook_url"),
        ),
        "content": Content(subject=content.get("subject"), text=content.get("text"), html=content.get("html")),
        "variables_json": orjson.dumps(dict(variables or {})).decode(),
        "metadata": dict(metadata or {}),
    }


def validate_request(request: NotificationRequest) -> None:
    """Raise :class:`InvalidRequest` naming the first field that makes ``request`` impossible to send."""
    try:
        uuid.UUID(request["notification_id"])
    except ValueError:
        raise InvalidRequest("notification_id", "must be a UUID") from None
    if not request["tenant_id"]:
        raise InvalidRequest("tenant_id", "must not be empty")
    if not request["channels"]:
        raise InvalidRequest("channels", "name at least one channel")
    for index, channel in enumerate(request["channels"]):
        if channel not in CHANNELS:
            raise InvalidRequest(f"channels/{index}", f"unknown channel {channel!r}; supported: {', '.join(CHANNELS)}")
    if "email" in request["channels"]:
        _validate_email_request(request)
    if "sms" in request["channels"]:
        _validate_sms_request(request)
    if "webhook" in request["channels"]:
        _validate_webhook_request(request)
    if len(request["variables_json"].encode()) > MAX_VARIABLES_BYTES:
        raise InvalidRequest("variables", f"larger than {MAX_VARIABLES_BYTES} bytes")
    try:
        variables = orjson.loads(request["variables_json"])
    except orjson.JSONDecodeError:
        raise InvalidRequest("variables", "not valid JSON") from None
    if not isinstance(variables, dict):
        raise InvalidRequest("variables", "must be a JSON object")


def _validate_email_request(request: NotificationRequest) -> None:
    address = request["recipient"]["email"]
    if not address:
        raise InvalidRequest("recipient/email", "required for the email channel")
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidRequest("recipient/email", str(error)) from None
    content = request["content"]
    if not content["subject"]:
        raise InvalidRequest("content/subject", "required for the email channel")
    if not content["text"] and not content["html"]:
        raise InvalidRequest("content/text", "give a text or an html body")


def _validate_sms_request(request: NotificationRequest) -> None:
    phone = request["recipient"]["phone"]
    if not phone:
        raise InvalidRequest("recipient/phone", "required for the sms channel")
    normalize_e164(phone)
    if not request["content"]["text"]:
        raise InvalidRequest("content/text", "required for the sms channel (the message body)")


def _validate_webhook_request(request: NotificationRequest) -> None:
    url = request["recipient"]["webhook_url"]
    if not url:
        raise InvalidRequest("recipient/webhook_url", "required for the webhook channel")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequest("recipient/webhook_url", "must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise InvalidRequest("recipient/webhook_url", "must not carry credentials")

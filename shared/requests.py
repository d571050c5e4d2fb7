"""Building and validating notification requests: one set of rules for HTTP and Kafka callers.

The gateway, the producer client and ingest all go through these functions, so a request that the
gateway accepts is one that ingest accepts, and an upstream service producing straight to Kafka
gets the same rules (its bad requests go to the DLQ and are marked ``rejected``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
from email_validator import EmailNotValidError, validate_email

from shared.errors import InvalidRequest
from shared.kafka.records import SIGNATURE, Produce, headers_for, message_key
from shared.messages import (
    NOTIFICATION_REQUEST,
    Attachment,
    Content,
    Dedup,
    NotificationRequest,
    Priority,
    Recipient,
    Recurrence,
    TemplateRef,
    Tracking,
)
from shared.phone import normalize_e164
from shared.producer_keys import ProducerKey
from shared.schedule import DEFAULT_MIN_INTERVAL, validate_schedule
from shared.topics import CHANNELS

# Fixed namespace for ids derived from idempotency keys: the same tenant and key give the same id.
IDEMPOTENCY_NAMESPACE = uuid.UUID("5f0c6a4e-8d0e-4c36-9a53-2a8f1f7b9c11")
MAX_VARIABLES_BYTES = 64 * 1024
MAX_ATTACHMENTS = 10
# Inline attachments travel inside Kafka records (request, routable, delivery), which must stay small.
MAX_INLINE_ATTACHMENT_BYTES = 256 * 1024
MAX_FILENAME_CHARACTERS = 255
MAX_URL_CHARACTERS = 2048
# Template versions are Postgres integers.
MAX_TEMPLATE_VERSION = 2**31 - 1
# RFC 6838 type/subtype names, without parameters (they would end up in a MIME header).
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
# Control, format (e.g. right-to-left override: "invoice\u202efdp.exe") and line/paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})

# Providers whose own stored templates a request may name (content.provider_templates).
TEMPLATE_PROVIDERS = ("sendgrid",)
_TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Bounds of a de-duplication window (a request's dedup.window_s, ingest's per-type windows): at most a
# week, as long as the senders remember a delivered id, so no window outlives what a key can promise.
MIN_DEDUP_WINDOW_S = 1
MAX_DEDUP_WINDOW_S = 7 * 86_400


def notification_id_for(tenant_id: str, idempotency_key: str | None) -> str:
    """A new random id, or the id derived from the tenant's idempotency key."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{tenant_id}\x00{idempotency_key}"))


def recipient_of(recipient: Recipient) -> str | None:
    """Who a notification is for, as routing sees it: the user id, else the email address, else the phone."""
    return recipient["user_id"] or recipient["email"] or recipient["phone"]


def recipient_key(tenant_id: str, recipient: Recipient, notification_id: str) -> bytes:
    """The Kafka key of a notification: one person's notifications share a partition and stay in order.

    It holds the person in clear (an address is PII): store :class:`shared.storage.recipient_index.RecipientIndex`'s
    hash instead.
    """
    return message_key(tenant_id, recipient_of(recipient) or notification_id)


def request_record(
    request: NotificationRequest, topic: str, traceparent: bytes | None, signer: ProducerKey | None
) -> Produce:
    """The Kafka record of ``request``: keyed by recipient, with its headers, signed by ``signer`` (a tenant's
    producer key, or Herald's internal one) unless None."""
    value = NOTIFICATION_REQUEST.encode(request)
    headers = list(headers_for(request["tenant_id"], "notification_request", traceparent))
    if signer is not None:
        headers.append((SIGNATURE, signer.sign(value)))
    key = recipient_key(request["tenant_id"], request["recipient"], request["notification_id"])
    return Produce(topic, value, key=key, headers=tuple(headers))


def build_request(
    *,
    tenant_id: str,
    channels: Sequence[str],
    recipient: Mapping[str, str | None],
    content: Mapping[str, Any],
    variables: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    priority: Priority = "normal",
    metadata: Mapping[str, str] | None = None,
    created_at: datetime | None = None,
    tracking: Mapping[str, bool] | None = None,
    send_at: datetime | None = None,
    timezone: str | None = None,
    recurrence: Mapping[str, Any] | None = None,
    dedup: Mapping[str, Any] | None = None,
) -> NotificationRequest:
    """Assemble a :class:`NotificationRequest` record (not yet validated).

    ``content`` has ``subject``, ``text``, ``html``, ``attachments`` (mappings with ``filename``,
    ``content_type`` and ``url`` or ``content_base64``) and ``provider_templates`` (provider name ->
    the id of a template stored at that provider) or ``template`` (``id`` and ``version``, None for the
    latest: a template stored in Herald, in place of subject, text and html); ``tracking`` has ``opens`` and ``clicks``;
    ``send_at`` holds it back until then; ``recurrence`` (``cron``, ``until``) repeats it, evaluated in
    ``timezone``; ``dedup`` has ``window_s`` (how long a repeat of the idempotency key is dropped)
    and ``bypass`` (never dropped).
    """
    tracking = tracking or {}
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
        "content": Content(
            subject=content.get("subject"),
            text=content.get("text"),
            html=content.get("html"),
            attachments=[
                Attachment(
                    filename=attachment.get("filename") or "",
                    content_type=attachment.get("content_type") or "",
                    url=attachment.get("url"),
                    content_base64=attachment.get("content_base64"),
                )
                for attachment in content.get("attachments") or ()
            ],
            provider_templates=dict(content.get("provider_templates") or {}),
            template=_template_ref(content.get("template")),
        ),
        "variables_json": orjson.dumps(dict(variables or {})).decode(),
        "metadata": dict(metadata or {}),
        "tracking": Tracking(opens=bool(tracking.get("opens")), clicks=bool(tracking.get("clicks"))),
        "send_at": send_at,
        "timezone": timezone,
        "recurrence": Recurrence(cron=recurrence["cron"], until=recurrence.get("until")) if recurrence else None,
        "dedup": Dedup(window_s=(dedup or {}).get("window_s"), bypass=bool((dedup or {}).get("bypass"))),
    }


def _template_ref(template: Mapping[str, Any] | None) -> TemplateRef | None:
    if template is None:
        return None
    return TemplateRef(id=template.get("id") or "", version=template.get("version"))


def validate_request(
    request: NotificationRequest, *, min_recurrence_interval: timedelta = DEFAULT_MIN_INTERVAL
) -> None:
    """Raise :class:`InvalidRequest` naming the first field that makes ``request`` impossible to send
    (a recurrence's occurrences may come no closer than ``min_recurrence_interval``)."""
    try:
        uuid.UUID(request["notification_id"])
    except ValueError:
        raise InvalidRequest("notification_id", "must be a UUID") from None
    if not request["tenant_id"]:
        raise InvalidRequest("tenant_id", "must not be empty")
    key = request["idempotency_key"]
    if key is not None and request["notification_id"] != notification_id_for(request["tenant_id"], key):
        # One rule on both doors: whichever door a key comes through, it names the same notification.
        raise InvalidRequest(
            "notification_id",
            f"with an idempotency key it must be the id the key gives, {notification_id_for(request['tenant_id'], key)}"
            " (uuid5 of the tenant and the key: schemas/README.md, 'Notification ids')",
        )
    if not request["channels"]:
        raise InvalidRequest("channels", "name at least one channel")
    for index, channel in enumerate(request["channels"]):
        if channel not in CHANNELS:
            raise InvalidRequest(f"channels/{index}", f"unknown channel {channel!r}; supported: {', '.join(CHANNELS)}")
    _validate_template(request["content"])
    if "email" in request["channels"]:
        _validate_email_request(request)
    if "sms" in request["channels"]:
        _validate_sms_request(request)
    if "webhook" in request["channels"]:
        _validate_webhook_request(request)
    if "push" in request["channels"]:
        _validate_push_request(request)
    # Checked whatever the channels: only email sends them, but every request must fit in Kafka.
    _validate_attachments(request["content"]["attachments"])
    validate_schedule(request, datetime.now(UTC), min_interval=min_recurrence_interval)
    window_s = request["dedup"]["window_s"]
    if window_s is not None and not MIN_DEDUP_WINDOW_S <= window_s <= MAX_DEDUP_WINDOW_S:
        raise InvalidRequest("dedup/window_s", f"from {MIN_DEDUP_WINDOW_S} to {MAX_DEDUP_WINDOW_S} seconds")
    if len(request["variables_json"].encode()) > MAX_VARIABLES_BYTES:
        raise InvalidRequest("variables", f"larger than {MAX_VARIABLES_BYTES} bytes")
    try:
        variables = orjson.loads(request["variables_json"])
    except orjson.JSONDecodeError:
        raise InvalidRequest("variables", "not valid JSON") from None
    if not isinstance(variables, dict):
        raise InvalidRequest("variables", "must be a JSON object")


@functools.lru_cache(maxsize=32_768)
def _email_address_problem(address: str) -> str | None:
    """Why ``address`` is not a valid email address, or None. Cached: the same people are notified again and
    again, and the check (syntax, IDNA) was a sixth of ingest's CPU; without a DNS lookup it is a pure function."""
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        return str(error)
    return None


def _validate_email_request(request: NotificationRequest) -> None:
    address = request["recipient"]["email"]
    if address:
        if (problem := _email_address_problem(address)) is not None:
            raise InvalidRequest("recipient/email", problem)
    elif not request["recipient"]["user_id"]:
        # With a user id the router takes the address from the user's stored profile, if any.
        raise InvalidRequest("recipient/email", "required for the email channel (or a recipient.user_id)")
    content = request["content"]
    if content["template"] is None and not content["subject"]:
        raise InvalidRequest("content/subject", "required for the email channel")
    if content["template"] is None and not content["text"] and not content["html"]:
        raise InvalidRequest("content/text", "give a text or an html body")
    for provider, template_id in content["provider_templates"].items():
        field = f"content/provider_templates/{provider}"
        if provider not in TEMPLATE_PROVIDERS:
            supported = ", ".join(TEMPLATE_PROVIDERS)
            raise InvalidRequest(field, f"no stored templates at {provider!r}; supported: {supported}")
        if not _TEMPLATE_ID.match(template_id):
            raise InvalidRequest(field, "a template id is 1 to 64 letters, digits, '-' or '_'")


def _validate_sms_request(request: NotificationRequest) -> None:
    phone = request["recipient"]["phone"]
    if phone:
        normalize_e164(phone)
    elif not request["recipient"]["user_id"]:
        raise InvalidRequest("recipient/phone", "required for the sms channel (or a recipient.user_id)")
    if request["content"]["template"] is None and not request["content"]["text"]:
        raise InvalidRequest("content/text", "required for the sms channel (the message body)")


def _validate_push_request(request: NotificationRequest) -> None:
    # Push reaches the user's registered devices; which ones is only known when the router looks.
    if not request["recipient"]["user_id"]:
        raise InvalidRequest("recipient/user_id", "required for the push channel (its devices are registered by user)")
    if request["content"]["template"] is None and not request["content"]["text"]:
        raise InvalidRequest("content/text", "required for the push channel (the notification body)")


def _validate_template(content: Content) -> None:
    """A stored template replaces the inline content: whether it exists, and has content for the channel
    the router chooses, is known only when it is looked up (the gateway checks that it exists)."""
    template = content["template"]
    if template is None:
        return
    if not _TEMPLATE_ID.fullmatch(template["id"]):
        raise InvalidRequest("content/template/id", "a template id is 1 to 64 letters, digits, '-' or '_'")
    if template["version"] is not None and not 1 <= template["version"] <= MAX_TEMPLATE_VERSION:
        raise InvalidRequest("content/template/version", f"versions are numbered from 1 to {MAX_TEMPLATE_VERSION}")
    if content["subject"] or content["text"] or content["html"]:
        raise InvalidRequest("content/template", "give a stored template or inline subject, text and html, not both")


def _validate_webhook_request(request: NotificationRequest) -> None:
    url = request["recipient"]["webhook_url"]
    if not url:
        raise InvalidRequest("recipient/webhook_url", "required for the webhook channel")
    _validate_http_url("recipient/webhook_url", url)


def _validate_http_url(field: str, url: str) -> None:
    # Whether the host may be reached (not a private address) is decided when it is called (SSRF guard).
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port out of range, which would otherwise fail only when called
    except ValueError:  # e.g. "http://[::1" or "http://host:99999"
        raise InvalidRequest(field, "must be an absolute http(s) URL") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequest(field, "must be an absolute http(s) URL")
    if parts.username or parts.password:
        raise InvalidRequest(field, "must not carry credentials")


def _validate_attachments(attachments: Sequence[Attachment]) -> None:
    if len(attachments) > MAX_ATTACHMENTS:
        raise InvalidRequest("content/attachments", f"at most {MAX_ATTACHMENTS} attachments")
    inline_bytes = 0
    for index, attachment in enumerate(attachments):
        field = f"content/attachments/{index}"
        _validate_filename(f"{field}/filename", attachment["filename"])
        if not _MEDIA_TYPE.fullmatch(attachment["content_type"]):
            raise InvalidRequest(f"{field}/content_type", "must be a media type, type/subtype (application/pdf)")
        url, data = attachment["url"], attachment["content_base64"]
        if (url is None) == (data is None):
            raise InvalidRequest(field, "give exactly one of url and content_base64")
        if url is not None:
            if len(url) > MAX_URL_CHARACTERS:
                raise InvalidRequest(f"{field}/url", f"longer than {MAX_URL_CHARACTERS} characters")
            _validate_http_url(f"{field}/url", url)
        else:
            budget = MAX_INLINE_ATTACHMENT_BYTES - inline_bytes
            inline_bytes += _inline_size(f"{field}/content_base64", data or "", budget)


def _validate_filename(field: str, filename: str) -> None:
    if not filename or len(filename) > MAX_FILENAME_CHARACTERS:
        raise InvalidRequest(field, f"required, at most {MAX_FILENAME_CHARACTERS} characters")
    if "/" in filename or "\\" in filename or filename in (".", ".."):
        raise InvalidRequest(field, "a file name, without a path")
    if any(unicodedata.category(character) in _UNSAFE_CATEGORIES for character in filename):
        raise InvalidRequest(field, "must not contain control or formatting characters")


def _inline_size(field: str, data: str, budget: int) -> int:
    """The decoded size of an inline attachment, refused past ``budget`` (what is left of the total)."""
    too_large = (
        f"inline attachments may total {MAX_INLINE_ATTACHMENT_BYTES // 1024} KiB: they travel in Kafka records, "
        "which must stay small; give larger files by url"
    )
    # Four base64 characters carry three bytes: an oversized string is refused before it is decoded.
    if len(data) > (budget + 2) // 3 * 4:
        raise InvalidRequest(field, too_large)
    try:
        size = len(base64.b64decode(data, validate=True))
    except binascii.Error:
        raise InvalidRequest(field, "not base64 (RFC 4648, standard alphabet, padded, no line breaks)") from None
    if size > budget:
        raise InvalidRequest(field, too_large)
    return size

"""The typed shape of each Kafka contract in ``schemas/`` and the contract objects that encode them.

The TypedDicts mirror the ``.avsc`` files field by field so handlers are type-checked; fastavro
reads and writes plain dicts, so they cost nothing at run time. ``tests/unit/test_contracts.py``
checks that each TypedDict names exactly its schema's fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NotRequired, TypedDict

from shared.codec import Contract, contract

Priority = Literal["high", "normal", "low"]


class Recipient(TypedDict):
    user_id: str | None
    email: str | None
    phone: str | None
    locale: str | None
    webhook_url: str | None


class Attachment(TypedDict):
    filename: str
    content_type: str
    url: str | None
    content_base64: str | None


class TemplateRef(TypedDict):
    id: str
    version: int | None


class Content(TypedDict):
    subject: str | None
    text: str | None
    html: str | None
    attachments: list[Attachment]
    provider_templates: dict[str, str]
    template: TemplateRef | None


class Recurrence(TypedDict):
    cron: str
    until: datetime | None


class Tracking(TypedDict):
    opens: bool
    clicks: bool


class Dedup(TypedDict):
    window_s: int | None
    bypass: bool


class NotificationRequest(TypedDict):
    notification_id: str
    tenant_id: str
    idempotency_key: str | None
    created_at: datetime
    priority: Priority
    channels: list[str]
    recipient: Recipient
    content: Content
    variables_json: str
    metadata: dict[str, str]
    tracking: Tracking
    send_at: datetime | None
    timezone: str | None
    recurrence: Recurrence | None
    dedup: Dedup


class RoutableNotification(TypedDict):
    notification_id: str
    tenant_id: str
    accepted_at: datetime
    priority: Priority
    channels: list[str]
    recipient: Recipient
    content: Content
    variables_json: str
    metadata: dict[str, str]
    tracking: Tracking


class EmailDelivery(TypedDict):
    delivery_id: str
    notification_id: str
    tenant_id: str
    attempt: int
    priority: Priority
    to: str
    subject: str
    text: str | None
    html: str | None
    metadata: dict[str, str]
    attachments: list[Attachment]
    provider_templates: dict[str, str]
    template_data_json: str


class SmsDelivery(TypedDict):
    delivery_id: str
    notification_id: str
    tenant_id: str
    attempt: int
    priority: Priority
    to: str
    body: str
    metadata: dict[str, str]


class PushDelivery(TypedDict):
    delivery_id: str
    notification_id: str
    tenant_id: str
    attempt: int
    priority: Priority
    platform: Literal["android", "ios", "web"]
    token: str
    title: str | None
    body: str
    data: dict[str, str]
    ttl_s: int | None
    collapse_key: str | None
    metadata: dict[str, str]
    deliveries: int


class WebhookDelivery(TypedDict):
    delivery_id: str
    notification_id: str
    tenant_id: str
    attempt: int
    priority: Priority
    url: str
    payload_json: str
    metadata: dict[str, str]
    # Added in v2, for registered endpoints; the router's recipient-URL deliveries leave them out.
    endpoint_id: NotRequired[str | None]
    secret_versions: NotRequired[list[int]]


class StatusEvent(TypedDict):
    event_id: str
    notification_id: str
    tenant_id: str
    status: str
    occurred_at: datetime
    service: str
    channel: str | None
    attempt: int | None
    provider: str | None
    reason: str | None
    detail: str | None
    delivery_id: str | None
    deliveries: int | None
    # Added in v3: set only on sender-webhook's events about a registered endpoint's delivery.
    endpoint_id: NotRequired[str | None]


class DelayedMessage(TypedDict):
    job_id: str
    tenant_id: str
    notification_id: str | None
    due_at: datetime
    target_topic: str
    key: bytes | None
    payload: bytes
    headers: dict[str, bytes]
    reason: str | None
    recurring: bool


class DeadLetter(TypedDict):
    original_topic: str
    original_partition: int
    original_offset: int
    original_key: bytes | None
    original_payload: bytes
    reason_category: str
    reason: str
    service: str
    failed_at: datetime
    tenant_id: str | None
    notification_id: str | None
    original_headers: dict[str, bytes]


NOTIFICATION_REQUEST: Contract[NotificationRequest] = contract("NotificationRequest")
ROUTABLE_NOTIFICATION: Contract[RoutableNotification] = contract("RoutableNotification")
EMAIL_DELIVERY: Contract[EmailDelivery] = contract("EmailDelivery")
SMS_DELIVERY: Contract[SmsDelivery] = contract("SmsDelivery")
PUSH_DELIVERY: Contract[PushDelivery] = contract("PushDelivery")
WEBHOOK_DELIVERY: Contract[WebhookDelivery] = contract("WebhookDelivery")
STATUS_EVENT: Contract[StatusEvent] = contract("StatusEvent")
DELAYED_MESSAGE: Contract[DelayedMessage] = contract("DelayedMessage")
DEAD_LETTER: Contract[DeadLetter] = contract("DeadLetter")

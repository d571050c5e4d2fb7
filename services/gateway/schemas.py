"""The API's request and response bodies."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from shared.requests import MAX_TEMPLATE_VERSION

Channel = Literal["email", "sms", "push", "webhook"]
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _date_time_text(value: object) -> object:
    # pydantic would also read a number (or a numeric string) as seconds since 1970: the API means RFC 3339.
    if isinstance(value, int | float) or (isinstance(value, str) and not _DATE_TIME.match(value)):
        raise ValueError("expected an RFC 3339 date-time, like 2026-12-24T08:00:00Z")
    return value


# A date and time as RFC 3339 text; Instant: with its UTC offset.
DateTime = Annotated[datetime, BeforeValidator(_date_time_text)]
Instant = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecipientIn(_Body):
    user_id: str | None = Field(default=None, max_length=256)
    # Checked by the shared request rules (one validator for HTTP and Kafka callers).
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    locale: str | None = Field(default=None, max_length=35)
    webhook_url: str | None = Field(default=None, max_length=2048)


class AttachmentIn(_Body):
    """A file attached to an email: exactly one of ``url`` (fetched when sending) and ``content_base64``."""

    # The rules (file name, media type, URL, base64, 256 KiB inline in all) are the shared request rules.
    filename: str = Field(max_length=1024)
    content_type: str = Field(max_length=255, examples=["application/pdf"])
    url: str | None = Field(default=None, max_length=4096)
    content_base64: str | None = None


class TemplateRefIn(_Body):
    """A template stored with ``/api/v1/templates``, rendered for the channel the notification goes out on."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["order-shipped"])
    version: int | None = Field(
        default=None, ge=1, le=MAX_TEMPLATE_VERSION, description="Pin a version; default: the latest when routed."
    )


class ContentIn(_Body):
    """Jinja2 templates; ``html`` is autoescaped when rendered. Or a stored ``template`` instead of
    ``subject``, ``text`` and ``html`` (not both)."""

    subject: str | None = Field(default=None, max_length=998)
    text: str | None = Field(default=None, max_length=200_000)
    html: str | None = Field(default=None, max_length=500_000)
    attachments: list[AttachmentIn] = Field(default_factory=list, description="Email only; at most 10.")
    provider_templates: dict[str, str] = Field(
        default_factory=dict,
        max_length=5,
        description="Email only: a template stored at a provider, by provider, e.g. "
        '{"sendgrid": "d-8f3c..."}; that provider renders it with `variables`, the others send the content above.',
        examples=[{"sendgrid": "d-13b8f94fbcae4ec6b75270d6cb59f932"}],
    )
    template: TemplateRefIn | None = None


class TrackingIn(_Body):
    """Herald's own open pixel and tracked links, in an email's html part."""

    opens: bool = False
    clicks: bool = False


class DedupIn(_Body):
    """How ingest drops a repeat of this request's idempotency key (the key itself is the header)."""

    window_s: int | None = Field(
        default=None,
        description="Seconds a repeat of the key is dropped (1 to 604800); default: the window of the "
        "request's message type (`metadata.type`, HERALD_DEDUP_WINDOWS), else HERALD_DEDUP_TTL_SECONDS.",
        examples=[300],
    )
    bypass: bool = Field(default=False, description="Urgent: never dropped as a duplicate.")


class RecurrenceIn(_Body):
    """Send again at every occurrence; each occurrence is a notification of its own."""

    cron: str = Field(
        max_length=120,
        description="A cron expression (minute hour day month weekday, optionally a sixth field for "
        "seconds) or @hourly, @daily, @weekly, @monthly, evaluated in `timezone`.",
        examples=["0 9 * * MON-FRI", "@daily"],
    )
    until: DateTime | None = Field(default=None, description="No occurrence after this.")


class NotificationCreate(_Body):
    channels: list[Channel] = Field(min_length=1, max_length=4, description="Channels to try, in order.")
    recipient: RecipientIn
    content: ContentIn
    variables: dict[str, Any] = Field(default_factory=dict, description="Values for the templates.")
    priority: Literal["high", "normal", "low"] = "normal"
    metadata: dict[str, str] = Field(default_factory=dict, max_length=50)
    tracking: TrackingIn = Field(default_factory=TrackingIn)
    send_at: DateTime | None = Field(
        default=None,
        description="Send then instead of now. Without a UTC offset it is a local time in `timezone`.",
        examples=["2026-12-24T09:00:00", "2026-12-24T08:00:00Z"],
    )
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA time zone (default UTC).", examples=["Europe/Paris"]
    )
    recurrence: RecurrenceIn | None = None
    dedup: DedupIn = Field(default_factory=DedupIn)


class Links(BaseModel):
    self: str


class NotificationAccepted(BaseModel):
    id: str
    status: Literal["accepted"] = "accepted"
    links: Links


class NotificationCancelled(BaseModel):
    id: str
    status: Literal["cancelled"] = "cancelled"


class StatusChange(BaseModel):
    status: str
    occurred_at: datetime
    service: str
    channel: str | None
    attempt: int | None
    provider: str | None
    reason: str | None
    detail: str | None
    # Which delivery a sender's event is about (a push goes out as one delivery per device).
    delivery_id: str | None


class AttemptOut(BaseModel):
    """One try at a delivery: when, through which provider, and how it ended."""

    attempt: int | None
    at: datetime
    provider: str | None
    outcome: str = Field(description="sent, retrying (it failed and will be tried again) or failed.")
    reason: str | None
    detail: str | None


class DeliveryOut(BaseModel):
    id: str
    channel: str | None
    status: str
    attempts: int
    provider: str | None
    last_reason: str | None
    last_detail: str | None
    updated_at: datetime
    attempt_history: list[AttemptOut]


class NotificationOut(BaseModel):
    id: str
    status: str
    channel: str | None
    attempts: int
    duplicates: int = Field(description="Repeats of its idempotency key that ingest dropped as duplicates.")
    idempotency_key: str | None
    last_reason: str | None
    last_detail: str | None
    created_at: datetime
    updated_at: datetime
    history: list[StatusChange]
    deliveries: list[DeliveryOut]

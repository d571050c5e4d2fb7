"""The notifications API's request and response bodies: one, a bulk, a listing."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.http.idempotency_store import MAX_KEY_LENGTH
from services.gateway.http.pagination import PageLinks
from services.gateway.http.schemas import Body, Channel, DateTime, Links
from services.gateway.notifications.repository import NotificationSummary, NotificationView
from shared.requests import MAX_TEMPLATE_VERSION

PATH = "/api/v1/notifications"
BULK_PATH = f"{PATH}/bulk"


class RecipientIn(Body):
    user_id: str | None = Field(default=None, max_length=256)
    # Checked by the shared request rules (one validator for HTTP and Kafka callers).
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    locale: str | None = Field(default=None, max_length=35)
    webhook_url: str | None = Field(default=None, max_length=2048)


class AttachmentIn(Body):
    """A file attached to an email: exactly one of ``url`` (fetched when sending) and ``content_base64``."""

    # The rules (file name, media type, URL, base64, 256 KiB inline in all) are the shared request rules.
    filename: str = Field(max_length=1024)
    content_type: str = Field(max_length=255, examples=["application/pdf"])
    url: str | None = Field(default=None, max_length=4096)
    content_base64: str | None = None


class TemplateRefIn(Body):
    """A template stored with ``/api/v1/templates``, rendered for the channel the notification goes out on."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", examples=["order-shipped"])
    version: int | None = Field(
        default=None, ge=1, le=MAX_TEMPLATE_VERSION, description="Pin a version; default: the latest when routed."
    )


class ContentIn(Body):
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


class TrackingIn(Body):
    """Herald's own open pixel and tracked links, in an email's html part."""

    opens: bool = False
    clicks: bool = False


class DedupIn(Body):
    """How ingest drops a repeat of this request's idempotency key (the key itself is the header)."""

    window_s: int | None = Field(
        default=None,
        description="Seconds a repeat of the key is dropped (1 to 604800); default: the window of the "
        "request's message type (`metadata.type`, HERALD_DEDUP_WINDOWS), else HERALD_DEDUP_TTL_SECONDS.",
        examples=[300],
    )
    bypass: bool = Field(default=False, description="Urgent: never dropped as a duplicate.")


class RecurrenceIn(Body):
    """Send again at every occurrence; each occurrence is a notification of its own."""

    cron: str = Field(
        max_length=120,
        description="A cron expression (minute hour day month weekday, optionally a sixth field for "
        "seconds) or @hourly, @daily, @weekly, @monthly, evaluated in `timezone`.",
        examples=["0 9 * * MON-FRI", "@daily"],
    )
    until: DateTime | None = Field(default=None, description="No occurrence after this.")


class NotificationCreate(Body):
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

    @classmethod
    def of(cls, view: NotificationView) -> NotificationOut:
        return cls(
            id=view.id,
            status=view.status,
            channel=view.channel,
            attempts=view.attempts,
            duplicates=view.duplicates,
            idempotency_key=view.idempotency_key,
            last_reason=view.last_reason,
            last_detail=view.last_detail,
            created_at=view.created_at,
            updated_at=view.updated_at,
            history=[StatusChange(**{k: v for k, v in asdict(e).items() if k != "event_id"}) for e in view.events],
            deliveries=[DeliveryOut(**asdict(d), attempt_history=_attempts(view, d.id)) for d in view.deliveries],
        )


def _attempts(view: NotificationView, delivery_id: str) -> list[AttemptOut]:
    """The delivery's tries, oldest first, from the senders' events in the notification's history."""
    return [
        AttemptOut(
            attempt=e.attempt,
            at=e.occurred_at,
            provider=e.provider,
            outcome=e.status,
            reason=e.reason,
            detail=e.detail,
        )
        for e in view.events
        if e.delivery_id == delivery_id and e.attempt is not None
    ]


@dataclass(frozen=True, kw_only=True)
class NotificationItem(NotificationSummary):
    """A notification in the listing; ``links.self`` shows it with its history."""

    links: Links

    @classmethod
    def of(cls, row: NotificationSummary) -> NotificationItem:
        return cls(**asdict(row), links=Links(self=f"{PATH}/{row.id}"))


class NotificationPage(BaseModel):
    items: list[NotificationItem]
    links: PageLinks


class BulkItem(NotificationCreate):
    """One notification of a bulk: the single route's body, and its ``Idempotency-Key`` as a field."""

    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[\x20-\x7e]+$",
        description="Names the notification as the single route's Idempotency-Key header does: the same "
        "tenant and key always give the same id, and ingest drops a repeat within its dedup window.",
    )


class BulkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Items are checked one by one in the route, so that one bad item refuses itself, not the request.
    notifications: list[Any] = Field(
        min_length=1,
        description="Each a `POST /api/v1/notifications` body, plus an optional `idempotency_key`; "
        "at most HERALD_BULK_MAX_ITEMS (1,000).",
    )


class BulkResult(BaseModel):
    index: int = Field(description="The item's position in `notifications`.")
    id: str | None = Field(default=None, description="Set when accepted.")
    links: Links | None = None
    error: dict[str, Any] | None = Field(default=None, description="Set when refused: an RFC 9457 problem.")


class BulkOutcome(BaseModel):
    accepted: int
    rejected: int
    results: list[BulkResult] = Field(description="One per item, in request order.")

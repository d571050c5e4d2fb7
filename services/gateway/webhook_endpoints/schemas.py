"""The webhook-endpoints API's request and response bodies."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.gateway.http.pagination import PageLinks
from shared import status
from shared.storage.webhook_endpoints import OUTCOMES, Endpoint, EndpointDelivery

PATH = "/api/v1/webhook-endpoints"
MAX_EVENT_TYPES = len(status.RANKS)
EventType = Literal[
    "accepted",
    "scheduled",
    "routed",
    "requeued",
    "retrying",
    "cancelled",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "rejected",
    "failed",
]
assert set(get_args(EventType)) == set(status.RANKS)  # every status can be subscribed to
Outcome = Literal["pending", "retrying", "sent", "failed"]
assert set(get_args(Outcome)) == {"pending", *OUTCOMES.values()}


def _http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL, e.g. https://hooks.example.com/herald")
    return url


HttpUrl = Annotated[
    str,
    Field(min_length=1, max_length=2048, examples=["https://hooks.example.com/herald"]),
    AfterValidator(_http_url),
]
Description = Annotated[str, Field(max_length=500, examples=["order service"])]
EventTypes = Annotated[
    list[EventType],
    Field(
        max_length=MAX_EVENT_TYPES,
        description="The statuses whose changes are sent (as `notification.<status>` events); empty: all.",
        examples=[["sent", "delivered", "failed"]],
    ),
]


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    description: Description | None = None
    events: EventTypes = Field(default_factory=list)


class WebhookEndpointUpdate(BaseModel):
    """What to change; a field left out stays as it is (``description: null`` removes it)."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl | None = None
    description: Description | None = None
    events: EventTypes | None = None


class WebhookEndpointOut(BaseModel):
    id: str
    url: str
    description: str | None
    events: list[str] = Field(description="Subscribed statuses; empty: all")
    secret_version: int
    previous_secret_expires_at: datetime | None = Field(
        description="Until then deliveries are signed with the previous secret too (after a rotation)"
    )
    rotated_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: Endpoint) -> WebhookEndpointOut:
        return cls(
            id=endpoint.id,
            url=endpoint.url,
            description=endpoint.description,
            events=endpoint.event_types,
            secret_version=endpoint.secret_version,
            previous_secret_expires_at=endpoint.previous_secret_expires_at,
            rotated_at=endpoint.rotated_at,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
        )


class WebhookEndpointWithSecret(WebhookEndpointOut):
    secret: str = Field(
        description="The signing secret (Standard Webhooks `whsec_...`): shown in this answer only, store it now"
    )


@dataclass(frozen=True, kw_only=True)
class EndpointDeliveryOut(EndpointDelivery):
    """One event's delivery: ``id`` is the ``webhook-id`` of each attempt; ``attempt`` 0 is not yet tried;
    ``outcome`` pending, retrying, sent or failed; ``detail`` the endpoint's answer or why it was not reached;
    ``type`` the event's, ``notification.<status>``."""

    type: str

    @classmethod
    def of(cls, delivery: EndpointDelivery) -> EndpointDeliveryOut:
        return cls(**asdict(delivery), type=f"notification.{delivery.status}")


class EndpointDeliveryPage(BaseModel):
    items: list[EndpointDeliveryOut]
    links: PageLinks

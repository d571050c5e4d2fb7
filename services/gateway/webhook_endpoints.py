"""``/api/v1/webhook-endpoints``: URLs told when the tenant's notifications change status.

Each endpoint receives ``notification.<status>`` events (those it subscribed to, or all), POSTed by
sender-webhook and signed per Standard Webhooks with the endpoint's own secret. The secret is derived
from ``HERALD_WEBHOOK_SIGNING_KEY`` (never stored) and answered only by create and rotate-secret (and
their replays under the same ``Idempotency-Key``). Registering, changing, rotating and deleting are for
admins: an endpoint receives every notification's status; readers may list endpoints and their logs.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.gateway import pages
from services.gateway.auth import Admin, Tenant
from services.gateway.idempotency import IDEMPOTENT
from services.gateway.pages import Cursor, Limit, PageLinks
from services.gateway.problems import PROBLEM_RESPONSES, Problem
from services.gateway.public_urls import refuse_non_public
from services.gateway.settings import GatewaySettings
from shared import status
from shared.ssrf import OutboundGuard
from shared.storage.webhook_endpoints import (
    OUTCOMES,
    DeliveryFilter,
    Endpoint,
    EndpointDelivery,
    WebhookEndpointRepository,
)
from shared.webhook_secrets import endpoint_secret

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
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"description": "No such webhook endpoint (problem+json)"}}
NO_SIGNING_KEY: dict[int | str, dict[str, object]] = {
    503: {"description": "Webhook signing is not configured: HERALD_WEBHOOK_SIGNING_KEY (problem+json)"}
}


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


def _repository(request: Request) -> WebhookEndpointRepository:
    repository: WebhookEndpointRepository = request.app.state.webhook_endpoints
    return repository


def routes(settings: GatewaySettings) -> APIRouter:
    """The routes, with the signing key, grace period and SSRF rule of ``settings``."""
    router = APIRouter(prefix=PATH, tags=["webhook endpoints"], responses=PROBLEM_RESPONSES)
    signing_key = settings.webhook_signing_key.get_secret_value().encode() if settings.webhook_signing_key else None
    grace = timedelta(seconds=settings.webhook_secret_grace_s)

    # Refused now rather than at every delivery; sender-webhook checks again before each POST.
    guard = OutboundGuard(allow_private_networks=settings.webhook_allow_private_networks)

    def with_secret(endpoint: Endpoint) -> WebhookEndpointWithSecret:
        assert signing_key is not None
        secret = endpoint_secret(signing_key, endpoint.tenant_id, endpoint.id, endpoint.secret_version)
        return WebhookEndpointWithSecret(**WebhookEndpointOut.of(endpoint).model_dump(), secret=secret)

    def require_signing_key() -> None:
        if signing_key is None:
            raise Problem(503, "Service unavailable", "webhook signing is not configured (HERALD_WEBHOOK_SIGNING_KEY)")

    def not_found(endpoint_id: str) -> Problem:
        return Problem(404, "Not found", f"no webhook endpoint {endpoint_id}")

    @router.post(
        "",
        status_code=201,
        response_model=WebhookEndpointWithSecret,
        responses=NO_SIGNING_KEY,
        dependencies=[IDEMPOTENT],
    )
    async def create_webhook_endpoint(
        body: WebhookEndpointCreate, admin: Admin, request: Request, response: Response
    ) -> WebhookEndpointWithSecret:
        """Register an endpoint. Its secret is in this answer only (and a replay of the same
        ``Idempotency-Key``, within the idempotency window)."""
        require_signing_key()
        await refuse_non_public(guard, body.url, "#/url")
        endpoint = await _repository(request).create(admin.tenant, body.url, body.description, body.events)
        response.headers["Location"] = f"{PATH}/{endpoint.id}"
        return with_secret(endpoint)

    @router.get("", response_model=list[WebhookEndpointOut])
    async def list_webhook_endpoints(tenant: Tenant, request: Request) -> list[WebhookEndpointOut]:
        """The tenant's endpoints, newest first; never their secrets."""
        return [WebhookEndpointOut.of(endpoint) for endpoint in await _repository(request).live(tenant)]

    @router.get("/{endpoint_id}", response_model=WebhookEndpointOut, responses=NOT_FOUND)
    async def get_webhook_endpoint(endpoint_id: str, tenant: Tenant, request: Request) -> WebhookEndpointOut:
        """One endpoint, without its secret."""
        endpoint = await _repository(request).get(tenant, endpoint_id)
        if endpoint is None:
            raise not_found(endpoint_id)
        return WebhookEndpointOut.of(endpoint)

    @router.patch("/{endpoint_id}", response_model=WebhookEndpointOut, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
    async def update_webhook_endpoint(
        endpoint_id: str, body: WebhookEndpointUpdate, admin: Admin, request: Request
    ) -> WebhookEndpointOut:
        """Change the URL, description or subscribed events; the secret stays."""
        if body.url is not None:
            await refuse_non_public(guard, body.url, "#/url")
        endpoint = await _repository(request).update(
            admin.tenant,
            endpoint_id,
            url=body.url,
            description=body.description,
            event_types=body.events,
            clear_description="description" in body.model_fields_set and body.description is None,
        )
        if endpoint is None:
            raise not_found(endpoint_id)
        return WebhookEndpointOut.of(endpoint)

    @router.post(
        "/{endpoint_id}/rotate-secret",
        response_model=WebhookEndpointWithSecret,
        responses={**NOT_FOUND, **NO_SIGNING_KEY},
        dependencies=[IDEMPOTENT],
    )
    async def rotate_webhook_endpoint_secret(
        endpoint_id: str, admin: Admin, request: Request
    ) -> WebhookEndpointWithSecret:
        """A new secret, answered once. Until ``previous_secret_expires_at`` (``HERALD_WEBHOOK_SECRET_GRACE_S``,
        24 h by default) deliveries carry a signature with each secret, so the receiver can switch at leisure."""
        require_signing_key()
        endpoint = await _repository(request).rotate(admin.tenant, endpoint_id, grace)
        if endpoint is None:
            raise not_found(endpoint_id)
        return with_secret(endpoint)

    @router.delete("/{endpoint_id}", status_code=204, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
    async def delete_webhook_endpoint(endpoint_id: str, admin: Admin, request: Request) -> Response:
        """Stop sending to the endpoint (kept, deleted, for the record)."""
        if not await _repository(request).delete(admin.tenant, endpoint_id):
            raise not_found(endpoint_id)
        return Response(status_code=204)

    @router.get("/{endpoint_id}/deliveries", response_model=EndpointDeliveryPage, responses=NOT_FOUND)
    async def list_webhook_endpoint_deliveries(
        endpoint_id: str,
        tenant: Tenant,
        request: Request,
        outcome: Annotated[Outcome | None, Query()] = None,
        event: Annotated[EventType | None, Query(description="Only events of this status.")] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> EndpointDeliveryPage:
        """The endpoint's delivery log, newest first: each event, its attempts and the endpoint's last answer;
        follow `links.next` for the next page."""
        repository = _repository(request)
        endpoint = await repository.get(tenant, endpoint_id)
        if endpoint is None:
            raise not_found(endpoint_id)
        where = DeliveryFilter(tenant, uuid.UUID(endpoint.id), outcome, event)
        rows = await repository.deliveries(where, limit + 1, pages.after(cursor))
        deliveries, links = pages.page(request, rows, limit)
        return EndpointDeliveryPage(items=[EndpointDeliveryOut.of(d) for d in deliveries], links=links)

    return router

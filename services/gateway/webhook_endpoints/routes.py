"""``/api/v1/webhook-endpoints``: register, list, change, rotate the secret of and delete the tenant's webhook
endpoints, and read each one's delivery log. Registering, changing, rotating and deleting are for admins."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from services.gateway.deps import SettingsDep, WebhookEndpointsDep, WebhookGuardDep
from services.gateway.http import pagination
from services.gateway.http.auth import Admin, Tenant
from services.gateway.http.idempotency import IDEMPOTENT
from services.gateway.http.pagination import Cursor, Limit
from services.gateway.http.problems import PROBLEM_RESPONSES
from services.gateway.webhook_endpoints import service
from services.gateway.webhook_endpoints.schemas import (
    PATH,
    EndpointDeliveryOut,
    EndpointDeliveryPage,
    EventType,
    Outcome,
    WebhookEndpointCreate,
    WebhookEndpointOut,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)
from shared.storage.webhook_endpoints import DeliveryFilter

router = APIRouter(prefix=PATH, tags=["webhook endpoints"], responses=PROBLEM_RESPONSES)
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"description": "No such webhook endpoint (problem+json)"}}
NO_SIGNING_KEY: dict[int | str, dict[str, object]] = {
    503: {"description": "Webhook signing is not configured: HERALD_WEBHOOK_SIGNING_KEY (problem+json)"}
}


@router.post(
    "",
    status_code=201,
    response_model=WebhookEndpointWithSecret,
    responses=NO_SIGNING_KEY,
    dependencies=[IDEMPOTENT],
)
async def create_webhook_endpoint(
    body: WebhookEndpointCreate,
    admin: Admin,
    response: Response,
    endpoints: WebhookEndpointsDep,
    guard: WebhookGuardDep,
    settings: SettingsDep,
) -> WebhookEndpointWithSecret:
    """Register an endpoint. Its secret is in this answer only (and a replay of the same
    ``Idempotency-Key``, within the idempotency window)."""
    created = await service.create(endpoints, guard, settings, tenant_id=admin.tenant, body=body)
    response.headers["Location"] = f"{PATH}/{created.id}"
    return created


@router.get("", response_model=list[WebhookEndpointOut])
async def list_webhook_endpoints(tenant: Tenant, endpoints: WebhookEndpointsDep) -> list[WebhookEndpointOut]:
    """The tenant's endpoints, newest first; never their secrets."""
    return [WebhookEndpointOut.of(endpoint) for endpoint in await endpoints.live(tenant)]


@router.get("/{endpoint_id}", response_model=WebhookEndpointOut, responses=NOT_FOUND)
async def get_webhook_endpoint(endpoint_id: str, tenant: Tenant, endpoints: WebhookEndpointsDep) -> WebhookEndpointOut:
    """One endpoint, without its secret."""
    endpoint = await endpoints.get(tenant, endpoint_id)
    if endpoint is None:
        raise service.not_found(endpoint_id)
    return WebhookEndpointOut.of(endpoint)


@router.patch("/{endpoint_id}", response_model=WebhookEndpointOut, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def update_webhook_endpoint(
    endpoint_id: str,
    body: WebhookEndpointUpdate,
    admin: Admin,
    endpoints: WebhookEndpointsDep,
    guard: WebhookGuardDep,
) -> WebhookEndpointOut:
    """Change the URL, description or subscribed events; the secret stays."""
    return await service.update(endpoints, guard, tenant_id=admin.tenant, endpoint_id=endpoint_id, body=body)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=WebhookEndpointWithSecret,
    responses={**NOT_FOUND, **NO_SIGNING_KEY},
    dependencies=[IDEMPOTENT],
)
async def rotate_webhook_endpoint_secret(
    endpoint_id: str, admin: Admin, endpoints: WebhookEndpointsDep, settings: SettingsDep
) -> WebhookEndpointWithSecret:
    """A new secret, answered once. Until ``previous_secret_expires_at`` (``HERALD_WEBHOOK_SECRET_GRACE_S``,
    24 h by default) deliveries carry a signature with each secret, so the receiver can switch at leisure."""
    return await service.rotate(endpoints, settings, tenant_id=admin.tenant, endpoint_id=endpoint_id)


@router.delete("/{endpoint_id}", status_code=204, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def delete_webhook_endpoint(endpoint_id: str, admin: Admin, endpoints: WebhookEndpointsDep) -> Response:
    """Stop sending to the endpoint (kept, deleted, for the record)."""
    if not await endpoints.delete(admin.tenant, endpoint_id):
        raise service.not_found(endpoint_id)
    return Response(status_code=204)


@router.get("/{endpoint_id}/deliveries", response_model=EndpointDeliveryPage, responses=NOT_FOUND)
async def list_webhook_endpoint_deliveries(
    endpoint_id: str,
    tenant: Tenant,
    request: Request,
    endpoints: WebhookEndpointsDep,
    outcome: Annotated[Outcome | None, Query()] = None,
    event: Annotated[EventType | None, Query(description="Only events of this status.")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> EndpointDeliveryPage:
    """The endpoint's delivery log, newest first: each event, its attempts and the endpoint's last answer;
    follow `links.next` for the next page."""
    endpoint = await endpoints.get(tenant, endpoint_id)
    if endpoint is None:
        raise service.not_found(endpoint_id)
    where = DeliveryFilter(tenant, uuid.UUID(endpoint.id), outcome, event)
    rows = await endpoints.deliveries(where, limit + 1, pagination.after(cursor))
    deliveries, links = pagination.page(request, rows, limit)
    return EndpointDeliveryPage(items=[EndpointDeliveryOut.of(d) for d in deliveries], links=links)

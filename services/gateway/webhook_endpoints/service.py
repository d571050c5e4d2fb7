"""Webhook endpoints: each endpoint's signing secret (derived, never stored) and the SSRF rule for its URL."""

from __future__ import annotations

from datetime import timedelta

from services.gateway.http.problems import Problem
from services.gateway.http.public_urls import refuse_non_public
from services.gateway.settings import GatewaySettings
from services.gateway.webhook_endpoints.schemas import (
    WebhookEndpointCreate,
    WebhookEndpointOut,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)
from shared.ssrf import OutboundGuard
from shared.storage.webhook_endpoints import Endpoint, WebhookEndpointRepository
from shared.webhook_secrets import endpoint_secret


def not_found(endpoint_id: str) -> Problem:
    """The 404 of a webhook endpoint."""
    return Problem(404, "Not found", f"no webhook endpoint {endpoint_id}")


def _signing_key(settings: GatewaySettings) -> bytes:
    """``HERALD_WEBHOOK_SIGNING_KEY``; a 503 problem when it is not configured."""
    if settings.webhook_signing_key is None:
        raise Problem(503, "Service unavailable", "webhook signing is not configured (HERALD_WEBHOOK_SIGNING_KEY)")
    return settings.webhook_signing_key.get_secret_value().encode()


def _with_secret(endpoint: Endpoint, signing_key: bytes) -> WebhookEndpointWithSecret:
    secret = endpoint_secret(signing_key, endpoint.tenant_id, endpoint.id, endpoint.secret_version)
    return WebhookEndpointWithSecret(**WebhookEndpointOut.of(endpoint).model_dump(), secret=secret)


async def create(
    endpoints: WebhookEndpointRepository,
    guard: OutboundGuard,
    settings: GatewaySettings,
    *,
    tenant_id: str,
    body: WebhookEndpointCreate,
) -> WebhookEndpointWithSecret:
    """Register an endpoint; its URL is refused now (422) rather than at every delivery if it points inside
    (sender-webhook checks again before each POST)."""
    signing_key = _signing_key(settings)
    await refuse_non_public(guard, body.url, "#/url")
    endpoint = await endpoints.create(tenant_id, body.url, body.description, body.events)
    return _with_secret(endpoint, signing_key)


async def update(
    endpoints: WebhookEndpointRepository,
    guard: OutboundGuard,
    *,
    tenant_id: str,
    endpoint_id: str,
    body: WebhookEndpointUpdate,
) -> WebhookEndpointOut:
    """Change what ``body`` names (``description: null`` removes it); a 404 problem for no such endpoint."""
    if body.url is not None:
        await refuse_non_public(guard, body.url, "#/url")
    endpoint = await endpoints.update(
        tenant_id,
        endpoint_id,
        url=body.url,
        description=body.description,
        event_types=body.events,
        clear_description="description" in body.model_fields_set and body.description is None,
    )
    if endpoint is None:
        raise not_found(endpoint_id)
    return WebhookEndpointOut.of(endpoint)


async def rotate(
    endpoints: WebhookEndpointRepository, settings: GatewaySettings, *, tenant_id: str, endpoint_id: str
) -> WebhookEndpointWithSecret:
    """A new secret; the previous one still signs for ``HERALD_WEBHOOK_SECRET_GRACE_S``."""
    signing_key = _signing_key(settings)
    endpoint = await endpoints.rotate(tenant_id, endpoint_id, timedelta(seconds=settings.webhook_secret_grace_s))
    if endpoint is None:
        raise not_found(endpoint_id)
    return _with_secret(endpoint, signing_key)

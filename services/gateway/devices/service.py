"""Devices: registering one, refusing a Web Push subscription whose push service is on a non-public address."""

from __future__ import annotations

import json

from services.gateway.http.public_urls import refuse_non_public
from shared.ssrf import OutboundGuard
from shared.storage.devices import Device, DeviceRepository, Platform


def _push_endpoint(token: str) -> str | None:
    """The endpoint of a Web Push subscription (JSON), if the token is one; the sender judges the rest."""
    try:
        subscription = json.loads(token)
    except ValueError:
        return None
    endpoint = subscription.get("endpoint") if isinstance(subscription, dict) else None
    return endpoint if isinstance(endpoint, str) else None


async def register(
    devices: DeviceRepository, guard: OutboundGuard, *, tenant_id: str, user_id: str, platform: Platform, token: str
) -> Device:
    """Register a device; a web subscription pointing inside is a 422 problem (SSRF), refused now rather than
    at every push (sender-push checks again before each one)."""
    endpoint = _push_endpoint(token) if platform == "web" else None
    if endpoint is not None:
        await refuse_non_public(guard, endpoint, "#/token")
    return await devices.register(tenant_id, user_id, platform, token)

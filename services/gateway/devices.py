"""``/api/v1/recipients/{user_id}/devices``: register, list and remove a user's push devices."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.auth import Tenant
from services.gateway.idempotency import IDEMPOTENT
from services.gateway.problems import Problem
from services.gateway.public_urls import refuse_non_public
from services.gateway.settings import GatewaySettings
from shared.ssrf import OutboundGuard
from shared.storage.devices import Device, DeviceRepository

UserId = Path(min_length=1, max_length=256, description="The recipient's user id in your system.")


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platform: Literal["android", "ios", "web"]
    token: str = Field(
        min_length=1,
        max_length=4096,
        description="FCM registration token, APNs device token, or a Web Push subscription as JSON.",
    )


class DeviceOut(BaseModel):
    id: str
    user_id: str
    platform: str
    token: str
    active: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, device: Device) -> DeviceOut:
        return cls(
            id=device.id,
            user_id=device.user_id,
            platform=device.platform,
            token=device.token,
            active=device.disabled_at is None,
            disabled_reason=device.disabled_reason,
            created_at=device.created_at,
            updated_at=device.updated_at,
        )


def _devices(request: Request) -> DeviceRepository:
    repository: DeviceRepository = request.app.state.devices
    return repository


def _push_endpoint(token: str) -> str | None:
    """The endpoint of a Web Push subscription (JSON), if the token is one; the sender judges the rest."""
    try:
        subscription = json.loads(token)
    except ValueError:
        return None
    endpoint = subscription.get("endpoint") if isinstance(subscription, dict) else None
    return endpoint if isinstance(endpoint, str) else None


def routes(settings: GatewaySettings) -> APIRouter:
    """The routes, refusing a web subscription whose push service is on a non-public address (SSRF)."""
    router = APIRouter(prefix="/api/v1/recipients/{user_id}/devices", tags=["devices"])
    # Refused now rather than at every push; sender-push checks again before each one.
    guard = OutboundGuard(allow_private_networks=settings.webpush_allow_private_networks)

    @router.post("", status_code=201, response_model=DeviceOut, dependencies=[IDEMPOTENT])
    async def register_device(body: DeviceCreate, tenant: Tenant, request: Request, user_id: str = UserId) -> DeviceOut:
        """Register a device for push; registering a known token again moves it to this user and re-enables it."""
        endpoint = _push_endpoint(body.token) if body.platform == "web" else None
        if endpoint is not None:
            await refuse_non_public(guard, endpoint, "#/token")
        return DeviceOut.of(await _devices(request).register(tenant, user_id, body.platform, body.token))

    @router.get("", response_model=list[DeviceOut])
    async def list_devices(
        tenant: Tenant, request: Request, user_id: str = UserId, include_disabled: bool = False
    ) -> list[DeviceOut]:
        """The user's devices; ``include_disabled`` also shows removed and unregistered ones, with why."""
        devices = await _devices(request).for_user(tenant, user_id, active_only=not include_disabled)
        return [DeviceOut.of(device) for device in devices]

    @router.delete(
        "/{device_id}",
        status_code=204,
        responses={404: {"description": "No such active device"}},
        dependencies=[IDEMPOTENT],
    )
    async def remove_device(device_id: str, tenant: Tenant, request: Request, user_id: str = UserId) -> Response:
        """Stop sending to a device (it is kept, disabled, for the record)."""
        if not await _devices(request).remove(tenant, user_id, device_id):
            raise Problem(404, "Not found", f"no active device {device_id} for user {user_id}")
        return Response(status_code=204)

    return router

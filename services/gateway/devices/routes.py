"""``/api/v1/recipients/{user_id}/devices``: register, list and remove a user's push devices."""

from __future__ import annotations

from fastapi import APIRouter, Response

from services.gateway.deps import DevicesDep, WebPushGuardDep
from services.gateway.devices import service
from services.gateway.devices.schemas import DeviceCreate, DeviceOut
from services.gateway.http.auth import Tenant
from services.gateway.http.idempotency import IDEMPOTENT
from services.gateway.http.problems import Problem
from services.gateway.recipients.schemas import PATH, UserId

router = APIRouter(prefix=f"{PATH}/{{user_id}}/devices", tags=["devices"])


@router.post("", status_code=201, response_model=DeviceOut, dependencies=[IDEMPOTENT])
async def register_device(
    body: DeviceCreate, tenant: Tenant, devices: DevicesDep, guard: WebPushGuardDep, user_id: str = UserId
) -> DeviceOut:
    """Register a device for push; registering a known token again moves it to this user and re-enables it."""
    device = await service.register(
        devices, guard, tenant_id=tenant, user_id=user_id, platform=body.platform, token=body.token
    )
    return DeviceOut.of(device)


@router.get("", response_model=list[DeviceOut])
async def list_devices(
    tenant: Tenant, devices: DevicesDep, user_id: str = UserId, include_disabled: bool = False
) -> list[DeviceOut]:
    """The user's devices; ``include_disabled`` also shows removed and unregistered ones, with why."""
    found = await devices.for_user(tenant, user_id, active_only=not include_disabled)
    return [DeviceOut.of(device) for device in found]


@router.delete(
    "/{device_id}",
    status_code=204,
    responses={404: {"description": "No such active device"}},
    dependencies=[IDEMPOTENT],
)
async def remove_device(device_id: str, tenant: Tenant, devices: DevicesDep, user_id: str = UserId) -> Response:
    """Stop sending to a device (it is kept, disabled, for the record)."""
    if not await devices.remove(tenant, user_id, device_id):
        raise Problem(404, "Not found", f"no active device {device_id} for user {user_id}")
    return Response(status_code=204)

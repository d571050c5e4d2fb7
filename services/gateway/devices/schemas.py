"""The devices API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.storage.devices import Device


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

"""The erasures API's request and response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

# Bounds one request's work; a person rarely has more addresses than this.
MAX_ADDRESSES = 20


class ErasureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    emails: list[EmailStr] = Field(
        default=[],
        max_length=MAX_ADDRESSES,
        description="Addresses of this person besides their stored profile's, e.g. ones requests named directly.",
    )
    phones: list[str] = Field(
        default=[],
        max_length=MAX_ADDRESSES,
        description="Phone numbers of this person besides their stored profile's.",
    )


class ErasureOut(BaseModel):
    id: str
    requested_by: str = Field(description="`api_key:<key id>` or `jwt:<subject>`")
    requested_at: datetime
    counts: dict[str, int] = Field(
        description="Records removed or anonymised, by kind: notifications (anonymised), dead_letters, scheduled, "
        "devices, profiles (deleted), suppressions (address removed, still applied)."
    )

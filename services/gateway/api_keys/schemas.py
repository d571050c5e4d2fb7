"""The API-keys API's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from services.gateway.http.auth import SCOPES
from services.gateway.http.credentials import ROLES

PATH = "/api/v1/api-keys"

Role = Literal["admin", "sender", "viewer", "service"]
assert set(get_args(Role)) == set(ROLES)  # the API names every role auth knows
Scope = Literal[SCOPES]  # type: ignore[valid-type]  # built from auth.RESOURCES, so the two cannot drift


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["billing service"])
    role: Role
    scopes: list[Scope] | None = Field(
        default=None,
        max_length=len(SCOPES),
        description="Narrow the key below its role: `<resource>:read` or `<resource>:write` (write implies read). "
        "Omitted: everything the role allows.",
        examples=[["notifications:write", "templates:read"]],
    )


class ApiKeyOut(BaseModel):
    id: str
    name: str
    role: Role
    scopes: list[str] | None = Field(description="null: everything the role allows")
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    created_at: datetime
    last_used_at: datetime | None = Field(description="Accurate to the gateway's auth cache (30 s by default)")
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="The key itself: shown in this answer only, store it now")

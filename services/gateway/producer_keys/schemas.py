"""The producer-keys API's request and response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

PATH = "/api/v1/producer-keys"


class ProducerKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, examples=["billing service"])


class ProducerKeyOut(BaseModel):
    id: str = Field(description="The key id, which every signature names (not secret)")
    name: str
    created_at: datetime
    revoked_at: datetime | None


class ProducerKeyCreated(ProducerKeyOut):
    credential: str = Field(
        description="`hpk.<key id>.<secret>`: what the producer signs with (shared.client's `producer_key`). "
        "It is derived from the installation's master key, so a replay of this request answers it again; "
        "store it as a secret"
    )

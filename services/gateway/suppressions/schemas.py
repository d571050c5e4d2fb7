"""The suppressions API's response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SuppressionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    address: str | None = Field(description="null once the address's owner was erased; it stays suppressed")
    reason: str
    detail: str | None
    provider: str | None
    created_at: datetime | None

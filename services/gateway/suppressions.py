"""``/api/v1/suppressions``: the tenant's suppressed addresses (bounced, complained), listed and removed."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.auth import Tenant
from services.gateway.idempotency import IDEMPOTENT
from services.gateway.problems import PROBLEM_RESPONSES, Problem
from shared.storage.suppressions import SuppressionRepository

router = APIRouter(prefix="/api/v1/suppressions", tags=["suppressions"], responses=PROBLEM_RESPONSES)
Address = Query(min_length=1, max_length=320, description="An email address or a phone number.")


class SuppressionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: str
    address: str | None = Field(description="null once the address's owner was erased; it stays suppressed")
    reason: str
    detail: str | None
    provider: str | None
    created_at: datetime | None


def _suppressions(request: Request) -> SuppressionRepository:
    repository: SuppressionRepository = request.app.state.suppressions
    return repository


@router.get("", response_model=list[SuppressionOut])
async def list_suppressions(
    tenant: Tenant,
    request: Request,
    channel: Literal["email", "sms"] | None = None,
    address: str | None = Query(default=None, min_length=1, max_length=320),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[SuppressionOut]:
    """Suppressed addresses, newest first; ``address`` (with its ``channel``) looks one up."""
    found = await _suppressions(request).for_tenant(tenant, channel=channel, address=address, limit=limit)
    return [SuppressionOut.model_validate(suppression) for suppression in found]


@router.delete("", status_code=204, responses={404: {"description": "Not suppressed"}}, dependencies=[IDEMPOTENT])
async def remove_suppression(
    tenant: Tenant, request: Request, channel: Literal["email", "sms"], address: str = Address
) -> Response:
    """Send to the address again (e.g. the recipient fixed their mailbox)."""
    if not await _suppressions(request).remove(tenant, channel, address):
        raise Problem(404, "Not found", f"{channel} address {address} is not suppressed")
    return Response(status_code=204)

"""``/api/v1/suppressions``: the tenant's suppressed addresses (bounced, complained), listed and removed."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response

from services.gateway.deps import SuppressionsDep
from services.gateway.http.auth import Tenant
from services.gateway.http.idempotency import IDEMPOTENT
from services.gateway.http.problems import PROBLEM_RESPONSES, Problem
from services.gateway.suppressions.schemas import SuppressionOut

router = APIRouter(prefix="/api/v1/suppressions", tags=["suppressions"], responses=PROBLEM_RESPONSES)
Address = Query(min_length=1, max_length=320, description="An email address or a phone number.")


@router.get("", response_model=list[SuppressionOut])
async def list_suppressions(
    tenant: Tenant,
    suppressions: SuppressionsDep,
    channel: Literal["email", "sms"] | None = None,
    address: str | None = Query(default=None, min_length=1, max_length=320),
    limit: int = Query(default=100, ge=1, le=1000),
) -> list[SuppressionOut]:
    """Suppressed addresses, newest first; ``address`` (with its ``channel``) looks one up."""
    found = await suppressions.for_tenant(tenant, channel=channel, address=address, limit=limit)
    return [SuppressionOut.model_validate(suppression) for suppression in found]


@router.delete("", status_code=204, responses={404: {"description": "Not suppressed"}}, dependencies=[IDEMPOTENT])
async def remove_suppression(
    tenant: Tenant, suppressions: SuppressionsDep, channel: Literal["email", "sms"], address: str = Address
) -> Response:
    """Send to the address again (e.g. the recipient fixed their mailbox)."""
    if not await suppressions.remove(tenant, channel, address):
        raise Problem(404, "Not found", f"{channel} address {address} is not suppressed")
    return Response(status_code=204)

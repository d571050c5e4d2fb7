"""``/api/v1/recipients/{user_id}/erasures``: erase a recipient's personal data (GDPR), and its audit.

Admins only: an erasure cannot be undone. See :mod:`shared.storage.erasure` for what it touches.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.gateway.auth import Admin
from services.gateway.idempotency import IDEMPOTENT
from services.gateway.problems import PROBLEM_RESPONSES
from shared.storage.erasure import RecipientEraser

router = APIRouter(prefix="/api/v1/recipients/{user_id}/erasures", tags=["recipients"], responses=PROBLEM_RESPONSES)
UserId = Path(min_length=1, max_length=256, description="The recipient's user id in your system.")
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


def _eraser(request: Request) -> RecipientEraser:
    eraser: RecipientEraser = request.app.state.eraser
    return eraser


@router.post("", status_code=201, response_model=ErasureOut, dependencies=[IDEMPOTENT])
async def erase_recipient(body: ErasureCreate, admin: Admin, request: Request, user_id: str = UserId) -> ErasureOut:
    """Erase the recipient: profile, preferences, devices, dead letters and scheduled sends deleted, their
    notifications anonymised, their suppressed addresses reduced to a blind index. Kept: this audit."""
    erasure = await _eraser(request).erase(
        admin.tenant,
        user_id,
        emails=[str(email) for email in body.emails],
        phones=body.phones,
        requested_by=f"{admin.kind}:{admin.subject}",
    )
    return ErasureOut(**asdict(erasure))


@router.get("", response_model=list[ErasureOut])
async def list_erasures(admin: Admin, request: Request, user_id: str = UserId) -> list[ErasureOut]:
    """The erasures made for this user id, newest first (the audit outlives the data)."""
    return [ErasureOut(**asdict(erasure)) for erasure in await _eraser(request).erasures(admin.tenant, user_id)]

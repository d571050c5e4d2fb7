"""``/api/v1/recipients/{user_id}/erasures``: erase a recipient's personal data (GDPR), and its audit.

Admins only: an erasure cannot be undone. See :mod:`shared.storage.erasure` for what it touches.
"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from services.gateway.deps import EraserDep
from services.gateway.erasures.schemas import ErasureCreate, ErasureOut
from services.gateway.http.auth import Admin
from services.gateway.http.idempotency import IDEMPOTENT
from services.gateway.http.problems import PROBLEM_RESPONSES
from services.gateway.recipients.schemas import PATH, UserId

router = APIRouter(prefix=f"{PATH}/{{user_id}}/erasures", tags=["recipients"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=201, response_model=ErasureOut, dependencies=[IDEMPOTENT])
async def erase_recipient(body: ErasureCreate, admin: Admin, eraser: EraserDep, user_id: str = UserId) -> ErasureOut:
    """Erase the recipient: profile, preferences, devices, dead letters and scheduled sends deleted, their
    notifications anonymised, their suppressed addresses reduced to a blind index. Kept: this audit."""
    erasure = await eraser.erase(
        admin.tenant,
        user_id,
        emails=[str(email) for email in body.emails],
        phones=body.phones,
        requested_by=admin.author,
    )
    return ErasureOut(**asdict(erasure))


@router.get("", response_model=list[ErasureOut])
async def list_erasures(admin: Admin, eraser: EraserDep, user_id: str = UserId) -> list[ErasureOut]:
    """The erasures made for this user id, newest first (the audit outlives the data)."""
    return [ErasureOut(**asdict(erasure)) for erasure in await eraser.erasures(admin.tenant, user_id)]

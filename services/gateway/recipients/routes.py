"""``/api/v1/recipients``: each user's contact details, which the router applies to the notifications
naming that ``recipient.user_id``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.gateway.deps import RecipientsDep
from services.gateway.http import pagination
from services.gateway.http.auth import Tenant
from services.gateway.http.idempotency import IDEMPOTENT
from services.gateway.http.pagination import Cursor, Limit
from services.gateway.http.problems import PROBLEM_RESPONSES
from services.gateway.recipients.schemas import NOT_FOUND, PATH, ContactIn, RecipientOut, RecipientPage, UserId
from services.gateway.recipients.service import not_found
from shared.storage.recipients import Contact

router = APIRouter(prefix=PATH, tags=["recipients"], responses=PROBLEM_RESPONSES)


@router.put(
    "/{user_id}",
    response_model=RecipientOut,
    responses={201: {"description": "Created", "model": RecipientOut}},
    dependencies=[IDEMPOTENT],
)
async def put_recipient(
    body: ContactIn, tenant: Tenant, response: Response, recipients: RecipientsDep, user_id: str = UserId
) -> RecipientOut:
    """Store the user's contact details (201 when new, 200 when they replace the stored ones)."""
    contact = Contact(email=body.email, phone=body.phone, locale=body.locale, timezone=body.timezone)
    profile, created = await recipients.put(tenant, user_id, contact)
    response.status_code = 201 if created else 200
    return RecipientOut.of(profile)


@router.get("/{user_id}", response_model=RecipientOut, responses=NOT_FOUND)
async def get_recipient(tenant: Tenant, recipients: RecipientsDep, user_id: str = UserId) -> RecipientOut:
    """The user's contact details."""
    profile = await recipients.get(tenant, user_id)
    if profile is None:
        raise not_found(user_id)
    return RecipientOut.of(profile)


@router.get("", response_model=RecipientPage)
async def list_recipients(
    tenant: Tenant, request: Request, recipients: RecipientsDep, limit: Limit = 50, cursor: Cursor = None
) -> RecipientPage:
    """The tenant's recipients, newest first; follow `links.next` for the next page."""
    rows = await recipients.page(tenant, limit + 1, pagination.after(cursor))
    shown, links = pagination.page(request, rows, limit)
    return RecipientPage(items=[RecipientOut.of(profile) for profile in shown], links=links)


@router.delete("/{user_id}", status_code=204, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def delete_recipient(tenant: Tenant, recipients: RecipientsDep, user_id: str = UserId) -> Response:
    """Forget the user's contact details (soft delete): hidden, and no longer used for routing."""
    if not await recipients.delete(tenant, user_id):
        raise not_found(user_id)
    return Response(status_code=204)

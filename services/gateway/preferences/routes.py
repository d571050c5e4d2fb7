"""``/api/v1/recipients/{user_id}/preferences``: a recipient's channel preferences, read and replaced whole or
one rule at a time."""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway.deps import RecipientsDep
from services.gateway.http.auth import Tenant
from services.gateway.http.idempotency import IDEMPOTENT
from services.gateway.http.problems import PROBLEM_RESPONSES
from services.gateway.preferences.schemas import PreferenceIn, PreferencesIn, PreferencesOut
from services.gateway.recipients.schemas import NOT_FOUND, PATH, UserId
from services.gateway.recipients.service import not_found
from shared.storage.recipients import Preference

router = APIRouter(prefix=f"{PATH}/{{user_id}}/preferences", tags=["recipients"], responses=PROBLEM_RESPONSES)


def _answer(user_id: str, found: list[Preference] | None) -> PreferencesOut:
    """The answer for ``found``, or a 404 problem when there is no such recipient."""
    if found is None:
        raise not_found(user_id)
    return PreferencesOut.of(user_id, found)


@router.get("", response_model=PreferencesOut, responses=NOT_FOUND)
async def get_preferences(tenant: Tenant, recipients: RecipientsDep, user_id: str = UserId) -> PreferencesOut:
    """The user's channel preferences."""
    return _answer(user_id, await recipients.preferences(tenant, user_id))


@router.put("", response_model=PreferencesOut, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def put_preferences(
    body: PreferencesIn, tenant: Tenant, recipients: RecipientsDep, user_id: str = UserId
) -> PreferencesOut:
    """Replace the user's whole set of preferences (an empty list: opted in to everything)."""
    rules = [preference.rule() for preference in body.preferences]
    return _answer(user_id, await recipients.replace_preferences(tenant, user_id, rules))


@router.patch("", response_model=PreferencesOut, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def patch_preference(
    body: PreferenceIn, tenant: Tenant, recipients: RecipientsDep, user_id: str = UserId
) -> PreferencesOut:
    """Add or change one rule, keeping the others; answers the whole set."""
    return _answer(user_id, await recipients.set_preference(tenant, user_id, body.rule()))

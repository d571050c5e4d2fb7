"""``/api/v1/recipients``: each user's contact details and channel preferences, which the router
applies to the notifications naming that ``recipient.user_id`` (see services/router/preferences.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.gateway import pages
from services.gateway.auth import Tenant
from services.gateway.devices import UserId
from services.gateway.idempotency import IDEMPOTENT
from services.gateway.pages import Cursor, Limit, PageLinks
from services.gateway.problems import PROBLEM_RESPONSES, Problem
from services.gateway.schemas import Channel
from shared.errors import InvalidRequest
from shared.phone import normalize_e164
from shared.schedule import zone
from shared.storage.recipients import Contact, Preference, Profile, RecipientRepository
from shared.templates import LOCALE_PATTERN

PATH = "/api/v1/recipients"
router = APIRouter(prefix=PATH, tags=["recipients"], responses=PROBLEM_RESPONSES)
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"description": "No such recipient (or it was deleted)"}}
MAX_PREFERENCES = 200


class ContactIn(BaseModel):
    """A recipient's contact details; a field left out is not known (it is not kept from before)."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32, description="Any common format; stored in E.164.")
    locale: str | None = Field(default=None, max_length=35, pattern=LOCALE_PATTERN, examples=["fr-FR"])
    timezone: str | None = Field(default=None, max_length=64, examples=["Europe/Paris"], description="IANA zone.")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                validate_email(value, check_deliverability=False)
            except EmailNotValidError as error:
                raise ValueError(str(error)) from None
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        try:
            return None if value is None else normalize_e164(value)
        except InvalidRequest as error:
            raise ValueError(error.detail) from None

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        try:
            return None if value is None else zone(value).key
        except InvalidRequest as error:
            raise ValueError(error.detail) from None


class RecipientLinks(BaseModel):
    self: str
    preferences: str
    devices: str


class RecipientOut(BaseModel):
    user_id: str
    email: str | None
    phone: str | None
    locale: str | None
    timezone: str | None
    created_at: datetime
    updated_at: datetime
    links: RecipientLinks

    @classmethod
    def of(cls, profile: Profile) -> RecipientOut:
        contact, path = profile.contact, f"{PATH}/{profile.user_id}"
        return cls(
            user_id=profile.user_id,
            email=contact.email,
            phone=contact.phone,
            locale=contact.locale,
            timezone=contact.timezone,
            created_at=profile.created_at,
            updated_at=profile.updated_at,
            links=RecipientLinks(self=path, preferences=f"{path}/preferences", devices=f"{path}/devices"),
        )


class RecipientPage(BaseModel):
    items: list[RecipientOut]
    links: PageLinks


class PreferenceIn(BaseModel):
    """Whether the user wants notifications of ``category`` on ``channel``."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9._:-]*)$",
        examples=["marketing"],
        description="The notifications' `metadata.category`; `*` for every category.",
    )
    channel: Literal[Channel, "*"] = Field(description="`*` for every channel.")
    enabled: bool

    def rule(self) -> Preference:
        return Preference(self.category, self.channel, self.enabled)


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preferences: list[PreferenceIn] = Field(max_length=MAX_PREFERENCES)

    @field_validator("preferences")
    @classmethod
    def _each_once(cls, value: list[PreferenceIn]) -> list[PreferenceIn]:
        seen: set[tuple[str, str]] = set()
        for preference in value:
            if (preference.category, preference.channel) in seen:
                raise ValueError(f"category {preference.category!r} on channel {preference.channel!r} is listed twice")
            seen.add((preference.category, preference.channel))
        return value


class PreferenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    category: str
    channel: str
    enabled: bool


class PreferencesOut(BaseModel):
    """The user's rules; the most specific one for a notification's category and channel wins, and
    without one the user is opted in."""

    user_id: str
    preferences: list[PreferenceOut]

    @classmethod
    def of(cls, user_id: str, found: list[Preference] | None) -> PreferencesOut:
        """The answer for ``found``, or a 404 problem when there is no such recipient."""
        if found is None:
            raise _not_found(user_id)
        return cls(user_id=user_id, preferences=[PreferenceOut.model_validate(rule) for rule in found])


def _recipients(request: Request) -> RecipientRepository:
    repository: RecipientRepository = request.app.state.recipients
    return repository


def _not_found(user_id: str) -> Problem:
    return Problem(404, "Not found", f"no recipient {user_id}; create it with PUT {PATH}/{user_id}")


@router.put(
    "/{user_id}",
    response_model=RecipientOut,
    responses={201: {"description": "Created", "model": RecipientOut}},
    dependencies=[IDEMPOTENT],
)
async def put_recipient(
    body: ContactIn, tenant: Tenant, request: Request, response: Response, user_id: str = UserId
) -> RecipientOut:
    """Store the user's contact details (201 when new, 200 when they replace the stored ones)."""
    contact = Contact(email=body.email, phone=body.phone, locale=body.locale, timezone=body.timezone)
    profile, created = await _recipients(request).put(tenant, user_id, contact)
    response.status_code = 201 if created else 200
    return RecipientOut.of(profile)


@router.get("/{user_id}", response_model=RecipientOut, responses=NOT_FOUND)
async def get_recipient(tenant: Tenant, request: Request, user_id: str = UserId) -> RecipientOut:
    """The user's contact details."""
    profile = await _recipients(request).get(tenant, user_id)
    if profile is None:
        raise _not_found(user_id)
    return RecipientOut.of(profile)


@router.get("", response_model=RecipientPage)
async def list_recipients(tenant: Tenant, request: Request, limit: Limit = 50, cursor: Cursor = None) -> RecipientPage:
    """The tenant's recipients, newest first; follow `links.next` for the next page."""
    rows = await _recipients(request).page(tenant, limit + 1, pages.after(cursor))
    shown, links = pages.page(request, rows, limit)
    return RecipientPage(items=[RecipientOut.of(profile) for profile in shown], links=links)


@router.delete("/{user_id}", status_code=204, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def delete_recipient(tenant: Tenant, request: Request, user_id: str = UserId) -> Response:
    """Forget the user's contact details (soft delete): hidden, and no longer used for routing."""
    if not await _recipients(request).delete(tenant, user_id):
        raise _not_found(user_id)
    return Response(status_code=204)


@router.get("/{user_id}/preferences", response_model=PreferencesOut, responses=NOT_FOUND)
async def get_preferences(tenant: Tenant, request: Request, user_id: str = UserId) -> PreferencesOut:
    """The user's channel preferences."""
    return PreferencesOut.of(user_id, await _recipients(request).preferences(tenant, user_id))


@router.put("/{user_id}/preferences", response_model=PreferencesOut, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def put_preferences(
    body: PreferencesIn, tenant: Tenant, request: Request, user_id: str = UserId
) -> PreferencesOut:
    """Replace the user's whole set of preferences (an empty list: opted in to everything)."""
    rules = [preference.rule() for preference in body.preferences]
    return PreferencesOut.of(user_id, await _recipients(request).replace_preferences(tenant, user_id, rules))


@router.patch("/{user_id}/preferences", response_model=PreferencesOut, responses=NOT_FOUND, dependencies=[IDEMPOTENT])
async def patch_preference(
    body: PreferenceIn, tenant: Tenant, request: Request, user_id: str = UserId
) -> PreferencesOut:
    """Add or change one rule, keeping the others; answers the whole set."""
    return PreferencesOut.of(user_id, await _recipients(request).set_preference(tenant, user_id, body.rule()))

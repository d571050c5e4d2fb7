"""The recipients API's request and response bodies."""

from __future__ import annotations

from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.gateway.http.pagination import PageLinks
from shared.errors import InvalidRequest
from shared.phone import normalize_e164
from shared.schedule import zone
from shared.storage.recipients import Profile
from shared.templates import LOCALE_PATTERN

PATH = "/api/v1/recipients"
# The path parameter of every route under /api/v1/recipients/{user_id}.
UserId = Path(min_length=1, max_length=256, description="The recipient's user id in your system.")
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"description": "No such recipient (or it was deleted)"}}


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

"""The preferences API's request and response bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.gateway.http.schemas import Channel
from shared.storage.recipients import Preference

MAX_PREFERENCES = 200


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
    def of(cls, user_id: str, found: list[Preference]) -> PreferencesOut:
        return cls(user_id=user_id, preferences=[PreferenceOut.model_validate(rule) for rule in found])

"""Types every resource's bodies use: channels, RFC 3339 times, links, and the strict request body."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict

Channel = Literal["email", "sms", "push", "webhook"]
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _date_time_text(value: object) -> object:
    # pydantic would also read a number (or a numeric string) as seconds since 1970: the API means RFC 3339.
    if isinstance(value, int | float) or (isinstance(value, str) and not _DATE_TIME.match(value)):
        raise ValueError("expected an RFC 3339 date-time, like 2026-12-24T08:00:00Z")
    return value


# A date and time as RFC 3339 text; Instant: with its UTC offset.
DateTime = Annotated[datetime, BeforeValidator(_date_time_text)]
Instant = Annotated[AwareDatetime, BeforeValidator(_date_time_text)]


class Body(BaseModel):
    """A request body: a field the API does not know is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Links(BaseModel):
    self: str

"""The API side of newest-first keyset pages: the ``limit`` and ``cursor`` parameters and ``links.next``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Protocol, TypeVar
from urllib.parse import urlencode

from fastapi import Query, Request
from pydantic import BaseModel

from services.gateway.http.problems import Problem
from shared.storage.pagination import PageCursor

MAX_LIMIT = 500
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1 to {MAX_LIMIT}.")]
Cursor = Annotated[str | None, Query(description="Opaque; `links.next` of the previous page carries it.")]


class PageLinks(BaseModel):
    next: str | None


class Listed(Protocol):
    """What a listed row has: the keyset of its order."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=Listed)


def after(cursor: str | None) -> PageCursor | None:
    """Where the requested page starts; a cursor this API did not make is a 422 naming ``cursor``."""
    if cursor is None:
        return None
    try:
        return PageCursor.decode(cursor)
    except ValueError as error:
        errors = [{"pointer": "#/query/cursor", "detail": str(error)}]
        raise Problem(422, "Invalid request", str(error), errors=errors) from error


def page(request: Request, rows: Sequence[T], limit: int) -> tuple[Sequence[T], PageLinks]:
    """The page out of ``rows`` (fetched with ``limit + 1``: one more tells whether a next page exists)
    and its links; the next page's link keeps every query parameter (repeated ones too) but the cursor."""
    if len(rows) <= limit:
        return rows, PageLinks(next=None)
    rows = rows[:limit]
    token = PageCursor(rows[-1].created_at, rows[-1].id).encode()
    query = [(name, value) for name, value in request.query_params.multi_items() if name != "cursor"]
    return rows, PageLinks(next=f"{request.url.path}?{urlencode([*query, ('cursor', token)])}")

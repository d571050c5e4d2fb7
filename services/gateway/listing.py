"""``GET /api/v1/notifications``: the tenant's notifications, newest first, filtered, a keyset page at a time."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from services.gateway import pages
from services.gateway.auth import Tenant
from services.gateway.pages import Cursor, Limit, PageLinks
from services.gateway.problems import PROBLEM_RESPONSES, Problem
from services.gateway.repository import NotificationFilter, NotificationRepository, NotificationSummary
from services.gateway.schemas import Channel, Instant, Links
from shared.status import RANKS
from shared.storage.recipient_index import RecipientIndex

PATH = "/api/v1/notifications"
router = APIRouter(prefix=PATH, tags=["notifications"])


@dataclass(frozen=True, kw_only=True)
class NotificationItem(NotificationSummary):
    """A notification in the listing; ``links.self`` shows it with its history."""

    links: Links


def _index(request: Request) -> RecipientIndex:
    index: RecipientIndex = request.app.state.recipient_index
    return index


class NotificationPage(BaseModel):
    items: list[NotificationItem]
    links: PageLinks


def _filter(
    tenant: Tenant,
    request: Request,
    status: Annotated[
        list[str] | None,
        Query(description=f"Repeatable (`?status=failed&status=rejected`): any of {', '.join(RANKS)}."),
    ] = None,
    channel: Annotated[Channel | None, Query(description="The channel it went out on (known once routed).")] = None,
    recipient: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=320,
            description="The person as routing knows them, exactly as the request gave it: its recipient.user_id, "
            "else its email, else its phone.",
        ),
    ] = None,
    message_type: Annotated[
        str | None, Query(alias="type", min_length=1, max_length=256, description="Its `metadata.type`.")
    ] = None,
    template: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="The id of the stored template it was sent with."),
    ] = None,
    created_after: Annotated[Instant | None, Query(description="Accepted after this.")] = None,
    created_before: Annotated[Instant | None, Query(description="Accepted before this.")] = None,
) -> NotificationFilter:
    unknown = sorted(set(status or ()) - RANKS.keys())
    if unknown:
        detail = f"unknown status {', '.join(map(repr, unknown))}; one of {', '.join(RANKS)}"
        raise Problem(422, "Invalid request", detail, errors=[{"pointer": "#/query/status", "detail": detail}])
    return NotificationFilter(
        tenant,
        statuses=tuple(status or ()),
        channel=channel,
        # Only hashes are stored (addresses are PII): the filter is hashed the same way to match.
        recipient_hashes=() if recipient is None else _index(request).matching(tenant, recipient),
        message_type=message_type,
        template_id=template,
        created_after=created_after,
        created_before=created_before,
    )


@router.get("", response_model=NotificationPage, responses=PROBLEM_RESPONSES)
async def list_notifications(
    where: Annotated[NotificationFilter, Depends(_filter)], request: Request, limit: Limit = 50, cursor: Cursor = None
) -> NotificationPage:
    """The tenant's notifications, newest first; follow `links.next` for the next page.

    Pages are keyset pages: notifications accepted meanwhile never shift them (no duplicates, no gaps).
    """
    repository: NotificationRepository = request.app.state.notifications
    rows, links = pages.page(request, await repository.page(where, limit + 1, pages.after(cursor)), limit)
    items = [NotificationItem(**asdict(row), links=Links(self=f"{PATH}/{row.id}")) for row in rows]
    return NotificationPage(items=items, links=links)

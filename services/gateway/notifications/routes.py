"""``/api/v1/notifications``: accept one or a bulk, list them, read one's status and history, cancel, retry.

The route functions only translate HTTP; the domain logic is in :mod:`.service`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from services.gateway.dead_letters.schemas import Requeued
from services.gateway.deps import (
    IntakeDep,
    NotificationsDep,
    ProducerDep,
    RecipientIndexDep,
    RequeuerDep,
    SettingsDep,
    StatusDep,
)
from services.gateway.http import pagination
from services.gateway.http.auth import Tenant
from services.gateway.http.idempotency import IDEMPOTENT, IdempotencyKey
from services.gateway.http.pagination import Cursor, Limit
from services.gateway.http.problems import PROBLEM_RESPONSES, Problem
from services.gateway.http.schemas import Channel, Instant, Links
from services.gateway.notifications import service
from services.gateway.notifications.repository import NotificationFilter
from services.gateway.notifications.schemas import (
    PATH,
    BulkCreate,
    BulkOutcome,
    NotificationAccepted,
    NotificationCancelled,
    NotificationCreate,
    NotificationItem,
    NotificationOut,
    NotificationPage,
)
from shared.status import RANKS

router = APIRouter(prefix=PATH, tags=["notifications"])


@router.post("", status_code=202, response_model=NotificationAccepted, responses=PROBLEM_RESPONSES)
async def create_notification(
    body: NotificationCreate, tenant: Tenant, response: Response, idempotency_key: IdempotencyKey, intake: IntakeDep
) -> NotificationAccepted:
    """Accept a notification for delivery. A 202 means it is durable; a GET right after finds it.

    The same ``Idempotency-Key`` and body again get the first answer (the same id) and deliver once.
    """
    notification_id = await intake.one(body, tenant_id=tenant, idempotency_key=idempotency_key)
    location = f"{PATH}/{notification_id}"
    response.headers["Location"] = location
    return NotificationAccepted(id=notification_id, links=Links(self=location))


@router.get("/{notification_id}", response_model=NotificationOut, responses={404: {"description": "Not found"}})
async def get_notification(notification_id: str, tenant: Tenant, notifications: NotificationsDep) -> NotificationOut:
    """A notification's current status and every status change, oldest first."""
    view = await notifications.get(tenant, notification_id)
    if view is None:
        raise service.not_found(notification_id)
    return NotificationOut.of(view)


@router.delete(
    "/{notification_id}",
    status_code=202,
    response_model=NotificationCancelled,
    responses={404: {"description": "Not found"}, 409: {"description": "Already sent or failed"}},
    dependencies=[IDEMPOTENT],
)
async def cancel_notification(
    notification_id: str, tenant: Tenant, notifications: NotificationsDep, producer: ProducerDep, reporter: StatusDep
) -> NotificationCancelled:
    """Cancel a scheduled or pending notification, and the rest of its series if it recurs.

    409 once it was sent (or failed). Asynchronous: the status shows ``cancelled`` shortly after.
    """
    cancelled = await service.cancel(
        notification_id, tenant_id=tenant, notifications=notifications, producer=producer, reporter=reporter
    )
    return NotificationCancelled(id=cancelled)


@router.post(
    "/{notification_id}/retry",
    status_code=202,
    response_model=Requeued,
    responses={404: {"description": "Not found"}, 409: {"description": "Nothing failed to send again"}},
    dependencies=[IDEMPOTENT],
)
async def retry_notification(
    notification_id: str, tenant: Tenant, notifications: NotificationsDep, requeuer: RequeuerDep
) -> Requeued:
    """Send the notification's failed delivery again by hand (its newest dead letter not sent again yet)."""
    return await service.retry(notification_id, tenant_id=tenant, notifications=notifications, requeuer=requeuer)


async def _filter(
    tenant: Tenant,
    index: RecipientIndexDep,
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
        recipient_hashes=() if recipient is None else index.matching(tenant, recipient),
        message_type=message_type,
        template_id=template,
        created_after=created_after,
        created_before=created_before,
    )


@router.get("", response_model=NotificationPage, responses=PROBLEM_RESPONSES)
async def list_notifications(
    where: Annotated[NotificationFilter, Depends(_filter)],
    request: Request,
    notifications: NotificationsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> NotificationPage:
    """The tenant's notifications, newest first; follow `links.next` for the next page.

    Pages are keyset pages: notifications accepted meanwhile never shift them (no duplicates, no gaps).
    """
    rows = await notifications.page(where, limit + 1, pagination.after(cursor))
    shown, links = pagination.page(request, rows, limit)
    return NotificationPage(items=[NotificationItem.of(row) for row in shown], links=links)


@router.post(
    "/bulk",
    response_model=BulkOutcome,
    response_model_exclude_none=True,
    responses={**PROBLEM_RESPONSES, 413: {"description": "Body over HERALD_BULK_MAX_BODY_BYTES (problem+json)"}},
    dependencies=[IDEMPOTENT],
)
async def create_notifications(
    body: BulkCreate, tenant: Tenant, request: Request, settings: SettingsDep, intake: IntakeDep
) -> BulkOutcome:
    """Accept up to HERALD_BULK_MAX_ITEMS notifications, each checked on its own.

    200 with one result per item in request order: its `id`, or its `error` (a problem document
    whose pointers are into this request's body). The accepted ones are durable in Kafka, as a
    single POST's 202 promises. Give each item an `idempotency_key` to make a retry safe.
    """
    if len(body.notifications) > settings.bulk_max_items:
        detail = f"at most {settings.bulk_max_items} notifications per request, got {len(body.notifications)}"
        raise Problem(422, "Invalid request", detail, errors=[{"pointer": "#/notifications", "detail": detail}])
    return await intake.bulk(body.notifications, tenant_id=tenant, path=request.url.path)

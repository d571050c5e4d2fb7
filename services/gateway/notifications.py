"""``/api/v1/notifications``: accept a notification, read its status and history.

The route functions only translate HTTP; :func:`prepare` and :func:`accept` are the domain logic, shared
with the bulk route (:mod:`services.gateway.bulk`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta

import structlog
from fastapi import APIRouter, Request, Response

from services.gateway.auth import Tenant
from services.gateway.dead_letters import Requeued, send_again
from services.gateway.idempotency import IDEMPOTENT, IdempotencyKey
from services.gateway.problems import PROBLEM_RESPONSES, Problem
from services.gateway.repository import AcceptedNotification, NotificationView
from services.gateway.schemas import (
    AttemptOut,
    DeliveryOut,
    Links,
    NotificationAccepted,
    NotificationCancelled,
    NotificationCreate,
    NotificationOut,
    StatusChange,
)
from services.gateway.templates import KnownTemplates
from shared import status
from shared.batching import GroupWriter
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Produce, headers_for, message_key
from shared.messages import NOTIFICATION_REQUEST, NotificationRequest
from shared.observability.tracing import span
from shared.requests import build_request, recipient_key, recipient_of, validate_request
from shared.schedule import zone
from shared.status_events import StatusReporter
from shared.storage.recipient_index import RecipientIndex
from shared.topics import Topics

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


def _instant(moment: datetime | None, timezone: str | None) -> datetime | None:
    """``moment`` as an instant: a time without a UTC offset is a local time in ``timezone``."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone(timezone))


def prepare(
    body: NotificationCreate, *, tenant_id: str, idempotency_key: str | None, min_recurrence_interval: timedelta
) -> NotificationRequest:
    """The request ``body`` asks for, checked by the shared rules (raises :class:`InvalidRequest`)."""
    request = build_request(
        tenant_id=tenant_id,
        channels=body.channels,
        recipient=body.recipient.model_dump(),
        content=body.content.model_dump(),
        variables=body.variables,
        idempotency_key=idempotency_key,
        priority=body.priority,
        metadata=body.metadata,
        tracking=body.tracking.model_dump(),
        dedup=body.dedup.model_dump(),
        send_at=_instant(body.send_at, body.timezone),
        timezone=body.timezone,
        recurrence={"cron": body.recurrence.cron, "until": _instant(body.recurrence.until, body.timezone)}
        if body.recurrence
        else None,
    )
    validate_request(request, min_recurrence_interval=min_recurrence_interval)
    return request


def _accepted(request: NotificationRequest, index: RecipientIndex) -> AcceptedNotification:
    tenant_id = request["tenant_id"]
    person = recipient_of(request["recipient"])
    template = request["content"]["template"]
    return AcceptedNotification(
        request["notification_id"],
        tenant_id,
        request["idempotency_key"],
        request["created_at"],
        recipient_hash=None if person is None else index.of(tenant_id, person),
        message_type=request["metadata"].get("type"),
        template_id=None if template is None else template["id"],
    )


async def accept(
    requests: Sequence[NotificationRequest],
    *,
    producer: MessageProducer,
    record: Callable[[Sequence[AcceptedNotification]], Awaitable[object]],
    topics: Topics,
    index: RecipientIndex,
) -> None:
    """Make prepared requests durable in Kafka in one produce (every one acknowledged, ``acks=all``),
    then ``record`` them as accepted. The one path of a single POST and of a bulk."""
    ids = [request["notification_id"] for request in requests]
    attributes = {"notification_id": ids[0]} if len(ids) == 1 else {"notifications": str(len(ids))}
    with span("gateway.accept", None, **attributes) as traceparent:
        records = [
            Produce(
                topics.requests,
                NOTIFICATION_REQUEST.encode(request),
                key=recipient_key(request["tenant_id"], request["recipient"], request["notification_id"]),
                headers=headers_for(request["tenant_id"], "notification_request", traceparent),
            )
            for request in requests
        ]
        await producer.produce(records)
    try:
        await record([_accepted(request, index) for request in requests])
    except Exception as error:
        # Kafka has them, so they will be delivered and the status service will create the rows: still accepted.
        log.warning("record_accepted_failed", notification_id=ids[0], notifications=len(ids), error=repr(error))


async def accept_notification(
    body: NotificationCreate,
    *,
    tenant_id: str,
    idempotency_key: str | None,
    producer: MessageProducer,
    recorder: GroupWriter[AcceptedNotification],
    topics: Topics,
    templates: KnownTemplates,
    index: RecipientIndex,
    min_recurrence_interval: timedelta,
) -> str:
    """Make the request durable in Kafka, record it as accepted, and return its id."""
    request = prepare(
        body, tenant_id=tenant_id, idempotency_key=idempotency_key, min_recurrence_interval=min_recurrence_interval
    )
    await templates.check(request)

    async def record(accepted: Sequence[AcceptedNotification]) -> None:
        # Concurrent POSTs share one INSERT through the group writer.
        await recorder.submit(accepted[0])

    await accept([request], producer=producer, record=record, topics=topics, index=index)
    return request["notification_id"]


@router.post("", status_code=202, response_model=NotificationAccepted, responses=PROBLEM_RESPONSES)
async def create_notification(
    body: NotificationCreate,
    tenant: Tenant,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey,
) -> NotificationAccepted:
    """Accept a notification for delivery. A 202 means it is durable; a GET right after finds it.

    The same ``Idempotency-Key`` and body again get the first answer (the same id) and deliver once.
    """
    state = request.app.state
    notification_id = await accept_notification(
        body,
        tenant_id=tenant,
        idempotency_key=idempotency_key,
        producer=state.producer,
        recorder=state.accepted,
        topics=state.topics,
        templates=state.known_templates,
        index=state.recipient_index,
        min_recurrence_interval=state.min_recurrence_interval,
    )
    location = f"{router.prefix}/{notification_id}"
    response.headers["Location"] = location
    return NotificationAccepted(id=notification_id, links=Links(self=location))


@router.get("/{notification_id}", response_model=NotificationOut, responses={404: {"description": "Not found"}})
async def get_notification(notification_id: str, tenant: Tenant, request: Request) -> NotificationOut:
    """A notification's current status and every status change, oldest first."""
    view = await request.app.state.notifications.get(tenant, notification_id)
    if view is None:
        raise Problem(404, "Not found", f"no notification {notification_id}")
    return NotificationOut(
        id=view.id,
        status=view.status,
        channel=view.channel,
        attempts=view.attempts,
        duplicates=view.duplicates,
        idempotency_key=view.idempotency_key,
        last_reason=view.last_reason,
        last_detail=view.last_detail,
        created_at=view.created_at,
        updated_at=view.updated_at,
        history=[StatusChange(**{k: v for k, v in asdict(e).items() if k != "event_id"}) for e in view.events],
        deliveries=[DeliveryOut(**asdict(d), attempt_history=_attempts(view, d.id)) for d in view.deliveries],
    )


def _attempts(view: NotificationView, delivery_id: str) -> list[AttemptOut]:
    """The delivery's tries, oldest first, from the senders' events in the notification's history."""
    return [
        AttemptOut(
            attempt=e.attempt,
            at=e.occurred_at,
            provider=e.provider,
            outcome=e.status,
            reason=e.reason,
            detail=e.detail,
        )
        for e in view.events
        if e.delivery_id == delivery_id and e.attempt is not None
    ]


# What can still be stopped: held back until its time or a retry (the retry service drops it), or not
# yet past the router. A notification already on its way to the provider may still go out: GET tells.
CANCELLABLE = frozenset({status.ACCEPTED, status.SCHEDULED, status.ROUTED, status.RETRYING, status.CANCELLED})


@router.delete(
    "/{notification_id}",
    status_code=202,
    response_model=NotificationCancelled,
    responses={404: {"description": "Not found"}, 409: {"description": "Already sent or failed"}},
    dependencies=[IDEMPOTENT],
)
async def cancel_notification(notification_id: str, tenant: Tenant, request: Request) -> NotificationCancelled:
    """Cancel a scheduled or pending notification, and the rest of its series if it recurs.

    409 once it was sent (or failed). Asynchronous: the status shows ``cancelled`` shortly after.
    """
    state = request.app.state
    view = await state.notifications.get(tenant, notification_id)
    if view is None:
        raise Problem(404, "Not found", f"no notification {notification_id}")
    if view.status not in CANCELLABLE:
        raise Problem(409, "Conflict", f"notification {notification_id} is already {view.status}")
    reporter = StatusReporter(state.topics.status, "gateway")
    event = reporter.event(
        notification_id=view.id,
        tenant_id=tenant,
        status=status.CANCELLED,
        key=message_key(tenant, view.id),
        detail="cancelled through the API",
    )
    await state.producer.produce([event])
    return NotificationCancelled(id=view.id)


@router.post(
    "/{notification_id}/retry",
    status_code=202,
    response_model=Requeued,
    responses={404: {"description": "Not found"}, 409: {"description": "Nothing failed to send again"}},
    dependencies=[IDEMPOTENT],
)
async def retry_notification(notification_id: str, tenant: Tenant, request: Request) -> Requeued:
    """Send the notification's failed delivery again by hand (its newest dead letter not sent again yet)."""
    dead_letter_id = await request.app.state.dead_letters.latest_unsent(tenant, notification_id)
    if dead_letter_id is None:
        view = await request.app.state.notifications.get(tenant, notification_id)
        if view is None:
            raise Problem(404, "Not found", f"no notification {notification_id}")
        raise Problem(409, "Conflict", f"notification {notification_id} is {view.status}: nothing failed to send again")
    return await send_again(tenant, dead_letter_id, request)

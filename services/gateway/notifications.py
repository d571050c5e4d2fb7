"""``/api/v1/notifications``: accept a notification, read its status and history.

The route functions only translate HTTP; :func:`accept_notification` is the domain logic.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import structlog
from fastapi import APIRouter, Header, Request, Response

from services.gateway.auth import Tenant
from services.gateway.problems import Problem
from services.gateway.repository import AcceptedNotification
from services.gateway.schemas import (
    DeliveryOut,
    Links,
    NotificationAccepted,
    NotificationCreate,
    NotificationOut,
    StatusChange,
)
from shared.batching import GroupWriter
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Produce, headers_for
from shared.messages import NOTIFICATION_REQUEST
from shared.observability.tracing import span
from shared.requests import build_request, recipient_key, validate_request
from shared.topics import Topics

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])

PROBLEM_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "Missing or invalid API key (problem+json)"},
    422: {"description": "Invalid request; `errors[].pointer` names each bad field (problem+json)"},
}


async def accept_notification(
    body: NotificationCreate,
    *,
    tenant_id: str,
    idempotency_key: str | None,
    producer: MessageProducer,
    recorder: GroupWriter[AcceptedNotification],
    topics: Topics,
) -> str:
    """Make the request durable in Kafka, record it as accepted, and return its id."""
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
    )
    validate_request(request)
    notification_id = request["notification_id"]
    with span("gateway.accept", notification_id=notification_id) as traceparent:
        record = Produce(
            topics.requests,
            NOTIFICATION_REQUEST.encode(request),
            key=recipient_key(tenant_id, request["recipient"], notification_id),
            headers=headers_for(tenant_id, "notification_request", traceparent),
        )
        await producer.produce([record])
    try:
        await recorder.submit(AcceptedNotification(notification_id, tenant_id, idempotency_key, request["created_at"]))
    except Exception as error:
        # Kafka has it, so it will be delivered and the status service will create the row: still a 202.
        log.warning("record_accepted_failed", notification_id=notification_id, error=repr(error))
    return notification_id


@router.post("", status_code=202, response_model=NotificationAccepted, responses=PROBLEM_RESPONSES)
async def create_notification(
    body: NotificationCreate,
    tenant: Tenant,
    request: Request,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> NotificationAccepted:
    """Accept a notification for delivery. A 202 means it is durable; a GET right after finds it.

    The same ``Idempotency-Key`` again returns the same id and delivers once.
    """
    state = request.app.state
    notification_id = await accept_notification(
        body,
        tenant_id=tenant,
        idempotency_key=idempotency_key,
        producer=state.producer,
        recorder=state.accepted,
        topics=state.topics,
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
        idempotency_key=view.idempotency_key,
        last_reason=view.last_reason,
        last_detail=view.last_detail,
        created_at=view.created_at,
        updated_at=view.updated_at,
        history=[StatusChange(**{k: v for k, v in asdict(e).items() if k != "event_id"}) for e in view.events],
        deliveries=[DeliveryOut(**asdict(d)) for d in view.deliveries],
    )

"""``POST /api/v1/notifications/bulk``: many notifications in one request, each accepted or refused on its own.

Every item goes through the single route's rules (:func:`services.gateway.notifications.prepare`); the
valid ones share one produce to Kafka and one INSERT (:func:`services.gateway.notifications.accept`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.gateway.auth import Tenant
from services.gateway.idempotency import IDEMPOTENT, MAX_KEY_LENGTH
from services.gateway.notifications import accept, prepare
from services.gateway.problems import PROBLEM_RESPONSES, Problem, invalid_fields, invalid_request, problem_document
from services.gateway.schemas import Links, NotificationCreate
from shared.errors import InvalidRequest
from shared.messages import NotificationRequest

NOTIFICATIONS = "/api/v1/notifications"
PATH = f"{NOTIFICATIONS}/bulk"


class BulkItem(NotificationCreate):
    """One notification of a bulk: the single route's body, and its ``Idempotency-Key`` as a field."""

    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=r"^[\x20-\x7e]+$",
        description="Names the notification as the single route's Idempotency-Key header does: the same "
        "tenant and key always give the same id, and ingest drops a repeat within its dedup window.",
    )


class BulkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Items are checked one by one in the route, so that one bad item refuses itself, not the request.
    notifications: list[Any] = Field(
        min_length=1,
        description="Each a `POST /api/v1/notifications` body, plus an optional `idempotency_key`; "
        "at most HERALD_BULK_MAX_ITEMS (1,000).",
    )


class BulkResult(BaseModel):
    index: int = Field(description="The item's position in `notifications`.")
    id: str | None = Field(default=None, description="Set when accepted.")
    links: Links | None = None
    error: dict[str, Any] | None = Field(default=None, description="Set when refused: an RFC 9457 problem.")


class BulkOutcome(BaseModel):
    accepted: int
    rejected: int
    results: list[BulkResult] = Field(description="One per item, in request order.")


def routes(max_items: int) -> APIRouter:
    """The bulk route, taking at most ``max_items`` notifications per request."""
    router = APIRouter(tags=["notifications"])

    @router.post(
        PATH,
        response_model=BulkOutcome,
        response_model_exclude_none=True,
        responses={**PROBLEM_RESPONSES, 413: {"description": "Body over HERALD_BULK_MAX_BODY_BYTES (problem+json)"}},
        dependencies=[IDEMPOTENT],
    )
    async def create_notifications(body: BulkCreate, tenant: Tenant, request: Request) -> BulkOutcome:
        """Accept up to HERALD_BULK_MAX_ITEMS notifications, each checked on its own.

        200 with one result per item in request order: its `id`, or its `error` (a problem document
        whose pointers are into this request's body). The accepted ones are durable in Kafka, as a
        single POST's 202 promises. Give each item an `idempotency_key` to make a retry safe.
        """
        if len(body.notifications) > max_items:
            detail = f"at most {max_items} notifications per request, got {len(body.notifications)}"
            raise Problem(422, "Invalid request", detail, errors=[{"pointer": "#/notifications", "detail": detail}])
        results: list[BulkResult] = []
        valid: list[NotificationRequest] = []
        keys: dict[str, int] = {}
        for index, raw in enumerate(body.notifications):
            where = ("notifications", index)
            try:
                valid.append(_prepare(index, raw, tenant, keys, request.app.state.min_recurrence_interval))
            except ValidationError as error:
                results.append(BulkResult(index=index, error=_problem(invalid_fields(error.errors(), where), request)))
            except InvalidRequest as error:
                results.append(BulkResult(index=index, error=_problem(invalid_request(error, where), request)))
            else:
                location = f"{NOTIFICATIONS}/{valid[-1]['notification_id']}"
                results.append(BulkResult(index=index, id=valid[-1]["notification_id"], links=Links(self=location)))
        state = request.app.state
        # One lookup for the stored templates the valid items name; an item naming none that exists is refused.
        refused = await state.known_templates.refusals(valid)
        accepted = [result.index for result in results if result.id is not None]
        for position, refusal in refused.items():
            index = accepted[position]
            where = ("notifications", index)
            results[index] = BulkResult(index=index, error=_problem(invalid_request(refusal, where), request))
        valid = [item for position, item in enumerate(valid) if position not in refused]
        if valid:
            # Straight to the repository, not the group writer: the whole bulk is one INSERT.
            await accept(
                valid,
                producer=state.producer,
                record=state.notifications.record_accepted,
                topics=state.topics,
                index=state.recipient_index,
            )
        return BulkOutcome(accepted=len(valid), rejected=len(results) - len(valid), results=results)

    return router


def _prepare(
    index: int, raw: object, tenant: str, keys: dict[str, int], min_recurrence_interval: timedelta
) -> NotificationRequest:
    """Item ``index`` as a checked request (raises ValidationError or InvalidRequest); ``keys`` maps the
    idempotency keys of the items accepted so far to their index."""
    item = BulkItem.model_validate(raw)
    key = item.idempotency_key
    if key is not None and key in keys:
        # Both would name one notification: the first item has it, this one is refused.
        raise InvalidRequest("idempotency_key", f"the same key as item {keys[key]}")
    request = prepare(item, tenant_id=tenant, idempotency_key=key, min_recurrence_interval=min_recurrence_interval)
    if key is not None:
        keys[key] = index
    return request


def _problem(problem: Problem, request: Request) -> dict[str, Any]:
    return problem_document(problem, request.url.path)

"""Notifications: checking a request, making it durable in Kafka and recording it, cancelling it.

One path for a single POST and a bulk: :func:`prepare` checks each request by the shared rules, and
:func:`accept` produces the valid ones in one produce (every one acknowledged, ``acks=all``), then records
them as accepted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError

from services.gateway.dead_letters.schemas import Requeued
from services.gateway.dead_letters.service import Requeuer
from services.gateway.http.problems import Problem, invalid_fields, invalid_request, problem_document
from services.gateway.http.schemas import Links
from services.gateway.notifications.repository import AcceptedNotification, NotificationRepository
from services.gateway.notifications.schemas import PATH, BulkItem, BulkOutcome, BulkResult, NotificationCreate
from services.gateway.templates.service import KnownTemplates
from shared import status
from shared.batching import GroupWriter
from shared.errors import InvalidRequest
from shared.kafka.producer import MessageProducer
from shared.kafka.records import message_key
from shared.messages import NotificationRequest
from shared.observability.tracing import producing
from shared.producer_keys import ProducerKey
from shared.requests import build_request, recipient_of, request_record, validate_request
from shared.schedule import zone
from shared.status_events import StatusReporter
from shared.storage.recipient_index import RecipientIndex
from shared.topics import Topics

log = structlog.get_logger(__name__)

# What can still be stopped: held back until its time or a retry (the retry service drops it), or not
# yet past the router. A notification already on its way to the provider may still go out: GET tells.
CANCELLABLE = frozenset({status.ACCEPTED, status.SCHEDULED, status.ROUTED, status.RETRYING, status.CANCELLED})


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
    signing_key: bytes | None,
) -> None:
    """Make prepared requests durable in Kafka in one produce (every one acknowledged, ``acks=all``),
    then ``record`` them as accepted. The one path of a single POST and of a bulk. Each is signed as
    Herald's own (``signing_key``: the producer keys' master key), so ingest takes it for its tenant."""
    ids = [request["notification_id"] for request in requests]
    attributes = {"herald.notification_id": ids[0]} if len(ids) == 1 else {}
    destinations = [topics.requests_for(request["priority"]) for request in requests]
    # When spans are exported, a child of the request's SERVER span, which continues the caller's traceparent.
    with producing(destinations, len(requests), **attributes) as traceparent:
        records = [
            request_record(
                request,
                topic,
                traceparent,
                ProducerKey.internal(signing_key, request["tenant_id"]),
            )
            for request, topic in zip(requests, destinations, strict=True)
        ]
        await producer.produce(records)
    try:
        await record([_accepted(request, index) for request in requests])
    except Exception as error:
        # Kafka has them, so they will be delivered and the status service will create the rows: still accepted.
        log.warning("record_accepted_failed", notification_id=ids[0], notifications=len(ids), error=repr(error))


def _check_bulk(
    items: Sequence[Any], *, tenant_id: str, path: str, min_recurrence_interval: timedelta
) -> tuple[list[BulkResult], list[NotificationRequest]]:
    """Each item checked on its own: a result per item (its id, or its problem with pointers into the
    bulk's body at ``path``), and the requests of the valid ones."""
    results: list[BulkResult] = []
    valid: list[NotificationRequest] = []
    keys: dict[str, int] = {}
    for index, raw in enumerate(items):
        where = ("notifications", index)
        try:
            valid.append(_prepare_item(index, raw, tenant_id, keys, min_recurrence_interval))
        except ValidationError as error:
            results.append(BulkResult(index=index, error=problem_document(invalid_fields(error.errors(), where), path)))
        except InvalidRequest as error:
            results.append(BulkResult(index=index, error=problem_document(invalid_request(error, where), path)))
        else:
            location = f"{PATH}/{valid[-1]['notification_id']}"
            results.append(BulkResult(index=index, id=valid[-1]["notification_id"], links=Links(self=location)))
    return results, valid


@dataclass(frozen=True)
class Intake:
    """What accepting notifications takes: a single POST through the group writer (concurrent POSTs share
    one INSERT), a bulk straight to the repository (the whole bulk is one INSERT)."""

    producer: MessageProducer
    topics: Topics
    index: RecipientIndex
    templates: KnownTemplates
    recorder: GroupWriter[AcceptedNotification]
    notifications: NotificationRepository
    min_recurrence_interval: timedelta
    # The producer keys' master key: the gateway signs its requests as Herald's own (None: unsigned).
    signing_key: bytes | None

    async def one(self, body: NotificationCreate, *, tenant_id: str, idempotency_key: str | None) -> str:
        """Make the request durable in Kafka, record it as accepted, and return its id."""
        request = prepare(
            body,
            tenant_id=tenant_id,
            idempotency_key=idempotency_key,
            min_recurrence_interval=self.min_recurrence_interval,
        )
        await self.templates.check(request)

        async def record(accepted: Sequence[AcceptedNotification]) -> None:
            await self.recorder.submit(accepted[0])

        await accept(
            [request],
            producer=self.producer,
            record=record,
            topics=self.topics,
            index=self.index,
            signing_key=self.signing_key,
        )
        return request["notification_id"]

    async def bulk(self, items: Sequence[Any], *, tenant_id: str, path: str) -> BulkOutcome:
        """Accept the valid items of a bulk in one produce and one INSERT; refuse each other one on its own
        (its problem's pointers into the bulk's body at ``path``)."""
        results, valid = _check_bulk(
            items, tenant_id=tenant_id, path=path, min_recurrence_interval=self.min_recurrence_interval
        )
        # One lookup for the stored templates the valid items name; an item naming none that exists is refused.
        refused = await self.templates.refusals(valid)
        accepted = [result.index for result in results if result.id is not None]
        for position, refusal in refused.items():
            item = accepted[position]
            problem = invalid_request(refusal, ("notifications", item))
            results[item] = BulkResult(index=item, error=problem_document(problem, path))
        valid = [request for position, request in enumerate(valid) if position not in refused]
        if valid:
            record = self.notifications.record_accepted
            await accept(
                valid,
                producer=self.producer,
                record=record,
                topics=self.topics,
                index=self.index,
                signing_key=self.signing_key,
            )
        return BulkOutcome(accepted=len(valid), rejected=len(results) - len(valid), results=results)


def _prepare_item(
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


async def cancel(
    notification_id: str,
    *,
    tenant_id: str,
    notifications: NotificationRepository,
    producer: MessageProducer,
    reporter: StatusReporter,
) -> str:
    """Ask for the notification to be cancelled (a status event) and return its id; a 404 problem when there
    is no such notification, a 409 one once it was sent or failed."""
    view = await notifications.get(tenant_id, notification_id)
    if view is None:
        raise not_found(notification_id)
    if view.status not in CANCELLABLE:
        raise Problem(409, "Conflict", f"notification {notification_id} is already {view.status}")
    event = reporter.event(
        notification_id=view.id,
        tenant_id=tenant_id,
        status=status.CANCELLED,
        key=message_key(tenant_id, view.id),
        detail="cancelled through the API",
    )
    await producer.produce([event])
    return view.id


async def retry(
    notification_id: str, *, tenant_id: str, notifications: NotificationRepository, requeuer: Requeuer
) -> Requeued:
    """Send the notification's newest dead letter not sent again yet; a 404 problem when there is no such
    notification, a 409 one when nothing of it failed."""
    dead_letter_id = await requeuer.dead_letters.latest_unsent(tenant_id, notification_id)
    if dead_letter_id is None:
        view = await notifications.get(tenant_id, notification_id)
        if view is None:
            raise not_found(notification_id)
        raise Problem(409, "Conflict", f"notification {notification_id} is {view.status}: nothing failed to send again")
    return await requeuer.send_again(tenant_id, dead_letter_id)


def not_found(notification_id: str) -> Problem:
    """The 404 of a notification."""
    return Problem(404, "Not found", f"no notification {notification_id}")

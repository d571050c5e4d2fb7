"""Building status events: every service reports what happened to a notification the same way."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared import status as statuses
from shared.errors import DeadLetterReason
from shared.kafka.records import TRACEPARENT, Consumed, Headers, Output, Produce, Reject, headers_for
from shared.messages import STATUS_EVENT

EVENT_NAMESPACE = uuid.UUID("0b6f2f8e-3c1f-4b8e-8f59-6c1d0c2e7a44")


@dataclass(frozen=True)
class StatusReporter:
    """Produces :class:`StatusEvent` records to the status topic on behalf of one service."""

    topic: str
    service: str

    def event(
        self,
        *,
        notification_id: str,
        tenant_id: str,
        status: str,
        key: bytes | None,
        traceparent: bytes | None = None,
        channel: str | None = None,
        attempt: int | None = None,
        provider: str | None = None,
        reason: str | None = None,
        detail: str | None = None,
        delivery_id: str | None = None,
        deliveries: int | None = None,
        distinct_by: str | None = None,
        endpoint_id: str | None = None,
    ) -> Produce:
        """A status event; its id is derived from what happened, so a redelivered event is stored once.

        Senders name the ``delivery_id`` (and how many ``deliveries`` the notification has): a
        notification sent to several devices is sent once any delivery is, failed once all are.
        ``distinct_by`` tells apart happenings that are otherwise alike (each clicked URL).
        ``endpoint_id`` marks an event about a delivery to a registered webhook endpoint: the status
        service logs it for that endpoint and leaves the notification's status alone.
        """
        happening = f"{notification_id}:{status}:{channel}:{attempt}"
        for part in (delivery_id, distinct_by):
            if part:
                happening = f"{happening}:{part}"
        event_id = uuid.uuid5(EVENT_NAMESPACE, happening)
        value = STATUS_EVENT.encode(
            {
                "event_id": str(event_id),
                "notification_id": notification_id,
                "tenant_id": tenant_id,
                "status": status,
                "occurred_at": datetime.now(UTC),
                "service": self.service,
                "channel": channel,
                "attempt": attempt,
                "provider": provider,
                "reason": reason,
                "detail": detail,
                "delivery_id": delivery_id,
                "deliveries": deliveries,
                "endpoint_id": endpoint_id,
            }
        )
        headers: Headers = headers_for(tenant_id, "status_event", traceparent)
        return Produce(self.topic, value, key=key, headers=headers)

    def give_up(
        self,
        message: Consumed[Any],
        *,
        status: str,
        reason: DeadLetterReason,
        detail: str,
        traceparent: bytes | None = None,
        **event: Any,
    ) -> list[Output]:
        """A message that can never succeed: to the DLQ, and its notification marked ``status`` saying why."""
        value = message.value
        return [
            Reject(message, reason, detail, tenant_id=value["tenant_id"], notification_id=value["notification_id"]),
            self.event(
                notification_id=value["notification_id"],
                tenant_id=value["tenant_id"],
                status=status,
                key=message.key,
                traceparent=traceparent or message.header(TRACEPARENT),
                reason=reason.value,
                detail=detail,
                **event,
            ),
        ]

    def failed(self, message: Consumed[Any], reason: DeadLetterReason, detail: str) -> list[Output]:
        """The consumer loop's reject hook for messages about one notification: the dead letter, and
        the notification marked ``failed`` saying why, so it does not stay ``accepted`` for ever."""
        return self.give_up(message, status=statuses.FAILED, reason=reason, detail=detail)

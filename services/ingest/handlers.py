"""Ingest's handler: validate, de-duplicate, pass on to the router, report the status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from services.ingest.dedup import Claim, IdempotencyGuard
from shared import status
from shared.errors import DeadLetterReason, InvalidRequest
from shared.kafka.handlers import bind_context
from shared.kafka.records import TRACEPARENT, Consumed, Output, Produce, headers_for
from shared.messages import ROUTABLE_NOTIFICATION, NotificationRequest
from shared.observability import metrics
from shared.requests import recipient_key, validate_request
from shared.status_events import StatusReporter


class IngestHandler:
    """Turns a batch of requests into routable notifications, rejections and status events."""

    def __init__(self, *, guard: IdempotencyGuard, reporter: StatusReporter, routable_topic: str, key_prefix: str):
        self._guard = guard
        self._reporter = reporter
        self._routable_topic = routable_topic
        self._key_prefix = key_prefix

    async def __call__(self, batch: Sequence[Consumed[NotificationRequest]]) -> list[Output]:
        outputs: list[Output] = []
        valid: list[Consumed[NotificationRequest]] = []
        for message in batch:
            try:
                validate_request(message.value)
            except InvalidRequest as error:
                outputs.extend(self._reject(message, error))
            else:
                valid.append(message)
        owned = await self._guard.claim([self._claim(message) for message in valid])
        for message, is_owner in zip(valid, owned, strict=True):
            if is_owner:
                outputs.extend(self._accept(message))
            else:
                metrics.NOTIFICATIONS_DUPLICATE.inc()
        return outputs

    def _claim(self, message: Consumed[NotificationRequest]) -> Claim:
        request = message.value
        identity = request["idempotency_key"] or f"id:{request['notification_id']}"
        position = f"{message.topic}:{message.partition}:{message.offset}"
        return Claim(
            key=f"{self._key_prefix}:{request['tenant_id']}:{identity}",
            owner=f"{request['notification_id']}@{position}",
        )

    def _accept(self, message: Consumed[NotificationRequest]) -> list[Output]:
        request = message.value
        traceparent = message.header(TRACEPARENT)
        key = recipient_key(request["tenant_id"], request["recipient"], request["notification_id"])
        metrics.NOTIFICATIONS_ACCEPTED.labels(tenant=request["tenant_id"]).inc()
        routable = ROUTABLE_NOTIFICATION.encode(
            {
                "notification_id": request["notification_id"],
                "tenant_id": request["tenant_id"],
                "accepted_at": datetime.now(UTC),
                "priority": request["priority"],
                "channels": request["channels"],
                "recipient": request["recipient"],
                "content": request["content"],
                "variables_json": request["variables_json"],
                "metadata": request["metadata"],
                "tracking": request["tracking"],
            }
        )
        return [
            Produce(
                self._routable_topic,
                routable,
                key=key,
                headers=headers_for(request["tenant_id"], "routable", traceparent),
            ),
            self._reporter.event(
                notification_id=request["notification_id"],
                tenant_id=request["tenant_id"],
                status=status.ACCEPTED,
                key=key,
                traceparent=traceparent,
            ),
        ]

    def _reject(self, message: Consumed[NotificationRequest], error: InvalidRequest) -> list[Output]:
        bind_context(message)
        return self._reporter.give_up(
            message, status=status.REJECTED, reason=DeadLetterReason.INVALID_PAYLOAD, detail=str(error)
        )

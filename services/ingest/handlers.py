"""Ingest's handler: validate, de-duplicate, pass on to the router, report the status."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from services.ingest.dedup import Claim, DedupPolicy, IdempotencyGuard
from services.ingest.scheduling import RequestScheduler
from shared import status
from shared.errors import DeadLetterReason, InvalidRequest
from shared.kafka.handlers import bind_context
from shared.kafka.records import TRACEPARENT, Consumed, Output, Produce, accepted_at_header, headers_for
from shared.messages import ROUTABLE_NOTIFICATION, NotificationRequest
from shared.observability import metrics
from shared.requests import recipient_key, validate_request
from shared.schedule import DEFAULT_MIN_INTERVAL
from shared.status_events import StatusReporter
from shared.topics import Topics


class IngestHandler:
    """Turns a batch of requests into routable notifications, rejections and status events."""

    def __init__(
        self,
        *,
        guard: IdempotencyGuard,
        dedup: DedupPolicy,
        reporter: StatusReporter,
        topics: Topics,
        key_prefix: str,
        scheduler: RequestScheduler,
        min_recurrence_interval: timedelta = DEFAULT_MIN_INTERVAL,
    ):
        self._min_recurrence_interval = min_recurrence_interval
        self._guard = guard
        self._dedup = dedup
        self._reporter = reporter
        self._topics = topics
        self._key_prefix = key_prefix
        self._scheduler = scheduler

    async def __call__(self, batch: Sequence[Consumed[NotificationRequest]]) -> list[Output]:
        outputs: list[Output] = []
        valid: list[Consumed[NotificationRequest]] = []
        for message in batch:
            try:
                validate_request(message.value, min_recurrence_interval=self._min_recurrence_interval)
            except InvalidRequest as error:
                outputs.extend(self._reject(message, error))
            else:
                valid.append(message)
        windows = [self._dedup.window_s(message.value) for message in valid]
        claimed = [(message, window) for message, window in zip(valid, windows, strict=True) if window is not None]
        owned = iter(await self._guard.claim([self._claim(message, window) for message, window in claimed]))
        for message, window in zip(valid, windows, strict=True):
            if window is None:  # urgent: it claims no key, so it is never a duplicate
                metrics.DEDUP_BYPASSED.labels(tenant=metrics.tenant_label(message.value["tenant_id"])).inc()
                outputs.extend(self._accept(message))
            elif next(owned):
                outputs.extend(self._accept(message))
            else:
                outputs.append(self._duplicate(message))
        return outputs

    def _claim(self, message: Consumed[NotificationRequest], window_s: int) -> Claim:
        request = message.value
        identity = request["idempotency_key"] or f"id:{request['notification_id']}"
        return Claim(
            key=f"{self._key_prefix}:{request['tenant_id']}:{identity}",
            owner=f"{request['notification_id']}@{_position(message)}",
            ttl_s=window_s,
        )

    def _duplicate(self, message: Consumed[NotificationRequest]) -> Produce:
        """A repeat of a key within its window: dropped, and counted on the notification it repeats
        (the same key gives the same notification id). Its position makes the event's id: each dropped
        request counts once, however often it is redelivered."""
        request = message.value
        metrics.NOTIFICATIONS_DUPLICATE.labels(tenant=metrics.tenant_label(request["tenant_id"])).inc()
        return self._reporter.event(
            notification_id=request["notification_id"],
            tenant_id=request["tenant_id"],
            status=status.DUPLICATE,
            key=recipient_key(request["tenant_id"], request["recipient"], request["notification_id"]),
            traceparent=message.header(TRACEPARENT),
            distinct_by=_position(message),
        )

    def _accept(self, message: Consumed[NotificationRequest]) -> list[Output]:
        request = message.value
        traceparent = message.header(TRACEPARENT)
        key = recipient_key(request["tenant_id"], request["recipient"], request["notification_id"])
        metrics.NOTIFICATIONS_ACCEPTED.labels(tenant=metrics.tenant_label(request["tenant_id"])).inc()
        now = datetime.now(UTC)
        routable = ROUTABLE_NOTIFICATION.encode(
            {
                "notification_id": request["notification_id"],
                "tenant_id": request["tenant_id"],
                "accepted_at": now,
                "priority": request["priority"],
                "channels": request["channels"],
                "recipient": request["recipient"],
                "content": request["content"],
                "variables_json": request["variables_json"],
                "metadata": request["metadata"],
                "tracking": request["tracking"],
            }
        )
        onward = Produce(
            self._topics.routable_for(request["priority"]),
            routable,
            key=key,
            headers=headers_for(request["tenant_id"], "routable", traceparent, accepted_at_header(now)),
        )
        held = self._scheduler.hold(request, onward, now, traceparent)
        reported_statuses = [status.ACCEPTED, status.SCHEDULED] if held else [status.ACCEPTED]
        outputs: list[Output] = [held or onward]
        return outputs + [
            self._reporter.event(
                notification_id=request["notification_id"],
                tenant_id=request["tenant_id"],
                status=reported,
                key=key,
                traceparent=traceparent,
            )
            for reported in reported_statuses
        ]

    def _reject(self, message: Consumed[NotificationRequest], error: InvalidRequest) -> list[Output]:
        bind_context(message)
        return self._reporter.give_up(
            message, status=status.REJECTED, reason=DeadLetterReason.INVALID_PAYLOAD, detail=str(error)
        )


def _position(message: Consumed[NotificationRequest]) -> str:
    return f"{message.topic}:{message.partition}:{message.offset}"

"""Holding back a request that is not due yet: it goes to the retry service as a delayed job.

A one-shot request (``send_at``) waits as its routable record, produced to the routable topic when
due. A recurring request waits as itself, on the requests topic: the retry service produces one
occurrence each time it falls due (see ``services/retry/recurrence.py``) and keeps the job for the next.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from shared.kafka.records import ACCEPTED_AT, Produce, accepted_at_header, headers_for
from shared.messages import DELAYED_MESSAGE, NOTIFICATION_REQUEST, NotificationRequest
from shared.schedule import first_time, is_scheduled
from shared.topics import Topics

SCHEDULE_NAMESPACE = uuid.UUID("5d0b8a51-7c1e-4f2a-9b3d-6e8f0a1c2b4d")


@dataclass(frozen=True)
class RequestScheduler:
    """Turns a request that is not due into the delayed job that holds it."""

    topics: Topics

    def hold(
        self, request: NotificationRequest, onward: Produce, now: datetime, traceparent: bytes | None
    ) -> Produce | None:
        """The delayed job holding ``onward`` (the routable record) until the request is due; None if due now."""
        if not is_scheduled(request, now):
            return None
        due_at = first_time(request, now)
        assert due_at is not None, "validate_schedule refuses a recurrence without occurrences"
        tenant_id, notification_id = request["tenant_id"], request["notification_id"]
        recurring = request["recurrence"] is not None
        job = DELAYED_MESSAGE.encode(
            {
                "job_id": str(uuid.uuid5(SCHEDULE_NAMESPACE, f"{notification_id}:{'series' if recurring else 'once'}")),
                "tenant_id": tenant_id,
                "notification_id": notification_id,
                "due_at": due_at,
                # A series waits in its own lane of the requests topic; a one-shot as its routable record.
                "target_topic": self.topics.requests_for(request["priority"]) if recurring else onward.topic,
                "key": onward.key,
                "payload": NOTIFICATION_REQUEST.encode(request) if recurring else onward.value,
                # A one-shot's service level clock starts when it falls due; each occurrence of a series is
                # accepted by ingest anew.
                "headers": dict(headers_for(tenant_id, "request", traceparent))
                if recurring
                else dict(onward.headers) | {ACCEPTED_AT: accepted_at_header(due_at)},
                "reason": "recurring" if recurring else "send_at",
                "recurring": recurring,
            }
        )
        return Produce(self.topics.delay, job, key=onward.key, headers=headers_for(tenant_id, "delayed", traceparent))

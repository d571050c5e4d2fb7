"""A recurring notification's occurrences: each one its own notification, produced when it falls due.

The series waits as one delayed job whose payload is the original request. When it falls due, the
occurrence is that request with an id derived from the series and the occurrence's time (so firing
the same occurrence twice, after a crash, is one notification: ingest drops the repeat), sent now,
labelled with the series it belongs to. The job then moves to the next time.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from shared.messages import NOTIFICATION_REQUEST
from shared.schedule import next_time

SERIES_NAMESPACE = uuid.UUID("9c4e2f7a-1b3d-4e5f-8a6b-0c2d4e6f8a1b")
# The label an occurrence carries in its metadata: the id of its series (the recurring request).
SERIES_ID = "series_id"


def occurrence(series_payload: bytes, due_at: datetime, now: datetime) -> tuple[bytes, str, datetime | None]:
    """The request for the occurrence due at ``due_at``, its tenant, and when the next one is due (None: the
    series ended).

    Occurrences missed while nothing fired them (an outage) are skipped: the next one is the first
    after ``now``, so a daily notification is not sent three times on the morning after three days down.
    """
    series = NOTIFICATION_REQUEST.decode(series_payload)
    recurrence = series["recurrence"]
    if recurrence is None:
        raise ValueError(f"not a recurring request: {series['notification_id']}")
    series_id = series["notification_id"]
    one = NOTIFICATION_REQUEST.encode(
        {
            **series,
            "notification_id": str(uuid.uuid5(SERIES_NAMESPACE, f"{series_id}:{due_at.isoformat()}")),
            "idempotency_key": None,
            "created_at": due_at,
            "send_at": None,
            "recurrence": None,
            "metadata": {**series["metadata"], SERIES_ID: series_id},
        }
    )
    return one, series["tenant_id"], next_time(recurrence, series["timezone"], max(due_at, now))

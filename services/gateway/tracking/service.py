"""Tracking: verifying a token, and recording an open or a click as a status event.

Mail clients call the tracking routes without an API key: the token's HMAC is what authenticates them
(see :mod:`shared.tracking`). A token that does not verify is a 404, so the click route cannot be made to
redirect anywhere Herald did not sign.
"""

from __future__ import annotations

import asyncio

import structlog

from services.gateway.http.problems import Problem
from shared.kafka.producer import MessageProducer
from shared.kafka.records import Produce, message_key
from shared.status_events import StatusReporter
from shared.tracking import InvalidToken, Tracked, TrackingTokens

log = structlog.get_logger(__name__)

# A reader waits for the image or the redirect: past this, the event is given up, not the answer.
RECORD_TIMEOUT_S = 2.0


def verified(tokens: TrackingTokens | None, token: str, kind: str) -> Tracked:
    """What ``token`` tracks, if it verifies and is of ``kind``; a 404 problem otherwise (None: tracking is
    not configured)."""
    # One answer for every refusal (no key, bad token, wrong route): nothing to learn by probing.
    unknown = Problem(404, "Not found", "unknown tracking link")
    if tokens is None:
        raise unknown
    try:
        tracked = tokens.verify(token)
    except InvalidToken:
        raise unknown from None
    if tracked.kind != kind:
        raise unknown
    return tracked


def engagement_event(reporter: StatusReporter, tracked: Tracked, event_status: str) -> Produce:
    """The status event of an open or a click: one per notification, and for clicks one per URL."""
    return reporter.event(
        notification_id=tracked.notification_id,
        tenant_id=tracked.tenant_id,
        status=event_status,
        key=message_key(tracked.tenant_id, tracked.notification_id),
        channel="email",
        detail=tracked.url,
        distinct_by=tracked.url,
    )


async def record(producer: MessageProducer, reporter: StatusReporter, tracked: Tracked, event_status: str) -> None:
    """Produce the event, giving up after :data:`RECORD_TIMEOUT_S`: the reader still gets the image or the
    link, only the statistic is lost."""
    event = engagement_event(reporter, tracked, event_status)
    try:
        async with asyncio.timeout(RECORD_TIMEOUT_S):
            await producer.produce([event])
    except Exception as error:
        log.warning(
            "tracking_event_lost", notification_id=tracked.notification_id, status=event_status, error=repr(error)
        )

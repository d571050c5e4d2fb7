"""When a notification goes out: now, at ``send_at``, or at every occurrence of a recurrence.

Ingest uses it to hold a request back until its first time; the retry service, which fires held
work, uses it to find a recurring notification's next time. Cron expressions are evaluated in the
request's IANA time zone, so "0 9 * * *" in Europe/Paris is 9:00 there in summer and in winter.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from shared.errors import InvalidRequest
from shared.messages import NotificationRequest, Recurrence

# How far ahead a notification may be scheduled.
MAX_AHEAD = timedelta(days=366)
# A recurrence's occurrences may come no closer than this (HERALD_RECURRENCE_MIN_INTERVAL_S): one
# request must not become a notification every second, for ever.
DEFAULT_MIN_INTERVAL = timedelta(minutes=15)
# How many of a recurrence's first occurrences are compared to find its shortest interval.
INTERVAL_SAMPLE = 50


def zone(name: str | None) -> ZoneInfo:
    """The IANA time zone ``name`` (UTC when None); raises InvalidRequest for an unknown one."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest("timezone", f"not an IANA time zone: {name!r}") from None


def validate_schedule(
    request: NotificationRequest, now: datetime, *, min_interval: timedelta = DEFAULT_MIN_INTERVAL
) -> None:
    """Raise :class:`InvalidRequest` naming the field if the request's timing cannot work, or if its
    recurrence repeats more often than every ``min_interval``."""
    zone(request["timezone"])
    send_at = request["send_at"]
    if send_at is not None and send_at - now > MAX_AHEAD:
        raise InvalidRequest("send_at", f"at most {MAX_AHEAD.days} days ahead")
    recurrence = request["recurrence"]
    if recurrence is None:
        return
    if not croniter.is_valid(recurrence["cron"]):
        raise InvalidRequest("recurrence/cron", f"not a cron expression: {recurrence['cron']!r}")
    first = first_time(request, now)
    if first is None:
        raise InvalidRequest("recurrence/until", "no occurrence falls before it")
    shortest = _shortest_interval(recurrence["cron"], zone(request["timezone"]), first)
    if shortest is not None and shortest < min_interval:
        detail = f"occurrences {shortest.total_seconds():g} s apart; at least {min_interval.total_seconds():g} s"
        raise InvalidRequest("recurrence/cron", detail)


def _shortest_interval(cron: str, local: ZoneInfo, first: datetime) -> timedelta | None:
    """The shortest gap between the first :data:`INTERVAL_SAMPLE` occurrences from ``first``."""
    occurrences = croniter(cron, first.astimezone(local) - timedelta(seconds=1))
    # In UTC: two datetimes of one zone subtract as wall-clock times, which makes a clock change's hour
    # vanish (a 23-hour day counted as 24) or run backwards (a quarter-hour counted as -45 minutes).
    times = [occurrences.get_next(datetime).astimezone(UTC) for _ in range(INTERVAL_SAMPLE)]
    return min((later - earlier for earlier, later in itertools.pairwise(times)), default=None)


def first_time(request: NotificationRequest, now: datetime) -> datetime | None:
    """When the request is first due, or None if never (a recurrence that ends before it starts).

    ``now`` is returned for a request to send at once.
    """
    start = max(request["send_at"] or now, now)
    recurrence = request["recurrence"]
    if recurrence is None:
        # Never early, even by the scheduler's latency: ``send_at`` is a promise that nothing goes out before it.
        return start
    # The first occurrence at or after the start: step back a second so a start on the dot counts.
    return next_time(recurrence, request["timezone"], start - timedelta(seconds=1))


def next_time(recurrence: Recurrence, timezone: str | None, after: datetime) -> datetime | None:
    """The recurrence's first occurrence after ``after`` (UTC), or None once past ``until``."""
    local = after.astimezone(zone(timezone))
    upcoming: datetime = croniter(recurrence["cron"], local).get_next(datetime)
    upcoming = upcoming.astimezone(UTC)
    until = recurrence["until"]
    return None if until is not None and upcoming > until else upcoming


def is_scheduled(request: NotificationRequest, now: datetime) -> bool:
    """Whether the request waits (for ``send_at`` or its recurrence) rather than going out now."""
    return request["recurrence"] is not None or (request["send_at"] is not None and request["send_at"] > now)

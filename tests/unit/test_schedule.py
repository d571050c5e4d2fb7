"""When a notification goes out: now, at send_at, or at each occurrence of its recurrence."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.ingest.scheduling import RequestScheduler
from services.retry.recurrence import SERIES_ID, occurrence
from shared.errors import InvalidRequest
from shared.kafka.records import ACCEPTED_AT, Produce, accepted_at_header
from shared.messages import DELAYED_MESSAGE, NOTIFICATION_REQUEST, NotificationRequest
from shared.requests import build_request, validate_request
from shared.schedule import MAX_AHEAD, first_time, is_scheduled, next_time, validate_schedule
from shared.topics import Topics

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)  # a Friday; Europe/Paris moves to summer time on Sunday


def request(**schedule: Any) -> NotificationRequest:
    return build_request(
        tenant_id="acme",
        channels=["email"],
        recipient={"email": "ada@example.com"},
        content={"subject": "Hi", "text": "Hello"},
        **schedule,
    )


def test_without_send_at_it_goes_now() -> None:
    assert not is_scheduled(request(), NOW)
    assert first_time(request(), NOW) == NOW


def test_send_at_holds_it_until_then() -> None:
    later = request(send_at=NOW + timedelta(hours=2))
    assert is_scheduled(later, NOW)
    assert first_time(later, NOW) == NOW + timedelta(hours=2)


def test_a_daily_recurrence_keeps_local_time_across_the_summer_time_change() -> None:
    daily = request(timezone="Europe/Paris", recurrence={"cron": "0 9 * * *"})
    first = first_time(daily, NOW)
    assert first == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)  # 9:00 in Paris, UTC+1
    recurrence = daily["recurrence"]
    assert recurrence is not None
    second = next_time(recurrence, "Europe/Paris", first)
    assert second == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # 9:00 in Paris, now UTC+2


def test_a_recurrence_starting_at_send_at_counts_an_occurrence_on_the_dot() -> None:
    start = datetime(2026, 3, 30, 9, 0, tzinfo=UTC)
    assert first_time(request(send_at=start, recurrence={"cron": "0 9 * * *"}), NOW) == start


def test_a_recurrence_ends_at_until() -> None:
    recurrence = {"cron": "@daily", "until": NOW + timedelta(days=1, hours=1)}
    series = request(recurrence=recurrence)
    first = first_time(series, NOW)
    assert first == datetime(2026, 3, 28, tzinfo=UTC)
    assert series["recurrence"] is not None
    assert next_time(series["recurrence"], None, first) is None


@pytest.mark.parametrize(
    ("schedule", "field", "detail"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone", "not an IANA time zone: 'Mars/Olympus'"),
        ({"send_at": datetime.now(UTC) + timedelta(days=400)}, "send_at", "at most 366 days ahead"),
        ({"recurrence": {"cron": "61 * * * *"}}, "recurrence/cron", "not a cron expression: '61 * * * *'"),
        (
            {"recurrence": {"cron": "@daily", "until": datetime.now(UTC) - timedelta(days=1)}},
            "recurrence/until",
            "no occurrence falls before it",
        ),
    ],
)
def test_an_impossible_schedule_names_its_field(schedule: dict[str, Any], field: str, detail: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(request(**schedule))
    assert (caught.value.field, caught.value.detail) == (field, detail)


def test_send_at_may_be_exactly_the_longest_wait_ahead() -> None:
    validate_schedule(request(send_at=NOW + MAX_AHEAD), NOW)
    with pytest.raises(InvalidRequest) as caught:
        validate_schedule(request(send_at=NOW + MAX_AHEAD + timedelta(seconds=1)), NOW)
    assert caught.value.field == "send_at"


def test_send_at_now_or_before_goes_now_and_any_later_waits_for_it() -> None:
    """Never early: a request due a microsecond from now waits for it (it once went at once when due within a
    second, so a mail could arrive before its send_at when ingest read it late)."""
    for due in (NOW, NOW - timedelta(hours=1)):
        assert not is_scheduled(request(send_at=due), NOW)
        assert first_time(request(send_at=due), NOW) == NOW
    just_after = request(send_at=NOW + timedelta(microseconds=1))
    assert is_scheduled(just_after, NOW)
    assert first_time(just_after, NOW) == NOW + timedelta(microseconds=1)


def test_an_occurrence_before_the_start_does_not_count() -> None:
    """Started a second after 9:00, a daily 9:00 recurrence first fires tomorrow, not in the past."""
    start = datetime(2026, 3, 30, 9, 0, 1, tzinfo=UTC)
    assert first_time(request(recurrence={"cron": "0 9 * * *"}), start) == datetime(2026, 3, 31, 9, 0, tzinfo=UTC)


def test_occurrences_are_given_in_utc() -> None:
    recurrence = request(timezone="Europe/Paris", recurrence={"cron": "0 9 * * *"})["recurrence"]
    assert recurrence is not None
    upcoming = next_time(recurrence, "Europe/Paris", NOW)
    assert upcoming is not None
    assert upcoming.tzinfo is UTC


def test_an_occurrence_exactly_at_until_is_sent() -> None:
    last = datetime(2026, 3, 29, tzinfo=UTC)
    recurrence = request(recurrence={"cron": "@daily", "until": last})["recurrence"]
    assert recurrence is not None
    assert next_time(recurrence, None, last - timedelta(days=1)) == last
    assert next_time(recurrence, None, last) is None


# Moscow moved its clocks forward on 27 March 2011 for the last time (no clock change since): there a
# daily 9:00 was 23 hours after the day before's, once. The interval is measured in the request's zone,
# from its first occurrence.
MOSCOW_SPRING_2011 = datetime(2011, 3, 26, tzinfo=UTC)


def test_the_shortest_interval_is_measured_in_the_zone_from_the_first_occurrence() -> None:
    daily = request(timezone="Europe/Moscow", recurrence={"cron": "0 9 * * *"})
    with pytest.raises(InvalidRequest) as caught:
        validate_schedule(daily, MOSCOW_SPRING_2011, min_interval=timedelta(hours=24))
    assert caught.value.field == "recurrence/cron"
    assert caught.value.detail == "occurrences 82800 s apart; at least 86400 s"
    # The same cron in UTC, or in Moscow after that spring, is a day apart every time.
    validate_schedule(request(recurrence={"cron": "0 9 * * *"}), MOSCOW_SPRING_2011, min_interval=timedelta(hours=24))
    validate_schedule(daily, MOSCOW_SPRING_2011 + timedelta(days=2), min_interval=timedelta(hours=24))


def test_a_quarter_hourly_recurrence_across_the_autumn_clock_change_is_accepted() -> None:
    """Paris goes from 3:00 back to 2:00 on 25 October 2026: 2:45 summer time to 2:00 winter time is a
    quarter of an hour, not minus three quarters (it was once refused as "-2700 s apart")."""
    quarterly = request(timezone="Europe/Paris", recurrence={"cron": "*/15 * * * *"})
    validate_schedule(quarterly, datetime(2026, 10, 25, 0, 30, tzinfo=UTC))


@pytest.mark.parametrize(
    "cron",
    [
        "* * * * * *",  # every second, for ever
        "* * * * *",
        "*/10 * * * *",
        "0,5 9 * * *",  # twice within five minutes, once a day
    ],
)
def test_a_recurrence_more_often_than_the_minimum_interval_is_refused(cron: str) -> None:
    with pytest.raises(InvalidRequest, match="at least 900 s") as caught:
        validate_request(request(recurrence={"cron": cron}))
    assert caught.value.field == "recurrence/cron"


@pytest.mark.parametrize("cron", ["*/15 * * * *", "0 9 * * *", "@weekly", "0 9 * * 1-5"])
def test_a_recurrence_at_the_minimum_interval_or_longer_is_accepted(cron: str) -> None:
    validate_request(request(recurrence={"cron": cron}))


def test_the_minimum_interval_is_the_callers_to_set() -> None:
    validate_request(request(recurrence={"cron": "* * * * * *"}), min_recurrence_interval=timedelta(seconds=1))
    with pytest.raises(InvalidRequest):
        validate_request(request(recurrence={"cron": "*/15 * * * *"}), min_recurrence_interval=timedelta(hours=1))


def onward(value: bytes = b"routable") -> Produce:
    return Produce("t.routable.v1", value, key=b"acme:ada", headers=(("herald-kind", b"routable"),))


def test_a_one_shot_request_waits_as_its_routable_record() -> None:
    scheduler = RequestScheduler(Topics("t"))
    later = request(send_at=NOW + timedelta(hours=2))

    held = scheduler.hold(later, onward(), NOW, None)

    assert held is not None
    assert held.topic == "t.delay.v1"
    job = DELAYED_MESSAGE.decode(held.value)
    assert (job["target_topic"], job["payload"], job["due_at"], job["recurring"]) == (
        "t.routable.v1",
        b"routable",
        NOW + timedelta(hours=2),
        False,
    )
    # Its service level clock starts when it falls due, not when it was accepted.
    assert job["headers"][ACCEPTED_AT] == accepted_at_header(NOW + timedelta(hours=2))
    assert scheduler.hold(request(), onward(), NOW, None) is None


def test_a_recurring_request_waits_as_itself_and_each_occurrence_is_a_notification_of_its_own() -> None:
    scheduler = RequestScheduler(Topics("t"))
    series = request(recurrence={"cron": "@daily"}, metadata={"campaign": "digest"})

    held = scheduler.hold(series, onward(), NOW, None)

    assert held is not None
    job = DELAYED_MESSAGE.decode(held.value)
    assert (job["target_topic"], job["recurring"]) == ("t.requests.v1", True)
    first, _, next_due = occurrence(job["payload"], job["due_at"], NOW)
    one = NOTIFICATION_REQUEST.decode(first)
    assert one["recurrence"] is None
    assert one["send_at"] is None
    assert one["metadata"] == {"campaign": "digest", SERIES_ID: series["notification_id"]}
    assert uuid.UUID(one["notification_id"]) != uuid.UUID(series["notification_id"])
    # The same occurrence fired twice (after a crash) is the same notification.
    assert NOTIFICATION_REQUEST.decode(occurrence(job["payload"], job["due_at"], NOW)[0]) == one
    assert next_due == job["due_at"] + timedelta(days=1)


def test_occurrences_missed_during_an_outage_are_skipped() -> None:
    series = NOTIFICATION_REQUEST.encode(request(recurrence={"cron": "@daily"}))
    three_days_late = NOW + timedelta(days=3)
    _, _, next_due = occurrence(series, datetime(2026, 3, 28, tzinfo=UTC), three_days_late)
    assert next_due == datetime(2026, 3, 31, tzinfo=UTC)

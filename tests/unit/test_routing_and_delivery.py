"""Channel choice, retry backoff, stable delivery ids and stable status event ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.router.handlers import delivery_id_for
from services.router.routing import Route, choose_route
from shared import status
from shared.delivery import RetryPolicy
from shared.errors import InvalidRequest
from shared.kafka.records import KIND, TENANT, TRACEPARENT
from shared.messages import STATUS_EVENT, Recipient
from shared.status_events import StatusReporter
from shared.storage.devices import Device, Platform

pytestmark = pytest.mark.unit

TRACE = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def recipient(email: str | None = None, phone: str | None = None) -> Recipient:
    return {"user_id": "u-1", "email": email, "phone": phone, "locale": None, "webhook_url": None}


# --- choose_route ---------------------------------------------------------------------------------

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def device(platform: Platform = "android", token: str = "tok-1") -> Device:
    return Device(str(uuid.uuid4()), "u-1", platform, token, None, None, NOW, NOW)


def test_choose_route_picks_email_with_its_address() -> None:
    assert choose_route(["email"], recipient(email="ada@example.com")) == Route("email", "ada@example.com")


def test_choose_route_skips_channels_the_recipient_cannot_be_reached_on() -> None:
    """Channels without an address, and push without an active device, are passed over."""
    assert choose_route(["sms", "push", "email"], recipient(email="ada@example.com")) == Route(
        "email", "ada@example.com"
    )
    assert choose_route(["push", "sms", "email"], recipient(email="ada@example.com", phone="+15550100")) == Route(
        "sms", "+15550100"
    )


def test_choose_route_sends_push_to_every_active_device() -> None:
    devices = [device("android"), device("ios", "ab" * 32)]
    route = choose_route(["push", "email"], recipient(email="ada@example.com"), devices)
    assert (route.channel, list(route.devices)) == ("push", devices)


def test_choose_route_raises_when_no_channel_is_reachable() -> None:
    with pytest.raises(InvalidRequest, match="email") as caught:
        choose_route(["email"], recipient(phone="+15550100"))
    assert caught.value.field == "channels"


def test_choose_route_names_missing_devices_when_push_was_asked_for() -> None:
    with pytest.raises(InvalidRequest, match="no active push device"):
        choose_route(["push"], recipient())


def test_choose_route_raises_for_empty_address() -> None:
    with pytest.raises(InvalidRequest):
        choose_route(["email"], recipient(email=""))


# --- RetryPolicy ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("attempt", "ceiling"), [(2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 32.0)])
def test_delay_grows_exponentially_with_equal_jitter(attempt: int, ceiling: float) -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_s=2.0, max_delay_s=1000.0)
    delays = [policy.delay_before(attempt) for _ in range(200)]
    assert all(d is not None and ceiling / 2 <= d <= ceiling for d in delays), delays
    # Equal jitter: half the ceiling fixed, the other half random over its whole range (200 draws leave
    # its lowest or highest fifth empty with a chance of 0.8**200, about 1e-19).
    spread = [d for d in delays if d is not None]
    assert min(spread) < 0.6 * ceiling
    assert max(spread) > 0.9 * ceiling


def test_delay_is_capped_by_max_delay() -> None:
    policy = RetryPolicy(max_attempts=30, base_delay_s=2.0, max_delay_s=60.0)
    for attempt in (7, 10, 20, 30):
        for _ in range(50):
            delay = policy.delay_before(attempt)
            assert delay is not None
            assert 30.0 <= delay <= 60.0


def test_delay_is_none_past_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay_s=1.0, max_delay_s=10.0)
    assert policy.delay_before(3) is not None
    assert policy.delay_before(4) is None
    assert policy.delay_before(10) is None


# --- delivery ids ---------------------------------------------------------------------------------


def test_delivery_id_is_stable_per_notification_and_channel() -> None:
    notification = str(uuid.uuid4())
    first = delivery_id_for(notification, "email")
    assert first == delivery_id_for(notification, "email")
    assert uuid.UUID(first).version == 5
    assert first != delivery_id_for(str(uuid.uuid4()), "email")
    assert first != delivery_id_for(notification, "sms")


def test_each_push_device_gets_its_own_stable_delivery_id() -> None:
    notification = str(uuid.uuid4())
    phone, tablet = str(uuid.uuid4()), str(uuid.uuid4())
    assert delivery_id_for(notification, "push", phone) == delivery_id_for(notification, "push", phone)
    assert delivery_id_for(notification, "push", phone) != delivery_id_for(notification, "push", tablet)


def test_events_of_sibling_deliveries_have_distinct_ids(reporter: StatusReporter) -> None:
    def sent(delivery_id: str) -> str:
        produce = reporter.event(
            notification_id="n-1",
            tenant_id="acme",
            status=status.SENT,
            key=None,
            channel="push",
            attempt=1,
            delivery_id=delivery_id,
            deliveries=2,
        )
        return STATUS_EVENT.decode(produce.value)["event_id"]

    assert sent("d-1") == sent("d-1")
    assert sent("d-1") != sent("d-2")


# --- StatusReporter -------------------------------------------------------------------------------


@pytest.fixture
def reporter() -> StatusReporter:
    return StatusReporter(topic="t.status.v1", service="sender-email")


def test_status_event_carries_what_happened(reporter: StatusReporter) -> None:
    produce = reporter.event(
        notification_id="n-1",
        tenant_id="acme",
        status=status.RETRYING,
        key=b"acme:ada",
        traceparent=TRACE,
        channel="email",
        attempt=2,
        provider="smtp",
        reason="provider_deferred",
        detail="451 try later",
    )
    assert produce.topic == "t.status.v1"
    assert produce.key == b"acme:ada"
    assert dict(produce.headers) == {TENANT: b"acme", KIND: b"status_event", TRACEPARENT: TRACE}
    event = STATUS_EVENT.decode(produce.value)
    assert event["notification_id"] == "n-1"
    assert event["tenant_id"] == "acme"
    assert event["status"] == "retrying"
    assert event["service"] == "sender-email"
    assert (event["channel"], event["attempt"], event["provider"]) == ("email", 2, "smtp")
    assert (event["reason"], event["detail"]) == ("provider_deferred", "451 try later")


def test_status_event_id_is_stable_for_the_same_happening(reporter: StatusReporter) -> None:
    """A redelivered message reports the same event id, even with another detail or time."""
    first = reporter.event(
        notification_id="n-1", tenant_id="acme", status=status.SENT, key=None, channel="email", attempt=1
    )
    again = reporter.event(
        notification_id="n-1",
        tenant_id="acme",
        status=status.SENT,
        key=None,
        channel="email",
        attempt=1,
        detail="already delivered",
    )
    assert STATUS_EVENT.decode(first.value)["event_id"] == STATUS_EVENT.decode(again.value)["event_id"]


def test_status_event_id_differs_for_different_happenings(reporter: StatusReporter) -> None:
    def event_id(**changes: object) -> str:
        arguments: dict[str, object] = {
            "notification_id": "n-1",
            "tenant_id": "acme",
            "status": status.RETRYING,
            "key": None,
            "channel": "email",
            "attempt": 1,
        }
        arguments.update(changes)
        return STATUS_EVENT.decode(reporter.event(**arguments).value)["event_id"]  # type: ignore[arg-type]

    ids = [
        event_id(),
        event_id(attempt=2),
        event_id(status=status.SENT),
        event_id(notification_id="n-2"),
        event_id(channel=None),
    ]
    assert len(set(ids)) == len(ids)

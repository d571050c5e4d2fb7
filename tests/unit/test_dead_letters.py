"""Dead letters without a broker or database: the loop's dead-letter guard, cursors, payloads, channels."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import cast

import pytest

from services.dead_letters.writer import channel_of
from services.gateway.dead_letters.service import describe_payload
from shared.codec import decode_known
from shared.errors import DeadLetterReason
from shared.kafka.guard import ENVIRONMENTAL_REASONS, MAX_REMEMBERED_TENANTS, DeadLetterGuard
from shared.messages import DELAYED_MESSAGE, EMAIL_DELIVERY, STATUS_EVENT, DeadLetter, DelayedMessage
from shared.storage.pagination import PageCursor
from shared.topics import Topics
from tests.factories import email_delivery

pytestmark = pytest.mark.unit

ERROR = DeadLetterReason.PROCESSING_ERROR.value
GAVE_UP = DeadLetterReason.MAX_ATTEMPTS_EXCEEDED.value


def guard(ratio: float = 0.5, min_messages: int = 10, pause_s: float = 30.0) -> DeadLetterGuard:
    return DeadLetterGuard(ratio=ratio, min_messages=min_messages, pause_s=pause_s)


def test_the_guard_trips_once_most_of_a_full_window_failed_for_the_environment() -> None:
    watching = guard()
    assert watching.observe(5, [ERROR] * 5) is None, "too few messages to judge"
    assert watching.observe(5, [ERROR] * 3 + [GAVE_UP]) == ERROR, "9 of 10: pause, for the commonest reason"


def test_the_guard_does_not_trip_below_the_ratio() -> None:
    watching = guard(ratio=0.5)
    assert watching.observe(10, [ERROR] * 4) is None
    assert watching.observe(10, [ERROR] * 4) is None


@pytest.mark.parametrize(
    "reason",
    sorted(set(DeadLetterReason) - ENVIRONMENTAL_REASONS),
)
def test_reasons_about_the_message_never_trip_the_guard(reason: DeadLetterReason) -> None:
    assert guard().observe(100, [reason.value] * 100) is None


def test_environmental_reasons_are_a_handler_failure_and_a_provider_down_through_every_retry() -> None:
    assert {DeadLetterReason.PROCESSING_ERROR, DeadLetterReason.MAX_ATTEMPTS_EXCEEDED} == ENVIRONMENTAL_REASONS


def test_old_successes_do_not_dilute_a_new_outage() -> None:
    watching = guard(min_messages=10)
    for _ in range(100):
        assert watching.observe(10, []) is None
    assert watching.observe(10, [ERROR] * 8) == ERROR


def test_after_tripping_the_guard_judges_a_fresh_window() -> None:
    watching = guard(min_messages=10)
    assert watching.observe(10, [ERROR] * 10) == ERROR
    assert watching.observe(5, [ERROR] * 5) is None, "the window before the pause is forgotten"
    assert watching.observe(5, [ERROR] * 5) == ERROR


def test_a_pause_of_zero_turns_the_guard_off() -> None:
    assert guard(pause_s=0).observe(100, [ERROR] * 100) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_confined_to_tenants_while_another_goes_through_never_pause() -> None:
    """One tenant's content failing (a burst in a bulk request) is that tenant's, while another
    tenant's messages go through: no pause, whatever the ratio."""
    clock = Clock()
    watching = DeadLetterGuard(ratio=0.5, min_messages=10, pause_s=30, clean_window_s=10, clock=clock)
    assert watching.observe(10, [], succeeded={"globex"}) is None
    for _ in range(5):
        clock.now += 1
        assert watching.observe(10, [ERROR] * 10, failing={"acme", "initech"}) is None
    clock.now += 10  # globex's last success is now too old to vouch for the environment
    assert watching.observe(10, [ERROR] * 10, failing={"acme", "initech"}) == ERROR


def test_failures_of_every_tenant_pause() -> None:
    """A broken dependency fails everyone: tenants that went through earlier fail now too."""
    clock = Clock()
    watching = DeadLetterGuard(ratio=0.5, min_messages=10, pause_s=30, clean_window_s=10, clock=clock)
    assert watching.observe(10, [], succeeded={"acme", "globex"}) is None
    clock.now += 1
    assert watching.observe(10, [ERROR] * 10, failing={"acme", "globex"}) == ERROR


def test_a_tenant_that_both_failed_and_went_through_does_not_vouch_for_the_environment() -> None:
    watching = guard()
    assert watching.observe(10, [ERROR] * 9, succeeded={"acme"}, failing={"acme"}) == ERROR


def test_the_window_is_judged_from_exactly_min_messages_and_at_exactly_the_ratio() -> None:
    watching = guard(ratio=0.5, min_messages=10)
    assert watching.observe(9, [ERROR] * 9) is None, "9 messages: too few to judge"
    assert watching.observe(1, []) == ERROR, "9 of 10 failed"
    assert watching.observe(9, [ERROR] * 9) is None, "a fresh window after a pause starts from nothing"
    assert guard(ratio=0.5).observe(10, [ERROR] * 5) == ERROR, "exactly half at a ratio of one half"


def test_the_window_slides_by_whole_batches() -> None:
    """Three batches of 5: the first drops out once the other two make the 10 messages to judge."""
    watching = guard(ratio=0.5, min_messages=10)
    assert watching.observe(5, []) is None
    assert watching.observe(5, []) is None
    assert watching.observe(5, [ERROR] * 5) == ERROR


def test_a_pause_of_a_second_still_guards() -> None:
    assert guard(pause_s=1).observe(10, [ERROR] * 10) == ERROR
    assert guard(pause_s=0.5).observe(10, [ERROR] * 10) == ERROR


def test_a_success_vouches_for_exactly_the_clean_window() -> None:
    clock = Clock()
    watching = DeadLetterGuard(ratio=0.5, min_messages=10, pause_s=30, clean_window_s=10, clock=clock)
    watching.observe(10, [], succeeded={"globex"})
    clock.now += 10
    assert watching.observe(10, [ERROR] * 10, failing={"acme"}) is None


def test_the_clean_window_is_ten_seconds_unless_set() -> None:
    clock = Clock()
    watching = DeadLetterGuard(ratio=0.5, min_messages=10, pause_s=30, clock=clock)
    watching.observe(10, [], succeeded={"globex"})
    clock.now += 10.5
    assert watching.observe(10, [ERROR] * 10, failing={"acme"}) == ERROR


def test_the_guard_remembers_the_most_recently_successful_tenants() -> None:
    """Up to MAX_REMEMBERED_TENANTS; beyond that the one that went through longest ago is forgotten."""
    clock = Clock()
    watching = DeadLetterGuard(ratio=0.5, min_messages=10, pause_s=30, clean_window_s=10, clock=clock)
    tenants = [f"t{i}" for i in range(MAX_REMEMBERED_TENANTS)]
    watching.observe(MAX_REMEMBERED_TENANTS, [], succeeded=tenants)

    def everyone_but(tenant: str) -> set[str]:
        return {*tenants, "new"} - {tenant}

    assert watching.observe(10, [ERROR] * 10, failing=everyone_but("t0")) is None, "t0 is still remembered"
    watching.observe(1, [], succeeded={"t0"})  # t0 goes through again: now the most recent
    watching.observe(1, [], succeeded={"new"})  # one tenant too many: t1 is forgotten, not t0
    assert watching.observe(10, [ERROR] * 10, failing=everyone_but("t0")) is None
    assert watching.observe(10, [ERROR] * 10, failing=everyone_but("t1")) == ERROR


def test_a_cursor_round_trips_and_a_forged_one_is_refused() -> None:
    cursor = PageCursor(datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC), "3f1c1b5e-54d4-4a4e-9c52-0d1f5ab2a5c4")
    assert PageCursor.decode(cursor.encode()) == cursor
    for forged in ("", "not base64!", base64.urlsafe_b64encode(b'["yesterday", "x"]').decode()):
        with pytest.raises(ValueError, match="not a cursor"):
            PageCursor.decode(forged)


def test_a_known_contract_is_decoded_at_any_version_and_anything_else_is_not() -> None:
    delivery = email_delivery()
    assert decode_known(EMAIL_DELIVERY.encode(delivery)) == ("EmailDelivery", delivery)
    assert decode_known(b"\x00garbage") is None
    # The right header and an unknown fingerprint, or a known fingerprint and a corrupt body.
    assert decode_known(b"\xc3\x01" + b"\x00" * 8 + b"body") is None
    assert decode_known(b"\xc3\x01" + STATUS_EVENT.fingerprint + b"\xff") is None


def test_a_payload_is_shown_as_json_with_its_bytes_in_base64() -> None:
    job = cast(
        DelayedMessage,
        {
            "job_id": "j1",
            "tenant_id": "acme",
            "notification_id": None,
            "due_at": datetime(2026, 11, 25, tzinfo=UTC),
            "target_topic": "herald.send.email.v1",
            "key": b"acme:ada",
            "payload": b"\x00\x01",
            "headers": {},
            "reason": None,
        },
    )
    shown = describe_payload(DELAYED_MESSAGE.encode(job))
    assert (shown.encoding, shown.contract) == ("json", "DelayedMessage")
    assert shown.value["payload"] == base64.b64encode(b"\x00\x01").decode()
    assert shown.value["due_at"].startswith("2026-11-25T00:00:00")
    assert describe_payload(b"\xff").model_dump() == {"encoding": "base64", "contract": None, "value": "/w=="}


def test_the_channel_comes_from_the_topic_or_a_delayed_messages_target() -> None:
    topics = Topics("herald")

    def letter(topic: str, payload: bytes = b"") -> DeadLetter:
        return cast(DeadLetter, {"original_topic": topic, "original_payload": payload})

    job = cast(DelayedMessage, {"job_id": "j", "tenant_id": "t", "due_at": datetime.now(UTC), "payload": b""})
    to_sms = DELAYED_MESSAGE.encode({**job, "target_topic": topics.send("sms")})
    assert channel_of(topics, letter(topics.send("push"))) == "push"
    assert channel_of(topics, letter(topics.delay, to_sms)) == "sms"
    assert channel_of(topics, letter(topics.delay, b"garbage")) is None
    assert channel_of(topics, letter(topics.requests)) is None

"""The personal-data scrubber and message tags of Sentry events (shared/observability/error_tracking.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import structlog
from sentry_sdk.types import Event

from shared.observability.error_tracking import FILTERED, scrub, scrub_event

pytestmark = pytest.mark.unit

ADDRESS = "jane.doe+news@example.co.uk"
PHONE = "+447700900123"


def event_naming_a_recipient() -> Event:
    """An event with the recipient's address and number in each place Sentry puts text."""
    return {
        "message": f"cannot send to {ADDRESS}",
        "logentry": {"message": "cannot send to %s", "params": [ADDRESS], "formatted": f"to {PHONE}"},
        "exception": {"values": [{"type": "ValueError", "value": f"{ADDRESS} refused, sms {PHONE} too"}]},
        "extra": {"recipient": {"email": "x", "user_id": "u-1"}, "attempts": 3, "note": f"call {PHONE}"},
        "breadcrumbs": {"values": [{"message": f"smtp RCPT {ADDRESS}", "data": {"phone": "07700900123"}}]},
        "tags": {"service": "sender-email"},
    }


def test_addresses_numbers_and_recipient_fields_are_scrubbed_everywhere() -> None:
    # Any: Sentry types breadcrumbs as possibly truncated (AnnotatedValue), which a fresh event is not.
    scrubbed: Any = scrub_event(event_naming_a_recipient(), {})

    serialized = orjson.dumps(scrubbed)
    assert ADDRESS.encode() not in serialized
    assert b"example.co.uk" not in serialized
    assert PHONE.encode() not in serialized
    assert b"07700900123" not in serialized
    assert scrubbed["exception"]["values"][0]["value"] == f"{FILTERED} refused, sms {FILTERED} too"
    assert scrubbed["extra"] == {"recipient": FILTERED, "attempts": 3, "note": f"call {FILTERED}"}
    assert scrubbed["breadcrumbs"]["values"][0]["data"] == {"phone": FILTERED}


def test_releases_ids_offsets_and_times_are_left_alone() -> None:
    text = "herald@0.1.0: offset 12345678 of herald.email.v1 at 2026-12-08T02:34:28+00:00, notification 7f3e-91"
    assert scrub(text) == text


def test_the_tenant_and_notification_being_handled_become_tags() -> None:
    with structlog.contextvars.bound_contextvars(tenant="acme", notification_id="n-1"):
        tagged = scrub_event({"tags": {"service": "router"}}, {})
    assert tagged["tags"] == {"service": "router", "tenant": "acme", "notification_id": "n-1"}


def test_no_tags_are_added_outside_a_message() -> None:
    with structlog.contextvars.bound_contextvars(tenant=None, notification_id=None):
        assert scrub_event({}, {}) == {"tags": {}}

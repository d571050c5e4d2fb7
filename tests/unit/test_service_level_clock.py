"""The clock of the accepted->sent service level indicator: ingest's header, read by the sender."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.kafka.records import ACCEPTED_AT, Consumed, accepted_at_header, seconds_since_accepted

pytestmark = pytest.mark.unit


def test_the_clock_reads_the_header_and_ignores_a_missing_or_garbled_one() -> None:
    def consumed(*headers: tuple[str, bytes]) -> Consumed[None]:
        return Consumed("t", 0, 0, None, None, b"", headers)

    started = datetime.now(UTC) - timedelta(seconds=3)
    waited = seconds_since_accepted(consumed((ACCEPTED_AT, accepted_at_header(started))))
    assert waited is not None
    assert 3 <= waited < 4
    assert seconds_since_accepted(consumed()) is None
    assert seconds_since_accepted(consumed((ACCEPTED_AT, b"yesterday"))) is None
    future = consumed((ACCEPTED_AT, accepted_at_header(datetime.now(UTC) + timedelta(seconds=30))))
    assert seconds_since_accepted(future) == 0.0, "a clock ahead of this one is no negative wait"

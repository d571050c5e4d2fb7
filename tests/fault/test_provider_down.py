"""The email provider down mid-load (the SMTP server stopped: connections refused, open ones cut), then
back: deliveries wait in the retry service and are each mailed once; and, with fewer attempts than the
outage needs, what could not be delivered is dead-lettered as ``max_attempts_exceeded`` and counted.

The outage lasts ``HERALD_FAULT_PROVIDER_DOWN_S`` (10 s by default; a 30 s outage with
``HERALD_FAULT_PROVIDER_DOWN_S=30``). The fault pipeline's retry settings (tests/fault/conftest.py)
give every delivery enough attempts to outlast it; SMTP is the only email provider, so there is no
failover to take over meanwhile.
"""

from __future__ import annotations

from collections import Counter

import pytest

from shared.errors import DeadLetterReason
from tests.e2e.conftest import Pipeline
from tests.fault.accounting import Trial
from tests.fault.conftest import PROVIDER_DOWN_S, outage, reconfigured

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]

FIRED = "herald_delayed_jobs_fired_total"
# Three attempts take a few seconds: whatever meets the outage early cannot outlast it.
FEW_ATTEMPTS = {
    "HERALD_MAX_ATTEMPTS": "3",
    # The dead-letter guard pauses a sender whose stream turns into dead letters (30 s by default):
    # right in production, only a delay here, where dead letters are the point.
    "HERALD_DLQ_GUARD_PAUSE_S": "1",
}


async def provider_down(pipeline: Pipeline) -> None:
    """Stop the SMTP server for PROVIDER_DOWN_S, then start it again on its port."""
    # The sink runs in this process: stopping and starting it takes milliseconds.
    await outage(PROVIDER_DOWN_S, pipeline.sink.stop, pipeline.sink.start, in_thread=False)


async def test_provider_down_then_back_every_delivery_is_retried_and_mailed_once(pipeline: Pipeline) -> None:
    fired_before = await pipeline.metric("retry", FIRED)
    async with Trial(pipeline) as trial:
        await provider_down(pipeline)
        tally = await trial.settle(f"SMTP server down {PROVIDER_DOWN_S:g} s")
    retries = await pipeline.metric("retry", FIRED) - fired_before

    tally.report()
    print(f"the retry service fired {retries:.0f} delayed deliveries")
    assert (tally.lost, tally.duplicated, tally.dead_lettered) == (0, 0, 0)
    assert trial.dead_letters.records == []
    assert retries > 0, "the outage delayed nothing: it came too late to matter"


async def test_provider_down_past_the_last_attempt_dead_letters_what_it_cannot_deliver(pipeline: Pipeline) -> None:
    reason = DeadLetterReason.MAX_ATTEMPTS_EXCEEDED
    async with reconfigured(pipeline, "sender-email", FEW_ATTEMPTS), Trial(pipeline) as trial:
        await provider_down(pipeline)
        tally = await trial.settle(f"SMTP server down {PROVIDER_DOWN_S:g} s, 3 attempts", dead_reason=reason)

    tally.report()
    assert (tally.lost, tally.duplicated) == (0, 0)
    assert tally.dead_lettered > 0, "nothing ran out of attempts: the outage was too short to prove it"
    assert tally.sent == tally.delivered + tally.dead_lettered
    # One dead letter per undeliverable notification, and no other kind.
    assert Counter(d["reason_category"] for d in trial.dead_letters.records) == {reason.value: tally.dead_lettered}

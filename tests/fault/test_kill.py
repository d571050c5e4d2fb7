"""``kill -9`` of each service on an email's way, mid-load, then a restart: every accepted notification
is delivered, stored as ``sent``, and sent once, but for the one window described below.

SIGKILL lets a service finish nothing: what it consumed and had not committed comes again to its
successor. Each stage makes that harmless: ingest recognises a redelivered request by its Kafka
position, router and status produce and store deterministic ids, the retry service's jobs are keyed
by delivery and attempt, and sender-email skips deliveries its ledger (Redis) says went out, and
sends a delivery at most once per batch.

The window (sender-email): a delivery enters the ledger only after the SMTP server accepted it, in a
separate Redis write. A mail accepted by the killed process whose ledger write had not completed (or
whose ``250`` the process never read) is in no ledger; its offset was not committed either, so the
restarted sender gets it again and sends it again. For sender-email the test therefore allows
duplicates, but only those: exactly one copy from the killed process and one from its successor, told
apart by the envelope sender the successor is given. The gateway is not killed: the load goes straight
to Kafka, as an upstream service's would.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from tests.e2e.conftest import Pipeline
from tests.fault.accounting import Mailbox, Trial
from tests.fault.conftest import DEFERRED_PER_S, start_again

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]


def outside_the_window(mailbox: Mailbox, successor: str) -> dict[str, list[str]]:
    """Notifications mailed more than once other than once by the killed sender and once by its
    ``successor`` (an envelope sender), with each copy's envelope sender."""
    return {
        notification_id: [mail.mail_from for mail in mails]
        for notification_id, mails in mailbox.refresh().items()
        if len(mails) > 1 and sorted(mail.mail_from == successor for mail in mails) != [False, True]
    }


@pytest.mark.parametrize("service", ["ingest", "router", "sender-email", "retry", "status"])
async def test_kill_9_mid_load_then_restart_loses_nothing_and_sends_once(pipeline: Pipeline, service: str) -> None:
    process = pipeline.processes[service]
    successor = f"successor-{uuid.uuid4().hex[:8]}@herald.local"
    async with Trial(pipeline, deferred_per_s=DEFERRED_PER_S) as trial:
        process.kill()
        killed_at, killed = datetime.now(UTC), time.monotonic()
        if service == "sender-email":
            # Each mail then says which process sent it. (Not its arrival time: the sink stamps a mail
            # once it has read it, which can be just after the kill for one sent just before.)
            process.env["HERALD_SMTP_FROM"] = f"Herald <{successor}>"
        await start_again(pipeline, service)
        down_s = time.monotonic() - killed
        tally = await trial.settle(f"kill -9 {service}")

    tally.report()
    last_mail_s = (trial.mailbox.last_arrival() - killed_at).total_seconds()
    print(f"{service} ready again {down_s:.1f} s after the kill, the last mail {last_mail_s:.1f} s after it")
    assert tally.lost == 0
    assert trial.dead_letters.records == []
    if service == "sender-email":
        assert outside_the_window(trial.mailbox, successor) == {}
    else:
        assert tally.duplicated == 0

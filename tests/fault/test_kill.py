"""``kill -9`` of each service on an email's way, mid-load, then a restart: every accepted notification
is delivered, stored as ``sent``, and sent once, but for the one window described below. Then the same
for the services off the email's way: the gateway under HTTP load, each other channel's sender under a
load of its channel, and dead-letters under a load of invalid requests.

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
apart by the envelope sender the successor is given. The load goes straight to Kafka, as an upstream
service's would.

The gateway is killed under a load of HTTP requests whose clients retry with the same Idempotency-Key
after a connection error, a 409 (a key the killed gateway had claimed) or a 5xx: every request answered
202 is mailed, once (a retry carries the same notification id, which ingest drops as a duplicate).
The other senders (SMS through SNS on moto, webhooks to a local receiver, pushes through the FCM
stand-in) share sender-email's window, kept by the same ledger; their duplicates are counted and
printed, and nothing may be lost. dead-letters stores each dead letter once, whatever it consumed
twice (a row per DLQ position).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from shared.errors import DeadLetterReason
from tests.e2e.conftest import Pipeline
from tests.fault.accounting import (
    DEAD_LETTERS,
    Arrivals,
    Mailbox,
    Trial,
    delivery,
    pushes_at_fcm,
    stored_dead_letters,
    texts_at_sns,
    webhooks_received,
)
from tests.fault.conftest import DEFERRED_PER_S, LIGHT_RATE_PER_S
from tests.fault.load import OverHttp, Sending, invalid_to_kafka, push_request, sms_request, to_kafka, webhook_request
from tests.scripted_http import ScriptedServer

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
        await trial.start_again(service)
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


async def test_kill_9_gateway_under_http_load_delivers_every_request_answered_202_once(pipeline: Pipeline) -> None:
    clients = OverHttp()
    async with Trial(pipeline, rate_per_s=LIGHT_RATE_PER_S, sending=clients) as trial:
        pipeline.processes["gateway"].kill()
        await trial.start_again("gateway")
        tally = await trial.settle("kill -9 gateway (HTTP load)")

    tally.report()
    print("the clients tried again after:", dict(clients.retried))
    assert (tally.lost, tally.duplicated) == (0, 0)
    assert trial.dead_letters.records == []
    # The retry burst once the gateway is back waits for Redis connections rather than failing.
    assert not [answer for answer in clients.retried if "Idempotency-Key" in answer and answer.startswith("503")]


@contextlib.asynccontextmanager
async def channel_load(pipeline: Pipeline, channel: str) -> AsyncIterator[tuple[Sending, Arrivals]]:
    """A load of ``channel`` to Kafka, and where it arrives: its provider's stand-in, or a local receiver."""
    if channel == "sms":
        yield to_kafka(sms_request), texts_at_sns(pipeline.sms)
    elif channel == "push":
        # Several people, one Android device each: their pushes spread over the partitions.
        users = [f"fault-push-{n}-{uuid.uuid4().hex[:8]}" for n in range(8)]
        async with pipeline.client() as client:
            for user in users:
                device = {"platform": "android", "token": f"fcm-{uuid.uuid4().hex}"}
                response = await client.post(f"/api/v1/recipients/{user}/devices", json=device)
                assert response.status_code == 201, response.text
        yield to_kafka(push_request(users)), pushes_at_fcm(pipeline.push.fcm)
    else:
        with ScriptedServer().serving() as receiver:
            yield to_kafka(webhook_request(f"{receiver.url}/hooks")), webhooks_received(receiver)


@pytest.mark.parametrize("channel", ["sms", "webhook", "push"])
async def test_kill_9_of_a_channel_sender_mid_load_loses_nothing(pipeline: Pipeline, channel: str) -> None:
    service = f"sender-{channel}"
    async with (
        channel_load(pipeline, channel) as (sending, arrivals),
        Trial(
            pipeline,
            rate_per_s=LIGHT_RATE_PER_S,
            sending=sending,
            arrivals=arrivals,
            route=delivery(channel),
        ) as trial,
    ):
        pipeline.processes[service].kill()
        await trial.start_again(service)
        tally = await trial.settle(f"kill -9 {service}")

    tally.report()
    assert tally.lost == 0
    assert trial.dead_letters.records == []


async def test_kill_9_dead_letters_mid_load_stores_each_dead_letter_once(pipeline: Pipeline) -> None:
    async with Trial(
        pipeline,
        rate_per_s=LIGHT_RATE_PER_S,
        sending=invalid_to_kafka,
        arrivals=stored_dead_letters(pipeline.database_url),
        route=DEAD_LETTERS,
    ) as trial:
        pipeline.processes["dead-letters"].kill()
        await trial.start_again("dead-letters")
        tally = await trial.settle("kill -9 dead-letters (stored in Postgres)")

    tally.report()
    assert (tally.lost, tally.duplicated) == (0, 0)
    # Ingest dead-lettered each invalid request once; the store holds each of those once.
    reasons = Counter(d["reason_category"] for d in trial.dead_letters.records)
    assert reasons == {DeadLetterReason.INVALID_PAYLOAD.value: tally.sent}

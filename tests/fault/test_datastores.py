"""Postgres or Redis stopped mid-load and started again (each the fault pipeline's own): the services that
use it pause and resume, and nothing is lost.

**Postgres** holds the status store and the retry service's delayed jobs. While it is down, status and
the retry service's intake wait the batch out (their offsets stay uncommitted) and the scheduler keeps
trying; jobs are deleted in the transaction that fired them, so none is lost, and one fired again after
a failed commit is a copy of a delivery the ledger stops. No duplicate comes of it.

**Redis** (no persistence, as the local stack runs it) holds ingest's idempotency claims and
sender-email's ledger of delivered ids; a restart forgets both. While it is down, ingest and
sender-email wait their batch out before sending anything (the ledger is read first); a ledger write
that fails after a send is logged and skipped, and the batch commits. So the restart alone re-sends
nothing, and the test asserts no duplicate. A duplicate needs the restart *and* a delivery sent before
it (or while Redis was down) reaching sender-email again afterwards, which the ledger would have stopped:

* the same request sent again by its client (same idempotency key) after the restart: ingest's claim
  is gone, so it is accepted and mailed again (measured below: a repeated key, mailed twice);
* a second copy of a delivery already in Kafka: sender-email crashing, or losing its partitions,
  before committing a batch it sent; router or ingest re-producing after a crash; the retry service
  firing a job again after a crash or a failed Postgres commit; a producer re-sending after a broker
  error.
"""

from __future__ import annotations

import uuid

import pytest

from infra.local.datastores import PostgresServer, RedisServer
from tests.e2e.conftest import Pipeline, eventually
from tests.fault.accounting import Trial
from tests.fault.conftest import DATASTORE_DOWN_S, DEFERRED_PER_S, outage

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]

PAUSED = "herald_transient_failures_total"


async def pauses(pipeline: Pipeline, services: tuple[str, ...]) -> dict[str, float]:
    """How many times each service paused a batch for a failing dependency (since it started)."""
    return {service: await pipeline.metric(service, PAUSED) for service in services}


async def noticed_by(pipeline: Pipeline, service: str, before: dict[str, float]) -> bool | None:
    """True once ``service`` paused a batch for a failing dependency since ``before`` was taken."""
    return True if await pipeline.metric(service, PAUSED) > before[service] else None


async def test_postgres_restarted_mid_load_loses_nothing(pipeline: Pipeline, private_postgres: PostgresServer) -> None:
    users = ("status", "retry")
    before = await pauses(pipeline, users)
    async with Trial(pipeline, deferred_per_s=DEFERRED_PER_S) as trial:
        # pg_ctl detaches the server, so it may be started from a worker thread (it takes a second or so).
        await trial.during(
            outage(
                DATASTORE_DOWN_S,
                private_postgres.stop,
                private_postgres.start,
                in_thread=True,
                noticed=lambda: noticed_by(pipeline, "status", before),
            )
        )
        tally = await trial.settle(f"Postgres down {DATASTORE_DOWN_S:g} s")
    after = await pauses(pipeline, users)

    tally.report()
    print("batches paused for a failing dependency:", {s: after[s] - before[s] for s in users})
    assert (tally.lost, tally.duplicated, tally.dead_lettered) == (0, 0, 0)
    assert trial.dead_letters.records == []
    # The retry service's intake may wait inside the pool for a connection rather than fail: not asserted.
    assert after["status"] > before["status"], "the status service never noticed the outage"


async def test_redis_restarted_mid_load_loses_nothing(pipeline: Pipeline, private_redis: RedisServer) -> None:
    users = ("ingest", "sender-email")
    before = await pauses(pipeline, users)
    key = f"repeat-{uuid.uuid4()}"
    repeated = await send_keyed(pipeline, key)
    async with Trial(pipeline, deferred_per_s=DEFERRED_PER_S) as trial:
        await eventually(lambda: trial.mailbox.refresh().get(repeated), 30, "the keyed request's mail")
        # On this (the main) thread: redis-server is a child that dies with the thread that started it.
        await trial.during(outage(DATASTORE_DOWN_S, private_redis.stop, private_redis.start, in_thread=False))
        assert await send_keyed(pipeline, key) == repeated
        # Settling drains every stage, the repeat included: its mails are counted in full.
        tally = await trial.settle(f"Redis restarted after {DATASTORE_DOWN_S:g} s")
    after = await pauses(pipeline, users)
    repeated_mails = trial.mailbox.refresh()[repeated]

    tally.report()
    print("batches paused for a failing dependency:", {s: after[s] - before[s] for s in users})
    print(f"a request repeated with its idempotency key after the restart: mailed {len(repeated_mails)} times")
    assert (tally.lost, tally.duplicated, tally.dead_lettered) == (0, 0, 0)
    assert trial.dead_letters.records == []
    assert after["ingest"] > before["ingest"], "ingest never noticed the outage"


async def send_keyed(pipeline: Pipeline, key: str) -> str:
    """Send one request with idempotency key ``key`` straight to Kafka; its notification id."""
    async with pipeline.kafka_client("dev") as client:
        return await client.send(
            channels=["email"],
            recipient={"email": "repeat@example.com"},
            content={"subject": "Once", "text": "Sent twice with one key."},
            idempotency_key=key,
        )
